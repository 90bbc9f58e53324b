"""What a flood of idle connections can take: the daemon started under Debian's default
soft open-file limit (1,024) raises it to what max_connections needs, holds 3,000 idle
connections, still answers a correct login, resets nobody, and its control socket
answers; under a hard limit too low for the cap it says so and lowers the cap.

Behaviour only: whether each thing happens, never how fast."""

from __future__ import annotations

import json
import resource
import socket
import struct
import time

import pytest
from harness import read_reply

from saslauthpy import protocol

PASSWORD = "Limits-pw-1"
IDLE = 3000


@pytest.fixture(autouse=True)
def enough_descriptors_here():
    """This test process holds the idle clients' ends: it needs more than 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + 200:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for {IDLE} clients here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, IDLE + 200), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(path, count: int) -> list[socket.socket]:
    """``count`` connected clients that send nothing (a full backlog is retried)."""
    idle: list[socket.socket] = []
    deadline = time.monotonic() + 60
    while len(idle) < count and time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(str(path))
        except BlockingIOError:  # the listen backlog is full for a moment
            s.close()
            time.sleep(0.001)
            continue
        idle.append(s)
    assert len(idle) == count
    return idle


def resets(idle: list[socket.socket]) -> tuple[int, int]:
    """(reset, closed) among the idle clients; the others are still open."""
    reset = closed = 0
    for s in idle:
        try:
            if s.recv(16) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except ConnectionResetError:
            reset += 1
    return reset, closed


def ask_like_libsasl2(path, login: str, password: str, service: str) -> str:
    """libsasl2's way: a blocking connect (it waits while the listen backlog is full,
    where a socket with a Python timeout gets EAGAIN at once), one write, one reply."""
    timeout = struct.pack("ll", 10, 0)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
        s.connect(str(path))
        s.sendall(protocol.format_request(login, password, service, ""))
        return read_reply(s)


def logins_answered(d) -> None:
    """A correct login, again and again, and the control socket, all answered."""
    for _ in range(20):
        assert ask_like_libsasl2(d.mux, "alice", PASSWORD, "smtp") == "OK"
    assert json.loads(d.admin("status", "--json").stdout)["ok"]


def test_3000_idle_connections_under_a_1024_soft_limit(daemon_factory):
    d = daemon_factory(args=["-c"], config={"server": {"read_timeout": 120.0}},
                       nofile=(1024, None))
    d.admin("user", "add", "alice", password=PASSWORD)
    assert "open-file limit raised from 1024" in d.stderr()
    idle = open_idle(d.mux, IDLE)
    try:
        logins_answered(d)
        time.sleep(1.5)  # every worker has published its numbers since
        status = json.loads(d.admin("status", "--json").stdout)
        assert status["open_connections"] >= IDLE
        assert resets(idle) == (0, 0)  # all held, none reset or dropped
    finally:
        for s in idle:
            s.close()
    assert "Too many open files" not in d.stderr()


@pytest.mark.parametrize("accept", ["thread", "loop"])
def test_a_hard_limit_too_low_lowers_the_cap_and_says_so(daemon_factory, accept):
    d = daemon_factory(args=["-c"], config={"server": {"read_timeout": 120.0,
                                                       "accept": accept}},
                       nofile=(1024, 1024))
    d.admin("user", "add", "alice", password=PASSWORD)
    assert "the open-file limit (1024) allows 908 connections per process" in d.stderr()
    idle = open_idle(d.mux, IDLE)
    try:
        logins_answered(d)
        reset, closed = resets(idle)
        assert reset == 0 and closed > 0  # beyond each worker's cap: closed, not reset
    finally:
        for s in idle:
            s.close()
    assert "Too many open files" not in d.stderr()
    dropped = [r for r in d.audit() if r["reason"] == "dropped: too many open connections"]
    assert dropped
