"""hashshape.verifiable: every scheme saslauthpy hashes with is recognised, and cleartext,
truncated or unknown values are not (what ``user import`` refuses)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from saslauthpy import hashshape, passwords


@pytest.mark.parametrize("scheme", sorted(passwords.HASH_SCHEMES))
def test_every_new_hash_is_verifiable_and_a_cut_one_is_not(scheme):
    try:
        stored = passwords.hash_password(b"pw", scheme)
    except ValueError as exc:  # e.g. a crypt method this libxcrypt lacks
        pytest.skip(str(exc))
    assert hashshape.verifiable(stored), stored
    assert passwords.verify(b"pw", stored)
    assert not hashshape.verifiable(stored[:len(stored) // 2])


@pytest.mark.parametrize("stored", [
    "{PLAIN-MD5}" + hashlib.md5(b"x").hexdigest(),
    "{MD5}" + base64.b64encode(hashlib.md5(b"x").digest()).decode(),
    "{SHA}" + base64.b64encode(hashlib.sha1(b"x").digest()).decode(),
    "{SHA256.HEX}" + hashlib.sha256(b"x").hexdigest(),
    "abiQ6Ep3EYTHc",  # DES crypt
])
def test_other_known_forms(stored):
    assert hashshape.verifiable(stored)


@pytest.mark.parametrize("stored", [
    "secret123",          # cleartext
    "{PLAIN}secret123",   # labelled cleartext is still cleartext
    "{CLEARTEXT}x",
    "$6$abc$def",         # the setting of a SHA-512 crypt, with no real hash
    "$9$abc$def",         # no such crypt method
    "{FOO}abcd",          # no such scheme
    "{SHA}abcd",          # too short for SHA-1
    "{SSHA}" + base64.b64encode(hashlib.sha1(b"x").digest()).decode(),  # no salt
    "",
])
def test_what_cannot_be_verified(stored):
    assert not hashshape.verifiable(stored)


def test_plain_labels():
    assert hashshape.is_plain("{PLAIN}x") and hashshape.is_plain("{clear}x")
    assert not hashshape.is_plain("{SSHA}x") and not hashshape.is_plain("x")
