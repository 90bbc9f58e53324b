"""The real saslauthpy server inside the test process (as aiosmtpd's ``Controller``).

``InProcessServer(tmp, config={...}).start()`` loads the configuration the daemon would
(flags and TOML through ``config.from_args``), opens the run directory and its socket,
makes what the workers share and runs one ``Server`` (fast lane, event loop, the pipeline,
the audit) on an event loop of its own in a thread.  No process is started, so a test
needs neither ``python -m saslauthpy`` nor root: the users live in the embedded SQLite
store in ``tmp``, added with ``add()`` through the SQL store itself.

What it leaves out is the supervisor (worker processes, the control socket).  Signals are
not installed (they belong to the main thread): ``signal(SIGHUP)`` runs the handler the
server registered, on its loop, as the signal would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Instance

from saslauthpy import config as configmod
from saslauthpy.backends import store_class
from saslauthpy.goodpairs import make_pairs
from saslauthpy.launcher import make_cache
from saslauthpy.penalties import PenaltyTable
from saslauthpy.rundir import RunDir
from saslauthpy.scoreboard import Scoreboard
from saslauthpy.server import Server, Shared


class SignalRecordingLoop(asyncio.SelectorEventLoop):
    """An event loop for a thread: keeps the signal handlers the server registers (only
    the main thread may install real ones) so that a test can run them."""

    def __init__(self) -> None:
        super().__init__()
        self.signal_handlers: dict[int, Callable[[], Any]] = {}

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:
        self.signal_handlers[sig] = lambda: callback(*args)

    def remove_signal_handler(self, sig: int) -> bool:
        return self.signal_handlers.pop(sig, None) is not None


class InProcessServer(Instance):
    """One saslauthpy server on ``tmp/run/mux``, served from a thread of this process."""

    def __init__(self, tmp: Path, config: dict[str, Any] | None = None,
                 args: list[str] | None = None):
        super().__init__(tmp, config)
        self.args = list(args or [])
        self.loop: SignalRecordingLoop | None = None
        self.server: Server | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._rundir: RunDir | None = None
        self._shared: Shared | None = None

    def load_config(self) -> configmod.Config:
        """The configuration as the daemon reads it (and re-reads it on SIGHUP)."""
        args = configmod.arg_parser().parse_args(["-f", "--config", str(self.config_path),
                                                  *self.args])
        return configmod.from_args(args)

    def start(self, timeout: float = 20.0) -> InProcessServer:
        cfg = self.load_config()
        self._rundir = RunDir(cfg)
        self._rundir.prepare()
        try:
            self._shared = Shared(self._rundir.listen, make_cache(cfg),
                                  PenaltyTable(cfg.throttle.max_tracked), Scoreboard(1),
                                  None, None, make_pairs(cfg))
            self.server = Server(cfg, self.load_config, self._shared, 0)
            self.server.prepare()
        except BaseException:
            self._release()
            raise
        self.loop = SignalRecordingLoop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,),
                                        name="inprocess-saslauthpy", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self.error is not None:
            self.stop()
            raise RuntimeError(f"the in-process server did not start: {self.error!r}")
        return self

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(ready.set))
        except BaseException as exc:  # reported by start() or stop()
            self.error = exc
            ready.set()
        finally:
            self.loop.close()

    def signal(self, sig: int) -> None:
        """What the daemon does on ``sig`` (SIGHUP: reload; SIGTERM: stop)."""
        self.loop.call_soon_threadsafe(self.loop.signal_handlers[sig])

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP, and wait until the reload has run (accepted or refused)."""
        done = threading.Event()
        future = asyncio.run_coroutine_threadsafe(self.server.reload(), self.loop)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise TimeoutError("reload did not finish")
        future.result()

    def add(self, login: str, password: str, realm: str = "") -> None:
        """A user in the SQL store, as ``saslauthpy-admin user add`` makes one."""
        cfg = self.load_config()
        store = store_class("sql")(cfg, cfg.section("sql"))
        try:
            store.add(login, realm, password.encode())
        finally:
            store.close()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving (as SIGTERM does) and release the socket and shared tables."""
        thread, self._thread = self._thread, None
        if thread is not None:
            if thread.is_alive() and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.server.stop)
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError("the in-process server did not stop")
        self._release()
        if self.error is not None:
            raise RuntimeError("the in-process server failed") from self.error

    def _release(self) -> None:
        if self._shared is not None:
            for table in (self._shared.cache, self._shared.penalties, self._shared.pairs):
                if table is not None:
                    table.close()
            self._shared = None
        if self._rundir is not None:
            self._rundir.cleanup()
            self._rundir = None

