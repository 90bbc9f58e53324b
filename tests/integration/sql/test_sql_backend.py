"""The sql backend and its Store on the built-in table: SQLite, PostgreSQL, MariaDB;
options validation; realm matching; the DDL files in saslauthpy/share/sql/."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from harness import python_env
from sql_servers import run_sql_file
from sqlalchemy import create_engine, text

from saslauthpy.backends import backend_class, store_class
from saslauthpy.backends.base import Result
from saslauthpy.backends.sql import backend as sql
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError, NoSuchUser, UserExists
from saslauthpy.protocol import Request

DDL = Path(__file__).resolve().parents[3] / "saslauthpy" / "share" / "sql"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'users.db'}"
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "my_url")


def backend(url: str, **options) -> sql.Backend:
    b = sql.Backend(Config(), {"url": url, **options})
    b.open()
    return b


def ask(b: sql.Backend, login: str, pw: str | bytes, realm: str = "", service: str = "imap"):
    pw = pw.encode() if isinstance(pw, str) else pw
    return b.check(Request(login, pw, service, realm))


def test_registry_finds_backend_and_store():
    assert backend_class("sql") is sql.Backend and sql.Backend.name == "sql"
    assert store_class("sql") is sql.Store


def test_store_lifecycle_and_backend_answers(any_url):
    store = sql.Store(Config(), {"url": any_url})
    b = backend(any_url)
    try:
        store.add("alice", "", b"alice-pw")
        store.add("alice", "example.com", "pw-ä".encode())
        store.add("Alice", "example.com", b"upper-pw")  # logins are case-sensitive
        with pytest.raises(UserExists):
            store.add("alice", "example.com", b"again")
        assert ask(b, "alice", "alice-pw").result is Result.OK
        assert ask(b, "alice", "pw-ä", "example.com").result is Result.OK
        assert ask(b, "Alice", "upper-pw", "example.com").result is Result.OK
        assert ask(b, "ALICE", "upper-pw", "example.com").result is Result.UNKNOWN
        assert ask(b, "alice", "upper-pw", "example.com").result is Result.FAIL
        assert ask(b, "alice", "alice-pw", "example.com").result is Result.FAIL
        assert ask(b, "nobody", "x").result is Result.UNKNOWN

        store.set_password("alice", "", b"new-pw")
        assert ask(b, "alice", "alice-pw").result is Result.FAIL
        assert ask(b, "alice", "new-pw").result is Result.OK

        store.set_enabled("alice", "", False)
        answer = ask(b, "alice", "new-pw")
        assert answer.result is Result.FAIL and answer.reason == "account disabled"
        store.set_enabled("alice", "", True)
        assert ask(b, "alice", "new-pw").result is Result.OK

        users = list(store.users())
        assert sorted((u.login, u.realm) for u in users) == [
            ("Alice", "example.com"), ("alice", ""), ("alice", "example.com")]
        assert users[0].realm == ""  # ordered by realm, then login
        assert all(u.enabled and u.created.endswith("Z") and u.changed for u in users)
        assert sorted(u.login for u in store.users("example.com")) == ["Alice", "alice"]

        store.delete("alice", "")
        assert ask(b, "alice", "new-pw").result is Result.UNKNOWN
        for op in (lambda: store.delete("alice", ""),
                   lambda: store.set_password("ghost", "", b"x"),
                   lambda: store.set_enabled("ghost", "x", False)):
            with pytest.raises(NoSuchUser):
                op()
    finally:
        b.close()
        store.close()


def test_passwords_are_stored_hashed(any_url):
    store = sql.Store(Config(), {"url": any_url})
    store.add("carol", "", b"carol-secret")
    store.close()
    engine = create_engine(any_url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password FROM saslauthpy_users")).scalar_one()
    engine.dispose()
    assert "carol-secret" not in stored and stored.startswith(("$", "{"))


def test_realm_matching_with_and_without_r(tmp_path):
    """saslauthd -r joins login@realm and still passes the realm; a client may also send
    the full address with no realm.  All find the (login, realm) row; other realms do not."""
    url = f"sqlite:///{tmp_path / 'users.db'}"
    store = sql.Store(Config(), {"url": url})
    store.add("bob", "example.com", b"bob-pw")
    store.add("bob@example.com", "", b"joined-pw")  # a row keyed by the full address
    store.add("dan", "", b"dan-pw")
    b = backend(url)
    assert ask(b, "bob", "bob-pw", "example.com").result is Result.OK
    assert ask(b, "bob@example.com", "bob-pw", "example.com").result is Result.OK  # -r
    # the exact row wins: the full address with no realm is that row's
    assert ask(b, "bob@example.com", "joined-pw", "").result is Result.OK
    assert ask(b, "bob", "bob-pw", "other.org").result is Result.UNKNOWN
    assert ask(b, "bob@other.org", "bob-pw", "other.org").result is Result.UNKNOWN
    assert ask(b, "dan", "dan-pw", "example.com").result is Result.UNKNOWN  # realm selects
    assert ask(b, "dan", "dan-pw", "").result is Result.OK
    store.delete("bob@example.com", "")
    assert ask(b, "bob@example.com", "bob-pw", "").result is Result.OK  # split at '@'
    b.close()
    store.close()


def test_candidates_and_address():
    assert sql.candidates("a", "") == [("a", "")]
    assert sql.candidates("a@x.org", "x.org") == [("a@x.org", "x.org"), ("a", "x.org")]
    assert sql.candidates("a@x.org", "") == [("a@x.org", ""), ("a", "x.org")]
    assert sql.candidates("a@x.org", "y.org") == [("a@x.org", "y.org")]
    assert sql.candidates("@x.org", "x.org") == [("@x.org", "x.org")]
    assert sql.address_of("a", "x.org") == "a@x.org"
    assert sql.address_of("a@x.org", "x.org") == "a@x.org"
    assert sql.address_of("a", "") == "a"


def test_default_sqlite_file_parent_created_private(tmp_path):
    path = tmp_path / "var" / "lib" / "saslauthpy" / "users.db"
    b = backend(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750
        assert ask(b, "x", "y").result is Result.UNKNOWN  # the table exists, empty
    finally:
        b.close()
    assert sql.DEFAULT_URL == "sqlite:////var/lib/saslauthpy/users.db"
    assert sql.parse_options({}).url.database == "/var/lib/saslauthpy/users.db"


def test_odd_input_never_raises(any_url):
    store = sql.Store(Config(), {"url": any_url})
    store.add("eve", "", b"eve-pw")
    store.close()
    b = backend(any_url)
    try:
        for login in ("", "x" * 600, "bad\udcffbyte", "é" * 300, "a\tb", "eve "):
            assert ask(b, login, "eve-pw").result in (Result.UNKNOWN, Result.FAIL), login
        assert ask(b, "eve", b"\xff\xfe").result is Result.FAIL
        assert ask(b, "eve", "x" * 1000).result is Result.FAIL
    finally:
        b.close()


def test_sqlite_locked_for_writing_is_tempfail_within_timeout(tmp_path):
    import sqlite3
    import time

    url = f"sqlite:///{tmp_path / 'users.db'}"
    store = sql.Store(Config(), {"url": url})
    store.add("fay", "", b"fay-pw")
    store.close()
    b = backend(url, query_timeout=1)
    locker = sqlite3.connect(tmp_path / "users.db")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        assert ask(b, "fay", "fay-pw").result is Result.TEMPFAIL
        assert time.monotonic() - start < 2.5
    finally:
        locker.rollback()
        locker.close()
    assert ask(b, "fay", "fay-pw").result is Result.OK
    b.close()


@pytest.mark.parametrize("options, words", [
    ({"uri": "x"}, ["'uri'", "known keys"]),
    ({"url": "nonsense"}, ["not a database URL"]),
    ({"url": "oracle://u@h/db"}, ["'oracle' is not supported"]),
    ({"url": "postgresql+psycopg2://u@h/db"}, ["postgresql+psycopg://"]),
    ({"url": "mysql+mysqldb://u@h/db"}, ["mysql+pymysql://"]),
    ({"url": "sqlite://"}, ["in-memory"]),
    ({"connect_timeout": 0}, ["connect_timeout", "positive"]),
    ({"query_timeout": "5"}, ["query_timeout", "number"]),
    ({"pool_size": 2.5}, ["pool_size", "whole"]),
    ({"query": "SELECT password FROM t WHERE u = :user"}, [":user", ":address"]),
    ({"query": "SELECT password FROM t WHERE active"}, [":login or :address"]),
    ({"default_scheme": "NOPE"}, ["default_scheme", "NOPE"]),
])
def test_bad_options_name_the_key(options, words, tmp_path):
    options = {"url": f"sqlite:///{tmp_path / 'u.db'}", **options}
    with pytest.raises(ConfigError) as err:
        sql.Backend(Config(), options)
    for word in words:
        assert word in str(err.value)
    assert "\n" not in str(err.value)


def test_bare_dialect_urls_pick_our_drivers():
    assert sql.parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert sql.parse_url("mysql://u@h/db").drivername == "mysql+pymysql"
    assert sql.parse_url("mariadb://u@h/db").drivername == "mariadb+pymysql"


def test_store_refuses_custom_query(tmp_path):
    with pytest.raises(ConfigError, match="query is set"):
        sql.Store(Config(), {"url": f"sqlite:///{tmp_path / 'u.db'}",
                             "query": "SELECT password FROM t WHERE login = :login"})


def test_unwritable_sqlite_path_is_a_config_error(tmp_path):
    ro = tmp_path / "ro"
    ro.write_text("a file, not a directory")
    with pytest.raises(ConfigError, match="cannot create the SQLite file"):
        backend(f"sqlite:///{ro}/sub/users.db")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mariadb"])
def test_ddl_file_makes_a_table_the_backend_uses(dialect, request, tmp_path):
    """A DBA who creates the table from saslauthpy/share/sql/DIALECT.sql gets a working store."""
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'users.db'}"
    else:
        url = request.getfixturevalue("pg_url" if dialect == "postgresql" else "my_url")
    name = "mysql" if dialect == "mariadb" else dialect
    run_sql_file(url, DDL / f"{name}.sql")
    store = sql.Store(Config(), {"url": url})
    store.add("gil", "example.net", b"gil-pw")
    with pytest.raises(UserExists):
        store.add("gil", "example.net", b"x")
    assert store.add_hashed_many([("hal", "", "{PLAIN}hal-pw"), ("gil", "example.net", "x")]) \
        == [("gil", "example.net")]
    store.close()
    b = backend(url)
    assert ask(b, "gil", "gil-pw", "example.net").result is Result.OK
    assert ask(b, "hal", "hal-pw").result is Result.OK
    b.close()


def test_unknown_scheme_in_builtin_table_logged_once_per_check(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    store = sql.Store(Config(), {"url": url})
    store.add_hashed_many([("ivy", "", "{WEIRD}aGlkZGVu")])
    store.close()
    b = backend(url)
    caplog.set_level(logging.WARNING, logger="saslauthpy.sql")
    assert ask(b, "ivy", "hidden").result is Result.FAIL
    records = [r for r in caplog.records if r.name == "saslauthpy.sql"]
    assert len(records) == 1
    assert "{WEIRD}" in records[0].getMessage()
    assert "aGlkZGVu" not in caplog.text
    b.close()



@pytest.fixture(params=["postgresql", "mariadb"])
def read_only(request):
    """(dialect, URL of a role that may connect and read but not create tables)."""
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "my_url")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    role = "ro_" + url.rsplit("_", 1)[1]
    db = url.rsplit("/", 1)[1]
    if request.param == "postgresql":
        setup = [f"CREATE ROLE {role} LOGIN", f"GRANT CONNECT ON DATABASE {db} TO {role}"]
        drop = [f"DROP OWNED BY {role}", f"DROP ROLE {role}"]
        ro_url = url.replace("postgres@", f"{role}@")
    else:
        setup = [f"CREATE USER '{role}'@'%' IDENTIFIED BY 'ro-pw'",
                 f"GRANT SELECT ON `{db}`.* TO '{role}'@'%'"]
        drop = [f"DROP USER '{role}'@'%'"]
        ro_url = url.replace("root@", f"{role}:ro-pw@")
    with admin.connect() as conn:
        for stmt in setup:
            conn.execute(text(stmt))
    yield request.param, ro_url
    with admin.connect() as conn:
        for stmt in drop:
            conn.execute(text(stmt))
    admin.dispose()


def test_table_creation_denied_stops_the_start_with_the_fix(read_only):
    """A daemon role that may only read, with the table missing: a ConfigError naming the
    command that prints the DDL and the grant (MariaDB reports the denial as an
    OperationalError, which once escaped open() as a raw driver exception)."""
    dialect, url = read_only
    b = sql.Backend(Config(), {"url": url})
    try:
        with pytest.raises(ConfigError, match="cannot create table saslauthpy_users") as err:
            b.open()
        ddl = "postgresql" if dialect == "postgresql" else "mysql"
        assert f"'saslauthpy-admin sql schema {ddl}'" in str(err.value)
        assert "grant CREATE" in str(err.value)
        # ... and that command prints the DDL that creates the table
        res = subprocess.run([sys.executable, "-m", "saslauthpy.cli.admin", "sql", "schema", ddl],
                             capture_output=True, text=True, env=python_env(), timeout=60)
        assert res.returncode == 0 and "CREATE TABLE" in res.stdout
        assert "saslauthpy_users" in res.stdout
    finally:
        b.close()


def test_table_creation_denied_after_the_start_is_tempfail_and_one_line(read_only, caplog):
    """The database was down at start and refuses the table once it is back: each login
    gets tempfail, the log gets that reason once, without a traceback (once it logged a
    traceback per request)."""
    _, url = read_only
    b = sql.Backend(Config(), {"url": url})  # not opened: as after a start without database
    caplog.set_level(logging.WARNING, logger="saslauthpy.sql")
    try:
        for _ in range(3):
            answer = ask(b, "alice", "alice-pw")
            assert answer.result is Result.TEMPFAIL
            assert "cannot create table" in answer.reason
        records = [r for r in caplog.records if r.name == "saslauthpy.sql"]
        assert len(records) == 1 and records[0].exc_info is None
        assert "grant CREATE" in records[0].getMessage()
    finally:
        b.close()
