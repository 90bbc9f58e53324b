"""Good (user, address) pairs and the throttle rule that uses them."""

from __future__ import annotations

import os

from saslauthpy.backends.base import Result
from saslauthpy.config import Config, ThrottleOptions
from saslauthpy.goodpairs import GoodPairs, make_pairs
from saslauthpy.options import load
from saslauthpy.protocol import Request
from saslauthpy.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def req(login: str, addr: str = "") -> Request:
    return Request(login, b"x", "smtp", "", addr)


def throttle(clock: Clock, pairs: GoodPairs | None) -> Throttle:
    return Throttle(options={"base_delay": 1.0, "max_delay": 8.0, "decay": 30.0},
                    clock=clock, pairs=pairs)


def fail(t: Throttle, r: Request, n: int) -> None:
    for i in range(n):
        t.record(r, Result.FAIL, os.urandom(16) + bytes([i]))


def test_pairs_are_remembered_and_expire():
    clock = Clock()
    pairs = GoodPairs(100, ttl=60.0, clock=clock)
    assert not pairs.known("u:alice\0", "a:192.0.2.1")
    pairs.remember("u:alice\0", "a:192.0.2.1")
    assert pairs.known("u:alice\0", "a:192.0.2.1")
    assert not pairs.known("u:alice\0", "a:192.0.2.2")
    assert not pairs.known("u:bob\0", "a:192.0.2.1")
    clock.now += 59
    pairs.remember("u:alice\0", "a:192.0.2.1")  # a new success renews it
    clock.now += 59
    assert pairs.known("u:alice\0", "a:192.0.2.1")
    clock.now += 2
    assert not pairs.known("u:alice\0", "a:192.0.2.1")


def test_table_is_bounded_and_keeps_no_login_or_address():
    pairs = GoodPairs(8, ttl=60.0)
    for i in range(1000):
        pairs.remember(f"u:user{i}\0", f"a:10.0.{i // 256}.{i % 256}")
    assert len(pairs._mm) == 8 * 32
    assert pairs.known("u:user999\0", "a:10.0.3.231")  # the latest is kept
    assert sum(pairs.known(f"u:user{i}\0", f"a:10.0.{i // 256}.{i % 256}")
               for i in range(1000)) <= 8
    assert b"user" not in pairs._mm[:] and b"10.0" not in pairs._mm[:]


def test_a_torn_entry_reads_as_unknown():
    pairs = GoodPairs(4, ttl=60.0)
    pairs.remember("u:alice\0", "a:192.0.2.1")
    off = next(i for i in range(0, len(pairs._mm), 32) if pairs._mm[i:i + 16] != bytes(16))
    pairs._mm[off + 20] ^= 0xFF  # the expiry, half-written by another process
    assert not pairs.known("u:alice\0", "a:192.0.2.1")


def test_guesser_cannot_hold_the_user_at_a_known_address():
    clock = Clock()
    t = throttle(clock, GoodPairs(100, ttl=3600.0, clock=clock))
    home, guesser, new = "192.0.2.10;1", "203.0.113.5;2", "198.51.100.9;3"
    t.record(req("alice", home), Result.OK, b"fp")  # alice logged in from home before
    fail(t, req("alice", guesser), 3)
    assert t.penalty(req("alice", home)) == 0.0  # the real user gets in at once
    assert t.penalty(req("alice", new)) == 4.0  # a guess from a new address is still held
    assert t.penalty(req("alice", guesser)) == 4.0
    assert t.penalty(req("bob", guesser)) == 4.0  # the guessing address waits for everyone
    assert t.penalty(req("alice")) == 4.0  # no address: the user's penalty, as before
    # Her success from home does not lift the penalty that holds the guessers.
    t.record(req("alice", home), Result.OK, b"fp")
    assert t.penalty(req("alice", new)) == 4.0


def test_a_known_address_is_still_held_by_its_own_address_penalty():
    clock = Clock()
    t = throttle(clock, GoodPairs(100, ttl=3600.0, clock=clock))
    shared = "192.0.2.10;1"  # a NAT the real user shares with a guesser
    t.record(req("alice", shared), Result.OK, b"fp")
    fail(t, req("alice", shared), 2)
    assert t.penalty(req("alice", shared)) == 2.0


def test_without_pairs_a_success_still_clears_the_user_penalty():
    clock = Clock()
    t = throttle(clock, None)
    fail(t, req("alice", "203.0.113.5;2"), 3)
    t.record(req("alice", "192.0.2.10;1"), Result.OK, b"fp")
    assert t.penalty(req("alice", "198.51.100.9;3")) == 0.0


def test_exempt_addresses_are_never_known():
    """An exempt address has no address penalty, so it may not skip the user's either."""
    clock = Clock()
    t = Throttle(options={"exempt": ["10.0.0.0/8"]}, clock=clock,
                 pairs=GoodPairs(100, ttl=3600.0, clock=clock))
    t.record(req("alice", "10.1.2.3;1"), Result.OK, b"fp")
    fail(t, req("alice", "203.0.113.5;2"), 2)
    assert t.penalty(req("alice", "10.1.2.3;1")) == 2.0


def test_make_pairs_follows_the_throttle_table():
    assert make_pairs(Config()) is not None
    for table in ({"good_pairs": 0}, {"per_address": False}, {"per_user": False},
                  {"enabled": False}):
        assert make_pairs(Config(throttle=load(ThrottleOptions, table))) is None


def test_an_ok_is_worth_recording_only_when_it_pairs_an_address_or_lifts_a_penalty():
    """``wants``: the pipeline skips working out identities for an OK that would change
    nothing; whenever ``record`` would change something, ``wants`` says so."""
    clock = Clock()
    plain = throttle(clock, None)
    assert not plain.wants(req("alice"), Result.OK)  # nothing to pair, no penalty anywhere
    assert not plain.wants(req("alice"), Result.TEMPFAIL)
    assert plain.wants(req("alice"), Result.FAIL) and plain.wants(req("alice"), Result.UNKNOWN)
    fail(plain, req("bob"), 1)  # a penalty somewhere: an OK may lift one
    assert plain.wants(req("alice"), Result.OK)

    pairs = GoodPairs(16, 3600)
    paired = throttle(clock, pairs)
    assert paired.wants(req("alice", "192.0.2.7;4000"), Result.OK)  # a pair to remember
    assert not paired.wants(req("alice"), Result.OK)
    paired.record(req("alice", "192.0.2.7;4000"), Result.OK, b"")
    assert pairs.known("u:alice\0", paired.address_key("192.0.2.7;4000"))
    pairs.close()
    assert not Throttle(options={"enabled": False}).wants(req("alice"), Result.FAIL)
