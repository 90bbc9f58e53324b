"""``-a ldap``: check logins against an LDAP directory, configured like saslauthd.

Settings (every saslauthd.conf key lak.c reads, the ``[ldap]`` TOML table, tokens) are in
``settings``; servers, failover, TLS, binds and the connection pools in
``pool``.  This module is the backend itself.  Three methods, as in saslauthd:

- ``bind``: search (as ``ldap_bind_dn`` or anonymously) for the user's DN, then bind as
  the user on a separate connection;
- ``custom``: search and fetch ``ldap_password_attr``, checked with ``passwords.verify``;
- ``fastbind``: expand ``ldap_filter`` into the user's DN and bind with it directly (with
  ``ldap_use_sasl``: bind with ``ldap_mech`` as ``login@realm``).

The optional group check (``ldap_group_dn`` / ``ldap_group_filter``) always runs on a
service connection (cyrus-sasl#427).  Service connections (searches, compares) and user
connections (binds) come from two small thread-safe pools, so logins do not queue behind
each other; every login is a real bind or a real password check: nothing is remembered
between requests (cyrus-sasl#550).  A broken connection is replaced and the operation
retried once (as lak.c does), so a server going away mid-stream costs no login.  When no
server answers, the answer is a temporary failure.  See docs/ldap.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import ldap3
from ldap3.utils.conv import escape_filter_chars

from ... import passwords
from ...errors import ConfigError
from ...protocol import Request
from .. import base
from ..base import FAIL, OK, UNKNOWN, Answer, tempfail
from .pool import (
    CONNECTION_ERRORS,
    TEMPORARY_BIND_CODES,
    Broken,
    Directory,
    Identity,
    Pool,
    ServiceBindRefused,
    Unavailable,
    Unsendable,
    bind,
    close,
    describe,
    raise_if_broken,
    sasl_identity,
    service_identity,
    short_error,
)
from .settings import Options, escape_dn_value, expand, load_settings

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger("saslauthpy.ldap")

T = TypeVar("T")


@dataclass
class Found:
    dn: str
    attributes: dict[str, list[bytes]]


class NotFound(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Backend(base.Backend):
    name = "ldap"
    Options = Options

    def __init__(self, config: Config, options: Mapping[str, Any] | Options | None = None):
        super().__init__(config, options)
        self.s = load_settings(config, self.options)
        self.directory = Directory(self.s)
        try:
            self.service_identity = service_identity(self.s)
        except Unsendable as exc:
            raise ConfigError(f"{self.s.source}: ldap_password: {exc}")
        self.service = Pool("service", self.s.pool_size,
                            lambda deadline: self.directory.connect(self.service_identity,
                                                                    deadline))
        self.users = Pool("user-bind", self.s.pool_size,
                          lambda deadline: self.directory.connect(None, deadline))

    # -- lifecycle

    def open(self) -> None:
        deadline = time.monotonic() + self.s.timeout
        try:
            conn = self.directory.connect(self.service_identity, deadline)
        except ServiceBindRefused as exc:
            who = "SASL identity ldap_id" if self.s.use_sasl else "ldap_bind_dn"
            raise ConfigError(f"{self.s.source}: {exc}: check {who} and ldap_password")
        except Unsendable as exc:  # SASLprep refused ldap_password
            raise ConfigError(f"{self.s.source}: ldap_password: {exc}")
        except Unavailable as exc:
            text = str(exc)
            if "TLS certificate not trusted" in text:
                raise ConfigError(f"{self.s.source}: {text}: check ldap_tls_cacert_file/"
                                  "ldap_tls_cacert_dir and the server names in ldap_servers")
            log.error("ldap: %s; logins get a temporary failure until a server answers", text)
            return
        self.service.add(conn)

    def close(self) -> None:
        super().close()
        self.service.drop_idle()
        self.users.drop_idle()

    # -- one login

    def check(self, request: Request) -> Answer:
        login, password = request.login, request.password
        if not login:
            return UNKNOWN
        if not password:
            return Answer(base.Result.FAIL, "empty password")  # never an unauthenticated bind
        if b"\0" in password:
            return Answer(base.Result.FAIL, "password contains a NUL byte")
        try:
            login.encode("utf-8")
        except UnicodeEncodeError:
            return Answer(base.Result.UNKNOWN, "login is not valid UTF-8")
        realm = request.realm or self.s.default_realm
        try:
            return self._check(login, password, request.service, realm)
        except NotFound as exc:
            return Answer(base.Result.UNKNOWN, exc.reason)
        except Unsendable as exc:
            return Answer(base.Result.FAIL, str(exc))
        except Unavailable as exc:
            return tempfail(str(exc))
        except ServiceBindRefused as exc:
            log.error("ldap: %s", exc)
            return tempfail(str(exc))
        except Exception:  # noqa: BLE001 - a user's input must never escape check()
            log.exception("ldap: unexpected error checking %r", login)
            return tempfail("internal error in the ldap backend")

    def _check(self, login: str, password: bytes, service: str, realm: str) -> Answer:
        method = self.s.auth_method
        if method == "fastbind":
            dn, ok = self._fastbind(login, password, service, realm)
            if not ok:
                return FAIL
        else:
            attrs = [self.s.password_attr] if method == "custom" else ["1.1"]
            found = self._find_user(login, service, realm, attrs)
            dn = found.dn
            if method == "custom":
                answer = self._compare_password(found, password)
                if answer is not OK:
                    return answer
            elif not self._user_bind(Identity(dn=dn, password=password))[0]:
                return FAIL
        if self.s.group_check and not self._in_group(login, service, realm, dn):
            return Answer(base.Result.FAIL, "not a member of the required group")
        return OK

    # -- operations, each retried once on a fresh connection if its connection broke

    def _deadline(self) -> float:
        return time.monotonic() + self.s.timeout

    def _with(self, pool: Pool, operation: Callable[[ldap3.Connection], T]) -> T:
        for attempt in (1, 2):
            deadline = self._deadline()
            with pool.connection(deadline, fresh=attempt == 2) as conn:
                try:
                    return operation(conn)
                except (Broken, *CONNECTION_ERRORS) as exc:
                    close(conn)
                    self.directory.failed(conn)
                    pool.drop_idle()
                    if attempt == 2:
                        raise Unavailable(f"LDAP connection lost: {short_error(exc)}")
                    log.info("ldap: %s connection lost (%s); retrying on a new one",
                             pool.name, short_error(exc))
        raise AssertionError("unreachable")

    def _search(self, conn: ldap3.Connection, base_dn: str, scope: str, filt: str,
                attrs: list[str], size_limit: int) -> list[Found]:
        ok = conn.search(base_dn, filt, search_scope=scope, attributes=attrs,
                         dereference_aliases=self.s.deref, size_limit=size_limit,
                         time_limit=self.s.time_limit)
        code = (conn.result or {}).get("result")
        if conn.closed and not ok:
            raise Broken(describe(conn))
        if code == 4:  # sizeLimitExceeded: more than size_limit entries
            return [Found("", {})] * (size_limit + 1)
        if not ok and code not in (0, 32):  # 32 noSuchObject: the base does not exist
            raise_if_broken(conn)
            raise Unavailable(f"search refused: {describe(conn)}")
        return [Found(r["dn"], dict(r.get("raw_attributes") or {}))
                for r in conn.response or () if r.get("type") == "searchResEntry"]

    def _find_user(self, login: str, service: str, realm: str, attrs: list[str]) -> Found:
        s = self.s
        filt = expand(s.filter, login, service, realm, "", escape_filter_chars)
        if not filt.lstrip().startswith("("):
            filt = f"({filt})"
        base_dn = expand(s.search_base, login, service, realm, "", escape_dn_value)
        limit = s.size_limit
        entries = self._with(self.service, lambda c: self._search(
            c, base_dn, s.scope, filt, attrs, limit))
        if not entries:
            raise NotFound("unknown user")
        if len(entries) > 1:
            log.warning("ldap: %d or more entries match %s under %r: refusing an ambiguous "
                        "login", len(entries), filt, base_dn)
            raise NotFound("several directory entries match")
        return entries[0]

    def _compare_password(self, found: Found, password: bytes) -> Answer:
        wanted = self.s.password_attr.lower()
        values = [v for k, vs in found.attributes.items() if k.lower() == wanted for v in vs]
        if not values:
            return Answer(base.Result.FAIL, f"no {self.s.password_attr} to compare with")
        for raw in values:
            stored = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
            try:
                # A value without a {SCHEME} is cleartext, as saslauthd compares it.
                if passwords.verify(password, stored, default_scheme="PLAIN"):
                    return OK
            except passwords.UnknownScheme as exc:
                log.warning("ldap: %s: %s in %s", found.dn, exc, self.s.password_attr)
        return FAIL

    def _user_bind(self, identity: Identity, want_dn: bool = False) -> tuple[bool, str]:
        """Bind as the user on a user connection: (accepted, the DN from *Who am I?* when
        ``want_dn``, for a group check after a SASL bind)."""
        def attempt(conn: ldap3.Connection) -> tuple[bool, str]:
            if not bind(conn, identity):
                raise_if_broken(conn, TEMPORARY_BIND_CODES)
                return False, ""  # invalidCredentials, invalidDNSyntax, unwillingToPerform...
            if not want_dn:
                return True, ""
            who = conn.extend.standard.who_am_i() or ""
            return True, who[3:] if who.startswith("dn:") else ""

        return self._with(self.users, attempt)

    def _fastbind(self, login: str, password: bytes, service: str,
                  realm: str) -> tuple[str, bool]:
        s = self.s
        if not s.use_sasl:
            dn = expand(s.filter, login, service, realm, "", escape_dn_value)
            return dn, self._user_bind(Identity(dn=dn, password=password))[0]
        # As lak.c: the SASL name is login@realm when the login has no realm of its own.
        user = login if ("@" in login or not realm) else f"{login}@{realm}"
        ok, dn = self._user_bind(sasl_identity(s, user, password, ""),
                                 want_dn=s.group_check)
        return dn, ok

    def _in_group(self, login: str, service: str, realm: str, dn: str) -> bool:
        s = self.s
        if not dn:
            return False
        if s.group_match_method == "attr":
            group_dn = expand(s.group_dn, login, service, realm, "", escape_dn_value)

            def compare(conn: ldap3.Connection) -> bool:
                if conn.compare(group_dn, s.group_attr, dn):
                    return True
                raise_if_broken(conn)
                return False  # compareFalse, noSuchObject, noSuchAttribute ...

            return self._with(self.service, compare)
        filt = expand(s.group_filter, login, service, realm, dn, escape_filter_chars)
        if not filt.lstrip().startswith("("):
            filt = f"({filt})"
        base_dn = expand(s.group_search_base, login, service, realm, dn, escape_dn_value)
        groups = self._with(self.service, lambda c: self._search(
            c, base_dn, s.group_scope, filt, ["1.1"], 1))
        return bool(groups)
