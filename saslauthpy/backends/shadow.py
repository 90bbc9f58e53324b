"""``-a shadow``: passwd + shadow databases through NSS, with saslauthd's expiry rules.

What saslauthd's ``auth_shadow`` does, in its order:

1. ``getpwnam(login)`` and ``getspnam(login)``; either missing -> ``NO`` (here: UNKNOWN,
   so a chained backend may try).
2. ``*NP*`` (NIS: no permission to read the shadow map) -> ``NO Insufficient permission ...``.
3. ``crypt(password, sp_pwdp)`` differs -> ``NO``.  Locked hashes (``!``/``*``) never match.
4. Only after a correct password (no account probing):
   ``sp_expire != -1 and today > sp_expire`` -> ``NO Account expired``;
   ``sp_lstchg != -1 and sp_max != -1 and sp_lstchg + sp_max < today`` -> ``NO Password expired``.

``spwd`` left the standard library in 3.13, so the shadow entry is read with libc's
``getspnam_r`` through ctypes: it goes through NSS like saslauthd's call does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import time
from dataclasses import dataclass

from ..protocol import Request
from . import base
from .base import FAIL, OK, Answer, tempfail
from .getpwent import CryptBackend, lookup_passwd

NIS_NO_PERMISSION = "*NP*"


class _Spwd(ctypes.Structure):
    _fields_ = [
        ("sp_namp", ctypes.c_char_p),
        ("sp_pwdp", ctypes.c_char_p),
        ("sp_lstchg", ctypes.c_long),
        ("sp_min", ctypes.c_long),
        ("sp_max", ctypes.c_long),
        ("sp_warn", ctypes.c_long),
        ("sp_inact", ctypes.c_long),
        ("sp_expire", ctypes.c_long),
        ("sp_flag", ctypes.c_ulong),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_getspnam_r = _libc.getspnam_r
_getspnam_r.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Spwd), ctypes.c_char_p,
                        ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(_Spwd))]
_getspnam_r.restype = ctypes.c_int


@dataclass(frozen=True, slots=True)
class ShadowEntry:
    name: str
    password: str  # the stored hash; kept out of repr
    lstchg: int
    max: int
    expire: int

    def __repr__(self) -> str:
        return f"ShadowEntry({self.name!r}, lstchg={self.lstchg}, max={self.max}, " \
               f"expire={self.expire})"


class ShadowLookupError(Exception):
    """NSS could not answer (not: the user does not exist)."""


def getspnam(login: str) -> ShadowEntry | None:
    """The shadow entry for ``login`` via NSS, None if there is none."""
    name = login.encode("utf-8", "surrogateescape")
    size = 1024
    while True:
        entry = _Spwd()
        result = ctypes.POINTER(_Spwd)()
        buf = ctypes.create_string_buffer(size)
        rc = _getspnam_r(name, ctypes.byref(entry), buf, size, ctypes.byref(result))
        if rc == errno.ERANGE and size < 1 << 20:
            size *= 4
            continue
        if rc == errno.ENOENT or (rc == 0 and not result):
            return None
        if rc != 0:
            raise ShadowLookupError(f"getspnam_r: {errno.errorcode.get(rc, rc)}")
        pw = entry.sp_pwdp or b""
        return ShadowEntry(
            name=(entry.sp_namp or b"").decode("utf-8", "surrogateescape"),
            password=pw.decode("ascii", "replace"),
            lstchg=entry.sp_lstchg,
            max=entry.sp_max,
            expire=entry.sp_expire,
        )


def today() -> int:
    """Days since the epoch, as saslauthd computes it."""
    return int(time.time()) // 86400


def expiry_answer(entry: ShadowEntry, day: int) -> Answer | None:
    """saslauthd's account/password expiry rules, applied after a correct password."""
    if entry.expire != -1 and day > entry.expire:
        return Answer(base.Result.FAIL, "Account expired")
    if entry.lstchg != -1 and entry.max != -1 and entry.lstchg + entry.max < day:
        return Answer(base.Result.FAIL, "Password expired")
    return None


class Backend(CryptBackend):
    name = "shadow"

    def check(self, request: Request) -> Answer:
        if lookup_passwd(request.login) is None:
            return self.unknown(request)
        try:
            entry = getspnam(request.login)
        except ShadowLookupError as exc:
            return tempfail(f"shadow lookup failed: {exc}")
        if entry is None:
            return self.unknown(request)
        if entry.password == NIS_NO_PERMISSION:
            return Answer(base.Result.FAIL,
                          "Insufficient permission to access NIS authentication database")
        if not self.matches(request, entry.password):
            return FAIL
        return expiry_answer(entry, today()) or OK
