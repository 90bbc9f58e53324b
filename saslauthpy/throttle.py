"""Brute-force throttling: a growing, decaying penalty delay per user and per client address.

Modelled on Dovecot's auth penalty.  Every counted failure for a *key* raises that key's
level by one; a key at level ``L`` makes requests wait ``base_delay * 2**(L-1)`` seconds,
never more than ``max_delay``, before they are checked.  Levels go down by one every
``decay`` seconds without a new failure, so an idle key is forgotten after ``L * decay``.

Keys:

* the user: the *identity* of the login for each backend of the chain (see
  ``throttle_keys``); a guess counts against every identity the chain checks, and a
  request waits for the most penalised one — a guessing attack on one account slows down
  wherever it comes from and however it is spelt;
* the client address, when the request carries one (the fifth field, ``ip;port``): IPv4
  per address, IPv6 per ``/ipv6_prefix`` network (``/64`` by default, like one host's
  network; Dovecot uses ``/48``).

A request waits the largest delay of its keys, capped by ``max_delay``, asynchronously (no
worker is held) and *before* the check, so an attacker cannot learn the answer early by
timing out.  The cap is what a legitimate user of an account under attack pays at worst
per login (see docs/performance.md for the trade-off).

Repeating the *same* wrong password does not raise a level (a mail client retrying a stale
password is not a guessing attack).  The caller passes ``fingerprint(password)`` (an HMAC),
never the password; with Redis its key is the fleet's (``fingerprint_key_file``, else one
kept in Redis), so one stale password retried on every host counts once.

A success clears the penalty of the identity of the backend that said OK (only that one:
the owner of another spelling's account must not wash the victim's); the address penalty
only decays (an attacker owning one account must not be able to wash its address with it).

Known addresses (``good_pairs``, goodpairs.py): when the request carries an address, a
success from it is remembered as a good (user, address) pair instead of clearing the
user's penalty, and the user's penalty does not hold a request from a remembered pair;
its address penalty still does.  So a guesser, from wherever, cannot make the real user
wait at the addresses they log in from, and the user's penalty keeps holding guesses
from every other address (docs/dovecot.md, "Penalties").

The table (penalties.py) is shared by the daemon's worker processes and bounded
(``max_tracked`` keys; when full, the key whose penalty ends first makes room, so junk
never pushes out the highest penalties).  With ``redis = "redis://..."`` the table is
shared by a fleet of hosts (a URL neither ``rediss://`` nor on this host is warned about);
when Redis does not answer, the local table is used for ``redis_retry`` seconds: logins
are never blocked by it.  ``levels()``/``clear()`` serve the control socket's
``throttle-show``/``throttle-clear``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .backends.base import Result
from .config import ThrottleOptions
from .options import load
from .penalties import Entry, PenaltyTable
from .throttle_keys import Identity, Keys, digest, exposed, read_key

if TYPE_CHECKING:
    from .config import Config
    from .protocol import Request

log = logging.getLogger(__name__)

FINGERPRINTS_KEPT = 4  # distinct wrong passwords remembered per key
FAILURES = frozenset({Result.FAIL, Result.UNKNOWN})  # raise a penalty; TEMPFAIL does not
FLEET_KEY = "fingerprint-key"  # Redis key (after the prefix) of the fleet's HMAC key
_LOCAL_KEY = os.urandom(32)  # HMAC key when none is shared: made before any fork


class Throttle:
    """Penalty table.  ``penalty()`` before the check, ``record()`` after it."""

    def __init__(self, config: Config | None = None, *,
                 options: Mapping[str, Any] | ThrottleOptions | None = None,
                 clock: Callable[[], float] | None = None,
                 penalties: PenaltyTable | None = None, pairs: Any = None):
        """Options from ``config.throttle``, or ``options`` (a ``[throttle]`` table);
        ``penalties``: the daemon's shared penalty table (a private one when None);
        ``pairs``: the shared GoodPairs table (goodpairs.py), or None."""
        self.opts = config.throttle if config is not None else load(
            ThrottleOptions, options, "[throttle] ")
        self.pairs = pairs
        self.enabled = self.opts.enabled and (self.opts.per_user or self.opts.per_address)
        self._keys = Keys(self.opts.per_user, self.opts.per_address, self.opts.ipv6_prefix,
                          self.opts.exempt)
        # The level at which the delay reaches the cap: levels never grow past it, so a long
        # attack does not leave a long tail of penalty after it stops.
        ratio = self.opts.max_delay / self.opts.base_delay if self.opts.base_delay > 0 else 1.0
        self.max_level = math.ceil(math.log2(ratio)) + 1 if ratio > 1 else 1
        self._own_table = penalties is None
        self._local = penalties or PenaltyTable(self.opts.max_tracked)
        self._redis: Any = None
        self._redis_down_until = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._fp_key = _LOCAL_KEY
        self._fp_key_fleet = bool(self.opts.fingerprint_key_file)
        if self._fp_key_fleet:
            self._fp_key = read_key(self.opts.fingerprint_key_file)
        if self.opts.redis:
            import redis  # imported only when configured

            if exposed(self.opts.redis):
                log.warning("throttle: Redis at %s is reached without TLS over the network: "
                            "user names, addresses and penalties cross it in clear; use "
                            "rediss:// or a Redis on this host",
                            urlsplit(self.opts.redis).hostname)
            self._redis = redis.Redis.from_url(
                self.opts.redis, socket_timeout=self.opts.redis_timeout,
                socket_connect_timeout=self.opts.redis_timeout)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="throttle-redis")
            self._executor.submit(self._fleet_key)
        # Redis timestamps must agree across hosts: wall clock there, monotonic locally.
        self.clock = clock or (time.time if self._redis is not None else time.monotonic)

    @property
    def shared(self) -> bool:
        """True when the table lives in Redis: asking it is a network round trip."""
        return self._redis is not None

    def fingerprint(self, password: bytes) -> bytes:
        """What ``record()`` takes instead of the password (the same on every host of a
        fleet that shares the key)."""
        return hmac.digest(self._fp_key, password, "sha256")[:16]

    def keys(self, request: Request, identities: Sequence[Identity] | None = None) -> list[str]:
        return self._keys.of(request, identities)

    def address_key(self, client_addr: str) -> str:
        return self._keys.address(client_addr)

    # -- arithmetic ---------------------------------------------------------------------

    def delay_for(self, level: int) -> float:
        if level <= 0:
            return 0.0
        return min(self.opts.max_delay, self.opts.base_delay * 2 ** (level - 1))

    def _effective(self, entry: Entry | None, now: float) -> int:
        if entry is None:
            return 0
        steps = int(max(0.0, now - entry.last) // self.opts.decay)
        return max(0, entry.level - steps)

    # -- public API ---------------------------------------------------------------------

    def penalty(self, request: Request, identities: Sequence[Identity] | None = None) -> float:
        """Seconds the caller should wait (asynchronously) before checking ``request``;
        ``identities``: the accounts the chain checks (default: the login as it came)."""
        if not self.enabled:
            return 0.0
        if self._redis is None and not self._local.active(self.clock()):
            return 0.0  # the common case: nobody is being throttled
        keys = self.keys(request, identities)
        if not keys:
            return 0.0
        if self.pairs is not None:
            keys = self.pairs.unheld(keys)  # a user's penalty does not hold a known address
        now = self.clock()
        entries = self._load(keys)
        level = max(self._effective(e, now) for e in entries)
        return self.delay_for(level)

    def wants(self, request: Request, result: Result) -> bool:
        """False when ``record()`` would change nothing (an OK with no client address to
        pair and no penalty anywhere to lift, a tempfail): the caller need not work out
        the identities to record."""
        if not self.enabled:
            return False
        if result is Result.OK:
            return (self.pairs is not None and bool(request.client_addr)) or self._may_lift()
        return result in FAILURES

    def _may_lift(self) -> bool:
        """Some key may have a penalty an OK would lift: always with Redis (the table is
        there), else while the local table's horizon is ahead."""
        return self._redis is not None or self._local.active(self.clock())

    def record(self, request: Request, result: Result, password_fingerprint: bytes,
               identities: Sequence[Identity] | None = None) -> None:
        """Account for the outcome of a check.  ``identities``: for a failure, every
        identity the chain checked; for OK, the identity of the backend that said OK (its
        penalty is cleared)."""
        if not self.enabled:
            return
        keys = self.keys(request, identities)
        if not keys:
            return
        if result is Result.OK:
            if self.pairs is not None and self.pairs.remember_all(keys):
                return  # the user's penalty stays, for the other addresses
            if not self._may_lift():
                return  # no key has a penalty now: an entry left is as good as none
            user_keys = [k for k in keys if k.startswith("u:")]
            if user_keys:
                self._clear(user_keys)
            return
        if result not in FAILURES:
            return  # tempfail and the like say nothing about the password
        idents = identities or [(request.login, request.realm)]
        now = self.clock()
        for key in keys:
            self._fail(key, digest(password_fingerprint, key, idents), now)

    # With Redis, every use of the table (Redis or the local fallback) runs on the one
    # "throttle-redis" thread: the event loop never waits on Redis, and the local table is
    # never touched by two threads at once.

    async def penalty_async(self, request: Request,
                            identities: Sequence[Identity] | None = None) -> float:
        """``penalty()`` without blocking the event loop on a Redis round trip."""
        if self._executor is None:
            return self.penalty(request, identities)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.penalty, request, identities)

    async def record_async(self, request: Request, result: Result, fingerprint: bytes,
                           identities: Sequence[Identity] | None = None) -> None:
        """``record()`` without blocking the event loop on a Redis round trip."""
        if self._executor is None:
            self.record(request, result, fingerprint, identities)
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.record, request, result, fingerprint,
                                   identities)

    def levels(self, keys: list[str]) -> list[tuple[str, int]]:
        """(key, level) of those of ``keys`` that carry a penalty now."""
        now = self.clock()
        return [(k, level) for k, e in zip(keys, self._load(keys), strict=True)
                if (level := self._effective(e, now)) > 0]

    def clear(self, keys: list[str]) -> None:
        """Lift the penalties of ``keys``."""
        self._clear(keys)

    def active(self, now: float) -> bool:
        """False when no key in the local table can have a penalty at ``now``."""
        return self._local.active(now)

    def tracked(self) -> int:
        """Keys with a penalty in the local table (the Redis table is bounded by expiry)."""
        return self._local.count(self.clock(), self.opts.decay)

    def close(self) -> None:
        if self._own_table:
            self._local.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self._redis is not None:
            self._redis.close()

    # -- storage: Redis when configured and answering, else the local LRU table -----------

    def _redis_usable(self) -> bool:
        if self._redis is None or time.monotonic() < self._redis_down_until:
            return False
        if not self._fp_key_fleet:
            self._fleet_key()
        return True

    def _fleet_key(self) -> None:
        """Adopt the HMAC key kept in Redis, storing ours there if there is none yet."""
        try:
            rkey = self._rkey(FLEET_KEY)
            self._redis.set(rkey, os.urandom(32), nx=True)
            key = self._redis.get(rkey)
        except Exception as exc:
            self._redis_failed(exc)
            return
        if key and len(key) >= 16:
            self._fp_key, self._fp_key_fleet = key, True

    def _redis_failed(self, exc: Exception) -> None:
        if time.monotonic() >= self._redis_down_until:
            log.warning("throttle: Redis unreachable (%s); using the local table for %.0fs",
                        type(exc).__name__, self.opts.redis_retry)
        self._redis_down_until = time.monotonic() + self.opts.redis_retry

    def _load(self, keys: list[str]) -> list[Entry | None]:
        if self._redis_usable():
            try:
                return self._redis_load(keys)
            except Exception as exc:  # any Redis trouble: fall back, never block logins
                self._redis_failed(exc)
        return [self._local.get(k) for k in keys]

    def _clear(self, keys: list[str]) -> None:
        for k in keys:
            self._local.clear(k)
        if self._redis_usable():
            try:
                self._redis.delete(*map(self._rkey, keys))
            except Exception as exc:
                self._redis_failed(exc)

    def _fail(self, key: str, fp: str, now: float) -> None:
        if self._redis_usable():
            try:
                self._redis_fail(key, fp, now)
                return
            except Exception as exc:
                self._redis_failed(exc)
        self._local.update(key, lambda entry: self._bump(entry, fp, now), now, self.opts.decay)

    def _bump(self, entry: Entry | None, fp: str, now: float) -> Entry:
        level = self._effective(entry, now)
        if entry is not None and level > 0 and fp in entry.fps:
            return entry  # the same wrong password again: no new information, no growth
        fps = (entry.fps if entry is not None and level > 0 else [])[-(FINGERPRINTS_KEPT - 1):]
        return Entry(min(level + 1, self.max_level), now, [*fps, fp])

    def _rkey(self, key: str) -> bytes:
        # A login is any bytes the client sent (decoded with surrogateescape): encoding it
        # strictly would fail, and count as Redis being down, for a non-UTF-8 login.
        return (self.opts.redis_prefix + key).encode("utf-8", "surrogateescape")

    def _redis_load(self, keys: list[str]) -> list[Entry | None]:
        pipe = self._redis.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(self._rkey(k), "level", "last", "fps")
        return [_entry(*row) for row in pipe.execute()]

    def _redis_fail(self, key: str, fp: str, now: float) -> None:
        from redis.exceptions import WatchError

        rkey = self._rkey(key)
        # WATCH/MULTI so two hosts counting failures at once both count.
        with self._redis.pipeline() as pipe:
            for _ in range(5):
                try:
                    pipe.watch(rkey)
                    new = self._bump(_entry(*pipe.hmget(rkey, "level", "last", "fps")), fp, now)
                    pipe.multi()
                    pipe.hset(rkey, mapping={"level": new.level, "last": repr(new.last),
                                             "fps": ",".join(new.fps)})
                    pipe.expire(rkey, max(1, math.ceil(new.level * self.opts.decay)))
                    pipe.execute()
                    return
                except WatchError:
                    continue
        # Five lost races in a row: another host is counting this key; theirs will do.


def _entry(level: bytes | None, last: bytes | None, fps: bytes | None) -> Entry | None:
    """An entry from its Redis hash fields (None when the key is not there)."""
    if level is None or last is None:
        return None
    return Entry(int(level), float(last), (fps or b"").decode().split(","))
