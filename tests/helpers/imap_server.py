"""A real Dovecot IMAP server for the rimap tests: private config, loopback ports.

    server = Dovecot(ca=TestCA(...)).start()    # users: USERS below
    server.imap_port, server.imaps_port   # plain/STARTTLS and implicit TLS (with a CA)
    server.stop(); server.start()         # same ports: a server going away and coming back

``dovecot -c FILE -F`` runs under this test process with its own base_dir, state_dir and
instance_name, listeners on 127.0.0.1 only and ``chroot =`` for the login services, so it
never touches the system's Dovecot; ``imap`` and ``imap-login`` come from dovecot-imapd,
installed or (beside cyrus-imapd, which conflicts with it) unpacked by .ci/setup.d.
Users are in a passwd-file (SHA512-CRYPT hashes made by ``doveadm pw``); mail goes to a
maildir owned by ``dovenull``.  Its files live in a
short world-readable directory under /tmp (Dovecot's unprivileged processes must reach
them, and UNIX socket paths are short), removed by ``stop(remove=True)``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import missing, need
from ldap_server import TestCA, free_port

# login -> password in the passwd-file; each needs its own IMAP encoding
USERS = {
    "alice": "alice-pw",
    "quoted": 'pa"ss\\wo rd',  # quoted-specials and a space: a quoted string with escapes
    "unicode": "pässwörd-€",  # 8-bit: a literal (LITERAL+ in clear, synchronizing after TLS)
    "jörg": "jörg-pw",  # a non-ASCII login: a literal too
}

CONF = """\
base_dir = {dir}/base
state_dir = {dir}/state
instance_name = saslauthpy-{name}
protocols = imap
listen = 127.0.0.1
log_path = {dir}/dovecot.log
auth_failure_delay = 0
auth_username_chars =
disable_plaintext_auth = no
first_valid_uid = 1
mail_location = maildir:{dir}/mail/%u
{ssl}
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {dir}/passwd
}}
userdb {{
  driver = static
  args = uid=dovenull gid=dovenull home={dir}/mail/%u
}}
{executables}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service anvil {{
  chroot =
  # Dovecot's per-address auth penalty: every rimap login comes from one address here
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


# dovecot-imapd conflicts with cyrus-imapd (both provide imap-server), which the Cyrus
# tests need: .ci/setup.d/55-mechs.sh unpacks its binaries here instead of installing it.
UNPACKED = Path("/usr/local/lib/saslauthpy-test/dovecot-imapd/usr/lib/dovecot")


def imap_binaries() -> Path:
    """The directory with Dovecot's imap and imap-login (installed, or unpacked)."""
    for where in (Path("/usr/lib/dovecot"), UNPACKED):
        if (where / "imap-login").exists() and (where / "imap").exists():
            return where
    missing("Dovecot's imap-login is not here: .ci/setup.d/55-mechs.sh unpacks dovecot-imapd")
    raise AssertionError("unreachable")


def executables(bin_dir: Path) -> str:
    """``service X { executable = ... }`` for every IMAP service Dovecot checks at start."""
    names = ("imap", "imap-login", "imap-hibernate", "imap-urlauth", "imap-urlauth-login",
             "imap-urlauth-worker")
    return "\n".join(f"service {n} {{\n  executable = {bin_dir / n}\n}}" for n in names)


class Dovecot:
    def __init__(self, users: dict[str, str] | None = None, ca: TestCA | None = None):
        self.dovecot = need("dovecot")
        bin_dir = imap_binaries()
        doveadm = need("doveadm")
        self.dir = Path(tempfile.mkdtemp(prefix="sapy-dv-"))
        self.dir.chmod(0o755)
        self.imap_port = free_port()
        self.imaps_port = free_port() if ca else 0
        self.proc: subprocess.Popen | None = None
        lines = []
        for login, password in (users or USERS).items():
            hashed = subprocess.run([doveadm, "pw", "-s", "SHA512-CRYPT", "-p", password],
                                    capture_output=True, text=True, check=True).stdout.strip()
            lines.append(f"{login}:{hashed}\n")
        passwd = self.dir / "passwd"
        passwd.write_text("".join(lines))
        passwd.chmod(0o644)
        mail = self.dir / "mail"
        mail.mkdir()
        owner = pwd.getpwnam("dovenull")
        os.chown(mail, owner.pw_uid, owner.pw_gid)
        ssl = "ssl = no"
        if ca:
            ssl = f"ssl = yes\nssl_cert = <{ca.cert}\nssl_key = <{ca.key}"
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(CONF.format(dir=self.dir, name=secrets.token_hex(4), ssl=ssl,
                                         executables=executables(bin_dir),
                                         imap_port=self.imap_port, imaps_port=self.imaps_port))
        self.log = self.dir / "dovecot.log"

    def start(self) -> Dovecot:
        self.proc = subprocess.Popen([self.dovecot, "-c", str(self.conf), "-F"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"dovecot exited: {self.proc.stderr.read().decode()}")
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        self._fail(f"dovecot did not listen on 127.0.0.1:{self.imap_port}")

    def _fail(self, what: str) -> None:
        message = f"{what} {self.log_text()}"
        self.stop(remove=True)  # no fixture teardown follows a failed start
        raise RuntimeError(message)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, remove: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the master and its children
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


class SilentServer:
    """A TCP port that accepts connections and never says a word: the hung server."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()
