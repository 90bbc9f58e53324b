"""The client side of the daemon's control socket ``RUNDIR/saslauthpy.control``: one JSON
line out, one back (the server side is saslauthpy/control.py).

Commands: ``status``; ``flush`` (``login``, ``realm``: a user's cached answers, or all);
``throttle-show`` / ``throttle-clear`` (optional ``login``, ``realm``, ``address``), which
answer ``{"ok": true, "keys": [{"key", "level", "delay"}]}`` and ``{"ok": true, "cleared": n}``.
"""

from __future__ import annotations

import json
import shlex
import socket

from ... import config as configmod


class Unreachable(Exception):
    """Nothing answers on the control socket: no daemon runs with that run directory."""


class Failed(Exception):
    """The daemon answered with an error, or could not be asked; the message says why."""


def ask(config: configmod.Config, request: dict) -> dict:
    """Send one command; the daemon's answer (``ok`` is true)."""
    path = config.control_path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise Unreachable(f"nothing answers on {path}") from None
    except PermissionError:
        raise Failed(f"{path}: permission denied (the control socket is for root)") from None
    except OSError as exc:
        raise Failed(f"{path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise Failed(f"{path}: not a saslauthpy control socket (bad answer)") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        error = reply.get("error", "refused") if isinstance(reply, dict) else "bad answer"
        if isinstance(error, str) and error.startswith("unknown command"):
            error += " (the running daemon is older than this saslauthpy-admin: restart it)"
        raise Failed(f"the daemon: {error}")
    return reply


def flush_command(login: str | None, realm: str | None) -> str:
    """The command line that flushes ``login``'s cached answers in a daemon on another
    run directory (what to tell the administrator when this one is unreachable)."""
    parts = ["saslauthpy-admin", "-m", "DIR", "cache", "flush"]
    if login:
        parts.append(shlex.quote(login))
        if realm:
            parts += ["--realm", shlex.quote(realm)]
    return " ".join(parts)
