"""Credential cache: (login, realm, service) -> keyed hash of the last good password.

saslauthd keeps an unsalted MD5 of the password in a file.  We keep an
HMAC-SHA256 (truncated to 16 bytes) under a random key made at start and held
only in memory, so neither the cache nor a memory dump of one entry gives a
password or a reusable digest.  Entries live ``ttl`` seconds (hits do not
extend them, as in saslauthd), the table is bounded with LRU eviction, and an
optional negative TTL remembers the last failed password of a key so that the
same wrong guess repeated does not reach the backend again.
"""

from __future__ import annotations

import hmac
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable

_ENTRY = struct.Struct("<16sd")  # fingerprint, expiry (monotonic seconds)


class CredentialCache:
    def __init__(self, max_entries: int, ttl: float, negative_ttl: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._secret = os.urandom(32)
        self._good: OrderedDict[str, bytes] = OrderedDict()
        self._bad: OrderedDict[str, bytes] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(login: str, realm: str, service: str) -> str:
        return f"{login}\0{realm}\0{service}"

    def fingerprint(self, key: str, password: bytes) -> bytes:
        # The key is mixed in so two users with one password get different fingerprints.
        msg = key.encode("utf-8", "surrogateescape") + b"\0" + password
        return hmac.digest(self._secret, msg, "sha256")[:16]

    def lookup(self, key: str, fp: bytes) -> bool | None:
        """True: this password was good; False: it just failed; None: ask the backend."""
        now = self._clock()
        entry = self._good.get(key)
        if entry is not None:
            good_fp, expires = _ENTRY.unpack(entry)
            if expires <= now:
                del self._good[key]
            elif hmac.compare_digest(good_fp, fp):
                self._good.move_to_end(key)
                self.hits += 1
                return True
        if self.negative_ttl:
            entry = self._bad.get(key)
            if entry is not None:
                bad_fp, expires = _ENTRY.unpack(entry)
                if expires <= now:
                    del self._bad[key]
                elif hmac.compare_digest(bad_fp, fp):
                    self.hits += 1
                    return False
        self.misses += 1
        return None

    def remember_good(self, key: str, fp: bytes) -> None:
        self._store(self._good, key, fp, self.ttl, self.max_entries)
        self._bad.pop(key, None)

    def remember_bad(self, key: str, fp: bytes) -> None:
        if self.negative_ttl:
            self._store(self._bad, key, fp, self.negative_ttl, max(1, self.max_entries // 4))

    def _store(self, table: OrderedDict[str, bytes], key: str, fp: bytes, ttl: float,
               limit: int) -> None:
        table[key] = _ENTRY.pack(fp, self._clock() + ttl)
        table.move_to_end(key)
        while len(table) > limit:
            table.popitem(last=False)

    def flush(self, login: str | None = None, realm: str | None = None) -> int:
        """Forget every entry, or those of one login (any service; any realm unless given).

        A login joined with its realm by ``-r`` (``alice@example.org``) is matched too.
        """
        if login is None:
            n = len(self._good) + len(self._bad)
            self._good.clear()
            self._bad.clear()
            return n
        n = 0
        for table in (self._good, self._bad):
            for key in [k for k in table if _matches(k, login, realm)]:
                del table[key]
                n += 1
        return n

    def __len__(self) -> int:
        return len(self._good)


def _matches(key: str, login: str, realm: str | None) -> bool:
    k_login, k_realm, _ = key.split("\0", 2)
    if realm is None:
        return k_login == login or k_login.startswith(login + "@")
    return (k_login == login and k_realm == realm) or k_login == f"{login}@{realm}"
