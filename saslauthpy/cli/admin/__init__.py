"""``saslauthpy-admin``: manage users in the store the daemon reads, hash passwords, print
the SQL schema, and talk to the running daemon through its root-only control socket.

    saslauthpy-admin user add|passwd|delete|enable|disable LOGIN [--realm R]
    saslauthpy-admin user list [--realm R]
    saslauthpy-admin user import FILE [--realm R] [--scheme NAME] [--allow-plain]
    saslauthpy-admin init | check-config | status
    saslauthpy-admin cache flush [LOGIN] [--realm R]
    saslauthpy-admin throttle show [LOGIN|ADDRESS] | clear LOGIN|ADDRESS [--realm R]
    saslauthpy-admin pw [-s SCHEME] [-t HASH]
    saslauthpy-admin sql schema DIALECT

Every command takes ``--config FILE``, ``-m DIR``, ``--defaults FILE``, ``--store NAME``,
``--file PATH`` and ``--json``, before or after the command words.  Errors are one line on
stderr with exit status 1; usage errors exit with 2 (terminal.py).
"""

from __future__ import annotations

import argparse
import sys

from ...errors import ConfigError
from .. import terminal
from . import controlclient, daemon, hostconfig, tools, users
from .output import Fail, Output
from .parser import parser


def error(message: str) -> int:
    sys.stderr.write(f"saslauthpy-admin: {message}\n")
    return terminal.ERROR


def main(argv: list[str] | None = None) -> int:
    return terminal.run(lambda: _main(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    out = Output(args.json)
    try:
        return dispatch(args, out)
    except (Fail, ConfigError, hostconfig.Refused, controlclient.Failed,
            terminal.NoPassword) as exc:
        return error(str(exc))
    except controlclient.Unreachable as exc:
        return error(f"{exc}: is the daemon running? (its run directory comes from "
                     "-m, --config or /etc/default/saslauthd)")
    except BrokenPipeError:
        raise  # terminal.run: nobody reads our output any more
    except OSError as exc:
        return error(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
    except Exception as exc:  # a store's own error (database down, unreadable sasldb ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return error(f"{type(exc).__name__}: {first}")


def dispatch(args: argparse.Namespace, out: Output) -> int:
    if args.command == "pw":
        return tools.pw(args, out)
    if args.command == "sql":
        return tools.schema(args, out)
    view = hostconfig.daemon_view(args.config, args.run_dir, args.defaults)
    if args.command == "user":
        return users.run(args, view, out)
    if args.command == "init":
        return users.init(args, view, out)
    if args.command == "check-config":
        return tools.check_config(view, out)
    return daemon.run(args, view, out)
