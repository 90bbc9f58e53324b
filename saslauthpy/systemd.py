"""The two pieces of systemd's protocol a daemon needs, without libsystemd:
socket activation (LISTEN_FDS) and readiness notification (NOTIFY_SOCKET)."""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3


def listen_sockets() -> list[tuple[str, socket.socket]]:
    """The sockets passed by systemd (or any supervisor speaking its protocol), in order,
    each with its name (``LISTEN_FDNAMES``: the socket unit's ``FileDescriptorName=``,
    else the unit's name; "" when none was given)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children
    passed = []
    for i in range(max(0, count)):
        sock = socket.socket(fileno=SD_LISTEN_FDS_START + i)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise OSError("a passed socket is not a UNIX stream socket (ListenStream=/path)")
        sock.setblocking(False)
        passed.append((names[i] if i < len(names) else "", sock))
    return passed


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1") to NOTIFY_SOCKET; False if there is none."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall(state.encode())
        return True
    except OSError:
        return False
