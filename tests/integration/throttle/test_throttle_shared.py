"""Throttle with Redis (a shared table, Redis down) and through the daemon (worker
processes share one table); the rest is tests/unit/test_throttle.py."""

from __future__ import annotations

import threading

from throttling import Clock, fail, fp, make, req

from saslauthpy.backends.base import Result
from saslauthpy.throttle import Throttle

# -- Redis-backed (real Redis on 127.0.0.1:6379) ------------------------------------------

def test_redis_table_is_shared_between_instances(redis_prefix):
    clock = Clock()
    opts = {"redis": "redis://127.0.0.1:6379/0", "redis_prefix": redis_prefix,
            "redis_timeout": 1.0}
    host_a = make(clock, **opts)
    host_b = make(clock, **opts)
    r = req("alice", "192.0.2.9;1")
    fail(host_a, r, "g1")
    fail(host_b, r, "g2")
    assert host_a.penalty(r) == 2.0 and host_b.penalty(r) == 2.0
    fail(host_a, r, "g2")  # same password seen on the other host: no growth
    assert host_b.penalty(r) == 2.0
    assert host_a.tracked() == 0  # nothing kept locally while Redis answers
    clock.now += 30.0
    assert host_b.penalty(r) == 1.0
    host_b.record(req("alice", "198.51.100.3;2"), Result.OK, fp("right"))
    assert host_a.penalty(req("alice")) == 0.0
    assert host_a.penalty(req("carol", "192.0.2.9;7")) == 1.0  # address: 2 levels, decayed 1
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    ttl = client.ttl(redis_prefix + "a:192.0.2.9")
    client.close()
    assert 0 < ttl <= 2 * 30
    host_a.close()
    host_b.close()


def test_redis_down_falls_back_to_local_without_blocking():
    import time

    clock = Clock()
    # Nothing listens on port 1: connection refused at once.
    t = make(clock, redis="redis://127.0.0.1:1/0", redis_timeout=0.2, redis_retry=60.0)
    r = req()
    started = time.monotonic()
    assert t.penalty(r) == 0.0
    fail(t, r, "g1")
    fail(t, r, "g2")
    assert t.penalty(r) == 2.0
    assert time.monotonic() - started < 1.0
    assert t.tracked() == 1
    t.close()


async def _async_roundtrip(t: Throttle) -> float:
    r = req("dave")
    await t.record_async(r, Result.FAIL, fp("g"))
    return await t.penalty_async(r)


def test_async_variants_use_redis_off_the_event_loop(redis_prefix):
    import asyncio

    clock = Clock()
    t = make(clock, redis="redis://127.0.0.1:6379/0", redis_prefix=redis_prefix,
             redis_timeout=1.0)
    assert asyncio.run(_async_roundtrip(t)) == 1.0
    t.close()


def test_non_utf8_login_is_shared_through_redis(redis_prefix):
    """A login is whatever bytes the client sent (decoded with surrogateescape).  It used to
    fail to encode as a Redis key, which counted as Redis being down: the host fell back to
    its local table for redis_retry seconds, for every user."""
    clock = Clock()
    opts = {"redis": "redis://127.0.0.1:6379/0", "redis_prefix": redis_prefix,
            "redis_timeout": 1.0, "redis_retry": 60.0}
    host_a = make(clock, **opts)
    host_b = make(clock, **opts)
    odd = req(b"m\xfcller".decode("utf-8", "surrogateescape"), "192.0.2.20;1")
    fail(host_a, odd, "g1")
    assert host_b.penalty(odd) == 1.0
    assert host_a.tracked() == 0  # nothing fell back to the local table
    fail(host_a, req("bob"), "g1")  # and Redis is still in use for everyone else
    assert host_b.penalty(req("bob")) == 1.0
    host_a.close()
    host_b.close()


class ThreadProbe(Throttle):
    """Notes which threads touch the local table (it is not locked: one thread only)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.threads: set[str] = set()

    def _load(self, keys):
        self.threads.add(threading.current_thread().name)
        return super()._load(keys)

    def _fail(self, key, fp, now):
        self.threads.add(threading.current_thread().name)
        super()._fail(key, fp, now)


def test_with_redis_down_the_table_is_still_used_from_one_thread():
    """The async calls used to run on the event loop once Redis was marked down, while the
    Redis thread could still be writing the same local table."""
    import asyncio

    async def run(t: Throttle) -> float:
        r = req("erin")
        for i in range(3):
            await t.record_async(r, Result.FAIL, fp(f"g{i}"))
        return await t.penalty_async(r)

    t = ThreadProbe(options={"redis": "redis://127.0.0.1:1/0", "redis_timeout": 0.2,
                             "redis_retry": 60.0}, clock=Clock())
    assert asyncio.run(run(t)) == 4.0
    assert {name.split("_")[0] for name in t.threads} == {"throttle-redis"}
    t.close()


# -- through the daemon: worker processes share one table ---------------------------------

def test_guesses_answered_by_other_worker_processes_raise_one_penalty(daemon_factory):
    """Guesses answered by one worker, then (that worker killed) by others: the penalty
    goes on growing as if one process had seen them all (a table per process would
    start again from nothing)."""
    d = daemon_factory(config={"server": {"processes": 2},
                               "throttle": {"base_delay": 0.02, "max_delay": 60.0,
                                            "decay": 600.0}})
    d.admin("user", "add", "alice", password="alice-pw-1")
    for i in range(4):
        assert d.ask("alice", f"guess-{i}", "smtp").startswith("NO")
    first = {r["pid"] for r in d.audit()}
    d.kill_workers(first)
    for i in range(4, 7):
        assert d.ask("alice", f"guess-{i}", "smtp").startswith("NO")
    recs = d.audit()
    assert not first & {r["pid"] for r in recs[4:]}  # other processes answered these
    # the n-th guess waited out the level the n-1 before it raised: 0.02 * 2**(n-2)
    assert recs[-1]["delay"] >= 0.02 * 2 ** 5
    assert [r["delay"] > 0 for r in recs] == [False] + [True] * 6
