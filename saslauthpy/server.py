"""The asyncio UNIX-socket server: connections, limits, signals, reload, shutdown.

One request per connection.  A connection gets ``read_timeout`` seconds to send
its request; beyond ``max_connections`` the oldest connection that has not
finished sending is dropped, so idle or half-sent connections (slowloris) can
never keep a good client waiting.  Cache hits are answered inside
``data_received``; everything else becomes a task on the loop whose blocking
parts run in the backends' own pools.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections import OrderedDict
from collections.abc import Callable

from . import control, protocol, systemd
from .audit import Audit
from .authenticator import Authenticator, Peer
from .backends import backend_class
from .backends.base import Backend
from .cache import CredentialCache
from .config import Config
from .errors import ConfigError
from .eventloop import early_signals
from .throttle import Throttle

log = logging.getLogger("saslauthpy")


def peer_of(transport: asyncio.BaseTransport) -> Peer:
    return Peer(lambda: control.peer_credentials(transport.get_extra_info("socket")))


class Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "buf", "done", "opened", "peer")

    def __init__(self, server: Server):
        self.server = server
        self.buf = b""
        self.done = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = peer_of(transport)
        self.opened = time.monotonic()
        server = self.server
        server.waiting[self] = None
        if len(server.waiting) > server.config.server.max_connections:
            oldest, _ = server.waiting.popitem(last=False)
            oldest._drop("dropped: too many open connections")
        server.connection_opened()

    def _finish(self) -> None:
        """The request is in (or never will be): no more reading, no more deadline."""
        self.done = True
        self.server.waiting.pop(self, None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self._finish()
        self.server.connection_closed()

    def eof_received(self) -> bool:
        if not self.done:  # the client gave up before sending a whole request
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
        self.buf = buf = self.buf + data if self.buf else data
        server = self.server
        try:
            req = protocol.parse_request(buf, server.config.server.max_field)
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


def build_backends(config: Config) -> list[Backend]:
    backends: list[Backend] = []
    try:
        for name in config.mechanisms:
            backend = backend_class(name)(config, config.section(name))
            backends.append(backend)
            backend.open()
    except BaseException:
        for backend in backends:
            backend.close()
        raise
    return backends


def _metrics(config: Config):
    """The metrics listener, imported only when ``[metrics]`` asks for it."""
    try:
        from .metrics import Metrics
    except ImportError as exc:
        raise ConfigError(f"[metrics] needs {exc.name}: pip install 'saslauthpy[metrics]'")
    return Metrics(config)


def _answers_identity(config: Config) -> tuple:
    # What decides the answers: if it changes on reload, cached answers are stale.
    return (config.mechanisms, config.mech_options, config.backends, config.realm_join)


class Server:
    """One process's event loop: accepts on the shared listening socket and answers.

    ``control`` is the control socket when this is the daemon's only process; with
    several processes the supervisor serves it and ``control`` is None.
    """

    def __init__(self, config: Config, load_config: Callable[[], Config],
                 listen: socket.socket, cache: CredentialCache | None,
                 control: socket.socket | None = None):
        self.config = config
        self.load_config = load_config
        self.listen = listen
        self.cache = cache
        self.control_sock = control
        self.waiting: OrderedDict[Connection, None] = OrderedDict()
        self.tasks: set[asyncio.Task] = set()
        self.open_connections = 0
        self.metrics = None
        self._servers: list[asyncio.AbstractServer] = []
        self._stopping: asyncio.Event | None = None

    # -- pipeline -------------------------------------------------------------

    def prepare(self) -> None:
        """Open what depends on the configuration; raises ConfigError."""
        self.audit = Audit(self.config.audit, self.config.verbose, self.config.foreground)
        if self.config.metrics.listen:
            self.metrics = _metrics(self.config)
        self.auth = self.build(self.config)

    def build(self, config: Config, old: Authenticator | None = None) -> Authenticator:
        """Everything that depends on the configuration; raises ConfigError and then
        leaves the running pipeline (``old``) untouched."""
        if old and old.throttle and old.config.throttle == config.throttle:
            throttle = old.throttle  # a reload (logrotate's nightly HUP) keeps the penalties
        else:
            throttle = Throttle(config)
            if not throttle.enabled:
                throttle = None
        backends = build_backends(config)  # the last step that can fail
        cache = self.cache
        if old is not None and cache is not None:
            cache.ttl, cache.negative_ttl = config.cache.ttl, config.cache.negative_ttl
            if _answers_identity(old.config) != _answers_identity(config):
                cache.flush()
        return Authenticator(config, backends, cache, throttle,
                             observers=[self.audit] + ([self.metrics.observe] if self.metrics
                                                       else []))

    def connection_opened(self) -> None:
        self.open_connections += 1
        if self.metrics is not None:
            self.metrics.connection_opened()

    def connection_closed(self) -> None:
        self.open_connections -= 1
        if self.metrics is not None:
            self.metrics.connection_closed()

    def spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- lifecycle ------------------------------------------------------------

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            self._servers.append(await self.loop.create_unix_server(
                lambda: Connection(self), sock=self.listen, backlog=1024))
            if self.control_sock is not None:
                self._servers.append(await self.loop.create_unix_server(
                    lambda: _ControlProtocol(self), sock=self.control_sock))
            if self.metrics is not None:
                await self.metrics.start()
        except BaseException:
            for srv in self._servers:
                srv.close()
            raise
        handlers = {signal.SIGTERM: self.stop, signal.SIGINT: self.stop,
                    signal.SIGHUP: lambda: self.spawn(self.reload())}
        for sig, handler in handlers.items():
            self.loop.add_signal_handler(sig, handler)
        self.loop.add_signal_handler(signal.SIGPIPE, lambda: None)
        for sig in early_signals:  # those that came while we were starting
            handlers[sig]()
        early_signals.clear()
        sweeper = self.loop.create_task(self._sweep())
        if ready is not None:
            ready()
        await self._stopping.wait()
        sweeper.cancel()
        await self._shutdown()

    async def _sweep(self) -> None:
        """Enforce the read deadline: ``waiting`` is in connection order, so only its
        head can be overdue.  (One task instead of one timer per connection.)"""
        while True:
            timeout = self.config.server.read_timeout
            await asyncio.sleep(min(1.0, timeout / 4))
            limit = time.monotonic() - timeout
            while self.waiting:
                oldest = next(iter(self.waiting))
                if oldest.opened > limit:
                    break
                oldest._drop("read timeout")

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def _shutdown(self) -> None:
        systemd.notify("STOPPING=1")
        log.info("stopping: finishing %d requests in flight", len(self.tasks))
        for srv in self._servers:
            srv.close()
        for conn in list(self.waiting):
            conn._drop("daemon stopping")
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.config.server.shutdown_grace)
        if self.metrics is not None:
            await self.metrics.stop()
        self.auth.close()
        self.audit.close()

    async def reload(self) -> None:
        log.info("SIGHUP: reloading the configuration")
        try:
            config = self.load_config()
            for key in ("run_dir",):
                if getattr(config, key) != getattr(self.config, key):
                    raise ConfigError(f"{key} cannot change on reload; restart the daemon")
            if (config.cache.enabled, config.cache.max_entries, config.server.processes) != (
                    self.config.cache.enabled, self.config.cache.max_entries,
                    self.config.server.processes):
                log.warning("the cache on/off, its size and [server] processes change only "
                            "on restart")
            old = self.auth
            auth = await self.loop.run_in_executor(None, self.build, config, old)
        except Exception as exc:
            self.audit.reopen()  # the same file: SIGHUP is also logrotate's signal
            if isinstance(exc, ConfigError):
                log.error("reload refused, keeping the running configuration: %s", exc)
            else:
                log.exception("reload failed, keeping the running configuration: %s", exc)
            return
        self.audit.options = config.audit
        self.audit.verbose = config.verbose
        self.audit.reopen()
        self.config = config
        self.auth = auth
        log.info("configuration reloaded: mechanisms %s", ",".join(config.mechanisms))
        while old.in_flight:
            await asyncio.sleep(0.05)
        old.close()
        if old.throttle is not None and old.throttle is not auth.throttle:
            old.throttle.close()  # its Redis connection and thread

    def status(self) -> dict:
        cache = self.cache
        return {
            "mechanisms": self.config.mechanisms, "processes": 1,
            "open_connections": self.open_connections, "in_flight": len(self.tasks),
            **({"cache_hits": cache.hits, "cache_misses": cache.misses} if cache else {}),
        }


class _ControlProtocol(asyncio.Protocol):
    """The control socket inside the single process's event loop."""

    def __init__(self, server: Server):
        self.server = server
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = peer_of(transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            line = control.request_line(self.buf)
        except ValueError:
            self.transport.close()
            return
        if line is None:
            return
        self.transport.write(control.reply(line, self.peer.uid, self.server.cache,
                                           self.server.status))
        self.transport.close()
