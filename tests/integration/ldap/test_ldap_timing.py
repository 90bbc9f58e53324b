"""No user enumeration by timing against ``ldap_auth_method: custom``: a login with no
hash to compare (no such entry, several, an entry without the password attribute) takes
as long as a wrong password for a real user, whose {CRYPT} hash the daemon checks itself
(a decoy hash of the same cost is checked: decoy.py).  On the event loop's path and in the
fast lane's threads.  Medians compared with each other, never with a fixed time."""

from __future__ import annotations

import pytest
from ldap_server import BASE_DN, SERVICE_DN, SERVICE_PW
from timing import assert_alike, check_medians

from saslauthpy.backends.base import Result

CUSTOM = f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\nldap_auth_method: custom\n"
CASES = {
    "wrong password": ("bob", Result.FAIL),  # {CRYPT}$6$: a real hash checked here
    "unknown user": ("nobody", Result.UNKNOWN),
    "no userPassword": ("carol", Result.FAIL),
    "ambiguous": ("twin", Result.UNKNOWN),
}


@pytest.mark.parametrize("path", ["event loop", "fast lane thread"])
def test_a_login_with_no_hash_takes_as_long_as_a_wrong_password(slapd, backend, path):
    b = backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{CUSTOM}")
    if path == "event loop":
        def check(request):
            return b.answer(request.login, request.password, request.realm, request.service)
    else:
        check = b.backend.check  # blocking, on this thread's own connections (now.py)
    found = check_medians(check, CASES)
    assert_alike(found, "wrong password")


def test_a_directory_of_cheap_hashes_wastes_nothing(slapd, backend):
    """{SSHA} costs microseconds: until a costly hash was seen, a login with no hash is
    not slowed down by a decoy (a flood of unknown users costs no hashing)."""
    b = backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{CUSTOM}")
    assert b.answer("alice", "wrong").result is Result.FAIL  # {SSHA}
    assert b.answer("nobody", "wrong").result is Result.UNKNOWN
    assert not b.compare.decoy.ready
    assert b.answer("bob", "wrong").result is Result.FAIL  # {CRYPT}$6$: now learned
    assert b.compare.decoy.ready
