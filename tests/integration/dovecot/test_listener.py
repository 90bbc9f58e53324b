"""The ``[dovecot]`` listener on the raw protocol: logins, the socket, limits, bad input."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import stat
import threading
import time

import pytest
from dovecot_auth import EOF_MARK, AuthClient, auth_line, b64, plain
from harness import Daemon

GOOD = plain("alice", "Wonder land 1")


def audit(d: Daemon, **match) -> list[dict]:
    return [r for r in d.audit() if all(r.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="module")
def daemon(dovecot_daemon):
    """A shared daemon for tests that change no penalties (throttle off)."""
    return dovecot_daemon("shared", config={"throttle": {"enabled": False}})


def test_plain_and_login_answer_like_dovecot_and_reach_the_audit(daemon):
    with AuthClient(daemon.auth) as c:
        assert c.handshake[0] == b"VERSION\t1\t2" and c.handshake[-1] == b"DONE"
        assert b"MECH\tPLAIN\tplaintext" in c.handshake
        assert c.ask(auth_line(1, resp=GOOD, lip="127.0.0.1", rip="192.0.2.7", rport="4711",
                               secured="", nologin="")) == b"OK\t1\tuser=alice"
        assert c.ask(auth_line(2, resp=plain("alice", "wrong"), rip="192.0.2.7")) == \
            b"FAIL\t2\tuser=alice"
        assert c.ask(auth_line(3, "LOGIN")) == b"CONT\t3\t" + b64(b"Username:")
        assert c.ask(b"CONT\t3\t" + b64(b"bob@example.com") + b"\n") == \
            b"CONT\t3\t" + b64(b"Password:")
        assert c.ask(b"CONT\t3\t" + b64(b"b0b's pass") + b"\n") == b"OK\t3\tuser=bob@example.com"
    ok, bad = audit(daemon, login="alice")[-2:]
    assert (ok["result"], ok["service"], ok["client"]) == ("ok", "smtp", "192.0.2.7;4711")
    assert (bad["result"], bad["client"]) == ("fail", "192.0.2.7")
    bob = audit(daemon, login="bob")[-1]
    assert (bob["realm"], bob["result"]) == ("example.com", "ok")  # split as libsasl does
    assert bob["peer_pid"] == os.getpid()
    assert "Wonder" not in daemon.audit_path.read_text()


def test_the_credential_cache_answers_here_too(dovecot_daemon):
    d = dovecot_daemon("cached", config={"cache": {"enabled": True}})
    with AuthClient(d.auth) as c:
        for i in (1, 2):
            assert c.ask(auth_line(i, resp=GOOD, rip="192.0.2.9")) == b"OK\t%d\tuser=alice" % i
    assert [(r["backend"], r["cache_hit"]) for r in audit(d, login="alice")] == [
        ("sql", False), ("cache", True)]


def test_requests_in_flight_are_answered_by_id(daemon):
    with AuthClient(daemon.auth) as c:
        c.send(b"".join(auth_line(i, resp=GOOD if i % 2 else plain("alice", f"no{i}"))
                        for i in range(1, 21)))
        replies = c.lines(20)
    assert sorted(replies, key=lambda r: int(r.split(b"\t")[1])) == [
        b"OK\t%d\tuser=alice" % i if i % 2 else b"FAIL\t%d\tuser=alice" % i
        for i in range(1, 21)]


def test_the_socket_has_its_own_mode_owner_and_group_and_goes_at_stop(dovecot_daemon):
    d = dovecot_daemon("owned", dovecot={"socket_mode": "0620", "socket_owner": "nobody",
                                         "socket_group": "mail"})
    st = os.stat(d.auth)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    assert (st.st_uid, st.st_gid) == (pwd.getpwnam("nobody").pw_uid, 8)
    assert [p.name for p in d.auth.parent.iterdir()] == ["auth"]  # no temporary left
    assert d.stop() == 0
    assert not d.auth.exists()


@pytest.mark.parametrize("taken", ["file", "server"])
def test_a_path_in_use_stops_the_start_with_one_line(base, taken):
    home = base / f"taken-{taken}"
    home.mkdir(mode=0o755)
    path = home / "auth"
    holder = socket.socket(socket.AF_UNIX)
    if taken == "file":
        path.write_text("not a socket")
    else:
        holder.bind(str(path))
        holder.listen(1)
    d = Daemon(home / "sa", config={"dovecot": {"listen": str(path)}})
    try:
        with pytest.raises(RuntimeError, match="daemon exited"):
            d.start()
        word = "is not a socket" if taken == "file" else "another server answers"
        assert word in d.stderr() and "[dovecot] listen" in d.stderr()
        assert path.exists()  # left alone
    finally:
        d.stop()
        holder.close()


def test_a_stale_socket_is_replaced(base):
    home = base / "stale"
    home.mkdir(mode=0o755)
    path = home / "auth"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # bound, never listening: what a crashed daemon leaves
    stale = path.stat().st_ino
    d = Daemon(home / "sa", config={"dovecot": {"listen": str(path)}}).start()
    try:
        # The saslauthd socket (what start() waits for) is made first; the Dovecot one
        # replaces the stale file just after, already listening.
        deadline = time.monotonic() + 10
        while path.stat().st_ino == stale and time.monotonic() < deadline:
            time.sleep(0.02)
        with AuthClient(path) as c:
            assert c.handshake[-1] == b"DONE"
    finally:
        d.stop()


def test_penalties_by_address_on_the_raw_protocol(dovecot_daemon):
    """Guesses from one address slow that address for every user; the real user at an
    address that logged her in before gets in at once; a guess for her from a third, new
    address is still held by her penalty."""
    d = dovecot_daemon("penalties", short_penalties=True)
    home, guesser, third = "192.0.2.2", "192.0.2.3", "192.0.2.4"
    with AuthClient(d.auth) as c:
        assert c.ask(auth_line(1, resp=GOOD, rip=home)) == b"OK\t1\tuser=alice"
        for i in range(2, 5):
            assert c.ask(auth_line(i, resp=plain("alice", f"guess{i}"), rip=guesser)) == \
                b"FAIL\t%d\tuser=alice" % i
        assert c.ask(auth_line(5, resp=GOOD, rip=home)) == b"OK\t5\tuser=alice"
        assert c.ask(auth_line(6, resp=plain("alice", "guess6"), rip=third)) == \
            b"FAIL\t6\tuser=alice"
        assert c.ask(auth_line(7, resp=plain("bob@example.com", "b0b's pass"),
                               rip=guesser)) == b"OK\t7\tuser=bob@example.com"
        assert c.ask(auth_line(8, resp=plain("bob@example.com", "b0b's pass"),
                               rip=home)) == b"OK\t8\tuser=bob@example.com"
    delays = [(r["client"], r["result"], r["delay"]) for r in audit(d)]
    assert delays == [
        (home, "ok", 0.0),
        (guesser, "fail", 0.0), (guesser, "fail", 0.5), (guesser, "fail", 1.0),
        (home, "ok", 0.0),  # her penalty is at 2 s, her known address is not held by it
        (third, "fail", 2.0),  # a new address is
        (guesser, "ok", 2.0),  # the guessing address waits for bob too
        (home, "ok", 0.0),
    ]


def test_bad_version_and_unknown_commands_close_and_cost_others_nothing(daemon):
    with AuthClient(daemon.auth) as other:
        with AuthClient(daemon.auth, hello=False) as c:
            c.send(b"VERSION\t2\t0\n")
            assert c.closed()
        with AuthClient(daemon.auth) as c:
            c.send(b"HELLO\tworld\n")
            assert c.closed()
        with AuthClient(daemon.auth) as c:
            c.send(auth_line(1, "LOGIN") + auth_line(1, "LOGIN"))
            assert c.lines(2) == [b"CONT\t1\t" + b64(b"Username:"), EOF_MARK]
        assert other.ask(auth_line(1, resp=GOOD)) == b"OK\t1\tuser=alice"
    reasons = [r["reason"] for r in audit(daemon, result="malformed")]
    assert {"unsupported protocol version 2", "unknown command 'HELLO'",
            "duplicate request id 1"} <= set(reasons)


def test_bad_base64_and_unknown_mechanisms_fail_and_the_connection_goes_on(daemon):
    with AuthClient(daemon.auth) as c:
        assert c.ask(auth_line(1, raw_resp=b"!!!!")) == (
            b"FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response")
        assert c.ask(auth_line(2, "CRAM-MD5")) == (
            b"FAIL\t2\treason=Unsupported authentication mechanism")
        assert c.ask(auth_line(3, resp=b"no-nul-here")) == b"FAIL\t3"
        assert c.ask(auth_line(4, resp=GOOD)) == b"OK\t4\tuser=alice"


def test_an_overlong_line_closes_while_others_are_answered(daemon):
    with AuthClient(daemon.auth) as c, AuthClient(daemon.auth) as other:
        c.send(auth_line(1, raw_resp=b"A" * 3000)[:-1])  # no LF yet, under the cap
        assert other.ask(auth_line(1, resp=GOOD)) == b"OK\t1\tuser=alice"
        c.send(b"A" * 2000)
        assert c.closed()
    assert audit(daemon, result="malformed")[-1]["reason"] == "line longer than 4096 bytes"


def test_a_half_sent_line_held_open_is_dropped_at_the_deadline(dovecot_daemon):
    d = dovecot_daemon("slow", config={"server": {"read_timeout": 1.0}})
    with AuthClient(d.auth) as idle, AuthClient(d.auth) as half, AuthClient(d.auth) as other:
        half.send(b"AUTH\t1\tPLA")
        for i in range(1, 4):  # answered while the half line is held
            assert other.ask(auth_line(i, resp=GOOD)) == b"OK\t%d\tuser=alice" % i
        assert half.closed(timeout=10)
        # An idle connection (Postfix keeps one per smtpd process) has no deadline.
        assert idle.ask(auth_line(1, resp=GOOD), timeout=10) == b"OK\t1\tuser=alice"
    with AuthClient(d.auth, hello=False) as mute:
        assert mute.closed(timeout=10)  # a handshake never finished
    reasons = [r["reason"] for r in audit(d, result="malformed")]
    assert reasons == ["read timeout", "handshake timeout"]


def test_a_thousand_auths_on_one_connection_cost_others_nothing(dovecot_daemon):
    d = dovecot_daemon("flood", dovecot={"max_in_flight": 4},
                       config={"throttle": {"enabled": False}})
    flood = AuthClient(d.auth, timeout=120)
    answered: list[bytes] = []
    reader = threading.Thread(target=lambda: answered.extend(flood.lines(1000, timeout=120)))
    reader.start()
    flood.send(b"".join(auth_line(i, resp=plain(f"user{i}", "pw")) for i in range(1, 1001)))
    try:
        with AuthClient(d.auth) as other:
            assert other.ask(auth_line(1, resp=GOOD)) == b"OK\t1\tuser=alice"
            done_then = len(answered)
    finally:
        reader.join(180)
        flood.close()
    assert done_then < 1000  # the other client was answered in the middle of the flood
    assert sorted(int(r.split(b"\t")[1]) for r in answered) == list(range(1, 1001))
    assert all(r.startswith(b"FAIL\t") and r.endswith(b"\tuser=user" + r.split(b"\t")[1])
               for r in answered)


def test_a_flood_of_small_lines_never_read_costs_others_nothing(daemon):
    """20,000 lines that each get a FAIL, from a client that reads none of them: it is
    handled a turn at a time and then not read further, while others are answered."""
    with AuthClient(daemon.auth) as flood, AuthClient(daemon.auth) as other:
        flood.sock.setblocking(False)
        chunk = b"CONT\t7\tYQ==\n" * 20_000
        sent = 0
        try:
            while sent < len(chunk):
                sent += flood.sock.send(chunk[sent:])
        except BlockingIOError:
            pass  # the daemon stopped reading it: its replies are not being read
        for i in range(1, 4):
            assert other.ask(auth_line(i, resp=GOOD)) == b"OK\t%d\tuser=alice" % i
        flood.sock.setblocking(True)
        flood.sock.settimeout(10)
        assert flood.line() == b"FAIL\t7\treason=Authentication request timed out"


def test_beyond_max_connections_stalled_then_longest_idle_go(dovecot_daemon):
    d = dovecot_daemon("crowd", dovecot={"max_connections": 3},  # per process: one here
                       config={"throttle": {"enabled": False}, "server": {"processes": 1}})
    clients = [AuthClient(d.auth) for _ in range(2)]
    mute = AuthClient(d.auth, hello=False)  # never finishes its handshake
    try:
        for i, c in enumerate(clients):  # handshakes done, the first one idle longest
            assert c.ask(auth_line(i + 1, resp=GOOD)) == b"OK\t%d\tuser=alice" % (i + 1)
        with AuthClient(d.auth) as late:
            assert late.ask(auth_line(1, resp=GOOD)) == b"OK\t1\tuser=alice"
            assert mute.closed()  # the stalled one went first
            with AuthClient(d.auth) as later:
                assert later.ask(auth_line(1, resp=GOOD)) == b"OK\t1\tuser=alice"
                assert clients[0].closed()  # then the one idle longest
                assert clients[1].ask(auth_line(9, resp=GOOD)) == b"OK\t9\tuser=alice"
    finally:
        for c in [*clients, mute]:
            c.close()


def test_several_worker_processes_serve_the_socket_and_reload_keeps_it(dovecot_daemon):
    d = dovecot_daemon("workers", config={"server": {"processes": 2},
                                          "throttle": {"enabled": False}})
    clients = [AuthClient(d.auth) for _ in range(8)]
    try:
        for i, c in enumerate(clients):
            assert c.ask(auth_line(1, resp=GOOD)) == b"OK\t1\tuser=alice", i
        d.signal(signal.SIGHUP)
        for c in clients:  # open connections go on
            assert c.ask(auth_line(2, resp=plain("alice", "x"))) == b"FAIL\t2\tuser=alice"
    finally:
        for c in clients:
            c.close()
    with AuthClient(d.auth) as c:
        assert c.ask(auth_line(1, resp=GOOD)) == b"OK\t1\tuser=alice"
    pids = {r["pid"] for r in audit(d, login="alice")}
    assert pids and d.proc.pid not in pids  # answered by the workers, not the supervisor
