"""What the throttle tests share: a settable clock, a Throttle on it, requests and
fingerprints of wrong passwords (an HMAC under a key of the test run's, as the daemon's)."""

from __future__ import annotations

import hashlib
import hmac
import os

from saslauthpy.backends.base import Result
from saslauthpy.protocol import Request
from saslauthpy.throttle import Throttle

KEY = os.urandom(32)


def fp(password: str) -> bytes:
    return hmac.new(KEY, password.encode(), hashlib.sha256).digest()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **options) -> Throttle:
    base = {"base_delay": 1.0, "max_delay": 8.0, "decay": 30.0}
    return Throttle(options={**base, **options}, clock=clock)


def req(login: str = "alice", addr: str = "", realm: str = "") -> Request:
    return Request(login, b"x", "smtp", realm, addr)


def fail(t: Throttle, r: Request, password: str) -> None:
    t.record(r, Result.FAIL, fp(password))
