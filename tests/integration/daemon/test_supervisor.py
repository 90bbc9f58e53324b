"""Worker processes on one socket ([server] processes, one per CPU by default): one
shared cache, a dead worker replaced, SIGHUP passed on, SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from harness import Daemon, python_env


def workers(d) -> list[int]:
    return json.loads(d.admin("status", "--json").stdout)["workers"]


@pytest.fixture
def pre(daemon_factory):
    d = daemon_factory(args=["-c"], config={"server": {"processes": 2}})
    d.admin("user", "add", "alice", password="alice-pw-1")
    return d


def test_workers_share_one_cache(pre):
    assert len(workers(pre)) == 2
    assert pre.ask("alice", "alice-pw-1", "smtp") == "OK"  # SQL, then the cache
    first = {r["pid"] for r in pre.audit()}
    pre.kill_workers(first)  # the cache is the daemon's, not the dead worker's
    for _ in range(20):
        assert pre.ask("alice", "alice-pw-1", "smtp") == "OK"
    recs = pre.audit()
    assert not first & {r["pid"] for r in recs[1:]}  # other processes answered...
    assert [r["cache_hit"] for r in recs] == [False] + [True] * 20  # ...from the cache
    res = pre.admin("cache", "flush", "alice")
    assert "flushed 1 cache entries" in res.stdout
    assert pre.ask("alice", "alice-pw-1", "smtp") == "OK"
    assert pre.audit()[-1]["cache_hit"] is False


def test_a_dead_worker_is_replaced(pre):
    first = workers(pre)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = workers(pre)
        if len(now) == 2 and first[0] not in now:
            break
        time.sleep(0.1)
    assert len(now) == 2 and first[0] not in now
    for _ in range(10):
        assert pre.ask("alice", "alice-pw-1") == "OK"
    assert "exited (killed by signal 9); starting another" in pre.stderr()


def test_sighup_reaches_every_worker_and_sigterm_stops_them_all(pre):
    pids = workers(pre)
    pre.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while pre.stderr().count("configuration reloaded") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pre.stderr().count("configuration reloaded") == 2
    assert pre.ask("alice", "alice-pw-1") == "OK"
    assert pre.stop() == 0
    assert not pre.mux.exists() and not (pre.run_dir / "saslauthd.pid").exists()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}")


def start_fails(tmp_path, config: dict) -> subprocess.CompletedProcess:
    d = Daemon(tmp_path, config={"server": {"processes": 2}, **config})
    res = subprocess.run([sys.executable, "-m", "saslauthpy", "-f", "--config",
                          str(d.config_path)], capture_output=True, text=True,
                         env=python_env(), timeout=60)
    assert res.returncode == 1 and not d.mux.exists()
    return res


def test_a_worker_that_cannot_start_fails_the_start(tmp_path):
    res = start_fails(tmp_path, {"sql": {"url": "postgresql+nosuchdriver://x/y"}})
    assert "nosuchdriver" in res.stderr


def test_a_metrics_listener_that_cannot_listen_fails_the_start(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = start_fails(tmp_path, {"metrics": {"listen": f"127.0.0.1:{port}"}})
    assert "[metrics] listen: cannot listen" in res.stderr


def test_one_process_is_allowed_and_supervised(daemon_factory):
    d = daemon_factory(args=["-c"], config={"server": {"processes": 1}})
    d.admin("user", "add", "alice", password="alice-pw-1")
    assert len(workers(d)) == 1
    assert d.ask("alice", "alice-pw-1") == "OK"
    assert {r["pid"] for r in d.audit()} == set(workers(d))


def test_default_is_one_worker_per_cpu(daemon):
    assert len(workers(daemon)) == len(os.sched_getaffinity(0))


def test_socket_activation_with_several_processes(tmp_path):
    from harness import SocketActivated, ask

    d = Daemon(tmp_path, config={"server": {"processes": 2}})
    d.run_dir.mkdir()
    d.admin("user", "add", "alice", password="alice-pw-1")
    with SocketActivated(tmp_path, d.config_path) as sd:
        ready = sd.message()
        assert ready.startswith(b"READY=1") and f"MAINPID={sd.proc.pid}".encode() in ready
        for _ in range(10):
            assert ask(sd.sock_path, "alice", "alice-pw-1") == "OK"
        assert not d.mux.exists()  # the passed socket served; none of our own was made
        sd.proc.send_signal(signal.SIGTERM)
        assert sd.message() == b"STOPPING=1"  # only the supervisor speaks to systemd
        assert sd.proc.wait(20) == 0
        assert sd.sock_path.exists()  # systemd's socket is left alone
