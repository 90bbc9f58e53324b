"""LMDB sasldb files (cyrus-sasl's current default): one file opened with MDB_NOSUBDIR,
the main (unnamed) database, and a ``PATH-lock`` file beside it, as ``db_lmdb.c`` does.

The ``lmdb`` package (py-lmdb) ships wheels with LMDB bundled and is maintained.  LMDB
readers see a committed snapshot, so neither our writes nor saslpasswd2's can be read
half done; writes are done in place in one transaction (never by rename: a reader's
environment maps the file it opened).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import lmdb

MIN_MAP = 1 << 20  # cyrus-sasl's default sasldb_mapsize (1 MiB)


class LmdbError(Exception):
    pass


def _map_size(path: str) -> int:
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    return max(MIN_MAP, 2 * size + MIN_MAP)


_envs: dict[str, tuple[int, lmdb.Environment]] = {}
_envs_lock = threading.Lock()


def environment(path: str, create: bool = False, mode: int = 0o640) -> lmdb.Environment:
    """One Environment per file per process (LMDB forbids opening a file twice in a
    process; an Environment is safe to share between threads).  Reopened if the file
    was replaced."""
    key = os.path.realpath(path)
    with _envs_lock:
        if not create and not os.path.exists(key):
            raise FileNotFoundError(2, "No such file or directory", path)
        inode = os.stat(key).st_ino if os.path.exists(key) else -1
        cached = _envs.get(key)
        if cached is not None and cached[0] == inode:
            return cached[1]
        writable = os.access(key if inode != -1 else os.path.dirname(key), os.W_OK)
        try:
            env = lmdb.open(key, subdir=False, readonly=not writable, create=create,
                            lock=True, map_size=_map_size(key), mode=mode, max_dbs=0)
        except lmdb.Error as exc:
            raise LmdbError(f"cannot open LMDB file {path}: {exc}") from exc
        _envs[key] = (os.stat(key).st_ino, env)
        return env


class LmdbFile:
    def __init__(self, path: str, write: bool = False, create: bool = False, mode: int = 0o600):
        self.path = path
        self._env = environment(path, create=create, mode=mode)
        if (write or create) and self._env.flags().get("readonly"):
            raise LmdbError(f"{path} is not writable by uid {os.getuid()}")

    def get(self, key: bytes) -> bytes | None:
        with self._env.begin() as txn:
            value = txn.get(key)
            return bytes(value) if value is not None else None

    def _write(self, fn) -> bool:  # noqa: ANN001
        for _ in range(8):
            try:
                with self._env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
        raise LmdbError(f"{self.path}: the map cannot grow")

    def put(self, key: bytes, value: bytes) -> None:
        self._write(lambda txn: txn.put(key, value))

    def delete(self, key: bytes) -> bool:
        return self._write(lambda txn: txn.delete(key))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        with self._env.begin() as txn:
            rows = [(bytes(k), bytes(v)) for k, v in txn.cursor()]
        yield from rows

    def close(self) -> None:
        pass  # the Environment is shared; LMDB needs no close between transactions

    def __enter__(self) -> LmdbFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
