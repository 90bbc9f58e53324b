"""The inline lane: the whole pipeline in the fast lane's thread (``answer_now``).

Answers, decisions (what the audit and the numbers see), the cache fill and the penalties
must be those of the asyncio path (``answer``); these tests run both on the real SQL
backend (SQLite) with a real cache and throttle, and the fast lane itself on a socket
pair.  Which path answered is read from counters, never from timing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from saslauthpy import fastlane
from saslauthpy.authenticator import REPLY_FAIL, REPLY_OK, Authenticator, Peer
from saslauthpy.backends.base import OK, Backend, NotNow
from saslauthpy.backends.sql import backend as sql
from saslauthpy.cache import CredentialCache
from saslauthpy.config import Config, ThrottleOptions
from saslauthpy.protocol import Request, format_request
from saslauthpy.throttle import Throttle

SERVICE = "imap"


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    store = sql.Store(Config(), {"url": url})
    store.add("alice", "", b"alice-pw")
    store.close()
    return url


def pipeline(url: str, cache: bool = True) -> tuple[Authenticator, list]:
    config = Config(threads=2, throttle=ThrottleOptions(base_delay=0.05, max_delay=0.05))
    backend = sql.Backend(config, {"url": url})
    backend.open()
    seen: list = []
    auth = Authenticator(config, [backend], CredentialCache(100, 60, 60) if cache else None,
                         Throttle(config), observers=[seen.append])
    return auth, seen


def projection(decisions: list) -> list[tuple]:
    return [(d.request.login, d.result, d.reason, d.backend, d.cached, d.delay > 0)
            for d in decisions]


STEPS = [("alice", b"alice-pw"), ("alice", b"alice-pw"), ("alice", b"wrong"),
         ("alice", b"wrong"), ("nobody", b"x"), ("alice", b"alice-pw")]


def test_answer_now_answers_records_and_caches_like_answer(url):
    slow, slow_seen = pipeline(url)
    fast, fast_seen = pipeline(url)
    assert fast.inline  # SQLite: a local check

    async def asyncio_path() -> list[bytes]:
        out = []
        for login, pw in STEPS:
            req = Request(login, pw, SERVICE)
            reply = slow.answer_from_cache(req, Peer(), time.monotonic())
            out.append(reply if reply is not None else
                       await slow.answer(req, Peer(), time.monotonic()))
        return out

    expected = asyncio.run(asyncio_path())
    got = []
    for login, pw in STEPS:
        reply = fast.answer_now(Request(login, pw, SERVICE), Peer(), time.monotonic())
        if reply is None:  # a penalty is pending: the asyncio path's business
            reply = asyncio.run(fast.answer(Request(login, pw, SERVICE), Peer(),
                                            time.monotonic()))
        got.append(reply)
    assert got == expected == [REPLY_OK, REPLY_OK, REPLY_FAIL, REPLY_FAIL, REPLY_FAIL,
                               REPLY_OK]
    assert projection(fast_seen) == projection(slow_seen)
    # the first answer filled the cache; the wrong password was remembered as wrong
    assert [d.cached for d in fast_seen][:2] == [False, True]
    for auth in (slow, fast):
        auth.close()


def test_a_wrong_password_checked_inline_raises_the_penalty(url):
    auth, seen = pipeline(url, cache=False)
    assert auth.answer_now(Request("alice", b"guess-1", SERVICE), Peer(),
                           time.monotonic()) == REPLY_FAIL
    assert seen[-1].result == "fail" and seen[-1].backend == "sql"
    assert auth.penalty(Request("alice", b"", SERVICE)) > 0
    # penalised now: the inline lane declines, publishing nothing
    assert auth.answer_now(Request("alice", b"alice-pw", SERVICE), Peer(),
                           time.monotonic()) is None
    assert len(seen) == 1
    reply = asyncio.run(auth.answer(Request("alice", b"alice-pw", SERVICE), Peer(),
                                    time.monotonic()))
    assert reply == REPLY_OK and seen[-1].delay > 0
    assert auth.penalty(Request("alice", b"", SERVICE)) == 0  # the success cleared it
    auth.close()


def test_only_chains_of_local_checks_go_inline(url):
    config = Config()
    local = sql.Backend(config, {"url": url})
    remote = sql.Backend(config, {"url": "postgresql://nobody@127.0.0.1:1/none"})
    assert Authenticator(config, [local]).inline
    assert not Authenticator(config, [local, remote]).inline
    assert not Authenticator(config, []).inline
    shared = Throttle(options={"redis": "redis://127.0.0.1:1/0", "redis_timeout": 0.1})
    assert not Authenticator(config, [local], throttle=shared).inline  # Redis: a round trip
    shared.close()


class Costly(Backend):
    """A local check that takes longer (burning CPU) than the inline lane allows."""

    name = "costly"
    inline = True

    def check(self, request):
        end = time.thread_time() + 5 * fastlane.INLINE_MAX
        while time.thread_time() < end:
            pass
        return OK


class Stalled(Backend):
    """A check that cannot end at once (a directory slow to answer): ``NotNow``."""

    name = "stalled"
    inline = True

    def check(self, request):
        raise NotNow()


def lane_for(auth: Authenticator) -> tuple[fastlane.FastLane, list]:
    taken: list = []
    lane = fastlane.FastLane(lambda fd, data: taken.append(("handover", fd)),
                             lambda fd, req, started: taken.append(("take", fd)), 256)
    lane.configure(auth, 256, None, False)
    lane.threaded = True  # as the thread acceptor sets it
    return lane, taken


def exchange(lane: fastlane.FastLane, taken: list, request: bytes) -> bytes | None:
    """One request through ``lane.handle`` on a socket pair: the reply written there
    (None: the lane gave the connection to the event loop, ``taken``)."""
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with client:
        client.sendall(request)
        fd = server.detach()
        os.set_blocking(fd, False)
        before = len(taken)
        lane.handle(fd)
        if len(taken) > before:
            os.close(fd)
            return None
        client.settimeout(5)
        return client.recv(100)


def test_the_fast_lane_answers_inline_and_pauses_while_checks_are_costly(url):
    auth, seen = pipeline(url)
    lane, taken = lane_for(auth)
    assert exchange(lane, taken, format_request("alice", "alice-pw", SERVICE, "")) == REPLY_OK
    assert lane.counts.inline == 1 and taken == []
    assert exchange(lane, taken, format_request("alice", "alice-pw", SERVICE, "")) == REPLY_OK
    assert lane.counts.answered == 1  # the cache the inline answer filled
    assert [d.cached for d in seen] == [False]  # the fast lane's hit is counted apart
    auth.close()

    config = Config()
    costly = Authenticator(config, [Costly(config)])
    lane, taken = lane_for(costly)
    assert exchange(lane, taken, format_request("bob", "pw", SERVICE, "")) == REPLY_OK
    assert costly.inline_after == 0  # one costly check alone does not pause the lane
    assert exchange(lane, taken, format_request("bob", "pw", SERVICE, "")) == REPLY_OK
    assert costly.inline_after > time.monotonic()  # a second one in a row does
    assert exchange(lane, taken, format_request("bob", "pw", SERVICE, "")) is None
    assert [kind for kind, _ in taken] == ["take"]  # the asyncio way while paused
    other, taken = lane_for(costly)  # another thread of the same worker pauses as well
    assert exchange(other, taken, format_request("bob", "pw", SERVICE, "")) is None
    assert [kind for kind, _ in taken] == ["take"] and other.counts.inline == 0


def test_a_request_the_field_checks_refuse_gets_no_cached_ok(url):
    # The fast lane asks the cache before it checks the fields: none of these may find
    # alice's cached password, and each goes to the asyncio path as the bytes it read.
    auth, _ = pipeline(url)
    lane, taken = lane_for(auth)
    assert exchange(lane, taken, format_request("alice", "alice-pw", SERVICE, "")) == REPLY_OK
    assert exchange(lane, taken, format_request("alice", "alice-pw", SERVICE, "")) == REPLY_OK
    assert lane.counts.answered == 1  # cached
    refused = [format_request("alice\0x", "alice-pw", SERVICE, ""),  # NUL in a field
               format_request("alice", "alice-pw\0x", SERVICE, ""),
               format_request("alice", "alice-pw", SERVICE + "\0", ""),
               format_request("alice", "", SERVICE, ""),  # empty password
               format_request("alice", "alice-pw", SERVICE, "") + b"\0",  # bytes after it
               format_request("alice", "alice-pw", SERVICE, "", "1" * 257),  # address too long
               format_request("alice", "alice-pw", SERVICE, "", "10.0.0.1\0")]
    for request in refused:
        assert exchange(lane, taken, request) is None, request
    assert [kind for kind, _ in taken] == ["handover"] * len(refused)
    assert lane.counts.answered == 1
    auth.close()


def test_a_check_that_cannot_end_at_once_pauses_every_lane_of_the_worker():
    config = Config()
    stalled = Authenticator(config, [Stalled(config)])
    first, taken_first = lane_for(stalled)
    second, taken_second = lane_for(stalled)
    assert exchange(first, taken_first, format_request("bob", "pw", SERVICE, "")) is None
    assert [kind for kind, _ in taken_first] == ["take"]  # handed over, nothing decided
    assert stalled.inline_after > time.monotonic()
    stalled.backends = [Costly(config)]  # were it tried, this check would answer OK inline
    assert exchange(second, taken_second, format_request("bob", "pw", SERVICE, "")) is None
    assert [kind for kind, _ in taken_second] == ["take"] and second.counts.inline == 0


def test_the_loop_acceptor_never_checks_inline(url):
    auth, _ = pipeline(url)
    lane, taken = lane_for(auth)
    lane.threaded = False  # handle() runs on the event loop: a check would stall it
    assert exchange(lane, taken, format_request("alice", "alice-pw", SERVICE, "")) is None
    assert [kind for kind, _ in taken] == ["take"]
    auth.close()


def test_the_lanes_counts_are_summed_field_by_field():
    first, second = fastlane.Counts(), fastlane.Counts()
    first.accepted, first.answered, first.handed, first.inline = 5, 3, 1, 1
    first.by_service = {b"imap": 3}
    first.latency[0], first.latency_sum = 3, 0.0003
    second.accepted, second.inline, second.by_service = 2, 2, {b"imap": 1, b"smtp": 4}
    second.latency[-1], second.latency_sum = 1, 20.0
    total = fastlane.Counts.total([first, second])
    assert (total.accepted, total.answered, total.handed, total.inline) == (7, 3, 1, 3)
    assert total.by_service == {b"imap": 4, b"smtp": 4}
    assert total.latency[0] == 3 and total.latency[-1] == 1 and sum(total.latency) == 4
    assert total.latency_sum == pytest.approx(20.0003)
    assert first.by_service == {b"imap": 3}  # the lanes' own counts are left as they were
