"""A bounded, keyed memory of (user, client address) pairs that logged in successfully.

The throttle consults it so that a guesser cannot lock the real user out: the user's
penalty does not hold an address that logged this user in recently, while guesses for
the user from any other address still wait, and the guessing address itself waits for
every user (its address penalty).  See docs/dovecot.md, "Penalties".

Only a keyed digest of the pair is kept (BLAKE2b under a random key made at start, held
in memory only), never a login, an address or anything about the password: the table
says "seen" or "not seen" for a pair one already knows, and nothing else.  It is one
fixed block of anonymous shared memory made before the daemon forks, so every worker
process sees a login another one answered; 32 bytes an entry, set-associative, a full
set drops the pair whose last success is oldest.  Entries expire ``ttl`` seconds after
their last success.  Writers take no lock: every entry carries a keyed check, so an
entry torn by two processes writing at once reads as absent (the safe answer).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config

WAYS = 4
_ENTRY = struct.Struct("<16sd8s")  # pair digest, expiry, check
SIZE = _ENTRY.size  # 32


class GoodPairs:
    def __init__(self, max_entries: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock  # CLOCK_MONOTONIC is one clock for every process
        self._secret = os.urandom(32)
        self.sets = max(1, -(-max_entries // WAYS))
        self._mm = mmap.mmap(-1, self.sets * WAYS * SIZE)  # anonymous, MAP_SHARED

    def _digest(self, user_key: str, address_key: str) -> bytes:
        data = f"{user_key}\0{address_key}".encode("utf-8", "surrogateescape")
        return hashlib.blake2b(data, key=self._secret, digest_size=16).digest()

    def _check(self, digest: bytes, expires: float) -> bytes:
        return hashlib.blake2b(digest + struct.pack("<d", expires), key=self._secret,
                               digest_size=8, person=b"check").digest()

    def _set(self, digest: bytes) -> range:
        start = (int.from_bytes(digest[:8], "little") % self.sets) * WAYS * SIZE
        return range(start, start + WAYS * SIZE, SIZE)

    def known(self, user_key: str, address_key: str) -> bool:
        """Did ``address_key`` log ``user_key`` in within the last ``ttl`` seconds?"""
        digest = self._digest(user_key, address_key)
        now = self._clock()
        for off in self._set(digest):
            got, expires, check = _ENTRY.unpack_from(self._mm, off)
            if got == digest:
                return expires > now and check == self._check(got, expires)
        return False

    def remember(self, user_key: str, address_key: str) -> None:
        """Record a success of ``user_key`` from ``address_key`` (renews a known pair)."""
        digest = self._digest(user_key, address_key)
        now = self._clock()
        victim, oldest = -1, float("inf")
        for off in self._set(digest):
            got, expires, check = _ENTRY.unpack_from(self._mm, off)
            if got == digest:
                victim = off
                break
            if expires <= now or check != self._check(got, expires):
                expires = -1.0  # empty, expired or torn: free to take
            if expires < oldest:
                victim, oldest = off, expires
        expires = now + self.ttl
        _ENTRY.pack_into(self._mm, victim, digest, expires, self._check(digest, expires))

    # -- for the throttle, whose keys are ``u:...`` (users) and one ``a:...`` (the address)

    def unheld(self, keys: list[str]) -> list[str]:
        """``keys`` without the user keys whose pair with the address key is known."""
        addr = next((k for k in keys if k.startswith("a:")), None)
        if addr is None:
            return keys
        return [k for k in keys if not (k.startswith("u:") and self.known(k, addr))]

    def remember_all(self, keys: list[str]) -> bool:
        """Remember each user key's pair with the address key; False without an address."""
        addr = next((k for k in keys if k.startswith("a:")), None)
        if addr is None:
            return False
        for k in keys:
            if k.startswith("u:"):
                self.remember(k, addr)
        return True

    def close(self) -> None:
        self._mm.close()


def make_pairs(config: Config) -> GoodPairs | None:
    """The table for ``[throttle]``, made once before any fork; None when it has no use
    (the throttle is off, or lacks the user or the address key it combines)."""
    opts = config.throttle
    if not (opts.enabled and opts.per_user and opts.per_address and opts.good_pairs):
        return None
    return GoodPairs(opts.good_pairs, opts.good_pair_ttl)
