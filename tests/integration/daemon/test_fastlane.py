"""The fast lane and its hand-over to the asyncio path.

Every way a request can arrive (whole, split over several writes, with the fifth field,
an oversize field, followed by a half-close, a client that closes early) gets the same
answer from our daemon as from the C saslauthd: the same probes, side by side, on a real
local account through ``-a shadow -c``.  Which path answered is read from the status
counters (answered in the fast lane / handed over), never from timing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import ask, read_reply
from reference import Accounts, CSaslauthd

from saslauthpy import protocol

PASSWORD = "Fast-lane-pw-1"
SERVICE = "imap"


def verdict(reply: str | None) -> str | None:
    return None if reply is None else reply.split(" ", 1)[0]


def exchange(path, pieces: list[bytes], half_close: bool = False, pause: float = 0.05,
             timeout: float = 10.0) -> str | None:
    """Send ``pieces`` as separate writes (``pause`` apart), optionally shut the write
    side, and return the reply text (None: closed without one)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(pause)
            s.sendall(piece)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        try:
            return read_reply(s)
        except ConnectionError:
            return None


def request(login: str, password: str = PASSWORD, client_addr: str | None = None) -> bytes:
    return protocol.format_request(login, password, SERVICE, "", client_addr)


def status(d) -> dict:
    return json.loads(d.admin("status", "--json").stdout)


def settled(d, requests: int, timeout: float = 10.0) -> dict:
    """The status once the workers have published at least ``requests`` connections
    that sent something (each worker publishes its numbers every second)."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(d)
        lane = st["fast_lane"]
        if (lane["answered"] + lane["inline"] + lane["handed_over"] >= requests
                or time.monotonic() > deadline):
            return st
        time.sleep(0.1)


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    with Accounts() as acc:
        yield acc.add(PASSWORD)


@pytest.fixture
def c_daemon(tmp_path):
    c = CSaslauthd(tmp_path / "c", "shadow")
    try:
        yield c
    finally:
        c.remove()


@pytest.fixture
def ours(daemon_factory):
    return daemon_factory(args=["-a", "shadow", "-c"])


def probes(user: str) -> dict[str, tuple[list[bytes], bool, str]]:
    """name -> (writes, half-close, expected verdict)."""
    whole = request(user)
    five = request(user, client_addr="192.0.2.7;993")
    return {
        "whole": ([whole], False, "OK"),
        "split in three": ([whole[:3], whole[3:12], whole[12:]], False, "OK"),
        "byte by byte": ([whole[i:i + 1] for i in range(len(whole))], False, "OK"),
        "fifth field": ([five], False, "OK"),
        "fifth field split": ([five[:7], five[7:]], False, "OK"),
        "wrong password": ([request(user, "wrong")], False, "NO"),
        "unknown user": ([request("nosuchuser-fl")], False, "NO"),
        "oversize login": ([request("x" * 300)], False, "NO"),
        "empty login": ([protocol.format_request("", PASSWORD, SERVICE, "")], False, "NO"),
        "whole, then half-close": ([whole], True, "OK"),
        "split, then half-close": ([whole[:5], whole[5:]], True, "OK"),
        "fifth field, then half-close": ([five], True, "OK"),
        "wrong password, then half-close": ([request(user, "wrong")], True, "NO"),
    }


@pytest.mark.csaslauthd
def test_every_probe_gets_the_c_daemons_answer(account, c_daemon, ours):
    for name, (pieces, half, expected) in probes(account).items():
        for path in (c_daemon.mux, ours.mux):
            for _ in range(2):  # the second time a good password is a cache hit
                got = verdict(exchange(path, pieces, half, pause=0.01))
                assert got == expected, f"{name} on {path}: {got}"
    assert exchange(ours.mux, [request("x" * 300)]) == "NO "  # saslauthd's literal reply
    assert exchange(c_daemon.mux, [request("x" * 300)]) == "NO "
    asked = 2 * len(probes(account)) + 1
    st = settled(ours, asked)
    lane = st["fast_lane"]
    assert lane["answered"] >= 1
    assert lane["inline"] >= 1  # whole requests the cache did not answer: checked there
    # (connections also counts the harness's connect-and-close readiness checks)
    assert asked <= lane["answered"] + lane["inline"] + lane["handed_over"] <= st["connections"]


@pytest.mark.csaslauthd
@pytest.mark.parametrize("cached", [True, False], ids=["cache hit", "backend answer"])
def test_twenty_half_closing_clients_in_parallel_all_get_their_answer(
        account, c_daemon, daemon_factory, cached):
    d = daemon_factory(args=["-a", "shadow"] + (["-c"] if cached else []))
    whole = request(account)
    for path in (c_daemon.mux, d.mux):
        if cached:
            assert verdict(exchange(path, [whole])) == "OK"  # now in the cache
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda p: exchange(p, [whole], half_close=True),
                                    [path] * 20))
        assert answers.count(None) == 0, f"{path}: closed without an answer"
        assert {verdict(a) for a in answers} == {"OK"}, path
    hits = [r["cache_hit"] for r in d.audit()]
    assert len(hits) == 21 if cached else 20
    assert all(hits[1:]) if cached else not any(hits)


def test_socat_half_closes_and_reads_the_answer(account, ours):
    socat = shutil.which("socat")
    if not socat:
        from harness import missing

        missing("socat is not installed: .ci/setup.d/00-base.sh installs it")
    for _ in range(2):  # a backend answer, then a cache hit
        res = subprocess.run([socat, "-t", "5", "-", f"UNIX-CONNECT:{ours.mux}"],
                             input=request(account), capture_output=True, timeout=30)
        assert protocol.parse_reply(res.stdout) == "OK", res
    assert [r["cache_hit"] for r in ours.audit()] == [False, True]


def test_a_client_that_closes_early_costs_nothing(account, ours):
    """Request sent, socket closed before the answer: the decision is still made and
    recorded, and the daemon goes on answering."""
    whole = request(account)
    for cached in (False, True):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(ours.mux))
            s.sendall(whole)
        deadline = time.monotonic() + 10
        while len(ours.audit()) < 1 + cached and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ours.audit()[-1]["result"] == "ok"
        assert ours.audit()[-1]["cache_hit"] is cached
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # half a request, gone
        s.connect(str(ours.mux))
        s.sendall(whole[:6])
    assert ask(ours.mux, account, PASSWORD, SERVICE) == "OK"
    assert ours.proc.poll() is None and "Traceback" not in ours.stderr()


def test_a_pending_penalty_keeps_a_cached_answer_out_of_the_fast_lane(account,
                                                                       daemon_factory):
    d = daemon_factory(args=["-a", "shadow", "-c"],
                       config={"throttle": {"base_delay": 0.5, "max_delay": 0.5}})
    assert ask(d.mux, account, PASSWORD, SERVICE) == "OK"
    assert ask(d.mux, account, PASSWORD, SERVICE) == "OK"  # cached
    assert ask(d.mux, account, "wrong", SERVICE).startswith("NO")  # a penalty now
    assert ask(d.mux, account, PASSWORD, SERVICE) == "OK"
    waited = d.audit()[-1]
    assert waited["cache_hit"] is True and waited["delay"] >= 0.5  # waited, then the cache
    for _ in range(5):  # the success cleared the penalty: the fast lane may answer again
        assert ask(d.mux, account, PASSWORD, SERVICE) == "OK"
    assert all(r["delay"] == 0 for r in d.audit()[-5:])


def test_fast_lane_answers_reach_the_audit_file_like_any_other(daemon_factory):
    """-r (login@realm) on the SQL store: the fast lane keys and records the joined login."""
    d = daemon_factory(args=["-c", "-r"])
    d.admin("user", "add", "bob", "--realm", "example.org", password=PASSWORD)
    addr = "198.51.100.4;143"
    for _ in range(30):
        assert exchange(d.mux, [protocol.format_request("bob", PASSWORD, SERVICE,
                                                        "example.org", addr)]) == "OK"
    assert exchange(d.mux, [protocol.format_request("bob", PASSWORD, SERVICE,
                                                    "other.org", addr)]).startswith("NO")
    recs = d.audit()
    assert len(recs) == 31
    st = settled(d, 31)
    assert st["fast_lane"]["answered"] >= 1
    assert recs[-1]["login"] == "bob@other.org" and recs[-1]["cache_hit"] is False
    for rec in recs[1:-1]:
        assert rec["cache_hit"] and rec["backend"] == "cache" and rec["result"] == "ok"
        assert rec["login"] == "bob@example.org" and rec["client"] == addr
        assert rec["peer_pid"] == os.getpid() and rec["peer_uid"] == os.getuid()
    assert PASSWORD not in d.audit_path.read_text()


def test_both_acceptors_answer_alike(account, daemon_factory):
    def client(mux, answers: list[str]) -> None:
        for _ in range(20):
            answers.append(ask(mux, account, PASSWORD, SERVICE))

    for accept in ("thread", "loop"):
        d = daemon_factory(args=["-a", "shadow", "-c"], config={"server": {"accept": accept}})
        answers: list[str] = []
        threads = [threading.Thread(target=client, args=(d.mux, answers)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers.count("OK") == 80, accept
        st = settled(d, 80)
        assert st["fast_lane"]["answered"] >= 1, accept
        d.stop()


def test_with_the_throttle_in_redis_cached_logins_take_the_asyncio_path(account,
                                                                       daemon_factory):
    """A penalty check is then a Redis round trip, which the fast lane does not make:
    every request goes to the event loop, and is answered as before (cache, penalties)."""
    import uuid

    prefix = f"saslauthpy-test-{uuid.uuid4().hex}:"
    d = daemon_factory(args=["-a", "shadow", "-c"], config={"throttle": {
        "redis": "redis://127.0.0.1:6379/0", "redis_prefix": prefix, "redis_timeout": 1.0,
        "base_delay": 0.3, "max_delay": 0.3}})
    try:
        for _ in range(5):
            assert ask(d.mux, account, PASSWORD, SERVICE) == "OK"
        assert ask(d.mux, account, "wrong", SERVICE).startswith("NO")
        assert ask(d.mux, account, PASSWORD, SERVICE) == "OK"
        recs = d.audit()
        assert [r["cache_hit"] for r in recs] == [False, True, True, True, True, False, True]
        assert recs[-1]["delay"] >= 0.3  # the penalty, kept in Redis, was served
        st = settled(d, 7)
        assert st["fast_lane"]["answered"] == 0
    finally:
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
