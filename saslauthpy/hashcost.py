"""What a stored password hash may cost to check.

A stored hash carries its own cost parameters.  One user who can write their own
``userPassword`` (LDAP self-service) or their row of a SQL table could store
``$2b$31$...`` (2^31 bcrypt rounds: days of CPU) or an argon2 hash asking for 4 GiB, and
every login attempt with that name would run it in the root daemon's worker pool.  The
checks here read only the parameters and raise ``TooCostly`` (one line naming the scheme
and the parameter, never the hash) before anything is computed; the backend logs it and
answers NO.

The limits allow about one second of one core, or 256 MiB, per check on current
hardware: far above what the usual tools write (chpasswd, mkpasswd, doveadm pw,
slappasswd, argon2-cffi, PHP's password_hash), far below what exhausts a host.
"""

from __future__ import annotations

import re

from .errors import TooCostly

BCRYPT_MAX_COST = 14  # 2^14 rounds, ~0.9 s; tools write 10-12
SHA_CRYPT_MAX_ROUNDS = 2_000_000  # $5$/$6$ rounds=, ~0.7 s; default 5,000
SHA1_CRYPT_MAX_ROUNDS = 1_000_000  # NetBSD $sha1$, ~1 s; default ~250,000
SUN_MD5_MAX_ROUNDS = 500_000  # $md5,rounds=, ~0.7 s
BSDI_MAX_ROUNDS = 1 << 22  # _CCCC DES rounds, ~0.6 s; default 725
PBKDF2_MAX_ROUNDS = 2_000_000  # Dovecot {PBKDF2}, ~0.7 s; default 5,000
MAX_MEMORY = 256 << 20  # bytes: yescrypt/scrypt 128*r*N, argon2 m; Debian's yescrypt: 16 MiB
MAX_PASSES = 10  # argon2 t; yescrypt t + 1
MAX_LANES = 16  # argon2 p; scrypt/yescrypt p
MAX_WORK = 1 << 30  # memory x passes x lanes, in bytes

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ATOI64 = {c: i for i, c in enumerate(_ITOA64)}

_BCRYPT = re.compile(r"\$2[abxy]\$(\d{1,9})\$")
_SHA_CRYPT = re.compile(r"\$[56]\$rounds=(\d{1,30})\$")
_SHA1_CRYPT = re.compile(r"\$sha1\$(\d{1,30})\$")
_SUN_MD5 = re.compile(r"\$md5,rounds=(\d{1,30})\$")
_ARGON2 = re.compile(r"\$argon2(?:id|i|d)\$(?:v=\d+\$)?m=(\d{1,30}),t=(\d{1,30}),p=(\d{1,30})")


def _over(scheme: str, what: str, value: int, limit: int) -> None:
    if value > limit:
        raise TooCostly(scheme, f"{what} {value} is beyond the limit of {limit}")


_PREFIXED = re.compile(r"\{([A-Za-z0-9_-]{1,32})(?:\.[A-Za-z0-9]{1,8})?\}")
_PBKDF2_ROUNDS = re.compile(r"\$1\$[^$]+\$([0-9]{1,30})\$")


def check(stored: str) -> None:
    """Raise ``TooCostly`` when checking a password against ``stored`` (any scheme,
    ``{SCHEME}``-prefixed or bare) would cost more than the limits allow."""
    m = _PREFIXED.match(stored)
    name, value = (m.group(1).upper(), stored[m.end():]) if m else ("", stored)
    if name == "PBKDF2":
        if r := _PBKDF2_ROUNDS.match(value):
            check_pbkdf2(int(r.group(1)))
    elif value.startswith("$argon2"):
        check_argon2(value)
    else:
        check_crypt(value)


def check_crypt(setting: str) -> None:
    """Raise ``TooCostly`` when crypt(3) of ``setting`` (a stored hash or a salt string)
    would cost more than the limits allow.  Unparsable settings are left to crypt(3),
    which refuses them."""
    if setting.startswith("$2"):
        if (m := _BCRYPT.match(setting)) and int(m.group(1)) <= 31:  # else malformed
            _over("bcrypt", "cost", int(m.group(1)), BCRYPT_MAX_COST)
    elif setting.startswith(("$5$", "$6$")):
        if m := _SHA_CRYPT.match(setting):
            _over("SHA-crypt", "rounds", int(m.group(1)), SHA_CRYPT_MAX_ROUNDS)
    elif setting.startswith(("$y$", "$gy$")):
        _check_yescrypt(setting[setting.index("$", 1) + 1:])
    elif setting.startswith("$7$"):
        _check_scrypt(setting[3:])
    elif setting.startswith("$sha1$"):
        if m := _SHA1_CRYPT.match(setting):
            _over("$sha1$", "rounds", int(m.group(1)), SHA1_CRYPT_MAX_ROUNDS)
    elif setting.startswith("$md5"):
        if m := _SUN_MD5.match(setting):
            _over("$md5$", "rounds", int(m.group(1)), SUN_MD5_MAX_ROUNDS)
    elif setting.startswith("_") and len(setting) >= 5:
        count = _little_endian64(setting[1:5])
        if count is not None:
            _over("BSDi DES", "rounds", count, BSDI_MAX_ROUNDS)


def check_argon2(stored: str) -> None:
    """Raise ``TooCostly`` for an argon2 hash asking for too much memory or time."""
    m = _ARGON2.match(stored)
    if m is None:
        return  # argon2-cffi refuses it as malformed
    memory_kib, passes, lanes = (int(g) for g in m.groups())
    _over("argon2", "memory (m, KiB)", memory_kib, MAX_MEMORY >> 10)
    _over("argon2", "passes (t)", passes, MAX_PASSES)
    _over("argon2", "lanes (p)", lanes, MAX_LANES)
    _over("argon2", "memory x passes (KiB)", memory_kib * passes, MAX_WORK >> 10)


def check_pbkdf2(rounds: int) -> None:
    _over("PBKDF2", "rounds", rounds, PBKDF2_MAX_ROUNDS)


def _memory(scheme: str, n_log2: int, r: int, p: int, passes: int) -> None:
    _over(scheme, "lanes (p)", p, MAX_LANES)
    if n_log2 > 40:  # 2^40 blocks: no need to multiply to know
        raise TooCostly(scheme, f"N = 2^{n_log2} is beyond the limit")
    memory = 128 * r * (1 << n_log2)
    _over(scheme, "memory (128 r N, bytes)", memory, MAX_MEMORY)
    _over(scheme, "passes (t + 1)", passes, MAX_PASSES)
    _over(scheme, "memory x passes x lanes (bytes)", memory * passes * p, MAX_WORK)


def _check_yescrypt(params: str) -> None:
    """``$y$`` parameters as libxcrypt's yescrypt_r decodes them: flavor, N_log2, r, and
    optionally a bit set of p, t, g (upgrades), NROM."""
    fields = _Fields(params)
    fields.take(0)  # flavor
    n_log2 = fields.take(1)
    r = fields.take(1)
    p, t, g = 1, 0, 0
    if n_log2 is None or r is None:
        return  # crypt(3) refuses it
    have = fields.take(1) if fields.more() else 0
    if have:
        if have & 1:
            p = fields.take(2) or 2
        if have & 2:
            t = fields.take(1) or 1
        if have & 4:
            g = fields.take(1) or 1
    _over("yescrypt", "upgrades (g)", g, 2)
    _memory("yescrypt", n_log2, r, p, (t + 1) << g)


def _check_scrypt(params: str) -> None:
    """``$7$``: one character N_log2, then r and p as five characters (30 bits) each."""
    if len(params) < 11 or params[0] not in _ATOI64:
        return
    r, p = _little_endian64(params[1:6]), _little_endian64(params[6:11])
    if r is None or p is None:
        return
    _memory("scrypt", _ATOI64[params[0]], r, p, 1)


def _little_endian64(text: str) -> int | None:
    value = 0
    for i, c in enumerate(text):
        if c not in _ATOI64:
            return None
        value |= _ATOI64[c] << (6 * i)
    return value


class _Fields:
    """Reads yescrypt's variable-length base-64 numbers (decode64_uint32) up to ``$``."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.text) and self.text[self.pos] != "$"

    def _char(self) -> int | None:
        if not self.more() or self.text[self.pos] not in _ATOI64:
            return None
        self.pos += 1
        return _ATOI64[self.text[self.pos - 1]]

    def take(self, minimum: int) -> int | None:
        c = self._char()
        if c is None:
            return None
        start, end, chars, bits = 0, 47, 1, 0
        value = minimum
        while c > end:
            value += (end + 1 - start) << bits
            start = end + 1
            end = start + (62 - end) // 2
            chars += 1
            bits += 6
        value += (c - start) << bits
        while chars > 1:
            chars -= 1
            c = self._char()
            if c is None:
                return None
            bits -= 6
            value += c << bits
        return value
