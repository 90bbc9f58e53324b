"""The pipeline from a parsed request to a reply.

    normalise (realm rules) -> throttle -> cache -> backend chain -> audit

The throttle counts by *identity*: each backend says which account a login reaches
(``Backend.identity``), and a request counts against the identities of every backend of
the chain, so that no spelling of a login (``root@x1``, ``ROOT``, `` root``) escapes the
penalty of the account a backend really checks.

Cache hits are answered synchronously on the event loop (``answer_from_cache``);
everything else goes through ``answer()``, where each backend runs its blocking
work in its own bounded pool.  When every backend's check may run in the fast lane's
threads (``inline``: a local verify, shadow, getpwent, sasldb, SQLite; or LDAP, which gives
up at once when its server is slow) such a thread may run the whole pipeline itself
(``answer_now``): the same steps, answers, records and penalties, with no hop to
the event loop and the pool.  The chain tries backends in order: the first OK or FAIL wins,
UNKNOWN lets the next one try, and TEMPFAIL is remembered so that if nobody
knows the user the answer is a temporary failure rather than "unknown".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends.base import FAIL, OK, Answer, Backend, Result, run_now
from .cache import CredentialCache
from .config import Config
from .protocol import Request, format_reply

log = logging.getLogger("saslauthpy")

REPLY_OK = format_reply("OK")
REPLY_FAIL = format_reply("NO authentication failed")
REPLY_TEMPFAIL = format_reply(
    "NO [ALERT] The authentication backend is temporarily unavailable"
)


class Peer:
    """The connecting process (pid, uid, gid from SO_PEERCRED), read on first use only:
    most decisions are never written anywhere, and asking the socket is not free."""

    __slots__ = ("_fetch", "_creds")

    def __init__(self, fetch: Callable[[], tuple[int, int, int]] | None = None):
        self._fetch = fetch
        self._creds: tuple[int, int, int] | None = None

    def _get(self) -> tuple[int, int, int]:
        if self._creds is None:
            self._creds = self._fetch() if self._fetch else (0, -1, -1)
        return self._creds

    @property
    def pid(self) -> int:
        return self._get()[0]

    @property
    def uid(self) -> int:
        return self._get()[1]


@dataclass(slots=True)
class Decision:
    """What the audit log and the metrics see of one request (never the password)."""

    request: Request | None
    result: str  # ok, fail, unknown, tempfail, malformed
    reason: str
    backend: str
    cached: bool
    latency: float
    peer: Peer
    delay: float = 0.0  # seconds waited before answering (throttle penalty, PAM fail delay)

    @property
    def service(self) -> str:
        return self.request.service if self.request else ""


Observer = Callable[[Decision], None]
_NO_LANE = contextlib.nullcontext()


class FairGate:
    """Lets one key (a login) hold at most ``limit`` of the pool's workers at once,
    so a flood aimed at one user cannot occupy the whole pool."""

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}  # requests holding or waiting for each key

    def enter(self, key: str) -> _Held:
        """``async with gate.enter(key):`` holds one of the key's places."""
        return _Held(self, key)

    def _leave(self, key: str) -> None:
        left = self._users[key] - 1
        if left:
            self._users[key] = left
        else:  # nobody else holds or waits: forget the key
            del self._users[key]
            del self._sems[key]


class _Held:
    """One request's place in a ``FairGate`` (a plain class: no generator per request)."""

    __slots__ = ("gate", "key", "sem")

    def __init__(self, gate: FairGate, key: str):
        self.gate, self.key = gate, key

    async def __aenter__(self) -> None:
        gate, key = self.gate, self.key
        sem = gate._sems.get(key)
        if sem is None:
            sem = gate._sems[key] = asyncio.Semaphore(gate.limit)
        gate._users[key] = gate._users.get(key, 0) + 1
        self.sem = sem
        try:
            await sem.acquire()
        except BaseException:
            gate._leave(key)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.sem.release()
        self.gate._leave(self.key)


class Authenticator:
    def __init__(self, config: Config, backends: list[Backend],
                 cache: CredentialCache | None = None, throttle=None,
                 observers: list[Observer] | None = None):
        self.config = config
        self.backends = backends
        self.cache = cache
        self.throttle = throttle
        self.observers = observers or []
        self.gate = FairGate(max(1, config.threads // 2))
        self.suspects = asyncio.Semaphore(max(1, config.threads // 2))
        self.in_flight = 0  # answer()s running (counted on the event loop)
        self.checking = 0  # answer_now()s running (counted by the fast lane's threads)
        self.checking_lock = threading.Lock()
        # The whole pipeline may run in the fast lane's threads: every check may run there
        # (``Backend.inline``) and no penalty needs a Redis round trip.
        self.inline = bool(backends) and all(b.inline for b in backends) and not (
            throttle is not None and throttle.shared)
        self.waits = any(b.waits for b in backends)  # on a server, not a hash
        # No inline checks before this time: a stalled server or costly checks seen by one
        # fast-lane thread send every thread's requests the asyncio way for a while.
        self.inline_after = 0.0
        self._reveal = config.server.reveal_reasons

    # -- helpers ------------------------------------------------------------

    def normalise(self, req: Request) -> Request:
        if self.config.realm_join and req.realm:
            # saslauthd -r: the login becomes login@realm and the realm is still passed on.
            return dataclasses.replace(req, login=f"{req.login}@{req.realm}")
        return req

    def cache_key(self, login: bytes, realm: bytes, service: bytes) -> bytes:
        """The cache key of a request as the fast lane read it (after ``normalise``'s
        realm rules): the bytes of ``CredentialCache.key`` of the decoded fields."""
        if self.config.realm_join and realm:
            login = login + b"@" + realm
        return login + b"\0" + realm + b"\0" + service

    def identities(self, login: str, realm: str) -> list[tuple[str, str]]:
        """The accounts the chain may check for a (normalised) login and realm: each
        backend's identity, without repeats."""
        out: list[tuple[str, str]] = []
        for backend in self.backends:
            ident = backend.identity(login, realm)
            if ident not in out:
                out.append(ident)
        return out or [(login, realm)]

    def penalty(self, req: Request) -> float:
        """The throttle's delay for a normalised request, now, by its identities (what the
        fast lane and the cache path ask before answering from the cache)."""
        throttle = self.throttle
        if throttle is None or not throttle.active(throttle.clock()):
            return 0.0
        return throttle.penalty(req, self.identities(req.login, req.realm))

    def _publish(self, decision: Decision) -> None:
        for observer in self.observers:
            try:
                observer(decision)
            except Exception:  # an audit or metrics failure must not cost an answer
                log.exception("observer %r failed", observer)

    def _reply(self, answer: Answer) -> bytes:
        if answer.result is Result.OK:
            return REPLY_OK
        if answer.result is Result.TEMPFAIL:
            return REPLY_TEMPFAIL
        if self._reveal and answer.reason:
            return format_reply(f"NO {answer.reason}")
        return REPLY_FAIL

    def malformed(self, reason: str, peer: Peer, started: float) -> None:
        self._publish(Decision(None, "malformed", reason, "", False,
                               time.monotonic() - started, peer))

    # -- the pipeline ---------------------------------------------------------

    def answer_from_cache(self, req: Request, peer: Peer, started: float) -> bytes | None:
        """The synchronous fast path: a reply if the cache can give it, else None."""
        cache = self.cache
        if cache is None:
            return None
        req = self.normalise(req)
        if self._held(req):
            return None
        key = cache.key(req.login, req.realm, req.service)
        return self._cached(req, key, cache.fingerprint(key, req.password), peer, started)

    def answer_now(self, req: Request, peer: Peer, started: float) -> bytes | None:
        """The whole pipeline in the caller's thread, for an ``inline`` chain: the reply,
        or None when a penalty is pending (the request must wait on the asyncio path).
        What it records, caches and counts is what ``answer()`` does for a request that
        finds no penalty (and, for a cache hit, what ``answer_from_cache`` does)."""
        req = self.normalise(req)
        if self._held(req):
            return None
        cache = self.cache
        generation = cache.generation if cache is not None else 0
        key = CredentialCache.key(req.login, req.realm, req.service)
        fp = b""
        if cache is not None:
            fp = cache.fingerprint(key, req.password)
            reply = self._cached(req, key, fp, peer, started)
            if reply is not None:
                return reply
        answer, said = self._ask_chain_now(req)
        if answer.delay > 0:  # no inline backend asks for one (PAM's fail delay does)
            time.sleep(answer.delay)
        result = answer.result
        self._learn(key, fp, result, generation)
        throttle = self.throttle
        if throttle is not None and throttle.wants(req, result):
            throttle.record(req, result, _counted(throttle, req, result),
                            self._accounts(req, result, said))
        return self._decided(req, answer, said.name if said is not None else "", peer,
                             started, answer.delay)

    def _held(self, req: Request) -> bool:
        """True when a penalty (or a Redis round trip to learn of one) must come first:
        under a penalty even a cached answer waits, else a guess that happens to be the
        cached password would be told apart from the others by its speed."""
        throttle = self.throttle
        return throttle is not None and (throttle.shared or self.penalty(req) > 0)

    def _cached(self, req: Request, key: str, fp: bytes, peer: Peer,
                started: float) -> bytes | None:
        hit = self.cache.lookup(key, fp)
        if hit is None:
            return None
        result = "ok" if hit else "fail"
        self._publish(Decision(req, result, "" if hit else "wrong password (cached)", "cache",
                               True, time.monotonic() - started, peer))
        return REPLY_OK if hit else REPLY_FAIL

    async def answer(self, req: Request, peer: Peer, started: float) -> bytes:
        self.in_flight += 1
        try:
            return await self._answer(self.normalise(req), peer, started)
        finally:
            self.in_flight -= 1

    async def _answer(self, req: Request, peer: Peer, started: float) -> bytes:
        delay = 0.0
        throttle = self.throttle
        cache = self.cache
        generation = cache.generation if cache is not None else 0  # before any wait
        key = CredentialCache.key(req.login, req.realm, req.service)
        fp = cache.fingerprint(key, req.password) if cache is not None else b""
        idents = self.identities(req.login, req.realm)
        hit = None
        if throttle is not None:
            delay = await throttle.penalty_async(req, idents)
            if delay > 0:
                await asyncio.sleep(delay)
            if cache is not None and (delay > 0 or throttle.shared):
                hit = cache.lookup(key, fp)  # answer_from_cache left this one to us
        said = None  # the backend that answered
        if hit is not None:
            answer, backend = (OK if hit else FAIL), "cache"
        else:
            # A penalised request (a suspected guess) may hold only part of the pool, so
            # that guesses spread over many users cannot starve everyone else; one account
            # (however it is spelt) only part of it.
            lane = self.suspects if delay > 0 else _NO_LANE
            async with lane, self.gate.enter("\0".join(idents[0])):
                answer, said = await self._ask_chain(req)
            backend = said.name if said is not None else ""
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
            delay += answer.delay
        result = answer.result
        if hit is None:
            self._learn(key, fp, result, generation)
        if throttle is not None and throttle.wants(req, result):
            await throttle.record_async(req, result, _counted(throttle, req, result),
                                        self._accounts(req, result, said, idents))
        return self._decided(req, answer, backend, peer, started, delay)

    def _learn(self, key: str, fp: bytes, result: Result, generation: int) -> None:
        """Cache a backend's answer."""
        cache = self.cache
        if cache is not None:
            if result is Result.OK:
                cache.remember_good(key, fp, generation)
            elif result in (Result.FAIL, Result.UNKNOWN):
                cache.remember_bad(key, fp, generation)

    def _accounts(self, req: Request, result: Result, said: Backend | None,
                  idents: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        """The identities the throttle records ``result`` against: for an OK only the
        account that said it (its penalty alone is lifted), else every one the chain
        checks (``idents`` when already worked out)."""
        if result is Result.OK:
            return [b.identity(req.login, req.realm) for b in self._said_ok(said)]
        return idents or self.identities(req.login, req.realm)

    def _decided(self, req: Request, answer: Answer, backend: str, peer: Peer,
                 started: float, delay: float) -> bytes:
        self._publish(Decision(req, answer.result.value, answer.reason, backend,
                               backend == "cache", time.monotonic() - started, peer, delay))
        return self._reply(answer)

    def _said_ok(self, said: Backend | None) -> list[Backend]:
        """The backend whose OK this is: the one that answered, or for a cached OK the only
        backend there is (in a chain the cache does not say which one it was: none)."""
        if said is not None:
            return [said]
        return self.backends if len(self.backends) == 1 else []

    async def _ask_chain(self, req: Request, now: bool = False) -> tuple[Answer, Backend | None]:
        """The chain's answer and who gave it; ``now``: each backend's blocking ``check``
        in the caller's thread (``_ask_chain_now``) instead of ``authenticate``."""
        tempfail: tuple[Answer, Backend] | None = None
        for backend in self.backends:
            try:
                answer = backend.check(req) if now else await backend.authenticate(req)
            except Exception as exc:  # a backend bug is a temporary failure, not a crash
                answer = _crashed(backend, req, exc)
            if answer.result in (Result.OK, Result.FAIL):
                return answer, backend
            if answer.result is Result.TEMPFAIL and tempfail is None:
                tempfail = (answer, backend)
        return tempfail or self._nobody()

    def _ask_chain_now(self, req: Request) -> tuple[Answer, Backend | None]:
        return run_now(self._ask_chain(req, now=True))  # it never waits: run at once

    def _nobody(self) -> tuple[Answer, Backend | None]:
        return Answer(Result.UNKNOWN, "unknown user"), self.backends[-1] if self.backends else None

    def busy(self) -> bool:
        """Requests are still being answered on this pipeline (a reload waits for them)."""
        return bool(self.in_flight or self.checking)

    def close(self) -> None:
        for backend in self.backends:
            try:
                backend.close()
            except Exception:
                log.exception("closing backend %s", backend.name)


def _crashed(backend: Backend, req: Request, exc: Exception) -> Answer:
    log.exception("backend %s failed on %r", backend.name, req)
    return Answer(Result.TEMPFAIL, f"internal error: {type(exc).__name__}")


def _counted(throttle, req: Request, result: Result) -> bytes:
    """Only a failure is counted by its password's fingerprint: none is made otherwise."""
    if result is Result.FAIL or result is Result.UNKNOWN:
        return throttle.fingerprint(req.password)
    return b""
