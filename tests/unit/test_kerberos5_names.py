"""kerberos5 without a KDC: principal names as saslauthd forms them, settings, realms."""

from __future__ import annotations

import pytest

from saslauthpy.backends.kerberos5 import Backend
from saslauthpy.backends.kerberos5.libkrb5 import realm_of
from saslauthpy.backends.kerberos5.settings import (
    PrincipalRefused,
    Settings,
    principal_name,
)
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError


def name(login: str, service: str = "imap", realm: str = "", **options) -> str:
    return principal_name(login, service, realm, Settings(**options))


def test_saslauthd_principal_names():
    assert name("alice") == "alice"
    assert name("alice", realm="EXAMPLE.ORG") == "alice@EXAMPLE.ORG"
    assert name("alice", realm="example.org", uppercase_realm=True) == "alice@EXAMPLE.ORG"
    assert name("alice.admin", conv_krb4_instance=True) == "alice/admin"
    assert name("a.b.c", conv_krb4_instance=True) == "a/b.c"
    assert name("alice", instances={"imap": "mail"}) == "alice/mail"
    assert name("alice", service="smtp", instances={"imap": "mail"}) == "alice"
    assert name("alice/mail", instances={"imap": "mail"}, realm="R") == "alice/mail@R"
    with pytest.raises(PrincipalRefused, match="allows only instance mail"):
        name("alice/admin", instances={"imap": "mail"})


def test_realms_joined_by_dash_r_are_not_doubled():
    assert name("alice@EXAMPLE.ORG", realm="EXAMPLE.ORG") == "alice@EXAMPLE.ORG"
    assert name("alice@OTHER", realm="EXAMPLE.ORG") == "alice@OTHER@EXAMPLE.ORG"  # as saslauthd


def test_the_realm_option_is_for_logins_without_one():
    opts = Settings(realm="EXAMPLE.ORG")
    assert principal_name("alice", "imap", "", opts) == "alice@EXAMPLE.ORG"
    assert principal_name("alice", "imap", "OTHER", opts) == "alice@OTHER"
    assert principal_name("alice@OTHER", "imap", "", opts) == "alice@OTHER"


def test_realm_of_an_unparsed_name():
    assert realm_of("alice@EXAMPLE.ORG") == "EXAMPLE.ORG"
    assert realm_of("host/vm@") == ""
    assert realm_of("a\\@b@R") == "R"
    assert realm_of("a\\@b") == ""


def test_settings_from_toml_and_saslauthd_conf(tmp_path):
    conf = tmp_path / "saslauthd.conf"
    conf.write_text("ldap_servers: ldap://x/\nhttpform_uri: /x\nkrb5_keytab: /etc/x.keytab\n"
                    "krb5_verify_principal: imap\nkrb5_smtp_instance: relay\n"
                    "krb5_uppercase_realm: yes\n")
    b = Backend(Config(mech_options=str(conf)), {"krb5_servername": "mail.example.org",
                                                  "instances": ["imap=mail"]})
    o = b.s
    assert (o.keytab, o.verify_principal, o.servername, o.uppercase_realm) == (
        "/etc/x.keytab", "imap", "mail.example.org", True)
    assert o.instances == {"smtp": "relay", "imap": "mail"}
    assert b.servername == b"mail.example.org" and b.service == b"imap"


@pytest.mark.parametrize("options,text", [
    ({"keytabb": "/x"}, "unknown key 'keytabb'"),
    ({"instances": "mail"}, "instances: 'mail' is not \"service=instance\""),
    ({"instances": ["imap=a/b"]}, "is not \"service=instance\""),
    ({"instances": {"imap": "mail"}}, "expected a list"),
    ({"verify_principal": "host/x"}, "must be a service name"),
    ({"timeout": 0}, "timeout: must be positive"),
    ({"uppercase_realm": "yes"}, "expected true or false"),
])
def test_bad_settings_are_refused(options, text):
    with pytest.raises(ConfigError, match=text):
        Backend(Config(), options)


def test_bad_saslauthd_conf_lines(tmp_path):
    conf = tmp_path / "saslauthd.conf"
    conf.write_text("krb5_uppercase_realm: maybe\n")
    with pytest.raises(ConfigError, match="line 1: krb5_uppercase_realm must be yes or no"):
        Backend(Config(mech_options=str(conf)), {})
