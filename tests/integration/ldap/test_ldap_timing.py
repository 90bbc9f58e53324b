"""No user enumeration by timing.  ``ldap_auth_method: custom``: a login with no hash to
compare (no such entry, several, an entry without the password attribute) takes as long
as a wrong password for a real user, whose {CRYPT} hash the daemon checks itself (a decoy
hash of the same cost is checked: decoy.py).  ``bind``: a login with no DN to bind as
still makes its bind, as a DN that does not exist, so it takes the same round trips, and
then waits out what the directory's check of a real user's password costs (a {CRYPT}
hash: milliseconds; a DN that does not exist: nothing); ``fastbind`` likewise for every
refused bind.  On the event loop's path and in the fast lane's threads.  Medians compared
with each other, never with a fixed time, except as a lower bound (which load cannot
break)."""

from __future__ import annotations

import pytest
from ldap_server import BASE_DN, PEOPLE_DN, SERVICE_DN, SERVICE_PW
from timing import assert_alike, check_medians

from saslauthpy.backends.base import Result
from saslauthpy.backends.ldap.backend import BIND_SAMPLES
from saslauthpy.protocol import Request

CUSTOM = f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\nldap_auth_method: custom\n"
BIND = f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\nldap_auth_method: bind\n"
FASTBIND = f"ldap_auth_method: fastbind\nldap_filter: uid=%U,{PEOPLE_DN}\n"
CASES = {
    "wrong password": ("bob", Result.FAIL),  # {CRYPT}$6$: a real hash checked here
    "unknown user": ("nobody", Result.UNKNOWN),
    "no userPassword": ("carol", Result.FAIL),
    "ambiguous": ("twin", Result.UNKNOWN),
}


def checker(b, path: str):
    if path == "event loop":
        def check(request):
            return b.answer(request.login, request.password, request.realm, request.service)
        return check
    return b.backend.check  # blocking, on this thread's own connections (now.py)


@pytest.mark.parametrize("path", ["event loop", "fast lane thread"])
def test_a_login_with_no_hash_takes_as_long_as_a_wrong_password(slapd, backend, path):
    b = backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{CUSTOM}")
    found = check_medians(checker(b, path), CASES)
    assert_alike(found, "wrong password")


@pytest.mark.parametrize("path", ["event loop", "fast lane thread"])
def test_bind_a_login_with_no_dn_takes_as_long_as_a_wrong_password(slapd, backend, path):
    """The directory checks the password ({SSHA}: microseconds): what told an unknown
    user apart before the decoy bind was the bind's round trip (half the time).  (An
    ambiguous login is not compared: it is a directory's mistake, and each one writes a
    warning to the log, which costs time of its own.)"""
    b = backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{BIND}")
    cases = {"wrong password": ("alice", Result.FAIL), "unknown user": ("nobody", Result.UNKNOWN)}
    found = check_medians(checker(b, path), cases, rounds=41)
    assert_alike(found, "wrong password", factor=1.4)


@pytest.mark.parametrize("path", ["event loop", "fast lane thread"])
def test_bind_an_unknown_user_takes_as_long_as_a_wrong_costly_password(slapd, backend, path):
    """bob's {CRYPT}$6$ costs the directory milliseconds to check, a DN that does not exist
    nothing: the decoy bind waits out what the real binds took (it answered 11 times
    sooner without that: 0.43 against 4.84 ms)."""
    b = backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{BIND}")
    cases = {"wrong password": ("bob", Result.FAIL), "unknown user": ("nobody", Result.UNKNOWN)}
    found = check_medians(checker(b, path), cases, rounds=41)
    assert_alike(found, "wrong password")


@pytest.mark.parametrize("path", ["event loop", "fast lane thread"])
def test_fastbind_a_dn_that_does_not_exist_takes_as_long_as_a_wrong_password(slapd, backend,
                                                                               path):
    """fastbind cannot tell an unknown user from a wrong password (both are refused binds),
    so every refused bind lasts at least what a real user's accepted bind took (bob's
    {CRYPT}$6$: 2.67 against 0.20 ms without that)."""
    b = backend(f"ldap_servers: {slapd.uri}\n{FASTBIND}")
    check = checker(b, path)
    assert check(Request("bob", b"bob-secret", "smtp", "")).result is Result.OK  # learned
    cases = {"wrong password": ("bob", Result.FAIL), "unknown user": ("nobody", Result.FAIL)}
    found = check_medians(check, cases, rounds=41)
    assert_alike(found, "wrong password")


@pytest.mark.parametrize("path", ["event loop", "fast lane thread"])
def test_a_bind_cost_under_a_millisecond_is_still_waited_out(slapd, backend, path):
    """Where the directory's hash costs about a millisecond (slapd's {CRYPT}$6$ on a quick
    machine: 1.0 ms), what an unknown user has left to wait is under one, and is waited
    out (it was not: 0.11 against 1.54 ms for a wrong password).  A lower bound only: load
    can make the answer later, never sooner."""
    b = backend(f"ldap_servers: {slapd.uri}\n{FASTBIND}")
    b.backend.bind_times.extend([0.0009] * BIND_SAMPLES)  # as if real binds took 0.9 ms
    found = check_medians(checker(b, path), {"unknown user": ("nobody", Result.FAIL)},
                          rounds=11)
    assert found["unknown user"] >= 0.00085, f"{found['unknown user'] * 1000:.2f} ms"


def test_a_directory_of_cheap_hashes_wastes_nothing(slapd, backend):
    """{SSHA} costs microseconds: until a costly hash was seen, a login with no hash is
    not slowed down by a decoy (a flood of unknown users costs no hashing)."""
    b = backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{CUSTOM}")
    assert b.answer("alice", "wrong").result is Result.FAIL  # {SSHA}
    assert b.answer("nobody", "wrong").result is Result.UNKNOWN
    assert not b.compare.decoy.ready
    assert b.answer("bob", "wrong").result is Result.FAIL  # {CRYPT}$6$: now learned
    assert b.compare.decoy.ready
