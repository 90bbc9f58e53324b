"""The thread acceptor's parked connections: accepted before their client wrote the
request, watched until it comes (then served by the fast lane) or handed to the event
loop (a client that sends nothing soon, or one beyond ``PARKED``).

A real listening socket, a real acceptor thread and a real event loop; the park time is
made long (or short) so that no outcome depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from saslauthpy import acceptors
from saslauthpy.authenticator import REPLY_OK, Authenticator
from saslauthpy.backends.base import Backend
from saslauthpy.cache import CredentialCache
from saslauthpy.config import Config
from saslauthpy.fastlane import FastLane
from saslauthpy.protocol import format_request


class Never(Backend):
    name = "never"


@pytest.fixture
def served(tmp_path):
    """(socket path, lane, connections handed to the loop) with a thread acceptor."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    config = Config()
    cache = CredentialCache(100, 60)
    auth = Authenticator(config, [Never(config)], cache)
    key = cache.key("alice", "", "imap")
    cache.remember_good(key, cache.fingerprint(key, b"pw"))
    handed: list[int] = []

    def handover(fd, data, done):
        handed.append(fd)
        socket.socket(fileno=fd).close()
        done()

    lane = FastLane(handover, handover, 256)
    lane.configure(auth, 256, None, False)
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listen.bind(str(tmp_path / "mux"))
    listen.listen(64)
    acceptor = acceptors.ThreadAcceptor(listen, lane, loop, lambda: None)
    acceptor.start()
    lane.acceptor = acceptor  # (for the tests: what it has parked)
    yield tmp_path / "mux", lane, handed
    acceptor.stop()
    loop.call_soon_threadsafe(loop.stop)
    runner.join(5)
    listen.close()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_request_written_after_the_accept_is_served_by_the_fast_lane(served, monkeypatch):
    monkeypatch.setattr(acceptors, "PARK_TIME", 30.0)
    path, lane, handed = served
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        wait_for(lambda: lane.acceptor._parked)  # accepted, nothing to read yet: parked
        client.sendall(format_request("alice", "pw", "imap", ""))
        client.settimeout(10)
        assert client.recv(100) == REPLY_OK
    wait_for(lambda: lane.counts.answered == 1)  # counted after the reply is written
    assert handed == []


def test_a_client_that_sends_nothing_soon_goes_to_the_event_loop(served, monkeypatch):
    monkeypatch.setattr(acceptors, "PARK_TIME", 0.05)
    path, lane, handed = served
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        wait_for(lambda: len(handed) == 1)
    assert lane.counts.handed == 1 and lane.counts.answered == 0


def test_beyond_parked_connections_go_to_the_event_loop_at_once(served, monkeypatch):
    monkeypatch.setattr(acceptors, "PARK_TIME", 30.0)
    path, lane, handed = served
    clients = []
    try:
        for _ in range(acceptors.PARKED + 3):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(path))
            clients.append(client)
        wait_for(lambda: len(handed) == 3)  # the parked ones wait for their request
        clients[0].sendall(format_request("alice", "pw", "imap", ""))
        clients[0].settimeout(10)
        assert clients[0].recv(100) == REPLY_OK
    finally:
        for client in clients:
            client.close()
