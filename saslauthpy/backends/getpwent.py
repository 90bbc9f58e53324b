"""``-a getpwent``: the password field of the passwd database (``getpwnam``).

Like saslauthd's ``auth_getpwent``: look the login up through NSS (so ``/etc/passwd``,
LDAP/SSSD via nsswitch.conf ... all work) and compare ``crypt(password, pw_passwd)`` with
``pw_passwd``.  On a shadowed system ``pw_passwd`` is ``x`` and nothing ever matches;
use ``-a shadow``.  The realm is not used (saslauthd's ``-r`` folds it into the login
before we see it).

``CryptBackend`` is what this and ``-a shadow`` share: the realm left out of the
identity, a decoy check for unknown users and locked accounts (so that they take as long
as a wrong password), and hashes beyond the cost limits refused with a log line.
"""

from __future__ import annotations

import hmac
import logging
import pwd
from collections.abc import Mapping
from typing import Any

from ..decoy import Decoy
from ..errors import TooCostly
from ..passwords import crypt
from ..protocol import Request
from . import base
from .base import FAIL, OK, UNKNOWN, Answer

log = logging.getLogger("saslauthpy")


def is_locked(stored: str) -> bool:
    """``!``/``*`` prefixed, empty or one-character hashes can never match a password."""
    return not stored or stored[0] in "!*" or len(stored) < 2


def crypt_matches(password: bytes, stored: str) -> bool:
    """saslauthd's test, ``crypt(password, stored) == stored`` (libxcrypt, every crypt(3)
    format), compared in constant time.  A value crypt(3) cannot use (``NOLOGIN``, a
    ``{SCHEME}`` prefix) matches nothing."""
    if is_locked(stored):
        return False
    hashed = crypt(password, stored)
    return hashed is not None and hmac.compare_digest(hashed.encode(), stored.encode())


def lookup_passwd(login: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(login)
    except (KeyError, ValueError, UnicodeError):
        return None


class CryptBackend(base.Backend):
    """A backend checking crypt(3) hashes of local accounts."""

    uses_realm = False
    inline = True  # NSS lookups and crypt(3), which releases the GIL

    def __init__(self, config: Any, options: Mapping[str, Any] | None = None):
        super().__init__(config, options)
        self.decoy = Decoy()

    def unknown(self, request: Request) -> Answer:
        self.decoy.waste(request.password)
        return UNKNOWN

    def matches(self, request: Request, stored: str) -> bool:
        """``crypt_matches``, with a decoy check where there is nothing to compute."""
        if is_locked(stored):
            self.decoy.waste(request.password)
            return False
        try:
            good = crypt_matches(request.password, stored)
        except TooCostly as exc:
            log.warning("%s: user %r: %s; answering NO", self.name, request.login, exc)
            return False
        self.decoy.learn(stored)
        return good


class Backend(CryptBackend):
    name = "getpwent"

    def check(self, request: Request) -> Answer:
        entry = lookup_passwd(request.login)
        if entry is None:
            return self.unknown(request)
        return OK if self.matches(request, entry.pw_passwd) else FAIL

