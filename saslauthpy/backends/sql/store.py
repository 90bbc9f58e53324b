"""The sql backend's built-in table ``saslauthpy_users`` and its ``Store`` for
``saslauthpy-admin user ...`` (add, passwd, disable, delete, list, import) on every
supported database.  New passwords are hashed with ``passwords.hash_password``; the table
is created on first use (or by ``saslauthpy-admin init``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
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
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ... import passwords
from ...errors import ConfigError, NoSuchUser, UserExists
from .. import base
from ..base import User
from .settings import Options, make_engine, parse_options

if TYPE_CHECKING:
    from ...config import Config

TABLE = "saslauthpy_users"
MAX_NAME = 255
MAX_HASH = 512

metadata = MetaData()
users_table = Table(
    TABLE,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(MAX_NAME), nullable=False),
    Column("realm", String(MAX_NAME), nullable=False, server_default=""),
    Column("password", String(MAX_HASH), nullable=False),
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


def create_table(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


def check_names(login: str, realm: str) -> None:
    """Raise ValueError for a login or realm the table should not hold."""
    if not login or len(login) > MAX_NAME or len(realm) > MAX_NAME:
        raise ValueError(f"login and realm must be 1..{MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in login + realm):
        raise ValueError("login and realm must not contain control characters")


def display_name(login: str, realm: str) -> str:
    return f"{login}@{realm}" if realm else login


def enabled(value: Any) -> bool:
    """An 'enabled' column as databases return it: bool, int, 't'/'yes'/'1', b'\\x01'."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "y", "yes", "on")
    if isinstance(value, bytes):
        return value.strip() not in (b"", b"\x00", b"0")
    return bool(value)


class Store(base.Store):
    """``saslauthpy-admin user ...`` on the built-in table, for every supported database."""

    name = "sql"
    Options = Options

    def __init__(self, config: Config, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        self.settings = parse_options(self.options, config.threads)
        if self.settings.query:
            raise ConfigError(
                "[sql] query is set: users live in your own schema, which saslauthpy-admin "
                f"does not manage (it manages only the built-in table {TABLE})"
            )
        self.engine = make_engine(self.settings, autocommit=False)
        self._ready = False

    def init(self) -> None:
        """``saslauthpy-admin init``: create the built-in table if it is missing."""
        create_table(self.engine)
        self._ready = True

    def _begin(self):
        if not self._ready:
            self.init()
        return self.engine.begin()

    def add(self, login: str, realm: str, password: bytes) -> None:
        check_names(login, realm)
        hashed = passwords.hash_password(password)
        now = _now()
        try:
            with self._begin() as conn:
                conn.execute(insert(users_table).values(
                    login=login, realm=realm, password=hashed, enabled=True,
                    created=now, changed=now))
        except IntegrityError:
            raise UserExists(display_name(login, realm)) from None

    def set_password(self, login: str, realm: str, password: bytes) -> None:
        self._change(login, realm, update(users_table).values(
            password=passwords.hash_password(password), changed=_now()))

    def set_enabled(self, login: str, realm: str, enabled: bool) -> None:
        self._change(login, realm, update(users_table).values(enabled=enabled,
                                                              changed=_now()))

    def delete(self, login: str, realm: str) -> None:
        self._change(login, realm, delete(users_table))

    def _change(self, login: str, realm: str, stmt: Any) -> None:
        """Run an UPDATE or DELETE on one user's row; NoSuchUser when there is none."""
        t = users_table
        with self._begin() as conn:
            if conn.execute(stmt.where(t.c.login == login, t.c.realm == realm)).rowcount == 0:
                raise NoSuchUser(display_name(login, realm))

    def users(self, realm: str | None = None) -> Iterator[User]:
        t = users_table
        stmt = select(t.c.login, t.c.realm, t.c.enabled, t.c.created, t.c.changed)
        if realm is not None:
            stmt = stmt.where(t.c.realm == realm)
        stmt = stmt.order_by(t.c.realm, t.c.login)
        with self._begin() as conn:
            rows = conn.execute(stmt).all()
        for r in rows:
            yield User(r.login, r.realm, enabled(r.enabled), _iso(r.created), _iso(r.changed))

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
                inserted = _insert_new(conn, self.settings.dialect, values)
            else:
                inserted = _insert_absent(conn, values)
        existing.extend(key for key in batch if key not in inserted)
        return existing

    def close(self) -> None:
        self.engine.dispose()


def _insert_new(conn: Connection, dialect: str,
                values: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: one round trip, no existence query
    (whose plan, prepared while the table was small, slows down as the table grows)."""
    t = users_table
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = (dialect_insert(t).on_conflict_do_nothing(index_elements=["login", "realm"])
            .returning(t.c.login, t.c.realm))
    return {(r.login, r.realm) for r in conn.execute(stmt, values)}


def _insert_absent(conn: Connection, values: list[dict[str, Any]]) -> set[tuple[str, str]]:
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


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value or "")
