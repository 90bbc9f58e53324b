"""Where decision lines go and what they say: syslog when detached (a private /dev/log),
stderr in the foreground, saslauthd's words (checked against the C saslauthd), any bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from devlog import DevLog
from harness import Daemon, ask, need, python_env

AUTH, LOCAL3 = 4, 19  # syslog facilities
NOTICE, INFO = 5, 6


@pytest.fixture
def devlog(tmp_path):
    d = DevLog(tmp_path)
    yield d
    d.close()


def start_detached(devlog: DevLog, d: Daemon, *args: str) -> int:
    """The daemon without -f (it forks, detaches and logs to syslog); returns its pid."""
    cmd = [sys.executable, "-m", "saslauthpy", "--config", str(d.config_path), *args]
    res = subprocess.run(devlog.wrap(cmd), capture_output=True, text=True, env=python_env(),
                         timeout=60)
    assert res.returncode == 0, res.stderr
    return int((d.run_dir / "saslauthd.pid").read_text())


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("the daemon did not stop")


def test_detached_every_decision_reaches_syslog_whatever_its_bytes(tmp_path, devlog):
    """A login or realm that is not UTF-8 used to make the syslog call raise
    (UnicodeEncodeError): no auth-failure line, so guesses with such logins left no trace.
    Now the bytes are written as \\xNN, the file gets the line too, and the next request's
    line still comes."""
    d = Daemon(tmp_path / "d", config={"audit": {"syslog": True}})
    d.admin("user", "add", "alice", password="alice-pw")
    pid = start_detached(devlog, d)
    try:
        assert ask(d.mux, b"b\xffo\xc3", "guess", "smtp", b"ex\xfeample") == \
            "NO authentication failed"
        assert ask(d.mux, "alice", "wrong", "imap") == "NO authentication failed"
        assert ask(d.mux, "alice", "alice-pw", "imap") == "OK"
        pri, line = devlog.wait_for(b"[user=b\\xffo\\xc3]")
        assert pri == AUTH * 8 + NOTICE
        assert line.endswith(b"auth failure: [user=b\\xffo\\xc3] [service=smtp] "
                             b"[realm=ex\\xfeample] [mech=sql] [reason=unknown user]")
        assert b" saslauthpy[" in line  # the ident and the pid, as saslauthd's lines have
        pri, line = devlog.wait_for(b"[user=alice]")
        assert line.endswith(b"auth failure: [user=alice] [service=imap] [realm=] [mech=sql] "
                             b"[reason=wrong password]")
    finally:
        stop(pid)
    assert [r["login"] for r in d.audit()] == ["b\udcffo\udcc3", "alice", "alice"]
    assert not any(b"auth success" in m for _, m in devlog.received)  # only with -V


def test_facility_verbose_successes_and_the_json_format(tmp_path, devlog):
    d = Daemon(tmp_path / "d", config={"audit": {"syslog": True, "facility": "local3",
                                                 "syslog_format": "json"}})
    d.admin("user", "add", "alice", password="alice-pw")
    pid = start_detached(devlog, d, "-V")
    try:
        assert ask(d.mux, "alice", "alice-pw", "imap") == "OK"
        assert ask(d.mux, "alice", "nope", "imap").startswith("NO")
        pri, ok = devlog.wait_for(b"auth success: {")
        assert pri == LOCAL3 * 8 + INFO and b'"login": "alice"' in ok
        pri, fail = devlog.wait_for(b"auth failure: {")
        assert pri == LOCAL3 * 8 + NOTICE and b'"result": "fail"' in fail
    finally:
        stop(pid)


def test_foreground_lines_are_saslauthds_and_escaped(daemon_factory):
    d = daemon_factory(config={"audit": {"syslog": True}})
    assert ask(d.mux, b"ev\nil", "x", "smtp").startswith("NO")
    assert ask(d.mux, "mallory", "x", "smtp", "example.org").startswith("NO")
    err = d.stderr()
    assert "auth failure: [user=ev\\x0ail] [service=smtp]" in err  # no forged second line
    assert "saslauthpy[" in err and "auth failure: [user=mallory] [service=smtp] " \
        "[realm=example.org] [mech=sql] [reason=unknown user]" in err


@pytest.mark.csaslauthd
def test_lines_have_the_c_saslauthds_shape(tmp_path, daemon_factory):
    """The same requests to the C saslauthd (sasl2-bin, -a shadow -d) and to ours: the
    auth-failure lines agree up to the reason, whose wording is each backend's."""
    need("saslauthd")
    from reference import CSaslauthd

    ours = daemon_factory(args=["-a", "shadow"], config={"audit": {"syslog": True}})
    requests = [("nosuchuser-x", "pw", "smtp", ""), ("root", "wrong-pw", "imap", "example.org")]
    with CSaslauthd(tmp_path, "shadow", workers=1) as c:
        for login, pw, service, realm in requests:
            assert ask(c.mux, login, pw, service, realm).startswith("NO")
            assert ask(ours.mux, login, pw, service, realm).startswith("NO")
        deadline = time.monotonic() + 10
        while c.log.read_text().count("auth failure") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        theirs = [line for line in c.log.read_text().splitlines() if "auth failure" in line]
    mine = [line for line in ours.stderr().splitlines() if "auth failure" in line]
    assert len(theirs) == len(mine) == 2
    for t, m in zip(theirs, mine, strict=True):
        t_fields = t[t.index("auth failure: "):t.index(" [reason=")]
        m_fields = m[m.index("auth failure: "):m.index(" [reason=")]
        assert m_fields == t_fields
