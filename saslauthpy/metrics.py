"""Prometheus metrics: the whole daemon's numbers, served on an optional listener.

Off unless the TOML file has a ``[metrics]`` table with a non-empty ``listen``::

    [metrics]
    listen = "127.0.0.1:9101"                 # or "[::1]:9101"
    # listen = "unix:/run/saslauthd/metrics.sock"
    # socket_mode = "0660"                    # UNIX socket only
    # max_services = 32                       # distinct service labels before "other"

The daemon opens the listener once, before it forks its worker processes, and every
worker serves scrapes on it: a small HTTP/1.0 responder on the worker's own asyncio loop
(``GET /metrics``; ``/`` answers the same).  Whichever worker takes a scrape renders the
sum of every worker's numbers (stats.py, read from the scoreboard): its own as of now,
the others' as of their last snapshot (at most a second old).  Nothing per request
touches prometheus_client.  Exposed series (all prefixed ``saslauthpy_``):

- ``requests_total{mechanism,service,result}``: answered requests; ``mechanism``
  is the backend that answered (``cache`` for a cache hit, ``none`` for a malformed
  request or an empty chain); ``result`` is ok, fail, unknown, tempfail or malformed.
- ``cache_hits_total`` / ``cache_misses_total``: only when the credential cache is on.
- ``request_duration_seconds`` histogram (socket accept to reply, throttle delay included).
- ``backend_errors_total{mechanism}``: temporary failures (backend down or broken).
- ``throttle_delay_seconds_total``: time requests spent waiting on penalties/fail delays.
- ``connections_open`` gauge and ``connections_total`` counter.
- ``fast_lane_answers_total`` (cached OKs written straight from the accepted descriptor),
  ``inline_answers_total`` (requests the fast lane's thread checked and answered itself)
  and ``handed_over_total`` (connections the fast lane gave to the asyncio path).
- ``worker_processes``, ``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
  ``process_open_fds`` (summed over the worker processes) and ``saslauthpy_info{version}``.

The ``service`` label comes from the client, and any local user who can reach the
socket can send any string; past ``max_services`` distinct names (or for a name that
is long or not printable ASCII) the label is ``other``, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from . import __version__
from .errors import ConfigError
from .fastlane import LATENCY_BUCKETS

log = logging.getLogger("saslauthpy")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HTTP_REQUEST = 8192
HTTP_READ_TIMEOUT = 5.0


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
    """The listener; each scrape renders ``totals()``, the whole daemon's numbers
    (``stats.merge`` of every worker's snapshot)."""

    def __init__(self, config: Any, totals: Callable[[], dict[str, Any]]):
        opts = config.metrics
        self.listen = Listen(opts.listen) if opts.listen.strip() else None
        self.socket_mode = opts.socket_mode
        self.max_services = opts.max_services
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(totals))
        self._server: asyncio.AbstractServer | None = None
        self._own_path = ""  # a UNIX socket this object made (and removes on stop)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- the listener ---------------------------------------------------------------

    async def start(self, sock: socket.socket | None = None) -> None:
        """Serve on ``sock`` (the daemon's, opened before the fork), or on a listener of
        its own; one that cannot be opened raises ``ConfigError``."""
        if self.listen is None or self._server is not None:
            return
        if sock is None:
            sock = open_listener(self.listen, self.socket_mode)
            self._own_path = self.listen.path
            log.info("metrics: serving on %s", self.listen.text)
        if sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                           limit=MAX_HTTP_REQUEST)
        else:
            self._server = await asyncio.start_server(self._serve, sock=sock,
                                                      limit=MAX_HTTP_REQUEST)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        if self._own_path:
            with contextlib.suppress(OSError):
                _remove_stale_socket(self._own_path)

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


def open_listener(listen: Listen, mode: int) -> socket.socket:
    """The listening socket for ``listen``; raises ``ConfigError`` if it cannot be had."""
    try:
        if listen.path:
            _remove_stale_socket(listen.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(listen.path)
            os.chmod(listen.path, mode)
        else:
            family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((listen.host, listen.port))
        sock.listen(64)
        sock.setblocking(False)
        return sock
    except OSError as exc:
        raise ConfigError(f"[metrics] listen: cannot listen on {listen.text}: "
                          f"{exc.strerror or exc}") from exc


def open_for(config: Any) -> tuple[socket.socket | None, str]:
    """The daemon's metrics socket and its UNIX path ("" for TCP); None without one."""
    opts = config.metrics
    if not opts.listen.strip():
        return None, ""
    listen = Listen(opts.listen)
    sock = open_listener(listen, opts.socket_mode)
    log.info("metrics: serving on %s", listen.text)
    return sock, listen.path


class _Collector:
    """Prometheus families from one totals dict (see stats.py)."""

    def __init__(self, totals: Callable[[], dict[str, Any]]):
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        t = self.totals()
        fam = CounterMetricFamily("saslauthpy_requests", "Answered requests",
                                  labels=["mechanism", "service", "result"])
        for labels, n in sorted(t.get("requests", {}).items()):
            fam.add_metric(list(labels), n)
        yield fam
        yield _counter("saslauthpy_cache_hits", "Requests answered from the cache",
                       t.get("cache_hits", 0))
        yield _counter("saslauthpy_cache_misses", "Requests the cache could not answer",
                       t.get("cache_misses", 0))
        counts = t.get("latency") or [0] * (len(LATENCY_BUCKETS) + 1)
        running, buckets = 0, []
        for bound, n in zip([*map(floatToGoString, LATENCY_BUCKETS), "+Inf"], counts, strict=True):
            running += n
            buckets.append((bound, running))
        yield HistogramMetricFamily("saslauthpy_request_duration_seconds",
                                    "Time from accepting a request to replying",
                                    buckets=buckets, sum_value=t.get("latency_sum", 0.0))
        fam = CounterMetricFamily("saslauthpy_backend_errors",
                                  "Temporary backend failures (unreachable or broken)",
                                  labels=["mechanism"])
        for mechanism, n in sorted(t.get("backend_errors", {}).items()):
            fam.add_metric([mechanism], n)
        yield fam
        yield _counter("saslauthpy_throttle_delay_seconds",
                       "Seconds requests waited on penalties and fail delays", t.get("delay", 0))
        yield GaugeMetricFamily("saslauthpy_connections_open", "Open client connections",
                                value=t.get("connections_open", 0))
        yield _counter("saslauthpy_connections", "Accepted client connections",
                       t.get("connections", 0))
        yield _counter("saslauthpy_fast_lane_answers",
                       "Cached OKs written straight from the accepted descriptor",
                       t.get("fast_answered", 0))
        yield _counter("saslauthpy_inline_answers", "Requests the fast lane's thread checked "
                       "and answered itself", t.get("inline_answered", 0))
        yield _counter("saslauthpy_handed_over", "Connections the fast lane handed to the "
                       "asyncio path", t.get("handed_over", 0))
        yield GaugeMetricFamily("saslauthpy_worker_processes", "Worker processes reporting",
                                value=t.get("workers", 0))
        info = GaugeMetricFamily("saslauthpy_info", "Version of the running daemon",
                                 labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield _counter("process_cpu_seconds", "CPU seconds of the worker processes",
                       t.get("cpu_seconds", 0.0))
        yield GaugeMetricFamily("process_resident_memory_bytes",
                                "Resident memory of the worker processes",
                                value=t.get("rss_bytes", 0))
        if "open_fds" in t:
            yield GaugeMetricFamily("process_open_fds", "Open descriptors of the worker "
                                    "processes", value=t["open_fds"])


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _remove_stale_socket(path: str) -> None:
    """Remove ``path`` if it is a socket left behind; refuse to remove anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(17, f"{path} exists and is not a socket")
    os.unlink(path)
