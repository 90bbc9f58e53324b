"""Decoy hashes: an unknown user or a locked account takes as long to refuse as a wrong
password for a real user, so that logins cannot be enumerated by timing.

A backend that finds no usable hash for a login checks the password against a decoy
instead: a hash of a random password with the cost parameters of the real hashes the
backend last checked (``learn``), or, before it has seen one, of the scheme new
passwords get (``passwords.DEFAULT_SCHEME``: yescrypt, what Debian's chpasswd writes).
Cheap schemes (salted digests, cleartext) need no decoy: a wrong password costs the same
microseconds as a missing user.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import threading

from . import passwords
from .errors import UnknownScheme
from .hashcost import check_argon2, check_pbkdf2

KEPT = 8  # decoys kept, one per cost signature (a table may mix a few schemes)

_PREFIX = re.compile(r"^\{[A-Za-z0-9_.-]{1,40}\}")
_ARGON2 = re.compile(r"^\$argon2(id|i|d)\$(?:v=\d+\$)?m=(\d+),t=(\d+),p=(\d+)\$")
_PBKDF2 = re.compile(r"^\$1\$[^$]+\$([0-9]{1,9})\$")


def _random() -> bytes:
    return base64.b64encode(os.urandom(12))


def signature(stored: str) -> str | None:
    """What decides the cost of checking ``stored`` (scheme and parameters, no salt and no
    hash), or None when checking it is cheap."""
    value = _PREFIX.sub("", stored, count=1)
    if value.startswith("$argon2"):
        m = _ARGON2.match(value)
        return m.group(0) if m else None
    if stored.upper().startswith("{PBKDF2}"):
        m = _PBKDF2.match(value)
        return f"pbkdf2:{m.group(1)}" if m else None
    if value.startswith("$2") and len(value) >= 7:
        return value[:6]  # $2b$12
    if value.startswith("$7$"):
        return value[:14]  # N, r, p
    if value.startswith("$") and value.count("$") >= 3:
        return value[:value.rindex("$", 0, value.rindex("$"))]  # $y$j9T, $6$rounds=N, $1
    if value.startswith("_") and len(value) == 20:
        return value[:5]  # BSDi rounds
    return None


def make(stored: str) -> str | None:
    """A hash of a random password that costs what ``stored`` costs (None: cannot);
    ``TooCostly`` for a value beyond the cost limits."""
    value = _PREFIX.sub("", stored, count=1)
    m = _ARGON2.match(value)
    if m:
        import argon2

        check_argon2(value)
        kind = {"id": argon2.Type.ID, "i": argon2.Type.I, "d": argon2.Type.D}[m.group(1)]
        hasher = argon2.PasswordHasher(time_cost=int(m.group(3)), memory_cost=int(m.group(2)),
                                       parallelism=int(m.group(4)), type=kind)
        return "{ARGON2}" + hasher.hash(_random())
    m = _PBKDF2.match(value)
    if m and stored.upper().startswith("{PBKDF2}"):
        import hashlib

        rounds, salt = int(m.group(1)), _random().decode()[:16]
        check_pbkdf2(rounds)
        digest = hashlib.pbkdf2_hmac("sha1", _random(), salt.encode(), rounds, 20)
        return f"{{PBKDF2}}$1${salt}${rounds}${digest.hex()}"
    setting = value[:29] if value.startswith("$2") else value[:value.rfind("$")]
    if value.startswith("_"):
        setting = value[:9]
    return passwords.crypt(_random(), setting) if setting else None


class Decoy:
    """The decoy of one backend.  ``learn(stored)`` after each real check (cheap unless the
    cost parameters changed); ``waste(password)`` where no real hash could be checked.
    ``fallback``: before any costly hash was learned, waste on one of the scheme new
    passwords get (False: waste nothing then, for a store whose hashes may all be cheap,
    such as a directory of {SSHA} values)."""

    def __init__(self, fallback: bool = True) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, str] = {}  # signature -> decoy hash
        self._current: str | None = None
        self.fallback = fallback

    @property
    def ready(self) -> bool:
        """``waste()`` would check something."""
        return self._current is not None or self.fallback

    def learn(self, stored: str) -> None:
        sig = signature(stored)
        if sig is None:
            return
        decoy = self._made.get(sig)
        if decoy is None:
            with contextlib.suppress(Exception):  # a value crypt(3) refuses: keep the old
                decoy = make(stored)
            if decoy is None:
                return
            with self._lock:
                if len(self._made) >= KEPT:
                    self._made.pop(next(iter(self._made)))
                self._made[sig] = decoy
        self._current = decoy

    def waste(self, password: bytes) -> None:
        """Check ``password`` against the decoy and forget the answer."""
        decoy = self._current
        if decoy is None:
            if not self.fallback:
                return
            decoy = self._current = passwords.hash_password(_random())
        with contextlib.suppress(UnknownScheme, ValueError):
            passwords.verify(password, decoy)
