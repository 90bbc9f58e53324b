"""``run()``: from a checked configuration to a serving daemon, and back to exit status 0.

It holds the run directory (pid file, socket) and the credential cache, which are made
once before any fork, then either serves in this process or hands ``serve`` to the
``Supervisor`` as the target each worker process runs.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from . import control, systemd
from .cache import CredentialCache
from .config import Config
from .eventloop import hold_signals, run_loop
from .rundir import RunDir
from .server import Server
from .supervisor import Supervisor

log = logging.getLogger("saslauthpy")


def make_cache(config: Config) -> CredentialCache | None:
    if not config.cache.enabled:
        return None
    return CredentialCache(config.cache.max_entries, config.cache.ttl, config.cache.negative_ttl)


def serve(config: Config, load_config: Callable[[], Config], listen: socket.socket,
          cache: CredentialCache | None, control_sock: socket.socket | None,
          ready: Callable[[], None]) -> None:
    """One process's whole life: build the pipeline (raises ConfigError), then serve
    until SIGTERM, calling ``ready`` once the socket is being answered."""
    server = Server(config, load_config, listen, cache, control_sock)
    server.prepare()
    run_loop(server.serve(ready))


def run(config: Config, load_config: Callable[[], Config],
        ready: Callable[[], None] | None = None) -> int:
    """Serve until SIGTERM: in this process, or in ``[server] processes`` forked workers."""
    hold_signals()  # a signal that comes before the loop's handlers are in place is kept
    rundir = RunDir(config)
    rundir.prepare()
    try:
        cache = make_cache(config)  # before any fork: the table is shared memory
        if config.server.processes > 1:
            def worker(cfg: Config, worker_ready: Callable[[], None]) -> None:
                serve(cfg, load_config, rundir.listen, cache, None, worker_ready)

            return Supervisor(config, load_config, cache, worker).run(ready)

        def started() -> None:
            log.info("listening on %s with mechanisms %s (%d workers, cache %s)",
                     config.socket_path, ",".join(config.mechanisms), config.threads,
                     "on" if cache is not None else "off")
            if ready is not None:
                ready()
            systemd.notify("READY=1\nSTATUS=serving")

        serve(config, load_config, rundir.listen, cache, control.listen(config.control_path),
              started)
        log.info("stopped")
        return 0
    finally:
        rundir.cleanup()
