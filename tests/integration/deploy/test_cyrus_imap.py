"""Cyrus IMAP (Debian cyrus-imapd 3.6) authenticating LOGIN through our socket.

A private Cyrus ``master`` (its own imapd.conf and cyrus.conf, config and spool
directories in a temporary directory owned by the ``cyrus`` user, a loopback port)
spawns ``imapd``, whose libsasl has ``sasl_pwcheck_method: saslauthd`` and
``sasl_saslauthd_path`` pointing at our daemon.  master starts as root and drops to
``cyrus`` itself; it is run in the foreground (``-D``) and stopped by its pid.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from harness import Daemon, terminate
from postfix_server import audit_for, free_port, reachable_daemon, wait_for_greeting

MASTER = Path("/usr/lib/cyrus/bin/master")


class CyrusImap:
    def __init__(self, base: Path, saslauthd_path: Path):
        self.base = base
        self.port = free_port()
        self.conf = base / "imapd.conf"
        self.cyrus_conf = base / "cyrus.conf"
        for sub in ("config", "spool", "run"):
            (base / sub).mkdir()
            shutil.chown(base / sub, "cyrus", "mail")
        self.conf.write_text(
            f"configdirectory: {base / 'config'}\n"
            f"partition-default: {base / 'spool'}\n"
            "sasl_pwcheck_method: saslauthd\n"
            f"sasl_saslauthd_path: {saslauthd_path}\n"
            "sasl_mech_list: PLAIN LOGIN\n"
            "allowplaintext: yes\n"
            "servername: imap.saslauthpy.test\n"
            # user@domain logins (Cyrus refuses them after a good password otherwise)
            "virtdomains: userid\n"
            "syslog_prefix: cyrus-saslauthpy-test\n"
            f"lmtpsocket: {base / 'run' / 'lmtp'}\n"
            f"idlesocket: {base / 'run' / 'idle'}\n"
            f"notifysocket: {base / 'run' / 'notify'}\n")
        self.cyrus_conf.write_text(
            "START {\n"
            f'  recover cmd="ctl_cyrusdb -r -C {self.conf}"\n'
            "}\nSERVICES {\n"
            f'  imap cmd="imapd -C {self.conf}" listen="127.0.0.1:{self.port}" prefork=0\n'
            "}\nEVENTS {\n}\nDAEMON {\n}\n")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> CyrusImap:
        self.proc = subprocess.Popen(
            [str(MASTER), "-C", str(self.conf), "-M", str(self.cyrus_conf),
             "-p", str(self.base / "run" / "master.pid"), "-D"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if wait_for_greeting(self.port, b"* OK", timeout,
                             gone=lambda: self.proc.poll() is not None):
            return self
        code = self.proc.poll()
        self.stop()
        if code is not None:
            raise RuntimeError(f"cyrus master exited with {code} (it logs only to syslog)")
        raise RuntimeError(f"cyrus imapd did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        # master's children (imapd) are in the session it leads: make sure none is left.
        for pid in _session_members(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def login(self, user: str, password: str) -> str:
        with imaplib.IMAP4("127.0.0.1", self.port, timeout=30) as m:
            try:
                typ, _ = m.login(user, password)
            except imaplib.IMAP4.error as exc:
                return f"NO {exc}"
            m.logout()
            return typ


def _session_members(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == sid:  # field 6: session id
                pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def daemon(base):
    d = reachable_daemon(base / "sa")  # imapd runs as cyrus: the socket must be reachable
    d.admin("user", "add", "ivy", password="imap-ivy")
    d.admin("user", "add", "jon", "--realm", "example.net", password="imap-jon")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def imap(base, daemon):
    if not MASTER.exists():
        pytest.fail("cyrus-imapd is not installed: .ci/setup.d/60-deploy.sh installs it")
    (base / "imap").mkdir()
    server = CyrusImap(base / "imap", daemon.mux).start()
    yield server
    server.stop()


def last(daemon: Daemon, login: str) -> dict:
    return audit_for(daemon, login)[-1]


def test_login_with_the_right_password(imap, daemon):
    assert imap.login("ivy", "imap-ivy") == "OK"
    rec = last(daemon, "ivy")
    assert (rec["service"], rec["realm"], rec["result"]) == ("imap", "", "ok")


def test_login_with_a_wrong_password_fails(imap, daemon):
    assert imap.login("ivy", "imap-IVY").startswith("NO")
    assert last(daemon, "ivy")["result"] == "fail"


def test_unknown_user_fails(imap):
    assert imap.login("nobody", "imap-ivy").startswith("NO")


def test_user_at_realm_login(imap, daemon):
    """Cyrus's libsasl splits ``jon@example.net``: login jon, realm example.net.
    (Cyrus itself accepts a domain in the userid only with ``virtdomains: userid``.)"""
    assert imap.login("jon@example.net", "imap-jon") == "OK"
    rec = last(daemon, "jon")
    assert (rec["realm"], rec["service"], rec["result"]) == ("example.net", "imap", "ok")
    assert imap.login("jon", "imap-jon").startswith("NO")
