"""``-a kerberos5``: a password is good if the realm's KDC issues initial credentials for it
*and* those credentials pass the keytab check, as saslauthd's ``auth_krb5`` does.

For each login (in the worker pool: libkrb5 blocks): form the principal
(``settings.principal_name``), ask the KDC for a TGT with the password
(``krb5_get_init_creds_password``), then ``krb5_verify_init_creds`` with ``ap_req_nofail``:
a ticket for ``verify_principal/servername`` (``host/<this host>``) must decrypt with the
key in the keytab.  A KDC that is not the realm's own (spoofed DNS or network) can hand out
a TGT for any password, but it does not know the host's key, so it cannot say yes.

The keytab and its entry for the verify principal are checked at start: a missing keytab
or key stops the start naming the fix (saslauthd starts and answers NO to everyone).  A
login in another realm than that entry's is an unknown user (saslauthd's newer "realm
mismatch" check), without asking any KDC.

Answers: unknown principal -> unknown user; wrong password, expired password or account,
locked or disabled principal, KDC policy -> wrong password (with the reason); KDC
unreachable, clock skew, anything unexpected, and a failed keytab check -> temporary
failure (never OK; the keytab check also fails on a stale keytab after a key change, which
is not the user's fault).  libkrb5 reads ``KRB5_CONFIG`` and ``KRB5_KTNAME`` from the
daemon's environment.

A KDC that does not answer at all holds libkrb5 (1.20, Debian 12) for about 30 s: it has
no overall limit before 1.22's ``request_timeout``.  The login is answered as a temporary
failure after ``timeout`` seconds all the same; the worker thread it ran on is busy until
libkrb5 gives up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ...protocol import Request
from .. import base
from ..base import FAIL, OK, UNKNOWN, Answer, Result, tempfail
from . import libkrb5 as k5
from .libkrb5 import Krb5Error, Session, realm_of
from .settings import Options, PrincipalRefused, load_settings, principal_name

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger("saslauthpy.kerberos5")

# getting initial credentials: what a KDC error means for the login
UNKNOWN_CODES = {k5.KDC_ERR_C_PRINCIPAL_UNKNOWN, k5.KRB5_REALM_UNKNOWN}
FAIL_REASONS = {
    k5.KDC_ERR_PREAUTH_FAILED: "",
    k5.AP_ERR_BAD_INTEGRITY: "",
    k5.KRB5_PREAUTH_FAILED: "",
    k5.KDC_ERR_KEY_EXP: "Password expired",
    k5.KDC_ERR_NAME_EXP: "Account expired",
    k5.KDC_ERR_CLIENT_REVOKED: "Account disabled or locked",
    k5.KDC_ERR_POLICY: "KDC policy rejects the request",
}


class Backend(base.Backend):
    name = "kerberos5"

    Options = Options

    def __init__(self, config: Config, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        self.s = load_settings(config, self.options)
        self.servername = (self.s.servername or socket.gethostname()).encode()
        self.service = self.s.verify_principal.encode()
        self.realm = ""  # the verify principal's realm in the keytab, found by open()

    def open(self) -> None:
        """The keytab must hold a key for the verify principal: else no login can pass."""
        try:
            with Session() as s:
                keytab = s.keytab(self.s.keytab)
                where = s.keytab_name(keytab)
                server = s.service_principal(self.servername, self.service)
                wanted = s.unparse(server).rstrip("@")  # no realm: any
                try:
                    self.realm = realm_of(s.keytab_principal(keytab, server))
                except Krb5Error as exc:
                    raise ConfigError(
                        f"kerberos5: keytab {where} has no usable key for {wanted} "
                        f"({exc}): add one (kadmin: ktadd -k {where.split(':', 1)[-1]} "
                        f"{wanted}), or set krb5_keytab / krb5_verify_principal "
                        f"/ krb5_servername")
        except Krb5Error as exc:
            raise ConfigError(f"kerberos5: {exc}")

    async def authenticate(self, request: Request) -> Answer:
        try:  # check() in this backend's pool, as for every blocking backend
            return await asyncio.wait_for(super().authenticate(request), self.s.timeout)
        except TimeoutError:
            log.warning("kerberos5: no answer from the KDC within %s s", self.s.timeout)
            return tempfail(f"KDC: no answer within {self.s.timeout} s")

    def check(self, request: Request) -> Answer:
        if b"\0" in request.password:
            return Answer(Result.FAIL, "a NUL byte cannot be part of a Kerberos password")
        try:
            name = principal_name(request.login, request.service, request.realm, self.s)
        except PrincipalRefused as exc:
            return Answer(Result.FAIL, str(exc))
        try:
            return self._check(name, request.password)
        except Krb5Error as exc:  # no context (krb5.conf broken since the start), no keytab
            return tempfail(f"libkrb5: {exc}")

    def _check(self, name: str, password: bytes) -> Answer:
        with Session() as s:
            try:
                client = s.parse_name(name.encode("utf-8", "surrogateescape"))
            except Krb5Error:
                return Answer(Result.UNKNOWN, "not a Kerberos principal name")
            realm = realm_of(s.unparse(client))
            if self.realm and realm != self.realm:
                return Answer(Result.UNKNOWN, f"realm {realm} is not this host's ({self.realm})")
            try:
                creds = s.initial_creds(client, password)
            except Krb5Error as exc:
                return self._kdc_answer(exc)
            try:
                s.verify(creds, s.service_principal(self.servername, self.service),
                         s.keytab(self.s.keytab))
            except Krb5Error as exc:
                if exc.code != k5.KRB5_KDC_UNREACH:
                    log.error("kerberos5: the KDC's answer for %s failed the keytab check "
                              "(%s): a stale keytab after a key change, or a KDC that is not "
                              "the realm's", name, exc)
                return tempfail(f"keytab check failed: {exc}")
        return OK

    def _kdc_answer(self, exc: Krb5Error) -> Answer:
        if exc.code in UNKNOWN_CODES:
            return UNKNOWN
        if exc.code in FAIL_REASONS:
            reason = FAIL_REASONS[exc.code]
            return Answer(Result.FAIL, reason) if reason else FAIL
        return tempfail(f"KDC: {exc}")
