"""The fast lane: a cached OK answered straight from the accepted descriptor.

A busy mail host mostly asks again for logins it asked about a moment ago.  For those,
each worker process accepts connections itself as raw file descriptors, reads once
without blocking and, when that one read holds exactly one whole request (libsasl2 and
testsaslauthd write it in one ``writev`` before they read) whose good password is in the
cache while no penalty is pending, writes ``OK`` and closes: no transport, no protocol
object, no task, no per-request object.

With the ``thread`` acceptor and a chain of checks that may run here
(``Authenticator.inline``: shadow, getpwent, sasldb, SQLite, and LDAP without SASL), a whole
request the cache does not answer, with no penalty pending, is answered in this thread too
(the *inline lane*): ``Authenticator.answer_now`` checks it (crypt(3) releases the GIL, as
libldap does while it waits), caches, records and audits it exactly as the asyncio path
would, and the reply is written here, with no hop to the event loop and the backend's
pool.  While inline checks take more than ``INLINE_MAX`` seconds on average (yescrypt,
bcrypt, a slow directory: the hop is then nothing beside the check; a moving average, so
that one costly first check, a decoy made or a library loaded, does not count), or after
a check that could not end at once (``NotNow``: an LDAP server slow to answer), such
requests go the asyncio way for ``INLINE_PAUSE`` seconds, in every lane of the worker
(``Authenticator.inline_after``): cheap answers never wait long behind costly or stalled
checks.

Everything else goes to the event loop and is answered there exactly as before: a whole
request it could not answer (a miss, a cached wrong password, a penalty, the throttle in
Redis) as that parsed request (``take``: the answer is written to the descriptor, no
transport is needed for a request already read), and anything else (nothing read yet, a
partial, oversized or malformed request) with the bytes already read, to the asyncio
connection path (``handover``).

Counting costs no allocation: plain integers the worker publishes with its other numbers
(``Server.publish``).  Each answer still reaches the audit file (and, with -V, syslog)
as its own line, written before the reply as on the asyncio path: when such a line is
wanted, it is built like any other decision.

How connections are taken off the shared listening socket is acceptors.py's business.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import socket
import time
from collections.abc import Callable

from .authenticator import REPLY_OK, Decision, Peer
from .backends.base import NotNow
from .control import peer_credentials
from .protocol import Request, format_reply

log = logging.getLogger("saslauthpy")

READ_SIZE = 4096  # a whole request of four or five 256-byte fields is 1,290 bytes
INLINE_MAX = 0.01  # seconds inline checks may take on average before the lane pauses
INLINE_PAUSE = 5.0  # seconds without inline checks after a costly one
# Latency buckets (seconds) for the metrics histogram; the metrics module uses the same.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)
INTERNAL_ERROR = format_reply("NO internal error")
_SCARCE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

# handover(fd, data[, done]) and take(fd, request, started[, done]): done() once the
# loop has the connection in its count
Handover = Callable[..., None]


class Counts:
    """What the fast lane did, as plain numbers (read by ``Server.publish``)."""

    __slots__ = ("accepted", "answered", "by_service", "handed", "inline", "latency",
                 "latency_sum")

    def __init__(self) -> None:
        self.accepted = 0  # connections taken off the socket
        self.answered = 0  # cached OKs written here
        self.by_service: dict[bytes, int] = {}  # answered, by service (as the request had it)
        self.handed = 0  # connections given to the event loop
        self.inline = 0  # requests checked and answered here (the inline lane)
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)  # answered, per bucket (+Inf last)
        self.latency_sum = 0.0

    @classmethod
    def total(cls, all_counts) -> Counts:
        """The sum of several lanes' counts, field by field."""
        out = cls()
        for c in all_counts:
            for name in cls.__slots__:
                mine, theirs = getattr(out, name), getattr(c, name)
                if isinstance(mine, dict):
                    for key, n in list(theirs.items()):  # another thread may add a key
                        mine[key] = mine.get(key, 0) + n
                elif isinstance(mine, list):
                    setattr(out, name, [a + b for a, b in zip(mine, theirs, strict=True)])
                else:
                    setattr(out, name, mine + theirs)
        return out


class FastLane:
    """``handle(fd)`` answers one accepted connection or hands it over."""

    def __init__(self, handover: Handover, take: Handover, max_field: int):
        self.handover = handover
        self.take = take
        self.max_field = max_field
        self.counts = Counts()
        self.auth = None  # the Authenticator in service (``configure``)
        self.record: Callable[[Decision], None] | None = None
        self.timed = False
        self.threaded = False  # handle() runs in a thread of its own: it may check inline
        # park(fd, started): True when the acceptor will call handle(fd, started) again
        # once the request has come (or hand the connection over if it does not soon)
        self.park: Callable[[int, float], bool] | None = None
        self.inline_cost = 0.0  # seconds per inline check, a moving average

    def configure(self, auth, max_field: int, record: Callable[[Decision], None] | None,
                  timed: bool) -> None:
        """Use ``auth`` from now on; ``record`` gets a decision per answer when the audit
        wants one; ``timed``: keep the latency histogram (metrics are on)."""
        self.max_field = max_field
        self.record = record
        self.timed = timed or record is not None
        self.auth = auth

    def handle(self, fd: int, started: float = 0.0) -> None:
        """``started``: when a connection parked while its request was on its way was
        accepted (0: now)."""
        counts = self.counts
        if not started:
            counts.accepted += 1
            started = time.monotonic()
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:  # connected, nothing sent yet
            if self.park is None or not self.park(fd, started):
                counts.handed += 1
                self.handover(fd, b"")
            return
        except OSError:
            os.close(fd)
            return
        if not data:  # connect and close (a health check): nothing to record
            os.close(fd)
            return
        fields = counted(data)
        auth = self.auth
        cache = auth.cache
        free = fields is not None and self._no_penalty(auth, fields, started, self.max_field)
        # The cache is asked before the four fields it answers for are checked (checked()
        # below): only a request that passed the checks was ever cached, and no request
        # that fails them can have a cached request's key and password (the key's NULs
        # mark its fields, the fingerprint covers the password's bytes; a lower max_field
        # flushes the cache).  A fifth field (the client's address) is checked first.
        # Every microsecond before the reply counts: a client answered late here sleeps.
        at = -1
        if free and cache is not None and (len(fields) == 4 or checked(fields, self.max_field)):
            at = cache.good_at(auth.cache_key(fields[0], fields[3], fields[2]), fields[1])
        if at < 0:
            if fields is None or not checked(fields, self.max_field):
                counts.handed += 1
                self.handover(fd, data)
            elif not (free and self.threaded and auth.inline and started >= auth.inline_after
                      and self._inline(auth, fd, fields, started)):
                counts.handed += 1
                self.take(fd, _request(fields), started)
            return
        if self.record is not None:  # the audit line is written before the reply
            self._record(fd, fields, time.monotonic() - started)
        try:
            os.write(fd, REPLY_OK)
        except OSError:
            pass  # the client went away: the decision stands (and was recorded)
        os.close(fd)
        cache.touch(at)
        if self.timed:
            latency = time.monotonic() - started
            counts.latency[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
            counts.latency_sum += latency
        counts.answered += 1
        service = fields[2]
        counts.by_service[service] = counts.by_service.get(service, 0) + 1

    def _inline(self, auth, fd: int, fields: list[bytes], started: float) -> bool:
        """Answer a request the cache did not, checking it here; False: hand it over (a
        penalty came meanwhile, a reload replaced ``auth``, or the check could not end at
        once)."""
        with auth.checking_lock:  # before looking again: a reload waits for it (busy())
            auth.checking += 1
        try:
            if self.auth is not auth:
                return False
            begun = time.monotonic()  # wall time: a CPU clock is a system call on a VM
            req = _request(fields)
            try:
                reply = auth.answer_now(req, Peer(lambda: peercred(fd)), started)
            except NotNow:  # a server slow to answer: nothing decided, none inline a while
                auth.inline_after = time.monotonic() + INLINE_PAUSE
                return False
            except Exception:  # as on the asyncio path (Server._answer_taken)
                log.exception("failed to answer %r", req)
                reply = INTERNAL_ERROR
            ended = time.monotonic()
            self.inline_cost += (ended - begun - self.inline_cost) / 8
            if self.inline_cost > INLINE_MAX:
                auth.inline_after = ended + INLINE_PAUSE
                self.inline_cost = 0.0  # a fresh start after the pause
        finally:
            with auth.checking_lock:
                auth.checking -= 1
        if reply is None:
            return False
        self.counts.inline += 1
        try:
            os.write(fd, reply)
        except OSError:
            pass  # the client went away: the decision stands (and was recorded)
        os.close(fd)
        return True

    @staticmethod
    def _no_penalty(auth, fields: list[bytes], now: float, limit: int) -> bool:
        throttle = auth.throttle
        if throttle is None:
            return True
        if throttle.shared:
            return False  # a Redis round trip is the asyncio path's business
        if not throttle.active(now):
            return True  # the common case: no key has a penalty anywhere
        return (checked(fields, limit)  # else not for the fast lane
                and auth.penalty(auth.normalise(_request(fields))) <= 0)  # by its identities

    def _record(self, fd: int, fields: list[bytes], latency: float) -> None:
        creds = peercred(fd)
        req = self.auth.normalise(_request(fields))
        self.record(Decision(req, "ok", "", "cache", True, latency, Peer(lambda: creds)))


def counted(data: bytes) -> list[bytes] | None:
    """The counted strings of ``data`` when it is four or five of them and nothing else,
    unchecked; else None.  Unrolled: this is the fast lane's hottest code."""
    try:
        end = 2 + (data[0] << 8 | data[1])
        login = data[2:end]
        start = end + 2
        end = start + (data[end] << 8 | data[end + 1])
        password = data[start:end]
        start = end + 2
        end = start + (data[end] << 8 | data[end + 1])
        service = data[start:end]
        start = end + 2
        end = start + (data[end] << 8 | data[end + 1])
        fields = [login, password, service, data[start:end]]
        if end < len(data):
            start = end + 2
            end = start + (data[end] << 8 | data[end + 1])
            fields.append(data[start:end])
    except IndexError:  # a length cut short
        return None
    return fields if end == len(data) else None


def checked(fields: list[bytes], limit: int) -> bool:
    """The protocol's rules for a request the fast lane may answer: login and password
    not empty, every field within ``limit`` bytes and without NUL."""
    if not fields[0] or not fields[1]:
        return False
    for field in fields:
        if len(field) > limit or b"\0" in field:
            return False
    return True


def _request(fields: list[bytes]) -> Request:
    login, password, service, realm = fields[:4]
    addr = fields[4] if len(fields) == 5 else b""
    return Request(_text(login), password, _text(service), _text(realm), _text(addr))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def peercred(fd: int) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of the UNIX socket ``fd``."""
    sock = socket.socket(fileno=fd)
    try:
        return peer_credentials(sock)
    finally:
        sock.detach()
