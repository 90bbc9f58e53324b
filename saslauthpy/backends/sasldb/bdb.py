"""Berkeley DB (DB_HASH) sasldb files, as Debian's saslpasswd2 writes them (libdb 5.3).

ctypes against ``libdb-5.3.so`` (package ``libdb5.3``, already pulled in by sasl2-bin and
libsasl2-modules-db): no compiler, no ``libdb-dev``, no unmaintained binding.  libdb 5.3
exports the functions that back the ``DB``/``DBC`` method table (``__db_open_pp``,
``__db_get_pp`` ...), so they are called directly with the handle as first argument and
no struct layout beyond ``DBT`` (stable since Berkeley DB 4.x) is needed.

Every operation opens the file, does its work and closes it, as cyrus-sasl itself does:
a handle never outlives a call, so a file replaced by rename is picked up at once and no
handle is shared between threads (ctypes releases the GIL during each libdb call).
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterator
from types import SimpleNamespace

from .clib import load_library

DB_HASH = 2
DB_CREATE = 0x1
DB_EXCL = 0x4
DB_RDONLY = 0x400
DB_NEXT = 16
DB_NOTFOUND = -30988
LIBRARIES = ("libdb-5.3.so", "libdb5.3.so", "libdb-5.so", "libdb.so")


class BerkeleyError(Exception):
    pass


class _DBT(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_uint32),
        ("ulen", ctypes.c_uint32),
        ("dlen", ctypes.c_uint32),
        ("doff", ctypes.c_uint32),
        ("app_data", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
    ]


def _dbt(value: bytes | None = None) -> tuple[_DBT, object]:
    """A DBT pointing at ``value`` (and the buffer that must stay alive with it)."""
    d = _DBT()
    if value is None:
        return d, None
    buf = ctypes.create_string_buffer(value, len(value))
    d.data = ctypes.cast(buf, ctypes.c_void_p)
    d.size = len(value)
    return d, buf


def _bytes(d: _DBT) -> bytes:
    return ctypes.string_at(d.data, d.size) if d.size else b""


@functools.cache
def library() -> SimpleNamespace:
    """libdb 5.3, loaded once; BerkeleyError naming the package if it is missing."""
    vp, u32, i = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    p_dbt = ctypes.POINTER(_DBT)
    return load_library("db-5.3", LIBRARIES, {
        "create": ("db_create", [ctypes.POINTER(vp), vp, u32], i),
        "open": ("__db_open_pp", [vp, vp, ctypes.c_char_p, ctypes.c_char_p, i, u32, i], i),
        "get": ("__db_get_pp", [vp, vp, p_dbt, p_dbt, u32], i),
        "put": ("__db_put_pp", [vp, vp, p_dbt, p_dbt, u32], i),
        "delete": ("__db_del_pp", [vp, vp, p_dbt, u32], i),
        "cursor": ("__db_cursor_pp", [vp, vp, ctypes.POINTER(vp), u32], i),
        "cursor_get": ("__dbc_get_pp", [vp, p_dbt, p_dbt, u32], i),
        "cursor_close": ("__dbc_close_pp", [vp], i),
        "close": ("__db_close_pp", [vp, u32], i),
        "strerror": ("db_strerror", [i], ctypes.c_char_p),
    }, BerkeleyError("Berkeley DB 5.3 (libdb-5.3.so) is not installed: "
                     "apt-get install libdb5.3"))


def _error(what: str, path: str, rc: int) -> BerkeleyError:
    msg = library().strerror(rc) or b"?"
    return BerkeleyError(f"{what} {path}: {msg.decode(errors='replace')}")


class BerkeleyFile:
    """One open DB_HASH file; use as a context manager."""

    def __init__(self, path: str, write: bool = False, create: bool = False, mode: int = 0o600):
        lib = library()
        self.path = path
        self._db = ctypes.c_void_p()
        rc = lib.create(ctypes.byref(self._db), None, 0)
        if rc:
            raise _error("db_create for", path, rc)
        flags = (DB_CREATE | DB_EXCL) if create else (0 if write else DB_RDONLY)
        rc = lib.open(self._db, None, path.encode(), None, DB_HASH, flags, mode)
        if rc:
            lib.close(self._db, 0)  # a DB handle must be closed even if open failed
            self._db = ctypes.c_void_p()
            if rc > 0:
                raise OSError(rc, os.strerror(rc), path)
            raise _error("cannot open Berkeley DB", path, rc)

    def get(self, key: bytes) -> bytes | None:
        k, _kb = _dbt(key)
        d = _DBT()
        rc = library().get(self._db, None, ctypes.byref(k), ctypes.byref(d), 0)
        if rc == DB_NOTFOUND:
            return None
        if rc:
            raise _error("read error in", self.path, rc)
        return _bytes(d)

    def put(self, key: bytes, value: bytes) -> None:
        k, _kb = _dbt(key)
        d, _db = _dbt(value)
        rc = library().put(self._db, None, ctypes.byref(k), ctypes.byref(d), 0)
        if rc:
            raise _error("write error in", self.path, rc)

    def delete(self, key: bytes) -> bool:
        k, _kb = _dbt(key)
        rc = library().delete(self._db, None, ctypes.byref(k), 0)
        if rc == DB_NOTFOUND:
            return False
        if rc:
            raise _error("delete error in", self.path, rc)
        return True

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        lib = library()
        cur = ctypes.c_void_p()
        rc = lib.cursor(self._db, None, ctypes.byref(cur), 0)
        if rc:
            raise _error("cursor error in", self.path, rc)
        try:
            while True:
                k, d = _DBT(), _DBT()
                rc = lib.cursor_get(cur, ctypes.byref(k), ctypes.byref(d), DB_NEXT)
                if rc == DB_NOTFOUND:
                    return
                if rc:
                    raise _error("cursor error in", self.path, rc)
                yield _bytes(k), _bytes(d)
        finally:
            lib.cursor_close(cur)

    def close(self) -> None:
        if self._db:
            rc = library().close(self._db, 0)
            self._db = ctypes.c_void_p()
            if rc:
                raise _error("close (flush) failed for", self.path, rc)

    def __enter__(self) -> BerkeleyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
