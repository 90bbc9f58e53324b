"""``saslauthpy-admin pw``, ``sql schema`` and ``check-config``: answers that need no store."""

from __future__ import annotations

import argparse
from importlib import resources

from ... import passwords
from .. import terminal
from . import hostconfig
from .output import Fail, Output


def pw(args: argparse.Namespace, out: Output) -> int:
    """Like ``doveadm pw``: a new hash of a password asked twice (``-s SCHEME``), or
    (``-t HASH``) whether a password matches a hash."""
    if args.test is not None:
        password = terminal.read_password(args.password_stdin, confirm=False)
        try:
            ok = passwords.verify(password, args.test, default_scheme=args.scheme)
        except passwords.UnknownScheme as exc:
            raise Fail(f"-t: {exc}") from None
        scheme = passwords.scheme_of(args.test) or args.scheme or ""
        out.result({"verified": ok, "scheme": scheme},
                   "verified" if ok else "the password does not match the hash")
        return terminal.OK if ok else terminal.ERROR
    scheme = (args.scheme or passwords.DEFAULT_SCHEME).strip().strip("{}").upper()
    if scheme not in passwords.HASH_SCHEMES:
        raise Fail(f"-s {args.scheme}: not a scheme for new hashes; choose one of "
                   f"{', '.join(passwords.HASH_SCHEMES)}")
    password = terminal.read_password(args.password_stdin, confirm=True)
    try:
        hashed = passwords.hash_password(password, scheme)
    except ValueError as exc:
        raise Fail(f"-s {scheme}: {exc}") from None
    out.result({"scheme": scheme, "hash": hashed}, hashed)
    return terminal.OK


def schema(args: argparse.Namespace, out: Output) -> int:
    """The DDL shipped in saslauthpy/share/sql/ for one database."""
    text = (resources.files("saslauthpy") / "share" / "sql" / f"{args.dialect}.sql").read_text(
        encoding="utf-8")
    out.result({"dialect": args.dialect, "ddl": text}, text.rstrip("\n"))
    return terminal.OK


def check_config(view: hostconfig.DaemonView, out: Output) -> int:
    from ...server import build_backends

    cfg = view.config
    for backend in build_backends(cfg):
        backend.close()
    out.result({"ok": True, "mechanisms": cfg.mechanisms, "socket": cfg.socket_path,
                "run_dir": cfg.run_dir, "config_file": cfg.config_file or None,
                "defaults": view.defaults},
               f"configuration OK: mechanisms {','.join(cfg.mechanisms)}, socket "
               f"{cfg.socket_path} (from {view.source})")
    return terminal.OK
