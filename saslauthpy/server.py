"""One worker process: the fast lane, the asyncio path, limits, reload, shutdown.

One request per connection.  The fast lane (fastlane.py) takes every connection off the
shared listening socket and answers a cached OK itself.  A whole request it cannot
answer comes here parsed (``take``) and is answered on its descriptor; anything else
comes with the bytes read so far (``adopt``) and becomes an asyncio connection
(connection.py), which gets ``read_timeout`` seconds to send its request.

``max_connections`` bounds every connection the process holds, whether it is still
sending or its whole request waits for a penalty, the pool or a slow backend: beyond it
the oldest connection still sending is dropped, and when every other connection holds a
whole request the newcomer is refused.  So idle or half-sent connections (slowloris)
never keep a good client waiting, and a flood cannot take every descriptor.

Blocking parts of an answer (backends, hashing) run in the backends' own pools; the
process's numbers go on the scoreboard (``publish``) for the status and for scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from . import protocol, rundir
from .acceptors import ACCEPTORS
from .audit import Audit
from .authenticator import Authenticator, Decision, Peer
from .backends import backend_class
from .backends.base import Backend
from .cache import CredentialCache
from .config import Config
from .connection import Connection
from .errors import ConfigError
from .eventloop import early_signals
from .fastlane import Counts, FastLane, peercred
from .penalties import PenaltyTable
from .scoreboard import Scoreboard
from .stats import Stats, merge
from .throttle import Throttle

log = logging.getLogger("saslauthpy")

PUBLISH_INTERVAL = 1.0  # seconds between a worker's scoreboard snapshots


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


def metrics_module():
    """The metrics module, imported only when ``[metrics]`` asks for it."""
    try:
        from . import metrics
    except ImportError as exc:
        raise ConfigError(f"[metrics] needs {exc.name}: pip install 'saslauthpy[metrics]'")
    return metrics


def _answers_identity(config: Config) -> tuple:
    # What decides the answers: if it changes on reload, cached answers are stale (a lower
    # max_field too: the fast lane asks the cache before it checks the fields' lengths).
    return (config.mechanisms, config.mech_options, config.backends, config.realm_join,
            config.server.max_field)


def lane_shape(config: Config, auth: Authenticator) -> tuple[str, int]:
    """The fast lane's acceptors for a configuration and its pipeline: their kind
    (``[server] accept``) and how many."""
    kind = config.server.accept
    if kind == "auto":  # only a thread checks inline; else the loop saves a hop
        kind = "thread" if auth.inline else "loop"
    count = 1
    if kind == "thread" and auth.inline and auth.waits:
        # Checks that wait on a server, one at a time per thread: as many threads as the C
        # saslauthd has processes waiting (-n), shared by the worker processes.
        count = -(-config.threads // max(1, config.server.processes))
    return kind, count


def _reply(fd: int, reply: bytes) -> None:
    """Write a reply to a raw descriptor and close it (a client gone early is no error)."""
    try:
        os.write(fd, reply)
    except OSError:
        pass
    finally:
        os.close(fd)


class Shared:
    """What the worker processes share, made once before they are forked."""

    def __init__(self, listen: socket.socket, cache: CredentialCache | None,
                 penalties: PenaltyTable, board: Scoreboard,
                 metrics_sock: socket.socket | None = None, dovecot: Any = None,
                 pairs: Any = None):
        """``dovecot``: the ``[dovecot]`` listener (dovecot_listener.py), whose ``await
        start(server)`` serves it; ``pairs``: the throttle's good pairs (goodpairs.py)."""
        self.listen = listen
        self.cache = cache
        self.penalties = penalties
        self.board = board
        self.metrics_sock = metrics_sock
        self.dovecot = dovecot
        self.pairs = pairs


class Server:
    """One worker process's event loop: accepts on the shared listening socket and answers.

    ``slot`` is its place on the scoreboard (the supervisor's numbering of its workers).
    """

    def __init__(self, config: Config, load_config: Callable[[], Config], shared: Shared,
                 slot: int = 0):
        self.config = config
        self.load_config = load_config
        self.shared = shared
        self.cache = shared.cache
        self.slot = slot
        self.connections: OrderedDict[Connection, None] = OrderedDict()  # asyncio ones
        self.waiting: OrderedDict[Connection, None] = OrderedDict()  # those still sending
        self.taken = 0  # whole requests from the fast lane, waiting for their answer
        self.tasks: set[asyncio.Task] = set()
        self.metrics = None
        self.max_connections = rundir.connection_cap(config)
        self._refused_logged = 0.0
        self._audit_lock = threading.Lock()  # the fast lane's thread writes records too
        self._stats_lock = threading.Lock()  # and counts its inline answers
        self._stopping: asyncio.Event | None = None

    # -- pipeline -------------------------------------------------------------

    def prepare(self) -> None:
        """Open what depends on the configuration; raises ConfigError."""
        cfg = self.config
        self.audit = Audit(cfg.audit, cfg.verbose)
        carried = self.shared.board.read(self.slot)  # a dead predecessor's counts
        self.stats = Stats(count_cache=cfg.cache.enabled, carried=carried)
        self.stats.max_services = cfg.metrics.max_services
        if cfg.metrics.listen:
            self.metrics = metrics_module().Metrics(cfg, self.totals)
        self.lanes: list[FastLane] = []  # made by serve(), with their acceptors
        self.lane_shape = ("", 0)  # their kind and number (lane_shape)
        self.auth = self.build(cfg)

    def record(self, decision: Decision) -> None:
        """The audit's observer, shared with the fast lane's thread."""
        with self._audit_lock:
            self.audit(decision)

    def count(self, decision: Decision) -> None:
        """The numbers' observer, shared likewise."""
        with self._stats_lock:
            self.stats.observe(decision)

    def build(self, config: Config, old: Authenticator | None = None) -> Authenticator:
        """Everything that depends on the configuration; raises ConfigError and then
        leaves the running pipeline (``old``) untouched."""
        if old and old.throttle and old.config.throttle == config.throttle:
            throttle = old.throttle  # a reload (logrotate's nightly HUP) keeps its Redis link
        else:
            throttle = Throttle(config, penalties=self.shared.penalties,
                                pairs=self.shared.pairs)
            if not throttle.enabled:
                throttle = None
        backends = build_backends(config)  # the last step that can fail
        cache = self.cache
        if old is not None and cache is not None:
            cache.ttl, cache.negative_ttl = config.cache.ttl, config.cache.negative_ttl
        return Authenticator(config, backends, cache, throttle,
                             observers=[self.record, self.count])

    def _configure_lanes(self) -> None:
        opts = self.audit.options
        each = bool(opts.file) or (opts.syslog and self.audit.verbose)
        for lane in self.lanes:
            lane.configure(self.auth, self.config.server.max_field,
                           self.record if each else None, self.metrics is not None)

    def spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- connections from the fast lane -----------------------------------------

    def adopt(self, fd: int, data: bytes, done: Callable[[], None] | None = None) -> None:
        """Take a connection the fast lane could not answer, with what it read;
        ``done()`` once it is counted (or gone)."""
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            if done is not None:
                done()
            return
        self.spawn(self._adopt(sock, data, done))

    async def _adopt(self, sock: socket.socket, data: bytes,
                     done: Callable[[], None] | None) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: Connection(self, data), sock)
        except OSError:
            sock.close()
        finally:
            if done is not None:
                done()

    def take(self, fd: int, req: protocol.Request, started: float,
             done: Callable[[], None] | None = None) -> None:
        """A whole request the fast lane read but could not answer: answered on its
        descriptor (no transport is needed for a request already read)."""
        try:
            peer = Peer(lambda: peercred(fd))
            reply = self.auth.answer_from_cache(req, peer, started)
            if reply is not None:
                _reply(fd, reply)
            elif self.held() >= self.max_connections and not self.shed():
                self._refused(peer, started)
                os.close(fd)
            else:
                self.taken += 1
                self.spawn(self._answer_taken(fd, req, peer, started))
        finally:
            if done is not None:
                done()

    async def _answer_taken(self, fd: int, req: protocol.Request, peer: Peer,
                            started: float) -> None:
        try:
            try:
                reply = await self.auth.answer(req, peer, started)
            except Exception:
                log.exception("failed to answer %r", req)
                reply = protocol.format_reply("NO internal error")
            _reply(fd, reply)
        finally:
            self.taken -= 1

    def held(self) -> int:
        """Connections this process holds (what ``max_connections`` bounds)."""
        return len(self.connections) + self.taken

    def shed(self, newcomer: Connection | None = None) -> bool:
        """Make room: drop the oldest connection still sending (True).  When every other
        connection holds a whole request, refuse ``newcomer`` (False)."""
        for conn in self.waiting:
            if conn is not newcomer:
                conn._drop("dropped: too many open connections")
                return True
        if newcomer is not None:
            newcomer._finish()
            self._refused(newcomer.peer, newcomer.opened)
            newcomer.transport.close()
        return False

    def _refused(self, peer: Peer, started: float) -> None:
        now = time.monotonic()
        if now - self._refused_logged > 60:
            self._refused_logged = now
            log.warning("%d connections hold whole requests (max_connections): refusing "
                        "new ones until answers go out", self.held())
        self.auth.malformed("refused: too many connections holding requests", peer, started)

    # -- numbers ------------------------------------------------------------------

    def publish(self) -> None:
        """Put this worker's numbers on the scoreboard."""
        gauges = {"connections_open": self.held(), "in_flight": len(self.tasks)}
        if self.metrics is not None:
            gauges["open_fds"] = len(os.listdir("/proc/self/fd"))
        self.shared.board.publish(self.slot, self.stats.snapshot(
            Counts.total(lane.counts for lane in self.lanes), **gauges))

    def totals(self) -> dict:
        """Every worker's numbers, this one's fresh."""
        self.publish()
        return merge(self.shared.board.read_all())

    async def _publisher(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(PUBLISH_INTERVAL)

    # -- lifecycle ------------------------------------------------------------

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if self.metrics is not None:
            await self.metrics.start(self.shared.metrics_sock)
        self.lane_shape = kind, count = lane_shape(self.config, self.auth)
        self.lanes = [FastLane(self.adopt, self.take, self.config.server.max_field)
                      for _ in range(count)]
        self._configure_lanes()
        acceptors = [ACCEPTORS[kind](self.shared.listen, lane, self.loop, self.shed)
                     for lane in self.lanes]
        self.acceptor = acceptors[0]
        for acceptor in acceptors:
            acceptor.start()
        dovecot = await self.shared.dovecot.start(self) if self.shared.dovecot else None
        handlers = {signal.SIGTERM: self.stop, signal.SIGINT: self.stop,
                    signal.SIGHUP: lambda: self.spawn(self.reload())}
        for sig, handler in handlers.items():
            self.loop.add_signal_handler(sig, handler)
        self.loop.add_signal_handler(signal.SIGPIPE, lambda: None)
        for sig in early_signals:  # those that came while we were starting
            handlers[sig]()
        early_signals.clear()
        helpers = [self.loop.create_task(self._sweep()), self.loop.create_task(self._publisher())]
        if ready is not None:
            ready()
        await self._stopping.wait()
        for acceptor in acceptors:
            acceptor.stop()
        if dovecot is not None:
            dovecot.close()
        for task in helpers:
            task.cancel()
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
        log.info("stopping: finishing %d requests in flight", len(self.tasks))
        for conn in list(self.waiting):
            conn._drop("daemon stopping")
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.config.server.shutdown_grace)
        self.publish()
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
            if (config.cache.enabled, config.cache.max_entries, config.server.processes,
                    config.dovecot) != (
                    self.config.cache.enabled, self.config.cache.max_entries,
                    self.config.server.processes, self.config.dovecot):
                log.warning("the cache on/off, its size, [server] processes and [dovecot] "
                            "change only on restart")
            old = self.auth
            auth = await self.loop.run_in_executor(None, self.build, config, old)
            shape = lane_shape(config, auth)
            if shape != self.lane_shape:
                log.warning("the fast lane keeps its %s acceptors (%d) until a restart; this "
                            "configuration would have %s acceptors (%d): the mechanisms, -n "
                            "and [server] accept and processes decide", *self.lane_shape,
                            *shape)
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
        self.max_connections = rundir.connection_cap(config)
        self._configure_lanes()
        if self.cache is not None and _answers_identity(old.config) != _answers_identity(config):
            # After the swap, on the loop: requests still running on the old pipeline came
            # in before this flush, so the cache will not keep their answers.
            self.cache.flush()
        log.info("configuration reloaded: mechanisms %s", ",".join(config.mechanisms))
        while old.busy():
            await asyncio.sleep(0.05)
        old.close()
        if old.throttle is not None and old.throttle is not auth.throttle:
            old.throttle.close()  # its Redis connection and thread
