"""``saslauthpy-admin``: manage users in a backend's store, check the configuration,
and talk to the running daemon through its root-only control socket.

    saslauthpy-admin [--config FILE] [--store NAME] [--file PATH] user add LOGIN [--realm R]
                     [--password-stdin]
    saslauthpy-admin ... user passwd|delete|enable|disable LOGIN [--realm R]
    saslauthpy-admin ... user list [--realm R] [--json]
    saslauthpy-admin ... user import FILE
    saslauthpy-admin ... init
    saslauthpy-admin ... check-config
    saslauthpy-admin ... cache flush [LOGIN] [--realm R]
    saslauthpy-admin ... status

Passwords come from a prompt (asked twice) or stdin, never from the command line.
A change to a user flushes that user's cached credentials in the running daemon.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import socket
import sys

from .. import config as configmod
from ..backends import MODULES, store_class
from ..backends.base import Store
from ..errors import ConfigError, NoSuchUser, UserExists
from ..options import load


class Fail(Exception):
    """An error for the user: printed as one line, exit status 1."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saslauthpy-admin", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", metavar="FILE",
                   help=f"TOML configuration (default {configmod.DEFAULT_CONFIG} if it exists)")
    p.add_argument("-m", dest="run_dir", metavar="DIR",
                   help="the daemon's run directory (for the control socket)")
    p.add_argument("--store", metavar="NAME", help="user store: sql (default) or sasldb")
    p.add_argument("--file", metavar="PATH", help="the store's file (sasldb path or SQLite file)")
    sub = p.add_subparsers(dest="command", required=True)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    for action in ("add", "passwd", "delete", "enable", "disable"):
        a = user.add_parser(action)
        a.add_argument("login")
        a.add_argument("--realm", default="")
        if action in ("add", "passwd"):
            a.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of stdin")
    lst = user.add_parser("list")
    lst.add_argument("--realm", default=None)
    lst.add_argument("--json", action="store_true")
    imp = user.add_parser("import", help="bulk-load CSV login,realm,hash or shadow-style lines")
    imp.add_argument("path")
    imp.add_argument("--realm", default="", help="realm for shadow-style lines")

    sub.add_parser("init", help="create the store (e.g. the SQL users table)")
    sub.add_parser("check-config", help="load the configuration and open every backend")
    cache = sub.add_parser("cache", help="the running daemon's credential cache")
    cache_sub = cache.add_subparsers(dest="action", required=True)
    flush = cache_sub.add_parser("flush")
    flush.add_argument("login", nargs="?")
    flush.add_argument("--realm", default=None)
    sub.add_parser("status", help="ask the running daemon how it is doing")
    return p


def load_config(args: argparse.Namespace) -> configmod.Config:
    argv = []
    if args.config:
        argv += ["--config", args.config]
    if args.run_dir:
        argv += ["-m", args.run_dir]
    return configmod.from_args(configmod.arg_parser().parse_args(argv))


def open_store(args: argparse.Namespace, config: configmod.Config) -> Store:
    name = args.store
    if name is None:
        name = next((m for m in config.mechanisms if m in ("sql", "sasldb")), "sql")
    if name not in MODULES:
        raise Fail(f"--store {name}: unknown store; use sql or sasldb")
    cls = store_class(name)
    options = load(cls.Options, config.section(name), f"[{name}] ")
    if args.file:
        key = "url" if name == "sql" else "path"
        value = "sqlite:///" + os.path.abspath(args.file) if name == "sql" else args.file
        options = dataclasses.replace(options, **{key: value})
    return cls(config, options)


def read_password(from_stdin: bool) -> bytes:
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.buffer.readline()
        password = line.rstrip(b"\r\n")
    else:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Again (for verification): ")
        if first != again:
            raise Fail("passwords don't match; nothing changed")
        password = first.encode()
    if not password:
        raise Fail("empty password; nothing changed")
    if b"\0" in password:
        raise Fail("the password contains a NUL byte; nothing changed")
    return password


def control(config: configmod.Config, request: dict) -> dict | None:
    """Send one command to the running daemon; None if it is not running."""
    path = config.control_path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except PermissionError:
        raise Fail(f"{path}: permission denied (the control socket is for root)")
    except OSError as exc:
        raise Fail(f"{path}: {exc}")
    return json.loads(data)


def flush_user(config: configmod.Config, login: str, realm: str) -> None:
    reply = control(config, {"cmd": "flush", "login": login, "realm": realm or None})
    if reply is not None and not reply.get("ok"):
        print(f"warning: the daemon did not flush its cache: {reply.get('error')}", file=sys.stderr)


def user_command(args: argparse.Namespace, config: configmod.Config) -> int:
    store = open_store(args, config)
    try:
        if args.action == "add":
            store.add(args.login, args.realm, read_password(args.password_stdin))
            print(f"added {_name(args.login, args.realm)}")
        elif args.action == "passwd":
            store.set_password(args.login, args.realm, read_password(args.password_stdin))
            print(f"changed the password of {_name(args.login, args.realm)}")
        elif args.action == "delete":
            store.delete(args.login, args.realm)
            print(f"deleted {_name(args.login, args.realm)}")
        elif args.action in ("enable", "disable"):
            store.set_enabled(args.login, args.realm, args.action == "enable")
            print(f"{args.action}d {_name(args.login, args.realm)}")
        elif args.action == "list":
            users = list(store.users(args.realm))
            if args.json:
                print(json.dumps([dataclasses.asdict(u) for u in users], indent=2))
            else:
                for u in users:
                    print(f"{_name(u.login, u.realm)}{'' if u.enabled else '  (disabled)'}")
            return 0
        elif args.action == "import":
            from ..backends.sql.importer import run_import

            imported, skipped = run_import(store, args.path, realm=args.realm)
            flush = control(config, {"cmd": "flush"})
            if flush is not None and not flush.get("ok"):
                print("warning: the daemon did not flush its cache", file=sys.stderr)
            return 0 if not skipped else 1
        if args.action != "add":
            flush_user(config, args.login, args.realm)
        return 0
    except UserExists:
        raise Fail(f"{_name(args.login, args.realm)} already exists; 'user passwd' changes it")
    except NoSuchUser:
        raise Fail(f"no user {_name(args.login, args.realm)}")
    except NotImplementedError as exc:
        raise Fail(str(exc) or f"this store cannot {args.action} users")
    finally:
        store.close()


def _name(login: str, realm: str) -> str:
    return f"{login}@{realm}" if realm else login


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = load_config(args)
        if args.command == "user":
            return user_command(args, config)
        if args.command == "init":
            store = open_store(args, config)
            init = getattr(store, "init", None)
            if init is not None:
                init()
            store.close()
            print("store ready")
            return 0
        if args.command == "check-config":
            from ..server import build_backends

            for backend in build_backends(config):
                backend.close()
            print(f"configuration OK: mechanisms {','.join(config.mechanisms)}, "
                  f"socket {config.socket_path}")
            return 0
        if args.command == "cache":
            reply = control(config, {"cmd": "flush", "login": args.login, "realm": args.realm})
            if reply is None:
                raise Fail(f"no daemon is listening on {config.control_path}")
            if not reply.get("ok"):
                raise Fail(reply.get("error", "the daemon refused"))
            print(f"flushed {reply.get('flushed', 0)} cache entries")
            return 0
        if args.command == "status":
            reply = control(config, {"cmd": "status"})
            if reply is None:
                raise Fail(f"no daemon is listening on {config.control_path}")
            print(json.dumps(reply, indent=2))
            return 0
    except (Fail, ConfigError) as exc:
        print(f"saslauthpy-admin: {exc}", file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
