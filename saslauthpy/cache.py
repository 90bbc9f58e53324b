"""Credential cache: (login, realm, service) -> keyed hash of the last good password.

saslauthd keeps an unsalted MD5 of the password in a file.  We keep a keyed BLAKE2b
(16 bytes, a MAC like HMAC, at a third of its cost here) under a random key made at start
and held only in memory, so neither the table nor a dump of it gives a password or a
digest that could be tested offline.  An entry is found by a tag, Python's own ``hash`` of
its key (SipHash under a random key the interpreter draws at start, inherited by the
forked workers): a keyed hash, so no one can aim keys at one set, and the cheapest there
is.  The fingerprint, computed only once the tag is found, also covers the key, so two
keys sharing a tag could only evict each other, never answer for each other.  Entries
live ``ttl`` seconds (hits do not extend them, as in saslauthd).  An optional negative
TTL remembers the last failed password of a key, so the same wrong guess repeated does
not reach the backend again.

The table is one fixed block of anonymous shared memory, like saslauthd's mmap
but never on disk: created before the daemon forks its worker processes, it is
shared by all of them, and its size does not grow with use (64 bytes an entry,
100,000 entries in 6.4 MB, no per-entry Python objects).  It is set-associative:
a key can live in one of ``WAYS`` slots of its set, and a full set evicts its
least recently used entry.  Writers take no lock: every entry carries a check
(CRC-32) over what it answers with, so an entry torn by two processes writing at once
reads as empty, never as a wrong answer.

Entries are looked up by the exact (login, realm, service), but flushed by the user's
account: each entry is tagged with its login folded (case, blanks, NFKC) and cut at
``@``, so flushing ``alice`` also flushes ``Alice``, `` alice`` and ``alice@realm``.

A flush must not be undone by answers already on their way: every flush advances a
*generation* (shared by all processes), and an answer is remembered only if no flush
happened since its request came in (``remember_*(..., generation)``).
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import struct
import time
import zlib
from collections.abc import Callable

from .backends.base import fold

WAYS = 8
# tag, password fingerprint, expiry, login digest, check (over the 40 bytes before it),
# last use, 8 spare bytes
_ENTRY = struct.Struct("<8s16sd8sQd8x")
SIZE = _ENTRY.size  # 64
_HEADER = struct.Struct("<8s16sd8s")  # what the check covers
_CHECKED = struct.Struct("<8s16sd8sQ")  # what a lookup reads: all but the last use
_HEAD = _HEADER.size  # 40
_LOGIN_AT = 32  # offset of the login digest in an entry
_LAST_USED = struct.Struct("<d")
_TAG = struct.Struct("<q")
_GENERATION = struct.Struct("<Q")
_GOOD, _BAD = b"+", b"-"
_STRIDE = WAYS * SIZE


class CredentialCache:
    def __init__(self, max_entries: int, ttl: float, negative_ttl: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._clock = clock  # time.monotonic is the same clock in every process
        self._secret = os.urandom(32)
        # keyed states, copied per use: the key block is hashed once, here
        self._fp_mac = hashlib.blake2b(key=self._secret, digest_size=16, person=b"password")
        self.sets = max(1, -(-max_entries // WAYS))
        self.capacity = self.sets * WAYS
        self._mm = mmap.mmap(-1, self.capacity * SIZE)  # anonymous, MAP_SHARED
        self._gen = mmap.mmap(-1, _GENERATION.size)  # flushes so far, shared likewise
        self.hits = self.misses = 0

    @property
    def generation(self) -> int:
        """Take it when a request comes in; pass it to ``remember_*`` with the answer."""
        return _GENERATION.unpack_from(self._gen)[0]

    @staticmethod
    def key(login: str, realm: str, service: str) -> str:
        return f"{login}\0{realm}\0{service}"

    def fingerprint(self, key: str, password: bytes) -> bytes:
        return self._fingerprint(_raw(key), password)

    def _fingerprint(self, key: bytes, password: bytes) -> bytes:
        # The key is mixed in so two users with one password get different fingerprints.
        h = self._fp_mac.copy()
        h.update(key + b"\0" + password)
        return h.digest()

    # -- internals ------------------------------------------------------------------

    def _mac(self, data: bytes, size: int) -> bytes:
        return hashlib.blake2b(data, key=self._secret, digest_size=size).digest()

    def _login_digest(self, login: str) -> bytes:
        # Flushes are by account, whatever the spelling: "alice" also covers "ALICE",
        # " alice" and "alice@realm" (the -r form), which some backend may take for alice.
        tag = fold(login).split("@", 1)[0]
        return self._mac(b"L" + tag.encode("utf-8", "surrogateescape"), 8)

    def _find(self, h: int) -> int:
        """Offset of the slot tagged ``h`` (``hash`` of kind and key) in its set, or -1."""
        start = (h % self.sets) * _STRIDE
        end = start + _STRIDE
        tag = _TAG.pack(h)
        pos = self._mm.find(tag, start, end)
        while pos != -1 and (pos - start) % SIZE:
            pos = self._mm.find(tag, pos + 1, end)  # a match inside another field
        return pos

    def _live(self, off: int, now: float) -> bytes | None:
        """The fingerprint of the entry at ``off`` if it is unexpired and as one writer
        left it (read once: what is checked is what is used), else None."""
        entry = self._mm[off:off + _HEAD + 8]
        _, fp, expires, _, check = _CHECKED.unpack(entry)
        if expires <= now or zlib.crc32(entry[:_HEAD]) != check:
            return None  # expired, empty, or torn by a concurrent write
        return fp

    def _at(self, kind: bytes, raw: bytes, fp: bytes | None = None,
            password: bytes = b"") -> int:
        """Where ``raw`` (a key's bytes) holds ``fp`` (or ``password``'s fingerprint,
        computed only when the key is there), or -1."""
        off = self._find(hash(kind + raw))
        if off < 0:
            return -1
        stored = self._live(off, self._clock())
        if stored is None or not hmac.compare_digest(
                stored, fp or self._fingerprint(raw, password)):
            return -1
        return off

    def _get(self, kind: bytes, key: str, fp: bytes) -> bool:
        off = self._at(kind, _raw(key), fp)
        if off < 0:
            return False
        self.touch(off)
        return True

    def _put(self, kind: bytes, key: str, fp: bytes, ttl: float) -> None:
        h = hash(kind + _raw(key))
        now = self._clock()
        off = self._find(h)
        if off < 0:
            off = self._victim(h, now)
        ld = self._login_digest(key.split("\0", 1)[0])
        fields = (_TAG.pack(h), fp, now + ttl, ld)
        _ENTRY.pack_into(self._mm, off, *fields, zlib.crc32(_HEADER.pack(*fields)), now)

    def _victim(self, h: int, now: float) -> int:
        """An empty or expired slot of the set, else its least recently used one."""
        start = (h % self.sets) * _STRIDE
        best, best_used = start, float("inf")
        for off in range(start, start + _STRIDE, SIZE):
            if self._live(off, now) is None:
                return off
            used = _LAST_USED.unpack_from(self._mm, off + _HEAD + 8)[0]
            if used < best_used:
                best, best_used = off, used
        return best

    def _delete(self, kind: bytes, key: str) -> None:
        off = self._find(hash(kind + _raw(key)))
        if off >= 0:
            self._mm[off:off + SIZE] = bytes(SIZE)

    # -- API --------------------------------------------------------------------------

    def lookup(self, key: str, fp: bytes) -> bool | None:
        """True: this password was good; False: it just failed; None: ask the backend."""
        if self._get(_GOOD, key, fp):
            self.hits += 1
            return True
        if self.negative_ttl and self._get(_BAD, key, fp):
            self.hits += 1
            return False
        self.misses += 1
        return None

    def good_at(self, key: bytes, password: bytes) -> int:
        """Where ``key``'s cached good password is when it is ``password``, else -1: the
        fast lane's question, with the key as the bytes it read (not counted here, no
        fingerprint computed when the key is not cached).  ``touch`` it once answered."""
        return self._at(_GOOD, key, password=password)

    def touch(self, off: int) -> None:
        """The entry at ``off`` was used now (a full set evicts its least recently used)."""
        _LAST_USED.pack_into(self._mm, off + _HEAD + 8, self._clock())

    def remember_good(self, key: str, fp: bytes, generation: int | None = None) -> None:
        if self.negative_ttl:
            self._delete(_BAD, key)
        self._remember(_GOOD, key, fp, self.ttl, generation)

    def remember_bad(self, key: str, fp: bytes, generation: int | None = None) -> None:
        if self.negative_ttl:
            self._remember(_BAD, key, fp, self.negative_ttl, generation)

    def _remember(self, kind: bytes, key: str, fp: bytes, ttl: float,
                  generation: int | None) -> None:
        """Store an answer unless a flush came after its request (``generation``): checked
        before the write and again after it, since a flush may run in another thread or
        process while we write (it advances the generation before it clears)."""
        if generation is not None and generation != self.generation:
            return
        self._put(kind, key, fp, ttl)
        if generation is not None and generation != self.generation:
            self._delete(kind, key)

    def flush(self, login: str | None = None, realm: str | None = None) -> int:
        """Forget every entry, or every entry of one user (any realm and service).

        ``realm`` is accepted for the admin command's sake; flushing by user alone
        errs on the safe side (a user's entries in other realms go too).  Answers to
        requests that came in before the flush will not be remembered.
        """
        _GENERATION.pack_into(self._gen, 0, self.generation + 1)
        if login is None:
            n = len(self)
            self._mm[:] = bytes(len(self._mm))
            return n
        ld = self._login_digest(login)
        n = 0
        pos = self._mm.find(ld)
        while pos != -1:
            off = pos - _LOGIN_AT
            if off >= 0 and off % SIZE == 0:
                self._mm[off:off + SIZE] = bytes(SIZE)
                n += 1
            pos = self._mm.find(ld, pos + 1)
        return n

    def __bool__(self) -> bool:
        return True  # a cache object is there even when empty (no len() scan in an `if`)

    def __len__(self) -> int:
        """Entries (positive and negative) that are whole and unexpired: a full scan."""
        now = self._clock()
        return sum(self._live(off, now) is not None for off in range(0, len(self._mm), SIZE))

    def close(self) -> None:
        self._mm.close()
        self._gen.close()


def _raw(key: str | bytes) -> bytes:
    """A key as the bytes it is hashed and tagged by (the fast lane has them already)."""
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
