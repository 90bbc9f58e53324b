"""libxcrypt through ctypes: ``crypt_rn`` (which releases the GIL) and ``crypt_gensalt_rn``.

The library is loaded once at import; ``crypt()`` refuses (``TooCostly``) a setting whose
cost parameters are beyond ``hashcost``'s limits before calling it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

from .hashcost import check_crypt

_CRYPT_DATA_SIZE = 32768  # sizeof(struct crypt_data) in libxcrypt
_GENSALT_OUTPUT_SIZE = 192  # CRYPT_GENSALT_OUTPUT_SIZE
_tls = threading.local()


def _load_libcrypt() -> ctypes.CDLL | None:
    """libxcrypt with crypt_rn and crypt_gensalt_rn typed; None when it is not there."""
    for name in ("libcrypt.so.1", ctypes.util.find_library("crypt")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)  # CDLL (not PyDLL): calls release the GIL
            fn, gs = lib.crypt_rn, lib.crypt_gensalt_rn
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        fn.restype = ctypes.c_char_p
        gs.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int,
                       ctypes.c_char_p, ctypes.c_int]
        gs.restype = ctypes.c_char_p
        return lib
    return None


# Loaded once at import (DEFAULT_SCHEME below needs it anyway).
_lib = _load_libcrypt()


def crypt_available() -> bool:
    return _lib is not None


def crypt(password: bytes, setting: str) -> str | None:
    """crypt(3) of ``password`` with ``setting`` (a full hash or a salt string) via libxcrypt
    ``crypt_rn`` with a per-thread ``struct crypt_data``; the GIL is released during the call.

    Returns None when libxcrypt is missing, the setting is invalid or unsupported, or the
    password holds a NUL byte (C strings cannot carry it); raises ``TooCostly`` for a
    setting beyond the cost limits."""
    lib = _lib
    if lib is None or b"\0" in password:
        return None
    try:
        setting_b = setting.encode("ascii")
    except UnicodeEncodeError:
        return None
    if b"\0" in setting_b:
        return None
    check_crypt(setting)
    buf = getattr(_tls, "buf", None)
    if buf is None:
        buf = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)  # zeroed, as crypt_rn requires
        _tls.buf = buf
    out = lib.crypt_rn(password, setting_b, buf, _CRYPT_DATA_SIZE)
    if not out or out.startswith(b"*"):  # NULL, or a failure token "*0" / "*1"
        return None
    return out.decode("ascii", "replace")


def gensalt(prefix: str, count: int = 0) -> str | None:
    """A new setting for ``prefix`` (``"$y$"``, ``"$6$"``, ``"$2b$"``...) from
    ``crypt_gensalt_rn`` with OS randomness; ``count`` 0 = the method's default cost."""
    lib = _lib
    if lib is None:
        return None
    out = ctypes.create_string_buffer(_GENSALT_OUTPUT_SIZE)
    res = lib.crypt_gensalt_rn(prefix.encode("ascii"), count, None, 0, out, _GENSALT_OUTPUT_SIZE)
    if not res or res.startswith(b"*"):
        return None
    return res.decode("ascii")
