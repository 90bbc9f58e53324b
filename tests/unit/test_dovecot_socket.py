"""Who removes the ``[dovecot] listen`` socket: the process that made it, at exit, and
nobody when the service manager passed it (dovecot_listener.py)."""

from __future__ import annotations

import asyncio
import socket
import types

from saslauthpy.config import Config, DovecotOptions
from saslauthpy.dovecot_listener import DovecotListener


def config(path) -> Config:
    return Config(dovecot=DovecotOptions(listen=str(path)))


def serve_and_close(listener: DovecotListener) -> None:
    """A worker's life: serve the socket on an event loop, then close that server."""
    async def worker() -> None:
        srv = await listener.start(types.SimpleNamespace(config=Config()))
        srv.close()
        await srv.wait_closed()

    asyncio.run(worker())


def test_a_workers_end_leaves_the_socket_and_the_daemons_end_removes_it(tmp_path):
    path = tmp_path / "auth"
    listener = DovecotListener.open(config(path))
    serve_and_close(listener)
    assert path.is_socket()  # the supervisor and the other workers still serve it
    listener.close()
    assert not path.exists()


def test_a_socket_the_service_manager_passed_is_never_removed(tmp_path):
    # (From Python 3.13 asyncio removes a closing server's socket path unless told not
    # to: without that, this fails there when the worker's server closes.)
    path = tmp_path / "auth"
    passed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    passed.bind(str(path))
    passed.listen(8)
    listener = DovecotListener.open(config(path), passed)
    assert listener.sock is passed
    serve_and_close(listener)
    listener.close()
    assert path.is_socket()  # systemd's, to remove when its socket unit stops
