"""Blocking links for the fast lane's thread: the LDAP check with no hop to the event loop.

With the ``thread`` acceptor, the fast lane checks a request the cache does not answer in
its own thread (``Backend.inline``).  For LDAP that thread keeps a service and a user
connection of its own and runs the backend's very check (``Backend._check``, the coroutine
the event loop runs) through ``base.run_now``: every ``await links.call`` here returns at once,
having sent the operation and waited for its answer, so the coroutine ends without ever
suspending.  One thread, one request at a time, as the C saslauthd's processes work: no
task, future or reader callback per operation, no hop between threads.

Waiting is what the thread must not do for long, since cache hits queue behind it: an
answer that takes more than ``WAIT`` seconds, a server that is gone or a connection that
cannot be opened at once raises ``NotNow``.  Nothing was decided then; both connections
are dropped (a late answer must not meet the next operation), the worker's fast-lane
threads stop checking inline for a while and the request goes to the event loop, which
checks it afresh with all of ``ldap_timeout``, failover and its logging.  The one
exception is a user's bind: once a password is sent, its answer is awaited here up to
``ldap_timeout``, as the C daemon does, for sending it again from the event loop would
let a password policy count one wrong password twice.
"""

from __future__ import annotations

import time
from typing import Any

import ldap

from ..base import NotNow
from .connection import Directory, Identity, ServiceBindRefused, Unavailable, close
from .sasl import Unsendable

WAIT = 0.2  # seconds an operation (or opening a connection) may take in the fast lane
# python-ldap errors that say the connection, not the operation, failed
GONE = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT, ldap.UNAVAILABLE, ldap.BUSY)


class NowLinks:
    """A service and a user connection, used by one thread at a time."""

    blocking = True
    service = "service"
    user = "user"

    def __init__(self, directory: Directory, service: Identity):
        self.directory = directory
        self.identities = {self.service: service, self.user: Identity()}
        self.conns: dict[str, Any] = {}

    async def call(self, kind: str, op: str, args: tuple, deadline: float) -> tuple[int, Any]:
        """``Links.call`` done at once: send ``op`` and wait for its answer, at most
        ``WAIT`` seconds, except a user's bind: a password once sent is never sent again
        by the event loop (a password policy would count a wrong one twice), so its
        answer is awaited up to ``deadline`` (``TimeoutError`` then, as on the event loop).
        python-ldap's error for a refused operation, ``NotNow`` for anything that is not
        the server's answer."""
        conn = self.conns.get(kind) or self._open(kind, deadline)
        raw = conn._l
        sent_password = op == "simple_bind"  # the service's own bind is made by _open
        until = deadline if sent_password else min(deadline, time.monotonic() + WAIT)
        try:
            msgid = getattr(raw, op)(*args)
            rtype, data, _, _ = raw.result4(msgid, 1, max(until - time.monotonic(), 0.001),
                                            0, 0, 0)
        except GONE as exc:
            self.close()
            if sent_password and isinstance(exc, ldap.TIMEOUT):
                raise TimeoutError() from None
            raise NotNow() from None
        return rtype, data

    def _open(self, kind: str, deadline: float) -> Any:
        try:
            conn, _ = self.directory.connect(self.identities[kind],
                                             min(deadline, time.monotonic() + WAIT),
                                             for_users=kind == self.user, judge=False)
        except (Unavailable, ServiceBindRefused, Unsendable):
            raise NotNow() from None  # the event loop's path says why, and logs it
        self.conns[kind] = conn
        return conn

    def close(self) -> None:
        conns, self.conns = self.conns, {}
        for conn in conns.values():
            close(conn)

