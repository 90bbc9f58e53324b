"""Password-hash schemes: verify what mail databases hold; hash new passwords (``hashing``).

``verify(password, stored)`` understands

* crypt(3) strings, bare or under ``{CRYPT}``/``{UNIX}`` (and Dovecot's ``{*-CRYPT}``
  names): ``$y$ $gy$ $7$ $6$ $5$ $1$ $2b$ $2y$ $2a$ $2x$ $md5 $sha1$ $3$``, DES and BSDi,
  through libxcrypt (``libxcrypt``; bcrypt falls back to the bcrypt package where
  libxcrypt is missing);
* Dovecot/LDAP ``{SCHEME}`` prefixes (case-insensitive), with Dovecot's ``.b64`` / ``.hex``
  encoding suffixes: digests (``{SHA} {SHA1} {SHA256} {SHA512} {MD5} {PLAIN-MD5} {LDAP-MD5}``),
  salted digests (``{SSHA} {SSHA256} {SSHA512} {SMD5}``), ``{PBKDF2}``, ``{ARGON2I}``,
  ``{ARGON2}``, ``{ARGON2ID}``, cleartext (``{PLAIN} {CLEARTEXT} {CLEAR}``);
* bare ``$argon2id$``/``$argon2i$`` (argon2-cffi).

A stored value with no recognised scheme raises ``UnknownScheme`` unless the caller configured
a default scheme for such values, and one whose cost parameters are beyond ``hashcost``'s
limits raises ``TooCostly`` (a subclass) without being computed.  Malformed values of a
known scheme are simply ``False``.
Nothing here logs, prints or puts into an exception a password or a stored hash.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Callable

from .errors import TooCostly, UnknownScheme
from .hashcost import check_argon2, check_crypt, check_pbkdf2
from .hashing import DEFAULT_SCHEME, HASH_SCHEMES, _yescrypt_works  # noqa: F401 (API)
from .libxcrypt import crypt, crypt_available, gensalt

__all__ = [
    "DEFAULT_SCHEME",
    "HASH_SCHEMES",
    "TooCostly",
    "UnknownScheme",
    "crypt",
    "crypt_available",
    "gensalt",
    "hash_password",
    "is_known_scheme",
    "scheme_of",
    "verify",
]


# ---------------------------------------------------------------------------------------------
# crypt(3) method ids we accept (the text between the first two "$").
_CRYPT_IDS = frozenset({"1", "5", "6", "y", "gy", "7", "2b", "2y", "2a", "2x", "sha1", "md5", "3"})
_CRYPT_ID_RE = re.compile(r"^\$([A-Za-z0-9_-]{1,32})[$,]")
_DES_RE = re.compile(r"^[./0-9A-Za-z]{13}$")
_BSDI_RE = re.compile(r"^_[./0-9A-Za-z]{19}$")


def _verify_bcrypt_pkg(password: bytes, stored: str) -> bool:
    try:
        import bcrypt
    except ImportError:
        return False
    if stored.startswith("$2x$"):  # the old buggy variant: only libxcrypt has it
        return False
    if stored.startswith("$2y$"):  # PHP's name for the same algorithm as $2b$
        stored = "$2b$" + stored[4:]
    check_crypt(stored)
    try:
        # bcrypt reads 72 bytes; the package refuses longer passwords, crypt(3) truncates.
        return bcrypt.checkpw(password[:72], stored.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False


def _verify_crypt(password: bytes, stored: str) -> bool:
    if not stored or stored[0] in "!*":
        return False  # locked or no password
    if not crypt_available():
        if stored.startswith("$2"):
            return _verify_bcrypt_pkg(password, stored)
        return False
    out = crypt(password, stored)
    if out is None:
        return False
    return hmac.compare_digest(out.encode("ascii", "replace"), stored.encode("ascii", "replace"))


def _verify_argon2(password: bytes, stored: str) -> bool:
    try:
        import argon2
        from argon2.exceptions import InvalidHashError, VerificationError
    except ImportError as exc:
        raise UnknownScheme("$argon2$", "argon2-cffi is not installed") from exc
    check_argon2(stored)
    try:
        return argon2.PasswordHasher().verify(stored, password)
    except (VerificationError, InvalidHashError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Dovecot / LDAP {SCHEME} values

def _b64decode(text: str) -> bytes | None:
    s = text.strip()
    try:  # base64.b64decode(..., validate=True) without its wrappers
        return binascii.a2b_base64((s + "=" * (-len(s) % 4)).encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _hexdecode(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        return None


def _decode(payload: str, encoding: str, size: int | None) -> bytes | None:
    """Decode like Dovecot: the scheme's (or the suffix's) encoding first; when the scheme
    has a fixed raw size and that did not give it, try the other encoding."""
    order = (_hexdecode, _b64decode) if encoding == "hex" else (_b64decode, _hexdecode)
    first = order[0](payload)
    if size is None:
        return first
    if first is not None and len(first) == size:
        return first
    second = order[1](payload)
    if second is not None and len(second) == size:
        return second
    return None


def _digest_checker(algo: str, salted: bool, encoding: str) -> Callable[[bytes, str, str | None],
                                                                          bool]:
    new = getattr(hashlib, algo)  # hashlib.sha1 and the like: no hashlib.new() lookup
    size = new().digest_size

    def check(password: bytes, payload: str, enc: str | None) -> bool:
        raw = _decode(payload, enc or encoding, None if salted else size)
        if raw is None:
            return False
        if salted:
            if len(raw) <= size:
                return False
            digest, salt = raw[:size], raw[size:]
            return hmac.compare_digest(new(password + salt).digest(), digest)
        return hmac.compare_digest(new(password).digest(), raw)

    return check


def _check_plain(password: bytes, payload: str, enc: str | None) -> bool:
    if enc is None:
        raw: bytes | None = payload.encode("utf-8", "surrogateescape")
    else:
        raw = _hexdecode(payload) if enc == "hex" else _b64decode(payload)
    if raw is None:
        return False
    return hmac.compare_digest(password, raw)


_check_plain_md5 = _digest_checker("md5", False, "hex")


def _check_md5(password: bytes, payload: str, enc: str | None) -> bool:
    # Dovecot: {MD5} is MD5-CRYPT when it looks like "$1$...", else a PLAIN-MD5 digest
    # (hex or base64).  LDAP's {MD5} is base64 of the raw digest: the same rule covers it.
    if payload.startswith("$1$"):
        return _verify_crypt(password, payload)
    return _check_plain_md5(password, payload, enc)


def _check_crypt(password: bytes, payload: str, enc: str | None) -> bool:
    if payload.startswith(("$argon2id$", "$argon2i$")):
        return _verify_argon2(password, payload)
    return _verify_crypt(password, payload)


def _check_argon2(password: bytes, payload: str, enc: str | None) -> bool:
    if not payload.startswith(("$argon2id$", "$argon2i$", "$argon2d$")):
        return False
    return _verify_argon2(password, payload)


_PBKDF2_RE = re.compile(r"^\$1\$([^$]+)\$([0-9]{1,9})\$([0-9A-Fa-f]{40})$")


def _check_pbkdf2(password: bytes, payload: str, enc: str | None) -> bool:
    # Dovecot: $1$SALT$ROUNDS$HEX, PBKDF2-HMAC-SHA1, 20-byte key, the salt text used as bytes.
    m = _PBKDF2_RE.match(payload.strip())
    if m is None:
        return False
    salt, rounds, want = m.group(1).encode("utf-8"), int(m.group(2)), bytes.fromhex(m.group(3))
    if rounds < 1:
        return False
    check_pbkdf2(rounds)
    got = hashlib.pbkdf2_hmac("sha1", password, salt, rounds, len(want))
    return hmac.compare_digest(got, want)


_Checker = Callable[[bytes, str, str | None], bool]

_SCHEMES: dict[str, _Checker] = {
    "CRYPT": _check_crypt,
    "UNIX": _check_crypt,
    "DES-CRYPT": _check_crypt,
    "MD5-CRYPT": _check_crypt,
    "SHA256-CRYPT": _check_crypt,
    "SHA512-CRYPT": _check_crypt,
    "BLF-CRYPT": _check_crypt,
    "ARGON2": _check_argon2,  # OpenLDAP's pw-argon2 module names both variants so
    "ARGON2I": _check_argon2,
    "ARGON2ID": _check_argon2,
    "PBKDF2": _check_pbkdf2,
    "SSHA512": _digest_checker("sha512", True, "b64"),
    "SSHA256": _digest_checker("sha256", True, "b64"),
    "SSHA": _digest_checker("sha1", True, "b64"),
    "SMD5": _digest_checker("md5", True, "b64"),
    "SHA512": _digest_checker("sha512", False, "b64"),
    "SHA256": _digest_checker("sha256", False, "b64"),
    "SHA": _digest_checker("sha1", False, "b64"),
    "SHA1": _digest_checker("sha1", False, "b64"),
    "MD5": _check_md5,
    "PLAIN-MD5": _check_plain_md5,
    "LDAP-MD5": _digest_checker("md5", False, "b64"),
    "PLAIN": _check_plain,
    "CLEARTEXT": _check_plain,
    "CLEAR": _check_plain,
}

_ENCODINGS = {"B64": "b64", "BASE64": "b64", "HEX": "hex"}
_NAME = r"([A-Za-z0-9_-]{1,32})(?:\.([A-Za-z0-9]{1,8}))?"  # SCHEME or SCHEME.encoding
_NAME_RE = re.compile(_NAME)
_PREFIX_RE = re.compile(r"^\{" + _NAME + r"\}")


def _lookup(name: str, suffix: str | None) -> tuple[_Checker, str | None] | None:
    """The checker and encoding for a parsed ``NAME[.suffix]``; None when unknown."""
    checker = _SCHEMES.get(name.upper())
    enc = None if suffix is None else _ENCODINGS.get(suffix.upper())
    if checker is None or (suffix is not None and enc is None):
        return None
    return checker, enc


def _named(name: str) -> tuple[_Checker, str | None] | None:
    """``_lookup`` for a scheme name as configured (braces optional, spaces ignored)."""
    m = _NAME_RE.fullmatch(name.strip().strip("{}"))
    return None if m is None else _lookup(m.group(1), m.group(2))


def is_known_scheme(name: str) -> bool:
    """True for a scheme name usable as ``default_scheme`` (``"PLAIN"``, ``"SHA512-CRYPT"``,
    ``"PLAIN-MD5"``, ``"SSHA.hex"`` ...; case-insensitive, braces optional)."""
    return _named(name) is not None


# crypt ids shown in messages: ours and the foreign ones worth naming (passlib, Django)
_NAMED_IDS = _CRYPT_IDS | {"argon2i", "argon2id", "argon2d", "scrypt", "pbkdf2", "pbkdf2-sha256",
                           "pbkdf2-sha512", "bcrypt-sha256", "nt", "sm3", "sha256", "sha512"}
_SHORT_ID = re.compile(r"[0-9a-z]{1,2}")  # crypt(3)'s own ids are this short
_NAMED_PREFIX = re.compile(r"\{[A-Z0-9][A-Z0-9_-]{0,19}(?:\.[A-Za-z0-9]{1,8})?\}")


def _shown(prefix: str, stored: str) -> str:
    """``prefix`` if it names a scheme, else a placeholder: a cleartext password stored as
    ``{secret}`` or ``$pw$x`` must not reach a log line through an error message."""
    ident = prefix.strip("${}")
    if prefix.startswith("{"):
        named = _NAMED_PREFIX.fullmatch(prefix.upper())
    else:
        named = ident in _NAMED_IDS or _SHORT_ID.fullmatch(ident)
    if named and len(prefix) < len(stored):  # never the whole value
        return prefix
    return "{?}" if prefix.startswith("{") else "$?$"


def scheme_of(stored: str) -> str:
    """The scheme prefix of a stored value, safe to log (``"{SSHA}"``, ``"$6$"``, ``"DES"``,
    ``"locked"``, or ``""``): never any part of the hash itself."""
    if not stored:
        return ""
    if stored[0] in "!*":
        return "locked"
    m = _PREFIX_RE.match(stored)
    if m:
        return _shown(m.group(0), stored)
    m = _CRYPT_ID_RE.match(stored)
    if m:
        return _shown(f"${m.group(1)}$", stored)
    if _DES_RE.match(stored):
        return "DES"
    return ""


def verify(password: bytes, stored: str, default_scheme: str | None = None) -> bool:
    """True when ``password`` matches ``stored``.

    Raises ``UnknownScheme`` when ``stored`` carries no recognised scheme and no
    ``default_scheme`` is given (a plain value is compared as cleartext only with
    ``default_scheme="PLAIN"``).  Locked values (``!``/``*`` first) and malformed hashes of a
    known scheme are False."""
    if isinstance(stored, (bytes, bytearray, memoryview)):
        try:
            stored = bytes(stored).decode("utf-8")
        except UnicodeDecodeError:
            return False
    if isinstance(password, str):
        password = password.encode("utf-8")
    elif not isinstance(password, bytes):
        password = bytes(password)
    if not stored or stored[0] in "!*":
        return False
    if stored.startswith("{"):
        m = _PREFIX_RE.match(stored)
        if m is not None:
            found = _lookup(m.group(1), m.group(2))
            if found is None:
                raise UnknownScheme(_shown(m.group(0), stored))
            checker, enc = found
            return checker(password, stored[m.end():], enc)
    m = _CRYPT_ID_RE.match(stored)
    if m is not None:
        ident = m.group(1)
        if ident in ("argon2id", "argon2i"):
            return _verify_argon2(password, stored)
        if ident in _CRYPT_IDS:
            return _verify_crypt(password, stored)
        if default_scheme is None:
            raise UnknownScheme(_shown(f"${ident}$", stored))
    if default_scheme is not None:
        found = _named(default_scheme)
        if found is None:
            shown = default_scheme.strip().strip("{}")
            raise UnknownScheme("{" + shown + "}", "bad default scheme")
        checker, enc = found
        return checker(password, stored, enc)
    if _DES_RE.match(stored) or _BSDI_RE.match(stored):
        return _verify_crypt(password, stored)
    raise UnknownScheme("")


def hash_password(password: bytes, scheme: str = DEFAULT_SCHEME) -> str:
    """Hash ``password`` with ``scheme`` (a key of ``HASH_SCHEMES``, case-insensitive).
    Unsalted and cleartext schemes are refused for new passwords."""
    name = scheme.strip().strip("{}").upper()
    entry = HASH_SCHEMES.get(name)
    if entry is None:
        if name in _SCHEMES:
            raise ValueError(f"scheme {name} is accepted for verifying only, not for new hashes")
        raise UnknownScheme("{" + name + "}")
    if b"\0" in password:
        raise ValueError("a password cannot contain a NUL byte")
    prefix, hasher = entry
    return prefix + hasher(password)
