"""Throttle without Redis: growth, cap, decay, same-password, success, memory bound, the
table shared by forked workers, settings."""

from __future__ import annotations

import pytest
from throttling import Clock, fail, fp, make, req

from saslauthpy.backends.base import Result
from saslauthpy.errors import ConfigError
from saslauthpy.throttle import Throttle


def test_penalty_doubles_with_each_distinct_failure():
    clock = Clock()
    t = make(clock)
    r = req()
    assert t.penalty(r) == 0.0
    delays = []
    for i in range(4):
        fail(t, r, f"guess{i}")
        delays.append(t.penalty(r))
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_penalty_is_capped_at_max_delay():
    clock = Clock()
    t = make(clock, max_delay=5.0)
    r = req()
    for i in range(50):
        fail(t, r, f"guess{i}")
    assert t.penalty(r) == 5.0
    # The level stops at the cap, so the tail after the attack is short: 1, 2, 4, 5 -> 4 levels.
    clock.now += 4 * 30.0
    assert t.penalty(r) == 0.0


def test_penalty_decays_one_level_per_decay_period():
    clock = Clock()
    t = make(clock)
    r = req()
    for i in range(3):
        fail(t, r, f"guess{i}")
    assert t.penalty(r) == 4.0
    clock.now += 29.9
    assert t.penalty(r) == 4.0
    clock.now += 0.2
    assert t.penalty(r) == 2.0
    clock.now += 30.0
    assert t.penalty(r) == 1.0
    clock.now += 30.0
    assert t.penalty(r) == 0.0
    # A new failure after decay starts from the decayed level.
    fail(t, r, "again")
    assert t.penalty(r) == 1.0


def test_same_wrong_password_does_not_raise_the_penalty():
    clock = Clock()
    t = make(clock)
    r = req()
    fail(t, r, "stale-password")
    for _ in range(20):
        fail(t, r, "stale-password")
    assert t.penalty(r) == 1.0
    fail(t, r, "other")
    assert t.penalty(r) == 2.0
    # Alternating between two remembered wrong passwords is still no new information.
    for _ in range(5):
        fail(t, r, "stale-password")
        fail(t, r, "other")
    assert t.penalty(r) == 2.0


def test_success_clears_the_user_penalty_but_not_the_address():
    clock = Clock()
    t = make(clock)
    attacker = req("alice", "192.0.2.7;40000")
    for i in range(3):
        fail(t, attacker, f"guess{i}")
    legit = req("alice", "198.51.100.1;5000")
    assert t.penalty(legit) == 4.0  # user key
    t.record(legit, Result.OK, fp("right"))
    assert t.penalty(legit) == 0.0
    # The attacking address keeps its penalty for every user it tries.
    assert t.penalty(req("bob", "192.0.2.7;40001")) == 4.0
    # ...and a success from the attacker's address does not wash it.
    t.record(req("mallory", "192.0.2.7;40002"), Result.OK, fp("own"))
    assert t.penalty(req("bob", "192.0.2.7;40003")) == 4.0


def test_legitimate_user_under_attack_waits_at_most_the_cap():
    clock = Clock()
    t = make(clock, max_delay=3.0)
    for i in range(100):
        fail(t, req("alice", f"203.0.113.{i % 50};1"), f"guess{i}")
    assert t.penalty(req("alice", "198.51.100.1;1")) == 3.0
    assert t.penalty(req("alice")) == 3.0


def test_address_penalty_spans_users_and_ipv6_is_grouped_by_prefix():
    clock = Clock()
    t = make(clock, per_user=False)
    for i in range(2):
        fail(t, req(f"user{i}", "2001:db8:1:2::5;993"), "pw")
    # Same password for another user counts as a new guess at the address key.
    assert t.penalty(req("zed", "2001:db8:1:2:ffff::9;1")) == 2.0
    assert t.penalty(req("zed", "2001:db8:1:3::5;1")) == 0.0
    # IPv4-mapped IPv6 is the IPv4 address; bracketed form accepted.
    fail(t, req("u", "::ffff:192.0.2.1;1"), "pw")
    assert t.penalty(req("v", "192.0.2.1;2")) == 1.0
    assert t.penalty(req("v", "[::ffff:192.0.2.1];2")) == 1.0
    # No or garbage address: no address key.
    assert t.penalty(req("v", "")) == 0.0
    assert t.penalty(req("v", "not-an-ip;1")) == 0.0


def test_exempt_networks_and_unknown_users_and_tempfail():
    clock = Clock()
    t = make(clock, per_user=False, exempt=["10.0.0.0/8"])
    fail(t, req("a", "10.1.2.3;1"), "pw")
    assert t.penalty(req("a", "10.1.2.3;1")) == 0.0
    t = make(clock)
    r = req()
    t.record(r, Result.UNKNOWN, fp("pw"))
    assert t.penalty(r) == 1.0
    t.record(r, Result.TEMPFAIL, fp("pw2"))
    assert t.penalty(r) == 1.0


def test_memory_is_bounded_and_the_newest_keys_stay():
    clock = Clock()
    t = make(clock, max_tracked=100)
    for i in range(1000):
        clock.now += 0.001
        fail(t, req(f"spray{i}"), "pw")
    assert 0 < t.tracked() <= 100
    assert t.penalty(req("spray999")) == 1.0
    assert sum(t.penalty(req(f"spray{i}")) > 0 for i in range(100)) < 20  # the oldest went


def test_junk_logins_never_push_out_the_highest_penalties():
    """100 times the table's size in distinct junk logins (one failure each, level 1)
    make room among themselves: the victims at the cap keep their level."""
    clock = Clock()
    t = make(clock, max_tracked=800)
    victims = [req(f"victim{i}") for i in range(20)]
    for v in victims:
        for g in range(4):
            fail(t, v, f"guess{g}")
    assert all(t.penalty(v) == 8.0 for v in victims)
    for i in range(80_000):
        clock.now += 0.0001
        fail(t, req(f"junk{i}", realm="x"), "pw")
    assert all(t.penalty(v) == 8.0 for v in victims)
    assert t.penalty(req("junk79999", realm="x")) == 1.0


def test_among_equal_levels_the_oldest_makes_room():
    clock = Clock()
    t = make(clock, max_tracked=8)  # one set of 8
    for i in range(8):
        clock.now += 1
        fail(t, req(f"u{i}"), "pw")
    fail(t, req("u3"), "other")  # u3 now at level 2
    clock.now += 1
    fail(t, req("new"), "pw")
    assert t.penalty(req("u0")) == 0.0  # oldest of the level-1 keys
    assert t.penalty(req("u1")) == 1.0 and t.penalty(req("u3")) == 2.0
    assert t.penalty(req("new")) == 1.0


def test_the_table_is_shared_by_forked_processes_and_counts_every_failure():
    """Two processes record failures for one user at the same moment: every distinct
    guess counts (the writers lock), and both see the same level."""
    import multiprocessing

    from saslauthpy.penalties import PenaltyTable

    table = PenaltyTable(1000)
    opts = {"base_delay": 1.0, "max_delay": 4096.0, "decay": 3600.0}
    start = multiprocessing.get_context("fork").Barrier(3)

    def guess(who: str) -> None:
        t = Throttle(options=opts, penalties=table)
        start.wait()
        for i in range(5):
            fail(t, req("alice"), f"{who}-{i}")

    procs = [multiprocessing.get_context("fork").Process(target=guess, args=(w,))
             for w in ("a", "b")]
    for p in procs:
        p.start()
    start.wait()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    here = Throttle(options=opts, penalties=table)
    assert here.penalty(req("alice")) == 2.0 ** 9  # level 10: all ten guesses counted


def test_disabled_throttle_never_delays():
    clock = Clock()
    t = make(clock, enabled=False)
    for i in range(5):
        fail(t, req(), f"g{i}")
    assert t.penalty(req()) == 0.0
    assert t.tracked() == 0


@pytest.mark.parametrize("options, word", [
    ({"base_dely": 1.0}, "base_dely"),
    ({"max_delay": "3"}, "max_delay"),
    ({"base_delay": 5.0, "max_delay": 1.0}, "max_delay"),
    ({"decay": 0}, "decay"),
    ({"exempt": ["nonsense"]}, "exempt"),
    ({"redis": "http://x"}, "redis"),
])
def test_bad_settings_name_the_key(options, word):
    with pytest.raises(ConfigError, match=word):
        Throttle(options=options)


def test_reads_the_throttle_table_from_config(tmp_path):
    from saslauthpy.config import load_toml

    path = tmp_path / "c.toml"
    path.write_text("[throttle]\nmax_delay = 2.0\nbase_delay = 0.5\n")
    t = Throttle(load_toml(str(path)))
    assert t.opts.max_delay == 2.0 and t.opts.base_delay == 0.5
    path.write_text("[throttle]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_toml(str(path))
