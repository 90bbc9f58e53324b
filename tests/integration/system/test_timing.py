"""No user enumeration by timing against -a shadow and -a getpwent: an unknown user and a
locked account take as long as a wrong password for a real user (a decoy hash of the
scheme the real accounts use is checked).  Real accounts (chpasswd), real NSS, real
libxcrypt; medians compared with each other, never with a fixed time."""

from __future__ import annotations

import pytest
from timing import assert_alike, check_medians

from saslauthpy.backends import getpwent, shadow
from saslauthpy.backends.base import Result
from saslauthpy.config import Config
from saslauthpy.protocol import Request

GOOD = "Timing-good-1"


@pytest.mark.parametrize("method", ["YESCRYPT", "SHA512"])
def test_shadow_unknown_and_locked_take_as_long_as_wrong(accounts, method):
    real, locked = accounts.add(GOOD, method), accounts.add(GOOD, method)
    accounts.lock(locked)
    backend = shadow.Backend(Config(), {})
    backend.check(Request(real, b"warm-up", "smtp", ""))  # the real accounts' scheme
    found = check_medians(backend.check, {"wrong password": (real, Result.FAIL),
                                          "unknown user": ("nosuch" + real, Result.UNKNOWN),
                                          "locked account": (locked, Result.FAIL)})
    assert_alike(found, "wrong password")


def test_getpwent_unknown_takes_as_long_as_wrong(accounts):
    real = accounts.add(GOOD, "YESCRYPT")
    accounts.hash_into_passwd(real)
    backend = getpwent.Backend(Config(), {})
    found = check_medians(backend.check, {"wrong password": (real, Result.FAIL),
                                          "unknown user": ("nosuch" + real, Result.UNKNOWN)})
    assert_alike(found, "wrong password")
