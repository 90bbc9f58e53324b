"""The asyncio UNIX-socket server: connections, limits, signals, reload, shutdown.

One request per connection.  A connection gets ``read_timeout`` seconds to send
its request; beyond ``max_connections`` the oldest connection that has not
finished sending is dropped, so idle or half-sent connections (slowloris) can
never keep a good client waiting.  Cache hits are answered inside
``data_received``; everything else becomes a task on the loop whose blocking
parts run in the worker pool.
"""

from __future__ import annotations

import asyncio
import fcntl
import grp
import json
import logging
import os
import signal
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import protocol, systemd
from .audit import Audit
from .authenticator import Authenticator, Peer
from .backends import backend_class
from .backends.base import Backend, ConfigError
from .cache import CredentialCache
from .config import Config
from .throttle import Throttle

log = logging.getLogger("saslauthpy")

_PEERCRED = struct.Struct("3i")


def peer_of(transport: asyncio.BaseTransport) -> Peer:
    def fetch() -> tuple[int, int, int]:
        try:
            sock = transport.get_extra_info("socket")
            return _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except (OSError, AttributeError):
            return (0, -1, -1)

    return Peer(fetch)


class Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "buf", "timer", "done", "opened", "peer")

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
        self.timer = server.loop.call_later(server.config.server.read_timeout, self._timeout)
        server.connection_opened()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.done = True
            self.timer.cancel()
            self.server.waiting.pop(self, None)
        self.server.connection_closed()

    def eof_received(self) -> bool:
        if not self.done:  # the client gave up before sending a whole request
            if self.buf:
                self._drop("truncated request")
            else:  # connect-and-close (a health check): nothing to record
                self.done = True
                self.timer.cancel()
                self.server.waiting.pop(self, None)
                self.transport.close()
        return False

    def _timeout(self) -> None:
        if not self.done:
            self._drop("read timeout")

    def _drop(self, reason: str, reply: bytes | None = None) -> None:
        self.done = True
        self.timer.cancel()
        self.server.waiting.pop(self, None)
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
        self.done = True
        self.timer.cancel()
        server.waiting.pop(self, None)
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


def _cache_identity(config: Config) -> tuple:
    # A reload keeps the cache only if nothing that decides its answers changed.
    return (repr(config.cache), config.mechanisms, config.mech_options, repr(config.sections),
            config.realm_join)


class Server:
    def __init__(self, config: Config, load_config: Callable[[], Config]):
        self.config = config
        self.load_config = load_config
        self.waiting: OrderedDict[Connection, None] = OrderedDict()
        self.tasks: set[asyncio.Task] = set()
        self.open_connections = 0
        self.metrics = None
        self._pidfile: int | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._stopping: asyncio.Event | None = None
        self._own_socket = True

    # -- pipeline -------------------------------------------------------------

    def build(self, config: Config, old: Authenticator | None = None) -> Authenticator:
        """Everything that depends on the configuration; raises ConfigError."""
        backends = build_backends(config)
        pool = self.pool if old and old.config.threads == config.threads else \
            ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="saslauthpy")
        cache = None
        if config.cache.enabled:
            if old and old.cache and _cache_identity(old.config) == _cache_identity(config):
                cache = old.cache
            else:
                cache = CredentialCache(config.cache.max_entries, config.cache.ttl,
                                        config.cache.negative_ttl)
        if old and old.throttle and old.config.section("throttle") == config.section("throttle"):
            throttle = old.throttle  # a reload (logrotate's nightly HUP) keeps the penalties
        else:
            throttle = Throttle(config)
            if not throttle.enabled:
                throttle = None
        self.pool = pool
        return Authenticator(config, backends, pool, cache, throttle,
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

    # -- files ----------------------------------------------------------------

    def _prepare_run_dir(self) -> None:
        cfg = self.config
        if not os.path.isdir(cfg.run_dir):
            os.makedirs(cfg.run_dir, mode=cfg.server.dir_mode, exist_ok=True)
            os.chmod(cfg.run_dir, cfg.server.dir_mode)
            self._chgrp(cfg.run_dir)

    def _chgrp(self, path: str) -> None:
        group = self.config.server.socket_group
        if group:
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                raise ConfigError(f"[server] socket_group: no group named {group!r}")

    def _lock_pidfile(self) -> None:
        path = self.config.pid_path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                f"another instance is already running (pid file {path} is locked); "
                "stop it first or use another -m directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pidfile = fd

    def _listen_socket(self) -> socket.socket:
        passed = systemd.listen_socket()
        if passed is not None:
            self._own_socket = False
            log.info("using the socket passed by the service manager")
            return passed
        path = self.config.socket_path
        if os.path.lexists(path):
            os.unlink(path)  # stale: we hold the pid lock, so nobody else serves it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, self.config.server.socket_mode)
        self._chgrp(path)
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    def _cleanup_files(self) -> None:
        paths = [self.config.control_path]
        if self._own_socket:
            paths.append(self.config.socket_path)
        if self._pidfile is not None:
            paths.append(self.config.pid_path)
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        if self._pidfile is not None:
            os.close(self._pidfile)
            self._pidfile = None

    # -- lifecycle ------------------------------------------------------------

    def prepare(self) -> None:
        """Everything that can fail because of the environment, before serving."""
        self._prepare_run_dir()
        self._lock_pidfile()
        try:
            self.audit = Audit(self.config.audit, self.config.verbose)
            if self.config.section("metrics"):
                self.metrics = _metrics(self.config)
            self.auth = self.build(self.config)
            self.listen = self._listen_socket()
        except BaseException:
            self._cleanup_files()
            raise

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            self._servers.append(await self.loop.create_unix_server(
                lambda: Connection(self), sock=self.listen, backlog=1024))
            await self._start_control()
            if self.metrics is not None:
                await self.metrics.start()
        except BaseException:
            for srv in self._servers:
                srv.close()
            self._cleanup_files()
            raise
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, lambda: self.spawn(self.reload()))):
            self.loop.add_signal_handler(sig, handler)
        self.loop.add_signal_handler(signal.SIGPIPE, lambda: None)
        log.info("listening on %s with mechanisms %s (%d workers, cache %s)",
                 self.config.socket_path, ",".join(self.config.mechanisms), self.config.threads,
                 "on" if self.config.cache.enabled else "off")
        systemd.notify("READY=1\nSTATUS=serving")
        await self._stopping.wait()
        await self._shutdown()

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
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.audit.close()
        self._cleanup_files()
        log.info("stopped")

    async def reload(self) -> None:
        log.info("SIGHUP: reloading the configuration")
        try:
            config = self.load_config()
            for key in ("run_dir",):
                if getattr(config, key) != getattr(self.config, key):
                    raise ConfigError(f"{key} cannot change on reload; restart the daemon")
            old = self.auth
            self.audit.options = config.audit
            self.audit.verbose = config.verbose
            self.audit.reopen()
            old_pool = self.pool
            auth = await self.loop.run_in_executor(None, self.build, config, old)
        except ConfigError as exc:
            self.audit.reopen()
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        except Exception as exc:
            log.exception("reload failed, keeping the running configuration: %s", exc)
            return
        self.config = config
        self.auth = auth
        log.info("configuration reloaded: mechanisms %s", ",".join(config.mechanisms))
        while old.in_flight:
            await asyncio.sleep(0.05)
        old.close()
        if old_pool is not self.pool:
            old_pool.shutdown(wait=False)

    # -- control socket (saslauthpy-admin cache flush) -----------------------------

    async def _start_control(self) -> None:
        path = self.config.control_path
        if os.path.lexists(path):
            os.unlink(path)
        old_umask = os.umask(0o177)
        try:
            self._servers.append(await self.loop.create_unix_server(
                lambda: _ControlProtocol(self), path=path))
        finally:
            os.umask(old_umask)

    def control(self, request: dict, peer: Peer) -> dict:
        if peer.uid not in (0, os.getuid()):
            return {"ok": False, "error": "permission denied"}
        cmd = request.get("cmd")
        cache = self.auth.cache
        if cmd == "flush":
            if cache is None:
                return {"ok": True, "flushed": 0, "note": "the cache is off"}
            n = cache.flush(request.get("login"), request.get("realm"))
            log.info("cache flush %s: %d entries", request.get("login") or "(all)", n)
            return {"ok": True, "flushed": n}
        if cmd == "status":
            return {
                "ok": True, "pid": os.getpid(), "mechanisms": self.config.mechanisms,
                "open_connections": self.open_connections, "in_flight": len(self.tasks),
                "cache": None if cache is None else
                {"entries": len(cache), "hits": cache.hits, "misses": cache.misses},
            }
        return {"ok": False, "error": f"unknown command {cmd!r}"}


class _ControlProtocol(asyncio.Protocol):
    """One JSON line in, one JSON line out."""

    def __init__(self, server: Server):
        self.server = server
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = peer_of(transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\n" not in self.buf:
            if len(self.buf) > 4096:
                self.transport.close()
            return
        line = self.buf.split(b"\n", 1)[0]
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
            reply = self.server.control(request, self.peer)
        except ValueError as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        self.transport.write(json.dumps(reply).encode() + b"\n")
        self.transport.close()


def run(config: Config, load_config: Callable[[], Config], ready: Callable[[], None] | None = None
        ) -> int:
    server = Server(config, load_config)
    server.prepare()
    if ready is not None:
        ready()
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.serve())
    else:
        uvloop.run(server.serve())
    return 0
