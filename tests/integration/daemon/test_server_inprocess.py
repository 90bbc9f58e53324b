"""The server's connection handling and reload, on the real server run inside the test
process (``server_factory``: tests/helpers/inprocess.py) on its embedded SQLite store: no
daemon process, no root.  (Moved from test_daemon.py, where each started a daemon.)"""

from __future__ import annotations

import logging
import socket
import time

from saslauthpy import protocol

PASSWORDS = ["s3cret-Alice!", "b0b-Passw0rd"]


def test_a_request_gets_the_backends_answer_and_an_audit_line(server_factory):
    s = server_factory()
    s.add("alice", PASSWORDS[0])
    assert s.ask("alice", PASSWORDS[0], "smtp") == "OK"
    assert s.ask("alice", PASSWORDS[1], "smtp") == "NO authentication failed"
    assert s.ask("nobody", PASSWORDS[0], "smtp") == "NO authentication failed"
    assert [(r["login"], r["result"]) for r in s.audit()] == [
        ("alice", "ok"), ("alice", "fail"), ("nobody", "unknown")]


def test_a_cached_ok_is_answered_from_the_cache(server_factory):
    s = server_factory(args=["-c"])
    s.add("alice", PASSWORDS[0])
    assert s.ask("alice", PASSWORDS[0], "smtp") == "OK"
    assert s.ask("alice", PASSWORDS[0], "smtp") == "OK"
    assert s.ask("alice", PASSWORDS[1], "smtp") == "NO authentication failed"
    # The fast lane or, when the request was not there yet at accept, the event loop.
    assert [(r["backend"], r["cache_hit"]) for r in s.audit()] == [
        ("sql", False), ("cache", True), ("sql", False)]


def test_idle_connections_do_not_delay_a_good_request(server_factory):
    d = server_factory(config={"server": {"read_timeout": 30.0}})
    d.add("alice", PASSWORDS[0])
    idle = []
    try:
        for i in range(200):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(d.mux))
            if i % 2:
                s.sendall(protocol.format_request("alice", "pw", "smtp", "")[:7])  # half-sent
            idle.append(s)
        t0 = time.monotonic()
        assert d.ask("alice", PASSWORDS[0], "smtp") == "OK"
        assert time.monotonic() - t0 < 1.0
    finally:
        for s in idle:
            s.close()


def test_connections_beyond_the_cap_drop_the_oldest_unfinished(server_factory):
    d = server_factory(config={"server": {"max_connections": 10, "read_timeout": 30.0,
                                          "processes": 1}})  # the cap is per process
    d.add("alice", PASSWORDS[0])
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(30)]
    try:
        for s in idle:
            s.connect(str(d.mux))
        assert d.ask("alice", PASSWORDS[0]) == "OK"
        idle[0].settimeout(5)
        assert idle[0].recv(10) == b""  # the oldest was closed to make room
    finally:
        for s in idle:
            s.close()


def test_read_deadline_closes_a_silent_connection(server_factory):
    d = server_factory(config={"server": {"read_timeout": 0.5}})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(d.mux))
        t0 = time.monotonic()
        assert s.recv(10) == b""
        assert time.monotonic() - t0 < 3
    assert d.audit()[-1]["reason"] == "read timeout"


def test_bad_config_on_reload_keeps_the_old_one(server_factory, caplog):
    d = server_factory()
    d.add("alice", PASSWORDS[0])
    good = d.config_path.read_text()
    d.config_path.write_text(good + "\nbogus_key = 1\n")
    with caplog.at_level(logging.ERROR, logger="saslauthpy"):
        d.reload()
    assert any("reload refused" in r.getMessage() and "bogus_key" in r.getMessage()
               for r in caplog.records)
    assert d.ask("alice", PASSWORDS[0]) == "OK"


def test_a_good_reload_changes_what_the_server_answers(server_factory):
    d = server_factory()
    d.add("alice", PASSWORDS[0])
    assert d.ask("alice", PASSWORDS[0]) == "OK"
    d.config_path.write_text('mechanisms = ["getpwent"]\n' + d.config_path.read_text())
    d.reload()
    assert d.server.config.mechanisms == ["getpwent"]
    assert d.ask("alice", PASSWORDS[0]) == "NO authentication failed"  # no such local account


def test_the_default_acceptor_is_the_thread_for_local_checks_and_the_loop_otherwise(
        server_factory):
    """``accept = "auto"``: the thread, which can check a miss inline, when every check is
    local (the SQLite store); the event loop, which saves the thread's hop to the loop,
    for a chain with a network check (rimap here, its server down); ``accept`` forces."""
    from saslauthpy.acceptors import LoopAcceptor, ThreadAcceptor

    local = server_factory()
    local.add("alice", PASSWORDS[0])
    assert type(local.server.acceptor) is ThreadAcceptor
    assert local.ask("alice", PASSWORDS[0], "smtp") == "OK"
    remote = server_factory(args=["-a", "rimap", "-O", "127.0.0.1/1"])
    assert type(remote.server.acceptor) is LoopAcceptor
    assert remote.ask("alice", PASSWORDS[0], "smtp").startswith("NO ")  # tempfail: down
    forced = server_factory(config={"server": {"accept": "thread"}},
                            args=["-a", "rimap", "-O", "127.0.0.1/1"])
    assert type(forced.server.acceptor) is ThreadAcceptor


def test_a_reload_that_would_change_the_acceptors_says_they_stay_until_a_restart(
        server_factory, caplog):
    """The acceptors are made at start from the chain and -n: a reload to a chain that
    would take others (rimap: the event loop's) serves with the running ones and says so;
    one that would take the same says nothing."""
    from saslauthpy.acceptors import ThreadAcceptor

    d = server_factory()
    d.add("alice", PASSWORDS[0])
    good = d.config_path.read_text()
    with caplog.at_level(logging.WARNING, logger="saslauthpy"):
        d.config_path.write_text(good + "\n[server]\nreveal_reasons = true\n")
        d.reload()
        assert not [r for r in caplog.records if "acceptors" in r.getMessage()]
        d.config_path.write_text('mechanisms = ["rimap"]\n' + good + '\n[rimap]\n'
                                 'server = "127.0.0.1/1"\n')
        d.reload()
    assert d.server.config.mechanisms == ["rimap"]
    said = [r.getMessage() for r in caplog.records if "acceptors" in r.getMessage()]
    assert said == ["the fast lane keeps its thread acceptors (1) until a restart; this "
                    "configuration would have loop acceptors (1): the mechanisms, -n and "
                    "[server] accept and processes decide"]
    assert type(d.server.acceptor) is ThreadAcceptor
    assert d.ask("alice", PASSWORDS[0], "smtp").startswith("NO ")  # rimap's server is down
