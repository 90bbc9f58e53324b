"""``saslauthpy``: the daemon's command line (saslauthd's flags, plus --config).

Exit status (terminal.py): 0 after SIGTERM, 1 if it cannot start (bad configuration,
another instance running, socket in use), 2 for an unknown option or malformed argument.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import config as configmod
from .. import hardening, logsinks
from ..errors import AlreadyRunning, ConfigError
from . import terminal


def _setup_logging(foreground: bool, verbose: bool) -> None:
    """The journal under systemd, stderr in the foreground, syslog when detached."""
    logsinks.install(foreground)
    root = logging.getLogger("saslauthpy")
    root.handlers.clear()
    root.addHandler(logsinks.Handler())
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _detach() -> tuple[int, int] | None:
    """Fork into the background; the parent exits when the child says it is ready
    (or failed), so init scripts see start-up errors as saslauthd's do."""
    r, w = os.pipe()
    if os.fork():
        os.close(w)
        message = b""
        while not message.startswith(b"ok") and (chunk := os.read(r, 4096)):
            message += chunk  # (worker processes may hold the pipe open: no EOF to wait for)
        if message.startswith(b"ok"):
            os._exit(0)
        sys.stderr.write(message.decode(errors="replace"))
        os._exit(1)
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")  # nothing is ever imported or opened relative to where we were started
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    return w, devnull


def main(argv: list[str] | None = None) -> int:
    return terminal.run(lambda: _main(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    parser = configmod.arg_parser()
    parser.exit_on_error = False
    try:
        args, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        print(f"saslauthpy: {exc}; see saslauthpy -h", file=sys.stderr)
        return terminal.USAGE
    if args.help:
        parser.print_help()
        print()
        print(configmod.version_text())
        return 0
    if args.version:
        print(configmod.version_text())
        return 0
    if extra:
        print(f"saslauthpy: unknown argument {' '.join(extra)!r}; see saslauthpy -h",
              file=sys.stderr)
        return terminal.USAGE

    if args.config:
        args.config = os.path.abspath(args.config)  # reloads read it after chdir("/")
    hardening.harden()

    def load() -> configmod.Config:
        return configmod.from_args(args)

    try:
        config = load()
    except ConfigError as exc:
        print(f"saslauthpy: {exc}", file=sys.stderr)
        return terminal.ERROR

    from .. import launcher

    pipe = None
    if not config.foreground:
        pipe = _detach()
    _setup_logging(config.foreground, config.verbose)
    log = logging.getLogger("saslauthpy")

    def ready() -> None:
        if pipe is not None:
            os.write(pipe[0], b"ok")
            os.close(pipe[0])
            os.dup2(pipe[1], 2)

    try:
        return launcher.run(config, load, ready)
    except AlreadyRunning as exc:
        msg = f"saslauthpy: {exc}\n"
    except ConfigError as exc:
        msg = f"saslauthpy: {exc}\n"
    except OSError as exc:
        msg = f"saslauthpy: cannot start: {exc}\n"
    if pipe is not None:
        os.write(pipe[0], msg.encode())
    else:
        log.error(msg.strip().removeprefix("saslauthpy: "))
    return terminal.ERROR


if __name__ == "__main__":
    raise SystemExit(main())
