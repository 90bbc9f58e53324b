"""SASL binds over libldap's ``ldap_sasl_bind_s``: EXTERNAL, PLAIN and DIGEST-MD5.

python-ldap's ``sasl_interactive_bind_s`` holds the GIL for the whole exchange (every
round trip of a multi-step bind stops every other thread and the event loop) and copies
each callback answer, the password included, with ``strdup`` without ever freeing it.
So the three mechanisms are spoken here on top of ``sasl_bind_s``, which releases the GIL
while libldap waits, and no copy of a password outlives the bind.  The messages follow
RFC 4422 (EXTERNAL), RFC 4616 (PLAIN) and RFC 2831 (DIGEST-MD5, ``qop=auth``: no
security layer); test_ldap_compat.py checks them against the C saslauthd's libsasl.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

import ldap
from ldap.ldapobject import LDAPObject

MECHANISMS = ("DIGEST-MD5", "PLAIN", "EXTERNAL")


class Unsendable(Exception):
    """The password cannot be sent with the SASL mechanism (not UTF-8)."""


@dataclass(frozen=True)
class SaslIdentity:
    mech: str  # one of MECHANISMS
    user: str = ""  # authentication id (ldap_id, or login@realm for a user's bind)
    password: bytes = field(default=b"", repr=False)
    authz: str = ""  # requested authorization id ("" = none)
    realm: str = ""  # ldap_realm ("" = the first realm the server offers, or none)


def bind(conn: LDAPObject, who: SaslIdentity, host: str) -> None:
    """Bind ``conn`` with ``who``; raises python-ldap's errors (INVALID_CREDENTIALS...) or
    ``Unsendable``.  ``host`` is the server's name for DIGEST-MD5's digest-uri."""
    if who.mech == "EXTERNAL":
        conn.sasl_bind_s("", "EXTERNAL", who.authz.encode("utf-8"))
        return
    try:
        who.password.decode("utf-8")
    except UnicodeDecodeError:
        raise Unsendable(f"the password is not UTF-8, which SASL {who.mech} requires")
    if who.mech == "PLAIN":
        creds = b"\0".join((who.authz.encode(), who.user.encode(), who.password))
        conn.sasl_bind_s("", "PLAIN", creds)
        return
    challenge = conn.sasl_bind_s("", "DIGEST-MD5", None)
    if not isinstance(challenge, bytes):
        raise ldap.PROTOCOL_ERROR({"desc": "DIGEST-MD5: the server sent no challenge"})
    answer = conn.sasl_bind_s("", "DIGEST-MD5", digest_response(challenge, who, host))
    if isinstance(answer, bytes):  # rspauth: one more (empty) step completes the bind
        conn.sasl_bind_s("", "DIGEST-MD5", b"")


_PAIR = re.compile(rb'\s*([A-Za-z0-9-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*,?')


def parse_challenge(text: bytes) -> dict[str, list[bytes]]:
    """RFC 2831 ``key=value`` pairs (values unquoted); a key may repeat (realm)."""
    out: dict[str, list[bytes]] = {}
    for key, value in _PAIR.findall(text):
        if value.startswith(b'"'):
            value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
        out.setdefault(key.decode("ascii").lower(), []).append(value)
    return out


def _quote(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def digest_response(challenge: bytes, who: SaslIdentity, host: str,
                    cnonce: bytes | None = None, service: str = "ldap") -> bytes:
    """The client's answer to a DIGEST-MD5 challenge (authentication only, ``qop=auth``)."""
    c = parse_challenge(challenge)
    nonce = c.get("nonce", [b""])[0]
    if not nonce or b"auth" not in c.get("qop", [b"auth"])[0].split(b","):
        raise ldap.PROTOCOL_ERROR({"desc": "DIGEST-MD5: unusable challenge"})
    realm = who.realm.encode() if who.realm else c.get("realm", [b""])[0]
    cnonce = cnonce or os.urandom(16).hex().encode()
    uri = f"{service}/{host}".encode()
    user, authz = who.user.encode(), who.authz.encode()

    def h(data: bytes) -> bytes:
        return hashlib.md5(data, usedforsecurity=False).digest()

    a1 = h(b":".join((user, realm, who.password))) + b":" + nonce + b":" + cnonce
    if authz:
        a1 += b":" + authz
    a2 = b"AUTHENTICATE:" + uri
    response = h(b":".join((h(a1).hex().encode(), nonce, b"00000001", cnonce, b"auth",
                            h(a2).hex().encode()))).hex().encode()
    fields = [b"username=" + _quote(user)]
    if realm:
        fields.append(b"realm=" + _quote(realm))
    fields += [b"nonce=" + _quote(nonce), b"cnonce=" + _quote(cnonce), b"nc=00000001",
               b"qop=auth", b"digest-uri=" + _quote(uri), b"response=" + response,
               b"charset=utf-8"]
    if authz:
        fields.append(b"authzid=" + _quote(authz))
    return b",".join(fields)
