"""The ``[sql]`` table: keys, validation, and the SQLAlchemy engine they describe.

Every key is checked at start (a bad one stops the start with one line naming it and the
fix).  ``make_engine`` turns the timeouts into each driver's own settings: psycopg's
``connect_timeout``, ``statement_timeout`` and ``tcp_user_timeout``; PyMySQL's
``connect_timeout``/``read_timeout``/``write_timeout``; SQLite's busy timeout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from ... import passwords
from ...errors import ConfigError
from ...hardening import create
from ...options import load, option

DEFAULT_URL = "sqlite:////var/lib/saslauthpy/users.db"
BINDS = ("login", "realm", "address", "service")

# dialect -> the one driver we support (and tune timeouts for), and its pip package
DRIVERS = {
    "sqlite": ("pysqlite", "(part of Python)"),
    "postgresql": ("psycopg", "psycopg[binary]"),
    "mysql": ("pymysql", "PyMySQL"),
    "mariadb": ("pymysql", "PyMySQL"),
}


@dataclass(frozen=True)
class Options:
    """The ``[sql]`` table."""

    url: str = option(DEFAULT_URL, "database URL (sqlite, postgresql, mysql, mariadb)")
    query: str = option("", "SELECT on your own schema with :login :realm :address :service "
                        "binds; empty = the built-in table")
    default_scheme: str = option("", "scheme of stored hashes without a {SCHEME} prefix")
    connect_timeout: float = option(5.0, "seconds to open a connection", positive=True,
                                    duration=True)
    query_timeout: float = option(5.0, "seconds one query may take", positive=True,
                                  duration=True)
    pool_size: int | None = option(None, "connections kept open (default: -n)", min=1)
    max_overflow: int = option(5, "connections opened beyond pool_size under load")
    pool_timeout: float | None = option(None, "seconds to wait for a free connection "
                                        "(default: connect_timeout)", positive=True,
                                        duration=True)
    pool_recycle: float = option(1800.0, "seconds before a connection is replaced",
                                 positive=True, duration=True)
    fold_case: bool | None = option(None, "logins that differ only in case or blanks reach "
                                    "one account (default: true with query, false for the "
                                    "built-in table, which compares exactly)")


@dataclass(frozen=True)
class Settings:
    """The options resolved: the URL parsed, defaults that follow other values filled in."""

    url: URL
    query: str = ""
    default_scheme: str | None = None
    connect_timeout: float = 5.0
    query_timeout: float = 5.0
    pool_size: int = 5
    max_overflow: int = 5
    pool_timeout: float = 5.0
    pool_recycle: float = 1800.0
    fold_case: bool = False  # logins differing only in case or blanks are one account

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()


def parse_options(options: Mapping[str, Any] | Options | None, threads: int = 5) -> Settings:
    o = load(Options, options, "[sql] ")
    query = o.query.strip()
    if query:
        _check_query_binds(query)
    return Settings(
        url=parse_url(o.url),
        query=query,
        default_scheme=_scheme(o.default_scheme),
        connect_timeout=o.connect_timeout,
        query_timeout=o.query_timeout,
        pool_size=o.pool_size or max(threads, 1),
        max_overflow=o.max_overflow,
        pool_timeout=o.pool_timeout or o.connect_timeout,
        pool_recycle=o.pool_recycle,
        fold_case=o.fold_case if o.fold_case is not None else bool(query),
    )


def parse_url(raw: str) -> URL:
    """Validate the URL; a bare ``postgresql://`` or ``mysql://`` means our driver."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"[sql] url: {raw!r} is not a database URL; e.g. "
            f'"sqlite:////var/lib/saslauthpy/users.db" or '
            f'"postgresql+psycopg://user@host/db"'
        ) from None
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend not in DRIVERS:
        raise ConfigError(
            f"[sql] url: database {backend!r} is not supported; "
            f"use one of {', '.join(sorted(DRIVERS))}"
        )
    want, package = DRIVERS[backend]
    if "+" not in url.drivername:
        url = url.set(drivername=f"{backend}+{want}")
    elif driver != want:
        raise ConfigError(
            f"[sql] url: driver {driver!r} is not supported for {backend}; "
            f"write {backend}+{want}://..."
        )
    try:
        url.get_dialect().import_dbapi()
    except ImportError:
        raise ConfigError(
            f"[sql] url: the {backend} driver is not installed: pip install '{package}'"
        ) from None
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError(
            "[sql] url: an in-memory SQLite database would be empty; give a file, "
            'e.g. "sqlite:////var/lib/saslauthpy/users.db"'
        )
    return url


def _scheme(value: str) -> str | None:
    if not value.strip():
        return None
    scheme = value.strip().strip("{}")
    if not passwords.is_known_scheme(scheme):
        raise ConfigError(
            f"[sql] default_scheme: unknown scheme {scheme!r}; e.g. \"PLAIN\" or "
            f'"SHA512-CRYPT"'
        )
    return scheme


def _check_query_binds(query: str) -> None:
    names = set(text(query).compile().binds)
    unknown = sorted(names - set(BINDS))
    if unknown:
        raise ConfigError(
            f"[sql] query: unknown parameter :{unknown[0]}; "
            f"available: {', '.join(':' + b for b in BINDS)}"
        )
    if not names & {"login", "address"}:
        raise ConfigError("[sql] query: must select by :login or :address (it uses neither)")


def make_engine(s: Settings, *, autocommit: bool) -> Engine:
    connect_args: dict[str, Any]
    if s.dialect == "sqlite":
        connect_args = {"timeout": s.query_timeout}  # wait this long for a writer's lock
        _prepare_sqlite_file(s.url.database or "")
    elif s.dialect == "postgresql":
        ms = int(s.query_timeout * 1000)
        extra = s.url.query.get("options", "")
        if isinstance(extra, tuple):
            extra = " ".join(extra)
        connect_args = {
            "connect_timeout": max(1, round(s.connect_timeout)),
            "options": f"{extra} -c statement_timeout={ms}".strip(),
            "tcp_user_timeout": ms,
        }
    else:  # mysql / mariadb via PyMySQL
        connect_args = {"connect_timeout": s.connect_timeout, "read_timeout": s.query_timeout,
                        "write_timeout": s.query_timeout}
    return create_engine(
        s.url,
        connect_args=connect_args,
        pool_size=s.pool_size,
        max_overflow=s.max_overflow,
        pool_timeout=s.pool_timeout,
        pool_recycle=s.pool_recycle,
        hide_parameters=True,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )


def _prepare_sqlite_file(path: str) -> None:
    """Create the parent directory (0750) and the file (0640): it holds password hashes."""
    if not path or os.path.exists(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, mode=0o750, exist_ok=True)
        os.close(create(path, os.O_WRONLY, 0o640))
    except OSError as exc:
        raise ConfigError(
            f"[sql] url: cannot create the SQLite file {path}: {exc.strerror}; "
            f"create {parent} writable for this user or choose another path"
        ) from None
