"""Start and stop the two daemons under test, the load generator and the bench accounts.

Both daemons get the same mechanism, the same worker count (-n) and, when asked, the
cache (-c).  Each runs in its own run directory under the bench's temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from harness import toml_dumps  # noqa: E402  (the test harness's small TOML writer)

ACCOUNT_PREFIX = "sbench"
ACCOUNT_PASSWORD = "Bench-pw-42"
LEGIT = f"{ACCOUNT_PREFIX}legit"


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def nofile_limit(soft: int | None):
    """A preexec_fn: the soft open-file limit ``soft`` (None: as high as the hard one)."""
    if soft is None:
        return raise_nofile

    def lower() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return lower


def wait_socket(path: Path, proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None and proc.returncode != 0:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(str(path))
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no socket at {path} after {timeout}s")


def wait_ready(sock: socket.socket, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Wait for ``READY=1`` on ``sock`` (the daemon's NOTIFY_SOCKET), as systemd does."""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.1)  # between looks at whether the daemon is still alive
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            if b"READY=1" in sock.recv(4096).split(b"\n"):
                return
        except TimeoutError:
            pass
    raise RuntimeError(f"no READY=1 after {timeout}s")


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _proc_kb(path: str, key: str) -> int:
    """The ``key:  N kB`` value of a /proc file (0 if the key is missing)."""
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _signal_alive(pids: list[int], sig: int) -> None:
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):  # it may exit meanwhile
                os.kill(pid, sig)


def rss_kb(pid: int) -> int:
    """Resident set of one process we started (raises if it is gone)."""
    return _proc_kb(f"/proc/{pid}/status", "VmRSS:")


def pss_kb(pid: int) -> int:
    """Proportional set size; 0 for a child that exited meanwhile."""
    try:
        return _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
    except OSError:
        return 0


class Daemon:
    """Common part: a run directory, a socket, a process tree we started."""

    label = ""

    def __init__(self, base: Path, mech: str, threads: int, cache: bool,
                 mech_options: str = ""):
        self.soft_nofile: int | None = None  # start under this soft open-file limit
        self.base = base
        self.run_dir = base / "run"
        self.mech, self.threads, self.cache, self.mech_options = mech, threads, cache, mech_options
        self.proc: subprocess.Popen | None = None
        self.log = base / "daemon.log"

    @property
    def socket(self) -> Path:
        return self.run_dir / "mux"

    def pid(self) -> int:
        raise NotImplementedError

    def pids(self) -> list[int]:
        main = self.pid()
        return [main, *_children(main)]

    def memory_kb(self) -> int:
        """PSS summed over the daemon's processes (shared pages counted once)."""
        return sum(pss_kb(p) for p in self.pids())

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Daemon:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def error(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""


class CSaslauthd(Daemon):
    label = "C saslauthd"

    def start(self) -> CSaslauthd:
        self.base.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("saslauthd") or "/usr/sbin/saslauthd"
        cmd = [exe, "-a", self.mech, "-m", str(self.run_dir), "-n", str(self.threads)]
        if self.cache:
            cmd.append("-c")
        if self.mech_options:
            cmd += ["-O", self.mech_options]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            # saslauthd daemonises: the parent returns once the workers are up.
            res = subprocess.run(cmd, stdout=log, stderr=log, timeout=30,
                                 preexec_fn=nofile_limit(self.soft_nofile))
        if res.returncode != 0:
            raise RuntimeError(f"saslauthd exited with {res.returncode}: {self.error()}")
        wait_socket(self.socket, None)
        self._pid = int((self.run_dir / "saslauthd.pid").read_text().split()[0])
        self._tree = self.pids()
        return self

    def pid(self) -> int:
        return self._pid

    def stop(self) -> None:
        tree = getattr(self, "_tree", [])
        _signal_alive(tree, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_alive(tree, signal.SIGKILL)


class Saslauthpy(Daemon):
    label = "saslauthpy"

    def __init__(self, base: Path, mech: str, threads: int, cache: bool,
                 mech_options: str = "", config: dict[str, Any] | None = None,
                 label: str = "saslauthpy", python: str = sys.executable,
                 launcher: tuple[str, ...] = ("-m", "saslauthpy")):
        super().__init__(base, mech, threads, cache, mech_options)
        self.config = config or {}
        self.label = label
        self.python = python  # the interpreter (with saslauthpy's dependencies) it runs on
        self.launcher = launcher  # what the interpreter runs, before the daemon's arguments

    def start(self) -> Saslauthpy:
        self.base.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {"run_dir": str(self.run_dir),
                               "audit": {"file": "", "syslog": False}}
        for key, value in self.config.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        conf = self.base / "saslauthpy.toml"
        conf.write_text(toml_dumps(cfg))
        cmd = [self.python, *self.launcher, "-f", "--config", str(conf),
               "-a", self.mech, "-n", str(self.threads)]
        if self.cache:
            cmd.append("-c")
        if self.mech_options:
            cmd += ["-O", self.mech_options]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        # Started as its unit starts it (Type=notify): measured once it says READY=1, sent
        # when every worker process serves.  The socket accepts before that, while the
        # first worker alone serves and the others are still starting.
        notify = self.base / "notify"
        notify.unlink(missing_ok=True)
        env["NOTIFY_SOCKET"] = str(notify)
        self._log = open(self.log, "ab")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ready:
            ready.bind(str(notify))
            # cwd: "-m" puts the working directory first on the path, and this checkout's
            # code is the one measured, wherever the harness was started.  A session of its
            # own, as systemd starts a service and as the C daemon's setsid() gives it: with
            # the kernel's autogroup scheduling a session shares the CPU as one group, and
            # the harness's session holds the load generator.
            self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log, env=env,
                                         cwd=ROOT, preexec_fn=nofile_limit(self.soft_nofile),
                                         start_new_session=True)
            try:
                wait_ready(ready, self.proc)
            except RuntimeError as exc:
                self.stop()
                raise RuntimeError(f"saslauthpy: {exc}: {self.error()}") from None
        return self

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.proc = None


# -- load generator ---------------------------------------------------------------------

def build_loadgen(out_dir: Path) -> Path:
    exe = out_dir / "loadgen"
    gcc = shutil.which("gcc")
    if not gcc:
        raise RuntimeError("gcc is not installed: .ci/setup.d/70-bench.sh installs it")
    subprocess.run([gcc, "-O2", "-pthread", "-o", str(exe), str(BENCH / "loadgen.c")],
                   check=True, capture_output=True)
    return exe


# -- local accounts ---------------------------------------------------------------------

def leftovers() -> list[str]:
    """Bench accounts in the passwd file: named sbench... and made by us (their comment)."""
    out = subprocess.run(["getent", "passwd"], capture_output=True, text=True).stdout
    return [f[0] for f in (line.split(":") for line in out.splitlines())
            if len(f) > 4 and f[0].startswith(ACCOUNT_PREFIX) and f[4] == "saslauthpy bench"]


class Accounts:
    """``count`` local accounts sbench0.. plus sbenchlegit, SHA-512 hashed; removed after."""

    def __init__(self, count: int):
        self.names = [f"{ACCOUNT_PREFIX}{i}" for i in range(count)] + [LEGIT]

    def __enter__(self) -> Accounts:
        _userdel(set(leftovers()) | set(self.names))  # an interrupted run's, whatever its --users
        for name in self.names:
            subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-c",
                            "saslauthpy bench", name], check=True, capture_output=True)
        lines = "".join(f"{n}:{ACCOUNT_PASSWORD}\n" for n in self.names)
        subprocess.run(["chpasswd", "-c", "SHA512"], input=lines, text=True, check=True,
                       capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        _userdel(self.names)


def _userdel(names) -> None:
    for name in names:
        subprocess.run(["userdel", name], capture_output=True)
