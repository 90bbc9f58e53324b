"""``-a sasldb``: the cleartext ``userPassword`` of a Cyrus sasldb file, and its admin store.

Lookup as saslauthd 2.1.28's ``auth_sasldb``: key ``login\\0realm\\0userPassword``; an
empty realm means this host's name (``gethostname()``, which is also saslpasswd2's
default ``-u``); login and realm are case-sensitive; the stored password is compared in
constant time.  The file is Berkeley DB, GDBM or LMDB, told apart by its magic bytes
(see ``files``).

Options: the ``[sasldb]`` table, ``Options`` below (``format``, ``backup`` and ``mode``
are for the admin store).

Never a torn read: Berkeley DB and GDBM files are rewritten into a copy that replaces
the original by ``rename()``, and every lookup opens the file anew (as cyrus-sasl
does), so a lookup sees the old file or the new one; LMDB has transactions.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hmac
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import NoSuchUser, UserExists
from ...hardening import create
from ...options import option
from ...protocol import Request
from .. import base
from ..base import OK, UNKNOWN, Answer, User, tempfail
from .files import (
    FORMATS,
    PROPERTY,
    DbFile,
    SasldbError,
    detect,
    make_key,
    open_db,
    parse_key,
)

OPEN_RETRIES = 3  # a file rewritten in place by saslpasswd2 may be caught mid-write
DEFAULT_PATH = "/etc/sasldb2"  # saslpasswd2's


@dataclass(frozen=True)
class Options:
    """The ``[sasldb]`` table."""

    path: str = option("", f"the sasldb file (default: -O, else {DEFAULT_PATH})")
    format: str = option("berkeley", "format of a file saslauthpy-admin creates",
                         choices=FORMATS)
    backup: bool = option(False, "saslauthpy-admin keeps PATH.bak, the file before its "
                          "last change")
    mode: int = option(0o640, "mode of a file saslauthpy-admin creates")


def path_of(options: Options, config: Any) -> str:
    """The [sasldb] ``path``, else -O, else /etc/sasldb2 (saslpasswd2's default)."""
    return options.path or config.mech_options or DEFAULT_PATH


def default_realm(realm: str) -> str:
    return realm or socket.gethostname()


def _why(path: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return (f"sasldb {path} does not exist: create it with saslpasswd2 -c "
                f"or saslauthpy-admin user add --store sasldb, or set [sasldb] path")
    if isinstance(exc, PermissionError):
        return f"sasldb {path} is not readable by uid {os.getuid()}: fix its owner or mode"
    return str(exc) if isinstance(exc, SasldbError) else f"sasldb {path}: {exc}"


class Backend(base.Backend):
    name = "sasldb"
    Options = Options
    inline = True  # a local file read and a comparison

    def __init__(self, config: Any, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        self.path = path_of(self.options, config)

    def identity(self, login: str, realm: str) -> tuple[str, str]:
        return login, default_realm(realm)  # exact, as saslpasswd2 stores them

    def lookup(self, login: str, realm: str) -> bytes | None:
        """The stored cleartext password, or None; raises for a broken/missing file."""
        key = make_key(login, default_realm(realm))
        for attempt in range(1, OPEN_RETRIES):
            try:
                return self._get(key)
            except (FileNotFoundError, PermissionError):
                raise
            except Exception:  # noqa: BLE001 - libdb/gdbm errors on a half-written file
                time.sleep(0.01 * attempt)
        return self._get(key)  # the last try: its error is the answer

    def _get(self, key: bytes) -> bytes | None:
        with open_db(self.path, detect(self.path)) as db:
            return db.get(key)

    def check(self, request: Request) -> Answer:
        try:
            stored = self.lookup(request.login, request.realm)
        except Exception as exc:  # noqa: BLE001 - never let a file problem escape
            return tempfail(_why(self.path, exc))
        if stored is None:
            return UNKNOWN
        if hmac.compare_digest(stored, request.password):
            return OK
        return base.FAIL


class Store(base.Store):
    """saslpasswd2 / sasldblistusers2 for ``saslauthpy-admin --store sasldb``."""

    name = "sasldb"
    Options = Options

    def __init__(self, config: Any, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        self.path = path_of(self.options, config)
        self.new_format = self.options.format
        self.backup = self.options.backup
        self.mode = self.options.mode

    # -- reading
    def _format(self) -> str | None:
        try:
            return detect(self.path)
        except FileNotFoundError:
            return None

    def _rows(self) -> list[tuple[bytes, bytes]]:
        fmt = self._format()
        if fmt is None:
            return []
        with open_db(self.path, fmt) as db:
            return list(db.items())

    def users(self, realm: str | None = None) -> Iterator[User]:
        seen: set[tuple[str, str]] = set()
        for key, _value in self._rows():
            parsed = parse_key(key)
            if parsed is None:
                continue
            login, user_realm, _prop = parsed
            if realm is not None and user_realm != realm:
                continue
            if (login, user_realm) not in seen:
                seen.add((login, user_realm))
                yield User(login, user_realm)

    # -- writing
    def add(self, login: str, realm: str, password: bytes) -> None:
        self._put(login, realm, password, new=True)

    def set_password(self, login: str, realm: str, password: bytes) -> None:
        self._put(login, realm, password, new=False)

    def _put(self, login: str, realm: str, password: bytes, new: bool) -> None:
        """Store the password of a user that must be ``new`` (or must exist)."""
        realm = default_realm(realm)
        key = make_key(login, realm)

        def change(db: DbFile) -> None:
            exists = db.get(key) is not None
            if new and exists:
                raise UserExists(f"{login}@{realm} already exists")
            if not new and not exists:
                raise NoSuchUser(f"{login}@{realm} is not in {self.path}")
            db.put(key, password)

        self._modify(change)

    def delete(self, login: str, realm: str) -> None:
        realm = default_realm(realm)
        prefix = make_key(login, realm, b"")

        def change(db: DbFile) -> None:
            keys = [k for k, _v in db.items() if k.startswith(prefix)]
            if not keys:
                raise NoSuchUser(f"{login}@{realm} is not in {self.path}")
            for k in keys:  # every property: userPassword and any mechanism secrets
                db.delete(k)

        self._modify(change)

    def set_enabled(self, login: str, realm: str, enabled: bool) -> None:
        raise NotImplementedError(
            "sasldb has no enabled/disabled flag (saslpasswd2 neither): "
            "delete the user or set a new password instead")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise our own writers on the directory (the file itself is replaced)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _modify(self, change: Callable[[DbFile], None]) -> None:
        with self._locked():
            fmt = self._format()
            exists = fmt is not None
            fmt = fmt or self.new_format
            if fmt != "lmdb":
                self._rewrite(fmt, exists, change)
                return
            if exists and self.backup:
                self._backup_copy()
            # LMDB: written in place, its transactions keep readers safe
            with open_db(self.path, fmt, write=True, create=not exists, mode=self.mode) as db:
                change(db)

    def _rewrite(self, fmt: str, exists: bool, change: Callable[[DbFile], None]) -> None:
        """Berkeley DB / GDBM: write a copy with ``change`` made, rename it over the file."""
        tmp = f"{self.path}.tmp.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            with open_db(tmp, fmt, create=True, mode=self.mode) as new:
                if exists:
                    with open_db(self.path, fmt) as old:
                        for k, v in old.items():
                            new.put(k, v)
                change(new)
            if exists:
                st = os.stat(self.path)
                os.chmod(tmp, st.st_mode & 0o7777)
                with contextlib.suppress(PermissionError):
                    os.chown(tmp, st.st_uid, st.st_gid)
            else:
                os.chmod(tmp, self.mode)
            _fsync_path(tmp)
            if exists and self.backup:
                self._backup_link()
            os.replace(tmp, self.path)
            _fsync_path(os.path.dirname(os.path.abspath(self.path)))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _backup_link(self) -> None:
        bak = self.path + ".bak"
        tmp = f"{bak}.tmp.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.link(self.path, tmp)  # the current file itself becomes the backup: no copy
        os.replace(tmp, bak)

    def _backup_copy(self) -> None:
        from .lmdbfile import environment

        bak = self.path + ".bak"
        tmp = bak + ".tmp"
        try:
            fd = create(tmp, os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                environment(self.path).copyfd(fd)  # a consistent snapshot, writers not blocked
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, bak)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


__all__ = ["Backend", "Store", "PROPERTY"]
