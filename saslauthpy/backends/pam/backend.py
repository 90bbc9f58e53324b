"""``-a pam``: PAM, in a small pool of worker processes.

Service name = the request's service (``smtp``, ``imap`` ...); an empty one uses
``other``'s stack via the service name ``other`` (libpam's own fallback for services
without a file).  ``PAM_RHOST`` = the client address up to ``;``.  Then
``pam_authenticate(PAM_SILENT)`` and ``pam_acct_mgmt(PAM_SILENT)``, as saslauthd.

Two things saslauthd gets wrong and this does not:

- The fail delay (pam_unix: about 2 s per wrong password) is taken over with
  ``PAM_FAIL_DELAY``: the worker returns at once and the delay travels back in
  ``Answer.delay``; the daemon waits it out asynchronously, holding no worker.
- PAM modules run in worker *processes* (``pam.worker``): one that crashes or hangs
  costs a TEMPFAIL for that request (after ``timeout``), the worker is killed and a
  fresh one started; workers are also recycled after ``max_requests`` because some
  modules leak (Dovecot does the same, with 100).

The workers run as root, so they load only our code: ``worker.py`` is run by its path
with ``python -I`` (no PYTHON* variables, no user site, no script or current directory
on the path; it imports only the standard library) from ``/``.  And a client may name
only the services in ``services``: the ``su`` or ``runuser`` stack begins with
``pam_rootok``, which says yes to any password when the caller is root.

Options: the ``[pam]`` table, ``Options`` below.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...options import option
from ...protocol import Request
from .. import base
from ..base import Answer, Result, tempfail
from .worker import encode_request, frame

RESULTS = {"ok": Result.OK, "fail": Result.FAIL, "unknown": Result.UNKNOWN,
           "tempfail": Result.TEMPFAIL}
MAX_DELAY = 30.0  # never trust a module asking for longer
# What mail, IMAP, LDAP and database servers put in the request's service field.
DEFAULT_SERVICES = ["smtp", "smtps", "submission", "submissions", "imap", "imaps", "pop",
                    "pop3", "pop3s", "sieve", "managesieve", "lmtp", "nntp", "ldap", "ldaps",
                    "mongodb", "saslauthpy"]
WORKER = [sys.executable, "-I", str(Path(__file__).with_name("worker.py"))]

log = logging.getLogger("saslauthpy")


@dataclass(frozen=True)
class Options:
    """The ``[pam]`` table."""

    workers: int | None = option(None, "PAM worker processes (default: -n)", min=1)
    timeout: float = option(30.0, "seconds one PAM call may take before its worker is "
                            "killed", min=0.1, duration=True)
    max_requests: int = option(100, "requests a worker serves before it is replaced", min=1)
    default_service: str = option("other", "PAM service for a request without one")
    services: list[str] = option(DEFAULT_SERVICES, "the PAM services a request may name "
                                 '(default_service is always allowed; ["*"]: any)')


class Worker:
    """One worker process and the pipe pair to it."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.served = 0

    @classmethod
    async def start(cls) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            *WORKER, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd="/",
            start_new_session=True)  # a terminal's ^C goes to the daemon, not to workers
        return cls(proc)

    async def ask(self, payload: bytes) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(frame(payload))
        await self.proc.stdin.drain()
        n = int.from_bytes(await self.proc.stdout.readexactly(4), "big")
        return json.loads(await self.proc.stdout.readexactly(n))

    def alive(self) -> bool:
        return self.proc.returncode is None

    def kill(self) -> None:
        """SIGKILL to the whole group: helpers a module forked (pam_exec) go too."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def stop(self, kill: bool = False) -> None:
        if self.alive():
            if kill:
                self.kill()
            elif self.proc.stdin is not None:
                self.proc.stdin.close()  # EOF: the worker exits after its current request
        with contextlib.suppress(asyncio.TimeoutError, ProcessLookupError):
            await asyncio.wait_for(self.proc.wait(), 5)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class WorkerPool:
    """At most ``size`` workers, each serving one request at a time."""

    def __init__(self, size: int, timeout: float, max_requests: int):
        self.size = size
        self.timeout = timeout
        self.max_requests = max_requests
        self._idle: list[Worker] = []
        self._all: set[Worker] = set()
        self._slots: asyncio.Semaphore | None = None
        self._retiring: set[asyncio.Task] = set()  # recycled workers finishing

    async def call(self, payload: bytes) -> dict | Answer:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            worker = self._idle.pop() if self._idle else None
            if worker is None or not worker.alive():
                if worker is not None:
                    self._all.discard(worker)  # it died while idle
                worker = await Worker.start()
                self._all.add(worker)
            try:
                answer = await asyncio.wait_for(worker.ask(payload), self.timeout)
            except asyncio.CancelledError:  # its answer would come to the next request
                self._all.discard(worker)
                worker.kill()
                raise
            except TimeoutError:
                await self._discard(worker)
                return tempfail(f"PAM did not answer within {self.timeout:g} s "
                                f"(worker killed and replaced)")
            except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError,
                    ValueError) as exc:
                await self._discard(worker)
                return tempfail(f"PAM worker died ({type(exc).__name__}, exit "
                                f"{worker.proc.returncode}): a PAM module crashed")
            worker.served += 1
            if worker.served >= self.max_requests:
                self._all.discard(worker)
                task = asyncio.get_running_loop().create_task(worker.stop())
                self._retiring.add(task)  # the loop keeps only a weak reference
                task.add_done_callback(self._retiring.discard)
            else:
                self._idle.append(worker)
            return answer

    async def _discard(self, worker: Worker) -> None:
        self._all.discard(worker)
        await worker.stop(kill=True)

    def close(self) -> None:
        for worker in self._all:
            worker.kill()
        self._all.clear()
        self._idle.clear()


class Backend(base.Backend):
    name = "pam"
    Options = Options
    uses_realm = False

    def __init__(self, config: Any, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        o = self.options
        self.default_service = o.default_service or "other"
        # lower case, as libpam uses them; None: any
        self.services = None if "*" in o.services else frozenset(
            n.lower() for n in [*o.services, self.default_service])
        self._refused: set[str] = set()  # services already logged as refused
        self.pool = WorkerPool(o.workers or max(1, config.threads), o.timeout, o.max_requests)

    def refusal(self, request: Request) -> Answer | None:
        """NO for a service outside ``services`` (logged once per name)."""
        service = (request.service or self.default_service).lower()
        if self.services is None or service in self.services:
            return None
        if service not in self._refused and len(self._refused) < 64:
            self._refused.add(service)
            log.warning("pam: refusing requests for the PAM service %r: not in [pam] services",
                        service)
        return Answer(Result.FAIL, f"PAM service {service!r} not allowed")

    def payload(self, request: Request) -> bytes:
        def enc(s: str) -> bytes:
            return s.encode("utf-8", "surrogateescape")

        rhost = request.client_addr.split(";", 1)[0]
        return encode_request(enc(request.service or self.default_service), enc(request.login),
                              request.password, enc(rhost))

    async def authenticate(self, request: Request) -> Answer:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        reply = await self.pool.call(self.payload(request))
        return reply if isinstance(reply, Answer) else self._answer(reply)

    @staticmethod
    def _answer(reply: dict) -> Answer:
        result = RESULTS.get(reply.get("result"), Result.TEMPFAIL)
        delay = min(max(float(reply.get("delay") or 0.0), 0.0), MAX_DELAY)
        return Answer(result, str(reply.get("reason", "")), delay if result != Result.OK else 0)

    def close(self) -> None:
        super().close()
        self.pool.close()
