"""Start the real daemon (and the real reference tools) for tests.

Every test that needs a daemon starts its own: a fresh run directory under
pytest's tmp_path, a TOML config written from a dict, and the daemon run as
``python -m saslauthpy -f`` so the code under test is this checkout's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from saslauthpy import protocol

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def toml_dumps(data: dict[str, Any]) -> str:
    """A small TOML writer for test configs (scalars, lists and one level of tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(v)

    top = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append(f"[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items()))
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    # No empty entry: that would put the daemon's current directory on its path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("NOTIFY_SOCKET", None)
    return env


def terminate(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def freeze(pid: int, timeout: float = 10.0) -> None:
    """SIGSTOP ``pid`` and return once every one of its threads has stopped.

    kill() returns before the stop takes hold: the threads stop only once one of them has
    been scheduled to take the signal, and on a loaded machine the others can meanwhile
    answer a request sent just after (a stalled-server test then sees a fast answer)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        states = []
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except FileNotFoundError:
            return  # it ended (and was reaped) meanwhile
        for task in tasks:
            try:
                # "pid (comm) S ...": the state follows the last ")"
                states.append((task / "stat").read_text().rpartition(")")[2].split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that just ended
        if all(state in "TtZX" for state in states):  # stopped, or ended
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not stop: thread states {states}")
        time.sleep(0.001)


def ask(path: str | os.PathLike, login: str | bytes, password: str | bytes, service: str = "",
        realm: str = "", client_addr: str | None = None, timeout: float = 10.0) -> str:
    """One request over the socket with our own encoder; returns the reply text."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(os.fspath(path))
        s.sendall(protocol.format_request(login, password, service, realm, client_addr))
        return read_reply(s)


def read_reply(s: socket.socket) -> str:
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
        try:
            return protocol.parse_reply(buf)
        except protocol.Incomplete:
            continue
    if not buf:
        raise ConnectionError("closed without a reply")
    return protocol.parse_reply(buf)


def testsaslauthd(path: str | os.PathLike, user: str, password: str, realm: str | None = None,
                  service: str | None = None, repeat: int | None = None,
                  program: str = "testsaslauthd") -> subprocess.CompletedProcess:
    """Run the real testsaslauthd (or ``program``) against ``path``."""
    exe = shutil.which(program) or program
    cmd = [exe, "-f", os.fspath(path), "-u", user, "-p", password]
    if realm is not None:
        cmd += ["-r", realm]
    if service is not None:
        cmd += ["-s", service]
    if repeat is not None:
        cmd += ["-R", str(repeat)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


testsaslauthd.__test__ = False  # a helper, not a test, though its name starts with "test"


def admin(config: str | os.PathLike, *args: str, password: str | None = None,
          check: bool = True) -> subprocess.CompletedProcess:
    """Run ``saslauthpy-admin --config CONFIG ARGS`` (password on stdin)."""
    cmd = [sys.executable, "-m", "saslauthpy.cli.admin", "--config", os.fspath(config), *args]
    if password is not None and "--password-stdin" not in args:
        cmd.append("--password-stdin")
    res = subprocess.run(cmd, input=(password + "\n") if password is not None else None,
                         capture_output=True, text=True, timeout=60, env=python_env())
    if check and res.returncode != 0:
        raise AssertionError(f"admin {args} failed ({res.returncode}): {res.stderr}")
    return res


def control(path: str | os.PathLike, request: dict[str, Any]) -> dict[str, Any]:
    """Send one JSON line to a daemon's control socket and return its JSON answer."""
    import json

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(os.fspath(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


class SocketActivated:
    """Start ``python -m saslauthpy -f --config CONFIG`` the way systemd does: a bound
    listening socket handed over as fd 3, LISTEN_PID set to the service's own pid (by a
    small wrapper, just before exec), and a NOTIFY_SOCKET to read READY/STOPPING from."""

    def __init__(self, tmp: Path, config_path: Path):
        self.sock_path = tmp / "activated.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.sock_path))
        self.listener.listen(16)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp / "notify.sock"))
        self.notify.settimeout(20)
        env = {**python_env(), "LISTEN_FDS": "1", "NOTIFY_SOCKET": str(tmp / "notify.sock")}
        fd = self.listener.fileno()
        code = (f"import os,sys; os.dup2({fd}, 3); os.environ['LISTEN_PID']=str(os.getpid()); "
                "os.execv(sys.executable, [sys.executable, '-m', 'saslauthpy', '-f', "
                f"'--config', {str(config_path)!r}])")
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, pass_fds=(fd,),
                                     stderr=subprocess.DEVNULL)

    def message(self) -> bytes:
        return self.notify.recv(256)

    def __enter__(self) -> SocketActivated:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.listener.close()
        self.notify.close()


class Instance:
    """The files of one saslauthpy under ``tmp`` (run directory, audit log, TOML config, the
    embedded SQLite store) and what a test asks it; ``Daemon`` runs it as a process,
    ``inprocess.InProcessServer`` in the test's own."""

    def __init__(self, tmp: Path, config: dict[str, Any] | None = None):
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.run_dir = self.tmp / "run"
        self.mux = self.run_dir / "mux"
        self.audit_path = self.tmp / "audit.log"
        self.config_path = self.tmp / "saslauthpy.toml"
        defaults = {
            "run_dir": str(self.run_dir),
            "audit": {"file": str(self.audit_path), "syslog": False},
            "sql": {"url": f"sqlite:///{self.tmp / 'users.db'}"},
        }
        self.config = merge(defaults, config or {})
        self.config_path.write_text(toml_dumps(self.config))

    def ask(self, *args: Any, **kw: Any) -> str:
        return ask(self.mux, *args, **kw)

    def admin(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return admin(self.config_path, *args, **kw)

    def control(self, **request: Any) -> dict[str, Any]:
        """One command on the control socket, e.g. ``control(cmd="throttle-show")``."""
        return control(self.run_dir / "saslauthpy.control", request)

    def audit(self) -> list[dict[str, Any]]:
        import json

        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]


class Daemon(Instance):
    """A running saslauthpy in its own run directory."""

    def __init__(self, tmp: Path, args: list[str] | None = None,
                 config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 nofile: tuple[int, int | None] | None = None):
        """``nofile``: start the daemon under this (soft, hard) open-file limit (None:
        the hard limit as it is)."""
        super().__init__(tmp, config)
        self.stderr_path = self.tmp / "daemon.stderr"
        self.args = list(args or [])
        self.env = {**python_env(), **(env or {})}
        self.nofile = nofile
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> Daemon:
        cmd = [sys.executable, "-m", "saslauthpy", "-f", "--config", str(self.config_path),
               *self.args]
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._stderr, stderr=self._stderr, env=self.env,
                                     preexec_fn=self._limits if self.nofile else None)
        if wait:
            self.wait_ready()
        return self

    def _limits(self) -> None:
        import resource

        soft, hard = self.nofile
        if hard is None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.stderr()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.mux))
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"daemon did not listen on {self.mux}: {self.stderr()}")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def workers(self) -> list[int]:
        """The worker processes' pids, from the control socket's status."""
        import json

        return json.loads(self.admin("status", "--json").stdout)["workers"]

    def kill_workers(self, pids: set[int], timeout: float = 20.0) -> list[int]:
        """SIGKILL these workers and wait until the supervisor has replaced them; returns
        the workers then.  (At low load one warm worker takes most connections: a test
        that needs answers from other processes kills the ones that answered.)"""
        count = len(self.workers())
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.workers()
            if len(now) == count and not pids & set(now):
                return now
            time.sleep(0.1)
        raise RuntimeError(f"workers {sorted(pids)} were not replaced: {self.stderr()}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        code = terminate(self.proc, timeout)
        self._stderr.close()
        return code


def need(program: str) -> str:
    """The path of ``program``; a test without it is skipped, except in CI (``CI=true``),
    where .ci/run installed everything and a missing tool is a failure."""

    path = shutil.which(program) or (f"/usr/sbin/{program}"
                                     if os.access(f"/usr/sbin/{program}", os.X_OK) else None)
    if not path:
        missing(f"{program} is not installed: .ci/run installs it (apt-get)")
    return path


def missing(reason: str) -> None:
    """Skip the calling test for ``reason``; under CI (``CI=true``) fail it instead."""
    import pytest

    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason, allow_module_level=True)


def in_ci() -> bool:
    """True under CI (``CI=true``), where .ci/run installed everything."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_module(name: str, hint: str):
    """The Python module ``name``; skipped without it (a failure under CI), ``hint``
    saying how to install it.  Usable at a test module's top level."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python module {name} is not installed: {hint}")

