"""The inline lane through the daemon: requests the cache does not answer, checked in the
fast lane's thread (``-a shadow`` on a real local account, the default SQLite store),
get the answers, audit lines and penalties the asyncio path gives them.

The ``loop`` acceptor never checks inline (its fast lane runs on the event loop), so a
daemon with it is the asyncio path to compare with.  Which path answered is read from
the status counters, never from timing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest
from reference import Accounts

from saslauthpy.passwords import hash_password

PASSWORD = "Inline-lane-pw-1"
SERVICE = "imap"
THROTTLE = {"base_delay": 0.3, "max_delay": 0.3}
KEPT = ("login", "realm", "service", "client", "backend", "result", "reason", "cache_hit")


@pytest.fixture(scope="module")
def account():
    with Accounts() as acc:
        yield acc.add(PASSWORD)


def lane(d, requests: int, timeout: float = 10.0) -> dict:
    """The status's fast-lane counters once ``requests`` requests are counted (each
    worker publishes its numbers every second)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = json.loads(d.admin("status", "--json").stdout)["fast_lane"]
        if (counts["answered"] + counts["inline"] + counts["handed_over"] >= requests
                or time.monotonic() > deadline):
            time.sleep(1.1)  # (a connect-and-close readiness check may count as handed)
            return json.loads(d.admin("status", "--json").stdout)["fast_lane"]
        time.sleep(0.1)


def line(rec: dict) -> dict:
    """What an audit line says of a request, less its timing and process."""
    out = {k: rec[k] for k in KEPT}
    out["waited"] = rec["delay"] > 0
    out["peer"] = (rec["peer_pid"], rec["peer_uid"])
    return out


def test_inline_answers_audit_lines_and_penalties_match_the_asyncio_path(account,
                                                                         daemon_factory):
    steps = [
        (account, PASSWORD, "OK"),  # a miss: checked (inline), fills the cache
        (account, PASSWORD, "OK"),  # the cache hit that fill made
        (account, "wrong-1", "NO"),  # a wrong password: checked, raises the penalty
        (account, PASSWORD, "OK"),  # waits out the penalty, answered from the cache
        ("nosuchuser-il", "x", "NO"),  # unknown: checked against the decoy
        (account, PASSWORD, "OK"),  # the success cleared the penalty: a hit again
    ]
    lines = {}
    for accept in ("thread", "loop"):
        d = daemon_factory(args=["-a", "shadow", "-c"], subdir=accept,
                           config={"server": {"accept": accept}, "throttle": THROTTLE})
        for login, password, verdict in steps:
            assert d.ask(login, password, SERVICE).split(" ", 1)[0] == verdict, accept
        lines[accept] = [line(r) for r in d.audit()]
        counts = lane(d, len(steps))
        # (a request the daemon's read finds not yet sent goes the asyncio way: which
        # path each took is not fixed, only that the thread acceptor checks inline)
        assert counts["inline"] >= 1 if accept == "thread" else counts["inline"] == 0
        d.stop()
    assert lines["thread"] == lines["loop"]
    recs = lines["thread"]
    assert [r["cache_hit"] for r in recs] == [False, True, False, True, False, True]
    assert [r["waited"] for r in recs] == [False, False, False, True, False, False]
    assert recs[0]["backend"] == "shadow" and recs[0]["peer"] == (os.getpid(), os.getuid())


def test_a_guess_checked_inline_raises_the_penalty_of_the_next_one(accounts,
                                                                    daemon_factory):
    """Guesses for fresh accounts until one is checked inline (a request the daemon's
    read finds not yet sent goes the asyncio way); the next guess for that account
    waits out the penalty it raised."""
    d = daemon_factory(args=["-a", "shadow"], config={"throttle": THROTTLE})
    before = lane(d, 0)
    for _ in range(5):
        user = accounts.add(PASSWORD)
        assert d.ask(user, "guess-1", SERVICE).startswith("NO")
        counts = lane(d, sum(before.values()) + 1)
        if counts["inline"] > before["inline"]:
            break
        before = counts
    else:
        pytest.fail("no guess was checked inline")
    assert d.ask(user, "guess-2", SERVICE).startswith("NO")
    first, second = d.audit()[-2:]
    assert (first["login"], first["result"], first["delay"]) == (user, "fail", 0)
    assert second["login"] == user and second["delay"] > 0
    shown = d.control(cmd="throttle-show", login=user)
    assert shown["ok"] and [k["level"] for k in shown["keys"]] == [1]  # max_delay's level


def test_the_default_sql_store_answers_inline(daemon_factory):
    """(With a SHA-512 hash: yescrypt, what ``user add`` writes, costs enough that a few
    checks of it in a row send the next ones the asyncio way.)"""
    d = daemon_factory(args=["-c"])
    d.admin("user", "add", "carol", password="first")
    with sqlite3.connect(d.tmp / "users.db") as db:
        db.execute("UPDATE saslauthpy_users SET password = ? WHERE login = 'carol'",
                   (hash_password(PASSWORD.encode(), "SHA512-CRYPT"),))
    assert d.ask("carol", PASSWORD, SERVICE) == "OK"
    assert d.ask("carol", PASSWORD, SERVICE) == "OK"
    assert d.ask("carol", "wrong", SERVICE).startswith("NO")
    assert lane(d, 3)["inline"] >= 1
    recs = d.audit()
    assert [(r["backend"], r["result"], r["cache_hit"]) for r in recs] == [
        ("sql", "ok", False), ("cache", "ok", True), ("sql", "fail", False)]
    assert PASSWORD not in d.audit_path.read_text()
