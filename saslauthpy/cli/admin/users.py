"""``saslauthpy-admin user ...`` and ``init``: users in the store the daemon reads.

After ``passwd``, ``delete`` and ``disable`` the daemon must forget the user's cached answers
at once (else the old password keeps working for the cache lifetime): the admin asks it
through the control socket, and if no daemon answers there it says so on stderr, names the
command that flushes a daemon on another run directory, and exits 1.  After ``add``,
``enable`` and ``import`` the flush (of remembered failures) is only attempted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from ...backends import store_class
from ...backends.base import Store
from ...errors import NoSuchUser, UserExists
from ...options import load
from .. import terminal
from . import controlclient, hostconfig
from .output import Fail, Output

MUST_FLUSH = {"passwd", "delete", "disable"}
CREATE = {"add", "import", "init"}  # the actions that may create the store --file names


def open_store(args: argparse.Namespace, view: hostconfig.DaemonView) -> tuple[Store, str]:
    name = hostconfig.choose_store(view, args.store, args.file)
    cls = store_class(name)
    options = load(cls.Options, view.config.section(name), f"[{name}] ")
    if args.file:
        check_file(args.file, creates=getattr(args, "action", "init") in CREATE)
        key = "url" if name == "sql" else "path"
        value = "sqlite:///" + os.path.abspath(args.file) if name == "sql" else args.file
        options = dataclasses.replace(options, **{key: value})
    return cls(view.config, options), name


def check_file(path: str, creates: bool) -> None:
    """``--file PATH`` must name a file, or one to create in a folder that exists: a typo
    must not leave new folders (or an empty store) behind."""
    if os.path.exists(path):
        return
    if not creates:
        raise Fail(f"--file {path}: no such file ('user add' or 'init' creates a store)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise Fail(f"--file {path}: no such directory {parent}")


def who(login: str, realm: str | None) -> str:
    return f"{login}@{realm}" if realm else login


def tell_daemon(view: hostconfig.DaemonView, login: str | None, realm: str | None,
                must: bool) -> tuple[int | None, str | None]:
    """Flush the user's cached answers in the daemon: (entries flushed, or None; the
    problem to report, or None)."""
    try:
        reply = controlclient.ask(view.config, {"cmd": "flush", "login": login,
                                                "realm": realm or None})
        return int(reply.get("flushed", 0)), None
    except controlclient.Unreachable as exc:
        if not must:
            return None, None
        command = controlclient.flush_command(login, realm)
        return None, (f"{who(login or '', realm)}'s cached answers were not flushed: {exc} "
                      f"(run directory from {view.source}); a daemon running with another "
                      f"run directory keeps them until: {command}")
    except controlclient.Failed as exc:
        return None, f"{who(login or '', realm)}'s cached answers were not flushed: {exc}"


def run(args: argparse.Namespace, view: hostconfig.DaemonView, out: Output) -> int:
    if args.action == "import":
        return import_file(args, view, out)
    store, name = open_store(args, view)
    try:
        if args.action == "list":
            users = list(store.users(args.realm))
            out.result([dataclasses.asdict(u) for u in users],
                       [who(u.login, u.realm) + ("" if u.enabled else "  (disabled)")
                        for u in users])
            return terminal.OK
        login, realm = args.login, args.realm
        done = change(store, args.action, login, realm, args)
    except UserExists:
        raise Fail(f"{who(args.login, args.realm)} already exists; 'user passwd' changes it")
    except NoSuchUser:
        raise Fail(f"no user {who(args.login, args.realm)} in the {name} store")
    except NotImplementedError as exc:
        raise Fail(str(exc) or f"the {name} store cannot {args.action} users")
    finally:
        store.close()
    flushed, problem = tell_daemon(view, login, realm, args.action in MUST_FLUSH)
    out.result({"ok": problem is None, "action": args.action, "login": login, "realm": realm,
                "store": name, "flushed": flushed, **({"error": problem} if problem else {})},
               f"{done} {who(login, realm)}")
    if problem:
        sys.stderr.write(f"saslauthpy-admin: {problem}\n")
        return terminal.ERROR
    return terminal.OK


def change(store: Store, action: str, login: str, realm: str, args: argparse.Namespace) -> str:
    """Make the change; the past tense for the report."""
    if action in ("add", "passwd"):
        password = terminal.read_password(args.password_stdin or not sys.stdin.isatty(),
                                          confirm=True)
        if action == "add":
            store.add(login, realm, password)
            return "added"
        store.set_password(login, realm, password)
        return "changed the password of"
    if action == "delete":
        store.delete(login, realm)
        return "deleted"
    store.set_enabled(login, realm, action == "enable")
    return f"{action}d"


def import_file(args: argparse.Namespace, view: hostconfig.DaemonView, out: Output) -> int:
    from ...backends.sql.importer import run_import
    from ...passwords import is_known_scheme

    if args.scheme is not None and not is_known_scheme(args.scheme):
        raise Fail(f"--scheme {args.scheme}: unknown password scheme")
    try:
        with open(args.path, "rb"):
            pass
    except OSError as exc:
        raise Fail(f"{args.path}: {exc.strerror}") from None
    store, name = open_store(args, view)
    try:
        if not hasattr(store, "add_hashed_many"):
            raise Fail(f"user import needs the sql store, not {name} (which keeps cleartext "
                       "passwords): add such users with 'user add'")
        imported, skipped = run_import(store, args.path, realm=args.realm, scheme=args.scheme,
                                       allow_plain=args.allow_plain)
    finally:
        store.close()
    flushed, _ = tell_daemon(view, None, None, must=False)
    out.result({"ok": skipped == 0, "imported": imported, "skipped": skipped, "store": name,
                "flushed": flushed},
               f"imported {imported} user(s) into the {name} store"
               + (f"; {skipped} line(s) skipped (see above)" if skipped else ""))
    return terminal.OK if not skipped else terminal.ERROR


def init(args: argparse.Namespace, view: hostconfig.DaemonView, out: Output) -> int:
    store, name = open_store(args, view)
    try:
        create = getattr(store, "init", None)
        if create is not None:
            create()
    finally:
        store.close()
    out.result({"ok": True, "store": name}, f"the {name} store is ready")
    return terminal.OK
