"""The ``[ldap]`` TOML table: saslauthd.conf's keys, typed, read by the one loader.

The ``ldap_`` prefix is optional and saslauthd's alias keys are accepted; a key given
here becomes a saslauthd.conf entry that overrides the ``-O`` file's (``settings``
checks both the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ...errors import ConfigError
from ...options import load, option
from ..saslauthd_conf import Entry

# saslauthd's other spellings of some keys -> the key lak.c reads
ALIASES = {
    "ldap_bind_pw": "ldap_password",
    "ldap_default_domain": "ldap_default_realm",
    "ldap_sasl_authc_id": "ldap_id",
    "ldap_sasl_authz_id": "ldap_authz_id",
    "ldap_sasl_realm": "ldap_realm",
    "ldap_sasl_mech": "ldap_mech",
}


def _key(help: str = "", **kw: Any) -> Any:
    return option(None, help, **kw)


@dataclass(frozen=True)
class Options:
    """The ``[ldap]`` TOML table: saslauthd.conf's keys (the ``ldap_`` prefix optional, its
    aliases too), typed; None = not given.  Values are checked further with the file's."""

    ALIASES: ClassVar[Mapping[str, str]] = {}  # set below

    servers: list[str] | None = _key("LDAP URIs, tried in order")
    bind_dn: str | None = _key("DN of the service bind (empty: anonymous)")
    password: str | None = _key("password of the service bind (alias: bind_pw)", repr=False)
    version: int | None = _key("LDAP protocol version (2 or 3)")
    search_base: str | None = _key("base of the user search")
    filter: str | None = _key("user search filter, or the DN template with fastbind")
    password_attr: str | None = _key("attribute holding the hash (custom)")
    auth_method: str | None = _key("bind, custom or fastbind")
    group_dn: str | None = _key("group the user must be a member of")
    group_attr: str | None = _key("member attribute of group_dn")
    group_filter: str | None = _key("group search filter")
    group_search_base: str | None = _key("base of the group search")
    group_scope: str | None = _key("scope of the group search")
    group_match_method: str | None = _key("attr or filter")
    default_realm: str | None = _key("realm for requests without one (alias: default_domain)")
    timeout: int | None = _key("seconds to connect and per operation")
    time_limit: int | None = _key("server-side search time limit")
    size_limit: int | None = _key("search size limit")
    deref: str | None = _key("alias dereferencing: never, search, find, always")
    referrals: bool | None = _key("follow referrals")
    restart: bool | None = _key("restart interrupted operations")
    scope: str | None = _key("scope of the user search: sub, one, base")
    use_sasl: bool | None = _key("service and fastbind binds with SASL")
    id: str | None = _key("SASL authentication id (alias: sasl_authc_id)")
    authz_id: str | None = _key("SASL authorization id (alias: sasl_authz_id)")
    realm: str | None = _key("SASL realm (alias: sasl_realm)")
    mech: str | None = _key("SASL mechanism (alias: sasl_mech)")
    sasl_secprops: str | None = _key("SASL security properties")
    start_tls: bool | None = _key("StartTLS on ldap:// connections")
    tls_check_peer: bool | None = _key("verify the server's certificate")
    tls_cacert_file: str | None = _key("CA certificates file")
    tls_cacert_dir: str | None = _key("CA certificates directory")
    tls_ciphers: str | None = _key("libldap's cipher list (GnuTLS priority string on Debian)")
    tls_cert: str | None = _key("client certificate")
    tls_key: str | None = _key("client certificate's key")
    debug: int | None = _key("libldap debug level")
    cache_ttl: int | None = _key("obsolete in saslauthd: ignored")
    cache_mem: int | None = _key("obsolete in saslauthd: ignored")
    pool_size: int | None = _key("connections per pool (default: -n)")


def _toml_aliases() -> dict[str, str]:
    """Every spelling the ``[ldap]`` table accepts -> its ``Options`` field."""
    fields = [f for f in Options.__dataclass_fields__ if f != "pool_size"]
    out = {f"ldap_{f}": f for f in fields}
    for alias, canon in ALIASES.items():
        out[alias] = out[alias.removeprefix("ldap_")] = canon.removeprefix("ldap_")
    return out


Options.ALIASES = _toml_aliases()


def toml_entries(options: Mapping[str, Any] | Options | None, where: str) -> dict[str, Entry]:
    """The ``[ldap]`` table as saslauthd.conf entries, for the keys it gives."""
    opts = load(Options, options, f"{where} ")
    out: dict[str, Entry] = {}
    for name, value in vars(opts).items():
        if value is None:
            continue
        key = name if name == "pool_size" else f"ldap_{name}"
        at = f"{where} {name}"
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, list):
            text = " ".join(value)
        else:
            text = str(value)
        if not text.strip():
            raise ConfigError(f"{at}: empty value; give one or delete the key")
        out[key] = Entry(key, text, at)
    return out


