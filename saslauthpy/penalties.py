"""The throttle's penalty table, shared by every worker process of the daemon.

Made once before the fork (like the credential cache), so a guesser spread over the
worker processes raises one penalty, not one per process.  It lives in a memfd (memory,
never on disk) mapped by every process; writers take a lock on that memfd
(``lockf``), which the kernel releases if a process dies holding it, and a thread lock
first (``lockf`` locks belong to a process, and the fast lane's thread writes beside the
event loop); readers take no lock: every entry carries a keyed check, so an entry caught
half-written is read again under the lock.

Fixed size, set-associative: a key lives in one of ``WAYS`` slots of a set picked by a
keyed hash (an attacker cannot aim keys at a victim's set).  A new key in a full set
takes the slot whose penalty ends first, that is the lowest level (the oldest of equals):
a flood of distinct junk logins, each at level 1, pushes out only other junk, never the
keys that carry the highest penalties.

``active(now)`` answers "does any key have a penalty?" from one number (the latest time
any penalty ends), so the common case costs the fast lane one read.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

WAYS = 8
FINGERPRINTS = 4  # distinct wrong passwords remembered per key
FP_BYTES = 8
# key digest, last failure (clock seconds), level, pad, fingerprints, check
_ENTRY = struct.Struct(f"<16sdH6x{FINGERPRINTS * FP_BYTES}s8s")
SIZE = _ENTRY.size  # 72
_HORIZON = struct.Struct("<d")  # the latest time any penalty ends
HEADER = 64


@dataclass(slots=True)
class Entry:
    level: int
    last: float  # clock time of the last counted failure
    fps: list[str]  # recent wrong-password fingerprints (hex of FP_BYTES bytes)


class PenaltyTable:
    def __init__(self, max_keys: int):
        self.sets = max(1, max_keys // WAYS)
        self.capacity = self.sets * WAYS
        self._secret = os.urandom(32)
        self._fd = os.memfd_create("saslauthpy-penalties", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, HEADER + self.capacity * SIZE)
        self._mm = mmap.mmap(self._fd, HEADER + self.capacity * SIZE)
        self._threads = threading.Lock()

    # -- internals --------------------------------------------------------------------

    def _digest(self, key: str) -> bytes:
        return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), key=self._secret,
                               digest_size=16).digest()

    def _check(self, kd: bytes, last: float, level: int, fps: bytes) -> bytes:
        return hashlib.blake2b(kd + struct.pack("<dH", last, level) + fps, key=self._secret,
                               digest_size=8).digest()

    def _set(self, kd: bytes) -> tuple[int, int]:
        start = HEADER + (int.from_bytes(kd[:8], "little") % self.sets) * WAYS * SIZE
        return start, start + WAYS * SIZE

    def _find(self, kd: bytes) -> int:
        start, end = self._set(kd)
        pos = self._mm.find(kd, start, end)
        while pos != -1 and (pos - start) % SIZE:
            pos = self._mm.find(kd, pos + 1, end)  # a match inside another field
        return pos

    def _read(self, off: int) -> tuple[bytes, float, int, bytes] | None:
        kd, last, level, fps, check = _ENTRY.unpack_from(self._mm, off)
        if check != self._check(kd, last, level, fps):
            return None
        return kd, last, level, fps

    def _lock(self, how: int) -> None:
        if how == fcntl.LOCK_UN:
            fcntl.lockf(self._fd, how, 1, 0)
            self._threads.release()
            return
        self._threads.acquire()
        try:
            fcntl.lockf(self._fd, how, 1, 0)
        except BaseException:
            self._threads.release()
            raise

    def _ends(self, off: int, decay: float) -> float:
        """When the entry at ``off`` stops penalising (-inf for an empty or torn slot)."""
        got = self._read(off)
        if got is None or got[2] <= 0:
            return float("-inf")
        return got[1] + got[2] * decay

    # -- API ------------------------------------------------------------------------------

    def active(self, now: float) -> bool:
        """False when no key can have a penalty at ``now`` (the common case)."""
        return _HORIZON.unpack_from(self._mm, 0)[0] > now

    def _entry(self, off: int, kd: bytes) -> Entry | None:
        got = self._read(off)
        if got is None or got[0] != kd:
            return None
        _, last, level, fps = got
        return Entry(level, last, [fps[i:i + FP_BYTES].hex()
                                   for i in range(0, len(fps), FP_BYTES)
                                   if any(fps[i:i + FP_BYTES])])

    def get(self, key: str) -> Entry | None:
        kd = self._digest(key)
        off = self._find(kd)
        if off < 0:
            return None
        entry = self._entry(off, kd)
        if entry is None and self._read(off) is None:
            self._lock(fcntl.LOCK_EX)  # caught half-written: read again once written
            try:
                entry = self._entry(off, kd)
            finally:
                self._lock(fcntl.LOCK_UN)
        return entry

    def update(self, key: str, change: Callable[[Entry | None], Entry], now: float,
               decay: float) -> None:
        """Replace ``key``'s entry with ``change(current entry)``, under the lock."""
        kd = self._digest(key)
        self._lock(fcntl.LOCK_EX)
        try:
            off = self._find(kd)
            new = change(self._entry(off, kd) if off >= 0 else None)
            if off < 0:
                off = self._victim(kd, now, decay)
            fps = b"".join(bytes.fromhex(f) for f in new.fps[-FINGERPRINTS:])
            fps = fps.ljust(FINGERPRINTS * FP_BYTES, b"\0")
            _ENTRY.pack_into(self._mm, off, kd, new.last, new.level, fps,
                             self._check(kd, new.last, new.level, fps))
            ends = new.last + new.level * decay
            if ends > _HORIZON.unpack_from(self._mm, 0)[0]:
                _HORIZON.pack_into(self._mm, 0, ends)
        finally:
            self._lock(fcntl.LOCK_UN)

    def _victim(self, kd: bytes, now: float, decay: float) -> int:
        """The slot of ``kd``'s set whose penalty ends first (an empty one ends at -inf)."""
        start, end = self._set(kd)
        return min(range(start, end, SIZE), key=lambda off: self._ends(off, decay))

    def clear(self, key: str) -> None:
        kd = self._digest(key)
        if self._find(kd) < 0:
            return  # the common case (a success with no penalty): no lock taken
        self._lock(fcntl.LOCK_EX)
        try:
            off = self._find(kd)
            if off >= 0:
                self._mm[off:off + SIZE] = bytes(SIZE)
        finally:
            self._lock(fcntl.LOCK_UN)

    def count(self, now: float, decay: float) -> int:
        """Keys that still have a penalty at ``now``: a full scan."""
        return sum(1 for off in range(HEADER, HEADER + self.capacity * SIZE, SIZE)
                   if self._ends(off, decay) > now)

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)
