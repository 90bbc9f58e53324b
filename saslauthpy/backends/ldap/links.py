"""The ldap backend's connections on the event loop: libldap's asynchronous calls.

A ``Link`` is one open connection whose operations are sent without waiting (libldap's
``ldap_search_ext``, ``ldap_sasl_bind``, ``ldap_compare_ext``) and whose answers are read
when its socket becomes readable (``ldap_result`` with a zero timeout), so one event-loop
thread keeps many operations in flight and no thread waits on the network.  ``Links``
holds them, per event loop:

- *service* links (bound as ``ldap_bind_dn``, the SASL service identity or anonymously)
  carry searches and compares, many at once on one connection; another is opened when
  every open one has ``PIPELINE`` operations in flight, up to ``pool_size``;
- *user* links carry user binds, one at a time each (a bind must be alone on its
  connection), up to ``pool_size``; a request waits for a free one until its deadline.

Opening a link (connect, TLS, the service bind) blocks, so it runs in the backend's
threads; one opening at a time per kind, the others wait for it.  A link that breaks or
times out is closed; an idle link is replaced after ``MAX_IDLE`` seconds so that
traffic drifts back to the first server of ``ldap_servers``.

Each operation in flight carries its request's deadline; while any is in flight, one
timer per ``Links`` looks every ``SWEEP_EVERY`` seconds for those past it (no timer per
request): they fail with ``TimedOut`` and their link is closed (the others in flight on
it are retried on another link).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import Any

import ldap
from ldap.ldapobject import LDAPObject

from .connection import Broken, Directory, Identity, Unavailable, close, describe

PIPELINE = 32  # operations in flight on one service link before another is opened
MAX_IDLE = 120.0  # seconds before an idle link is replaced (back to the first server)
EXPIRE_EVERY = 1.0  # seconds between looks for idle links to replace
SWEEP_EVERY = 0.1  # seconds between looks for operations past their deadline
NO_ANSWER = "the LDAP server did not answer within ldap_timeout"
RES_ANY = ldap.RES_ANY


class TimedOut(Unavailable):
    """No answer before the request's deadline (``ldap_timeout``)."""


class Link:
    """One connection used from the event loop: send now, answer when readable.

    Operations go to python-ldap's C object (``conn._l``) directly: its Python wrapper
    adds a lock (a link is only ever used from the loop's thread), tracing and, for
    results, control decoding that no operation here asks for."""

    def __init__(self, conn: LDAPObject, server: int, loop: asyncio.AbstractEventLoop,
                 kind: Kind | None = None, links: Links | None = None):
        self.conn, self.server, self.loop, self.kind, self.links = (conn, server, loop, kind,
                                                                    links)
        self.raw = conn._l
        # message id -> (its waiter, its request's deadline on the loop's clock)
        self.pending: dict[int, tuple[asyncio.Future[tuple[int, Any]], float]] = {}
        self.closed = False
        self.used = time.monotonic()
        self.fd = conn.fileno()
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        result4, pending = self.raw.result4, self.pending
        while not self.closed:
            try:
                # every message of the next complete answer, without waiting
                got = result4(RES_ANY, 1, 0, 0, 0, 0)
            except ldap.LDAPError as exc:
                info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
                entry = pending.pop(info.get("msgid", -1), None)
                if entry is None:  # not an operation's answer: the connection is gone
                    self.close(Broken(describe(exc)))
                    return
                if not entry[0].done():
                    entry[0].set_exception(exc)
                if not pending:
                    return
                continue
            if got is None or got[0] is None:  # nothing complete yet
                return
            entry = pending.pop(got[2], None)
            if entry is not None and not entry[0].done():
                entry[0].set_result((got[0], got[1]))
            if not pending:  # nothing else to read for (spares libldap a poll)
                return

    async def call(self, op: str, args: tuple, deadline: float) -> tuple[int, Any]:
        """Send one operation (``op``, a method of python-ldap's C object, with ``args``;
        it returns the message id) and wait for its answer until ``deadline`` (the loop's
        clock).  Raises python-ldap's error for a refused operation, ``Broken`` or
        ``TimedOut``; a link whose operation timed out or was cancelled is closed (its
        late answer must not meet the next operation)."""
        if self.closed:
            raise Broken("connection closed")
        try:
            msgid = getattr(self.raw, op)(*args)
        except ldap.SERVER_DOWN as exc:
            self.close(Broken(describe(exc)))
            raise Broken(describe(exc))
        waiter = self.loop.create_future()
        self.pending[msgid] = (waiter, deadline)
        self.used = time.monotonic()
        links = self.links
        if links is not None and links.sweeper is None:
            links.arm()
        try:
            return await waiter
        except asyncio.CancelledError:
            self.pending.pop(msgid, None)
            self.close(Broken("gave up waiting"))
            raise

    def close(self, why: Exception | None = None) -> None:
        """Stop reading, fail what is in flight, unbind.  Call it in the loop's thread
        (or when the loop is not running)."""
        if self.closed:
            return
        self.closed = True
        kind = self.kind
        if kind is not None:
            kind.forget(self)
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
        pending, self.pending = self.pending, {}
        for waiter, _ in pending.values():
            if not waiter.done():
                waiter.set_exception(why or Broken("connection closed"))
        close(self.conn)


class Kind:
    """The links of one kind (service or user) on one loop, and the one opening.  A link
    that closes leaves ``links`` (and ``idle``) at once."""

    def __init__(self, name: str, identity: Identity, size: int, shared: bool):
        self.name, self.identity, self.size, self.shared = name, identity, size, shared
        self.links: list[Link] = []
        self.idle: list[Link] = []  # user links not in use (shared links are always usable)
        self.opening: asyncio.Future[Link] | None = None
        self.opening_deadline = 0.0
        self.freed = asyncio.Event()
        self.expired = time.monotonic()  # when idle links were last looked at

    def live(self) -> list[Link]:
        return self.links

    def forget(self, link: Link) -> None:
        if link in self.links:
            self.links.remove(link)
        if link in self.idle:
            self.idle.remove(link)


class Links:
    """The service and user links of one event loop."""

    blocking = False  # (NowLinks: True)

    def __init__(self, loop: asyncio.AbstractEventLoop, directory: Directory,
                 service: Identity, size: int, opener: Executor):
        self.loop, self.directory, self.opener = loop, directory, opener
        self.service = Kind("service", service, size, shared=True)
        self.user = Kind("user", Identity(), size, shared=False)
        self.sweeper: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.sweeper = self.loop.call_later(SWEEP_EVERY, self._sweep)

    def _sweep(self) -> None:
        """Fail the operations past their deadline and close their links; look again
        later while anything is in flight."""
        self.sweeper = None
        now = self.loop.time()
        busy = False
        for kind in (self.service, self.user):
            for link in list(kind.links):
                late = [m for m, (_, until) in link.pending.items() if until <= now]
                for msgid in late:
                    waiter, _ = link.pending.pop(msgid)
                    if not waiter.done():
                        waiter.set_exception(TimedOut(NO_ANSWER))
                if late:
                    self.directory.mark(link.server, ok=False)
                    link.close(Broken("gave up waiting"))
                busy = busy or bool(link.pending)
        if busy:
            self.arm()

    def adopt(self, kind: Kind, conn: LDAPObject, server: int) -> None:
        """A connection opened before the loop ran (at start)."""
        link = Link(conn, server, self.loop, kind, self)
        kind.links.append(link)
        if not kind.shared:
            kind.idle.append(link)

    async def call(self, kind: Kind, op: str, args: tuple,
                   deadline: float) -> tuple[int, Any]:
        """One operation (``Link.call``'s ``op`` and ``args``) on a link of ``kind`` (a
        user link: alone on it), retried once on another link if its link broke.  The
        caller bounds it with ``deadline``."""
        shared = kind.shared
        for attempt in (1, 2):
            link = self._ready(kind)
            if link is None:
                link = await (self._service_link(deadline) if shared
                              else self._user_link(deadline))
            healthy = False
            try:
                answer = await link.call(op, args, deadline)
                healthy = True
                return answer
            except ldap.LDAPError:
                healthy = True  # the server answered (no): the link is fine
                raise
            except asyncio.CancelledError:  # the request's deadline: no answer in time
                self.directory.mark(link.server, ok=False)
                raise
            except Broken as exc:
                self._lost(kind, link)
                if attempt == 2:
                    raise Unavailable(f"LDAP connection lost: {exc}")
            finally:
                if not shared:
                    self._release(link, healthy)
        raise AssertionError("unreachable")

    def _ready(self, kind: Kind) -> Link | None:
        """The common case without a wait: an open link to use now, or None."""
        now = time.monotonic()
        if now - kind.expired >= EXPIRE_EVERY:
            kind.expired = now
            self._expire(kind)
        if not kind.shared:
            return kind.idle.pop() if kind.idle else None
        links = kind.links
        if not links:
            return None
        best = links[0] if len(links) == 1 else min(links, key=_in_flight)
        if len(best.pending) < PIPELINE or len(links) >= kind.size or kind.opening:
            return best
        return None

    # -- choosing and opening links

    async def _service_link(self, deadline: float) -> Link:
        kind = self.service
        while True:
            self._expire(kind)
            live = kind.live()
            if live:
                best = min(live, key=lambda lk: len(lk.pending))
                if len(best.pending) < PIPELINE or len(live) >= kind.size or kind.opening:
                    return best
            await self._opened(kind, deadline)

    async def _user_link(self, deadline: float) -> Link:
        kind = self.user
        while True:
            self._expire(kind)
            while kind.idle:
                link = kind.idle.pop()
                if not link.closed:
                    return link
            if kind.opening is not None or len(kind.live()) < kind.size:
                await self._opened(kind, deadline)
                continue
            kind.freed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await kind.freed.wait()
            except TimeoutError:
                raise TimedOut(f"all {kind.size} user connections stayed busy for "
                               "ldap_timeout")

    async def _opened(self, kind: Kind, deadline: float) -> None:
        """Wait for the link being opened (start opening one if none is): it joins
        ``kind`` (a user link as idle).  Raises ``Unavailable`` (``TimedOut``).  An
        opening that gave up at its own, earlier deadline is tried again until ours."""
        while True:
            if kind.opening is None or kind.opening.done():
                kind.opening = asyncio.ensure_future(self._connect(kind, deadline))
                kind.opening.add_done_callback(_retrieved)
                kind.opening_deadline = deadline
            opening, until = kind.opening, kind.opening_deadline
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.shield(opening)
                return
            except TimeoutError:
                raise TimedOut("no LDAP server answered within ldap_timeout")
            except Unavailable:
                now = self.loop.time()
                if not (until < deadline and now >= until - 0.05):
                    raise

    async def _connect(self, kind: Kind, deadline: float) -> Link:
        try:
            until = time.monotonic() + max(0.0, deadline - self.loop.time())
            conn, server = await self.loop.run_in_executor(
                self.opener, self.directory.connect, kind.identity, until, not kind.shared)
            link = Link(conn, server, self.loop, kind, self)
            kind.links.append(link)
            if not kind.shared:
                kind.idle.append(link)
                kind.freed.set()
            return link
        finally:  # before anyone waiting sees it done: a finished opening is never current
            if kind.opening is asyncio.current_task():
                kind.opening = None

    def _release(self, link: Link, healthy: bool) -> None:
        kind = self.user
        if healthy and not link.closed:
            link.used = time.monotonic()
            kind.idle.append(link)
            if not kind.freed.is_set():
                kind.freed.set()
            return
        else:
            link.close()
        kind.freed.set()

    def _lost(self, kind: Kind, link: Link) -> None:
        """``link`` broke: its server is tried last for a while, and the idle links go
        too (they most likely share its fate)."""
        link.close()
        self.directory.mark(link.server, ok=False)
        for other in list(kind.links):
            if not other.pending and (kind.shared or other in kind.idle):
                other.close()
        kind.idle.clear()

    def _expire(self, kind: Kind) -> None:
        now = time.monotonic()
        for link in list(kind.links):
            if not link.pending and now - link.used > MAX_IDLE and (
                    kind.shared or link in kind.idle):
                link.close()

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for kind in (self.service, self.user):
            for link in list(kind.links):
                link.close()
            kind.links, kind.idle = [], []


def _in_flight(link: Link) -> int:
    return len(link.pending)


def _retrieved(future: asyncio.Future[Link]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: the waiters got it, or nobody was left waiting
