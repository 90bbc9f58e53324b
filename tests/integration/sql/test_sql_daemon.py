"""End to end: the daemon (harness.Daemon) with the sql backend, asked by the real
``testsaslauthd`` (Debian sasl2-bin), against PostgreSQL and MariaDB."""

from __future__ import annotations

import time

import pytest
from harness import need, testsaslauthd
from postfixadmin import INJECTIONS, QUERY, count_mailboxes, fill_mailbox

OK = '0: OK "Success."'
NO = '0: NO "authentication failed"'


def said(mux, user: str, pw: str, realm: str | None = None, service: str | None = None) -> str:
    res = testsaslauthd(mux, user, pw, realm=realm, service=service)
    return res.stdout.strip()


@pytest.fixture(autouse=True)
def _client():
    need("testsaslauthd")


@pytest.mark.csaslauthd
def test_postfixadmin_mailbox_through_testsaslauthd(server_url, reference_hashes,
                                                    daemon_factory):
    users = fill_mailbox(server_url, reference_hashes)
    d = daemon_factory(config={"mechanisms": ["sql"], "sql": {"url": server_url,
                                                              "query": QUERY}})
    for address, pw in users.items():
        if address.startswith("inactive"):
            assert said(d.mux, address, pw) == NO
            continue
        assert said(d.mux, address, pw, service="smtp") == OK, address
        assert said(d.mux, address, pw + "!") == NO, address
        local, domain = address.split("@")
        assert said(d.mux, local, pw, realm=domain) == OK, address  # :address = login@realm
    assert said(d.mux, "nobody@example.com", "x") == NO
    for login in INJECTIONS:
        assert said(d.mux, login, "' OR '1'='1") == NO, login
        assert said(d.mux, login, reference_hashes["BLF-CRYPT"][0], realm="example.com") == NO
    assert count_mailboxes(server_url) == len(users) + 1
    results = {(r["login"], r["result"]) for r in d.audit()}
    assert ("inactive@example.com", "fail") in results
    assert ("nobody@example.com", "unknown") in results


@pytest.mark.csaslauthd
def test_builtin_table_on_postgresql_with_admin_and_r(pg_url, daemon_factory, tmp_path):
    """saslauthpy-admin manages the built-in table in PostgreSQL; -r joins login@realm and
    still finds the (login, realm) row."""
    d = daemon_factory(args=["-r"], config={"sql": {"url": pg_url}})
    d.admin("init")
    d.admin("user", "add", "alice", "--realm", "example.com", password="alice-pw")
    csv = tmp_path / "more.csv"
    csv.write_text("bob,example.com,{PLAIN}bob-pw\nbad line\n")
    res = d.admin("user", "import", str(csv), check=False)  # cleartext: refused, line named
    assert res.returncode == 1 and "line 1: user 'bob': the password field is not a hash" \
        in res.stderr and "imported 0 user(s), skipped 2" in res.stderr
    res = d.admin("user", "import", str(csv), "--allow-plain", check=False)  # hashed on import
    assert res.returncode == 1  # exit 1: a line was skipped
    assert "line 2:" in res.stderr and "imported 1 user(s), skipped 1" in res.stderr
    assert said(d.mux, "alice", "alice-pw", realm="example.com") == OK
    assert said(d.mux, "bob", "bob-pw", realm="example.com") == OK
    assert said(d.mux, "alice", "bob-pw", realm="example.com") == NO
    assert said(d.mux, "alice", "alice-pw", realm="other.org") == NO
    d.admin("user", "disable", "alice", "--realm", "example.com")
    assert said(d.mux, "alice", "alice-pw", realm="example.com") == NO
    assert any(r["reason"] == "account disabled" for r in d.audit())


@pytest.mark.csaslauthd
def test_database_stop_gives_no_with_tempfail_then_recovers(private_pg, daemon_factory):
    url = private_pg.url
    d = daemon_factory(config={"sql": {"url": url, "connect_timeout": 2,
                                       "query_timeout": 2}})
    d.admin("user", "add", "carol", password="carol-pw")
    assert said(d.mux, "carol", "carol-pw") == OK
    private_pg.stop()
    start = time.monotonic()
    assert said(d.mux, "carol", "carol-pw") == NO
    assert time.monotonic() - start < 2 + 2
    assert d.audit()[-1]["result"] == "tempfail"
    private_pg.start()
    assert said(d.mux, "carol", "carol-pw") == OK  # same daemon, no restart
    private_pg.freeze()  # up but not answering: the watchdog bounds the wait
    try:
        start = time.monotonic()
        assert said(d.mux, "carol", "carol-pw") == NO
        assert time.monotonic() - start < 2 + 2
    finally:
        private_pg.thaw()
    assert d.audit()[-1]["result"] == "tempfail"
    assert said(d.mux, "carol", "carol-pw") == OK
    assert d.proc.poll() is None
    assert "carol-pw" not in d.stderr() and "carol-pw" not in d.audit_path.read_text()
