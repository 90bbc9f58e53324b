"""Find copies of a secret in this process's memory (for tests that a secret is not kept).

Run the code under test in a child process started with ``scan_env()``: every allocation
goes through glibc malloc (``PYTHONMALLOC=malloc``), the per-thread cache is off and freed
memory is overwritten (``MALLOC_PERTURB_``), so a copy that is still found belongs to
memory that something keeps alive.  The secret is looked for as two halves, so the
needle itself (two separate objects) never counts as a copy.
"""

from __future__ import annotations

import os
import re


def scan_env() -> dict[str, str]:
    return {**os.environ, "PYTHONMALLOC": "malloc", "MALLOC_PERTURB_": "165",
            "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}


def copies(first: bytes, second: bytes) -> list[str]:
    """Where ``first + second`` occurs in this process's writable memory (region names)."""
    found: list[str] = []
    chunk = bytearray(1 << 20)
    view = memoryview(chunk)
    with open("/proc/self/maps") as f:
        regions = [line.split() for line in f]
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        for fields in regions:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] == "[vvar]"):
                continue
            name = fields[5] if len(fields) > 5 else "anonymous"
            pos = start
            while pos < end:
                size = min(len(chunk), end - pos)
                try:
                    mem.seek(pos)
                    got = mem.readinto(view[:size]) or 0
                except OSError:
                    break
                for m in re.finditer(re.escape(first), view[:got]):
                    i = m.start()
                    if bytes(view[i + len(first):i + len(first) + len(second)]) == second:
                        found.append(f"{name}+{pos + i - start:#x}")
                # overlap so a copy across two chunks is not missed
                pos += max(1, got - len(first) - len(second)) if got else size
    return found
