"""GDBM sasldb files (Fedora/RHEL and newer cyrus-sasl builds), through ``libgdbm.so.6``.

Python's own ``dbm.gnu`` is missing from many interpreters (pyenv, python.org builds,
Debian without ``python3-gdbm``), so the few gdbm calls needed are made through ctypes
against the system library (Debian package ``libgdbm6``), one code path everywhere.
A reader opens with ``GDBM_READER``, which takes gdbm's shared lock: it waits out a
writer (``saslpasswd2``) instead of reading a half-written file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import time
from collections.abc import Iterator
from types import SimpleNamespace

from .clib import load_library

GDBM_READER = 0
GDBM_WRITER = 1
GDBM_NEWDB = 3
GDBM_REPLACE = 1
LIBRARIES = ("libgdbm.so.6", "libgdbm.so")
BUSY_RETRIES = 50  # x 20 ms: how long a reader waits for a writer's lock


class GdbmError(Exception):
    pass


class _Datum(ctypes.Structure):
    _fields_ = [("dptr", ctypes.c_void_p), ("dsize", ctypes.c_int)]


def _datum(value: bytes) -> tuple[_Datum, object]:
    buf = ctypes.create_string_buffer(value, len(value))
    return _Datum(ctypes.cast(buf, ctypes.c_void_p), len(value)), buf


@functools.cache
def library() -> SimpleNamespace:
    """libgdbm (and libc's ``free``), loaded once; GdbmError if it is missing."""
    vp, i, d = ctypes.c_void_p, ctypes.c_int, _Datum
    api = load_library("gdbm", LIBRARIES, {
        "open": ("gdbm_open", [ctypes.c_char_p, i, i, i, vp], vp),
        "close": ("gdbm_close", [vp], i),
        "fetch": ("gdbm_fetch", [vp, d], d),
        "store": ("gdbm_store", [vp, d, d, i], i),
        "delete": ("gdbm_delete", [vp, d], i),
        "firstkey": ("gdbm_firstkey", [vp], d),
        "nextkey": ("gdbm_nextkey", [vp, d], d),
        "errno_location": ("gdbm_errno_location", [], ctypes.POINTER(i)),
        "strerror": ("gdbm_strerror", [i], ctypes.c_char_p),
    }, GdbmError("GDBM (libgdbm.so.6) is not installed: apt-get install libgdbm6"))
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    api.free = libc.free
    api.free.argtypes, api.free.restype = [vp], None
    return api


def _take(api: SimpleNamespace, d: _Datum) -> bytes | None:
    """Copy a datum gdbm malloc'ed and free it."""
    if not d.dptr:
        return None
    try:
        return ctypes.string_at(d.dptr, d.dsize)
    finally:
        api.free(d.dptr)


class GdbmFile:
    def __init__(self, path: str, write: bool = False, create: bool = False, mode: int = 0o600):
        api = library()
        self.path = path
        if not create and not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        flags = GDBM_NEWDB if create else (GDBM_WRITER if write else GDBM_READER)
        for _ in range(BUSY_RETRIES):
            self._db = api.open(path.encode(), 0, flags, mode, None)
            if self._db:
                return
            code = api.errno_location()[0]
            err = (api.strerror(code) or b"?").decode(errors="replace")
            if "lock" not in err.lower() and "reader" not in err.lower():
                break
            time.sleep(0.02)  # a writer holds the lock: wait for it, never read half a write
        raise GdbmError(f"cannot open GDBM file {path}: {err}")

    def get(self, key: bytes) -> bytes | None:
        api = library()
        k, _kb = _datum(key)
        return _take(api, api.fetch(self._db, k))

    def put(self, key: bytes, value: bytes) -> None:
        api = library()
        k, _kb = _datum(key)
        v, _vb = _datum(value)
        if api.store(self._db, k, v, GDBM_REPLACE) != 0:
            raise GdbmError(f"write error in {self.path}")

    def delete(self, key: bytes) -> bool:
        api = library()
        k, _kb = _datum(key)
        return api.delete(self._db, k) == 0

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        api = library()
        key = _take(api, api.firstkey(self._db))
        while key is not None:
            value = self.get(key)
            if value is not None:
                yield key, value
            k, _kb = _datum(key)
            key = _take(api, api.nextkey(self._db, k))

    def close(self) -> None:
        if self._db:
            library().close(self._db)
            self._db = None

    def __enter__(self) -> GdbmFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
