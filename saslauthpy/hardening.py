"""What the daemon does to itself at start, and how it creates files, as root.

- ``harden()``: umask 027 (nothing it creates is world-readable or group-writable) and
  no core dumps (``RLIMIT_CORE`` 0: a dump of a worker would hold passwords in clear).
- ``create()``: every file the daemon creates is opened with ``O_NOFOLLOW``, so that a
  symbolic link planted where it writes (a run or log directory someone else can write
  to) cannot point a root-owned write at ``/etc/shadow``.
"""

from __future__ import annotations

import errno
import os
import resource

from .errors import ConfigError

UMASK = 0o027


def harden() -> None:
    os.umask(UMASK)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def create(path: str, flags: int, mode: int = 0o640) -> int:
    """``os.open(path, flags | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode)``; a symbolic link
    at ``path`` is a ``ConfigError`` naming it."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symbolic link: remove it (the daemon does not "
                              "write through links)") from None
        raise
