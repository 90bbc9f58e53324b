"""SQL backend: the built-in users table (SQLite by default) or a query on an existing schema.

Two ways to find a password hash:

* the built-in table ``saslauthpy_users`` (login, realm, password, enabled, created,
  changed), created on first use, managed with ``saslauthpy-admin`` (``Store``, in
  ``store``);
* ``query``: a SELECT on the administrator's own schema (PostfixAdmin's ``mailbox`` ...)
  with named binds ``:login :realm :address :service``.  User input is only ever bound.

Timeouts really bound the wait (``settings`` maps them onto each driver):
``connect_timeout`` for new connections; ``query_timeout`` as PostgreSQL's
``statement_timeout`` plus a client-side watchdog (``watchdog``) that shuts the socket
of a connection whose server stopped answering, and as PyMySQL's
``read_timeout``/``write_timeout``.  A stale pooled connection (the server restarted) is
detected on use and the query retried once on a fresh one.  Every database error becomes
a TEMPFAIL answer, never an exception; a database that cannot be reached at start is
logged and retried on the next request.

The identity of a login (what the throttle counts and flushes find): the built-in table's
canonical (login, realm) pair, compared exactly as the lookup does; for a query, the
values it binds (:login, :realm, :address), case-folded unless ``fold_case = false``
(most mail schemas run on case-insensitive collations).  An unknown or disabled user is
checked against a decoy hash (``decoy``), so that it takes as long as a wrong password.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, or_, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from ... import passwords
from ...decoy import Decoy
from ...errors import ConfigError, TooCostly
from ...protocol import Request
from .. import base
from ..base import FAIL, OK, UNKNOWN, Answer, Result, fold
from .settings import DEFAULT_URL, Options, make_engine, parse_options, parse_url
from .store import TABLE, Store, create_table, enabled, users_table
from .watchdog import Watchdog

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ...config import Config

__all__ = ["Backend", "Store", "Options", "DEFAULT_URL", "parse_options", "parse_url",
           "candidates", "address_of"]

log = logging.getLogger("saslauthpy.sql")

# PyMySQL raises every server error it does not know (unknown column, CREATE denied ...)
# as OperationalError: only these MariaDB/MySQL codes say "busy or gone, try again later"
# (too many connections, shutdown, lock wait timeout, deadlock, statement time limits,
# connection lost)
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 1969, 2002, 2003, 2006, 2013, 3024}


def _lookup_statement(keys: int) -> Any:
    """The built-in table's lookup for ``keys`` (login, realm) pairs, bound as l0 r0 l1 r1."""
    t = users_table
    return select(t.c.login, t.c.realm, t.c.password, t.c.enabled).where(or_(*(
        and_(t.c.login == bindparam(f"l{i}"), t.c.realm == bindparam(f"r{i}"))
        for i in range(keys))))


LOOKUPS = {1: _lookup_statement(1), 2: _lookup_statement(2)}  # candidates() gives 1 or 2


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


def canonical(login: str, realm: str) -> tuple[str, str]:
    """The built-in table's key that every spelling of one address shares: the
    ``candidates`` of ``alice`` + ``example.com``, ``alice@example.com`` with no realm
    and the ``-r`` form all give ``(alice, example.com)``."""
    keys = candidates(login, realm)
    return keys[-1]


class QueryTimeout(SQLAlchemyError):
    """The watchdog cut a query the server did not answer."""


class Refused(Exception):
    """The database will not do what the configuration asks (our table cannot be created,
    the configured query fails): a ConfigError at start, a TEMPFAIL once serving."""


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    msg = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {msg[0] if msg else ''}".strip()


def _transient(exc: DBAPIError) -> bool:
    """A lost connection, a timeout, a busy server: worth trying again later."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL: (code, message)
        return args[0] in _MYSQL_TRANSIENT
    return True  # psycopg sorts errors by SQLSTATE: operational = connection, timeout, lock


class Backend(base.Backend):
    name = "sql"
    Options = Options

    def __init__(self, config: Config, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        self.settings = parse_options(self.options, config.threads)
        self.inline = self.settings.dialect == "sqlite"  # a local file, no network
        self.engine: Engine | None = None
        self._query = text(self.settings.query) if self.settings.query else None
        self._binds = set(self._query.compile().binds) if self._query is not None else set()
        self.decoy = Decoy()
        self._table_ready = self._query is not None  # no table of ours to create
        self._table_lock = threading.Lock()
        self._down = False
        self._refused = False  # the table could not be created (logged once)
        self._state_lock = threading.Lock()
        self._watchdog = (Watchdog(self.settings.query_timeout + 0.5)
                          if self.settings.dialect == "postgresql" else None)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Connect once: a query the database rejects, or a table we may not create, stops
        the start (ConfigError); a database that is down or slow only logs a warning."""
        try:
            self._connect()
        except Refused as exc:
            raise ConfigError(str(exc)) from None

    def _connect(self) -> None:
        self.engine = make_engine(self.settings, autocommit=True)
        try:
            with self.engine.connect() as conn:
                if self._query is not None:
                    self._probe_query(conn)
            self._ensure_table()
        except SQLAlchemyError as exc:
            self._went_down(exc, "unreachable at start")

    def _probe_query(self, conn: Connection) -> None:
        """Run the configured query once with empty values: a typo stops the start."""
        try:
            result = conn.execute(self._query, self._params("", "", ""))
            width = len(result.keys())
            result.close()
        except DBAPIError as exc:
            if _transient(exc):
                raise
            raise Refused(f"[sql] query fails on the database: {_short(exc)}") from None
        if width not in (1, 2):
            raise Refused(
                f"[sql] query returns {width} columns; it must return the password hash "
                f"and optionally a second column saying whether the account is enabled"
            )

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        with self._table_lock:  # one creator when the workers all find it missing
            if self._table_ready:
                return
            assert self.engine is not None
            try:
                create_table(self.engine)
            except DBAPIError as exc:
                if _transient(exc):
                    raise
                raise Refused(
                    f"[sql] cannot create table {TABLE}: {_short(exc)}; create it with the "
                    f"statements 'saslauthpy-admin sql schema {self.settings.dialect}' prints, "
                    f"or grant CREATE"
                ) from None
            self._table_ready = True

    def close(self) -> None:
        super().close()
        if self._watchdog is not None:
            self._watchdog.close()
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def identity(self, login: str, realm: str) -> tuple[str, str]:
        if self._query is None:
            ident = canonical(login, realm)
        elif self._binds & {"login", "realm"}:
            ident = (login if "login" in self._binds else address_of(login, realm),
                     realm if "realm" in self._binds or "address" in self._binds else "")
        else:  # :address only
            ident = (address_of(login, realm), "")
        if self.settings.fold_case:
            return fold(ident[0]), fold(ident[1])
        return ident

    def _where(self) -> str:
        return self.settings.url.render_as_string(hide_password=True)

    # -- checking ----------------------------------------------------------------------------

    def check(self, request: Request) -> Answer:
        try:
            return self._check(request)
        except SQLAlchemyError as exc:
            self._went_down(exc, "unavailable")
            return base.tempfail(f"database unavailable: {_short(exc)}")
        except Refused as exc:  # back after a start without it, and refuses our table
            if not self._refused:
                self._refused = True
                log.error("%s; answering tempfail", exc)
            return base.tempfail(str(exc))
        except UnicodeError:
            return UNKNOWN  # a login no database text column can hold
        except Exception as exc:  # noqa: BLE001 - never let a request crash the daemon
            log.exception("unexpected error in the sql backend")
            return base.tempfail(f"sql backend error: {type(exc).__name__}")

    def _check(self, request: Request) -> Answer:
        if self.engine is None:
            self._connect()
        found = self._row(request)
        if isinstance(found, Answer) or not found[1] or not found[0]:
            self.decoy.waste(request.password)  # as long as a wrong password takes
        if isinstance(found, Answer):
            return found
        stored, is_enabled = found
        if not is_enabled:
            return Answer(Result.FAIL, "account disabled")
        if isinstance(stored, (bytes, bytearray, memoryview)):
            stored = bytes(stored).decode("utf-8", "replace")
        if not stored:
            return Answer(Result.FAIL, "no password set")
        try:
            good = passwords.verify(request.password, stored, self.settings.default_scheme)
        except TooCostly as exc:
            log.warning("user %r: %s; answering NO", request.login, exc)
            return Answer(Result.FAIL, "password hash too costly to check")
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
        self.decoy.learn(stored)
        return OK if good else FAIL

    def _params(self, login: str, realm: str, service: str) -> dict[str, str]:
        return {"login": login, "realm": realm, "service": service,
                "address": address_of(login, realm)}

    def _row(self, request: Request) -> tuple[Any, bool] | Answer:
        """(stored hash, enabled) of the request's user, or the answer when there is none."""
        if self._query is not None:
            rows = self._fetch(self._query,
                               self._params(request.login, request.realm, request.service))
            if len(rows) > 1:
                log.warning("[sql] query returned %d rows for login %r; refusing",
                            len(rows), request.login)
                return Answer(Result.FAIL, "query returned several rows")
            if not rows:
                return UNKNOWN
            row = rows[0]
            return row[0], (enabled(row[1]) if len(row) > 1 else True)
        keys = candidates(request.login, request.realm)
        params = {}
        for i, (login, realm) in enumerate(keys):
            params[f"l{i}"], params[f"r{i}"] = login, realm
        self._ensure_table()
        # exact comparison here too, whatever the column collation says
        found = {(r.login, r.realm): r for r in self._fetch(LOOKUPS[len(keys)], params)}
        for key in keys:
            if key in found:
                return found[key].password, enabled(found[key].enabled)
        return UNKNOWN

    def _fetch(self, stmt: Any, params: dict[str, str]) -> list[Any]:
        assert self.engine is not None
        started = time.monotonic()
        for attempt in (1, 2):
            guard = None
            try:
                with self.engine.connect() as conn, self._watch(conn) as guard:
                    rows = conn.execute(stmt, params).all()
                self._came_back()
                return rows
            except DBAPIError as exc:
                if guard is not None and guard.fired:
                    raise QueryTimeout(
                        f"no answer within {self.settings.query_timeout:g} s") from exc
                # a pooled connection the server dropped (restart): one retry, fresh one
                quick = time.monotonic() - started < self.settings.query_timeout
                if attempt == 1 and exc.connection_invalidated and quick:
                    continue
                raise
        raise AssertionError("unreachable")

    def _watch(self, conn: Connection) -> Any:
        return self._watchdog.watch(conn) if self._watchdog is not None else nullcontext()

    def _went_down(self, exc: BaseException, how: str) -> None:
        with self._state_lock:
            if self._down:
                return
            self._down = True
        log.warning("database %s %s (%s); answering tempfail until it is back",
                    self._where(), how, _short(exc))

    def _came_back(self) -> None:
        if not self._down:
            return
        with self._state_lock:
            if not self._down:
                return
            self._down = False
        log.warning("database %s is reachable again", self._where())
