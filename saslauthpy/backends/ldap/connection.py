"""Opening libldap connections (python-ldap): ``ldap_servers`` in order with failover,
libldap's options and TLS, StartTLS, and the bind as an ``Identity``.

Everything here blocks (connect, TLS handshake, bind) and runs in the backend's threads,
never on the event loop; python-ldap releases the GIL while libldap waits.  The URIs go
to libldap as written, so ``ldapi:///`` means libldap's default socket and ``ldap.conf``
applies as it does for the C saslauthd.  A server that fails is tried last for
``RETRY_DOWN_SERVER_AFTER`` seconds.  Nothing here keeps a password: the simple bind
passes it straight to libldap, and SASL binds are spoken by ``sasl``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import ldap
from ldap.ldapobject import LDAPObject

from . import sasl
from .sasl import SaslIdentity
from .settings import Settings, uses_tls


class Unavailable(Exception):
    """No server could be used (down, timed out, busy): a temporary failure."""


class ServiceBindRefused(Exception):
    """The directory refused the service credentials (ldap_bind_dn or the SASL identity)."""


class Broken(Exception):
    """The connection broke during an operation; the caller may retry on a new one."""


# libldap's own errors: the connection, not the request, is at fault
CONNECTION_ERRORS = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR, ldap.LOCAL_ERROR,
                     ldap.UNAVAILABLE, ldap.BUSY)
# result codes that mean "try again later" rather than "no": operationsError,
# timeLimitExceeded, adminLimitExceeded, busy, unavailable, other
TEMPORARY_CODES = frozenset({1, 3, 11, 51, 52, 80})
# ... except on a bind: slapd answers "other" to a SASL name it cannot map or look up
# ("unable to canonify user and get auxprops"), which is a refusal, not an outage.
TEMPORARY_BIND_CODES = TEMPORARY_CODES - {80}

RETRY_DOWN_SERVER_AFTER = 30.0  # seconds a failed server is tried last


@dataclass(frozen=True)
class Identity:
    """How a connection authenticates: a simple bind (a DN, maybe empty: anonymous) or
    SASL."""

    dn: str = ""
    password: bytes = field(default=b"", repr=False)
    sasl: SaslIdentity | None = None


def service_identity(s: Settings) -> Identity:
    """``ldap_bind_dn`` + ``ldap_password`` (none: anonymous), or the SASL identity."""
    password = s.password.encode("utf-8", "surrogateescape")
    if not s.use_sasl:
        return Identity(dn=s.bind_dn, password=password)
    # As lak.c: without ldap_id the name is libldap's SASL_AUTHCID (ldap.conf), if any.
    return Identity(sasl=sasl_identity(s, s.sasl_id or default_authcid(), password,
                                       s.sasl_authz_id))


def sasl_identity(s: Settings, user: str, password: bytes, authz: str) -> SaslIdentity:
    return SaslIdentity(mech=s.sasl_mech.upper(), user=user, password=password, authz=authz,
                        realm=s.sasl_realm)


def default_authcid() -> str:
    try:
        return ldap.get_option(ldap.OPT_X_SASL_AUTHCID) or ""
    except ValueError:  # not set in ldap.conf
        return ""


def code_of(exc: ldap.LDAPError) -> int | None:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return info.get("result")


def describe(exc: BaseException) -> str:
    """One short line: libldap's description and the server's text."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    text = str(info.get("desc") or type(exc).__name__)
    extra = str(info.get("info") or "").strip()
    if extra and extra not in text:
        text += f": {extra}"
    return text.splitlines()[0][:200]


def host_of(uri: str) -> str:
    parts = urlsplit(uri)
    return unquote(parts.hostname or "") if parts.scheme.lower() != "ldapi" else "localhost"


class Directory:
    """The ordered ``ldap_servers`` and how to open a ready connection to one of them."""

    def __init__(self, s: Settings):
        self.s = s
        self.down_until = [0.0] * len(s.servers)
        self.lock = threading.Lock()

    def _order(self) -> list[int]:
        now = time.monotonic()
        with self.lock:
            up = [i for i, t in enumerate(self.down_until) if t <= now]
            # servers that failed: the one that failed longest ago first
            down = sorted((i for i, t in enumerate(self.down_until) if t > now),
                          key=self.down_until.__getitem__)
        return up + down

    def mark(self, index: int, ok: bool) -> None:
        with self.lock:
            self.down_until[index] = 0.0 if ok else time.monotonic() + RETRY_DOWN_SERVER_AFTER

    def connect(self, identity: Identity, deadline: float, for_users: bool = False,
                judge: bool = True) -> tuple[LDAPObject, int]:
        """A connection to the first server that answers before ``deadline`` (monotonic),
        bound as ``identity``, and the server's index.  Raises ``Unavailable``,
        ``ServiceBindRefused`` or ``Unsendable``.  ``for_users``: a connection for users'
        binds, for which a refused (anonymous) bind is fine: the server answered.
        ``judge``: a server that fails goes last for a while (False for a try whose
        deadline is too short to say a server is down)."""
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
                bind(conn, identity, host_of(uri))
            except ldap.LDAPError as exc:
                code = code_of(exc)
                temporary = (isinstance(exc, CONNECTION_ERRORS) or code is None or code < 0
                             or code in TEMPORARY_BIND_CODES)
                if for_users and conn is not None and not temporary:
                    self.mark(index, ok=True)  # anonymous bind refused, but connected
                    return conn, index
                if conn is not None:
                    close(conn)
                if temporary:
                    if judge:
                        self.mark(index, ok=False)
                    errors.append(f"{uri}: {describe(exc)}")
                    continue
                raise ServiceBindRefused(f"{uri}: the service bind was refused "
                                         f"({describe(exc)})")
            except BaseException:
                if conn is not None:
                    close(conn)
                raise
            self.mark(index, ok=True)
            return conn, index
        raise Unavailable("no LDAP server answers (" + "; ".join(errors) + ")")

    def untrusted(self) -> str:
        """After every server failed at start: the first server that answers once its
        certificate is not checked (so an untrusted certificate, or a name that does not
        match it, was the reason), or "".  libldap's own message does not say."""
        if self.s.tls_check_peer is False or not uses_tls(self.s):
            return ""
        for uri in self.s.servers:
            conn = None
            try:
                conn = self._open(uri, float(self.s.timeout), verify=False)
                conn.simple_bind_s("", b"")
                return uri
            except ldap.LDAPError:
                continue
            finally:
                if conn is not None:
                    close(conn)
        return ""

    def _open(self, uri: str, timeout: float, verify: bool = True) -> LDAPObject:
        s = self.s
        conn = ldap.initialize(uri)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, s.version)
        conn.set_option(ldap.OPT_REFERRALS, 1 if s.referrals else 0)
        conn.set_option(ldap.OPT_RESTART, 1 if s.restart else 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
        conn.set_option(ldap.OPT_TIMEOUT, timeout)  # the synchronous calls made here
        conn.set_option(ldap.OPT_DEREF, s.deref)
        if s.debug:
            conn.set_option(ldap.OPT_DEBUG_LEVEL, s.debug)
        tls_options(conn, s, verify)
        if s.start_tls and uri.lower().startswith("ldap:"):
            conn.start_tls_s()
        return conn


def tls_options(conn: LDAPObject, s: Settings, verify: bool = True) -> None:
    """libldap's TLS options for this connection, then a fresh TLS context with them."""
    if not verify:
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_NEVER)
    elif s.tls_check_peer is not None:
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT,
                        ldap.OPT_X_TLS_DEMAND if s.tls_check_peer else ldap.OPT_X_TLS_NEVER)
    for option, value in ((ldap.OPT_X_TLS_CACERTFILE, s.tls_cacert_file),
                          (ldap.OPT_X_TLS_CACERTDIR, s.tls_cacert_dir),
                          (ldap.OPT_X_TLS_CERTFILE, s.tls_cert),
                          (ldap.OPT_X_TLS_KEYFILE, s.tls_key),
                          (ldap.OPT_X_TLS_CIPHER_SUITE, s.tls_ciphers)):
        if value:
            conn.set_option(option, value)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)


def bind(conn: LDAPObject, identity: Identity, host: str) -> None:
    """Bind ``conn`` as ``identity`` (an empty DN: anonymous); raises python-ldap's errors
    or ``Unsendable``.  Blocking."""
    if identity.sasl is not None:
        sasl.bind(conn, identity.sasl, host)
    else:
        conn.simple_bind_s(identity.dn, identity.password)


def close(conn: LDAPObject) -> None:
    try:
        conn.unbind_ext()
    except Exception:  # noqa: BLE001 - it is going away anyway
        pass
