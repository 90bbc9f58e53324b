"""hashcost: the cost parameters of every scheme are read as the libraries read them, and
values beyond the limits are refused before anything is computed."""

from __future__ import annotations

import time

import pytest

from saslauthpy import hashcost, passwords
from saslauthpy.errors import TooCostly, UnknownScheme
from saslauthpy.hashcost import check_argon2, check_crypt, check_pbkdf2


def refused(stored: str) -> str:
    with pytest.raises(TooCostly) as info:
        passwords.verify(b"pw", stored)
    assert stored not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("cost, ok", [(1, True), (5, True), (9, True), (10, False), (11, False)])
def test_yescrypt_memory_as_libxcrypt_encodes_it(cost, ok):
    """chpasswd -s COST: 5 (Debian's default) is 16 MiB, 9 is 256 MiB, 11 is 1 GiB."""
    setting = passwords.gensalt("$y$", cost)
    assert setting is not None
    if ok:
        check_crypt(setting)
    else:
        with pytest.raises(TooCostly, match="memory"):
            check_crypt(setting)


def test_yescrypt_fields():
    fields = hashcost._Fields("j9T$rest")
    assert (fields.take(0), fields.take(1), fields.take(1), fields.more()) == (47, 12, 32, False)
    assert "memory" in refused("$y$jFT$" + "c" * 22 + "$" + "d" * 43)
    # after r: a bit set of optional fields (have - 1 in one character), then each one
    assert "upgrades (g) 3" in refused("$y$j9T10$" + "c" * 22 + "$" + "d" * 43)  # have=4
    assert "passes (t + 1) 17" in refused("$y$j9T/D$" + "c" * 22 + "$" + "d" * 43)  # have=2


def test_each_scheme_limit():
    assert "bcrypt hash unchecked: cost 31" in refused("$2b$31$" + "a" * 53)
    assert "cost 15" in refused("$2y$15$" + "a" * 53)
    check_crypt("$2b$14$" + "a" * 22)
    assert "rounds 999999999" in refused("$6$rounds=999999999$salt$" + "b" * 86)
    assert "rounds" in refused("$5$rounds=2000001$salt$" + "b" * 43)
    check_crypt("$6$rounds=2000000$salt")
    assert "rounds" in refused("$sha1$4000000$salt$" + "b" * 28)
    assert "rounds" in refused("$md5,rounds=900000$salt$" + "b" * 22)
    assert "BSDi" in refused("_zzzz" + "salt" + "b" * 11)
    # $7$: N_log2 = 23 ("L"), r = 32 ("U...."), p = 1 ("/...."): 32 GiB
    assert "scrypt" in refused("$7$LU..../....salt$" + "b" * 43)
    check_crypt(passwords.gensalt("$7$", 0))
    assert "memory" in refused("$argon2id$v=19$m=4194304,t=3,p=4$c2FsdA$" + "A" * 43)
    assert "passes" in refused("{ARGON2}$argon2i$v=19$m=65536,t=11,p=1$c2FsdA$" + "A" * 43)
    assert "lanes" in refused("$argon2id$v=19$m=65536,t=3,p=64$c2FsdA$" + "A" * 43)
    check_argon2("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$" + "A" * 43)
    assert "PBKDF2" in refused("{PBKDF2}$1$salt$2000001$" + "0" * 40)
    check_pbkdf2(100_000)


def test_refusal_is_quick_and_an_unknown_scheme():
    started = time.monotonic()
    with pytest.raises(UnknownScheme):  # what callers that only know UnknownScheme catch
        passwords.verify(b"pw", "{CRYPT}$2b$31$" + "a" * 53)
    assert time.monotonic() - started < 1


def test_malformed_parameters_are_left_to_the_library():
    for stored in ("$2b$99$" + "a" * 53, "$y$!!!$x$y", "$7$short", "$6$rounds=$salt$x"):
        check_crypt(stored)  # not refused here: crypt(3) says no by itself
        assert passwords.verify(b"pw", stored) is False


def test_check_reads_any_stored_form():
    """hashcost.check (the importer's question): prefixed or bare, every costly scheme."""
    for stored in ("{CRYPT}$2b$31$" + "a" * 53, "{SHA512-CRYPT}$6$rounds=9999999$s$h",
                   "{BLF-CRYPT}$2y$20$" + "a" * 53, "{ARGON2ID}$argon2id$v=19$m=9999999,t=1,p=1$",
                   "$argon2i$v=19$m=65536,t=99,p=1$", "{PBKDF2}$1$salt$99999999$" + "0" * 40,
                   "{pbkdf2.hex}$1$salt$99999999$" + "0" * 40):
        with pytest.raises(TooCostly):
            hashcost.check(stored)
    for stored in ("{CRYPT}$2b$10$" + "a" * 53, "{SSHA}c2FsdGVkaGFzaA==", "plain", "",
                   "{PBKDF2}$1$salt$5000$" + "0" * 40, "$y$j9T$salt$hash"):
        hashcost.check(stored)
