"""-a pam through the daemon: real accounts, a PAM service file written for the test,
pam_unix's fail delay taken over (waited asynchronously), PAM_RHOST, a hanging module
and a crashing worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reference import PamService

from saslauthpy.backends import pam
from saslauthpy.config import Config
from saslauthpy.protocol import Request

pytestmark = pytest.mark.timeout(120)
GOOD = "Pam-good-1"
ANY_SERVICE = {"services": ["*"]}  # the tests' PAM services have made-up names
BASE = {"throttle": {"enabled": False}, "pam": ANY_SERVICE}
ONE_PROCESS = {"server": {"processes": 1}}  # a test that looks at the PAM worker pids


@contextlib.contextmanager
def hanging_service(seconds: float) -> Iterator[PamService]:
    """A PAM stack that hangs in pam_exec running ``sleep`` with a unique duration
    (pam_exec's child calls setsid(), so it outlives a killed worker; on the way out
    exactly those processes are ended, by pid)."""
    duration = f"{seconds:.0f}.{secrets.randbelow(10**6):06d}"
    try:
        with PamService(f"auth required pam_exec.so quiet /bin/sleep {duration}\n"
                        "account required pam_permit.so\n") as svc:
            yield svc
    finally:
        kill_sleepers(duration)


def kill_sleepers(duration: str) -> None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"/bin/sleep", duration.encode()]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def workers_of(pid: int) -> list[int]:
    """The PAM worker processes of the daemon whose main process is ``pid``: children of
    its worker processes (the main process supervises those)."""
    return [w for p in children(pid) for w in children(p)]


def test_good_wrong_unknown(daemon_factory, accounts, service):
    user = accounts.add(GOOD, "YESCRYPT")
    d = daemon_factory(args=["-a", "pam"], config=BASE)
    assert d.ask(user, GOOD, service.name) == "OK"
    started = time.monotonic()
    assert d.ask(user, "wrong", service.name).startswith("NO")
    assert time.monotonic() - started > 1.0  # pam_unix's delay is still applied, by us
    assert d.ask("nosuch" + user, GOOD, service.name).startswith("NO")


def test_fail_delay_does_not_hold_workers(daemon_factory, accounts, service):
    """16 clients sending wrong passwords; a 17th with the right one still gets fast
    answers: the ~2 s delay is waited asynchronously, not in one of the 5 workers."""
    good_user = accounts.add(GOOD)
    bad_user = accounts.add(GOOD)
    d = daemon_factory(args=["-a", "pam", "-n", "5"], config=BASE)
    assert d.ask(good_user, GOOD, service.name) == "OK"  # warm one worker
    stop = threading.Event()
    bad_times: list[float] = []

    def attacker() -> None:
        while not stop.is_set():
            t = time.monotonic()
            assert d.ask(bad_user, "wrong", service.name).startswith("NO")
            bad_times.append(time.monotonic() - t)

    threads = [threading.Thread(target=attacker) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    latencies = []
    try:
        for _ in range(40):
            t = time.monotonic()
            assert d.ask(good_user, GOOD, service.name) == "OK"
            latencies.append(time.monotonic() - t)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\ngood-password latency under 16 wrong-password clients: "
          f"median {latencies[len(latencies) // 2] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms; wrong answers took "
          f"{min(bad_times):.2f}-{max(bad_times):.2f} s")
    assert min(bad_times) > 1.0  # the bad ones really waited their delay ...
    assert p99 < 0.5  # ... while the good one did not (C saslauthd -n 5: ~1-3 s)


def test_rhost_from_client_address(daemon_factory, accounts, tmp_path):
    access = tmp_path / "access.conf"
    access.write_text("-:ALL:192.0.2.7\n+:ALL:ALL\n")
    with PamService("auth required pam_unix.so\n"
                    f"account required pam_access.so accessfile={access}\n"
                    "account required pam_unix.so\n") as svc:
        user = accounts.add(GOOD)
        d = daemon_factory(args=["-a", "pam"], config=BASE)
        assert d.ask(user, GOOD, svc.name, "", "198.51.100.1;4242") == "OK"
        assert d.ask(user, GOOD, svc.name, "", "192.0.2.7;4242").startswith("NO")
        assert d.ask(user, GOOD, svc.name) == "OK"  # no address: no PAM_RHOST


def test_hanging_module_times_out_and_daemon_keeps_serving(daemon_factory, accounts, service):
    with hanging_service(20) as hang:
        user = accounts.add(GOOD)
        d = daemon_factory(args=["-a", "pam", "-n", "2"],
                           config={**BASE, "pam": {**ANY_SERVICE, "timeout": 1.0}})
        started = time.monotonic()
        assert d.ask(user, GOOD, hang.name).startswith("NO")
        assert time.monotonic() - started < 5
        assert "did not answer" in d.stderr() + "".join(str(e) for e in d.audit())
        # the stuck worker (and the sleep it forked) were killed; others still work
        assert d.ask(user, GOOD, service.name) == "OK"
        assert d.ask(user, GOOD, service.name) == "OK"


def test_crashed_worker_is_replaced(daemon_factory, accounts, service):
    with hanging_service(5) as hang:
        user = accounts.add(GOOD)
        d = daemon_factory(args=["-a", "pam", "-n", "1"], config={**BASE, **ONE_PROCESS})
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(d.ask(user, GOOD, hang.name)))
        t.start()
        deadline = time.monotonic() + 10
        while not workers_of(d.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        for pid in workers_of(d.proc.pid):
            os.kill(pid, signal.SIGSEGV)  # what a crashing module does to its process
        t.join(15)
        assert result and result[0].startswith("NO")
        assert d.ask(user, GOOD, service.name) == "OK"


def test_workers_are_recycled(daemon_factory, accounts, service):
    user = accounts.add(GOOD)
    d = daemon_factory(args=["-a", "pam", "-n", "1"],
                       config={**BASE, **ONE_PROCESS, "pam": {**ANY_SERVICE, "max_requests": 2}})
    seen = set()
    for _ in range(3):
        assert d.ask(user, GOOD, service.name) == "OK"
        seen.update(workers_of(d.proc.pid))
    assert d.ask(user, GOOD, service.name) == "OK"
    seen.update(workers_of(d.proc.pid))
    assert len(seen) >= 2


def test_cancelled_request_does_not_leave_its_worker(accounts):
    """A request cancelled while PAM runs: its worker (whose late answer would go to the
    next request) is killed and forgotten, not left running until shutdown."""
    user = accounts.add(GOOD)

    async def scenario(service: str) -> tuple[int | None, int]:
        backend = pam.Backend(Config(), {"workers": 1, **ANY_SERVICE})
        try:
            request = Request(user, GOOD.encode(), service, "")
            task = asyncio.create_task(backend.authenticate(request))
            while not backend.pool._all:
                await asyncio.sleep(0.05)
            (worker,) = backend.pool._all
            await asyncio.sleep(0.5)  # now inside pam_exec's sleep
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.wait_for(worker.proc.wait(), 5)
            return worker.proc.returncode, len(backend.pool._all)
        finally:
            backend.close()

    with hanging_service(20) as hang:
        returncode, left = asyncio.run(scenario(hang.name))
    assert returncode == -signal.SIGKILL and left == 0
