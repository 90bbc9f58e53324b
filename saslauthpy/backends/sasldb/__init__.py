"""``-a sasldb``: the sasldb2 file as ``saslpasswd2`` writes it (Berkeley DB, GDBM, LMDB)."""

from .backend import Backend, Store

__all__ = ["Backend", "Store"]
