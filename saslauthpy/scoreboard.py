"""The scoreboard: one slot of shared memory per worker process, for its numbers.

Each worker writes its own slot now and then (``Server.publish``: every second, and
right before it answers a scrape); any process reads every slot.  So the supervisor's
``status`` and a scrape answered by whichever worker both see the whole daemon, with no
message between processes and nothing per request.  A worker that replaces a dead one
takes over its slot and goes on from the counts it finds there, so counters never go
down.

Like the credential cache, the block is anonymous shared memory made before the fork.
A slot holds two buffers: the writer fills the idle one, then flips the generation
number; a reader checks each buffer's CRC and the generation, and tries again if a
write overtook it.  A snapshot is a ``marshal``-ed dict (plain numbers, strings,
tuples): written and read by this daemon's own processes only.
"""

from __future__ import annotations

import logging
import marshal
import mmap
import struct
import zlib

log = logging.getLogger("saslauthpy")

BUFFER = 256 * 1024  # bytes per buffer; a snapshot with every label set is far smaller
_GEN = struct.Struct("<Q")
_HEAD = struct.Struct("<II")  # payload length, CRC32 of the payload
SLOT = _GEN.size + 2 * (_HEAD.size + BUFFER)


class Scoreboard:
    def __init__(self, slots: int):
        self.slots = slots
        self._mm = mmap.mmap(-1, slots * SLOT)  # anonymous, MAP_SHARED
        self._too_big_logged = False

    def _buffer(self, slot: int, which: int) -> int:
        return slot * SLOT + _GEN.size + which * (_HEAD.size + BUFFER)

    def publish(self, slot: int, snapshot: dict) -> None:
        data = marshal.dumps(snapshot)
        if len(data) > BUFFER:
            if not self._too_big_logged:
                self._too_big_logged = True
                log.error("scoreboard: a snapshot of %d bytes does not fit (%d); "
                          "lower [metrics] max_services", len(data), BUFFER)
            return
        (gen,) = _GEN.unpack_from(self._mm, slot * SLOT)
        off = self._buffer(slot, (gen + 1) % 2)
        self._mm[off + _HEAD.size:off + _HEAD.size + len(data)] = data
        _HEAD.pack_into(self._mm, off, len(data), zlib.crc32(data))
        _GEN.pack_into(self._mm, slot * SLOT, gen + 1)

    def read(self, slot: int) -> dict | None:
        """The slot's last whole snapshot, or None if it never had one."""
        for _ in range(10):
            (gen,) = _GEN.unpack_from(self._mm, slot * SLOT)
            if gen == 0:
                return None
            off = self._buffer(slot, gen % 2)
            size, crc = _HEAD.unpack_from(self._mm, off)
            data = self._mm[off + _HEAD.size:off + _HEAD.size + min(size, BUFFER)]
            if zlib.crc32(data) == crc and _GEN.unpack_from(self._mm, slot * SLOT)[0] == gen:
                try:
                    return marshal.loads(data)
                except (EOFError, ValueError, TypeError):
                    pass
        return None  # written to faster than it can be read: skip it this time

    def read_all(self) -> list[dict]:
        return [s for s in map(self.read, range(self.slots)) if s is not None]
