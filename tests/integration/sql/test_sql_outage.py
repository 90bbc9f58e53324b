"""A database that goes away: TEMPFAIL within the configured timeouts, never a hang, and the
same Backend object serves again once the server is back (no daemon restart).

Each test runs its own PostgreSQL / MariaDB server (private data dir and loopback port), so
stopping or freezing it never disturbs the shared servers or other tests.
"""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import create_engine, text

from saslauthpy.backends.base import Result
from saslauthpy.backends.sql import backend as sql
from saslauthpy.config import Config
from saslauthpy.protocol import Request

TIMEOUTS = {"connect_timeout": 2, "query_timeout": 2}
# what each wait may take on top of its timeout (thread wake-ups, process scheduling)
SLACK = 1.5


def timed(b: sql.Backend, login: str, pw: str):
    start = time.monotonic()
    answer = b.check(Request(login, pw.encode(), "smtp", ""))
    return answer, time.monotonic() - start


def make(url: str) -> tuple[sql.Store, sql.Backend]:
    store = sql.Store(Config(), {"url": url, **TIMEOUTS})
    store.add("alice", "", b"alice-pw")
    store.close()
    backend = sql.Backend(Config(), {"url": url, **TIMEOUTS})
    backend.open()
    return store, backend


@pytest.fixture(params=["postgresql", "mariadb"])
def private_server(request):
    return request.getfixturevalue("private_pg" if request.param == "postgresql"
                                   else "private_mariadb")


def test_stopped_server_gives_tempfail_then_recovers(private_server, caplog):
    _, b = make(private_server.url)
    try:
        assert timed(b, "alice", "alice-pw")[0].result is Result.OK
        caplog.set_level(logging.WARNING, logger="saslauthpy.sql")
        private_server.stop()
        for _ in range(2):  # the stale pooled connection, then a refused new one
            answer, took = timed(b, "alice", "alice-pw")
            assert answer.result is Result.TEMPFAIL
            assert took < TIMEOUTS["connect_timeout"] + SLACK
        assert "unavailable" in caplog.text
        assert "alice-pw" not in caplog.text
        private_server.start()
        answer, _ = timed(b, "alice", "alice-pw")
        assert answer.result is Result.OK
        assert timed(b, "alice", "wrong")[0].result is Result.FAIL
        assert "reachable again" in caplog.text
    finally:
        b.close()


def test_frozen_server_gives_tempfail_within_timeout(private_server):
    """The server's processes are stopped (SIGSTOP): TCP still accepts, nobody answers."""
    _, b = make(private_server.url)
    try:
        assert timed(b, "alice", "alice-pw")[0].result is Result.OK  # a pooled connection
        private_server.freeze()
        try:
            answer, took = timed(b, "alice", "alice-pw")  # query on the pooled connection
            assert answer.result is Result.TEMPFAIL
            assert took < TIMEOUTS["query_timeout"] + SLACK
            answer, took = timed(b, "alice", "alice-pw")  # a new connection
            assert answer.result is Result.TEMPFAIL
            assert took < max(TIMEOUTS.values()) + SLACK
        finally:
            private_server.thaw()
        assert timed(b, "alice", "alice-pw")[0].result is Result.OK
    finally:
        b.close()


def test_server_down_at_start_is_not_fatal(private_pg, caplog):
    """open() with the database down logs a warning and keeps going; once the database is
    up the built-in table is created and users can log in."""
    url = private_pg.url
    private_pg.stop()
    caplog.set_level(logging.WARNING, logger="saslauthpy.sql")
    b = sql.Backend(Config(), {"url": url, **TIMEOUTS})
    try:
        b.open()
        assert "unreachable at start" in caplog.text
        answer, took = timed(b, "alice", "alice-pw")
        assert answer.result is Result.TEMPFAIL
        assert took < TIMEOUTS["connect_timeout"] + SLACK
        private_pg.start()
        assert timed(b, "alice", "alice-pw")[0].result is Result.UNKNOWN  # table now exists
        store = sql.Store(Config(), {"url": url})
        store.add("alice", "", b"alice-pw")
        store.close()
        assert timed(b, "alice", "alice-pw")[0].result is Result.OK
    finally:
        b.close()


def test_slow_query_is_cut_by_query_timeout(pg_url):
    """statement_timeout bounds a query the server is busy with (pg_sleep stands in)."""
    b = sql.Backend(Config(), {"url": pg_url, "query_timeout": 1,
                               "query": "SELECT 'x' FROM pg_sleep(5) WHERE :login = 'a'"})
    b.open()
    try:
        answer, took = timed(b, "a", "x")
        assert answer.result is Result.TEMPFAIL
        assert took < 1 + SLACK
    finally:
        b.close()


def test_table_creation_timing_out_at_start_is_not_fatal(pg_url, caplog):
    """Another session is creating the table and has not committed: our CREATE waits for it
    until statement_timeout.  That is a busy database, not a bad setting: open() warns and
    the backend creates the table on a later request (once it raised the driver's error)."""
    other = create_engine(pg_url)
    conn = other.connect()
    conn.execute(text("CREATE TABLE saslauthpy_users (id INTEGER)"))  # left uncommitted
    caplog.set_level(logging.WARNING, logger="saslauthpy.sql")
    b = sql.Backend(Config(), {"url": pg_url, "query_timeout": 1})
    try:
        b.open()
        assert "unreachable at start" in caplog.text
        assert timed(b, "alice", "alice-pw")[0].result is Result.TEMPFAIL
        conn.rollback()
        assert timed(b, "alice", "alice-pw")[0].result is Result.UNKNOWN  # table made now
    finally:
        conn.close()
        other.dispose()
        b.close()
