"""Prometheus metrics: a worker's counters (Stats) rendered by the Metrics listener, the
listener over TCP and a UNIX socket, and scrapes of a daemon after real requests through
its socket, with one worker process and with several (every worker's numbers summed)."""

from __future__ import annotations

import asyncio
import socket
import stat
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

import harness
import pytest
from harness import need
from prometheus_client.parser import text_string_to_metric_families

from saslauthpy.config import MetricsOptions
from saslauthpy.errors import ConfigError
from saslauthpy.metrics import Metrics
from saslauthpy.options import load
from saslauthpy.stats import Stats, merge


def cfg(metrics: dict | None = None, cache: bool = True) -> SimpleNamespace:
    return SimpleNamespace(metrics=load(MetricsOptions, metrics, "[metrics] "),
                           cache=SimpleNamespace(enabled=cache))


class Counted:
    """A worker's Stats behind a Metrics listener, as one daemon process has them."""

    def __init__(self, metrics: dict | None = None, cache: bool = True):
        self.stats = Stats(count_cache=cache)
        self.metrics = Metrics(cfg(metrics, cache), lambda: merge([self.stats.snapshot()]))
        self.stats.max_services = self.metrics.max_services

    def observe(self, d) -> None:
        self.stats.observe(d)

    def render(self) -> bytes:
        return self.metrics.render()


@dataclass
class D:
    result: str = "ok"
    backend: str = "sql"
    service_: str = "smtp"
    cached: bool = False
    latency: float = 0.002
    reason: str = ""
    delay: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def service(self) -> str:
        return self.service_


def samples(text: str | bytes) -> dict[tuple[str, tuple], float]:
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text, name, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- configuration ---------------------------------------------------------------


def test_off_without_table_or_listen():
    assert Metrics(cfg(), dict).listen is None
    assert Metrics(cfg({}), dict).listen is None
    assert Metrics(cfg({"listen": ""}), dict).listen is None


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="'port'"):
        Metrics(cfg({"listen": "127.0.0.1:9101", "port": 9101}), dict)


@pytest.mark.parametrize("listen", ["9101", "localhost", "127.0.0.1:http", "127.0.0.1:70000",
                                    "unix:relative.sock"])
def test_bad_listen_is_refused(listen):
    with pytest.raises(ConfigError, match=r"\[metrics\] listen"):
        Metrics(cfg({"listen": listen}), dict)


def test_listen_forms():
    m = Metrics(cfg({"listen": "[::1]:9101"}), dict)
    assert (m.listen.host, m.listen.port) == ("::1", 9101)
    m = Metrics(cfg({"listen": "unix:/run/saslauthd/metrics.sock"}), dict)
    assert m.listen.path == "/run/saslauthd/metrics.sock"


# -- counting --------------------------------------------------------------------


def test_requests_by_mechanism_service_result():
    m = Counted()
    for d in [D(), D(), D(result="fail"), D(result="unknown", backend="pam", service_="imap"),
              D(result="malformed", backend="", service_="")]:
        m.observe(d)
    t = m.render()
    assert value(t, "saslauthpy_requests_total", mechanism="sql", service="smtp", result="ok") == 2
    assert value(t, "saslauthpy_requests_total", mechanism="sql", service="smtp",
                 result="fail") == 1
    assert value(t, "saslauthpy_requests_total", mechanism="pam", service="imap",
                 result="unknown") == 1
    assert value(t, "saslauthpy_requests_total", mechanism="none", service="",
                 result="malformed") == 1
    assert value(t, "saslauthpy_request_duration_seconds_count") == 5


def test_cache_hits_and_misses_skip_malformed():
    m = Counted(cache=True)
    m.observe(D(cached=True, backend="cache"))
    m.observe(D(cached=True, backend="cache", result="fail"))
    m.observe(D(cached=False))
    m.observe(D(result="malformed", backend="", cached=False))
    t = m.render()
    assert value(t, "saslauthpy_cache_hits_total") == 2
    assert value(t, "saslauthpy_cache_misses_total") == 1


def test_no_cache_counts_when_cache_off():
    m = Counted(cache=False)
    m.observe(D())
    assert value(m.render(), "saslauthpy_cache_misses_total") == 0


def test_backend_errors_latency_and_delay():
    m = Counted()
    m.observe(D(result="tempfail", backend="ldap", latency=0.3))
    m.observe(D(result="tempfail", backend="ldap", latency=0.0004))
    m.observe(D(result="fail", latency=1.5, delay=1.25))
    t = m.render()
    assert value(t, "saslauthpy_backend_errors_total", mechanism="ldap") == 2
    assert value(t, "saslauthpy_request_duration_seconds_bucket", le="0.0005") == 1
    assert value(t, "saslauthpy_request_duration_seconds_bucket", le="0.5") == 2
    assert value(t, "saslauthpy_request_duration_seconds_bucket", le="+Inf") == 3
    assert value(t, "saslauthpy_request_duration_seconds_sum") == pytest.approx(1.8004)
    assert value(t, "saslauthpy_throttle_delay_seconds_total") == pytest.approx(1.25)


def test_workers_add_up_and_a_restarted_worker_goes_on_from_its_slot():
    a, b = Stats(), Stats()
    a.observe(D())
    b.observe(D())
    b.observe(D(result="fail"))
    snaps = [a.snapshot(connections_open=2), b.snapshot(connections_open=1)]
    m = Metrics(cfg(), lambda: merge(snaps))
    t = m.render()
    assert value(t, "saslauthpy_requests_total", mechanism="sql", service="smtp",
                 result="ok") == 2
    assert value(t, "saslauthpy_connections_open") == 3
    assert value(t, "saslauthpy_worker_processes") == 2
    again = Stats(carried=snaps[1])  # b died; its replacement takes its slot
    again.observe(D())
    snaps[1] = again.snapshot(connections_open=0)
    t = m.render()
    assert value(t, "saslauthpy_requests_total", mechanism="sql", service="smtp",
                 result="ok") == 3
    assert value(t, "saslauthpy_requests_total", mechanism="sql", service="smtp",
                 result="fail") == 1
    assert value(t, "saslauthpy_connections_open") == 2


def test_service_labels_are_bounded():
    m = Counted({"max_services": 2})
    for svc in ["smtp", "imap", "pop", "x" * 200, "bad\x00svc", "smtp"]:
        m.observe(D(service_=svc))
    s = samples(m.render())
    services = {dict(k[1]).get("service") for k in s if k[0] == "saslauthpy_requests_total"}
    assert services == {"smtp", "imap", "other"}
    assert value(m.render(), "saslauthpy_requests_total", mechanism="sql", service="other",
                 result="ok") == 3
    assert len(m.stats.requests) == 3


def test_observe_is_cheap():
    """Not a speed assertion: a sanity bound that catches an accidental O(n) hot path."""
    m = Counted()
    d = D()
    t0 = time.perf_counter()
    for _ in range(20000):
        m.observe(d)
    per_call = (time.perf_counter() - t0) / 20000
    assert value(m.render(), "saslauthpy_requests_total", mechanism="sql", service="smtp",
                 result="ok") == 20000
    assert per_call < 0.001


# -- the listener ----------------------------------------------------------------


def test_serves_over_tcp():
    port = free_port()

    async def run():
        c = Counted({"listen": f"127.0.0.1:{port}"})
        c.observe(D())
        m = c.metrics
        await m.start()
        try:
            loop = asyncio.get_running_loop()

            def get(path):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.headers["Content-Type"], r.read()

            status, ctype, body = await loop.run_in_executor(None, get, "/metrics")
            try:
                await loop.run_in_executor(None, get, "/nope")
                missing = 200
            except urllib.error.HTTPError as exc:
                missing = exc.code
            return status, ctype, body, missing
        finally:
            await m.stop()

    status, ctype, body, missing = asyncio.run(run())
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    assert value(body, "saslauthpy_requests_total", mechanism="sql", service="smtp",
                 result="ok") == 1
    assert value(body, "saslauthpy_info", version=__import__("saslauthpy").__version__) == 1
    assert missing == 404
    with socket.socket() as s:  # stopped: nobody listens there any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_serves_over_unix_socket(tmp_path):
    path = tmp_path / "metrics.sock"

    async def scrape(p):
        r, w = await asyncio.open_unix_connection(str(p))
        w.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = await r.read()
        w.close()
        return data

    async def run():
        c = Counted({"listen": f"unix:{path}"})
        c.observe(D(result="fail", service_="imap"))
        m = c.metrics
        await m.start()
        mode = stat.S_IMODE(path.stat().st_mode)
        try:
            raw = await scrape(path)
            r, w = await asyncio.open_unix_connection(str(path))
            w.write(b"POST /metrics HTTP/1.0\r\n\r\n")
            post = await r.read()
            w.close()
        finally:
            await m.stop()
        return raw, post, mode

    raw, post, mode = asyncio.run(run())
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200")
    assert value(body, "saslauthpy_requests_total", mechanism="sql", service="imap",
                 result="fail") == 1
    assert post.startswith(b"HTTP/1.0 405")
    assert mode == 0o660
    assert not path.exists()


def test_slow_scraper_does_not_block_others(tmp_path):
    path = tmp_path / "m.sock"

    async def run():
        m = Metrics(cfg({"listen": f"unix:{path}"}), dict)
        await m.start()
        try:
            _, idle = await asyncio.open_unix_connection(str(path))
            idle.write(b"GET /metr")  # never finishes its request
            r, w = await asyncio.open_unix_connection(str(path))
            w.write(b"GET / HTTP/1.0\r\n\r\n")
            data = await asyncio.wait_for(r.read(), 3)
            idle.close()
            return data
        finally:
            await m.stop()

    assert asyncio.run(run()).startswith(b"HTTP/1.0 200")


def test_oversized_request_gets_431(tmp_path):
    path = tmp_path / "m.sock"

    async def ask(request: bytes) -> bytes:
        r, w = await asyncio.open_unix_connection(str(path))
        w.write(request)
        data = await asyncio.wait_for(r.read(), 5)
        w.close()
        return data

    async def run():
        m = Metrics(cfg({"listen": f"unix:{path}"}), dict)
        await m.start()
        try:
            huge = b"GET /metrics HTTP/1.0\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
            big = b"GET /metrics HTTP/1.0\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
            return await ask(huge), await ask(big), await ask(b"GET / HTTP/1.0\r\n\r\n")
        finally:
            await m.stop()

    huge, big, fine = asyncio.run(run())
    assert huge.startswith(b"HTTP/1.0 431") and big.startswith(b"HTTP/1.0 431")
    assert fine.startswith(b"HTTP/1.0 200")  # the listener is still serving


def test_busy_port_is_a_config_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def run():
            await Metrics(cfg({"listen": f"127.0.0.1:{port}"}), dict).start()

        with pytest.raises(ConfigError, match="cannot listen"):
            asyncio.run(run())


def test_refuses_to_replace_a_regular_file(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")

    async def run():
        await Metrics(cfg({"listen": f"unix:{path}"}), dict).start()

    with pytest.raises(ConfigError, match="not a socket"):
        asyncio.run(run())
    assert path.read_text() == "keep me"


# -- end to end: the daemon's listener after real requests -------------------------


def _scrape_unix(path) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200")
    return body


def _requests_by_labels(body: bytes) -> Counter:
    return Counter({(dict(k)["mechanism"], dict(k)["service"], dict(k)["result"]): v
                    for (n, k), v in samples(body).items() if n == "saslauthpy_requests_total"})


def _settled_scrape(path) -> bytes:
    """A scrape once every worker has published what it counted so far (workers publish
    about once a second, so two scrapes more than a second apart agree)."""
    body = _scrape_unix(path)
    for _ in range(10):
        time.sleep(1.2)
        again = _scrape_unix(path)
        if value(again, "saslauthpy_connections_total") == value(
                body, "saslauthpy_connections_total"):
            return again
        body = again
    return body


@pytest.mark.csaslauthd
def test_scrape_matches_requests_made(daemon_factory, tmp_path):
    """Requests through the socket with the real testsaslauthd; the scrape counts exactly
    those, and agrees request by request with the audit log."""
    need("testsaslauthd")
    msock = tmp_path / "metrics.sock"
    d = daemon_factory(args=["-c"], config={"metrics": {"listen": f"unix:{msock}"}})
    d.admin("user", "add", "alice", password="wonderland")
    base_body = _settled_scrape(msock)  # counts before the test's requests, all published
    base = _requests_by_labels(base_body)
    base_audit = len(d.audit())

    for _ in range(3):
        assert harness.testsaslauthd(d.mux, "alice", "wonderland", service="smtp").returncode == 0
    for _ in range(2):
        assert harness.testsaslauthd(d.mux, "alice", "wrong", service="imap").returncode != 0
    assert harness.testsaslauthd(d.mux, "nobody", "x", service="smtp").returncode != 0
    with socket.socket(socket.AF_UNIX) as s:  # malformed: an oversized login
        s.connect(str(d.mux))
        s.sendall(b"\x10\x00" + b"a" * 300)
        s.recv(100)

    deadline = time.monotonic() + 5  # a decision is published right after its reply
    while True:
        body = _scrape_unix(msock)
        delta = _requests_by_labels(body) - base
        if sum(delta.values()) >= 7 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sum(delta.values()) == 7

    by_outcome = Counter()
    for (_mech, service, result), n in delta.items():
        by_outcome[(service, result)] += n
    assert by_outcome[("smtp", "ok")] == 3
    assert by_outcome[("imap", "fail")] == 2
    assert by_outcome[("smtp", "unknown")] + by_outcome[("smtp", "fail")] == 1
    assert by_outcome[("", "malformed")] == 1

    audit = d.audit()[base_audit:]
    from_audit = Counter((r["backend"] or "none", r["service"] or "", r["result"]) for r in audit)
    assert from_audit == delta
    hits = sum(1 for r in audit if r["cache_hit"])
    assert hits >= 1  # the third good login at least comes from the cache
    assert value(body, "saslauthpy_cache_hits_total") - value(
        base_body, "saslauthpy_cache_hits_total") == hits
    def looked_up(b: bytes) -> float:
        return value(b, "saslauthpy_cache_hits_total") + value(b, "saslauthpy_cache_misses_total")

    assert looked_up(body) - looked_up(base_body) == 6
    assert value(body, "saslauthpy_request_duration_seconds_count") - value(
        base_body, "saslauthpy_request_duration_seconds_count") == 7
    assert value(body, "saslauthpy_connections_total") - value(
        base_body, "saslauthpy_connections_total") == 7
    assert value(body, "saslauthpy_connections_open") == 0


def test_several_workers_are_counted_as_one_daemon(daemon_factory, tmp_path):
    """Two worker processes, requests answered by several processes (the first ones
    killed and replaced halfway), in the fast lane and on the asyncio path alike: any
    scrape, whichever worker takes it, counts every request exactly once."""
    msock = tmp_path / "metrics.sock"
    d = daemon_factory(args=["-c"], config={"server": {"processes": 2},
                                            "metrics": {"listen": f"unix:{msock}"}})
    d.admin("user", "add", "alice", password="wonderland")
    for _ in range(20):
        assert d.ask("alice", "wonderland", "smtp") == "OK"
    deadline = time.monotonic() + 10  # a worker publishes every second: killed, it loses
    while (sum(_requests_by_labels(_scrape_unix(msock)).values()) < 20  # at most that
           and time.monotonic() < deadline):
        time.sleep(0.1)
    d.kill_workers({r["pid"] for r in d.audit()})  # their replacements go on counting
    for _ in range(20):
        assert d.ask("alice", "wonderland", "smtp") == "OK"
    assert d.ask("alice", "wrong", "smtp").startswith("NO")
    audit = d.audit()
    assert len({r["pid"] for r in audit}) >= 2  # several processes answered

    deadline = time.monotonic() + 10  # each worker publishes its numbers every second
    while True:
        bodies = [_scrape_unix(msock) for _ in range(4)]
        if all(sum(_requests_by_labels(b).values()) == 41 for b in bodies) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for body in bodies:
        assert _requests_by_labels(body) == Counter(
            (r["backend"], r["service"], r["result"]) for r in audit)
        assert value(body, "saslauthpy_worker_processes") == 2
        assert value(body, "saslauthpy_cache_hits_total") == 39
        assert value(body, "saslauthpy_request_duration_seconds_count") == 41
        fast = value(body, "saslauthpy_fast_lane_answers_total")
        assert 1 <= fast <= 39
        inline = value(body, "saslauthpy_inline_answers_total")
        assert fast + inline + value(body, "saslauthpy_handed_over_total") >= 41
        assert value(body, "process_resident_memory_bytes") > 0
