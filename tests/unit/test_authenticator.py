"""Scheduling in the pipeline: what a flood of suspected guesses may take from everyone else.

The backend here is a test double on purpose: it blocks until released, so the test can
see how many requests the pool admits at once.  Real backends are exercised elsewhere.
"""

from __future__ import annotations

import asyncio
import threading
import time

from saslauthpy.authenticator import Authenticator, Peer
from saslauthpy.backends.base import OK, Backend, Result
from saslauthpy.cache import CredentialCache
from saslauthpy.config import Config, ThrottleOptions
from saslauthpy.protocol import Request
from saslauthpy.throttle import Throttle


class Blocking(Backend):
    name = "blocking"

    def __init__(self, config):
        super().__init__(config, {})
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = self.peak = 0

    def check(self, request):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if request.login.startswith("guess"):
                self.release.wait(10)
            return OK
        finally:
            with self.lock:
                self.running -= 1


def make(threads=4, cache=False):
    config = Config(threads=threads, throttle=ThrottleOptions(base_delay=0.01, max_delay=0.01))
    backend = Blocking(config)
    auth = Authenticator(config, [backend], CredentialCache(100, 60) if cache else None,
                         Throttle(config))
    return auth, backend


def test_penalised_requests_get_only_part_of_the_pool():
    async def run():
        auth, backend = make(threads=4)
        for i in range(10):  # each of 10 users has failed once: their next try is suspect
            auth.throttle.record(Request(f"guess{i}", b"x"), Result.FAIL, bytes([i]) * 16)
        t0 = time.monotonic()
        guesses = [asyncio.ensure_future(auth.answer(Request(f"guess{i}", b"x"), Peer(), t0))
                   for i in range(10)]
        await asyncio.sleep(0.3)
        assert backend.running == 2  # threads // 2: the other half stays free
        clean = await asyncio.wait_for(auth.answer(Request("alice", b"pw"), Peer(), t0), 2)
        assert clean.endswith(b"OK")
        backend.release.set()
        await asyncio.gather(*guesses)
        assert backend.peak <= 3
        backend.close()

    asyncio.run(run())


def test_a_cached_password_still_waits_out_a_penalty():
    async def run():
        auth, backend = make(cache=True)
        req = Request("alice", b"pw", "smtp")
        assert (await auth.answer(req, Peer(), time.monotonic())).endswith(b"OK")
        assert auth.answer_from_cache(req, Peer(), time.monotonic()) is not None
        auth.throttle.record(req, Result.FAIL, b"\1" * 16)
        # penalised: the synchronous fast path declines, the slow path waits then uses the cache
        assert auth.answer_from_cache(req, Peer(), time.monotonic()) is None
        seen = []
        auth.observers.append(seen.append)
        t0 = time.monotonic()
        assert (await auth.answer(req, Peer(), t0)).endswith(b"OK")
        assert seen[-1].cached and seen[-1].backend == "cache" and seen[-1].delay >= 0.01
        backend.close()

    asyncio.run(run())


def test_one_user_cannot_hold_the_whole_pool():
    async def run():
        auth, backend = make(threads=4)
        auth.throttle = None  # no penalties: only the per-user gate is at work
        t0 = time.monotonic()
        same = [asyncio.ensure_future(auth.answer(Request("guess", b"x"), Peer(), t0))
                for _ in range(8)]
        await asyncio.sleep(0.3)
        assert backend.running == 2  # threads // 2 for one login
        clean = await asyncio.wait_for(auth.answer(Request("alice", b"pw"), Peer(), t0), 2)
        assert clean.endswith(b"OK")
        backend.release.set()
        await asyncio.gather(*same)
        assert auth.gate._users == {} and auth.gate._sems == {}  # nothing left behind
        backend.close()

    asyncio.run(run())
