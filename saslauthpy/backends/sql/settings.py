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

DEFAULT_URL = "sqlite:////var/lib/saslauthpy/users.db"
BINDS = ("login", "realm", "address", "service")
KEYS = {"url", "query", "default_scheme", "connect_timeout", "query_timeout", "pool_size",
        "max_overflow", "pool_timeout", "pool_recycle"}

# dialect -> the one driver we support (and tune timeouts for), and its pip package
DRIVERS = {
    "sqlite": ("pysqlite", "(part of Python)"),
    "postgresql": ("psycopg", "psycopg[binary]"),
    "mysql": ("pymysql", "PyMySQL"),
    "mariadb": ("pymysql", "PyMySQL"),
}


@dataclass(frozen=True)
class Settings:
    url: URL
    query: str = ""
    default_scheme: str | None = None
    connect_timeout: float = 5.0
    query_timeout: float = 5.0
    pool_size: int = 5
    max_overflow: int = 5
    pool_timeout: float = 5.0
    pool_recycle: float = 1800.0

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()


def parse_options(options: Mapping[str, Any], threads: int = 5) -> Settings:
    unknown = sorted(set(options) - KEYS)
    if unknown:
        raise ConfigError(
            f"[sql] unknown key {unknown[0]!r}; known keys: {', '.join(sorted(KEYS))}"
        )
    url = parse_url(_string(options, "url", DEFAULT_URL))
    query = _string(options, "query", "").strip()
    if query:
        _check_query_binds(query)
    connect_timeout = _number(options, "connect_timeout", 5.0)
    return Settings(
        url=url,
        query=query,
        default_scheme=_scheme(options.get("default_scheme")),
        connect_timeout=connect_timeout,
        query_timeout=_number(options, "query_timeout", 5.0),
        pool_size=_number(options, "pool_size", max(threads, 1), whole=True),
        max_overflow=_number(options, "max_overflow", 5, whole=True, positive=False),
        pool_timeout=_number(options, "pool_timeout", connect_timeout),
        pool_recycle=_number(options, "pool_recycle", 1800.0),
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


def _number(options: Mapping[str, Any], key: str, default: float, *, whole: bool = False,
            positive: bool = True) -> Any:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"[sql] {key}: expected a number, got {value!r}")
    if whole and value != int(value):
        raise ConfigError(f"[sql] {key}: expected a whole number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"[sql] {key}: must be {'positive' if positive else '0 or more'}")
    return int(value) if whole else float(value)


def _string(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"[sql] {key}: expected a string, got {value!r}")
    return value


def _scheme(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"[sql] default_scheme: expected a scheme name, got {value!r}")
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
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o640))
    except OSError as exc:
        raise ConfigError(
            f"[sql] url: cannot create the SQLite file {path}: {exc.strerror}; "
            f"create {parent} writable for this user or choose another path"
        ) from None
