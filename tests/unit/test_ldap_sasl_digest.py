"""The DIGEST-MD5 answer the ldap backend computes (RFC 2831's own example)."""

from __future__ import annotations

from harness import need_module

need_module("ldap", "pip install '.[ldap]' (python-ldap, built on libldap)")
from saslauthpy.backends.ldap.sasl import SaslIdentity, digest_response, parse_challenge  # noqa: E402 (python-ldap first)

CHALLENGE = (b'realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",qop="auth",'
             b'algorithm=md5-sess,charset=utf-8')


def test_rfc_2831_example():
    who = SaslIdentity("DIGEST-MD5", user="chris", password=b"secret")
    answer = parse_challenge(digest_response(CHALLENGE, who, "elwood.innosoft.com",
                                             cnonce=b"OA6MHXh6VqTrRk", service="imap"))
    assert answer["response"] == [b"d388dad90d4bbd760a152321f2143af7"]
    assert answer["realm"] == [b"elwood.innosoft.com"]  # the one the server offered
    assert answer["digest-uri"] == [b"imap/elwood.innosoft.com"]
    assert "authzid" not in answer


def test_quoted_values_and_an_authorization_id():
    challenge = b'nonce="a\\"b",qop="auth,auth-int"'
    who = SaslIdentity("DIGEST-MD5", user='u"1', password=b"pw", authz="dn:x", realm="R")
    answer = parse_challenge(digest_response(challenge, who, "h", cnonce=b"c"))
    assert answer["nonce"] == [b'a"b'] and answer["username"] == [b'u"1']
    assert answer["realm"] == [b"R"] and answer["authzid"] == [b"dn:x"]
    assert answer["digest-uri"] == [b"ldap/h"]
