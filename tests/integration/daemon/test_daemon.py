"""The daemon end to end on its embedded SQLite store, asked by the real testsaslauthd
(Debian's sasl2-bin 2.1.28, four fields) and by raw clients."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from harness import need, python_env, read_reply, testsaslauthd

from saslauthpy import protocol

OK_LINE = '0: OK "Success."\n'
NO_LINE = '0: NO "authentication failed"\n'
PASSWORDS = ["s3cret-Alice!", "b0b-Passw0rd", "carol-pw-9"]


def add(d, login, password, realm=""):
    args = ["user", "add", login] + (["--realm", realm] if realm else [])
    d.admin(*args, password=password)


@pytest.fixture
def users(daemon):
    need("testsaslauthd")
    add(daemon, "alice", PASSWORDS[0])
    add(daemon, "bob", PASSWORDS[1], realm="example.org")
    add(daemon, "carol", PASSWORDS[2])
    daemon.admin("user", "disable", "carol")
    return daemon


def workers(d) -> list[int]:
    return json.loads(d.admin("status", "--json").stdout)["workers"]


def run_cases(d, cases):
    for user, password, kw, expected in cases:
        res = testsaslauthd(d.mux, user, password, **kw)
        assert res.stdout == expected, (user, kw, res.stdout, res.stderr)
        assert res.returncode == (0 if expected == OK_LINE else 255)


CASES = [
    ("alice", PASSWORDS[0], {}, OK_LINE),
    ("alice", PASSWORDS[0], {"service": "smtp"}, OK_LINE),
    ("alice", "wrong", {}, NO_LINE),
    ("nobody", "whatever", {}, NO_LINE),
    ("carol", PASSWORDS[2], {}, NO_LINE),  # disabled
    ("bob", PASSWORDS[1], {"realm": "example.org", "service": "smtp"}, OK_LINE),
    ("bob", PASSWORDS[1], {"realm": "other.org"}, NO_LINE),
    ("bob", PASSWORDS[1], {}, NO_LINE),
]


@pytest.mark.csaslauthd
def test_real_testsaslauthd_gets_saslauthds_answers(users):
    run_cases(users, CASES)
    results = [(r["login"], r["result"]) for r in users.audit()]
    assert ("alice", "ok") in results and ("alice", "fail") in results
    assert ("nobody", "unknown") in results and ("carol", "fail") in results


@pytest.mark.csaslauthd
def test_same_answers_with_the_cache_on(daemon_factory):
    d = daemon_factory(args=["-c"])
    need("testsaslauthd")
    add(d, "alice", PASSWORDS[0])
    add(d, "bob", PASSWORDS[1], realm="example.org")
    add(d, "carol", PASSWORDS[2])
    d.admin("user", "disable", "carol")
    run_cases(d, CASES)
    run_cases(d, CASES)  # second round: the good ones come from the cache
    hits = [r for r in d.audit() if r["cache_hit"]]
    assert {r["login"] for r in hits} == {"alice", "bob"}
    assert all(r["result"] == "ok" for r in hits)


@pytest.mark.csaslauthd
def test_realm_join_flag_r_uses_login_at_realm(daemon_factory):
    d = daemon_factory(args=["-r"])
    need("testsaslauthd")
    add(d, "bob", PASSWORDS[1], realm="example.org")
    run_cases(d, [
        ("bob", PASSWORDS[1], {"realm": "example.org"}, OK_LINE),
        ("bob", "wrong", {"realm": "example.org"}, NO_LINE),
        ("bob", PASSWORDS[1], {"realm": "other.org"}, NO_LINE),
    ])
    assert d.audit()[0]["login"] == "bob@example.org"


def test_admin_password_change_flushes_the_cache_at_once(daemon_factory):
    d = daemon_factory(args=["-c"])
    add(d, "alice", PASSWORDS[0])
    assert d.ask("alice", PASSWORDS[0], "smtp") == "OK"
    assert d.ask("alice", PASSWORDS[0], "smtp") == "OK"
    assert d.audit()[-1]["cache_hit"] is True
    d.admin("user", "passwd", "alice", password="n3w-password")
    assert d.ask("alice", PASSWORDS[0], "smtp").startswith("NO")
    assert d.ask("alice", "n3w-password", "smtp") == "OK"
    d.admin("user", "disable", "alice")
    assert d.ask("alice", "n3w-password", "smtp").startswith("NO")


def test_cache_flush_command(daemon_factory):
    d = daemon_factory(args=["-c"])
    add(d, "alice", PASSWORDS[0])
    assert d.ask("alice", PASSWORDS[0]) == "OK"
    res = d.admin("cache", "flush", "alice")
    assert "flushed 1 cache entries" in res.stdout
    assert d.ask("alice", PASSWORDS[0]) == "OK"
    assert d.audit()[-1]["cache_hit"] is False


def raw(d, payload: bytes, timeout=5.0) -> str | None:
    """Send raw bytes; return the reply text, or None if closed without one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(d.mux))
        s.sendall(payload)
        try:
            return read_reply(s)
        except ConnectionError:
            return None


@pytest.mark.csaslauthd
def test_four_and_five_field_clients_are_answered_at_once(users):
    for payload in (protocol.format_request("alice", PASSWORDS[0], "smtp", ""),
                    protocol.format_request("alice", PASSWORDS[0], "smtp", "", "192.0.2.1;25"),
                    protocol.format_request("alice", PASSWORDS[0], "smtp", "", "")):
        t0 = time.monotonic()
        assert raw(users, payload) == "OK"  # the socket stays open for writing: no EOF hint
        assert time.monotonic() - t0 < 1.0
    assert users.audit()[-2]["client"] == "192.0.2.1;25"


@pytest.mark.csaslauthd
def test_bad_requests_get_saslauthds_answers_and_the_daemon_stays_up(users):
    assert raw(users, protocol.format_request("", "pw", "", "")) == "NO NULL login received"
    assert raw(users, protocol.format_request("alice", "", "", "")) == "NO NULL password received"
    assert raw(users, b"\x01\x01" + b"a" * 257) == "NO "
    assert raw(users, protocol.format_request("a" * 300, "pw", "", "")) == "NO "
    assert raw(users, protocol.format_request(b"alice\0junk", PASSWORDS[0], "", "")).startswith(
        "NO")
    assert raw(users, protocol.format_request(b"alice", PASSWORDS[0].encode() + b"\0x", "", "")
               ).startswith("NO")
    # truncated: the client half-closes before the fourth field -> closed without a reply
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(users.mux))
        s.sendall(protocol.format_request("alice", "pw", "smtp", "")[:9])
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""
    assert users.ask("alice", PASSWORDS[0]) == "OK"
    malformed = [r for r in users.audit() if r["result"] == "malformed"]
    assert len(malformed) == 7
    assert users.proc.poll() is None


def test_sighup_during_a_stream_of_requests_answers_every_one(daemon_factory):
    d = daemon_factory()
    add(d, "alice", PASSWORDS[0])
    answers: list[str] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                answers.append(d.ask("alice", PASSWORDS[0], "smtp"))
            except Exception as exc:  # a dropped request is what this test hunts
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            time.sleep(0.3)
            d.signal(signal.SIGHUP)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert answers and set(answers) == {"OK"}
    reloads = collections.Counter(line.split("]")[0] for line in d.stderr().splitlines()
                                  if "configuration reloaded" in line)
    assert len(reloads) == len(workers(d)) and set(reloads.values()) == {5}  # every worker


def test_sigterm_exits_cleanly_and_removes_its_files(daemon):
    assert daemon.mux.exists() and (daemon.run_dir / "saslauthd.pid").exists()
    assert daemon.stop() == 0
    assert not daemon.mux.exists()
    assert not (daemon.run_dir / "saslauthd.pid").exists()


def test_sigterm_finishes_a_request_in_flight(daemon_factory):
    # One wrong password earns alice a 1 s throttle penalty, so her next (good) login is
    # still in flight when SIGTERM arrives: it must be answered before the daemon exits.
    d = daemon_factory(config={"throttle": {"base_delay": 1.0}})
    add(d, "alice", PASSWORDS[0])
    assert d.ask("alice", "wrong").startswith("NO")
    out = {}
    t = threading.Thread(target=lambda: out.update(reply=d.ask("alice", PASSWORDS[0])))
    t.start()
    time.sleep(0.3)
    d.signal(signal.SIGTERM)
    t.join()
    assert out["reply"] == "OK"
    assert d.proc.wait(10) == 0
    assert d.audit()[-1]["delay"] >= 0.9


def test_a_second_instance_refuses_to_start(daemon):
    res = subprocess.run([sys.executable, "-m", "saslauthpy", "-f", "--config",
                          str(daemon.config_path)], capture_output=True, text=True,
                         env=python_env(), timeout=30)
    assert res.returncode == 1  # a runtime error (saslauthd said 2)
    assert "another instance" in res.stderr
    assert daemon.ask("nobody", "x").startswith("NO")


@pytest.mark.parametrize("args,needle,status", [
    (["-a", "nosuch"], "unknown mechanism 'nosuch'", 1),
    (["-n", "-3"], "-n -3", 1),
    (["-m", "relative/dir"], "absolute path", 1),
    (["--bogus"], "unknown argument", 2),  # usage errors: 2
    (["-n", "abc"], "invalid int value: 'abc'", 2),
    (["-n"], "expected one argument", 2),
])
def test_flag_errors_stop_the_start_with_one_line(tmp_path, args, needle, status):
    res = subprocess.run([sys.executable, "-m", "saslauthpy", "-f", "-m", str(tmp_path), *args],
                         capture_output=True, text=True, env=python_env(), timeout=30)
    assert res.returncode == status
    assert needle in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_config_key_errors_name_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    for text, needle in [('[cache]\nttl = "long"\n', "[cache].ttl: expected a number"),
                         ("[server]\nmax_feild = 10\n", "unknown key 'max_feild'"),
                         ("mechanisms = [\"nosuch\"]\n", "unknown mechanism 'nosuch'")]:
        cfg.write_text(text)
        res = subprocess.run([sys.executable, "-m", "saslauthpy", "-f", "--config", str(cfg)],
                             capture_output=True, text=True, env=python_env(), timeout=30)
        assert res.returncode == 1
        assert needle in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_version_and_help(tmp_path):
    res = subprocess.run([sys.executable, "-m", "saslauthpy", "-v"], capture_output=True,
                         text=True, env=python_env())
    assert res.returncode == 0 and "authentication mechanisms:" in res.stdout
    res = subprocess.run([sys.executable, "-m", "saslauthpy", "-h"], capture_output=True,
                         text=True, env=python_env())
    assert res.returncode == 0 and "-a MECH" in res.stdout


def test_detaches_like_saslauthd_without_f(tmp_path):
    from harness import Daemon

    d = Daemon(tmp_path)
    res = subprocess.run([sys.executable, "-m", "saslauthpy", "--config", str(d.config_path)],
                         capture_output=True, text=True, env=python_env(), timeout=30)
    assert res.returncode == 0, res.stderr
    pid = int((d.run_dir / "saslauthd.pid").read_text())
    try:
        assert d.ask("nobody", "x").startswith("NO")
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while d.mux.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not d.mux.exists()


def test_audit_lines_carry_the_decision_and_never_a_password(daemon_factory):
    d = daemon_factory(args=["-c", "-V"])
    add(d, "alice", PASSWORDS[0])
    d.ask("alice", PASSWORDS[0], "smtp", "", "192.0.2.9;1234")
    d.ask("alice", PASSWORDS[0], "smtp")
    d.ask("alice", "wrong-" + PASSWORDS[1], "imap")
    d.ask("nobody", PASSWORDS[2], "imap")
    d.admin("user", "passwd", "alice", password=PASSWORDS[2])
    d.stop()
    recs = d.audit()
    first = recs[0]
    for field in ("time", "login", "realm", "service", "client", "peer_pid", "peer_uid",
                  "backend", "result", "reason", "cache_hit", "delay", "latency"):
        assert field in first
    assert first["client"] == "192.0.2.9;1234" and first["peer_uid"] == os.getuid()
    assert first["peer_pid"] > 0 and first["backend"] == "sql"
    assert 0 < first["latency"] < 10 and first["delay"] == 0  # both in seconds
    assert [r["result"] for r in recs] == ["ok", "ok", "fail", "unknown"]
    assert recs[1]["cache_hit"] is True
    everything = d.audit_path.read_text() + d.stderr() + (d.tmp / "users.db").read_bytes().decode(
        "latin-1")
    for pw in PASSWORDS + ["wrong-" + PASSWORDS[1]]:
        assert pw not in everything


def test_a_full_disk_under_the_audit_log_costs_no_answer(daemon_factory):
    d = daemon_factory(config={"audit": {"file": "/dev/full", "syslog": False}})
    add(d, "alice", PASSWORDS[0])
    for _ in range(3):
        assert d.ask("alice", PASSWORDS[0]) == "OK"
    said = [line.split("]")[0] for line in d.stderr().splitlines()
            if "cannot write /dev/full" in line]
    assert said and len(said) == len(set(said))  # once per worker process that wrote


def test_socket_activation_and_readiness_notification(tmp_path):
    from harness import Daemon, SocketActivated, ask

    d = Daemon(tmp_path)
    d.run_dir.mkdir()
    add(d, "alice", PASSWORDS[0])
    with SocketActivated(tmp_path, d.config_path) as sd:
        assert sd.message().startswith(b"READY=1")
        assert ask(sd.sock_path, "alice", PASSWORDS[0]) == "OK"
        assert not d.mux.exists()
        sd.proc.send_signal(signal.SIGTERM)
        assert sd.message() == b"STOPPING=1"
        assert sd.proc.wait(10) == 0


def test_status_over_the_control_socket(daemon_factory):
    d = daemon_factory(args=["-c"])
    res = d.admin("status", "--json")
    status = json.loads(res.stdout)
    assert status["ok"] and status["mechanisms"] == ["sql"] and status["cache"]["entries"] == 0


def test_admin_imports_shadow_lines_into_a_realm(daemon):
    from saslauthpy.passwords import hash_password

    shadow = daemon.tmp / "shadow"
    shadow.write_text(f"dora:{hash_password(b'dora-pw-1')}:19000:0:99999:7:::\n"
                      "broken line without fields\n")
    res = daemon.admin("user", "import", str(shadow), "--realm", "example.org", check=False)
    assert res.returncode == 1  # one line was skipped, and said so with its number
    assert "2" in res.stderr
    assert daemon.ask("dora", "dora-pw-1", "smtp", "example.org") == "OK"
    assert daemon.ask("dora", "dora-pw-1", "smtp").startswith("NO")


def test_admin_asks_for_the_password_twice_on_a_terminal(daemon):
    from tty_session import on_tty

    def run_on_tty(answers: list[str]) -> str:
        return on_tty([sys.executable, "-m", "saslauthpy.cli.admin", "--config",
                       str(daemon.config_path), "user", "add", "erin"], answers)[1]

    out = run_on_tty(["erin-pw-1", "erin-pw-2"])
    assert "Again (for verification)" in out and "passwords don't match" in out
    assert daemon.ask("erin", "erin-pw-1").startswith("NO")
    out = run_on_tty(["erin-pw-1", "erin-pw-1"])
    assert "added erin" in out and "erin-pw-1" not in out  # no echo of the password
    assert daemon.ask("erin", "erin-pw-1") == "OK"
    listed = json.loads(daemon.admin("user", "list", "--json").stdout)
    assert [u["login"] for u in listed] == ["erin"] and listed[0]["enabled"] is True


def test_in_the_foreground_failures_are_printed_like_saslauthds(daemon_factory):
    d = daemon_factory(config={"audit": {"syslog": True}})
    add(d, "alice", PASSWORDS[0])
    assert d.ask("alice", "wrong-" + PASSWORDS[0], "smtp").startswith("NO")
    assert d.ask("alice", PASSWORDS[0], "smtp") == "OK"
    err = d.stderr()
    assert "auth failure: [user=alice] [service=smtp] [realm=] [mech=sql] " \
           "[reason=wrong password]" in err
    assert "auth success" not in err  # successes only with -V
    assert PASSWORDS[0] not in err
