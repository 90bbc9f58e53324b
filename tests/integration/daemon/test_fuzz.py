"""Random and hostile bytes: the parser only ever answers Incomplete, Malformed or a
Request, and the daemon keeps answering good clients while garbage pours in."""

from __future__ import annotations

import random
import socket
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from saslauthpy import protocol
from saslauthpy.protocol import Incomplete, Malformed, Request


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=1200), st.integers(min_value=1, max_value=300))
def test_parser_never_fails_in_an_unexpected_way(raw, max_field):
    try:
        req = protocol.parse_request(raw, max_field)
    except (Incomplete, Malformed):
        return
    assert isinstance(req, Request)
    for field in (req.login, req.service, req.realm, req.client_addr):
        assert len(field.encode("utf-8", "surrogateescape")) <= max_field
    assert req.login and req.password and b"\0" not in req.password


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=4, max_size=5))
def test_any_well_framed_request_round_trips_or_is_refused(fields):
    raw = b"".join(protocol.encode_field(f) for f in fields)
    try:
        req = protocol.parse_request(raw, 300)
    except Malformed:
        assert not fields[0] or not fields[1] or any(b"\0" in f for f in fields)
        return
    assert req.login.encode("utf-8", "surrogateescape") == fields[0]
    assert req.password == fields[1]


def test_daemon_survives_a_garbage_flood(daemon):
    daemon.admin("user", "add", "alice", password="alice-pw-1")
    rng = random.Random(1234)
    stop = threading.Event()

    def garbage():
        while not stop.is_set():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                try:
                    s.connect(str(daemon.mux))
                    s.sendall(rng.randbytes(rng.randrange(1, 2000)))
                    if rng.random() < 0.5:
                        s.shutdown(socket.SHUT_WR)
                    s.recv(100)
                except OSError:
                    pass  # the daemon may close on us: that is allowed

    threads = [threading.Thread(target=garbage) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        for _ in range(100):
            assert daemon.ask("alice", "alice-pw-1", "smtp") == "OK"
        assert daemon.ask("mallory", "wrong", "smtp").startswith("NO")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.stderr()
