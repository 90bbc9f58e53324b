"""The Dovecot auth protocol from the client's side, and a real Dovecot auth server.

``AuthClient(path)`` connects, reads the server's handshake and speaks raw lines, as
Postfix's xsasl_dovecot_server.c does.  ``ReferenceDovecot(base, users)`` runs Debian's
Dovecot (dovecot-core) as an auth server only: ``dovecot -c FILE`` with a private
base_dir, state_dir and instance_name, a passwd-file and one auth-client socket, so the
tests can hold our replies next to Dovecot's for the same conversation.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from pathlib import Path

from harness import need
from postfix_server import pid_in, wait_gone

EOF_MARK = b"<EOF>"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def auth_line(req_id: int, mech: str = "PLAIN", resp: bytes | None = None,
              raw_resp: bytes | None = None, service: str = "smtp", **params: str) -> bytes:
    """``AUTH`` with ``params`` (``rip="192.0.2.1"``; ``secured=""`` for a bare flag;
    underscores in names become dashes) and ``resp`` (base64-encoded here) or ``raw_resp``."""
    fields = [b"AUTH", str(req_id).encode(), mech.encode(), b"service=" + service.encode()]
    for name, value in params.items():
        name = name.replace("_", "-")
        fields.append(name.encode() + (b"=" + value.encode() if value else b""))
    if resp is not None:
        fields.append(b"resp=" + b64(resp))
    elif raw_resp is not None:
        fields.append(b"resp=" + raw_resp)
    return b"\t".join(fields) + b"\n"


def plain(user: str, password: str) -> bytes:
    return b"\0" + user.encode() + b"\0" + password.encode()


class AuthClient:
    def __init__(self, path: str | os.PathLike, timeout: float = 10.0, hello: bool = True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(os.fspath(path))
        self.buf = b""
        self.handshake = self.until(b"DONE")
        if hello:
            self.send(b"VERSION\t1\t0\nCPID\t%d\n" % os.getpid())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, timeout: float | None = None) -> bytes:
        """The next line without its LF; EOF_MARK when the server closed."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return EOF_MARK
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def lines(self, n: int, timeout: float = 10.0) -> list[bytes]:
        out = []
        for _ in range(n):
            out.append(self.line(timeout))
            if out[-1] == EOF_MARK:
                break
        return out

    def until(self, last: bytes) -> list[bytes]:
        out = [self.line()]
        while out[-1] not in (last, EOF_MARK):
            out.append(self.line())
        return out

    def ask(self, data: bytes, timeout: float = 10.0) -> bytes:
        self.send(data)
        return self.line(timeout)

    def closed(self, timeout: float = 10.0) -> bool:
        """True once the server closes (whatever it said first), False at the timeout."""
        try:
            while self.line(timeout) != EOF_MARK:
                pass
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DOVECOT_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = saslauthpy-ref-{tag}
protocols =
log_path = {base}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={base}
}}
service auth {{
  unix_listener {base}/auth {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
"""


class ReferenceDovecot:
    """A private Dovecot auth server (Debian's dovecot-core) on ``base/auth``."""

    def __init__(self, base: Path, users: dict[str, str]):
        self.base = Path(base)
        self.users = users
        self.socket = self.base / "auth"
        self.conf = self.base / "dovecot.conf"

    def start(self) -> ReferenceDovecot:
        exe = need("dovecot")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "passwd").write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        self.conf.write_text(DOVECOT_CONF.format(base=self.base, tag=os.getpid()))
        err = self.base / "start.err"  # not a pipe: the daemon it forks would hold it open
        with open(err, "wb") as f:
            res = subprocess.run([exe, "-c", str(self.conf)], stdout=f, stderr=f, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {err.read_text(errors='replace')}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                AuthClient(self.socket, timeout=2, hello=False).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot did not listen on {self.socket}: {self.log()}")

    def master_pid(self) -> int | None:
        return pid_in(self.base / "run" / "master.pid")

    def stop(self) -> None:
        pid = self.master_pid()
        subprocess.run([need("dovecot"), "-c", str(self.conf), "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        wait_gone(pid)

    def log(self) -> str:
        try:
            return (self.base / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""
