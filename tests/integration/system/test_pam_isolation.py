"""The PAM workers run as root and load only our code; a client cannot pick a PAM stack
that says yes to root (su, runuser: pam_rootok).  Real accounts, real PAM, and a json.py
planted in the directory the daemon is started from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import Daemon, python_env

from saslauthpy.backends import pam
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError

pytestmark = pytest.mark.timeout(120)
GOOD = "Pam-isolated-1"
NO_THROTTLE = {"throttle": {"enabled": False}}


@pytest.fixture
def planted(tmp_path):
    """A directory holding a json.py that leaves a mark when anyone imports it."""
    where = tmp_path / "start-here"
    where.mkdir()
    marker = tmp_path / "imported-as-root"
    (where / "json.py").write_text(f"open({str(marker)!r}, 'w').write('planted json.py')\n")
    return where, marker


def command(d: Daemon, foreground: bool) -> list[str]:
    # -P: the daemon itself does not put its current directory on its path (as the
    # installed /usr/sbin/saslauthpy script does not); the question is what it starts.
    return [sys.executable, "-P", "-m", "saslauthpy", *(["-f"] if foreground else []),
            "--config", str(d.config_path), "-a", "pam"]


def test_foreground_daemon_workers_ignore_the_start_directory(tmp_path, planted, accounts,
                                                               service):
    start_dir, marker = planted
    user = accounts.add(GOOD)
    d = Daemon(tmp_path / "d", config={**NO_THROTTLE, "pam": {"default_service": service.name}})
    with open(d.stderr_path, "ab") as err:
        d.proc = subprocess.Popen(command(d, True), cwd=start_dir, stdout=err, stderr=err,
                                  env=python_env())
    d._stderr = open(os.devnull, "wb")
    try:
        d.wait_ready()
        assert d.ask(user, GOOD) == "OK"  # the default service: the test's PAM stack
        assert d.ask(user, "wrong").startswith("NO")
    finally:
        d.stop()
    assert not marker.exists(), "a PAM worker imported json.py from the start directory"


def test_detached_daemon_leaves_its_start_directory(tmp_path, planted, accounts, service):
    start_dir, marker = planted
    user = accounts.add(GOOD)
    d = Daemon(tmp_path / "d", config={**NO_THROTTLE, "pam": {"default_service": service.name}})
    started = subprocess.run(command(d, False), cwd=start_dir, env=python_env(),
                             capture_output=True, text=True, timeout=30)
    assert started.returncode == 0, started.stderr
    pid = int((d.run_dir / "saslauthd.pid").read_text())
    try:
        assert d.ask(user, GOOD) == "OK"
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert not marker.exists(), "a PAM worker imported json.py from the start directory"
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.mark.parametrize("stack", ["su", "runuser", "SU"])
def test_stacks_that_trust_root_are_refused(daemon_factory, accounts, stack):
    """pam_rootok answers OK to root for any password: without the allowlist, any local
    client could log in as anyone by naming the su stack."""
    assert Path(f"/etc/pam.d/{stack.lower()}").exists()
    user = accounts.add(GOOD)
    d = daemon_factory(args=["-a", "pam"], config=NO_THROTTLE)
    assert d.ask(user, "not-the-password", stack).startswith("NO")
    assert d.ask(user, GOOD, stack).startswith("NO")
    assert d.ask("root", "anything", stack).startswith("NO")
    assert f"refusing requests for the PAM service '{stack.lower()}'" in d.stderr()


def test_services_allowlist_keeps_the_configured_ones(daemon_factory, accounts, service):
    user = accounts.add(GOOD)
    d = daemon_factory(args=["-a", "pam"], config={
        **NO_THROTTLE, "pam": {"services": [service.name], "default_service": service.name}})
    assert d.ask(user, GOOD, service.name) == "OK"
    assert d.ask(user, GOOD, "") == "OK"  # the default service is always allowed
    assert d.ask(user, GOOD, "smtp").startswith("NO")  # not in this list
    backend = pam.Backend(Config(), {})
    assert backend.services is not None and {"smtp", "imap", "ldap", "other"} <= backend.services
    with pytest.raises(ConfigError, match="services"):
        pam.Backend(Config(), {"services": [7]})
