"""A private Postfix instance for tests: Cyrus SASL through a saslauthd socket, or
Postfix's own Dovecot SASL client (``sasl_type="dovecot"``) through a Dovecot auth socket.

``PostfixServer(base, saslauthd_path)`` writes its own config directory
(main.cf, master.cf, sasl/smtpd.conf), queue and data directories under
``base``, listens on a free loopback port, runs no daemon chrooted, discards
every message and logs to ``base/maillog``.  The system's /etc/postfix is
never read or written (only Debian's postfix-files list under meta_directory).

Postfix's daemons drop to the ``postfix`` user, so ``base`` and the saslauthd
socket's directory must be reachable by it: use ``world_dir()`` instead of
pytest's private tmp_path, and ``reachable_daemon()`` for the daemon.  The
helpers here (``world_dir``, ``reachable_daemon``, ``wait_for_greeting``,
``audit_for``) serve the other privilege-dropping servers too (Cyrus IMAP).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Daemon

POSTFIX = "/usr/sbin/postfix"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that unprivileged daemons can traverse (0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def reachable_daemon(path: Path, args: list[str] | None = None) -> Daemon:
    """A started daemon whose run directory ``path`` (created 0755) unprivileged
    clients such as Postfix's smtpd or Cyrus's imapd can traverse to the socket."""
    path.mkdir(mode=0o755)
    return Daemon(path, args=args).start()


def audit_for(daemon: Daemon, login: str) -> list[dict[str, Any]]:
    """The daemon's audit records for ``login``, oldest first."""
    return [r for r in daemon.audit() if r.get("login") == login]


def wait_for_greeting(port: int, greeting: bytes, timeout: float,
                      gone: Callable[[], bool] = lambda: False) -> bool:
    """True once a server on 127.0.0.1:``port`` greets with ``greeting``; False at the
    deadline or as soon as ``gone()`` says the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not gone():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(10)
                if s.recv(512).startswith(greeting):
                    return True
        except OSError:
            time.sleep(0.1)
    return False


MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{port} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixServer:
    """One private Postfix (master + smtpd) doing SMTP AUTH through ``saslauthd_path``."""

    def __init__(self, base: Path, saslauthd_path: str | os.PathLike,
                 mech_list: str = "PLAIN LOGIN", local_domain: str = "",
                 sasl_app: str = "smtpd", sasl_type: str = "cyrus"):
        self.base = Path(base)
        self.config_dir = self.base / "etc"
        self.queue_dir = self.base / "queue"
        self.data_dir = self.base / "data"
        self.sasl_dir = self.config_dir / "sasl"
        self.maillog = self.base / "maillog"
        self.port = free_port()
        self.saslauthd_path = os.fspath(saslauthd_path)
        self.mech_list = mech_list
        self.local_domain = local_domain
        self.sasl_app = sasl_app
        self.sasl_type = sasl_type  # "dovecot": saslauthd_path is the Dovecot auth socket
        self.running = False

    def main_cf(self) -> str:
        settings = {
            "compatibility_level": "3.6",
            "meta_directory": "/etc/postfix",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.base),
            "myhostname": "mx.saslauthpy.test",
            "mydomain": "saslauthpy.test",
            "myorigin": "$mydomain",
            "mydestination": "",
            "relay_domains": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            # The roaming-user case: loopback is NOT a trusted network.
            "mynetworks": "192.0.2.0/24",
            "smtpd_relay_restrictions": "",
            "smtpd_recipient_restrictions":
                "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": self.sasl_type,
            "smtpd_sasl_path":
                self.saslauthd_path if self.sasl_type == "dovecot" else self.sasl_app,
            "cyrus_sasl_config_path": str(self.sasl_dir),
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_sasl_local_domain": self.local_domain,
            "smtpd_tls_security_level": "none",
            "smtp_dns_support_level": "disabled",
            "disable_dns_lookups": "yes",
            # Mail goes nowhere.
            "default_transport": "discard",
            "relay_transport": "discard",
            "local_transport": "discard",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "100",
            "smtpd_hard_error_limit": "100",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
        }
        return "".join(f"{k} = {v}\n" for k, v in settings.items())

    def smtpd_conf(self) -> str:
        return (
            "pwcheck_method: saslauthd\n"
            f"mech_list: {self.mech_list}\n"
            f"saslauthd_path: {self.saslauthd_path}\n"
        )

    def write(self) -> None:
        for d in (self.sasl_dir, self.data_dir, self.queue_dir):
            d.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "main.cf").write_text(self.main_cf())
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{self.port}"))
        (self.sasl_dir / f"{self.sasl_app}.conf").write_text(self.smtpd_conf())
        shutil.chown(self.data_dir, "postfix", "postfix")
        self.data_dir.chmod(0o700)

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run([POSTFIX, "-c", str(self.config_dir), *args],
                             capture_output=True, text=True, timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed: {res.stdout}{res.stderr}"
                               f"\n{self.log()}")
        return res

    def start(self, timeout: float = 30.0) -> PostfixServer:
        """Start master and wait for smtpd's 220; if it never comes, stop master again
        (a caller whose start raised never reaches its stop)."""
        self.write()
        self.postfix("check")
        self.postfix("start")
        self.running = True
        if wait_for_greeting(self.port, b"220", timeout):
            return self
        log = self.log()
        self.stop()
        raise RuntimeError(f"postfix did not answer on port {self.port}:\n{log}")

    def master_pid(self) -> int | None:
        return pid_in(self.queue_dir / "pid" / "master.pid")

    def stop(self) -> None:
        if not self.running:
            return
        pid = self.master_pid()
        self.postfix("stop", check=False)
        if pid:
            wait_gone(pid)
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):  # it may exit meanwhile
                    os.kill(pid, signal.SIGKILL)
        self.running = False

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> PostfixServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_in(path: Path) -> int | None:
    """The pid a daemon wrote to ``path`` (its first word), or None."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_gone(pid: int | None, timeout: float = 15.0) -> None:
    """Wait up to ``timeout`` seconds for process ``pid`` to end."""
    deadline = time.monotonic() + timeout
    while pid and alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
