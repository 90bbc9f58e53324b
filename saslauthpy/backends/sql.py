"""SQL backend: the built-in users table (SQLite by default) or a query on an existing schema.

Two ways to find a password hash:

* the built-in table ``saslauthpy_users`` (login, realm, password, enabled, created,
  changed), created on first use, managed with ``saslauthpy-admin`` (``Store``);
* ``query``: a SELECT on the administrator's own schema (PostfixAdmin's ``mailbox`` ...)
  with named binds ``:login :realm :address :service``.  User input is only ever bound.

Timeouts really bound the wait: ``connect_timeout`` for new connections (psycopg and
PyMySQL enforce it client-side); ``query_timeout`` as PostgreSQL's ``statement_timeout``
plus a client-side watchdog that shuts the socket of a connection whose server stopped
answering, and as PyMySQL's ``read_timeout``/``write_timeout``.  A stale pooled
connection (the server restarted) is detected on use and the query retried once on a
fresh one.  Every database error becomes a TEMPFAIL answer, never an exception.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    create_engine,
    delete,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from .. import passwords
from ..protocol import Request
from . import base
from .base import FAIL, OK, UNKNOWN, Answer, ConfigError, NoSuchUser, Result, User, UserExists

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("saslauthpy.sql")

DEFAULT_URL = "sqlite:////var/lib/saslauthpy/users.db"
TABLE = "saslauthpy_users"
BINDS = ("login", "realm", "address", "service")
MAX_NAME = 255

# dialect -> the one driver we support (and tune timeouts for), and its pip package
DRIVERS = {
    "sqlite": ("pysqlite", "(part of Python)"),
    "postgresql": ("psycopg", "psycopg[binary]"),
    "mysql": ("pymysql", "PyMySQL"),
    "mariadb": ("pymysql", "PyMySQL"),
}

metadata = MetaData()
users_table = Table(
    TABLE,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(MAX_NAME), nullable=False),
    Column("realm", String(MAX_NAME), nullable=False, server_default=""),
    Column("password", String(512), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("created", DateTime, nullable=False),  # UTC
    Column("changed", DateTime, nullable=False),  # UTC
    UniqueConstraint("login", "realm", name=f"{TABLE}_login_realm"),
    # case-sensitive matching as in SQLite and PostgreSQL (a _bin collation exists in both
    # MariaDB and MySQL; lookups compare exactly in Python as well)
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)


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


KEYS = {"url", "query", "default_scheme", "connect_timeout", "query_timeout", "pool_size",
        "max_overflow", "pool_timeout", "pool_recycle"}


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
    scheme = options.get("default_scheme")
    if scheme is not None:
        if not isinstance(scheme, str) or not scheme.strip():
            raise ConfigError(f"[sql] default_scheme: expected a scheme name, got {scheme!r}")
        scheme = scheme.strip().strip("{}")
        try:
            passwords.verify(b"x", "x", default_scheme=scheme)
        except passwords.UnknownScheme:
            raise ConfigError(
                f"[sql] default_scheme: unknown scheme {scheme!r}; e.g. \"PLAIN\" or "
                f'"SHA512-CRYPT"'
            ) from None
        except Exception:  # noqa: BLE001 - "x" is merely not a valid hash of that scheme
            pass
    connect_timeout = _number(options, "connect_timeout", 5.0)
    return Settings(
        url=url,
        query=query,
        default_scheme=scheme,
        connect_timeout=connect_timeout,
        query_timeout=_number(options, "query_timeout", 5.0),
        pool_size=_number(options, "pool_size", max(threads, 1), whole=True),
        max_overflow=_number(options, "max_overflow", 5, whole=True, positive=False),
        pool_timeout=_number(options, "pool_timeout", connect_timeout),
        pool_recycle=_number(options, "pool_recycle", 1800.0),
    )


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
    connect_args: dict[str, Any] = {}
    kw: dict[str, Any] = {}
    dialect = s.dialect
    if dialect == "sqlite":
        connect_args["timeout"] = s.query_timeout  # wait this long for a writer's lock
        _prepare_sqlite_file(s.url.database or "")
    elif dialect == "postgresql":
        ms = int(s.query_timeout * 1000)
        extra = s.url.query.get("options", "")
        if isinstance(extra, tuple):
            extra = " ".join(extra)
        connect_args["connect_timeout"] = max(1, round(s.connect_timeout))
        connect_args["options"] = f"{extra} -c statement_timeout={ms}".strip()
        connect_args["tcp_user_timeout"] = ms
    else:  # mysql / mariadb via PyMySQL
        connect_args["connect_timeout"] = s.connect_timeout
        connect_args["read_timeout"] = s.query_timeout
        connect_args["write_timeout"] = s.query_timeout
    if autocommit:
        kw["isolation_level"] = "AUTOCOMMIT"
    return create_engine(
        s.url,
        connect_args=connect_args,
        pool_size=s.pool_size,
        max_overflow=s.max_overflow,
        pool_timeout=s.pool_timeout,
        pool_recycle=s.pool_recycle,
        hide_parameters=True,
        **kw,
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


def create_table(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


def address_of(login: str, realm: str) -> str:
    if not realm or "@" in login:
        return login
    return f"{login}@{realm}"


def candidates(login: str, realm: str) -> list[tuple[str, str]]:
    """(login, realm) keys of the built-in table to try, best first.

    * the request as it came: ``(login, realm)``;
    * with ``-r`` saslauthd turns ``alice`` + ``example.com`` into login
      ``alice@example.com`` and still passes the realm: also try ``(alice, example.com)``;
    * a full address with no realm (``alice@example.com``, realm empty): also try
      ``(alice, example.com)``.
    """
    out = [(login, realm)]
    if realm and login.endswith("@" + realm) and len(login) > len(realm) + 1:
        out.append((login[: -len(realm) - 1], realm))
    elif not realm and "@" in login:
        local, _, domain = login.rpartition("@")
        if local and domain:
            out.append((local, domain))
    return out


def _enabled(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "y", "yes", "on")
    if isinstance(value, bytes):
        return value.strip() not in (b"", b"\x00", b"0")
    return bool(value)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class _Watchdog:
    """Shut a PostgreSQL connection's socket when a query outlives its deadline.

    statement_timeout is enforced by the server; a server that accepts bytes but no
    longer answers (hung, stopped, its host frozen) needs a client-side bound too.
    Shutting the socket makes libpq's wait return at once with a broken connection.
    """

    def __init__(self, conn: Any, seconds: float):
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self._fd = -1
        try:
            self._fd = conn.connection.dbapi_connection.pgconn.socket
        except Exception:  # noqa: BLE001 - no socket to watch: nothing to do
            return
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            try:
                dup = socket.socket(fileno=os.dup(self._fd))
                try:
                    dup.shutdown(socket.SHUT_RDWR)
                finally:
                    dup.close()
            except OSError:
                pass

    def disarm(self) -> None:
        with self._lock:
            self._done = True
        if self._fd >= 0:
            self._timer.cancel()


class QueryTimeout(SQLAlchemyError):
    """The watchdog cut a query the server did not answer."""


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    msg = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {msg[0] if msg else ''}".strip()


class Backend(base.Backend):
    name = "sql"

    def __init__(self, config: Config, options: Mapping[str, Any]):
        super().__init__(config, options)
        threads = getattr(config, "threads", 5) if config is not None else 5
        self.settings = parse_options(options, threads)
        self.engine: Engine | None = None
        self._table_ready = bool(self.settings.query)
        self._down = False
        self._state_lock = threading.Lock()
        self._table_lock = threading.Lock()
        if self.settings.query:
            self._stmt = text(self.settings.query)
        else:
            self._stmt = None

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        self.engine = make_engine(self.settings, autocommit=True)
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            self._down = True
            log.warning(
                "database %s unreachable at start (%s); answering tempfail until it is back",
                self._where(), _short(exc),
            )
            return
        try:
            if self.settings.query:
                self._probe_query(conn)
            else:
                conn.close()
                conn = None
                self._ensure_table()
        finally:
            if conn is not None:
                conn.close()

    def _probe_query(self, conn: Any) -> None:
        """Run the configured query once with empty values: a typo stops the start."""
        try:
            result = conn.execute(self._stmt, self._params("", "", ""))
            width = len(result.keys())
            result.close()
        except DBAPIError as exc:
            if exc.connection_invalidated:
                self._down = True
                log.warning("database %s went away during start (%s)", self._where(), _short(exc))
                return
            raise ConfigError(f"[sql] query fails on the database: {_short(exc)}") from None
        if width not in (1, 2):
            raise ConfigError(
                f"[sql] query returns {width} columns; it must return the password hash "
                f"and optionally a second column saying whether the account is enabled"
            )

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        with self._table_lock:  # one creator when the workers all find it missing
            self._create_table()

    def _create_table(self) -> None:
        if self._table_ready:
            return
        assert self.engine is not None
        try:
            create_table(self.engine)
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_operational(exc):
                raise
            raise ConfigError(
                f"[sql] cannot create table {TABLE}: {_short(exc)}; create it with "
                f"backends/sql/{self.settings.dialect}.sql or grant CREATE"
            ) from None
        self._table_ready = True

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def _where(self) -> str:
        return self.settings.url.render_as_string(hide_password=True)

    # -- checking ----------------------------------------------------------------------------

    def _params(self, login: str, realm: str, service: str) -> dict[str, str]:
        return {"login": login, "realm": realm, "service": service,
                "address": address_of(login, realm)}

    def check(self, request: Request) -> Answer:
        try:
            return self._check(request)
        except SQLAlchemyError as exc:
            self._went_down(exc)
            return base.tempfail(f"database unavailable: {_short(exc)}")
        except UnicodeError:
            return UNKNOWN  # a login no database text column can hold
        except Exception as exc:  # noqa: BLE001 - never let a request crash the daemon
            log.exception("unexpected error in the sql backend")
            return base.tempfail(f"sql backend error: {type(exc).__name__}")

    def _check(self, request: Request) -> Answer:
        if self.engine is None:
            self.open()
        row = self._lookup(request)
        if row is None:
            return UNKNOWN
        if isinstance(row, Answer):
            return row
        stored, enabled = row
        if not enabled:
            return Answer(Result.FAIL, "account disabled")
        if isinstance(stored, (bytes, bytearray, memoryview)):
            stored = bytes(stored).decode("utf-8", "replace")
        if not stored:
            return Answer(Result.FAIL, "no password set")
        try:
            good = passwords.verify(request.password, stored, self.settings.default_scheme)
        except passwords.UnknownScheme as exc:
            log.warning(
                "user %r: stored password has unknown scheme %r; rehash it or set "
                "[sql] default_scheme", request.login, exc.scheme,
            )
            return Answer(Result.FAIL, f"unknown password scheme {exc.scheme!r}")
        except Exception as exc:  # noqa: BLE001 - a malformed hash is this user's problem only
            log.warning("user %r: stored password hash is malformed (%s)",
                        request.login, type(exc).__name__)
            return Answer(Result.FAIL, "malformed password hash")
        return OK if good else FAIL

    def _lookup(self, request: Request) -> tuple[Any, bool] | Answer | None:
        if self.settings.query:
            params = self._params(request.login, request.realm, request.service)
            rows = self._fetch(self._stmt, params)
            if not rows:
                return None
            if len(rows) > 1:
                log.warning("[sql] query returned %d rows for login %r; refusing",
                            len(rows), request.login)
                return Answer(Result.FAIL, "query returned several rows")
            row = rows[0]
            return row[0], (_enabled(row[1]) if len(row) > 1 else True)
        keys = candidates(request.login, request.realm)
        t = users_table
        stmt = select(t.c.login, t.c.realm, t.c.password, t.c.enabled).where(
            or_(*(and_(t.c.login == lg, t.c.realm == rl) for lg, rl in keys))
        )
        self._ensure_table()
        rows = self._fetch(stmt, None)
        # exact comparison here too, whatever the column collation says
        found = {(r.login, r.realm): r for r in rows}
        for key in keys:
            if key in found:
                return found[key].password, _enabled(found[key].enabled)
        return None

    def _fetch(self, stmt: Any, params: dict[str, str] | None) -> list[Any]:
        assert self.engine is not None
        started = time.monotonic()
        for attempt in (1, 2):
            dog = None
            try:
                with self.engine.connect() as conn:
                    if self.settings.dialect == "postgresql":
                        dog = _Watchdog(conn, self.settings.query_timeout + 0.5)
                    rows = conn.execute(stmt, params).all() if params else \
                        conn.execute(stmt).all()
                    dog and dog.disarm()
                self._came_back()
                return rows
            except DBAPIError as exc:
                if dog is not None:
                    dog.disarm()
                    if dog.fired:
                        raise QueryTimeout(
                            f"no answer within {self.settings.query_timeout:g} s") from exc
                # a pooled connection the server dropped (restart): one retry, fresh one
                quick = time.monotonic() - started < self.settings.query_timeout
                if attempt == 1 and exc.connection_invalidated and quick:
                    continue
                raise
        raise AssertionError("unreachable")

    def _went_down(self, exc: BaseException) -> None:
        with self._state_lock:
            if self._down:
                return
            self._down = True
        log.warning("database %s unavailable (%s); answering tempfail until it is back",
                    self._where(), _short(exc))

    def _came_back(self) -> None:
        if not self._down:
            return
        with self._state_lock:
            if not self._down:
                return
            self._down = False
        log.warning("database %s is reachable again", self._where())


def _is_operational(exc: DBAPIError) -> bool:
    return type(exc).__name__ in ("OperationalError", "InterfaceError")


class Store(base.Store):
    """``saslauthpy-admin user ...`` on the built-in table, for every supported database."""

    def __init__(self, config: Config, options: Mapping[str, Any]):
        super().__init__(config, options)
        self.settings = parse_options(options)
        if self.settings.query:
            raise ConfigError(
                "[sql] query is set: users live in your own schema, which saslauthpy-admin "
                f"does not manage (it manages only the built-in table {TABLE})"
            )
        self.engine = make_engine(self.settings, autocommit=False)
        self._ready = False

    def create_table(self) -> None:
        """``saslauthpy-admin init``: create the built-in table if it is missing."""
        create_table(self.engine)
        self._ready = True

    init = create_table

    def _begin(self):
        if not self._ready:
            self.create_table()
        return self.engine.begin()

    def add(self, login: str, realm: str, password: bytes) -> None:
        _check_names(login, realm)
        hashed = passwords.hash_password(password)
        now = _now()
        try:
            with self._begin() as conn:
                conn.execute(insert(users_table).values(
                    login=login, realm=realm, password=hashed, enabled=True,
                    created=now, changed=now))
        except IntegrityError:
            raise UserExists(_name(login, realm)) from None

    def _update(self, login: str, realm: str, **values: Any) -> None:
        t = users_table
        with self._begin() as conn:
            res = conn.execute(update(t).where(t.c.login == login, t.c.realm == realm)
                               .values(changed=_now(), **values))
            if res.rowcount == 0:
                raise NoSuchUser(_name(login, realm))

    def set_password(self, login: str, realm: str, password: bytes) -> None:
        self._update(login, realm, password=passwords.hash_password(password))

    def set_enabled(self, login: str, realm: str, enabled: bool) -> None:
        self._update(login, realm, enabled=enabled)

    def delete(self, login: str, realm: str) -> None:
        t = users_table
        with self._begin() as conn:
            res = conn.execute(delete(t).where(t.c.login == login, t.c.realm == realm))
            if res.rowcount == 0:
                raise NoSuchUser(_name(login, realm))

    def users(self, realm: str | None = None) -> Iterator[User]:
        t = users_table
        stmt = select(t.c.login, t.c.realm, t.c.enabled, t.c.created, t.c.changed)
        if realm is not None:
            stmt = stmt.where(t.c.realm == realm)
        stmt = stmt.order_by(t.c.realm, t.c.login)
        with self._begin() as conn:
            rows = conn.execute(stmt).all()
        for r in rows:
            yield User(r.login, r.realm, _enabled(r.enabled), _iso(r.created), _iso(r.changed))

    def add_hashed_many(self, rows: Iterable[tuple[str, str, str]]) -> list[tuple[str, str]]:
        """Insert already-hashed users in one transaction; existing (login, realm) pairs are
        left untouched and returned.  A pair repeated inside ``rows`` counts as existing."""
        batch: dict[tuple[str, str], str] = {}
        existing: list[tuple[str, str]] = []
        for login, realm, hashed in rows:
            if (login, realm) in batch:
                existing.append((login, realm))
            else:
                batch[(login, realm)] = hashed
        if not batch:
            return existing
        now = _now()
        values = [{"login": lg, "realm": rl, "password": hashed, "enabled": True,
                   "created": now, "changed": now} for (lg, rl), hashed in batch.items()]
        with self._begin() as conn:
            if self.settings.dialect in ("postgresql", "sqlite"):
                inserted = self._insert_new(conn, values)
            else:
                inserted = self._insert_absent(conn, values)
        existing.extend(key for key in batch if key not in inserted)
        return existing

    def _insert_new(self, conn: Any, values: list[dict[str, Any]]) -> set[tuple[str, str]]:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING: one round trip, no existence query
        (whose plan, prepared while the table was small, slows down as the table grows)."""
        t = users_table
        if self.settings.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = (dialect_insert(t).on_conflict_do_nothing(index_elements=["login", "realm"])
                .returning(t.c.login, t.c.realm))
        return {(r.login, r.realm) for r in conn.execute(stmt, values)}

    def _insert_absent(self, conn: Any, values: list[dict[str, Any]]) -> set[tuple[str, str]]:
        """MariaDB/MySQL: look the batch's logins up, insert the others."""
        t = users_table
        there: set[tuple[str, str]] = set()
        logins = sorted({v["login"] for v in values})
        for i in range(0, len(logins), 500):
            q = select(t.c.login, t.c.realm).where(t.c.login.in_(logins[i:i + 500]))
            there.update((r.login, r.realm) for r in conn.execute(q))
        new = [v for v in values if (v["login"], v["realm"]) not in there]
        if new:
            conn.execute(insert(t), new)
        return {(v["login"], v["realm"]) for v in new}

    def close(self) -> None:
        self.engine.dispose()


def _check_names(login: str, realm: str) -> None:
    if not login or len(login) > MAX_NAME or len(realm) > MAX_NAME:
        raise ValueError(f"login and realm must be 1..{MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in login + realm):
        raise ValueError("login and realm must not contain control characters")


def _name(login: str, realm: str) -> str:
    return f"{login}@{realm}" if realm else login


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value or "")
