"""No user enumeration by timing.  ``ldap_auth_method: custom``: a login with no hash to
compare (no such entry, several, an entry without the password attribute) takes as long
as a wrong password for a real user, whose {CRYPT} hash the daemon checks itself (a decoy
hash of the same cost is checked: decoy.py).  ``bind``: a login with no DN to bind as
still makes its bind, as a DN that does not exist, so it takes the same round trips.  On
the event loop's path and in the fast lane's threads.  Medians compared with each other,
never with a fixed time."""

from __future__ import annotations

import pytest
from ldap_server import BASE_DN, SERVICE_DN, SERVICE_PW
from timing import assert_alike, check_medians

from saslauthpy.backends.base import Result

CUSTOM = f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\nldap_auth_method: custom\n"
BIND = f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\nldap_auth_method: bind\n"
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


def test_a_directory_of_cheap_hashes_wastes_nothing(slapd, backend):
    """{SSHA} costs microseconds: until a costly hash was seen, a login with no hash is
    not slowed down by a decoy (a flood of unknown users costs no hashing)."""
    b = backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{CUSTOM}")
    assert b.answer("alice", "wrong").result is Result.FAIL  # {SSHA}
    assert b.answer("nobody", "wrong").result is Result.UNKNOWN
    assert not b.compare.decoy.ready
    assert b.answer("bob", "wrong").result is Result.FAIL  # {CRYPT}$6$: now learned
    assert b.compare.decoy.ready
