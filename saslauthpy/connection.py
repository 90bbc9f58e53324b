"""The asyncio path: one client connection read through a protocol object.

What the fast lane hands over with the bytes it read (nothing yet, part of a request, an
oversized or malformed one) arrives here.  The connection parses as bytes come in,
answers a malformed request with saslauthd's reply, a cache hit at once, and anything
else through a task; it gets the server's read deadline while it is still sending, and
is counted in ``max_connections`` until it closes.  A request read whole is answered
whatever the client does with its write side afterwards (``shutdown(SHUT_WR)``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any, Protocol

from . import protocol
from .authenticator import Authenticator, Peer
from .config import Config
from .control import peer_credentials

log = logging.getLogger("saslauthpy")

class Host(Protocol):
    """What a connection needs of its server (server.Server)."""

    config: Config
    auth: Authenticator
    connections: OrderedDict[Connection, None]  # every one held
    waiting: OrderedDict[Connection, None]  # those still sending
    max_connections: int

    def held(self) -> int: ...

    def shed(self, newcomer: Connection | None = None) -> bool: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...


def peer_of(transport: asyncio.BaseTransport) -> Peer:
    return Peer(lambda: peer_credentials(transport.get_extra_info("socket")))


class Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "buf", "done", "opened", "peer")

    def __init__(self, server: Host, data: bytes = b""):
        self.server = server
        self.buf = data  # what the fast lane already read
        self.done = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = peer_of(transport)
        self.opened = time.monotonic()
        server = self.server
        server.connections[self] = None
        server.waiting[self] = None
        if server.held() > server.max_connections:
            server.shed(self)
        if self.buf and not self.done:
            self._parse()

    def _finish(self) -> None:
        """The request is in (or never will be): no more reading, no more deadline."""
        self.done = True
        self.server.waiting.pop(self, None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self._finish()
        self.server.connections.pop(self, None)

    def eof_received(self) -> bool:
        if self.done:
            return True  # a whole request, then SHUT_WR: its answer is still owed
        if self.buf:
            self._drop("truncated request")
        else:  # connect-and-close (a health check): nothing to record
            self._finish()
            self.transport.close()
        return False

    def _drop(self, reason: str, reply: bytes | None = None) -> None:
        self._finish()
        self.server.auth.malformed(reason, self.peer, self.opened)
        if reply:
            self.transport.write(reply)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.done:
            return  # anything after the request is ignored, as saslauthd does
        self.buf = self.buf + data if self.buf else data
        self._parse()

    def _parse(self) -> None:
        server = self.server
        try:
            req = protocol.parse_request(self.buf, server.config.server.max_field)
        except protocol.Incomplete:
            return
        except protocol.Malformed as exc:
            self._drop(exc.reason, exc.reply)
            return
        self._finish()
        self.buf = b""
        auth = server.auth
        started = time.monotonic()
        reply = auth.answer_from_cache(req, self.peer, started)
        if reply is not None:
            self.transport.write(reply)
            self.transport.close()
            return
        server.spawn(self._answer(auth, req, started))

    async def _answer(self, auth: Authenticator, req: protocol.Request, started: float) -> None:
        try:
            reply = await auth.answer(req, self.peer, started)
        except Exception:
            log.exception("failed to answer %r", req)
            reply = protocol.format_reply("NO internal error")
        if not self.transport.is_closing():
            self.transport.write(reply)
            self.transport.close()
