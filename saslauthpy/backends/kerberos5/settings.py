"""The kerberos5 backend's settings and its principal names.

Keys are saslauthd's (``auth_krb5.c``), read from the saslauthd.conf named by ``-O`` (else
``/etc/saslauthd.conf`` if it exists) and from the ``[kerberos5]`` TOML table (same names,
``krb5_`` optional; a TOML value wins):

- ``krb5_keytab``: the keytab to verify with (default: ``KRB5_KTNAME``, else
  ``/etc/krb5.keytab``);
- ``krb5_verify_principal`` (``host``) and ``krb5_servername`` (this host): the service
  principal ``verify_principal/servername`` whose key must decrypt the KDC's ticket;
- ``krb5_conv_krb4_instance``: ``user.instance`` logins mean ``user/instance``;
- ``krb5_<service>_instance``: logins for that service get ``/instance`` (a user may not
  name another instance); in TOML, ``instances = { imap = "mail" }``;
- ``krb5_uppercase_realm``: upper-case the realm that is appended;
- ``timeout`` (ours, TOML only): seconds before a login that libkrb5 has not finished is
  answered as a temporary failure (default 10);
- ``realm`` (ours, TOML only): the realm for a login that names none, in a request that
  carries none (default: krb5.conf's ``default_realm``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...config import fill_options
from ...errors import ConfigError
from .. import saslauthd_conf

if TYPE_CHECKING:
    from ...config import Config

PREFIX = "krb5_"
FILE_KEYS = ("keytab", "verify_principal", "servername", "conv_krb4_instance",
             "uppercase_realm")
SWITCHES = ("conv_krb4_instance", "uppercase_realm")


@dataclass
class Kerberos5Options:
    keytab: str = ""  # krb5_keytab; empty: KRB5_KTNAME or /etc/krb5.keytab
    verify_principal: str = "host"  # krb5_verify_principal
    servername: str = ""  # krb5_servername; empty: this host's name
    conv_krb4_instance: bool = False  # krb5_conv_krb4_instance: user.inst -> user/inst
    uppercase_realm: bool = False  # krb5_uppercase_realm
    realm: str = ""  # for requests without a realm; empty: krb5.conf's default_realm
    instances: dict[str, str] = field(default_factory=dict)  # krb5_<service>_instance
    timeout: float = 10.0  # seconds a login may take before it is answered as a tempfail


def _file_settings(config: Config) -> dict[str, Any]:
    path = config.mech_options or saslauthd_conf.DEFAULT_PATH
    if not config.mech_options and not os.path.exists(path):
        return {}
    found: dict[str, Any] = {"instances": {}}
    for key, entry in saslauthd_conf.read(path).items():
        if not key.startswith(PREFIX):
            continue  # other mechanisms' keys (ldap_*, httpform_*) share the file
        name = key[len(PREFIX):]
        if name in SWITCHES:
            found[name] = saslauthd_conf.boolean(entry)
        elif name in FILE_KEYS:
            found[name] = entry.value.strip()
        elif name.endswith("_instance") and len(name) > len("_instance"):
            found["instances"][name[:-len("_instance")]] = entry.value.strip()
        else:
            hint = difflib.get_close_matches(name, FILE_KEYS, 1)
            better = f"; did you mean {PREFIX}{hint[0]}?" if hint else ""
            raise ConfigError(f"{entry.where}: unknown key {key}{better}")
    return found


def load_options(config: Config, options: Mapping[str, Any]) -> Kerberos5Options:
    opts = Kerberos5Options()
    found = _file_settings(config)
    table = {k.removeprefix(PREFIX): v for k, v in options.items()}
    extra = table.pop("instances", {})
    if not isinstance(extra, dict):
        extra = {None: None}  # refused below
    instances = {**found.pop("instances", {}), **extra}
    fill_options(opts, {**found, **table}, "[kerberos5] ")
    if not all(isinstance(k, str) and isinstance(v, str) and v and "/" not in v
               for k, v in instances.items()):
        raise ConfigError('[kerberos5] instances: a table of service = "instance" strings, '
                          'e.g. instances = { imap = "mail" }')
    opts.instances = instances
    if opts.timeout <= 0:
        raise ConfigError("[kerberos5] timeout: must be positive seconds")
    if not opts.verify_principal or "/" in opts.verify_principal:
        raise ConfigError(f"[kerberos5] verify_principal: {opts.verify_principal!r} must be "
                          f"a service name such as host")
    return opts


class PrincipalRefused(Exception):
    """The login names an instance the service's forced instance does not allow."""


def principal_name(login: str, service: str, realm: str, opts: Kerberos5Options) -> str:
    """saslauthd's ``form_principal_name``: ``login[/instance][@REALM]``.

    One difference: a login that already ends in ``@realm`` (``-r`` joins them) does not get
    the realm a second time (cyrus-sasl#832, where saslauthd makes ``alice@R@R``)."""
    name = login
    if not realm and "@" not in login:
        realm = opts.realm
    if realm and name.endswith("@" + realm):
        name = name[:-len(realm) - 1]
    if opts.conv_krb4_instance:
        name = name.replace(".", "/", 1)
    forced = opts.instances.get(service)
    if forced and "/" in name:
        if name.split("/", 1)[1] != forced:
            raise PrincipalRefused(f"service {service} allows only instance {forced}")
        forced = None
    if forced:
        name += "/" + forced
    if realm:
        name += "@" + (realm.upper() if opts.uppercase_realm else realm)
    return name
