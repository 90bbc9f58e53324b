"""``-a sql``: users in PostgreSQL, MariaDB/MySQL or SQLite; the built-in table and its
importer for ``saslauthpy-admin``."""

from .backend import Backend
from .store import Store

__all__ = ["Backend", "Store"]
