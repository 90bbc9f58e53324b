"""The root-only control socket ``RUNDIR/saslauthpy.control`` that saslauthpy-admin
uses to flush cached credentials and ask for a status.  One JSON line in, one out."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable

from .cache import CredentialCache

log = logging.getLogger("saslauthpy")


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
