"""LDAP checked in the fast lane's threads (backends/ldap/now.py) through the daemon.

With the default ``accept = "auto"`` an LDAP chain (no SASL) is checked inline: each of the
fast lane's threads asks the directory on connections of its own, one request at a time.
The answers and audit lines must be what the event loop's path gives (``accept =
"loop"``, which never checks inline); a directory that does not answer at once sends the
request to the event loop, which answers it as before.  Which path answered is read from
the status counters, never from timing.
"""

from __future__ import annotations

import json
import time

import pytest
from ldap_proxy import SlowBinds
from ldap_server import BASE_DN, PEOPLE_DN, SERVICE_DN, SERVICE_PW

KEPT = ("login", "service", "backend", "result", "reason", "cache_hit")
CASES = [
    ("alice", "alice-secret"),  # {SSHA}
    ("alice", "wrong"),
    ("bob", "bob-secret"),  # {CRYPT}$6$
    ("dave", "dave-secret"),  # cleartext
    ("carol", "anything"),  # no userPassword
    ("nobody", "x"),  # no such entry
    ("twin", "twin-secret"),  # two entries: ambiguous
]


def lane(d, requests: int, timeout: float = 10.0) -> dict:
    """The fast-lane counters once ``requests`` requests are counted (each worker
    publishes its numbers every second)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = json.loads(d.admin("status", "--json").stdout)["fast_lane"]
        if (counts["answered"] + counts["inline"] + counts["handed_over"] >= requests
                or time.monotonic() > deadline):
            return counts
        time.sleep(0.1)


def conf(tmp_path, slapd, method: str, group: bool = False, uri: str = "") -> str:
    """A saslauthd.conf for ``slapd`` (reached at ``uri`` when given: a proxy)."""
    path = tmp_path / f"saslauthd-{method}{'-group' if group else ''}.conf"
    text = (f"ldap_servers: {uri or slapd.uri}\nldap_search_base: {BASE_DN}\n"
            f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\n"
            f"ldap_auth_method: {method}\nldap_timeout: 2\n")
    if method == "fastbind":  # the filter is the DN template then
        text += f"ldap_filter: uid=%u,{PEOPLE_DN}\n"
    if group:
        text += f"ldap_group_dn: cn=mailusers,ou=groups,{BASE_DN}\n"  # alice and dave
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("method,group", [("bind", False), ("custom", False),
                                          ("fastbind", False), ("bind", True)])
def test_inline_answers_and_audit_lines_match_the_event_loop(tmp_path, slapd, daemon_factory,
                                                            method, group):
    conf_path = conf(tmp_path, slapd, method, group)
    seen = {}
    for accept in ("auto", "loop"):
        d = daemon_factory(args=["-a", "ldap", "-O", conf_path], subdir=accept,
                           config={"server": {"accept": accept},
                                   "throttle": {"enabled": False}})
        replies = [d.ask(login, password, "imap") for login, password in CASES]
        counts = lane(d, len(CASES))
        # (a request the daemon's read finds not yet sent goes the event loop's way: only
        # that the thread checks inline is fixed, not which request it checked)
        assert counts["inline"] >= 1 if accept == "auto" else counts["inline"] == 0
        seen[accept] = (replies, [{k: r[k] for k in KEPT} for r in d.audit()])
        d.stop()
    assert seen["auto"] == seen["loop"]
    replies, lines = seen["auto"]
    assert replies[0] == "OK" and replies[3] == "OK"  # alice, dave
    assert replies[1].startswith("NO") and replies[5].startswith("NO")  # wrong, nobody
    assert [r["backend"] for r in lines] == ["ldap"] * len(CASES)


def test_a_stalled_directory_sends_requests_to_the_event_loop(tmp_path, slapd,
                                                             daemon_factory):
    """slapd stopped: the inline check gives up at once and the event loop answers a
    temporary failure at ldap_timeout, as it always did; once slapd runs again the
    directory answers, inline again after the pause."""
    d = daemon_factory(args=["-a", "ldap", "-O", conf(tmp_path, slapd, "bind")],
                       config={"server": {"processes": 1}, "throttle": {"enabled": False}})
    assert d.ask("alice", "alice-secret", "imap") == "OK"
    before = lane(d, 1)
    slapd.pause()
    try:
        started = time.monotonic()
        assert d.ask("dave", "dave-secret", "imap").startswith("NO")
        assert 1.5 < time.monotonic() - started < 4.0  # ldap_timeout (2 s), not twice it
    finally:
        slapd.resume()
    after = lane(d, sum(before.values()) + 1)
    assert after["handed_over"] > before["handed_over"]
    assert d.audit()[-1]["result"] == "tempfail"
    assert d.ask("dave", "dave-secret", "imap") == "OK"  # the event loop's links recover
    deadline = time.monotonic() + 15  # the inline lane pauses 5 s after a stall
    while lane(d, 0)["inline"] <= after["inline"] and time.monotonic() < deadline:
        assert d.ask("dave", "dave-secret", "imap") == "OK"
        time.sleep(0.5)
    assert lane(d, 0)["inline"] > after["inline"]


@pytest.mark.parametrize("method", ["bind", "fastbind"])
def test_a_slow_bind_is_awaited_not_sent_twice(tmp_path, slapd, daemon_factory, method):
    """A directory that takes longer than the thread's short wait to answer a user's bind
    (a password policy writing its failure count, say): the thread waits for that answer,
    as the C daemon does, instead of handing the request to the event loop, which would
    send the password again and have one wrong password counted twice."""
    proxy = SlowBinds("127.0.0.1", slapd.port, delay=0.6).start()  # WAIT is 0.2 s
    try:
        conf_path = conf(tmp_path, slapd, method, uri=proxy.uri)
        d = daemon_factory(args=["-a", "ldap", "-O", conf_path],
                           config={"server": {"processes": 1},
                                   "throttle": {"enabled": False}})
        dn = f"uid=alice,{PEOPLE_DN}"
        replies = []
        for password in ("wrong", "alice-secret"):
            replies.append(d.ask("alice", password, "imap"))
            assert proxy.binds[dn] == len(replies)  # one bind per login, whichever path
        assert replies[0].startswith("NO") and replies[1] == "OK"
        counts = lane(d, len(replies))
        assert counts["inline"] >= 1  # the thread checked (a slow check pauses it after)
        assert [r["result"] for r in d.audit()] == ["fail", "ok"]
    finally:
        proxy.stop()


def test_a_bind_unanswered_at_ldap_timeout_is_a_tempfail_and_not_sent_again(
        tmp_path, slapd, daemon_factory):
    proxy = SlowBinds("127.0.0.1", slapd.port, delay=3.0).start()  # ldap_timeout is 2 s
    try:
        conf_path = conf(tmp_path, slapd, "bind", uri=proxy.uri)
        d = daemon_factory(args=["-a", "ldap", "-O", conf_path],
                           config={"server": {"processes": 1},
                                   "throttle": {"enabled": False}})
        started = time.monotonic()
        assert d.ask("alice", "alice-secret", "imap").startswith("NO")
        assert 1.5 < time.monotonic() - started < 2.9  # at ldap_timeout, not after the answer
        assert d.audit()[-1]["result"] == "tempfail"
        assert proxy.binds[f"uid=alice,{PEOPLE_DN}"] == 1
        assert lane(d, 1)["inline"] == 1
    finally:
        proxy.stop()


def test_each_worker_runs_as_many_lanes_as_the_c_daemon_has_waiting_processes(
        tmp_path, slapd, server_factory):
    """-n 5 over 2 processes: 3 threads each, so that 5 requests can wait on the
    directory at once (a chain of local checks keeps one: its checks do not wait)."""
    s = server_factory(config={"server": {"processes": 2}},
                       args=["-a", "ldap", "-O", conf(tmp_path, slapd, "bind"), "-n", "5"])
    assert len(s.server.lanes) == 3
    assert s.ask("alice", "alice-secret", "imap") == "OK"
    local = server_factory(config={"server": {"processes": 2}}, args=["-n", "5"])
    assert len(local.server.lanes) == 1
