"""Which way of driving libldap is faster here: a connection pair per worker thread, or
libldap's asynchronous calls multiplexed on the event loop?  (docs/ldap.md, "Engine")

    python bench/ldap_engines.py [--seconds 4] [--rounds 3]

``raw`` is the multiplexed engine on python-ldap's C object, as the backend runs it.
All do the backend's ``bind`` work (one search on a service connection bound once, one
simple bind on a user connection) for 8 concurrent clients against one private slapd, in
this process, alternately in the same run; printed: answers per second and this
process's CPU time per answer (slapd's is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ldap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from ldap_server import PEOPLE_DN, SERVICE_DN, SERVICE_PW, Slapd  # noqa: E402

USERS = [("alice", b"alice-secret"), ("bob", b"bob-secret"), ("dave", b"dave-secret"),
         ("frank", b"frank-secret")]
CLIENTS = 8


def opened(uri: str, who: str = "", password: str = "") -> ldap.ldapobject.LDAPObject:
    conn = ldap.initialize(uri)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    conn.simple_bind_s(who, password)
    return conn


class PerThread:
    """The daemon's worker pool (5 threads), each with its own two connections."""

    def __init__(self, uri: str):
        self.uri, self.local = uri, threading.local()
        self.pool = ThreadPoolExecutor(5)

    def check(self, login: str, password: bytes) -> bool:
        if not hasattr(self.local, "pair"):
            self.local.pair = (opened(self.uri, SERVICE_DN, SERVICE_PW), opened(self.uri))
        service, user = self.local.pair
        found = service.search_ext_s(PEOPLE_DN, ldap.SCOPE_SUBTREE, f"(uid={login})",
                                     ["1.1"], sizelimit=1, timeout=5)
        user.simple_bind_s(found[0][0], password)
        return True

    async def ask(self, login: str, password: bytes) -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, self.check, login, password)


class Multiplexed:
    """One service connection carrying every search, user connections for the binds;
    answers read when a socket is readable (what backends/ldap/links.py does)."""

    def __init__(self, uri: str, loop: asyncio.AbstractEventLoop):
        self.uri, self.loop = uri, loop
        self.service = self._attach(opened(uri, SERVICE_DN, SERVICE_PW))
        self.free: list = []

    def _attach(self, conn):
        conn.waiting = {}

        def readable() -> None:
            while conn.waiting:
                kind, data, msgid, _ = conn.result3(ldap.RES_ANY, 1, 0)
                if kind is None:
                    return
                conn.waiting.pop(msgid).set_result(data)

        self.loop.add_reader(conn.fileno(), readable)
        return conn

    def _wait(self, conn, msgid: int) -> asyncio.Future:
        conn.waiting[msgid] = future = self.loop.create_future()
        return future

    async def ask(self, login: str, password: bytes) -> bool:
        s = self.service
        found = await self._wait(s, s.search_ext(PEOPLE_DN, ldap.SCOPE_SUBTREE,
                                                 f"(uid={login})", ["1.1"], sizelimit=1))
        user = self.free.pop() if self.free else self._attach(opened(self.uri))
        await self._wait(user, user.simple_bind(found[0][0], password))
        self.free.append(user)
        return True


class Raw(Multiplexed):
    """The same on python-ldap's C object (``conn._l``): no wrapper per call (its lock,
    tracing, control decoding), what backends/ldap/links.py does."""

    def _attach(self, conn):
        conn.waiting = {}
        raw = conn._l

        def readable() -> None:
            while conn.waiting:
                got = raw.result4(ldap.RES_ANY, 1, 0, 0, 0, 0)
                if got is None or got[0] is None:
                    return
                conn.waiting.pop(got[2]).set_result(got[1])

        self.loop.add_reader(conn.fileno(), readable)
        return conn

    async def ask(self, login: str, password: bytes) -> bool:
        s = self.service
        found = await self._wait(s, s._l.search_ext(PEOPLE_DN, ldap.SCOPE_SUBTREE,
                                                    f"(uid={login})", ["1.1"], 0, None, None,
                                                    -1, 1))
        user = self.free.pop() if self.free else self._attach(opened(self.uri))
        await self._wait(user, user._l.simple_bind(found[0][0], password, None, None))
        self.free.append(user)
        return True


async def drive(engine, seconds: float) -> tuple[float, float]:
    count = 0
    stop = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal count
        while time.monotonic() < stop:
            assert await engine.ask(*USERS[i % len(USERS)])
            count += 1
            i += 1

    await asyncio.gather(*(engine.ask(*USERS[i % len(USERS)]) for i in range(CLIENTS)))
    wall, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return count / (time.monotonic() - wall), (time.process_time() - cpu) / count * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        slapd = Slapd(Path(tmp) / "slapd").start()
        try:
            for _ in range(args.rounds):
                for name in ("per-thread", "multiplexed", "raw"):
                    async def run(name: str = name) -> tuple[float, float]:
                        loop = asyncio.get_running_loop()
                        engine = (PerThread(slapd.uri) if name == "per-thread"
                                  else Multiplexed(slapd.uri, loop) if name == "multiplexed"
                                  else Raw(slapd.uri, loop))
                        return await drive(engine, args.seconds)

                    rate, cpu = asyncio.run(run())
                    print(f"{name:12} {rate:7,.0f} answers/s  {cpu:5.0f} µs CPU per answer",
                          flush=True)
        finally:
            slapd.stop()


if __name__ == "__main__":
    main()
