"""Which database a sasldb file is, from its first bytes, and one interface over the three.

- Berkeley DB hash (Debian/Ubuntu ``saslpasswd2``): metadata magic 0x061561 at offset 12.
- GDBM (Fedora/RHEL builds): magic 0x13579ac? / 0x13579ad? in the first four bytes.
- LMDB (cyrus-sasl after 2.1.28): meta magic 0xBEEFC0DE at offset 16.
Each in either byte order (a file made on another architecture).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

FORMATS = ("berkeley", "gdbm", "lmdb")
BDB_HASH_MAGIC = 0x061561
BDB_BTREE_MAGIC = 0x053162
LMDB_MAGIC = 0xBEEFC0DE
GDBM_MAGICS = {0x13579ACE, 0x13579ACD, 0x13579ACF, 0x13579AD0, 0x13579AD1}
PROPERTY = b"userPassword"


class SasldbError(Exception):
    """The file cannot be used; the message names the file, the cause and the fix."""


class DbFile(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> bool: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> DbFile: ...
    def __exit__(self, *exc: object) -> None: ...


def _u32(head: bytes, offset: int) -> set[int]:
    chunk = head[offset:offset + 4]
    if len(chunk) < 4:
        return set()
    return {int.from_bytes(chunk, "little"), int.from_bytes(chunk, "big")}


def format_of_bytes(head: bytes) -> str | None:
    if _u32(head, 16) & {LMDB_MAGIC}:
        return "lmdb"
    if _u32(head, 0) & GDBM_MAGICS:
        return "gdbm"
    if _u32(head, 12) & {BDB_HASH_MAGIC}:
        return "berkeley"
    return None


def detect(path: str) -> str:
    """The format of ``path``; raises FileNotFoundError, PermissionError or SasldbError."""
    with open(path, "rb") as f:
        head = f.read(64)
    fmt = format_of_bytes(head)
    if fmt:
        return fmt
    if _u32(head, 12) & {BDB_BTREE_MAGIC}:
        raise SasldbError(f"sasldb {path} is a Berkeley DB btree; cyrus-sasl writes hash files: "
                          f"convert it with db_dump | db_load -t hash")
    raise SasldbError(f"sasldb {path} is not a Berkeley DB, GDBM or LMDB file "
                      f"(made by saslpasswd2?): check the path")


def open_db(path: str, fmt: str, write: bool = False, create: bool = False,
            mode: int = 0o640) -> DbFile:
    if fmt == "berkeley":
        from .bdb import BerkeleyFile

        return BerkeleyFile(path, write=write, create=create, mode=mode)
    if fmt == "gdbm":
        from .gdbm import GdbmFile

        return GdbmFile(path, write=write, create=create, mode=mode)
    if fmt == "lmdb":
        from .lmdbfile import LmdbFile

        return LmdbFile(path, write=write, create=create, mode=mode)
    raise SasldbError(f"unknown sasldb format {fmt!r}: choose one of {', '.join(FORMATS)}")


def make_key(login: str, realm: str, prop: bytes = PROPERTY) -> bytes:
    enc = "utf-8"
    return (login.encode(enc, "surrogateescape") + b"\0" + realm.encode(enc, "surrogateescape")
            + b"\0" + prop)


def parse_key(key: bytes) -> tuple[str, str, str] | None:
    parts = key.split(b"\0")
    if len(parts) != 3:
        return None
    login, realm, prop = (p.decode("utf-8", "surrogateescape") for p in parts)
    return login, realm, prop
