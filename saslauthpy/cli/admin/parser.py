"""saslauthpy-admin's command line: every command, its options and its help text.

The options common to all commands (``--config``, ``-m``, ``--defaults``, ``--store``,
``--file``, ``--json``) are accepted before or after the command words.
"""

from __future__ import annotations

import argparse

from ... import config as configmod
from ..terminal import Parser

DESCRIPTION = """\
Manage the users saslauthpy checks, and talk to the running daemon.

saslauthpy-admin finds the daemon's configuration as the packaged unit does: the
variables of /etc/default/saslauthd (or /etc/sysconfig/saslauthd) and the TOML
file they name.  It writes users only to a store the daemon reads (sql or
sasldb), and after a change it tells the daemon to forget that user's cached
answers."""

EPILOG = """\
examples:
  saslauthpy-admin user add alice                 asks for the password twice
  saslauthpy-admin user list --json
  saslauthpy-admin user import users.csv --scheme SSHA
  saslauthpy-admin pw -s SHA512-CRYPT             a hash for another system
  saslauthpy-admin throttle show 192.0.2.7
  saslauthpy-admin status

exit status: 0 success, 1 error (one line on stderr), 2 usage error."""

FORMATTER = argparse.RawDescriptionHelpFormatter


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """The options every command takes; below the top level they default to "not given",
    so that one given before the command is not reset by the command's parser."""
    kw = {} if top else {"default": argparse.SUPPRESS}
    g = p.add_argument_group("common options (before or after the command)")
    g.add_argument("--config", metavar="FILE", **kw,
                   help=f"the daemon's TOML file (default {configmod.DEFAULT_CONFIG}, or "
                        "what /etc/default/saslauthd names)")
    g.add_argument("-m", dest="run_dir", metavar="DIR", **kw,
                   help="the daemon's run directory (for its control socket)")
    g.add_argument("--defaults", metavar="FILE", **kw,
                   help="read the daemon's flags from this /etc/default/saslauthd-style file")
    g.add_argument("--store", metavar="NAME", **kw,
                   help="user store: sql or sasldb (default: the daemon's mechanism)")
    g.add_argument("--file", metavar="PATH", **kw,
                   help="the store's file (a sasldb, or a SQLite database); user add, "
                        "import and init create it in a directory that exists")
    g.add_argument("--json", action="store_true", **kw, help="print the result as JSON")


def _command(sub: argparse._SubParsersAction, name: str, summary: str,
             details: str = "") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=summary + (f"\n\n{details}" if details
                                                                    else ""),
                       formatter_class=FORMATTER)
    return p


def _leaf(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _common(p, top=False)
    return p


def _user_arguments(p: argparse.ArgumentParser, password: bool = False) -> None:
    p.add_argument("login")
    p.add_argument("--realm", default="", help="the user's realm (default: none)")
    if password:
        p.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin instead of "
                            "asking twice on the terminal")


def _selector(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("who", nargs=None if required else "?", metavar="LOGIN|ADDRESS",
                   help="a login or a client IP address")
    p.add_argument("--realm", default=None, help="the login's realm (default: none)")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="saslauthpy-admin", description=DESCRIPTION, epilog=EPILOG,
               formatter_class=FORMATTER)
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    user = _command(sub, "user", "add, change, remove and list users")
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    _user_arguments(_leaf(_command(actions, "add", "add a user (the password is asked twice)")),
                    password=True)
    _user_arguments(_leaf(_command(actions, "passwd", "change a user's password")),
                    password=True)
    _user_arguments(_leaf(_command(actions, "delete", "remove a user from the store")))
    _user_arguments(_leaf(_command(actions, "enable", "let a disabled user log in again")))
    _user_arguments(_leaf(_command(
        actions, "disable", "refuse a user's logins, keeping the password (sql store)")))
    lst = _leaf(_command(actions, "list", "list the users, one per line"))
    lst.add_argument("--realm", default=None, help="only this realm")
    imp = _leaf(_command(
        actions, "import", "load users whose passwords are already hashed (sql store)",
        "FILE holds CSV lines login,realm,hash or /etc/shadow lines login:hash:...\n"
        "Each password field must be a hash saslauthpy can verify; a bad line is\n"
        "reported with its number and skipped (exit status 1)."))
    imp.add_argument("path", metavar="FILE")
    imp.add_argument("--realm", default="", help="the realm of shadow-style lines")
    imp.add_argument("--scheme", metavar="NAME",
                     help="the scheme of hashes written without a {SCHEME} prefix "
                          "(e.g. SSHA, SHA512-CRYPT)")
    imp.add_argument("--allow-plain", action="store_true",
                     help="the file holds cleartext passwords: hash them on import")

    _leaf(_command(sub, "init", "create the user store (the SQL table) if it is missing"))
    _leaf(_command(sub, "check-config",
                   "load the daemon's configuration and open every backend, as a start would"))
    _leaf(_command(sub, "status", "ask the running daemon how it is doing"))

    cache = _command(sub, "cache", "the running daemon's credential cache")
    flush = _leaf(_command(cache.add_subparsers(dest="action", required=True, metavar="ACTION"),
                           "flush", "forget cached answers: one user's, or all"))
    flush.add_argument("login", nargs="?")
    flush.add_argument("--realm", default=None, help="the login's realm")

    throttle = _command(sub, "throttle", "the running daemon's brute-force penalties")
    t_actions = throttle.add_subparsers(dest="action", required=True, metavar="ACTION")
    _selector(_leaf(_command(t_actions, "show", "a login's or an address's penalty (with "
                                                "neither: how many are penalised)")), False)
    _selector(_leaf(_command(t_actions, "clear", "lift the penalty of a login or an address")),
              True)

    pw = _leaf(_command(sub, "pw", "hash a password, or test one against a hash (like "
                                   "doveadm pw)"))
    pw.add_argument("-s", "--scheme", metavar="SCHEME",
                    help="the scheme (default: the one new users get)")
    pw.add_argument("-t", "--test", metavar="HASH", help="check the password against HASH")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of stdin")

    sql = _command(sub, "sql", "the SQL store's schema")
    schema = _leaf(_command(sql.add_subparsers(dest="action", required=True, metavar="ACTION"),
                            "schema", "print the CREATE TABLE statements for a database"))
    schema.add_argument("dialect", choices=["sqlite", "postgresql", "mysql",
                                            "postfixadmin-postgresql", "postfixadmin-mysql"])
    return p
