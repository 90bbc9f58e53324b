"""How fast can the least Python that does LDAP ``custom`` go here?  Side by side with the
C saslauthd and saslauthpy (docs/performance.md, "Where the custom gap is").

    python bench/ldap_floor.py [--seconds 4] [--rounds 3] [--python PATH]

Each *floor* server speaks the saslauthd socket protocol (parsed by the fast lane's
``counted``), searches ``(uid=LOGIN)`` for ``userPassword`` as the service identity on a
connection bound once, compares with ``passwords.verify`` as the daemon does and answers
OK or NO: nothing else (no cache, throttle, audit, timeouts, failover, escaping), so it
is a measure, not a daemon.  ``blocking-N``: N processes, each
blocked in ``accept()``, one request at a time (the C daemon's shape); ``multiplexed-2``:
2 processes, each one thread in ``epoll`` over its clients and one LDAP connection driven
by libldap's asynchronous calls; ``saslauthpy-shell``: saslauthpy with default settings
(its worker processes, accepting threads and event loops) whose fast lane does only a
floor's work (``shell``), so the daemon's shape is measured without its per-login path.
8 clients (alice and dave: cheap hashes), one private slapd; printed per server: good
answers/s, the CPU per answer of its processes and of slapd, per round, and the medians
with the ratio to the C daemon's median.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ldap

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from daemons import CSaslauthd, Saslauthpy, build_loadgen, wait_socket  # noqa: E402
from scenarios import Settings, cpu_seconds, group, run_loadgen, tree  # noqa: E402

sys.path.insert(0, str(BENCH.parent))
from saslauthpy.fastlane import counted  # noqa: E402
from saslauthpy.passwords import verify  # noqa: E402

sys.path.insert(0, str(BENCH.parent / "tests" / "helpers"))
from ldap_server import PEOPLE_DN, SERVICE_DN, SERVICE_PW, Slapd  # noqa: E402

CLIENTS = [("alice", "alice-secret", 4), ("dave", "dave-secret", 4)]
FLOORS = {"blocking-2": ("blocking", 2), "blocking-5": ("blocking", 5),
          "multiplexed-2": ("multiplexed", 2)}
OK, NO = b"\0\2OK", b"\0\2NO"


# -- the floor servers (run as ``ldap_floor.py --serve KIND PROCESSES SOCKET URI``) ---------

def login_and_password(data: bytes) -> tuple[bytes, bytes]:
    """The first two fields (b"" for anything else, such as a probe that connected and
    closed)."""
    fields = counted(data)
    return (fields[0], fields[1]) if fields else (b"", b"")


def search(conn, login: bytes) -> int:
    return conn.search_ext(PEOPLE_DN, ldap.SCOPE_SUBTREE, f"(uid={login.decode()})",
                           ["userPassword"], 0, None, None, -1, 0)


def reply(fd: int, password: bytes, entries: list) -> None:
    found = [attrs for dn, attrs in entries if dn]
    good = len(found) == 1 and any(verify(password, v.decode(), default_scheme="PLAIN")
                                   for v in found[0].get("userPassword", []))
    os.write(fd, OK if good else NO)
    os.close(fd)


def bound(uri: str):
    """python-ldap's C object on a connection bound once as the service identity (the
    daemon's fast lane calls it directly too)."""
    conn = ldap.initialize(uri)
    conn.simple_bind_s(SERVICE_DN, SERVICE_PW)
    return conn._l


def answer(conn, fd: int) -> None:
    """One blocking request on ``fd``: read it, search, compare, reply, close."""
    login, password = login_and_password(os.read(fd, 4096))
    if not login:
        os.close(fd)
        return
    reply(fd, password, conn.result4(search(conn, login), 1, 5, 0, 0, 0)[1])


def serve(kind: str, processes: int, path: str, uri: str) -> None:
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listen.bind(path)
    listen.listen(1024)
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    conn = bound(uri)
    if kind == "blocking":
        while True:
            answer(conn, listen._accept()[0])
    listen.setblocking(False)
    poll = select.epoll()
    poll.register(listen.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    poll.register(conn.get_option(ldap.OPT_DESC), select.EPOLLIN)
    asked: dict[int, tuple[int, bytes]] = {}  # LDAP message id -> (client, password)
    early: set[int] = set()  # clients accepted before their request came

    def start(fd: int, data: bytes) -> None:
        login, password = login_and_password(data)
        if not login:
            os.close(fd)
            return
        asked[search(conn, login)] = (fd, password)

    while True:
        for fd, _ in poll.poll(1.0):
            if fd == listen.fileno():
                for _ in range(16):
                    try:
                        client, _ = listen._accept()
                    except BlockingIOError:
                        break
                    os.set_blocking(client, False)
                    try:
                        start(client, os.read(client, 4096))
                    except BlockingIOError:
                        poll.register(client, select.EPOLLIN)
                        early.add(client)
            elif fd in early:
                poll.unregister(fd)
                early.discard(fd)
                start(fd, os.read(fd, 4096))
            else:  # the LDAP connection: every complete answer libldap holds, no wait
                while True:
                    kind, entries, msgid, _ = conn.result4(ldap.RES_ANY, 1, 0, 0, 0, 0)
                    if kind is None:
                        break
                    client, password = asked.pop(msgid)
                    reply(client, password, entries)


def shell(uri: str, argv: list[str]) -> None:
    """Run saslauthpy (``argv``: its arguments) with a floor's work in place of its fast
    lane's: each lane thread answers on a connection of its own, blocking, and hands
    nothing to the event loop."""
    from saslauthpy import fastlane
    from saslauthpy.cli.daemon import main as daemon

    mine = threading.local()

    def handle(lane, fd: int, started: float = 0.0) -> None:
        if not hasattr(mine, "conn"):
            mine.conn = bound(uri)
        os.set_blocking(fd, True)  # the acceptor made it non-blocking; the request is coming
        answer(mine.conn, fd)

    fastlane.FastLane.handle = handle
    sys.argv = ["saslauthpy", *argv]
    raise SystemExit(daemon())


# -- the comparison -------------------------------------------------------------------------

class Floor:
    def __init__(self, name: str, tmp: Path, uri: str, python: str):
        kind, processes = FLOORS[name]
        self.socket = tmp / f"{name}.sock"
        self.proc = subprocess.Popen(
            [python, __file__, "--serve", kind, str(processes), str(self.socket), uri],
            start_new_session=True)
        wait_socket(self.socket, self.proc)
        time.sleep(0.5)  # the forked processes bind to the directory

    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def main() -> None:
    if sys.argv[1:2] == ["--shell"]:  # --shell URI, then the daemon's own arguments
        shell(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter saslauthpy and the floors run on (as bench/run.py)")
    ap.add_argument("--serve", nargs=4, metavar=("KIND", "PROCESSES", "SOCKET", "URI"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        kind, processes, path, uri = args.serve
        serve(kind, int(processes), path, uri)
        return
    with tempfile.TemporaryDirectory(prefix="ldap-floor-") as t:
        tmp = Path(t)
        slapd = Slapd(tmp / "slapd").start()
        conf = tmp / "saslauthd.conf"
        conf.write_text(f"ldap_servers: {slapd.uri}\nldap_search_base: {PEOPLE_DN}\n"
                        f"ldap_filter: (uid=%u)\nldap_auth_method: custom\n"
                        f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\n")
        settings = Settings(tmp=tmp, loadgen=build_loadgen(tmp), duration=args.seconds)
        servers = {"C saslauthd": CSaslauthd(tmp / "c", "ldap", 5, False, str(conf)),
                   "saslauthpy": Saslauthpy(tmp / "o", "ldap", 5, False, str(conf),
                                            python=args.python),
                   "saslauthpy-shell": Saslauthpy(tmp / "s", "ldap", 5, False, str(conf),
                                                  python=args.python,
                                                  launcher=(__file__, "--shell", slapd.uri))}
        try:
            for d in servers.values():
                d.start()
            servers.update({name: Floor(name, tmp, slapd.uri, args.python) for name in FLOORS})
            rates: dict[str, list[float]] = {name: [] for name in servers}
            for r in range(args.rounds):
                for name, d in servers.items():
                    pids = tree(d.pid())
                    before, before_slapd = cpu_seconds(pids), cpu_seconds([slapd.proc.pid])
                    out = run_loadgen(settings, d, [group(f"{u}", n, "OK", u, 1, pw)
                                                    for u, pw, n in CLIENTS])
                    answered = max(1, sum(g["ok"] + g["no"] for g in out.values()))
                    cpu = (cpu_seconds(pids) - before) / answered * 1e6
                    cpu_slapd = (cpu_seconds([slapd.proc.pid]) - before_slapd) / answered * 1e6
                    rates[name].append(sum(g["good_rps"] for g in out.values()))
                    print(f"round {r + 1}  {name:16s} {rates[name][-1]:7.0f}/s  "
                          f"CPU {cpu:4.0f} µs/answer, slapd's {cpu_slapd:4.0f}", flush=True)
            c = statistics.median(rates["C saslauthd"])
            for name, seen in rates.items():
                m = statistics.median(seen)
                print(f"{name:16s} median {m:7.0f}/s  {m / c:.2f}x the C daemon")
        finally:
            for d in servers.values():
                d.stop()
            slapd.stop()


if __name__ == "__main__":
    main()
