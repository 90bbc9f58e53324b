"""Hashing new passwords (``passwords.hash_password`` is the entry point).

Crypt-family names without a Dovecot prefix give bare crypt strings (what chpasswd and
mkpasswd write); Dovecot names give Dovecot's own ``{SCHEME}`` form.  The default is
yescrypt where libxcrypt has it, else bcrypt cost 12 (see docs/passwords.md).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable

from .libxcrypt import crypt, crypt_available, gensalt


def _yescrypt_works() -> bool:
    return gensalt("$y$") is not None  # libxcrypt only makes settings it can hash


DEFAULT_SCHEME = "YESCRYPT" if _yescrypt_works() else "BCRYPT"
BCRYPT_COST = 12


def _hash_crypt(password: bytes, prefix: str, count: int = 0) -> str:
    setting = gensalt(prefix, count)
    out = crypt(password, setting) if setting else None
    if out is None:
        raise ValueError(f"libxcrypt cannot hash {prefix} here")
    return out


def _hash_bcrypt(password: bytes, prefix: str = "$2b$") -> str:
    if crypt_available():
        try:
            return _hash_crypt(password, prefix, BCRYPT_COST)
        except ValueError:
            pass
    import bcrypt

    if len(password) > 72:
        raise ValueError("bcrypt uses at most 72 bytes of a password")
    return bcrypt.hashpw(password, bcrypt.gensalt(BCRYPT_COST)).decode("ascii")


def _hash_argon2(password: bytes, kind: str) -> str:
    import argon2

    t = argon2.Type.ID if kind == "id" else argon2.Type.I
    return argon2.PasswordHasher(type=t).hash(password)


def _hash_salted(password: bytes, algo: str) -> str:
    salt = os.urandom(16)
    return base64.b64encode(hashlib.new(algo, password + salt).digest() + salt).decode("ascii")


def _hash_pbkdf2(password: bytes) -> str:
    salt = base64.b64encode(os.urandom(12), altchars=b"./").decode("ascii")
    rounds = 100_000
    digest = hashlib.pbkdf2_hmac("sha1", password, salt.encode("ascii"), rounds, 20)
    return f"$1${salt}${rounds}${digest.hex()}"


# name -> (output prefix, hasher).  Crypt-family names without a Dovecot prefix give bare
# crypt strings (what chpasswd/mkpasswd write); Dovecot names give Dovecot's own form.
HASH_SCHEMES: dict[str, tuple[str, Callable[[bytes], str]]] = {
    "YESCRYPT": ("", lambda p: _hash_crypt(p, "$y$")),
    "GOST-YESCRYPT": ("", lambda p: _hash_crypt(p, "$gy$")),
    "SCRYPT": ("", lambda p: _hash_crypt(p, "$7$")),
    "BCRYPT": ("", _hash_bcrypt),
    "SHA512-CRYPT": ("{SHA512-CRYPT}", lambda p: _hash_crypt(p, "$6$")),
    "SHA256-CRYPT": ("{SHA256-CRYPT}", lambda p: _hash_crypt(p, "$5$")),
    "MD5-CRYPT": ("{MD5-CRYPT}", lambda p: _hash_crypt(p, "$1$")),
    "BLF-CRYPT": ("{BLF-CRYPT}", lambda p: _hash_bcrypt(p, "$2y$")),
    "ARGON2ID": ("{ARGON2ID}", lambda p: _hash_argon2(p, "id")),
    "ARGON2I": ("{ARGON2I}", lambda p: _hash_argon2(p, "i")),
    "SSHA512": ("{SSHA512}", lambda p: _hash_salted(p, "sha512")),
    "SSHA256": ("{SSHA256}", lambda p: _hash_salted(p, "sha256")),
    "SSHA": ("{SSHA}", lambda p: _hash_salted(p, "sha1")),
    "PBKDF2": ("{PBKDF2}", _hash_pbkdf2),
}
