"""Prometheus metrics: counters fed by every decision, served on an optional listener.

Off unless the TOML file has a ``[metrics]`` table with a non-empty ``listen``::

    [metrics]
    listen = "127.0.0.1:9101"                 # or "[::1]:9101"
    # listen = "unix:/run/saslauthd/metrics.sock"
    # socket_mode = "0660"                    # UNIX socket only
    # max_services = 32                       # distinct service labels before "other"

The listener is a small HTTP/1.0 responder on the daemon's own asyncio loop
(``GET /metrics``; ``/`` answers the same), so no thread and no extra port is
opened when metrics are off.  Exposed series (all prefixed ``saslauthpy_``):

- ``requests_total{mechanism,service,result}``: answered requests; ``mechanism``
  is the backend that answered (``cache`` for a cache hit, ``none`` for a malformed
  request or an empty chain); ``result`` is ok, fail, unknown, tempfail or malformed.
- ``cache_hits_total`` / ``cache_misses_total``: only when the credential cache is on.
- ``request_duration_seconds`` histogram (socket accept to reply, throttle delay included).
- ``backend_errors_total{mechanism}``: temporary failures (backend down or broken).
- ``throttle_delay_seconds_total``: time requests spent waiting on penalties/fail delays.
- ``connections_open`` gauge and ``connections_total`` counter.
- ``process_*`` (memory, CPU, file descriptors) and ``saslauthpy_info{version}``.

The ``service`` label comes from the client, and any local user who can reach the
socket can send any string; past ``max_services`` distinct names (or for a name that
is long or not printable ASCII) the label is ``other``, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from . import __version__
from .errors import ConfigError

log = logging.getLogger("saslauthpy")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_SERVICE_LABEL = 32
# Cache hits take microseconds, backends (PAM fail delay, LDAP, bcrypt) up to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)
MAX_HTTP_REQUEST = 8192
HTTP_READ_TIMEOUT = 5.0


class DecisionLike(Protocol):
    result: str
    backend: str
    cached: bool
    latency: float
    delay: float  # seconds waited on a throttle penalty or a backend's fail delay

    @property
    def service(self) -> str: ...


class Listen:
    """A parsed ``listen`` value: a TCP host/port or a UNIX socket path."""

    def __init__(self, text: str):
        self.text = text
        self.path = ""
        self.host = ""
        self.port = 0
        if text.startswith("unix:"):
            self.path = text[5:]
            if not os.path.isabs(self.path):
                raise ConfigError(f"[metrics] listen: {text!r} needs an absolute path "
                                  f"like \"unix:/run/saslauthd/metrics.sock\"")
            return
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"[metrics] listen: {text!r} is not \"HOST:PORT\" "
                              f"(e.g. \"127.0.0.1:9101\") or \"unix:/PATH\"")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self.host = host
        self.port = int(port)


class Metrics:
    """Counters for one daemon; ``observe()`` is called once per answered request."""

    def __init__(self, config: Any):
        opts = config.metrics
        self.listen = Listen(opts.listen) if opts.listen.strip() else None
        self.socket_mode = opts.socket_mode
        self.max_services = opts.max_services
        self.count_cache = config.cache.enabled
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("saslauthpy_requests", "Answered requests",
                                ["mechanism", "service", "result"], registry=r)
        self.cache_hits = Counter("saslauthpy_cache_hits", "Requests answered from the cache",
                                  registry=r)
        self.cache_misses = Counter("saslauthpy_cache_misses",
                                    "Requests the cache could not answer", registry=r)
        self.latency = Histogram("saslauthpy_request_duration_seconds",
                                 "Time from accepting a request to replying",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.backend_errors = Counter("saslauthpy_backend_errors",
                                      "Temporary backend failures (unreachable or broken)",
                                      ["mechanism"], registry=r)
        self.delay = Counter("saslauthpy_throttle_delay_seconds",
                             "Seconds requests waited on penalties and fail delays", registry=r)
        self.open_connections = Gauge("saslauthpy_connections_open", "Open client connections",
                                      registry=r)
        self.connections = Counter("saslauthpy_connections", "Accepted client connections",
                                   registry=r)
        info = Gauge("saslauthpy_info", "Version of the running daemon", ["version"], registry=r)
        info.labels(__version__).set(1)
        ProcessCollector(registry=r)
        # labels() takes a lock and checks its arguments: the hot path keeps its own memo.
        self._children: dict[tuple[str, ...], Any] = {}
        self._services: set[str] = set()
        self._error_children: dict[tuple[str, ...], Any] = {}
        self._server: asyncio.AbstractServer | None = None

    # -- the hot path -------------------------------------------------------------

    def _service_label(self, service: str) -> str:
        if (len(self._services) >= self.max_services or len(service) > MAX_SERVICE_LABEL
                or not (service.isascii() and service.isprintable())):
            return "other"
        self._services.add(service)
        return service

    def observe(self, decision: DecisionLike) -> None:
        result = decision.result
        mechanism = decision.backend or "none"
        service = decision.service
        if service not in self._services:
            service = self._service_label(service)
        _child(self._children, self.requests, mechanism, service, result).inc()
        self.latency.observe(decision.latency)
        if result == "malformed":
            return
        if self.count_cache:
            if decision.cached:
                self.cache_hits.inc()
            else:
                self.cache_misses.inc()
        if result == "tempfail":
            _child(self._error_children, self.backend_errors, mechanism).inc()
        if decision.delay > 0:
            self.delay.inc(decision.delay)

    def connection_opened(self) -> None:
        self.connections.inc()
        self.open_connections.inc()

    def connection_closed(self) -> None:
        self.open_connections.dec()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- the listener ---------------------------------------------------------------

    async def start(self) -> None:
        """Listen if configured; a listener that cannot be opened raises ``ConfigError``."""
        if self.listen is None or self._server is not None:
            return
        listen = self.listen
        try:
            if listen.path:
                _remove_stale_socket(listen.path)
                self._server = await asyncio.start_unix_server(
                    self._serve, path=listen.path, limit=MAX_HTTP_REQUEST)
                os.chmod(listen.path, self.socket_mode)
            else:
                self._server = await asyncio.start_server(
                    self._serve, listen.host, listen.port, limit=MAX_HTTP_REQUEST)
        except OSError as exc:
            raise ConfigError(f"[metrics] listen: cannot listen on {listen.text}: "
                              f"{exc.strerror or exc}") from exc
        log.info("metrics: serving on %s", listen.text)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        if self.listen is not None and self.listen.path:
            with contextlib.suppress(OSError):
                _remove_stale_socket(self.listen.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HTTP_READ_TIMEOUT)
            except asyncio.LimitOverrunError:
                await self._respond(writer, "431 Request Header Fields Too Large", b"")
                return
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].split()
            method = parts[0] if parts else b""
            target = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            if method not in (b"GET", b"HEAD"):
                await self._respond(writer, "405 Method Not Allowed", b"only GET\n")
            elif target not in (b"/metrics", b"/"):
                await self._respond(writer, "404 Not Found", b"try /metrics\n")
            else:
                body = self.render()
                await self._respond(writer, "200 OK", body, CONTENT_TYPE, method == b"HEAD")
        except Exception:  # a scrape must never disturb the daemon
            log.exception("metrics: serving a scrape failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: str, body: bytes,
                       content_type: str = "text/plain; charset=utf-8",
                       head_only: bool = False) -> None:
        header = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        writer.write(header if head_only else header + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def _child(memo: dict[tuple[str, ...], Any], metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once per label set."""
    child = memo.get(labels)
    if child is None:
        child = memo[labels] = metric.labels(*labels)
    return child


def _remove_stale_socket(path: str) -> None:
    """Remove ``path`` if it is a socket left behind; refuse to remove anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(17, f"{path} exists and is not a socket")
    os.unlink(path)
