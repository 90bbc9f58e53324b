"""The throttle counts by identity, through the real testsaslauthd and real local accounts:
guesses spread over spellings of one account (realms a backend ignores) reach the penalty
of the same number of guesses with the plain login; what the backend tells apart (the
case of a shadow login) stays apart; a chain counts a guess against every account it
checks and a success clears only the account that said OK; and the user of an account
nobody guesses waits nothing."""

from __future__ import annotations

import threading

import pytest
from harness import need, testsaslauthd

GOOD = "Identity-good-1"
GUESSES = 6
# 6 guesses wait 0.01 + 0.02 + ... + 0.32 s in all; the level is read, not waited out.
THROTTLE = {"throttle": {"base_delay": 0.01, "max_delay": 30.0, "decay": 600.0,
                         "per_address": False}}


def guess(d, login: str, password: str, realm: str | None = None) -> str:
    need("testsaslauthd")
    res = testsaslauthd(d.mux, login, password, realm=realm, service="smtp")
    return res.stdout


def level(d, login: str, realm: str | None = None) -> int:
    reply = d.control(cmd="throttle-show", login=login, realm=realm)
    assert reply["ok"], reply
    return max((k["level"] for k in reply["keys"]), default=0)


@pytest.mark.csaslauthd
def test_shadow_realm_variants_count_as_one_account(daemon_factory, accounts):
    victim, other = accounts.add(GOOD), accounts.add(GOOD)
    d = daemon_factory(args=["-a", "shadow"], config=THROTTLE)
    for i in range(GUESSES):  # libsasl2 makes root@x1, root@x2 ... into a realm each
        assert "NO" in guess(d, victim, f"wrong-{i}", realm=f"x{i}.example")
        assert "NO" in guess(d, other, f"wrong-{i}")
    assert level(d, other) == GUESSES
    assert level(d, victim) == GUESSES
    shown = d.control(cmd="throttle-show", login=victim, realm="any.example")["keys"]
    assert shown == [{"key": f"user:{victim}", "level": GUESSES,
                      "delay": 0.01 * 2 ** (GUESSES - 1)}]
    # shadow does not fold case: the upper-case login is another (unknown) user
    assert "NO" in guess(d, victim.upper(), GOOD)
    assert level(d, victim.upper()) == 1
    assert level(d, victim) == GUESSES
    # ... and the right password still works for the real one (after its penalty)
    assert "OK" in guess(d, victim, GOOD, realm="x9.example")
    assert level(d, victim) == 0  # a success clears the account it reached


@pytest.mark.csaslauthd
def test_a_chain_counts_every_account_and_clears_only_the_one_that_said_ok(
        daemon_factory, accounts):
    """-a sql,shadow: a guess at victim@x reaches the SQL row (victim, x) and the local
    account victim.  The owner of the SQL row (victim, evil.example) logging in must not
    wash the penalty of the local account."""
    victim = accounts.add(GOOD)
    d = daemon_factory(args=["-a", "sql,shadow"], config=THROTTLE)
    d.admin("user", "add", victim, "--realm", "evil.example", password="attacker-own-pw")
    for i in range(GUESSES):
        assert "NO" in guess(d, victim, f"wrong-{i}", realm=f"x{i}.example")
    for i in range(GUESSES):  # each guess reached one SQL row and the local account
        keys = d.control(cmd="throttle-show", login=victim, realm=f"x{i}.example")["keys"]
        assert {k["key"]: k["level"] for k in keys} == {
            f"user:{victim}@x{i}.example": 1, f"user:{victim}": GUESSES}
    assert "OK" in guess(d, victim, "attacker-own-pw", realm="evil.example")
    assert level(d, victim, "") == GUESSES


@pytest.mark.csaslauthd
def test_the_user_of_an_account_nobody_guesses_waits_nothing(daemon_factory, accounts):
    victim, legit = accounts.add(GOOD), accounts.add(GOOD)
    d = daemon_factory(args=["-a", "shadow"], config={
        "throttle": {"base_delay": 0.2, "max_delay": 0.4, "decay": 600.0}})
    stop = threading.Event()

    def attack() -> None:
        i = 0
        while not stop.is_set():
            d.ask(victim, f"wrong-{i}", "smtp", f"x{i}.example", "192.0.2.7;1234")
            i += 1

    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for t in attackers:
        t.start()
    try:
        for _ in range(5):
            assert "OK" in guess(d, legit, GOOD, realm="example.org")
    finally:
        stop.set()
        for t in attackers:
            t.join(30)
    assert level(d, victim) > 1
    assert level(d, legit) == 0
    mine = [r for r in d.audit() if r["login"] == legit]
    assert len(mine) == 5 and all(r["result"] == "ok" and r["delay"] == 0 for r in mine)


@pytest.mark.csaslauthd
def test_throttle_clear_by_login(daemon_factory, accounts):
    a, b = accounts.add(GOOD), accounts.add(GOOD)
    d = daemon_factory(args=["-a", "shadow"], config=THROTTLE)
    for i in range(3):
        guess(d, a, f"wrong-{i}", realm="r.example")
        guess(d, b, f"wrong-{i}")
    assert d.control(cmd="throttle-show")["penalised"] == 2
    assert d.control(cmd="throttle-clear", login=a, realm="other.example") == {
        "ok": True, "cleared": 1}  # another realm: the same local account
    assert level(d, a) == 0 and level(d, b) == 3
    assert d.control(cmd="throttle-show")["penalised"] == 1
    reply = d.control(cmd="throttle-show", login=7)
    assert reply["ok"] is False and "login" in reply["error"]


@pytest.mark.csaslauthd
def test_a_cached_password_waits_for_the_accounts_penalty_whatever_the_spelling(
        daemon_factory, accounts):
    """The fast lane answers a cached good password at once only when no penalty is
    pending: pending on the account, not on the spelling that was cached."""
    victim = accounts.add(GOOD)
    d = daemon_factory(args=["-a", "shadow", "-c"], config={
        "throttle": {"base_delay": 0.5, "max_delay": 2.0, "decay": 600.0,
                     "per_address": False}})
    assert "OK" in guess(d, victim, GOOD, realm="x1.example")  # cached for this spelling
    assert "OK" in guess(d, victim, GOOD, realm="x1.example")
    for i in range(2):
        assert "NO" in guess(d, victim, f"wrong-{i}", realm=f"y{i}.example")
    assert level(d, victim) == 2
    assert "OK" in guess(d, victim, GOOD, realm="x1.example")
    last = [r for r in d.audit() if r["login"] == victim][-1]
    assert (last["result"], last["cache_hit"]) == ("ok", True)
    assert last["delay"] >= 1.0  # waited out the account's penalty before the cached OK
