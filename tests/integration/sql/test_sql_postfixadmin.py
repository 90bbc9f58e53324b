"""The sql backend on a PostfixAdmin-shaped ``mailbox`` table, in PostgreSQL and MariaDB,
holding hashes made by the reference tools (doveadm pw, openssl passwd, mkpasswd)."""

from __future__ import annotations

import pytest
from postfixadmin import INJECTIONS, QUERY, count_mailboxes, fill_mailbox, mailbox_ddl
from sql_servers import run_sql_file
from sqlalchemy import create_engine, text

from saslauthpy.backends.base import Result
from saslauthpy.backends.sql import backend as sql
from saslauthpy.config import Config
from saslauthpy.protocol import Request


@pytest.fixture
def backend_for():
    made = []

    def make(url: str, **options) -> sql.Backend:
        b = sql.Backend(Config(), {"url": url, "query": QUERY, **options})
        b.open()
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def ask(b: sql.Backend, login: str, pw: str, realm: str = "", service: str = "smtp"):
    return b.check(Request(login, pw.encode(), service, realm))


def test_reference_hashes_right_and_wrong_password(server_url, reference_hashes, backend_for):
    users = fill_mailbox(server_url, reference_hashes)
    b = backend_for(server_url)
    for address, pw in users.items():
        if address.startswith("inactive"):
            continue
        assert ask(b, address, pw).result is Result.OK, address
        assert ask(b, address, pw + "x").result is Result.FAIL, address
        assert ask(b, address, "").result is Result.FAIL, address


def test_login_and_realm_make_the_address(server_url, reference_hashes, backend_for):
    fill_mailbox(server_url, reference_hashes)
    b = backend_for(server_url)
    pw = reference_hashes["BLF-CRYPT"][0]
    assert ask(b, "alice", pw, realm="example.com").result is Result.OK
    # saslauthd -r: login already joined, realm still passed
    assert ask(b, "alice@example.com", pw, realm="example.com").result is Result.OK
    assert ask(b, "alice", pw, realm="other.example").result is Result.UNKNOWN
    assert ask(b, "alice", pw).result is Result.UNKNOWN


def test_inactive_mailbox_is_refused(server_url, reference_hashes, backend_for):
    users = fill_mailbox(server_url, reference_hashes)
    b = backend_for(server_url)
    answer = ask(b, "inactive@example.com", users["inactive@example.com"])
    assert answer.result is Result.FAIL
    assert answer.reason == "account disabled"


def test_query_filtering_on_active_gives_unknown(server_url, reference_hashes, backend_for):
    users = fill_mailbox(server_url, reference_hashes)
    active = "true" if server_url.startswith("postgresql") else "1"
    b = backend_for(server_url,
                    query=f"SELECT password FROM mailbox WHERE username = :address "
                          f"AND active = {active}")
    assert ask(b, "inactive@example.com", users["inactive@example.com"]).result is \
        Result.UNKNOWN
    assert ask(b, "alice@example.com", reference_hashes["BLF-CRYPT"][0]).result is Result.OK


def test_unknown_address(server_url, reference_hashes, backend_for):
    fill_mailbox(server_url, reference_hashes)
    b = backend_for(server_url)
    assert ask(b, "nobody@example.com", "whatever").result is Result.UNKNOWN


@pytest.mark.parametrize("login", INJECTIONS)
def test_sql_injection_logins_are_refused_and_table_intact(server_url, reference_hashes,
                                                           backend_for, login):
    fill_mailbox(server_url, reference_hashes)
    before = count_mailboxes(server_url)
    b = backend_for(server_url)
    for pw in ("x", reference_hashes["BLF-CRYPT"][0], "' OR '1'='1"):
        assert ask(b, login, pw).result is not Result.OK
        assert ask(b, login, pw, realm="example.com").result is not Result.OK
    assert count_mailboxes(server_url) == before
    assert ask(b, "alice@example.com", reference_hashes["BLF-CRYPT"][0]).result is Result.OK


def test_unknown_scheme_fails_and_logs_prefix_not_hash(pg_url, backend_for, caplog):
    run_sql_file(pg_url, mailbox_ddl(pg_url))
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mailbox (username, password, local_part, domain) VALUES "
                          "('weird@example.com', '{NOPE}c2VjcmV0aGFzaA', 'weird', "
                          "'example.com'), ('bare@example.com', 'plaintextpw', 'bare', "
                          "'example.com')"))
    engine.dispose()
    b = backend_for(pg_url)
    caplog.set_level("WARNING", logger="saslauthpy.sql")
    answer = ask(b, "weird@example.com", "secrethash")
    assert answer.result is Result.FAIL
    assert "{NOPE}" in caplog.text
    assert "c2VjcmV0aGFzaA" not in caplog.text
    caplog.clear()
    assert ask(b, "bare@example.com", "plaintextpw").result is Result.FAIL
    assert "unknown scheme" in caplog.text and "plaintextpw" not in caplog.text
    # a configured default scheme accepts the bare value
    b2 = backend_for(pg_url, default_scheme="PLAIN")
    assert ask(b2, "bare@example.com", "plaintextpw").result is Result.OK
    assert ask(b2, "bare@example.com", "other").result is Result.FAIL


def test_bad_query_stops_the_start(server_url):
    run_sql_file(server_url, mailbox_ddl(server_url))
    b = sql.Backend(Config(), {"url": server_url, "query": "SELECT pasword FROM mailbox "
                                                            "WHERE username = :address"})
    with pytest.raises(sql.ConfigError, match="query fails"):
        b.open()
    b.close()
    b = sql.Backend(Config(), {"url": server_url, "query": "SELECT password, active, name "
                                                            "FROM mailbox WHERE username = "
                                                            ":address"})
    with pytest.raises(sql.ConfigError, match="3 columns"):
        b.open()
    b.close()


def test_mariadb_mailbox_is_case_insensitive_like_postfixadmin(my_url, reference_hashes,
                                                               backend_for):
    fill_mailbox(my_url, reference_hashes)
    b = backend_for(my_url)
    assert ask(b, "ALICE@Example.COM", reference_hashes["BLF-CRYPT"][0]).result is Result.OK
