"""The root-only control socket ``RUNDIR/saslauthpy.control`` that saslauthpy-admin
uses to flush cached credentials, read and lift throttle penalties, and ask for a status.
One JSON line in, one out:

    {"cmd": "flush", "login": L, "realm": R}                -> {"ok": true, "flushed": n}
    {"cmd": "throttle-show", "login": L, "realm": R, "address": A}
        -> {"ok": true, "keys": [{"key": "user:root", "level": 3, "delay": 4.0}, ...]}
    {"cmd": "throttle-clear", ...the same selectors}        -> {"ok": true, "cleared": n}
    {"cmd": "status"}                                       -> {"ok": true, "pid": ..., ...}

A login is canonicalised as the backends do (``Authenticator.identities``): ``ROOT``
shows the key of ``root`` when the backend folds case, and ``root`` with realm ``x1`` that
of ``root`` when it ignores the realm; in a chain, one key per account the chain checks.
An address is looked up by its network.  With no login or address, throttle-show counts
the penalised keys (the shared table keeps digests of its keys, not the keys) and
throttle-clear asks for one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .cache import CredentialCache
from .protocol import Request
from .throttle_keys import user_key

if TYPE_CHECKING:
    from .authenticator import Authenticator

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
          status: Callable[[], dict], auth: Authenticator | None = None) -> bytes:
    """Answer one request line from a client running as ``uid``; ``auth`` is the pipeline
    whose throttle (the daemon's penalty table) and identities the throttle commands use
    (None, or a pipeline without a throttle: the throttle is off)."""
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
    if cmd in ("throttle-show", "throttle-clear"):
        return _dump(_throttle(cmd, req, auth))
    if cmd == "status":
        return _dump({"ok": True, "pid": os.getpid(), **status(),
                      "cache": None if cache is None else {"entries": len(cache)}})
    return _dump({"ok": False, "error": f"unknown command {cmd!r}"})


def _throttle(cmd: str, req: dict, auth: Authenticator | None) -> dict[str, Any]:
    login, realm, address = (req.get(k) for k in ("login", "realm", "address"))
    if any(v is not None and not isinstance(v, str) for v in (login, realm, address)):
        return {"ok": False, "error": "login, realm and address must be strings"}
    throttle = auth.throttle if auth is not None else None
    if throttle is None:
        return {"ok": True, "keys": [], "cleared": 0, "note": "the throttle is off"}
    keys = [k for k in [throttle.address_key(address)] if k] if address else []
    if login:
        norm = auth.normalise(Request(login, b"", "", realm or ""))
        keys[:0] = [user_key(i) for i in auth.identities(norm.login, norm.realm)]
    if not keys:  # the shared table keeps digests of its keys, not the keys themselves
        if cmd == "throttle-clear":
            return {"ok": False, "error": "name the login or the address to clear"}
        return {"ok": True, "keys": [], "penalised": throttle.tracked(),
                "note": "the penalty table keeps no names: ask for a login or an address"}
    found = throttle.levels(keys)
    if cmd == "throttle-clear":
        throttle.clear([k for k, _ in found])
        log.info("throttle clear %s: %d keys", login or address, len(found))
        return {"ok": True, "cleared": len(found)}
    return {"ok": True, "keys": [{"key": _shown(k), "level": level,
                                  "delay": throttle.delay_for(level)} for k, level in found]}


def _shown(key: str) -> str:
    """A user key (login, NUL, realm) as ``user:login@realm``, ``a:net`` as ``address:net``."""
    if key.startswith("u:"):
        login, _, realm = key[2:].partition("\0")
        return f"user:{login}@{realm}" if realm else f"user:{login}"
    return "address:" + key[2:]


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
