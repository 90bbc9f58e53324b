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
