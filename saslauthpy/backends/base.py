"""The one interface every backend implements.

A backend answers one question: given a ``Request`` (login, password, service,
realm, client address), is it OK, a wrong password (FAIL), an unknown user (so
the next backend in the chain may try) or a temporary failure (the backend is
unreachable: never cached, audited as such)?

The daemon only ever calls the coroutine ``authenticate(request)``.  Most
backends implement ``check()``, a plain blocking method that ``authenticate``
runs in the backend's own bounded thread pool (``-n`` threads, made on first
use).  A backend that has its own way of waiting (PAM's worker processes)
overrides ``authenticate()`` instead and never makes that pool.

Each backend module declares its TOML table as a dataclass, ``Options`` (read by
``options.load``: see options.py); the backend gets it typed as ``self.options``.

Each backend also says which account a login really reaches (``identity()``): what
it ignores (the realm, case, blanks) is dropped, so that the throttle and admin flushes
count every spelling of one account as that account.

A backend that also stores users (the SQL table, sasldb) provides a ``Store``
for ``saslauthpy-admin``.
"""

from __future__ import annotations

import asyncio
import enum
import unicodedata
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..options import load
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


def fold(text: str) -> str:
    """A string as a case-insensitive directory compares it (LDAP's caseIgnoreMatch, a
    ``_ci`` SQL collation): compatibility forms unified (NFKC), case folded, blanks at
    the ends dropped and runs of blanks inside made one space."""
    if text.isascii():  # NFKC changes no ASCII character; casefold is lower() there
        return " ".join(text.lower().split())
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class NoOptions:
    """The table of a backend that takes no keys: any key in it is refused."""


class NotNow(BaseException):
    """An inline check (``Backend.inline``) that cannot end at once (a server slow to
    answer, or gone): nothing was decided, and the request goes the event loop's way.  A
    BaseException, so that no ``except Exception`` on its way takes it for a failed check."""


def run_now(coro: Coroutine[Any, Any, Any]) -> Any:
    """The value of a coroutine whose awaits all return at once (one code for the event
    loop's path and a blocking thread's); ``NotNow`` if it would suspend (it is closed
    then)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise NotNow()


class Backend:
    """Base class: subclasses set ``name`` and ``Options`` and implement ``check`` (or
    ``authenticate``)."""

    name = "base"
    Options: type = NoOptions
    uses_realm = True  # False: the realm never reaches the check (passwd, shadow, PAM)
    # True: ``check`` is a local verify (a file or local database read and a hash), or
    # raises ``NotNow`` rather than wait long on a network, and never asks for a delay, so
    # the fast lane's thread may run it itself instead of handing the request to the event
    # loop and this pool.
    inline = False
    waits = False  # True: ``check`` waits on a server (the fast lane then runs more threads)

    def __init__(self, config: Config, options: Mapping[str, Any] | Any = None):
        """``options``: this backend's ``Options``, or its TOML table (``[name]``) as a
        mapping (checked here), or None for the defaults.

        Validate everything here and raise ``ConfigError`` with one clear line:
        a bad setting must stop the start, not fail every login later.
        """
        self.config = config
        self.options = load(self.Options, options, f"[{self.name}] ")
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        """Connect what must be connected; raise ``ConfigError`` if it cannot work at all."""

    def identity(self, login: str, realm: str) -> tuple[str, str]:
        """The (login, realm) of the account this backend checks for a request's login
        and realm: two requests with one identity reach one account.  Drop only what the
        backend itself ignores.  The default: both as they came (the realm dropped when
        ``uses_realm`` is False)."""
        return login, realm if self.uses_realm else ""

    def check(self, request: Request) -> Answer:
        """Blocking check, run in this backend's pool.  Must not raise for a user's input."""
        raise NotImplementedError

    async def authenticate(self, request: Request) -> Answer:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.config.threads),
                                            thread_name_prefix=f"saslauthpy-{self.name}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.check, request)

    def close(self) -> None:
        """Release connections; called after the last request this backend serves.
        Subclasses that override it call ``super().close()`` (it ends the pool)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


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

    Constructed like a backend: ``Store(config, options)`` with the backend's options."""

    name = "base"
    Options: type = NoOptions

    def __init__(self, config: Config, options: Mapping[str, Any] | Any = None):
        self.config = config
        self.options = load(self.Options, options, f"[{self.name}] ")

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
