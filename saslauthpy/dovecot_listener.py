"""``[dovecot] listen``: a second socket speaking the Dovecot auth protocol (dovecot.py).

Postfix (``smtpd_sasl_type = dovecot``) and Exim (the ``dovecot`` authenticator) ask it
as they would ask Dovecot's auth service, and every login goes through the same
Authenticator as the saslauthd socket's: backends, cache, throttle, audit, metrics.  The
client's address (``rip=``) reaches the throttle and the audit line.

The socket is made once, before any fork, with its own mode, owner and group (e.g.
``postfix`` for /var/spool/postfix/private/auth); every worker process accepts on it.
Limits, as strict as the saslauthd socket's: ``max_connections`` per process (beyond, a
stalled or the longest-idle connection goes), one line at most ``dovecot.MAX_LINE`` bytes,
a half-sent line or an unfinished handshake gets ``[server] read_timeout`` seconds, and one
connection has at most ``max_in_flight`` requests being checked: further lines wait unread
until one is answered, as Dovecot stops reading a client that does not read its replies.
"""

from __future__ import annotations

import asyncio
import grp
import itertools
import logging
import os
import pwd
import socket
import stat
import sys
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from . import dovecot
from .authenticator import REPLY_OK, REPLY_TEMPFAIL
from .config import DovecotOptions
from .connection import peer_of
from .errors import ConfigError
from .protocol import parse_reply

if TYPE_CHECKING:
    from .authenticator import Authenticator
    from .config import Config
    from .server import Server

log = logging.getLogger("saslauthpy")

TEMPFAIL_REASON = "The authentication backend is temporarily unavailable"
LINES_PER_TURN = 64  # lines of one connection handled before others get the loop
_cuids = itertools.count(1)


def outcome(reply: bytes, reveal: bool) -> tuple[str, str]:
    """(result, reason) from the Authenticator's saslauthd-style reply."""
    if reply == REPLY_OK:
        return "ok", ""
    if reply == REPLY_TEMPFAIL:
        return "tempfail", TEMPFAIL_REASON
    text = parse_reply(reply)
    return "fail", text[3:] if reveal and text.startswith("NO ") else ""


class DovecotListener:
    """The socket and its options; ``start(server)`` serves it in a worker's event loop."""

    def __init__(self, opts: DovecotOptions, sock: socket.socket, own: bool = True):
        self.opts = opts
        self.sock = sock
        # a socket the service manager passed is its to remove, not ours
        self._inode = os.stat(opts.listen).st_ino if own else None
        self.conns: OrderedDict[DovecotConnection, None] = OrderedDict()  # idle-longest first

    @classmethod
    def open(cls, config: Config, passed: socket.socket | None = None) -> DovecotListener | None:
        """Bind the socket (before any fork), or serve ``passed``, the one the service
        manager made; None when ``[dovecot] listen`` is not set."""
        opts = config.dovecot
        if not opts.listen:
            return None
        if passed is not None:
            log.info("Dovecot auth protocol on %s, the socket passed by the service manager",
                     passed.getsockname())
            return cls(opts, passed, own=False)
        listener = cls(opts, _bind(opts))
        log.info("Dovecot auth protocol on %s", opts.listen)
        return listener

    async def start(self, server: Server) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        # From Python 3.13 a closing server removes its socket's path: here that is each
        # worker's at its end, while the supervisor (or the service manager) still serves it.
        keep = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}
        srv = await loop.create_unix_server(lambda: DovecotConnection(self, server),
                                            sock=self.sock, backlog=1024, **keep)
        self._sweeper = loop.create_task(self._sweep(server, srv))  # ends with the server
        return srv

    def admit(self, conn: DovecotConnection) -> None:
        """Beyond ``max_connections``, close the first of: the connection stalled longest
        (an unfinished handshake or line, as the saslauthd socket drops), the one idle
        longest (Postfix reconnects when it needs one), else the newcomer: a connection
        with answers pending is never dropped for it."""
        self.conns[conn] = None
        if len(self.conns) <= self.opts.max_connections:
            return
        others = [c for c in self.conns if c is not conn]
        victim = (next((c for c in others if c.stalled_since is not None), None)
                  or next((c for c in others if c.idle), conn))
        victim.close("dropped: too many open connections")

    async def _sweep(self, server: Server, srv: asyncio.AbstractServer) -> None:
        """Deadlines: the handshake and a half-sent line get ``read_timeout`` seconds; a
        request waiting for its CONT is forgotten after dovecot.CONT_TIMEOUT."""
        while srv.is_serving():
            timeout = server.config.server.read_timeout
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.monotonic()
            for conn in list(self.conns):
                if conn.stalled_since is not None and now - conn.stalled_since > timeout:
                    conn.close("read timeout" if conn.session.ready else "handshake timeout")
                elif conn.session.waiting:
                    conn.session.expire(now - dovecot.CONT_TIMEOUT)

    def close(self) -> None:
        """Remove the socket file (the process that made it, at exit)."""
        self.sock.close()
        if self._inode is None:
            return
        try:
            if os.lstat(self.opts.listen).st_ino == self._inode:
                os.unlink(self.opts.listen)
        except OSError:
            pass


def _bind(opts: DovecotOptions) -> socket.socket:
    path = opts.listen
    parent = os.path.dirname(path)
    try:
        uid = pwd.getpwnam(opts.socket_owner).pw_uid if opts.socket_owner else -1
    except KeyError:
        raise ConfigError(f"[dovecot] socket_owner: no user named {opts.socket_owner!r}")
    try:
        gid = grp.getgrnam(opts.socket_group).gr_gid if opts.socket_group else -1
    except KeyError:
        raise ConfigError(f"[dovecot] socket_group: no group named {opts.socket_group!r}")
    os.makedirs(parent, mode=0o755, exist_ok=True)
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"[dovecot] listen: {path} exists and is not a socket; "
                              "remove it or choose another path")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(path) == 0:
                raise ConfigError(f"[dovecot] listen: another server answers on {path} "
                                  "(a running Dovecot?); stop it or choose another path")
    # Bound under a temporary name and renamed into place once its mode and owner are
    # right, so the path never offers a socket with looser permissions.
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{os.getpid()}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        sock.bind(tmp)
        os.chmod(tmp, opts.socket_mode)
        if uid != -1 or gid != -1:
            os.chown(tmp, uid, gid)
        sock.listen(1024)  # before the rename: the path never offers a refusing socket
        os.rename(tmp, path)
    except OSError as exc:
        sock.close()
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise ConfigError(f"[dovecot] listen: cannot make {path}: {exc.strerror}")
    sock.setblocking(False)
    return sock


class DovecotConnection(asyncio.Protocol):
    """One client (a Postfix smtpd process, an Exim delivery): many requests, in order of
    arrival, answered as each check finishes."""

    def __init__(self, listener: DovecotListener, server: Server):
        self.listener = listener
        self.server = server
        self.session = dovecot.Session(server.config.server.max_field)
        self.buf = b""
        self.in_flight = 0
        self.closed = False
        self.paused = False  # the client does not read its replies
        self.stalled_since: float | None = None  # handshake or a line incomplete since
        self._turn: asyncio.Handle | None = None  # the next turn, when lines are left

    @property
    def idle(self) -> bool:
        return (not self.buf and not self.in_flight and self.session.ready
                and not self.session.waiting)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.peer = peer_of(transport)
        self.stalled_since = time.monotonic()
        self.listener.admit(self)
        if not self.closed:
            self.transport.write(dovecot.handshake(os.getpid(), next(_cuids)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.conns.pop(self, None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._turn is None:
            self._process()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self._turn is None:
            self._process()

    def eof_received(self) -> bool:
        self.close("")  # as Dovecot: the client went away, its requests with it
        return False

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.listener.conns.pop(self, None)
        if reason:
            self.server.auth.malformed(reason, self.peer, self.stalled_since or time.monotonic())
        self.transport.close()

    def _process(self) -> None:
        """Handle whole lines while fewer than ``max_in_flight`` are being checked and the
        client reads its replies, at most LINES_PER_TURN before other clients get the loop
        again; what is left waits, and the rest unread in the kernel."""
        self._turn = None
        limit = self.listener.opts.max_in_flight
        buf, pos, budget = self.buf, 0, LINES_PER_TURN
        while not self.closed and not self.paused and self.in_flight < limit and budget:
            end = buf.find(b"\n", pos, pos + dovecot.MAX_LINE + 1)
            if end < 0:
                break
            line, pos, budget = buf[pos:end], end + 1, budget - 1
            try:
                step = self.session.handle(line, time.monotonic())
            except dovecot.ProtocolError as exc:
                self.close(exc.reason)
                return
            if isinstance(step, dovecot.Login):
                self._check(step)
            elif step is not None:
                if step.malformed:
                    self.server.auth.malformed(step.malformed, self.peer, time.monotonic())
                self.transport.write(step.line)
        if self.closed:
            return
        self.buf = buf = buf[pos:] if pos else buf
        if len(buf) > dovecot.MAX_LINE and b"\n" not in buf[:dovecot.MAX_LINE + 1]:
            self.close(f"line longer than {dovecot.MAX_LINE} bytes")
            return
        lines_left = b"\n" in buf
        hold = self.paused or lines_left or (bool(buf) and self.in_flight >= limit)
        if hold:
            self.transport.pause_reading()  # backpressure: the rest stays in the kernel
            if lines_left and not budget:  # only the turn's budget stopped us: go on soon
                self._turn = asyncio.get_running_loop().call_soon(self._process)
        elif not self.transport.is_closing():
            self.transport.resume_reading()
        self.listener.conns.move_to_end(self)
        # A deadline runs for an unfinished handshake and for a half-sent line only.
        if self.session.ready and (not buf or hold):
            self.stalled_since = None
        elif self.stalled_since is None or (pos and self.session.ready):
            self.stalled_since = time.monotonic()

    def _check(self, login: dovecot.Login) -> None:
        req = login.request()
        started = time.monotonic()
        auth = self.server.auth
        reply = auth.answer_from_cache(req, self.peer, started)
        if reply is not None:
            self._reply(login, reply)
            return
        self.in_flight += 1
        self.server.spawn(self._answer(auth, login, req, started))

    async def _answer(self, auth: Authenticator, login: dovecot.Login, req: Any,
                      started: float) -> None:
        reply = REPLY_TEMPFAIL
        try:
            reply = await auth.answer(req, self.peer, started)
        except Exception:
            log.exception("failed to answer %r", login)
        finally:
            self.in_flight -= 1
        self._reply(login, reply)
        if self._turn is None:
            self._process()

    def _reply(self, login: dovecot.Login, reply: bytes) -> None:
        result, reason = outcome(reply, self.server.config.server.reveal_reasons)
        line = self.session.answer(login, result, reason)
        if line is not None and not self.closed:
            self.transport.write(line)
