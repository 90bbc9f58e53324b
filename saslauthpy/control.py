"""The root-only control socket ``RUNDIR/saslauthpy.control`` that saslauthpy-admin
uses to flush cached credentials and ask for a status.  One JSON line in, one out."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from collections.abc import Callable

from .cache import CredentialCache

log = logging.getLogger("saslauthpy")

MAX_LINE = 4096
_PEERCRED = struct.Struct("3i")


def peer_credentials(sock: socket.socket | None) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a UNIX socket (SO_PEERCRED);
    (0, -1, -1) when the socket cannot say."""
    try:
        return _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except (OSError, AttributeError):
        return (0, -1, -1)


def request_line(buf: bytes) -> bytes | None:
    """The request line once ``buf`` holds it whole, None while more may come;
    ValueError when a client sends more than ``MAX_LINE`` bytes without one."""
    if b"\n" in buf:
        return buf.split(b"\n", 1)[0]
    if len(buf) > MAX_LINE:
        raise ValueError("request line too long")
    return None


def reply(request: bytes, uid: int, cache: CredentialCache | None,
          status: Callable[[], dict]) -> bytes:
    """Answer one request line from a client running as ``uid``."""
    try:
        req = json.loads(request)
        if not isinstance(req, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        return _dump({"ok": False, "error": f"bad request: {exc}"})
    if uid not in (0, os.getuid()):
        return _dump({"ok": False, "error": "permission denied"})
    cmd = req.get("cmd")
    if cmd == "flush":
        if cache is None:
            return _dump({"ok": True, "flushed": 0, "note": "the cache is off"})
        n = cache.flush(req.get("login"), req.get("realm"))
        log.info("cache flush %s: %d entries", req.get("login") or "(all)", n)
        return _dump({"ok": True, "flushed": n})
    if cmd == "status":
        return _dump({"ok": True, "pid": os.getpid(), **status(),
                      "cache": None if cache is None else {"entries": len(cache)}})
    return _dump({"ok": False, "error": f"unknown command {cmd!r}"})


def _dump(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def listen(path: str) -> socket.socket:
    """A listening socket at ``path`` that only its owner (root) can connect to."""
    if os.path.lexists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    sock.listen(16)
    return sock
