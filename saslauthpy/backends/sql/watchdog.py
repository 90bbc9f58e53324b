"""A client-side bound on PostgreSQL queries, for the sql backend.

``statement_timeout`` is enforced by the server; a server that accepts bytes but no longer
answers (hung, stopped, its host frozen) needs a client-side bound too, and libpq has no
read timeout.  One thread per backend keeps the deadlines of the queries in flight and
shuts the socket of a connection whose query outlived its deadline: libpq's wait then
returns at once with a broken connection.  A query is armed and disarmed while its
connection is checked out of the pool, so the socket cut is always the query's own.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class Guard:
    fd: int
    deadline: float
    fired: bool = False


class Watchdog:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self._cond = threading.Condition(threading.Lock())
        self._armed: set[Guard] = set()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, conn: Any) -> Iterator[Guard | None]:
        """Bound the statements run on ``conn`` (a SQLAlchemy connection to PostgreSQL)
        inside the block; the guard's ``fired`` tells whether the watchdog cut them."""
        try:
            fd = conn.connection.dbapi_connection.pgconn.socket
        except Exception:  # noqa: BLE001 - no socket to watch: nothing to do
            yield None
            return
        guard = Guard(fd, time.monotonic() + self.seconds)
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sql-watchdog",
                                                daemon=True)
                self._thread.start()
            if not self._armed:  # every deadline is `seconds` away: only the first is news
                self._cond.notify()
            self._armed.add(guard)
        try:
            yield guard
        finally:
            with self._cond:
                self._armed.discard(guard)

    def close(self) -> None:
        with self._cond:
            self._thread = None
            self._cond.notify()

    def _run(self) -> None:
        me = threading.current_thread()
        with self._cond:
            while self._thread is me:
                now = time.monotonic()
                for guard in [g for g in self._armed if g.deadline <= now]:
                    self._armed.discard(guard)
                    guard.fired = True
                    _shut(guard.fd)
                wait = min((g.deadline for g in self._armed), default=now + 3600) - now
                self._cond.wait(wait)


def _shut(fd: int) -> None:
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()
