"""A booted Debian 12 container with systemd as PID 1, for the package tests.

The root file system is made once by .ci/setup.d/80-debian.sh (debootstrap) and cached;
``systemd-nspawn --boot --volatile=overlay`` boots it with a throw-away overlay, so nothing
a test does reaches the cached tree.  Commands run inside through ``nsenter`` into the
namespaces of the container's PID 1; a host directory is visible read-only as /mnt/host.

The package itself is built from this checkout by ``build_deb`` (``dpkg-buildpackage -us
-uc -b`` in a copy of the tree), and kept in the same cache under a hash of the files that
went into it, so an unchanged tree is not built twice.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from harness import ROOT, missing, need

CACHE = Path(os.environ.get("SASLAUTHPY_CONTAINER_CACHE", "/var/cache/saslauthpy-ci"))


def source_files() -> list[str]:
    """The checkout's files (tracked and untracked, not ignored) that exist."""
    res = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
                         capture_output=True, check=True)
    names = sorted({n for n in res.stdout.decode().split("\0") if n})
    return [n for n in names if os.path.lexists(ROOT / n)]


def build_deb(workdir: Path) -> Path:
    """The .deb of this checkout (built now, or taken from the cache if the same files
    were built before); dpkg-buildpackage's log is in the build directory."""
    need("dpkg-buildpackage")
    need("dh_virtualenv")
    files = source_files()
    digest = hashlib.sha256()
    for name in files:
        path = ROOT / name
        digest.update(name.encode() + b"\0")
        digest.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
    key = digest.hexdigest()[:16]
    cached = CACHE / "deb" / key
    found = sorted(cached.glob("saslauthpy_*.deb")) if cached.is_dir() else []
    if found:
        return found[0]
    build = workdir / "build" / "saslauthpy"
    build.mkdir(parents=True)
    for name in files:
        src, dst = ROOT / name, build / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    log = workdir / "build" / "dpkg-buildpackage.log"
    with open(log, "wb") as out:
        res = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=build, stdout=out,
                             stderr=subprocess.STDOUT, timeout=1800)
    if res.returncode != 0:
        raise AssertionError(f"dpkg-buildpackage failed: {log.read_text()[-3000:]}")
    deb = next((workdir / "build").glob("saslauthpy_*.deb"))
    tmp = CACHE / "deb" / f".{key}.{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy2(deb, tmp / deb.name)
    for old in (CACHE / "deb").iterdir():  # keep only the newest build
        if old.name != tmp.name:
            shutil.rmtree(old, ignore_errors=True)
    tmp.rename(cached)
    return cached / deb.name


class Container:
    def __init__(self, tmp: Path, host_dir: Path):
        for tool in ("systemd-nspawn", "nsenter"):
            need(tool)
        self.tree = CACHE / "current"
        if not (self.tree / ".complete").exists():
            missing(f"no container tree in {self.tree}: .ci/setup.d/80-debian.sh makes it")
        self.name = "saslauthpy-" + secrets.token_hex(4)
        self.log = Path(tmp) / "nspawn.log"
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.tree), "--boot", "--register=no", "--keep-unit",
             "--volatile=overlay", "-M", self.name, f"--bind-ro={host_dir}:/mnt/host"],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
        self.pid = self._pid1()
        # Until systemd has mounted /run and its bus, systemctl says "offline" or fails.
        self.wait_for(lambda: self.run("systemctl", "is-system-running", "--wait",
                                       check=False).stdout.strip() in ("running", "degraded"),
                      "the container's boot", timeout=120)

    def _pid1(self, timeout: float = 60) -> int:
        """The container's init: a descendant of systemd-nspawn that is PID 1 in its own
        PID namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited: {self.log.read_text()[-2000:]}")
            for child in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
                for pid in child.read_text().split():
                    status = Path(f"/proc/{pid}/status").read_text()
                    nspid = next(ln for ln in status.splitlines() if ln.startswith("NSpid:"))
                    if nspid.split()[-1] == "1" and len(nspid.split()) > 2:
                        return int(pid)
            time.sleep(0.1)
        raise AssertionError("no PID 1 appeared in the container")

    def run(self, *cmd: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p",
                              "--", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                              "LANG=C.UTF-8", *cmd],
                             input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}:\n"
                                 f"{res.stdout}{res.stderr}")
        return res

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run("sh", "-ec", script, **kw)

    def write(self, path: str, text: str) -> None:
        self.run("sh", "-c", f'mkdir -p "$(dirname "{path}")" && cat > "{path}"', input=text)

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-P", prop, unit).stdout.strip()

    def wait_for(self, check, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # nspawn asks the container's systemd to power off
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
