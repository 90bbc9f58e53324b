"""The run directory: what a daemon holds once, however many processes serve it.

``RUNDIR/mux`` (the listening socket, or the one systemd passed), the pid file
``RUNDIR/saslauthd.pid`` locked against a second instance, and the control socket's
path.  ``cleanup()`` removes what was created.  And the open-file limit the
connection cap needs (``raise_nofile``, ``connection_cap``).
"""

from __future__ import annotations

import fcntl
import grp
import logging
import os
import resource
import socket

from . import systemd
from .config import Config
from .errors import AlreadyRunning, ConfigError
from .hardening import create

log = logging.getLogger("saslauthpy")

# Descriptors a worker process needs besides its client connections: the listening,
# metrics and audit files, syslog, the event loop's own, connections on their way from
# the fast lane to the loop (acceptors.PENDING) or parked until their request comes
# (acceptors.PARKED), and per pool thread a backend connection or a PAM worker's pipes.
RESERVED_FDS = 96
FDS_PER_THREAD = 4
# FileDescriptorName= of a socket unit passing the Dovecot listener's socket
DOVECOT_FDNAME = "dovecot"


def fd_reserve(config: Config) -> int:
    dovecot = config.dovecot.max_connections if config.dovecot.listen else 0
    return RESERVED_FDS + FDS_PER_THREAD * config.threads + dovecot


def raise_nofile(config: Config) -> None:
    """Raise the soft open-file limit to what ``[server] max_connections`` needs (the
    hard limit permitting; the log says when it does not).  Worker processes inherit it."""
    need = config.server.max_connections + fd_reserve(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            target = soft
    if target < need:
        log.warning("the open-file limit (%d) allows %d connections per process, not "
                    "[server] max_connections = %d: raise it (LimitNOFILE= in the unit, "
                    "ulimit -n)", target, max(1, target - fd_reserve(config)),
                    config.server.max_connections)
    else:
        log.info("open-file limit raised from %d to %d for max_connections = %d",
                 soft, target, config.server.max_connections)


def connection_cap(config: Config) -> int:
    """``max_connections``, lowered to what the open-file limit leaves room for."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return config.server.max_connections
    return max(1, min(config.server.max_connections, soft - fd_reserve(config)))


class RunDir:
    def __init__(self, config: Config):
        self.config = config
        self._pidfile: int | None = None
        self.own_socket = True
        self.listen: socket.socket | None = None
        self.dovecot: socket.socket | None = None  # [dovecot] listen's, when passed

    def prepare(self) -> None:
        """Create the directory, lock the pid file, open the listening socket."""
        cfg = self.config
        try:
            if not os.path.isdir(cfg.run_dir):
                os.makedirs(cfg.run_dir, mode=cfg.server.dir_mode, exist_ok=True)
                os.chmod(cfg.run_dir, cfg.server.dir_mode)
                self._chgrp(cfg.run_dir)
            self._lock_pidfile()
            self.listen = self._listen_socket()
        except BaseException:
            self.cleanup()
            raise

    def _chgrp(self, path: str) -> None:
        group = self.config.server.socket_group
        if group:
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                raise ConfigError(f"[server] socket_group: no group named {group!r}")

    def _lock_pidfile(self) -> None:
        path = self.config.pid_path
        fd = create(path, os.O_RDWR, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise AlreadyRunning(
                f"another instance is already running (pid file {path} is locked); "
                "stop it first or use another -m directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pidfile = fd

    def _listen_socket(self) -> socket.socket:
        """The saslauthd socket: the one the service manager passed, else bound here.  A
        passed socket named ``dovecot`` or bound to ``[dovecot] listen`` is kept for the
        Dovecot listener (``self.dovecot``)."""
        mux = None
        wanted = self.config.dovecot.listen
        for name, sock in systemd.listen_sockets():
            where = sock.getsockname()
            dovecot = name == DOVECOT_FDNAME or bool(wanted and where == wanted)
            if dovecot and wanted and self.dovecot is None:
                self.dovecot = sock
            elif not dovecot and mux is None:
                mux = sock
            else:
                why = ("[dovecot] listen is not set" if dovecot and not wanted
                       else "another one already serves that protocol")
                log.warning("ignoring the passed socket %s (%s): %s", where, name or "unnamed",
                            why)
                sock.close()
        if mux is not None:
            self.own_socket = False
            log.info("using %s, the socket passed by the service manager", mux.getsockname())
            return mux
        path = self.config.socket_path
        if os.path.lexists(path):
            os.unlink(path)  # stale: we hold the pid lock, so nobody else serves it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, self.config.server.socket_mode)
        self._chgrp(path)
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    def cleanup(self) -> None:
        if self.dovecot is not None:
            self.dovecot.close()  # (the Dovecot listener's own close, when it had it)
        paths = [self.config.control_path]
        if self.own_socket and self.listen is not None:
            paths.append(self.config.socket_path)
        if self._pidfile is not None:
            paths.append(self.config.pid_path)
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        if self._pidfile is not None:
            os.close(self._pidfile)
            self._pidfile = None
