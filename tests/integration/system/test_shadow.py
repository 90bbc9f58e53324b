"""-a shadow and -a getpwent called directly on real accounts (useradd + chpasswd):
every crypt(3) format chpasswd makes, saslauthd's expiry rules and reply texts, locks."""

from __future__ import annotations

import pytest

from saslauthpy.backends import getpwent, shadow
from saslauthpy.backends.base import Result
from saslauthpy.config import Config
from saslauthpy.protocol import Request

GOOD = "Shadow-good-1"


def ask(backend, login, password=GOOD):
    return backend.check(Request(login, password.encode(), "smtp", ""))


@pytest.mark.parametrize("method", ["SHA512", "YESCRYPT", "SHA256", "MD5"])
def test_each_hash_format(accounts, method):
    user = accounts.add(GOOD, method)
    b = shadow.Backend(Config(), {})
    assert ask(b, user).result is Result.OK
    assert ask(b, user, "wrong").result is Result.FAIL
    assert ask(b, "nosuch" + user).result is Result.UNKNOWN
    assert ask(b, user.upper()).result is Result.UNKNOWN  # saslauthd does not fold case


def test_expiry_rules_and_texts(accounts):
    b = shadow.Backend(Config(), {})
    expired = accounts.add(GOOD)
    accounts.expire_account(expired)
    answer = ask(b, expired)
    assert (answer.result, answer.reason) == (Result.FAIL, "Account expired")
    assert ask(b, expired, "wrong").reason != "Account expired"  # no probing without the password
    old = accounts.add(GOOD)
    accounts.expire_password(old)
    answer = ask(b, old)
    assert (answer.result, answer.reason) == (Result.FAIL, "Password expired")
    locked = accounts.add(GOOD)
    accounts.lock(locked)
    assert ask(b, locked).result is Result.FAIL


def test_expiry_rule_arithmetic():
    entry = shadow.ShadowEntry("u", "$6$x", lstchg=100, max=10, expire=-1)
    assert shadow.expiry_answer(entry, 110) is None  # lstchg + max == today: still valid
    assert shadow.expiry_answer(entry, 111).reason == "Password expired"
    never = shadow.ShadowEntry("u", "$6$x", lstchg=-1, max=10, expire=-1)
    assert shadow.expiry_answer(never, 10**6) is None
    ends = shadow.ShadowEntry("u", "$6$x", lstchg=100, max=-1, expire=200)
    assert shadow.expiry_answer(ends, 200) is None
    assert shadow.expiry_answer(ends, 201).reason == "Account expired"


def test_stored_values_that_are_not_crypt_hashes_fail(accounts):
    """crypt(password, stored) == stored, as saslauthd: a value libxcrypt cannot use
    (``NOLOGIN``) or a Dovecot scheme (``{PLAIN}``) is a NO, not an exception."""
    for backend in (shadow.Backend(Config(), {}), getpwent.Backend(Config(), {})):
        for stored in ("NOLOGIN", "LK", "$9$abc", "{PLAIN}" + GOOD):
            user = accounts.add(GOOD)
            accounts.set_hash(user, stored)
            if backend.name == "getpwent":
                accounts.hash_into_passwd(user)
            assert ask(backend, user).result is Result.FAIL, stored


def test_getpwent_reads_pw_passwd(accounts):
    b = getpwent.Backend(Config(), {})
    shadowed = accounts.add(GOOD)
    assert ask(b, shadowed).result is Result.FAIL  # pw_passwd is "x"
    plain = accounts.add(GOOD, "YESCRYPT")
    accounts.hash_into_passwd(plain)
    assert ask(b, plain).result is Result.OK
    assert ask(b, plain, "wrong").result is Result.FAIL
    assert ask(b, "nosuch" + plain).result is Result.UNKNOWN
    assert getpwent.is_locked("!$6$abc") and getpwent.is_locked("*") and getpwent.is_locked("")
