"""``-a getpwent``: the password field of the passwd database (``getpwnam``).

Like saslauthd's ``auth_getpwent``: look the login up through NSS (so ``/etc/passwd``,
LDAP/SSSD via nsswitch.conf ... all work) and compare ``crypt(password, pw_passwd)`` with
``pw_passwd``.  On a shadowed system ``pw_passwd`` is ``x`` and nothing ever matches;
use ``-a shadow``.  The realm is not used (saslauthd's ``-r`` folds it into the login
before we see it).
"""

from __future__ import annotations

import hmac
import pwd

from ..passwords import crypt
from ..protocol import Request
from . import base
from .base import FAIL, OK, UNKNOWN, Answer


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


class Backend(base.Backend):
    name = "getpwent"

    def check(self, request: Request) -> Answer:
        entry = lookup_passwd(request.login)
        if entry is None:
            return UNKNOWN
        if crypt_matches(request.password, entry.pw_passwd):
            return OK
        return FAIL

