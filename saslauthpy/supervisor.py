"""The daemon's worker processes on one socket (``[server] processes``, one per CPU by
default), and the process that watches over them.

One Python process answers cache hits at one core's speed; saslauthd's answer was
five processes.  The daemon forks its workers after opening the socket, the credential
cache, the penalty table and the scoreboard (all shared), so every worker accepts on
the same socket and sees every other worker's cached credentials and penalties.  Each
worker builds its own backends, pool and audit handle.

The supervisor itself runs no event loop and no threads and serves no client, so the
control socket stays reachable whatever the load: it waits for its workers' first word
at start (a worker that cannot start makes the start fail with its message), restarts
a worker that dies (in the dead one's scoreboard slot), passes SIGHUP on once the new
configuration has parsed, stops them all on SIGTERM, and serves the control socket
(flushes act on the shared cache directly; the status adds up the scoreboard).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from . import control, systemd
from .cache import CredentialCache
from .config import Config
from .errors import ConfigError
from .eventloop import early_signals, hold_signals
from .scoreboard import Scoreboard
from .stats import merge

log = logging.getLogger("saslauthpy")

Target = Callable[[Config, Callable[[], None], int], None]
RESTART_BACKOFF = 1.0  # seconds before restarting a worker that died young


class Supervisor:
    def __init__(self, config: Config, load_config: Callable[[], Config],
                 cache: CredentialCache | None, board: Scoreboard, target: Target,
                 pipeline: Callable[[Config], Any] | None = None, where: str = ""):
        """``target(config, ready, slot)`` is a worker's whole life: it raises if the worker
        cannot start, calls ``ready()`` once it serves, and returns when the worker stops;
        ``slot`` is its place on the scoreboard.  ``pipeline(config)`` builds what the
        control socket's throttle commands use (the shared penalty table, the chain's
        identities), made when first asked and again after a reload.  ``where``: the
        socket served, when not ``config.socket_path`` (one systemd passed)."""
        self.config = config
        self.where = where
        self.load_config = load_config
        self.cache = cache
        self.pipeline = pipeline
        self._view: tuple[Config, Any] | None = None
        self.board = board
        self.target = target
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (slot, start time)
        self.pending: list[int] = []
        self.ctl: socket.socket | None = None
        self._wake: tuple[int, int] | None = None  # signals' wakeup pipe

    # -- the supervisor ---------------------------------------------------------------

    def run(self, ready: Callable[[], None] | None = None) -> int:
        self.pending.extend(early_signals)
        hold_signals(self.pending)
        # Signals (a worker's death included) wake the select below at once.
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake[1])
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.ctl = control.listen(self.config.control_path)
        try:
            for slot in range(self.config.server.processes):
                self._spawn(slot, wait=True)
        except BaseException:
            self._stop_all()
            raise
        log.info("listening on %s with mechanisms %s (%d processes x %d workers, cache %s)",
                 self.where or self.config.socket_path, ",".join(self.config.mechanisms),
                 self.config.server.processes, self.config.threads,
                 "on" if self.cache is not None else "off")
        if ready is not None:
            ready()
        systemd.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving")
        while True:
            while self.pending:
                sig = self.pending.pop(0)
                if sig == signal.SIGHUP:
                    self._reload()
                else:
                    systemd.notify("STOPPING=1")
                    self._stop_all()
                    log.info("stopped")
                    return 0
            try:
                readable, _, _ = select.select([self.ctl, self._wake[0]], [], [], 1.0)
            except InterruptedError:
                readable = []
            if self._wake[0] in readable:
                while _drain(self._wake[0]):
                    pass
            if self.ctl in readable:
                self._control()
            self._reap()

    def _reload(self) -> None:
        try:
            self.config = self.load_config()
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        for pid in self.workers:
            os.kill(pid, signal.SIGHUP)  # each worker reloads itself

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            known = self.workers.pop(pid, None)
            if known is None or signal.SIGTERM in self.pending or signal.SIGINT in self.pending:
                continue  # not ours, or we are about to stop anyway (Ctrl-C reaches everyone)
            slot, started = known
            log.warning("worker %d exited (%s); starting another", pid,
                        _describe(status))
            if time.monotonic() - started < RESTART_BACKOFF:
                time.sleep(RESTART_BACKOFF)
            self._spawn(slot, wait=False)

    def _stop_all(self) -> None:
        for pid in self.workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.config.server.shutdown_grace + 5
        while self.workers and time.monotonic() < deadline:
            for pid in list(self.workers):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    del self.workers[pid]
            time.sleep(0.02)
        for pid in self.workers:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.workers.clear()
        if self.ctl is not None:
            self.ctl.close()
        if self._wake is not None:
            signal.set_wakeup_fd(-1)
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    def _control(self) -> None:
        conn, _ = self.ctl.accept()
        with conn:
            conn.settimeout(2)
            try:
                uid = control.peer_credentials(conn)[1]
                buf = b""
                while (line := control.request_line(buf)) is None:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                conn.sendall(control.reply(line, uid, self.cache, self.status, self._viewed()))
            except ValueError:
                return  # no line within MAX_LINE bytes
            except OSError as exc:
                log.warning("control connection: %s", exc)

    def _viewed(self) -> Any:
        """``pipeline(config)`` for the configuration in force (None: none could be made)."""
        if self._view is not None and self._view[0] is self.config:
            return self._view[1]
        if self._view is not None and self._view[1] is not None:
            self._view[1].close()  # its backends
            if self._view[1].throttle is not None:
                self._view[1].throttle.close()  # its Redis client, if any; not the shared table
        made = None
        if self.pipeline is not None:
            try:
                made = self.pipeline(self.config)
            except Exception as exc:  # the control socket answers without it
                log.warning("control socket: cannot read the throttle here: %s", exc)
        self._view = (self.config, made)
        return made

    def status(self) -> dict:
        live = set(self.workers)
        t = merge([s for s in self.board.read_all() if s.get("pid") in live])
        return {"mechanisms": self.config.mechanisms,
                "processes": self.config.server.processes, "workers": sorted(self.workers),
                "open_connections": t.get("connections_open", 0),
                "in_flight": t.get("in_flight", 0),
                "connections": t.get("connections", 0),
                "fast_lane": {"answered": t.get("fast_answered", 0),
                              "inline": t.get("inline_answered", 0),
                              "handed_over": t.get("handed_over", 0)},
                **({"cache_hits": t.get("cache_hits", 0),
                    "cache_misses": t.get("cache_misses", 0)} if self.cache else {})}

    # -- a worker ---------------------------------------------------------------------

    def _spawn(self, slot: int, wait: bool) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            self._worker(w, slot)  # never returns
        os.close(w)
        self.workers[pid] = (slot, time.monotonic())
        if wait:
            with os.fdopen(r, "rb") as f:
                word = f.read().decode(errors="replace")
            if word != "ok":
                raise ConfigError(word or f"worker {pid} died while starting")
        else:
            os.close(r)

    def _worker(self, report: int, slot: int) -> None:
        started = False

        def ready() -> None:
            nonlocal started
            started = True
            _say(report, "ok")
            if not self.config.foreground:
                # Detached: the starting command's stderr, inherited, must not stay open
                # (the supervisor lets go of its own once every worker is up).
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)

        code = 1
        try:
            self.ctl.close()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in self._wake:
                os.close(fd)
            os.environ.pop("NOTIFY_SOCKET", None)  # only the supervisor talks to systemd
            hold_signals()
            self.target(self.config, ready, slot)
            code = 0
        except BaseException as exc:
            if not started:
                _say(report, str(exc) if isinstance(exc, ConfigError) else repr(exc))
            else:
                log.exception("worker %d failed", os.getpid())
        finally:
            os._exit(code)


def _say(fd: int, word: str) -> None:
    try:
        os.write(fd, word.encode())
        os.close(fd)
    except OSError:
        pass  # nobody waits for it (a restarted worker)


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"
