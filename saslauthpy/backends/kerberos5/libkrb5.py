"""MIT libkrb5 (``libkrb5.so.3``) through ctypes: the calls saslauthd's ``auth_krb5`` makes
and nothing more.

Why ctypes (see docs/remote-backends.md): the PyPI ``krb5`` binding has no
``krb5_verify_init_creds``, the check that makes a spoofed KDC harmless; ``gssapi`` can only
imitate it with a full GSS context exchange; both build from source on Linux (no wheels:
a compiler and libkrb5-dev on every host).  libkrb5.so.3 is already on every Debian system
that has Kerberos at all, and ctypes releases the GIL while it runs.

``Session`` is one ``krb5_context`` (one per login, as saslauthd; contexts are not shared
between threads) and frees everything it allocated when it closes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from ctypes import POINTER, byref, c_char_p, c_int, c_int32, c_uint, c_void_p

from ...errors import ConfigError

KRB5_NT_SRV_HST = 3
_BASE = -1765328384  # ERROR_TABLE_BASE_krb5
KDC_ERR_NAME_EXP = _BASE + 1  # client's entry has expired
KDC_ERR_C_PRINCIPAL_UNKNOWN = _BASE + 6
KDC_ERR_POLICY = _BASE + 12
KDC_ERR_CLIENT_REVOKED = _BASE + 18  # disabled or locked out
KDC_ERR_KEY_EXP = _BASE + 23  # password expired
KDC_ERR_PREAUTH_FAILED = _BASE + 24
AP_ERR_BAD_INTEGRITY = _BASE + 31
KRB5_REALM_UNKNOWN = -1765328230
KRB5_KDC_UNREACH = -1765328228
KRB5_PARSE_MALFORMED = -1765328250
KRB5_PREAUTH_FAILED = -1765328174
KRB5_KT_NOTFOUND = -1765328203

CREDS_SIZE = 512  # >= sizeof(krb5_creds) (120 bytes on 64-bit); the library fills it


class VerifyOpt(ctypes.Structure):
    _fields_ = [("flags", c_int32), ("ap_req_nofail", c_int)]


class KeytabEntry(ctypes.Structure):
    _fields_ = [("magic", c_int32), ("principal", c_void_p), ("timestamp", c_int32),
                ("vno", c_uint), ("key", ctypes.c_byte * 64)]


_SIGNATURES = {
    "krb5_init_context": (c_int32, [POINTER(c_void_p)]),
    "krb5_free_context": (None, [c_void_p]),
    "krb5_get_error_message": (c_void_p, [c_void_p, c_int32]),
    "krb5_free_error_message": (None, [c_void_p, c_void_p]),
    "krb5_parse_name": (c_int32, [c_void_p, c_char_p, POINTER(c_void_p)]),
    "krb5_sname_to_principal": (c_int32, [c_void_p, c_char_p, c_char_p, c_int32,
                                          POINTER(c_void_p)]),
    "krb5_unparse_name": (c_int32, [c_void_p, c_void_p, POINTER(c_void_p)]),
    "krb5_free_unparsed_name": (None, [c_void_p, c_void_p]),
    "krb5_free_principal": (None, [c_void_p, c_void_p]),
    "krb5_get_init_creds_opt_alloc": (c_int32, [c_void_p, POINTER(c_void_p)]),
    "krb5_get_init_creds_opt_free": (None, [c_void_p, c_void_p]),
    "krb5_get_init_creds_password": (c_int32, [c_void_p, c_void_p, c_void_p, c_char_p,
                                               c_void_p, c_void_p, c_int32, c_char_p,
                                               c_void_p]),
    "krb5_free_cred_contents": (None, [c_void_p, c_void_p]),
    "krb5_verify_init_creds_opt_init": (None, [POINTER(VerifyOpt)]),
    "krb5_verify_init_creds_opt_set_ap_req_nofail": (None, [POINTER(VerifyOpt), c_int]),
    "krb5_verify_init_creds": (c_int32, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p,
                                         POINTER(VerifyOpt)]),
    "krb5_kt_resolve": (c_int32, [c_void_p, c_char_p, POINTER(c_void_p)]),
    "krb5_kt_default": (c_int32, [c_void_p, POINTER(c_void_p)]),
    "krb5_kt_get_name": (c_int32, [c_void_p, c_void_p, c_char_p, c_uint]),
    "krb5_kt_close": (c_int32, [c_void_p, c_void_p]),
    "krb5_kt_get_entry": (c_int32, [c_void_p, c_void_p, c_void_p, c_uint, c_int32,
                                    POINTER(KeytabEntry)]),
    "krb5_free_keytab_entry_contents": (c_int32, [c_void_p, POINTER(KeytabEntry)]),
}


@functools.cache
def library() -> ctypes.CDLL:
    name = ctypes.util.find_library("krb5") or "libkrb5.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise ConfigError("kerberos5 needs MIT Kerberos' libkrb5.so.3: apt-get install libkrb5-3")
    for func, (restype, argtypes) in _SIGNATURES.items():
        f = getattr(lib, func)
        f.restype, f.argtypes = restype, argtypes
    return lib


class Krb5Error(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def realm_of(name: str) -> str:
    """The realm of an unparsed principal name (after the last unescaped ``@``)."""
    i = len(name)
    while True:
        i = name.rfind("@", 0, i)
        if i < 0:
            return ""
        backslashes = len(name[:i]) - len(name[:i].rstrip("\\"))
        if backslashes % 2 == 0:
            return name[i + 1:]


class Session:
    """One krb5_context and everything allocated in it, freed by ``close()``."""

    def __init__(self) -> None:
        self.lib = library()
        self.ctx = c_void_p()
        code = self.lib.krb5_init_context(byref(self.ctx))
        if code:
            raise Krb5Error(code, f"krb5_init_context failed ({code}): check KRB5_CONFIG "
                                  f"and /etc/krb5.conf")
        self._free: list = []

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for free in reversed(self._free):
            free()
        self._free.clear()
        if self.ctx:
            self.lib.krb5_free_context(self.ctx)
            self.ctx = c_void_p()

    def _check(self, code: int) -> None:
        if code:
            raise Krb5Error(code, self.message(code))

    def message(self, code: int) -> str:
        ptr = self.lib.krb5_get_error_message(self.ctx, code)
        if not ptr:
            return f"Kerberos error {code}"
        try:
            return ctypes.string_at(ptr).decode("utf-8", "replace")
        finally:
            self.lib.krb5_free_error_message(self.ctx, ptr)

    def _principal(self, out: c_void_p) -> c_void_p:
        self._free.append(lambda: self.lib.krb5_free_principal(self.ctx, out))
        return out

    def parse_name(self, name: bytes) -> c_void_p:
        out = c_void_p()
        self._check(self.lib.krb5_parse_name(self.ctx, name, byref(out)))
        return self._principal(out)

    def service_principal(self, host: bytes | None, service: bytes) -> c_void_p:
        out = c_void_p()
        self._check(self.lib.krb5_sname_to_principal(self.ctx, host, service,
                                                     KRB5_NT_SRV_HST, byref(out)))
        return self._principal(out)

    def unparse(self, principal: c_void_p) -> str:
        out = c_void_p()
        self._check(self.lib.krb5_unparse_name(self.ctx, principal, byref(out)))
        try:
            return ctypes.string_at(out).decode("utf-8", "surrogateescape")
        finally:
            self.lib.krb5_free_unparsed_name(self.ctx, out)

    def keytab(self, name: str) -> c_void_p:
        """``name`` (``FILE:/path`` or a path), or the default keytab for ""."""
        out = c_void_p()
        if name:
            self._check(self.lib.krb5_kt_resolve(self.ctx, name.encode(), byref(out)))
        else:
            self._check(self.lib.krb5_kt_default(self.ctx, byref(out)))
        self._free.append(lambda: self.lib.krb5_kt_close(self.ctx, out))
        return out

    def keytab_name(self, keytab: c_void_p) -> str:
        buf = ctypes.create_string_buffer(1024)
        self._check(self.lib.krb5_kt_get_name(self.ctx, keytab, buf, len(buf)))
        return buf.value.decode("utf-8", "replace")

    def keytab_principal(self, keytab: c_void_p, principal: c_void_p) -> str:
        """The full name of the keytab's entry for ``principal`` (any kvno and enctype)."""
        entry = KeytabEntry()
        self._check(self.lib.krb5_kt_get_entry(self.ctx, keytab, principal, 0, 0,
                                               byref(entry)))
        try:
            return self.unparse(c_void_p(entry.principal))
        finally:
            self.lib.krb5_free_keytab_entry_contents(self.ctx, byref(entry))

    def initial_creds(self, client: c_void_p, password: bytes) -> ctypes.Array:
        """An AS exchange with the KDC (krb5_get_init_creds_password); no credential cache."""
        opt = c_void_p()
        self._check(self.lib.krb5_get_init_creds_opt_alloc(self.ctx, byref(opt)))
        creds = ctypes.create_string_buffer(CREDS_SIZE)
        try:
            self._check(self.lib.krb5_get_init_creds_password(
                self.ctx, creds, client, password, None, None, 0, None, opt))
        finally:
            self.lib.krb5_get_init_creds_opt_free(self.ctx, opt)
        self._free.append(lambda: self.lib.krb5_free_cred_contents(self.ctx, creds))
        return creds

    def verify(self, creds: ctypes.Array, server: c_void_p, keytab: c_void_p) -> None:
        """krb5_verify_init_creds with ap_req_nofail: a service ticket for ``server`` from
        the same KDC must decrypt with the keytab's key, which only the real KDC knows."""
        opt = VerifyOpt()
        self.lib.krb5_verify_init_creds_opt_init(byref(opt))
        self.lib.krb5_verify_init_creds_opt_set_ap_req_nofail(byref(opt), 1)
        self._check(self.lib.krb5_verify_init_creds(self.ctx, creds, server, keytab, None,
                                                    byref(opt)))
