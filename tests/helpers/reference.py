"""Helpers (no tests) for the system-backend tests: real local accounts, a PAM service
file, and the C saslauthd from sasl2-bin started on its own run directory; each is a
context manager that removes what it made (or stops what it started)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from harness import ROOT, ask, need  # noqa: F401  (need: re-exported for the tests)

PAM_TEMPLATE = ROOT / "saslauthpy" / "share" / "pam" / "saslauthpy"


def run(*cmd: str, input: str | None = None) -> None:
    subprocess.run(cmd, input=input, text=True, check=True, capture_output=True)


def verdict(reply: str) -> str:
    return reply.split(" ", 1)[0]


def compare(c_mux: Path, our_mux: Path, rows: list[tuple]) -> list[str]:
    """Ask both daemons every row ``(name, login, password, service, realm, expected)``;
    return the mismatches (empty = both answered as expected)."""
    problems = []
    for name, login, password, service, realm, expected in rows:
        ours = verdict(ask(our_mux, login, password, service, realm))
        theirs = verdict(ask(c_mux, login, password, service, realm))
        if ours != theirs or ours != expected:
            problems.append(f"{name}: saslauthpy {ours}, C saslauthd {theirs}, "
                            f"expected {expected}")
    return problems


class Cleanup:
    """``with X() as x:`` calls ``x.remove()`` on the way out."""

    def remove(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Accounts(Cleanup):
    """Local accounts made with useradd/chpasswd; ``remove()`` deletes every one."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, password: str, method: str = "SHA512") -> str:
        name = "sp" + secrets.token_hex(5)  # lower-case, short, unique
        run("useradd", "-M", "-s", "/usr/sbin/nologin", name)
        self.names.append(name)
        run("chpasswd", "-c", method, input=f"{name}:{password}\n")
        return name

    def expire_account(self, name: str) -> None:
        run("chage", "-E", "2000-01-01", name)

    def expire_password(self, name: str) -> None:
        run("chage", "-d", "2000-01-01", "-M", "30", name)

    def lock(self, name: str) -> None:
        run("usermod", "-L", name)

    def set_hash(self, name: str, stored: str) -> None:
        """Put ``stored`` as it is into the user's shadow password field."""
        run("usermod", "-p", stored, name)

    def hash_into_passwd(self, name: str) -> None:
        """Move the user's hash from /etc/shadow into /etc/passwd (a non-shadowed
        account, what ``-a getpwent`` can check).  Written like vipw: copy + rename."""
        shadow_hash = ""
        for line in Path("/etc/shadow").read_text().splitlines():
            if line.startswith(name + ":"):
                shadow_hash = line.split(":")[1]
        assert shadow_hash
        lines = Path("/etc/passwd").read_text().splitlines(keepends=True)
        out = [f"{name}:{shadow_hash}:" + ln.split(":", 2)[2] if ln.startswith(name + ":")
               else ln for ln in lines]
        tmp = Path("/etc/passwd.saslauthpy-test")
        tmp.write_text("".join(out))
        os.chmod(tmp, 0o644)
        os.replace(tmp, "/etc/passwd")

    def remove(self) -> None:
        for name in self.names:
            subprocess.run(["userdel", "-f", name], capture_output=True)
        self.names.clear()


class PamService(Cleanup):
    """/etc/pam.d/<unique> from share/pam/saslauthpy (or ``text``); ``remove()`` after."""

    def __init__(self, text: str | None = None):
        self.name = "saslauthpy-test-" + secrets.token_hex(4)
        self.path = Path("/etc/pam.d") / self.name
        self.path.write_text(text if text is not None else PAM_TEMPLATE.read_text())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class CSaslauthd(Cleanup):
    """The reference daemon: ``saslauthd -a MECH -m DIR -n 5 -d [ARGS]`` in the foreground,
    with ``env`` added to its environment (KRB5_CONFIG, KRB5_KTNAME for kerberos5).

    saslauthd 2.1.28 reads sasldb only from its compiled-in /etc/sasldb2 (auth_sasldb.c
    passes libsasl no option callback, so ``sasldb_path`` is ignored); for ``sasldb=DIR/sasldb2``
    it runs in a private mount namespace where DIR is bind-mounted on /etc.
    """

    def __init__(self, tmp: Path, mech: str, sasldb: str | None = None, workers: int = 5,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.run_dir = Path(tmp) / "c-run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.mux = self.run_dir / "mux"
        self.log = Path(tmp) / "c-saslauthd.log"
        cmd = ["saslauthd", "-a", mech, "-m", str(self.run_dir), "-n", str(workers), "-d",
               *args]
        if sasldb:
            # Bind the file's directory (not the file: that would pin the inode, and
            # writers that replace the file by rename would go unseen) over /etc.
            assert os.path.basename(sasldb) == "sasldb2", "name the test file sasldb2"
            inner = f"mount --bind {os.path.dirname(os.path.abspath(sasldb))} /etc && " \
                    f"exec {' '.join(cmd)}"
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._out,
                                     start_new_session=True, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"C saslauthd exited: {self.log.read_text()}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.mux))
                    return
            except OSError:
                time.sleep(0.05)
        self.remove()
        raise RuntimeError(f"C saslauthd did not listen: {self.log.read_text()}")

    def remove(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: master + workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()
