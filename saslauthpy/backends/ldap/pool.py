"""The ldap backend's connections: ``ldap_servers`` in order with failover, TLS, binds,
and the small pools of ready connections.

``Directory.connect`` opens a connection to the first server that answers within
``ldap_timeout`` (StartTLS/ldaps/ldapi as configured) and binds it as an ``Identity``
(simple, SASL or anonymous).  A server that fails is tried last for
``RETRY_DOWN_SERVER_AFTER`` seconds.  ``Pool`` hands out at most ``pool_size``
connections, one caller at a time each, and keeps the idle ones for ``MAX_IDLE``
seconds.  Nothing here remembers a password: ``bind`` clears it from the connection.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import ldap3
from ldap3.core import exceptions as lx

from .settings import SASL_MECHS, Settings, uses_tls


class Unavailable(Exception):
    """No server could be used (down, timed out, busy): a temporary failure."""


class ServiceBindRefused(Exception):
    """The directory refused the service credentials (ldap_bind_dn or the SASL identity)."""


class Broken(Exception):
    """The connection broke during an operation; the caller may retry on a new one."""


class Unsendable(Exception):
    """The password cannot be sent with the SASL mechanism (not UTF-8, SASLprep refuses)."""


# ldap3 exceptions that mean "this connection is gone", not "this request is wrong"
CONNECTION_ERRORS = (lx.LDAPCommunicationError, lx.LDAPResponseTimeoutError,
                     lx.LDAPStartTLSError, lx.LDAPCertificateError, lx.LDAPSocketOpenError,
                     lx.LDAPMaximumRetriesError, OSError, ssl.SSLError)
# result codes that mean "try again later" rather than "no": operationsError,
# timeLimitExceeded, adminLimitExceeded, busy, unavailable, other
TEMPORARY_CODES = frozenset({1, 3, 11, 51, 52, 80})
# ... except on a bind: slapd answers "other" to a SASL name it cannot map or look up
# ("unable to canonify user and get auxprops"), which is a refusal, not an outage.
TEMPORARY_BIND_CODES = TEMPORARY_CODES - {80}

RETRY_DOWN_SERVER_AFTER = 30.0  # seconds a failed server is tried last
MAX_IDLE = 120.0  # seconds before an idle pooled connection is replaced (back to the first)


@dataclass(frozen=True)
class Identity:
    """How a connection authenticates: service account, SASL identity or nobody."""

    dn: str = ""
    password: bytes = field(default=b"", repr=False)
    sasl_mech: str = ""
    sasl_credentials: Any = field(default=None, repr=False)  # what ldap3's mechanism takes


def service_identity(s: Settings) -> Identity:
    """``ldap_bind_dn`` + ``ldap_password`` (none: anonymous), or the SASL identity."""
    password = s.password.encode("utf-8", "surrogateescape")
    if not s.use_sasl:
        return Identity(dn=s.bind_dn, password=password)
    return sasl_identity(s, s.sasl_id, password, s.sasl_authz_id)


def sasl_identity(s: Settings, user: str, password: bytes, authz: str) -> Identity:
    """``ldap_mech`` with ldap3's credentials for it (``Unsendable``: not UTF-8)."""
    mech = SASL_MECHS[s.sasl_mech.lower()]
    if mech == ldap3.EXTERNAL:  # no password; the initial response is the authzid
        # ("" = none; None would omit it and slapd would wait for another round)
        return Identity(sasl_mech=mech, sasl_credentials=authz or "")
    try:
        text = password.decode("utf-8")
    except UnicodeDecodeError:
        raise Unsendable(f"the password is not UTF-8, which SASL {mech} requires")
    if mech == ldap3.DIGEST_MD5:
        creds: tuple[Any, ...] = (s.sasl_realm or None, user, text, authz or None)
    else:  # PLAIN
        creds = (authz or "", user, text)
    return Identity(sasl_mech=mech, sasl_credentials=creds)


class Directory:
    """The ordered ``ldap_servers`` and how to open a ready connection to one of them."""

    def __init__(self, s: Settings):
        self.s = s
        self.tls = self._tls(s) if uses_tls(s) else None
        self.down_until = [0.0] * len(s.servers)
        self.lock = threading.Lock()

    @staticmethod
    def _tls(s: Settings) -> ldap3.Tls:
        verify = ssl.CERT_NONE if s.tls_check_peer is False else ssl.CERT_REQUIRED
        return ldap3.Tls(validate=verify, ca_certs_file=s.tls_cacert_file or None,
                         ca_certs_path=s.tls_cacert_dir or None,
                         local_certificate_file=s.tls_cert or None,
                         local_private_key_file=s.tls_key or None,
                         ciphers=s.tls_ciphers or None)

    def _server(self, uri: str, connect_timeout: float) -> ldap3.Server:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        common = dict(get_info=ldap3.NONE, connect_timeout=connect_timeout, tls=self.tls)
        if scheme == "ldapi":
            return ldap3.Server("ldapi://" + parts.netloc, **common)
        host = parts.hostname or "localhost"
        port = parts.port or (636 if scheme == "ldaps" else 389)
        return ldap3.Server(unquote(host), port=port, use_ssl=scheme == "ldaps", **common)

    def _order(self) -> list[int]:
        now = time.monotonic()
        with self.lock:
            up = [i for i, t in enumerate(self.down_until) if t <= now]
            down = [i for i, t in enumerate(self.down_until) if t > now]
        return up + down

    def failed(self, conn: ldap3.Connection) -> None:
        """``conn`` broke mid-operation: try its server last for a while."""
        index = getattr(conn, "saslauthpy_server", None)
        if index is not None:
            self._mark(index, ok=False)

    def _mark(self, index: int, ok: bool) -> None:
        with self.lock:
            self.down_until[index] = 0.0 if ok else time.monotonic() + RETRY_DOWN_SERVER_AFTER

    def connect(self, identity: Identity | None, deadline: float) -> ldap3.Connection:
        """A connection to the first server that answers, bound as ``identity`` (None: not
        bound).  Raises ``Unavailable`` or ``ServiceBindRefused``."""
        errors: list[str] = []
        for index in self._order():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                errors.append("ldap_timeout reached")
                break
            uri = self.s.servers[index]
            conn = None
            try:
                conn = self._open(uri, min(float(self.s.timeout), remaining))
                if identity is not None and not bind(conn, identity):
                    code = conn.result.get("result") if conn.result else None
                    message = describe(conn)
                    close(conn)
                    if code in TEMPORARY_BIND_CODES:
                        raise Broken(message)
                    raise ServiceBindRefused(f"{uri}: the service bind was refused ({message})")
            except (Broken, *CONNECTION_ERRORS) as exc:
                if conn is not None:
                    close(conn)
                self._mark(index, ok=False)
                errors.append(f"{uri}: {short_error(exc)}")
                continue
            self._mark(index, ok=True)
            conn.saslauthpy_server = index  # type: ignore[attr-defined]
            return conn
        raise Unavailable("no LDAP server answers (" + "; ".join(errors) + ")")

    def _open(self, uri: str, timeout: float) -> ldap3.Connection:
        conn = ldap3.Connection(
            self._server(uri, timeout), version=self.s.version, authentication=ldap3.ANONYMOUS,
            client_strategy=ldap3.SYNC, auto_referrals=self.s.referrals, read_only=True,
            raise_exceptions=False, receive_timeout=self.s.timeout, return_empty_attributes=False,
        )
        conn.open(read_server_info=False)
        if self.s.start_tls and not uri.lower().startswith(("ldaps:", "ldapi:")):
            conn.start_tls(read_server_info=False)
        return conn


def bind(conn: ldap3.Connection, identity: Identity) -> bool:
    """(Re)bind ``conn``; the password is not kept on the connection afterwards.

    Raises ``Unsendable`` when SASLprep refuses the password (nothing was sent)."""
    try:
        if identity.sasl_mech:
            conn.authentication = ldap3.SASL
            conn.sasl_mechanism = identity.sasl_mech
            conn.sasl_credentials = identity.sasl_credentials
            conn.user, conn.password = None, None
        elif identity.dn:
            conn.authentication = ldap3.SIMPLE
            conn.user, conn.password = identity.dn, identity.password
        else:
            conn.authentication = ldap3.ANONYMOUS
            conn.user, conn.password = None, None
        return bool(conn.bind(read_server_info=False))
    except lx.LDAPSASLPrepError as exc:
        raise Unsendable(f"the password cannot be sent with SASL {identity.sasl_mech} ({exc})")
    finally:
        conn.password = None
        conn.sasl_credentials = None


def close(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - it is going away anyway
        pass


def describe(conn: ldap3.Connection) -> str:
    r = conn.result or {}
    text = r.get("description") or "no result"
    if r.get("message"):
        text += f": {r['message']}"
    return text


def raise_if_broken(conn: ldap3.Connection, temporary: frozenset[int] = TEMPORARY_CODES) -> None:
    """After an operation failed: raise ``Broken`` when the connection or the server is at
    fault (closed, no result, a ``temporary`` code) rather than the request."""
    code = (conn.result or {}).get("result")
    if conn.closed or code is None or code in temporary:
        raise Broken(describe(conn))


def short_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "doesn't match" in text:
        return "TLS certificate not trusted (" + text.splitlines()[0][:160] + ")"
    return text.splitlines()[0][:200]


class Pool:
    """At most ``size`` connections handed out one at a time; idle ones are reused."""

    def __init__(self, name: str, size: int, factory: Callable[[float], ldap3.Connection]):
        self.name = name
        self.factory = factory
        self.slots = threading.BoundedSemaphore(size)
        self.idle: list[tuple[ldap3.Connection, float]] = []
        self.lock = threading.Lock()

    @contextmanager
    def connection(self, deadline: float, fresh: bool = False) -> Iterator[ldap3.Connection]:
        """Exclusive use of one connection; ``fresh`` skips the idle ones."""
        if not self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Unavailable(f"all {self.name} connections stayed busy for ldap_timeout")
        conn = None
        healthy = False
        try:
            conn = None if fresh else self._idle()
            if conn is None:
                conn = self.factory(deadline)
            yield conn
            healthy = not conn.closed
        finally:
            if conn is not None:
                if healthy:
                    with self.lock:
                        self.idle.append((conn, time.monotonic()))
                else:
                    close(conn)
            self.slots.release()

    def _idle(self) -> ldap3.Connection | None:
        now = time.monotonic()
        with self.lock:
            while self.idle:
                conn, since = self.idle.pop()
                if not conn.closed and now - since < MAX_IDLE:
                    return conn
                close(conn)
        return None

    def add(self, conn: ldap3.Connection) -> None:
        with self.lock:
            self.idle.append((conn, time.monotonic()))

    def drop_idle(self) -> None:
        """Close the idle connections (at the end, or when one broke: the others likely
        share its server's fate)."""
        with self.lock:
            idle, self.idle = self.idle, []
        for conn, _ in idle:
            close(conn)

