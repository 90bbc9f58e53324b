"""The one interface every backend implements.

A backend answers one question: given a ``Request`` (login, password, service,
realm, client address), is it OK, a wrong password (FAIL), an unknown user (so
the next backend in the chain may try) or a temporary failure (the backend is
unreachable: never cached, audited as such)?

Most backends only implement ``check()``, a plain blocking method that the
daemon runs in its bounded worker pool.  A backend that has its own way of
waiting (PAM's fail delay, a subprocess) overrides the coroutine
``authenticate()`` instead.

A backend that also stores users (the SQL table, sasldb) provides a ``Store``
for ``saslauthpy-admin``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol import Request

if TYPE_CHECKING:
    from ..config import Config


class Result(enum.Enum):
    OK = "ok"
    FAIL = "fail"  # wrong password, disabled/expired/locked account
    UNKNOWN = "unknown"  # no such user here; the next backend may try
    TEMPFAIL = "tempfail"  # backend unreachable or broken; never cached


@dataclass(frozen=True, slots=True)
class Answer:
    result: Result
    reason: str = ""  # for the audit log and, when allowed, the reply ("Password expired")
    delay: float = 0.0  # seconds to wait (asynchronously) before replying, e.g. PAM fail delay


OK = Answer(Result.OK)
FAIL = Answer(Result.FAIL, "wrong password")
UNKNOWN = Answer(Result.UNKNOWN, "unknown user")


def tempfail(reason: str) -> Answer:
    return Answer(Result.TEMPFAIL, reason)


class Backend:
    """Base class: subclasses set ``name`` and implement ``check`` (or ``authenticate``)."""

    name = "base"

    def __init__(self, config: Config, options: Mapping[str, Any]):
        """``options`` is this backend's TOML table (``[name]``), possibly empty.

        Validate everything here and raise ``ConfigError`` with one clear line:
        a bad setting must stop the start, not fail every login later.
        """
        self.config = config
        self.options = options

    def open(self) -> None:
        """Connect what must be connected; raise ``ConfigError`` if it cannot work at all."""

    def check(self, request: Request) -> Answer:
        """Blocking check, run in the worker pool.  Must not raise for a user's input."""
        raise NotImplementedError

    async def authenticate(self, request: Request, pool: Executor) -> Answer:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, self.check, request)

    def close(self) -> None:
        """Release connections; called after the last request this backend serves."""


@dataclass(frozen=True, slots=True)
class User:
    login: str
    realm: str
    enabled: bool = True
    created: str = ""
    changed: str = ""


class Store:
    """User management for ``saslauthpy-admin``.  Passwords arrive in clear; each store
    decides how to keep them (the SQL table hashes, sasldb keeps cleartext as saslauthd does).

    Constructed like a backend: ``Store(config, options)`` with the backend's TOML table."""

    def __init__(self, config: Config, options: Mapping[str, Any]):
        self.config = config
        self.options = options

    def add(self, login: str, realm: str, password: bytes) -> None:
        raise NotImplementedError

    def set_password(self, login: str, realm: str, password: bytes) -> None:
        raise NotImplementedError

    def delete(self, login: str, realm: str) -> None:
        raise NotImplementedError

    def set_enabled(self, login: str, realm: str, enabled: bool) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot disable users")

    def users(self, realm: str | None = None) -> Iterator[User]:
        raise NotImplementedError

    def close(self) -> None:
        pass
