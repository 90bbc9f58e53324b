"""``-a ldap``: check logins against an LDAP directory, configured like saslauthd.

Settings come from the saslauthd.conf named by ``-O`` (default ``/etc/saslauthd.conf``)
with the keys saslauthd's ``lak.c`` reads, and from the ``[ldap]`` TOML table (same keys,
the ``ldap_`` prefix optional; a TOML value overrides the file's).  See docs/ldap.md.

Three methods, as in saslauthd:

- ``bind``: search (as ``ldap_bind_dn`` or anonymously) for the user's DN, then bind as
  the user on a separate connection;
- ``custom``: search and fetch ``ldap_password_attr``, checked with ``passwords.verify``;
- ``fastbind``: expand ``ldap_filter`` into the user's DN and bind with it directly.

The optional group check (``ldap_group_dn`` / ``ldap_group_filter``) always runs on a
service connection (cyrus-sasl#427).  Service connections (searches, compares) and user
connections (binds) come from two small thread-safe pools, so logins do not queue behind
each other; every login is a real bind or a real password check: nothing is remembered
between requests (cyrus-sasl#550).  ``ldap_servers`` are tried in order within
``ldap_timeout``; a server that fails is tried last for a while, and a broken connection
is replaced and the operation retried once (as lak.c does), so a server going away
mid-stream costs no login.  When no server answers, the answer is a temporary failure.
"""

from __future__ import annotations

import difflib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import ldap3
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from .. import passwords, saslauthd_conf
from ..protocol import Request
from ..saslauthd_conf import Entry
from . import base
from .base import FAIL, OK, UNKNOWN, Answer, ConfigError, tempfail

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("saslauthpy.ldap")

T = TypeVar("T")

# --------------------------------------------------------------------------------------
# Settings

SCOPES = {"sub": ldap3.SUBTREE, "subtree": ldap3.SUBTREE, "one": ldap3.LEVEL,
          "onelevel": ldap3.LEVEL, "base": ldap3.BASE}
DEREF = {"never": ldap3.DEREF_NEVER, "search": ldap3.DEREF_SEARCH,
         "find": ldap3.DEREF_BASE, "always": ldap3.DEREF_ALWAYS}
METHODS = {"bind": "bind", "custom": "custom", "fastbind": "fastbind"}
GROUP_METHODS = {"attr": "attr", "filter": "filter"}
SASL_MECHS = {"digest-md5": ldap3.DIGEST_MD5, "plain": ldap3.PLAIN, "external": ldap3.EXTERNAL}

ALIASES = {
    "ldap_bind_pw": "ldap_password",
    "ldap_default_domain": "ldap_default_realm",
    "ldap_sasl_authc_id": "ldap_id",
    "ldap_sasl_authz_id": "ldap_authz_id",
    "ldap_sasl_realm": "ldap_realm",
    "ldap_sasl_mech": "ldap_mech",
}
STRING_KEYS = {
    "ldap_servers", "ldap_bind_dn", "ldap_password", "ldap_search_base", "ldap_filter",
    "ldap_password_attr", "ldap_group_dn", "ldap_group_attr", "ldap_group_filter",
    "ldap_group_search_base", "ldap_default_realm", "ldap_id", "ldap_authz_id", "ldap_realm",
    "ldap_mech", "ldap_sasl_secprops", "ldap_tls_cacert_file", "ldap_tls_cacert_dir",
    "ldap_tls_ciphers", "ldap_tls_cert", "ldap_tls_key",
}
OTHER_KEYS = {
    "ldap_version", "ldap_auth_method", "ldap_group_scope", "ldap_group_match_method",
    "ldap_timeout", "ldap_time_limit", "ldap_size_limit", "ldap_deref", "ldap_referrals",
    "ldap_restart", "ldap_scope", "ldap_use_sasl", "ldap_start_tls", "ldap_tls_check_peer",
    "ldap_debug",
}
# Read by older saslauthd releases, no longer meaningful: accepted and ignored.
IGNORED_KEYS = {"ldap_cache_ttl", "ldap_cache_mem"}
KNOWN_KEYS = STRING_KEYS | OTHER_KEYS | IGNORED_KEYS | set(ALIASES)
# The same file configures saslauthd's other mechanisms; their keys are not ours to judge.
OTHER_MECHANISM_PREFIXES = ("krb5_", "httpform_")
# Only in our TOML table.
TOML_ONLY_KEYS = {"pool_size"}

TOKENS = set("%uUdsrRD123456789")


@dataclass
class Settings:
    servers: list[str] = field(default_factory=lambda: ["ldap://localhost/"])
    bind_dn: str = ""
    password: str = field(default="", repr=False)
    version: int = 3
    search_base: str = ""
    filter: str = "(uid=%u)"
    password_attr: str = "userPassword"
    auth_method: str = "bind"
    group_dn: str = ""
    group_attr: str = "uniqueMember"
    group_filter: str = ""
    group_search_base: str = ""
    group_scope: str = ldap3.SUBTREE
    group_match_method: str = "attr"
    default_realm: str = ""
    timeout: int = 5
    time_limit: int = 5
    size_limit: int = 1
    deref: str = ldap3.DEREF_NEVER
    referrals: bool = False
    restart: bool = True
    scope: str = ldap3.SUBTREE
    use_sasl: bool = False
    sasl_id: str = ""
    sasl_authz_id: str = ""
    sasl_realm: str = ""
    sasl_mech: str = ""
    sasl_secprops: str = ""
    start_tls: bool = False
    tls_check_peer: bool | None = None  # None: not set, verify (libldap's default)
    tls_cacert_file: str = ""
    tls_cacert_dir: str = ""
    tls_ciphers: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    debug: int = 0
    pool_size: int = 5
    source: str = ""  # the file read, for messages

    @property
    def group_check(self) -> bool:
        return bool(self.group_dn or self.group_filter)


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _canonical(entries: Mapping[str, Entry]) -> dict[str, Entry]:
    """Check every key, fold aliases; the last of a key and its alias wins, as in lak.c."""
    out: dict[str, Entry] = {}
    for key, entry in entries.items():
        if key.startswith(OTHER_MECHANISM_PREFIXES):
            continue
        if key not in KNOWN_KEYS and key not in TOML_ONLY_KEYS:
            raise ConfigError(f"{entry.where}: unknown key {key!r}{_suggest(key)}")
        if key in IGNORED_KEYS:
            log.info("%s: %s is obsolete in saslauthd and ignored", entry.where, key)
            continue
        canon = ALIASES.get(key, key)
        out.pop(canon, None)
        out[canon] = Entry(canon, entry.value, entry.where)
    return out


def toml_entries(options: Mapping[str, Any], where: str) -> dict[str, Entry]:
    """The ``[ldap]`` table as saslauthd.conf entries (``ldap_`` prefix optional)."""
    out: dict[str, Entry] = {}
    for raw_key, value in options.items():
        key = str(raw_key).lower()
        if not key.startswith("ldap_") and key not in TOML_ONLY_KEYS:
            key = "ldap_" + key
        at = f"{where} {raw_key}"
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            text = value
        elif isinstance(value, list) and key == "ldap_servers" and all(
                isinstance(v, str) for v in value):
            text = " ".join(value)
        else:
            raise ConfigError(f"{at}: expected a string, a number or yes/no, got {value!r}")
        if not text.strip():
            raise ConfigError(f"{at}: empty value; give one or delete the key")
        out[key] = Entry(key, text, at)
    return out


def _template(entry: Entry, allow_dn: bool) -> str:
    """Reject templates saslauthd would silently mangle: unknown or dangling tokens."""
    text = entry.value
    i = 0
    while (i := text.find("%", i)) >= 0:
        if i + 1 >= len(text):
            raise ConfigError(f"{entry.where}: {entry.key} ends with a lone '%'; "
                              "write %% for a percent sign")
        token = text[i + 1]
        if token not in TOKENS or (token == "D" and not allow_dn):
            known = "%% %u %U %d %1-%9 %s %r %R" + (" %D" if allow_dn else "")
            raise ConfigError(f"{entry.where}: {entry.key} has an unknown token %{token} "
                              f"(tokens: {known})")
        i += 2
    return text


def _servers(entry: Entry) -> list[str]:
    uris = entry.value.split()
    for uri in uris:
        try:
            parts = urlsplit(uri)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(f"{entry.where}: ldap_servers: {uri!r} is not a URI ({exc})")
        if parts.scheme.lower() not in ("ldap", "ldaps", "ldapi") or (
                parts.scheme.lower() != "ldapi" and not parts.hostname):
            raise ConfigError(f"{entry.where}: ldap_servers: {uri!r} is not an ldap://, "
                              "ldaps:// or ldapi:// URI (several are separated by spaces)")
    return uris


def _file(entry: Entry, directory: bool = False) -> str:
    path = entry.value.strip()
    ok = os.path.isdir(path) if directory else os.path.isfile(path)
    if not ok or not os.access(path, os.R_OK):
        kind = "directory" if directory else "file"
        raise ConfigError(f"{entry.where}: {entry.key}: {path} is not a readable {kind}")
    return path


def build_settings(entries: Mapping[str, Entry], pool_size: int, source: str) -> Settings:
    e = _canonical(entries)
    s = Settings(pool_size=max(1, pool_size), source=source)
    b, i, c = saslauthd_conf.boolean, saslauthd_conf.integer, saslauthd_conf.choice
    method_given = False
    for key, entry in e.items():
        name = key.removeprefix("ldap_")
        if key == "ldap_servers":
            s.servers = _servers(entry)
        elif key in ("ldap_filter", "ldap_search_base", "ldap_group_dn"):
            setattr(s, name, _template(entry, allow_dn=False))
        elif key in ("ldap_group_filter", "ldap_group_search_base"):
            setattr(s, name, _template(entry, allow_dn=True))
        elif key in ("ldap_tls_cacert_file", "ldap_tls_cert", "ldap_tls_key"):
            setattr(s, name, _file(entry))
        elif key == "ldap_tls_cacert_dir":
            s.tls_cacert_dir = _file(entry, directory=True)
        elif key in ("ldap_id", "ldap_authz_id", "ldap_realm", "ldap_mech"):
            setattr(s, "sasl_" + name, entry.value.strip())
        elif key == "ldap_sasl_secprops":
            s.sasl_secprops = entry.value.strip()
        elif key in STRING_KEYS:
            value = entry.value if key == "ldap_password" else entry.value.strip()
            setattr(s, name, value)
        elif key == "ldap_version":
            s.version = i(entry, 2, 3)
        elif key == "ldap_auth_method":
            s.auth_method = c(entry, METHODS)
            method_given = True
        elif key in ("ldap_scope", "ldap_group_scope"):
            setattr(s, name, c(entry, SCOPES))
        elif key == "ldap_group_match_method":
            s.group_match_method = c(entry, GROUP_METHODS)
        elif key == "ldap_deref":
            s.deref = c(entry, DEREF)
        elif key == "ldap_timeout":
            s.timeout = i(entry, 1, 3600)
        elif key in ("ldap_time_limit", "ldap_size_limit", "ldap_debug"):
            setattr(s, name, i(entry, 0))
        elif key in ("ldap_referrals", "ldap_restart", "ldap_use_sasl", "ldap_start_tls",
                     "ldap_tls_check_peer"):
            setattr(s, name, b(entry))
        elif key == "pool_size":
            s.pool_size = i(entry, 1, 256)
    _validate(s, e, method_given)
    return s


def _validate(s: Settings, e: Mapping[str, Entry], method_given: bool) -> None:
    where = s.source

    def at(key: str) -> str:
        return e[key].where if key in e else where

    if s.use_sasl or s.start_tls:
        s.version = 3  # as lak.c: StartTLS and SASL need LDAPv3
    if s.use_sasl and s.auth_method == "bind":
        s.auth_method = "fastbind"  # lak.c: with SASL, "bind" means fastbind
    if s.group_filter and not s.group_search_base:
        s.group_search_base = s.search_base
    if s.group_check:
        if s.group_match_method == "attr" and not s.group_dn:
            raise ConfigError(f"{at('ldap_group_filter')}: ldap_group_filter is set but "
                              "ldap_group_match_method is attr (the default): add "
                              "'ldap_group_match_method: filter' or set ldap_group_dn")
        if s.group_match_method == "filter" and not s.group_filter:
            raise ConfigError(f"{at('ldap_group_match_method')}: ldap_group_match_method is "
                              "filter but ldap_group_filter is not set")
    if s.auth_method == "fastbind" and not s.use_sasl and s.filter.lstrip().startswith("("):
        raise ConfigError(
            f"{at('ldap_filter')}: with ldap_auth_method fastbind, ldap_filter is the user's "
            f"DN template (like uid=%U,ou=people,dc=example,dc=org), not a search filter "
            f"({s.filter!r})")
    if bool(s.tls_cert) != bool(s.tls_key):
        key = "ldap_tls_key" if s.tls_cert else "ldap_tls_cert"
        raise ConfigError(f"{where}: {key} is missing: ldap_tls_cert and ldap_tls_key go "
                          "together (a client certificate and its key)")
    if s.tls_ciphers:
        try:
            ssl.create_default_context().set_ciphers(s.tls_ciphers)
        except ssl.SSLError:
            raise ConfigError(f"{at('ldap_tls_ciphers')}: ldap_tls_ciphers {s.tls_ciphers!r} "
                              "selects no cipher: give an OpenSSL cipher list like "
                              "HIGH:!aNULL:!MD5")
    if s.use_sasl:
        mech = s.sasl_mech.lower()
        if not mech:
            raise ConfigError(f"{where}: ldap_use_sasl is on but ldap_mech is not set: "
                              f"choose one of {', '.join(m.upper() for m in SASL_MECHS)}")
        if mech not in SASL_MECHS:
            raise ConfigError(f"{at('ldap_mech')}: ldap_mech {s.sasl_mech!r} is not "
                              f"supported (ldap3 does {', '.join(m.upper() for m in SASL_MECHS)}"
                              "; GSSAPI and others are not)")
        if mech == "external" and s.auth_method == "fastbind":
            raise ConfigError(
                f"{at('ldap_mech')}: ldap_mech EXTERNAL authenticates the connection, not "
                "the user, so it cannot check a password: use DIGEST-MD5 or PLAIN, or drop "
                "ldap_use_sasl and use ldap_auth_method bind/custom")
        if s.sasl_secprops and s.sasl_secprops.lower() not in ("none", "noanonymous",
                                                                "noplain", "noanonymous,noplain"):
            raise ConfigError(f"{at('ldap_sasl_secprops')}: ldap_sasl_secprops "
                              f"{s.sasl_secprops!r}: SASL security layers are not supported "
                              "(ldap3 has none); protect the connection with TLS instead")
    elif s.sasl_mech or s.sasl_id:
        log.warning("%s: ldap_mech/ldap_id are set but ldap_use_sasl is off: they are unused",
                    where)
    if s.tls_check_peer is False and _uses_tls(s):
        log.warning("%s: ldap_tls_check_peer is off: the LDAP server's certificate is not "
                    "verified", at("ldap_tls_check_peer"))


def _uses_tls(s: Settings) -> bool:
    return s.start_tls or any(u.lower().startswith("ldaps:") for u in s.servers)


def load_settings(config: Config, options: Mapping[str, Any]) -> Settings:
    """saslauthd.conf (``-O`` or /etc/saslauthd.conf) overlaid with the ``[ldap]`` table."""
    path = config.mech_options or saslauthd_conf.DEFAULT_PATH
    entries: dict[str, Entry] = {}
    if config.mech_options or not options or os.path.exists(path):
        entries.update(saslauthd_conf.read(path))
    else:
        path = ""
    where = f"[ldap] in {config.config_file or 'the TOML config'}"
    entries.update(toml_entries(options, where))
    return build_settings(entries, pool_size=config.threads, source=path or where)


# --------------------------------------------------------------------------------------
# Tokens (lak.c's lak_expand_tokens, Debian's 2.1.28)


def escape_dn_value(value: str) -> str:
    return escape_rdn(value) if value else ""


def _domain_label(domain: str, n: int) -> str:
    """%1..%9: the n-th label from the right (%1 = top-level), "" when there is none."""
    count = domain.count(".") + 1
    labels = [p for p in domain.split(".") if p]
    index = count - n
    return labels[index] if 0 <= index < len(labels) and n <= count else ""


def expand(template: str, login: str, service: str, realm: str, dn: str,
           escape: Callable[[str], str]) -> str:
    """Expand ``%`` tokens; every value goes through ``escape`` (filter or DN escaping).

    ``%u`` login, ``%U`` login before the first ``@``, ``%d`` after it (empty without one,
    as in saslauthd 2.1.27+), ``%1``-``%9`` labels of the login's domain or else of the
    realm, ``%s`` service, ``%r`` realm, ``%R`` ``@`` + realm, ``%D`` the user's DN, ``%%``.
    """
    user, at, domain = login.partition("@")
    out: list[str] = []
    i = 0
    while (j := template.find("%", i)) >= 0:
        out.append(template[i:j])
        token = template[j + 1:j + 2]
        i = j + 2
        if token == "%":
            out.append("%")
        elif token == "u":
            out.append(escape(login))
        elif token == "U":
            out.append(escape(user))
        elif token == "d":
            out.append(escape(domain if at else ""))
        elif token.isdigit() and token != "0":
            source = domain if (at and domain) else realm
            out.append(escape(_domain_label(source, int(token))) if source else "")
        elif token == "s":
            out.append(escape(service))
        elif token == "r":
            out.append(escape(realm))
        elif token == "R":
            out.append("@" + escape(realm) if realm else "")
        elif token == "D":
            out.append(escape(dn))
    out.append(template[i:])
    return "".join(out)


# --------------------------------------------------------------------------------------
# Connections


class Unavailable(Exception):
    """No server could be used (down, timed out, busy): a temporary failure."""


class ServiceBindRefused(Exception):
    """The directory refused ldap_bind_dn's credentials: a configuration problem."""


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
TEMPORARY_CODES = {1, 3, 11, 51, 52, 80}
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


class Directory:
    """The ordered ``ldap_servers`` and how to open a ready connection to one of them."""

    def __init__(self, s: Settings):
        self.s = s
        self.tls = self._tls(s) if _uses_tls(s) else None
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

    def discard_idle(self) -> None:
        """Drop the idle connections: one broke, the others likely share its server's fate."""
        self.close()

    def add(self, conn: ldap3.Connection) -> None:
        with self.lock:
            self.idle.append((conn, time.monotonic()))

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn, _ in idle:
            close(conn)


# --------------------------------------------------------------------------------------
# The backend


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

    def __init__(self, config: Config, options: Mapping[str, Any]):
        super().__init__(config, options)
        self.s = load_settings(config, options)
        self.directory = Directory(self.s)
        self.service_identity = self._service_identity()
        self.service = Pool("service", self.s.pool_size,
                            lambda deadline: self.directory.connect(self.service_identity,
                                                                    deadline))
        self.users = Pool("user-bind", self.s.pool_size,
                          lambda deadline: self.directory.connect(None, deadline))

    def _service_identity(self) -> Identity:
        s = self.s
        password = s.password.encode("utf-8", "surrogateescape")
        if not s.use_sasl:
            return Identity(dn=s.bind_dn, password=password)
        try:
            return self._sasl_identity(s.sasl_id, password, s.sasl_authz_id)
        except Unsendable as exc:
            raise ConfigError(f"{s.source}: ldap_password: {exc}")

    def _sasl_identity(self, user: str, password: bytes, authz: str) -> Identity:
        """``ldap_mech`` with ldap3's credentials for it (``Unsendable``: not UTF-8)."""
        mech = SASL_MECHS[self.s.sasl_mech.lower()]
        if mech == ldap3.EXTERNAL:  # no password; the initial response is the authzid
            # ("" = none; None would omit it and slapd would wait for another round)
            return Identity(sasl_mech=mech, sasl_credentials=authz or "")
        try:
            text = password.decode("utf-8")
        except UnicodeDecodeError:
            raise Unsendable(f"the password is not UTF-8, which SASL {mech} requires")
        if mech == ldap3.DIGEST_MD5:
            creds: tuple[Any, ...] = (self.s.sasl_realm or None, user, text, authz or None)
        else:  # PLAIN
            creds = (authz or "", user, text)
        return Identity(sasl_mech=mech, sasl_credentials=creds)

    # -- lifecycle

    def open(self) -> None:
        deadline = time.monotonic() + self.s.timeout
        try:
            conn = self.directory.connect(self.service_identity, deadline)
        except ServiceBindRefused as exc:
            who = "SASL identity ldap_id" if self.s.use_sasl else "ldap_bind_dn"
            raise ConfigError(f"{self.s.source}: {exc}: check {who} and ldap_password")
        except Unsendable as exc:
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
        self.service.close()
        self.users.close()

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
                    pool.discard_idle()
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
            if code in TEMPORARY_CODES or code is None:
                raise Broken(describe(conn))
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
        if len(entries) > 1 or (limit and len(entries) > limit):
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
                code = (conn.result or {}).get("result")
                if conn.closed or code in TEMPORARY_BIND_CODES or code is None:
                    raise Broken(describe(conn))
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
        ok, dn = self._user_bind(self._sasl_identity(user, password, ""),
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
                code = (conn.result or {}).get("result")
                if conn.closed or code is None or code in TEMPORARY_CODES:
                    raise Broken(describe(conn))
                return False  # compareFalse, noSuchObject, noSuchAttribute ...

            return self._with(self.service, compare)
        filt = expand(s.group_filter, login, service, realm, dn, escape_filter_chars)
        if not filt.lstrip().startswith("("):
            filt = f"({filt})"
        base_dn = expand(s.group_search_base, login, service, realm, dn, escape_dn_value)
        groups = self._with(self.service, lambda c: self._search(
            c, base_dn, s.group_scope, filt, ["1.1"], 1))
        return bool(groups)
