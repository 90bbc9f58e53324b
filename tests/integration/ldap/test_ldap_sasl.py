"""SASL binds (``ldap_use_sasl``) against a real slapd: DIGEST-MD5, PLAIN, EXTERNAL.

slapd checks the SASL binds with its own auxprop plugin (``sasl-auxprops slapd`` and the
``authz-regexp`` lines in ldap/data/slapd.conf): the SASL name ``saslauthd`` maps to
``cn=saslauthd,dc=example,dc=org``, any other name ``u`` to ``uid=u,ou=people,...``, and
root over ldapi:// or the test client certificate (EXTERNAL) to ``cn=saslauthd`` too.
DIGEST-MD5 and PLAIN need the secret in cleartext there, so this module's own slapd
stores cleartext passwords for cn=saslauthd and bob (dave's is cleartext in the LDIF).
Only cn=saslauthd may read ``userPassword``: ``custom`` working proves that the service
connection is bound with the SASL identity and not anonymously.
"""

from __future__ import annotations

import pytest
from harness import testsaslauthd
from ldap_server import BASE_DN, MAILUSERS_DN, SASL_CLEARTEXT, SERVICE_PW, user_dn

from saslauthpy.backends.base import Result
from saslauthpy.errors import ConfigError

OK, FAIL, UNKNOWN, TEMPFAIL = Result.OK, Result.FAIL, Result.UNKNOWN, Result.TEMPFAIL

@pytest.fixture(scope="module")
def slapd(sasl_slapd):
    return sasl_slapd


def check(b, login: str, password: str | bytes, realm: str = ""):
    return b.answer(login, password, realm)


def result(b, login: str, password: str | bytes, realm: str = "") -> Result:
    return check(b, login, password, realm).result


def digest(server_uri: str, password: str = SERVICE_PW, extra: str = "") -> str:
    return (f"ldap_servers: {server_uri}\nldap_search_base: {BASE_DN}\nldap_use_sasl: yes\n"
            f"ldap_mech: DIGEST-MD5\nldap_id: saslauthd\nldap_password: {password}\n{extra}")


# -- the service connection


def test_digest_md5_service_bind_searches_as_the_service_account(slapd, backend):
    """custom + DIGEST-MD5: the search and the userPassword read run as cn=saslauthd."""
    b = backend(digest(slapd.uri, extra="ldap_auth_method: custom\n"))
    assert result(b, "alice", "alice-secret") == OK  # {SSHA}, read by the service account
    assert result(b, "bob", "bob-secret") == OK
    assert result(b, "alice", "wrong") == FAIL
    assert result(b, "nobody", "x") == UNKNOWN
    assert result(b, "*", "alice-secret") == UNKNOWN


def test_anonymous_service_connection_cannot_do_the_same(slapd, backend):
    """The contrast that makes the test above meaningful: anonymous reads no password."""
    b = backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n"
                "ldap_auth_method: custom\n")
    answer = check(b, "alice", "alice-secret")
    assert answer.result == FAIL and "no userPassword" in answer.reason


def test_wrong_sasl_secret_stops_the_start_with_one_line(slapd, backend):
    with pytest.raises(ConfigError) as err:
        backend(digest(slapd.uri, password="not-the-secret"))
    text = str(err.value)
    assert "\n" not in text
    assert "service bind was refused" in text and "ldap_id" in text
    assert "not-the-secret" not in text


def test_wrong_sasl_identity_stops_the_start(slapd, backend):
    with pytest.raises(ConfigError, match="service bind was refused"):
        backend(digest(slapd.uri).replace("ldap_id: saslauthd", "ldap_id: nobody"))


def test_digest_md5_service_bind_with_a_realm(slapd, backend):
    b = backend(digest(slapd.uri, extra="ldap_realm: example.org\nldap_auth_method: custom\n"))
    assert result(b, "alice", "alice-secret") == OK


def test_external_over_ldapi_binds_the_service_connection(slapd, backend):
    """EXTERNAL over ldapi://: slapd sees root's uid and maps it to cn=saslauthd."""
    text = (f"ldap_servers: {slapd.ldapi_uri}\nldap_search_base: {BASE_DN}\n"
            "ldap_use_sasl: yes\nldap_mech: EXTERNAL\nldap_auth_method: custom\n")
    b = backend(text)
    assert result(b, "alice", "alice-secret") == OK
    assert result(b, "alice", "wrong") == FAIL
    # An explicit authorization identity (the same entry) is passed on as such.
    b = backend(text + f"ldap_authz_id: dn:cn=saslauthd,{BASE_DN}\n")
    assert result(b, "frank", "frank-secret") == OK
    # One the identity may not assume is refused at start.
    with pytest.raises(ConfigError, match="service bind was refused"):
        backend(text + f"ldap_authz_id: dn:{user_dn('alice')}\n")


def test_external_with_a_client_certificate(slapd, ca, backend):
    b = backend(f"ldap_servers: {slapd.ldaps_uri}\nldap_search_base: {BASE_DN}\n"
                f"ldap_tls_cacert_file: {ca.ca_cert}\nldap_tls_cert: {ca.client_cert}\n"
                f"ldap_tls_key: {ca.client_key}\n"
                "ldap_use_sasl: yes\nldap_mech: EXTERNAL\nldap_auth_method: custom\n")
    assert result(b, "alice", "alice-secret") == OK
    assert result(b, "alice", "wrong") == FAIL


# -- user binds (bind becomes fastbind with SASL, as in lak.c)


def test_digest_md5_fastbind_right_and_wrong_password(slapd, backend):
    b = backend(digest(slapd.uri))
    assert b.s.auth_method == "fastbind"
    assert result(b, "dave", "dave-secret") == OK
    assert result(b, "bob", "bob-secret") == OK
    assert result(b, "dave", "wrong") == FAIL
    assert result(b, "dave", "bob-secret") == FAIL
    assert result(b, "nobody", "dave-secret") == FAIL
    assert result(b, "dave", "") == FAIL
    # A realm is appended to the SASL name (dave@example.org); slapd maps both forms.
    assert result(b, "dave", "dave-secret", realm="example.org") == OK
    assert result(b, "dave@example.org", "dave-secret") == OK
    assert result(b, "dave@example.org", "wrong") == FAIL


def test_digest_md5_fastbind_password_change_takes_effect_at_once(slapd, backend):
    b = backend(digest(slapd.uri))
    assert result(b, "bob", "bob-secret") == OK
    slapd.modify(f"dn: {user_dn('bob')}\nchangetype: modify\nreplace: userPassword\n"
                 "userPassword: bob-new\n")
    try:
        assert result(b, "bob", "bob-secret") == FAIL
        assert result(b, "bob", "bob-new") == OK
    finally:
        slapd.modify(SASL_CLEARTEXT)


def test_digest_md5_fastbind_with_group_check(slapd, backend):
    """The user's DN comes from Who am I?; the group is compared as the service."""
    b = backend(digest(slapd.uri, extra=f"ldap_group_dn: {MAILUSERS_DN}\n"))
    assert result(b, "dave", "dave-secret") == OK  # in mailusers
    answer = check(b, "bob", "bob-secret")  # right password, in no group
    assert answer.result == FAIL and "group" in answer.reason
    assert result(b, "dave", "wrong") == FAIL


def test_sasl_password_that_cannot_be_sent_is_a_plain_no(slapd, backend):
    """Bytes that are not UTF-8, or that SASLprep forbids: NO, never a tempfail."""
    b = backend(digest(slapd.uri))
    assert result(b, "dave", b"dave-\xff") == FAIL
    plain = backend(f"ldap_servers: {slapd.ldaps_uri}\nldap_search_base: {BASE_DN}\n"
                    f"ldap_tls_cacert_file: {slapd.ca.ca_cert}\nldap_use_sasl: yes\n"
                    f"ldap_mech: PLAIN\nldap_id: saslauthd\nldap_password: {SERVICE_PW}\n")
    assert result(plain, "dave", "dave\x07secret") == FAIL
    assert result(plain, "dave", b"\xfe") == FAIL
    assert result(plain, "dave", "dave-secret") == OK


@pytest.mark.parametrize("tls", ["ldaps", "starttls"])
def test_plain_fastbind_over_tls(tls, slapd, ca, backend):
    uri = slapd.ldaps_uri if tls == "ldaps" else slapd.uri
    b = backend(f"ldap_servers: {uri}\nldap_search_base: {BASE_DN}\n"
                f"ldap_tls_cacert_file: {ca.ca_cert}\n"
                f"ldap_start_tls: {'yes' if tls == 'starttls' else 'no'}\n"
                "ldap_use_sasl: yes\nldap_mech: PLAIN\nldap_id: saslauthd\n"
                f"ldap_password: {SERVICE_PW}\nldap_group_dn: {MAILUSERS_DN}\n")
    assert result(b, "dave", "dave-secret") == OK
    assert result(b, "dave", "wrong") == FAIL
    assert result(b, "bob", "bob-secret") == FAIL  # not in mailusers


def test_plain_in_the_clear_is_refused_at_start(slapd, backend):
    """libsasl refuses PLAIN without TLS: one line at start, not a NO for every login."""
    with pytest.raises(ConfigError) as err:
        backend(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\nldap_use_sasl: yes\n"
                f"ldap_mech: PLAIN\nldap_id: saslauthd\nldap_password: {SERVICE_PW}\n")
    assert "\n" not in str(err.value) and "encryption" in str(err.value)


# -- end to end: the daemon and the real testsaslauthd


def ask(mux, login: str, password: str, realm: str | None = None) -> str:
    return testsaslauthd(mux, login, password, realm=realm, service="imap").stdout.strip()


@pytest.mark.csaslauthd
def test_daemon_digest_md5_fastbind_with_group(slapd, tmp_path, daemon_factory):
    conf = tmp_path / "saslauthd.conf"
    conf.write_text(digest(slapd.uri, extra=f"ldap_group_dn: {MAILUSERS_DN}\n"))
    d = daemon_factory(args=["-a", "ldap", "-O", str(conf)])
    assert ask(d.mux, "dave", "dave-secret").startswith("0: OK")
    assert ask(d.mux, "dave", "dave-secret", realm="example.org").startswith("0: OK")
    assert ask(d.mux, "dave", "wrong").startswith("0: NO")
    assert ask(d.mux, "bob", "bob-secret").startswith("0: NO")  # not in the group
    assert ask(d.mux, "nobody", "x").startswith("0: NO")
    results = {(r["login"], r["result"]) for r in d.audit()}
    assert ("dave", "ok") in results and ("bob", "fail") in results


@pytest.mark.parametrize("case", ["wrong-secret", "gssapi"])
def test_daemon_refuses_to_start_with_one_clear_line(case, slapd, tmp_path, daemon_factory):
    conf = tmp_path / "saslauthd.conf"
    text = digest(slapd.uri, password="not-the-secret")
    if case == "gssapi":
        text = digest(slapd.uri).replace("DIGEST-MD5", "GSSAPI")
    conf.write_text(text)
    d = daemon_factory(args=["-a", "ldap", "-O", str(conf)], wait=False)
    assert d.proc.wait(30) != 0
    stderr = d.stderr()
    wanted = "service bind was refused" if case == "wrong-secret" else "GSSAPI"
    lines = [line for line in stderr.splitlines() if wanted in line]
    assert len(lines) == 1, stderr
    assert str(conf) in lines[0]
    assert "not-the-secret" not in stderr
