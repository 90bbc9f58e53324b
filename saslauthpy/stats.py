"""A worker's numbers as plain counters, and the sum over every worker.

``Stats.observe`` is called once per decision of the pipeline (the asyncio path and the
inline lane), metrics on or off; the fast lane's cached answers are counted on their own
(``fastlane.Counts``) and both are folded into one snapshot when the worker publishes it
on the scoreboard.  ``merge`` adds up the snapshots of every worker: that is what
``status`` reports and what a scrape renders (``metrics.render``).  No prometheus_client
object is touched per request.
"""

from __future__ import annotations

import bisect
import os
import resource
from typing import Any

from .fastlane import LATENCY_BUCKETS, Counts

DEFAULT_MAX_SERVICES = 32
MAX_SERVICE_LABEL = 32
# Counters: they add up over workers and over the lives of one worker slot.
COUNTERS = ("requests", "latency", "latency_sum", "cache_hits", "cache_misses",
            "backend_errors", "delay", "connections", "fast_answered", "handed_over",
            "inline_answered", "cpu_seconds")
# Gauges: a worker's current value, summed over the live workers.
GAUGES = ("connections_open", "in_flight", "rss_bytes", "open_fds")


class Stats:
    """One worker's counters (cumulative over every life of its scoreboard slot)."""

    def __init__(self, max_services: int = DEFAULT_MAX_SERVICES, count_cache: bool = True,
                 carried: dict[str, Any] | None = None):
        self.max_services = max_services
        self.count_cache = count_cache
        self.requests: dict[tuple[str, str, str], int] = {}
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.cache_hits = self.cache_misses = 0
        self.backend_errors: dict[str, int] = {}
        self.delay = 0.0
        self._services: set[str] = set()
        # What the slot's earlier lives counted: a restarted worker goes on from there.
        self.carried = {k: v for k, v in (carried or {}).items() if k in COUNTERS}
        self._cpu_at_start = _cpu_seconds()

    def service_label(self, service: str) -> str:
        """The service as a label: bounded in number and length, printable ASCII."""
        if service in self._services:
            return service
        if (len(self._services) >= self.max_services or len(service) > MAX_SERVICE_LABEL
                or not (service.isascii() and service.isprintable())):
            return "other"
        self._services.add(service)
        return service

    def observe(self, decision: Any) -> None:
        result = decision.result
        mechanism = decision.backend or "none"
        key = (mechanism, self.service_label(decision.service), result)
        self.requests[key] = self.requests.get(key, 0) + 1
        latency = decision.latency
        self.latency[_bucket(latency)] += 1
        self.latency_sum += latency
        if result == "malformed":
            return
        if self.count_cache:
            if decision.cached:
                self.cache_hits += 1
            else:
                self.cache_misses += 1
        if result == "tempfail":
            self.backend_errors[mechanism] = self.backend_errors.get(mechanism, 0) + 1
        if decision.delay > 0:
            self.delay += decision.delay

    def snapshot(self, lane: Counts | None = None, **gauges: Any) -> dict[str, Any]:
        """Everything counted so far, the fast lane's answers folded in."""
        requests = dict(self.requests)
        latency = list(self.latency)
        latency_sum = self.latency_sum
        hits = self.cache_hits
        answered = handed = accepted = inline = 0
        if lane is not None:
            answered, handed, accepted = lane.answered, lane.handed, lane.accepted
            inline = lane.inline
            for service, n in list(lane.by_service.items()):
                key = ("cache", self.service_label(service.decode("utf-8", "surrogateescape")),
                       "ok")
                requests[key] = requests.get(key, 0) + n
            latency = [a + b for a, b in zip(latency, lane.latency, strict=True)]
            latency_sum += lane.latency_sum
            if self.count_cache:
                hits += answered
        snap = {
            "requests": requests, "latency": latency, "latency_sum": latency_sum,
            "cache_hits": hits, "cache_misses": self.cache_misses,
            "backend_errors": dict(self.backend_errors), "delay": self.delay,
            "connections": accepted, "fast_answered": answered, "handed_over": handed,
            "inline_answered": inline,
            "cpu_seconds": _cpu_seconds() - self._cpu_at_start,
        }
        snap = add(snap, self.carried)
        snap.update(gauges, rss_bytes=_rss_bytes(), pid=os.getpid())
        return snap


def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Counters of ``b`` added to those of ``a`` (a new dict; ``a``'s other keys kept)."""
    out = dict(a)
    for name, value in b.items():
        mine = out.get(name)
        if isinstance(value, dict):
            merged = dict(mine or {})
            for k, v in value.items():
                merged[k] = merged.get(k, 0) + v
            out[name] = merged
        elif isinstance(value, list):
            out[name] = [x + y for x, y in zip(mine, value, strict=True)] if mine else list(value)
        else:
            out[name] = (mine or 0) + value
    return out


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole daemon: counters and gauges summed over the workers' snapshots."""
    total: dict[str, Any] = {"workers": len(snapshots)}
    for snap in snapshots:
        total = add(total, {k: v for k, v in snap.items() if k in COUNTERS or k in GAUGES})
    return total


def _bucket(latency: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS, latency)  # the first bound >= latency


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0
