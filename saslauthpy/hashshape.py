"""Is a stored value a password hash saslauthpy can verify?  ``user import`` asks first.

``passwords.verify`` answers False both for a wrong password and for a malformed hash, so a
broken hash in an import file (``$6$abc$def``, a cleartext ``secret123``) would only show up
later as a user who can never log in.  ``verifiable`` looks at the value alone: a known
scheme, and the shape that scheme's values have (crypt(3) strings are checked by libxcrypt
itself: hashing with the value as the setting must give a string of the same shape).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from . import passwords

PLAIN = frozenset({"PLAIN", "CLEAR", "CLEARTEXT"})
_DIGESTS = {"SHA": "sha1", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512",
            "PLAIN-MD5": "md5", "LDAP-MD5": "md5", "MD5": "md5"}
_SALTED = {"SSHA": "sha1", "SSHA256": "sha256", "SSHA512": "sha512", "SMD5": "md5"}
_PREFIX = re.compile(r"^\{([A-Za-z0-9_-]{1,32})(?:\.([A-Za-z0-9]{1,8}))?\}")
_ARGON2 = re.compile(r"^\$argon2(?:id|i|d)\$(?:v=\d+\$)?m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+"
                     r"\$[A-Za-z0-9+/]+$")
_PBKDF2 = re.compile(r"^\$1\$[^$]+\$[0-9]{1,9}\$[0-9A-Fa-f]{40}$")
_DES = re.compile(r"^[./0-9A-Za-z]{13}$|^_[./0-9A-Za-z]{19}$")


def scheme(value: str) -> str | None:
    """The ``{SCHEME}`` a value is labelled with (upper case, no encoding suffix), or None."""
    m = _PREFIX.match(value)
    return m.group(1).upper() if m else None


def is_plain(value: str) -> bool:
    """A value labelled as cleartext: ``{PLAIN}secret``, ``{CLEARTEXT}secret``..."""
    return scheme(value) in PLAIN


def verifiable(value: str) -> bool:
    """True when ``value`` is a hash ``passwords.verify`` can check a password against.
    Cleartext, even labelled ``{PLAIN}``, is not a hash."""
    m = _PREFIX.match(value)
    if m is None:
        return _ARGON2.match(value) is not None or _crypt_shape(value)
    if not passwords.is_known_scheme(m.group(0)[1:-1]):
        return False
    name, payload = m.group(1).upper(), value[m.end():]
    if name in PLAIN:
        return False
    if name == "PBKDF2":
        return _PBKDF2.match(payload) is not None
    if name.startswith("ARGON2"):
        return _ARGON2.match(payload) is not None
    if name in _SALTED:
        size = hashlib.new(_SALTED[name]).digest_size
        return any(len(raw) > size for raw in _decodings(payload))
    if name in _DIGESTS and not (name == "MD5" and payload.startswith("$1$")):
        size = hashlib.new(_DIGESTS[name]).digest_size
        return any(len(raw) == size for raw in _decodings(payload))
    return _ARGON2.match(payload) is not None or _crypt_shape(payload)  # the crypt family


def _decodings(payload: str) -> list[bytes]:
    """The payload read as base64 and as hex (Dovecot accepts either for a digest)."""
    out = []
    for decode in (lambda t: base64.b64decode(t, validate=True), bytes.fromhex):
        try:
            out.append(decode(payload))
        except (ValueError, binascii.Error):
            pass
    return out


def _crypt_shape(value: str) -> bool:
    """crypt(3) with ``value`` as its setting keeps the setting (all up to the last ``$``,
    or DES's 2 and BSDi's 9 characters) and gives a hash as long as the value's."""
    if not value.startswith("$") and _DES.match(value) is None:
        return False
    out = passwords.crypt(b"shape check", value)
    if out is None or out.startswith("*"):
        return False
    cut = value.rfind("$")
    if cut <= 0:
        cut = 9 if value.startswith("_") else 2
    return len(out) == len(value) and out[:cut] == value[:cut]
