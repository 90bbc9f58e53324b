"""Databases for the SQL tests (their fixtures are in tests/integration/sql/conftest.py).

* ``create_database`` / ``drop_database``: a fresh database with a random name on the shared
  PostgreSQL (127.0.0.1:5432) or MariaDB (127.0.0.1:3306).
* ``PrivatePostgres`` / ``PrivateMariadb``: a server of our own (initdb / mariadb-install-db
  in a temp dir, its own loopback port) that a test may stop, freeze and restart without
  touching the shared one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import freeze
from sqlalchemy import create_engine, text

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MY_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def random_name() -> str:
    return "saslauthpy_t_" + secrets.token_hex(6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_exec(url: str, *statements: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for stmt in statements:
                conn.execute(text(stmt))
    finally:
        engine.dispose()


def run_sql_file(url: str, path: str | os.PathLike) -> None:
    """Execute a DDL file (statements separated by ';' at line ends, '--' comments)."""
    body = "\n".join(line for line in Path(path).read_text().splitlines()
                     if not line.lstrip().startswith("--"))
    statements = [s.strip() for s in body.split(";\n") if s.strip().rstrip(";")]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for stmt in statements:
                conn.exec_driver_sql(stmt.rstrip(";"))
    finally:
        engine.dispose()


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


class _Private:
    """Common parts: a temp dir readable by the service user, freeze/thaw of the processes."""

    user = "root"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="saslauthpy-db-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, self.user)
        self.port = free_port()

    def main_pid(self) -> int:
        raise NotImplementedError

    def _pids(self) -> list[int]:
        main = self.main_pid()
        return [main, *_children(main)]

    def freeze(self) -> None:
        """SIGSTOP every process: the kernel still accepts connections, nobody answers."""
        for pid in self._pids():
            freeze(pid)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres(_Private):
    user = "postgres"

    def __init__(self) -> None:
        super().__init__()
        self.data = self.dir / "data"
        self._as_user([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                       "-U", "postgres", "--no-sync", "-E", "UTF8"])
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_user(self, cmd: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c shared_buffers=16MB")
        self._as_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w",
                       "-l", str(self.dir / "log"), "start"])

    def stop(self) -> None:
        self._as_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                       "stop"])

    def main_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def cleanup(self) -> None:
        try:
            self.thaw()
            self.stop()
        except Exception:  # noqa: BLE001 - already stopped
            pass
        super().cleanup()


class PrivateMariadb(_Private):
    user = "mysql"

    def __init__(self) -> None:
        super().__init__()
        self.data = self.dir / "data"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
                        "--user=mysql", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, capture_output=True, timeout=120)
        self.proc: subprocess.Popen | None = None
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/mysql"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.data}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.dir}/sock",
             f"--pid-file={self.dir}/pid", "--user=mysql", "--skip-grant-tables",
             "--innodb-buffer-pool-size=16M", "--skip-log-bin",
             f"--log-error={self.dir}/err.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _accepts(self.port), 30, "private mariadbd")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None

    def main_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.stop()
        super().cleanup()
