"""The ldap backend's settings: every saslauthd.conf key lak.c reads, and its tokens.

Keys come from the saslauthd.conf named by ``-O`` (default ``/etc/saslauthd.conf``) and
from the ``[ldap]`` TOML table (same keys, the ``ldap_`` prefix optional; a TOML value
overrides the file's).  ``load_settings`` reads both into one ``Settings``: aliases are
folded, defaults are lak.c's, and an unknown key or a bad value is a ``ConfigError`` with
one line naming it.  ``expand`` fills ``ldap_filter``-style templates the way lak.c's
``lak_expand_tokens`` does, escaping every value (RFC 4515 in filters, RFC 4514 in DNs).
See docs/ldap.md.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import ldap
from ldap.filter import escape_filter_chars

from ...errors import ConfigError
from .. import saslauthd_conf
from ..saslauthd_conf import Entry
from .table import ALIASES, Options, toml_entries

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger("saslauthpy.ldap")

SCOPES = {"sub": ldap.SCOPE_SUBTREE, "subtree": ldap.SCOPE_SUBTREE, "one": ldap.SCOPE_ONELEVEL,
          "onelevel": ldap.SCOPE_ONELEVEL, "base": ldap.SCOPE_BASE}
DEREF = {"never": ldap.DEREF_NEVER, "search": ldap.DEREF_SEARCHING,
         "find": ldap.DEREF_FINDING, "always": ldap.DEREF_ALWAYS}
METHODS = {"bind": "bind", "custom": "custom", "fastbind": "fastbind"}
GROUP_METHODS = {"attr": "attr", "filter": "filter"}
SASL_MECHS = {"digest-md5": "DIGEST-MD5", "plain": "PLAIN", "external": "EXTERNAL"}

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
    group_scope: int = ldap.SCOPE_SUBTREE
    group_match_method: str = "attr"
    default_realm: str = ""
    timeout: int = 5
    time_limit: int = 5
    size_limit: int = 1
    deref: int = ldap.DEREF_NEVER
    referrals: bool = False
    restart: bool = True
    scope: int = ldap.SCOPE_SUBTREE
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
    _validate(s, e)
    return s


def _validate(s: Settings, e: Mapping[str, Entry]) -> None:
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
    if s.tls_ciphers and not _ciphers_usable(s.tls_ciphers):
        package = ldap.get_option(ldap.OPT_X_TLS_PACKAGE)
        example = "NORMAL:-VERS-TLS1.0" if package == "GnuTLS" else "HIGH:!aNULL:!MD5"
        raise ConfigError(f"{at('ldap_tls_ciphers')}: ldap_tls_ciphers {s.tls_ciphers!r} "
                          f"selects no cipher: libldap uses {package} here, give its cipher "
                          f"list like {example}")
    if s.use_sasl:
        mech = s.sasl_mech.lower()
        if not mech:
            raise ConfigError(f"{where}: ldap_use_sasl is on but ldap_mech is not set: "
                              f"choose one of {', '.join(m.upper() for m in SASL_MECHS)}")
        if mech not in SASL_MECHS:
            raise ConfigError(f"{at('ldap_mech')}: ldap_mech {s.sasl_mech!r} is not "
                              f"supported (only {', '.join(m.upper() for m in SASL_MECHS)}"
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
                              "(ours has none); protect the connection with TLS instead")
    elif s.sasl_mech or s.sasl_id:
        log.warning("%s: ldap_mech/ldap_id are set but ldap_use_sasl is off: they are unused",
                    where)
    if s.tls_check_peer is False and uses_tls(s):
        log.warning("%s: ldap_tls_check_peer is off: the LDAP server's certificate is not "
                    "verified", at("ldap_tls_check_peer"))


def _ciphers_usable(ciphers: str) -> bool:
    """libldap builds a TLS context with this cipher list (GnuTLS or OpenSSL syntax)."""
    conn = ldap.initialize("ldap://localhost")
    try:
        conn.set_option(ldap.OPT_X_TLS_CIPHER_SUITE, ciphers)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    except (ValueError, ldap.LDAPError):
        return False
    return True


def uses_tls(s: Settings) -> bool:
    return s.start_tls or any(u.lower().startswith("ldaps:") for u in s.servers)


def load_settings(config: Config, options: Mapping[str, Any] | Options | None) -> Settings:
    """saslauthd.conf (``-O`` or /etc/saslauthd.conf) overlaid with the ``[ldap]`` table."""
    path = config.mech_options or saslauthd_conf.DEFAULT_PATH
    where = f"[ldap] in {config.config_file or 'the TOML config'}"
    given = toml_entries(options, where)
    entries: dict[str, Entry] = {}
    if config.mech_options or not given or os.path.exists(path):
        entries.update(saslauthd_conf.read(path))
    else:
        path = ""
    entries.update(given)
    return build_settings(entries, pool_size=config.threads, source=path or where)


# --------------------------------------------------------------------------------------
# Tokens (lak.c's lak_expand_tokens, Debian's 2.1.28)


def escape_filter_value(value: str) -> str:
    """RFC 4515: ``* ( ) \\ NUL`` as ``\\2a \\28 \\29 \\5c \\00``."""
    return escape_filter_chars(value)


_DN_SPECIALS = {c: "\\" + c for c in '"+,;<>\\='}
_DN_SPECIALS["\0"] = "\\00"


def escape_dn_value(value: str) -> str:
    """RFC 4514 attribute value escaping (a leading space or ``#``, a trailing space)."""
    if not value:
        return ""
    chars = [_DN_SPECIALS.get(c, c) for c in value]
    if chars[0] in (" ", "#"):
        chars[0] = "\\" + chars[0]
    if len(chars) > 1 and chars[-1] == " ":
        chars[-1] = "\\ "
    return "".join(chars)


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
    if "%" not in template:  # a fixed search base, say
        return template
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

