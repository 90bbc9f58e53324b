"""A private Exim (Debian's exim4-daemon-heavy binary) with the ``dovecot`` authenticator.

Debian's exim4 packages conflict with postfix, so .ci/setup.d/65-exim.sh unpacks the
package's binary into EXIM_ROOT instead of installing it.  ``EximServer(base, auth_path)``
runs it as a daemon (``-C`` with its own configuration) on a free loopback port: it
accepts as root and talks SMTP as the unprivileged user ``Debian-exim``, whose process asks
our Dovecot auth socket.  Relaying to any domain is allowed after AUTH only; mail is never
delivered (the tests stop after RCPT).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness import missing, terminate
from postfix_server import free_port, wait_for_greeting

EXIM_ROOT = Path("/opt/saslauthpy-test/exim4")
EXIM = EXIM_ROOT / "usr/sbin/exim4"

CONF = """\
exim_path = {exim}
spool_directory = {base}/spool
log_file_path = {base}/log/%slog
primary_hostname = mx.saslauthpy.test
local_interfaces = 127.0.0.1
tls_advertise_hosts =
auth_advertise_hosts = *
host_lookup =
rfc1413_hosts =
keep_environment =
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_rcpt:
  accept authenticated = *
  deny message = Relay not permitted

begin routers
discard:
  driver = redirect
  data = :blackhole:

begin authenticators
dovecot_plain:
  driver = dovecot
  public_name = PLAIN
  server_socket = {auth}
  server_set_id = $auth1
dovecot_login:
  driver = dovecot
  public_name = LOGIN
  server_socket = {auth}
  server_set_id = $auth1
"""


def exim_binary() -> Path:
    if not os.access(EXIM, os.X_OK):
        missing(f"{EXIM} is missing: .ci/setup.d/65-exim.sh unpacks exim4-daemon-heavy there")
    return EXIM


class EximServer:
    def __init__(self, base: Path, auth_path: str | os.PathLike):
        self.base = Path(base)
        self.auth_path = os.fspath(auth_path)
        self.port = free_port()
        self.conf = self.base / "exim.conf"
        self.proc: subprocess.Popen | None = None

    def start(self) -> EximServer:
        exe = exim_binary()
        for sub in ("spool", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
            (self.base / sub).chmod(0o777)
        self.conf.write_text(CONF.format(exim=exe, base=self.base, auth=self.auth_path))
        with open(self.base / "stderr", "wb") as err:
            self.proc = subprocess.Popen(
                [str(exe), "-C", str(self.conf), "-bdf", "-oX", str(self.port),
                 "-oP", str(self.base / "exim.pid")], stdout=subprocess.DEVNULL, stderr=err)
        if wait_for_greeting(self.port, b"220", 20, gone=lambda: self.proc.poll() is not None):
            return self
        self.stop()
        raise RuntimeError(f"exim did not answer on port {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 10)
            self.proc = None

    def log(self) -> str:
        files = [self.base / "stderr", *sorted((self.base / "log").glob("*log"))]
        return "".join(f.read_text(errors="replace") for f in files if f.exists())
