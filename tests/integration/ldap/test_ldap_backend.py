"""The ldap backend class against a real slapd: methods, groups, schemes, TLS, failover."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import ldap
import pytest
from ldap_server import (
    BASE_DN,
    MAILUSERS_DN,
    PEOPLE_DN,
    SERVICE_DN,
    SERVICE_PW,
    Slapd,
    TestCA,
    user_dn,
)

from saslauthpy.backends.base import Result
from saslauthpy.backends.ldap import Backend
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError

SERVICE = f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\n"


def check(b, login: str, password: str, realm: str = "", service: str = "imap") -> Result:
    return b.answer(login, password, realm, service).result


OK, FAIL, UNKNOWN, TEMPFAIL = Result.OK, Result.FAIL, Result.UNKNOWN, Result.TEMPFAIL
INJECTIONS = ["*", "a*", "x)(uid=*", "alice)(|(uid=*", "*)(uid=alice", "alice\\2a"]


def base(slapd: Slapd, extra: str = "") -> str:
    return f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{extra}"


METHODS = {
    "bind": "",
    "custom": SERVICE + "ldap_auth_method: custom\n",
    "fastbind": f"ldap_auth_method: fastbind\nldap_filter: uid=%U,{PEOPLE_DN}\n",
}


@pytest.mark.parametrize("method", METHODS)
def test_good_wrong_unknown_empty_and_injection(slapd, backend, method):
    b = backend(base(slapd, METHODS[method]))
    assert check(b, "alice", "alice-secret") is OK  # {SSHA}
    assert check(b, "bob", "bob-secret") is OK  # {CRYPT}$6$
    assert check(b, "dave", "dave-secret") is OK  # cleartext userPassword
    assert check(b, "alice", "bob-secret") is FAIL
    assert check(b, "alice", "") is FAIL  # never an unauthenticated bind
    assert check(b, "carol", "anything") is FAIL  # entry without a password
    assert check(b, "alice", "alice-secret\0junk") is FAIL
    unknown = FAIL if method == "fastbind" else UNKNOWN  # fastbind cannot tell
    assert check(b, "nobody", "alice-secret") is unknown
    for login in INJECTIONS:
        assert check(b, login, "alice-secret") is not OK, login


def test_ambiguous_login_is_refused(slapd, backend):
    b = backend(base(slapd))
    assert check(b, "twin", "twin-secret") is UNKNOWN


def test_custom_knows_more_schemes_than_saslauthd(slapd, backend):
    """{SSHA512} and {ARGON2} work with custom (saslauthd: cyrus-sasl#794)."""
    b = backend(base(slapd, METHODS["custom"]))
    assert check(b, "frank", "frank-secret") is OK
    assert check(b, "erin", "erin-secret") is OK
    assert check(b, "erin", "frank-secret") is FAIL


def test_custom_without_read_access_never_succeeds(slapd, backend):
    # anonymous may not read userPassword: no value comes back, so no login succeeds
    b = backend(base(slapd, "ldap_auth_method: custom\n"))
    assert check(b, "alice", "alice-secret") is FAIL


def test_changed_password_takes_effect_at_once(slapd, backend):
    """No hidden cache of user binds (cyrus-sasl#550)."""
    b = backend(base(slapd))
    assert check(b, "dave", "dave-secret") is OK
    slapd.set_password(user_dn("dave"), "dave-new")
    try:
        assert check(b, "dave", "dave-secret") is FAIL
        assert check(b, "dave", "dave-new") is OK
    finally:
        slapd.set_password(user_dn("dave"), "dave-secret")
    assert check(b, "dave", "dave-new") is FAIL


@pytest.mark.parametrize("method", METHODS)
def test_group_attr_check_uses_the_service_bind(slapd, backend, method):
    """Users cannot read ou=groups (slapd ACL): the check must not run as the user (#427)."""
    b = backend(base(slapd, METHODS[method] + SERVICE + f"ldap_group_dn: {MAILUSERS_DN}\n"))
    assert check(b, "alice", "alice-secret") is OK
    assert check(b, "dave", "dave-secret") is OK
    assert check(b, "bob", "bob-secret") is FAIL  # not a member
    assert check(b, "alice", "wrong") is FAIL


def test_group_filter_check(slapd, backend):
    b = backend(base(slapd, "ldap_group_match_method: filter\n"
                     "ldap_group_filter: (&(cn=staff)(member=%D))\n"
                     f"ldap_group_search_base: ou=groups,{BASE_DN}\n"))
    assert check(b, "alice", "alice-secret") is OK
    assert check(b, "frank", "frank-secret") is OK
    assert check(b, "dave", "dave-secret") is FAIL


def test_group_dn_with_tokens(slapd, backend):
    b = backend(base(slapd, f"ldap_group_dn: cn=%s,ou=groups,{BASE_DN}\n"))
    assert check(b, "alice", "alice-secret", service="mailusers") is OK
    assert check(b, "alice", "alice-secret", service="nosuchgroup") is FAIL
    assert check(b, "alice", "alice-secret", service="*") is FAIL


def test_realm_tokens_and_default_realm(slapd, backend):
    b = backend(base(slapd, "ldap_filter: (mail=%U@%r)\nldap_default_realm: example.org\n"))
    assert check(b, "alice", "alice-secret") is OK  # realm from ldap_default_realm
    assert check(b, "alice", "alice-secret", realm="example.org") is OK
    assert check(b, "alice", "alice-secret", realm="example.net") is UNKNOWN
    assert check(b, "alice@example.org", "alice-secret") is OK
    b2 = backend(base(slapd, "ldap_filter: (mail=%U@%d)\n"))
    assert check(b2, "alice@example.org", "alice-secret") is OK
    assert check(b2, "alice", "alice-secret", realm="example.org") is UNKNOWN  # no fallback


def test_concurrent_logins_use_several_connections(slapd, backend):
    """Searches share the service connection; user binds run on several connections."""
    b = backend(base(slapd, SERVICE + "ldap_auth_method: bind\n"), pool_size=4)
    logins = [("alice", "alice-secret", OK), ("bob", "bob-secret", OK),
              ("alice", "nope", FAIL), ("nobody", "x", UNKNOWN)] * 10
    results = [a.result for a in b.answers([(c[0], c[1]) for c in logins])]
    assert results == [c[2] for c in logins]
    assert len(b.links.service.links) <= 2  # pipelined: 40 searches on one or two
    assert 1 < len(b.links.user.links) <= 4


# -- TLS


def test_start_tls_and_ldaps_with_the_test_ca(slapd, backend, ca):
    tls = f"ldap_tls_cacert_file: {ca.ca_cert}\n"
    b = backend(base(slapd, tls + "ldap_start_tls: yes\n"))
    assert check(b, "alice", "alice-secret") is OK
    conn = b.links.user.idle[0].conn
    assert conn.get_option(ldap.OPT_X_TLS_VERSION).startswith("TLS")
    b2 = backend(f"ldap_servers: {slapd.ldaps_uri}\nldap_search_base: {BASE_DN}\n" + tls
                 + METHODS["custom"])
    assert check(b2, "bob", "bob-secret") is OK
    assert check(b2, "bob", "alice-secret") is FAIL


def test_untrusted_certificate_stops_the_start(slapd, backend, tmp_path):
    other = TestCA(tmp_path / "other-ca")
    with pytest.raises(ConfigError, match="TLS certificate not trusted"):
        backend(f"ldap_servers: {slapd.ldaps_uri}\nldap_tls_cacert_file: {other.ca_cert}\n")
    b = backend(f"ldap_servers: {slapd.ldaps_uri}\nldap_search_base: {BASE_DN}\n"
                f"ldap_tls_cacert_file: {other.ca_cert}\nldap_tls_check_peer: no\n")
    assert check(b, "alice", "alice-secret") is OK


def test_client_certificate_is_presented(slapd, backend, ca):
    b = backend(base(slapd, f"ldap_start_tls: yes\nldap_tls_cacert_file: {ca.ca_cert}\n"
                     f"ldap_tls_cert: {ca.client_cert}\nldap_tls_key: {ca.client_key}\n"))
    assert check(b, "alice", "alice-secret") is OK


# -- start-up and failures


def test_refused_service_bind_stops_the_start(slapd, backend):
    with pytest.raises(ConfigError, match="service bind was refused.*ldap_bind_dn"):
        backend(base(slapd, f"ldap_bind_dn: {SERVICE_DN}\nldap_password: wrong\n"))


@pytest.fixture
def two_servers(tmp_path):
    servers = [Slapd(tmp_path / "one").start(), Slapd(tmp_path / "two").start()]
    yield servers
    for s in servers:
        s.stop()


def test_failover_both_down_and_back(two_servers, backend):
    one, two = two_servers
    b = backend(f"ldap_servers: {one.uri} {two.uri}\nldap_search_base: {BASE_DN}\n"
                "ldap_timeout: 2\n" + SERVICE)
    for _ in range(3):
        assert check(b, "alice", "alice-secret") is OK
    one.stop()
    for _ in range(5):  # mid-stream: pooled connections to "one" break, "two" takes over
        assert check(b, "alice", "alice-secret") is OK
        assert check(b, "alice", "wrong") is FAIL
    two.stop()
    started = time.monotonic()
    assert check(b, "alice", "alice-secret") is TEMPFAIL
    assert time.monotonic() - started < 2 + 1
    assert check(b, "nobody", "x") is TEMPFAIL
    two.start()
    assert check(b, "alice", "alice-secret") is OK
    one.start()
    assert check(b, "bob", "bob-secret") is OK


def test_silent_server_is_skipped_within_the_timeout(two_servers, backend):
    """A server that accepts TCP but never answers (hung slapd) costs one ldap_timeout:
    the other server is used (ldap_timeout 2 s: a loaded machine's slapd may take more
    than 1 s to answer, and then both servers would count as down)."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        hung = f"ldap://127.0.0.1:{hole.getsockname()[1]}/"
        b = backend(f"ldap_servers: {hung} {two_servers[1].uri}\n"
                    f"ldap_search_base: {BASE_DN}\nldap_timeout: 2\n")
        started = time.monotonic()
        assert check(b, "alice", "alice-secret") is OK
        assert check(b, "bob", "bob-secret") is OK
        assert time.monotonic() - started < 6


def test_start_with_every_server_down_warns_then_recovers(tmp_path, backend, caplog):
    server = Slapd(tmp_path / "late")
    with caplog.at_level(logging.ERROR, logger="saslauthpy.ldap"):
        b = backend(f"ldap_servers: {server.uri}\nldap_search_base: {BASE_DN}\n")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no LDAP server answers" in lines[0] and server.uri in lines[0]
    assert check(b, "alice", "alice-secret") is TEMPFAIL
    with server:
        assert check(b, "alice", "alice-secret") is OK


def test_unreadable_conf_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Backend(Config(mech_options=str(Path(tmp_path) / "missing.conf")), {})


def test_server_refusing_anonymous_binds(tmp_path, backend):
    """User connections are opened with an anonymous bind; a server that refuses it
    (``disallow bind_anon``) has still answered, so the connection serves users' binds."""
    server = Slapd(tmp_path / "no-anon")
    text = server.conf.read_text()
    server.conf.write_text(text.replace("sizelimit", "disallow        bind_anon\nsizelimit", 1))
    with server:
        for method in ("bind", "fastbind"):
            b = backend(base(server, METHODS[method] + SERVICE))
            assert check(b, "alice", "alice-secret") is OK
            assert check(b, "alice", "wrong") is FAIL
