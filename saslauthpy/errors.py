"""The exception types every layer shares (no imports: anything may import this)."""

from __future__ import annotations


class ConfigError(Exception):
    """A bad setting.  The message is one line naming the key and the fix."""


class AlreadyRunning(ConfigError):
    """The pid file is locked by another instance (saslauthd exits 2 then, and so do we)."""


class UserExists(Exception):
    """``saslauthpy-admin user add`` for a login the store already has."""


class NoSuchUser(Exception):
    """A store operation on a login the store does not have."""


class UnknownScheme(ValueError):
    """A stored password value carries no scheme we know.  ``.scheme`` is the prefix seen
    (``"{FOO}"``, ``"$9$"``, or ``""`` for a value with no prefix) - never the hash."""

    def __init__(self, scheme: str, detail: str = "") -> None:
        self.scheme = scheme
        shown = scheme if scheme else "(no scheme prefix)"
        super().__init__(f"unknown password scheme {shown}" + (f": {detail}" if detail else ""))


class TooCostly(UnknownScheme):
    """A stored hash whose own parameters ask for more work or memory than a check may
    take (``hashcost``): refused unchecked.  The message names the scheme and the
    parameter, never the hash."""

    def __init__(self, scheme: str, detail: str) -> None:
        super().__init__(scheme, detail)
        self.args = (f"refusing a {scheme} hash unchecked: {detail}",)
