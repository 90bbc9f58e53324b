"""``run()``: from a checked configuration to a serving daemon, and back to exit status 0.

It holds what the daemon makes once, before any fork: the run directory (pid file,
socket), the open-file limit, and what the worker processes share (the credential
cache, the penalty table, the scoreboard, the metrics listener).  Then the
``Supervisor`` forks ``[server] processes`` workers (one per CPU by default), each of
which runs ``Server`` until SIGTERM.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from .authenticator import Authenticator
from .backends import backend_class
from .cache import CredentialCache
from .config import Config
from .dovecot_listener import DovecotListener
from .eventloop import hold_signals, run_loop
from .goodpairs import make_pairs
from .penalties import PenaltyTable
from .rundir import RunDir, raise_nofile
from .scoreboard import Scoreboard
from .server import Server, Shared, metrics_module
from .supervisor import Supervisor
from .throttle import Throttle

log = logging.getLogger("saslauthpy")


def make_cache(config: Config) -> CredentialCache | None:
    if not config.cache.enabled:
        return None
    return CredentialCache(config.cache.max_entries, config.cache.ttl, config.cache.negative_ttl)


def run(config: Config, load_config: Callable[[], Config],
        ready: Callable[[], None] | None = None) -> int:
    """Serve until SIGTERM with ``[server] processes`` worker processes."""
    hold_signals()  # a signal that comes before the loop's handlers are in place is kept
    rundir = RunDir(config)
    rundir.prepare()
    metrics_path = None
    dovecot = None
    try:
        raise_nofile(config)
        metrics_sock = None
        if config.metrics.listen:
            metrics_sock, metrics_path = metrics_module().open_for(config)
        dovecot = DovecotListener.open(config, rundir.dovecot)
        shared = Shared(rundir.listen, make_cache(config),
                        PenaltyTable(config.throttle.max_tracked),
                        Scoreboard(config.server.processes), metrics_sock,
                        dovecot, make_pairs(config))

        def worker(cfg: Config, worker_ready: Callable[[], None], slot: int) -> None:
            server = Server(cfg, load_config, shared, slot)
            server.prepare()
            run_loop(server.serve(worker_ready))

        def pipeline(cfg: Config) -> Authenticator:
            # For the control socket's throttle commands: the backends are not opened (only
            # their identity() is used), the penalty table is the workers' own.
            throttle = Throttle(cfg, penalties=shared.penalties)
            backends = [backend_class(name)(cfg, cfg.section(name)) for name in cfg.mechanisms]
            return Authenticator(cfg, backends, None, throttle if throttle.enabled else None)

        return Supervisor(config, load_config, shared.cache, shared.board, worker,
                          pipeline, rundir.listen.getsockname()).run(ready)
    finally:
        if dovecot is not None:
            dovecot.close()
        if metrics_path:
            try:
                os.unlink(metrics_path)
            except OSError:
                pass
        rundir.cleanup()
