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
  name another instance); in TOML, ``instances = ["imap=mail"]``;
- ``krb5_uppercase_realm``: upper-case the realm that is appended.

Ours, in TOML only: ``realm``, the realm for a login and a request that name none (default:
krb5.conf's ``default_realm``), and ``timeout``, the seconds before a login libkrb5 has
not finished is answered as a temporary failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import ConfigError
from ...options import option
from .. import saslauthd_conf

if TYPE_CHECKING:
    from ...config import Config

PREFIX = "krb5_"
FILE_KEYS = ("keytab", "verify_principal", "servername", "conv_krb4_instance",
             "uppercase_realm")
SWITCHES = ("conv_krb4_instance", "uppercase_realm")


@dataclass(frozen=True)
class Options:
    """The ``[kerberos5]`` table: saslauthd.conf's keys (the ``krb5_`` prefix optional;
    None = not given: the -O file's value or the default applies) and ours."""

    ALIASES: ClassVar[Mapping[str, str]] = {PREFIX + k: k for k in FILE_KEYS}

    keytab: str | None = option(None, "krb5_keytab: the keytab to verify with (default: "
                                "KRB5_KTNAME, else /etc/krb5.keytab)")
    verify_principal: str | None = option(None, "krb5_verify_principal: its service "
                                          "(default host)")
    servername: str | None = option(None, "krb5_servername: its host (default: this host)")
    conv_krb4_instance: bool | None = option(None, "krb5_conv_krb4_instance: user.inst "
                                             "means user/inst (default false)")
    uppercase_realm: bool | None = option(None, "krb5_uppercase_realm: upper-case the "
                                          "appended realm (default false)")
    instances: list[str] = option([], 'krb5_<service>_instance as "service=instance" '
                                  'entries, e.g. ["imap=mail"]')
    realm: str = option("", "realm for a login and request that name none (default: "
                        "krb5.conf's default_realm)")
    timeout: float = option(10.0, "seconds before an unfinished login is a temporary "
                            "failure", positive=True, duration=True)


@dataclass(frozen=True)
class Settings:
    """The table and the file's keys, resolved."""

    keytab: str = ""
    verify_principal: str = "host"
    servername: str = ""
    conv_krb4_instance: bool = False
    uppercase_realm: bool = False
    instances: Mapping[str, str] = field(default_factory=dict)
    realm: str = ""
    timeout: float = 10.0


def _file_settings(config: Config) -> dict[str, Any]:
    found: dict[str, Any] = {"instances": {}}
    for name, entry in saslauthd_conf.read_prefixed(config.mech_options, PREFIX).items():
        if name in SWITCHES:
            found[name] = saslauthd_conf.boolean(entry)
        elif name in FILE_KEYS:
            found[name] = entry.value.strip()
        elif name.endswith("_instance") and len(name) > len("_instance"):
            found["instances"][name[:-len("_instance")]] = entry.value.strip()
        else:
            raise saslauthd_conf.unknown(entry, PREFIX, FILE_KEYS)
    return found


def load_settings(config: Config, opts: Options) -> Settings:
    found = _file_settings(config)
    instances = dict(found.pop("instances", {}))
    for pair in opts.instances:
        service, eq, instance = pair.partition("=")
        if not eq or not service or not instance or "/" in instance:
            raise ConfigError(f'[kerberos5] instances: {pair!r} is not "service=instance", '
                              f'e.g. "imap=mail"')
        instances[service] = instance
    given = {k: getattr(opts, k) for k in FILE_KEYS if getattr(opts, k) is not None}
    s = Settings(**{**found, **given}, instances=instances, realm=opts.realm,
                 timeout=opts.timeout)
    if not s.verify_principal or "/" in s.verify_principal:
        raise ConfigError(f"[kerberos5] verify_principal: {s.verify_principal!r} must be a "
                          f"service name such as host")
    return s


class PrincipalRefused(Exception):
    """The login names an instance the service's forced instance does not allow."""


def principal_name(login: str, service: str, realm: str, opts: Settings) -> str:
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
