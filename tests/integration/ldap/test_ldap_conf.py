"""saslauthd.conf parsing, the ldap keys' validation and lak.c's token expansion (no server)."""

from __future__ import annotations

import ldap
import pytest

from saslauthpy.backends import saslauthd_conf
from saslauthpy.backends.ldap.settings import (
    Settings,
    build_settings,
    escape_dn_value,
    escape_filter_value,
    expand,
    load_settings,
    toml_entries,
)
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError


def settings(text: str) -> Settings:
    return build_settings(saslauthd_conf.parse(text, "test.conf"), 5, "test.conf")


# -- the file format


def test_parse_comments_blank_lines_case_and_last_value_wins():
    entries = saslauthd_conf.parse(
        "# comment\n\n   # indented comment\nLDAP_Servers:   ldap://a/ ldap://b/\n"
        "ldap_filter: (uid=%u)\r\nldap_filter: (mail=%u)\n")
    assert entries["ldap_servers"].value == "ldap://a/ ldap://b/"
    assert entries["ldap_filter"].value == "(mail=%u)"
    assert entries["ldap_filter"].where == "saslauthd.conf line 6"


def test_parse_keeps_value_verbatim_after_leading_blanks():
    entries = saslauthd_conf.parse("ldap_password:  p#ss word \n")
    assert entries["ldap_password"].value == "p#ss word "


@pytest.mark.parametrize("line, words", [
    ("ldap_servers:\n", "has no value"),
    ("ldap_servers ldap://x/\n", "expected 'key: value'"),
    ("ldap_servers : ldap://x/\n", "expected 'key: value'"),
])
def test_parse_errors_name_the_line(line, words):
    with pytest.raises(ConfigError, match="line 1") as err:
        saslauthd_conf.parse(line)
    assert words in str(err.value)


@pytest.mark.parametrize("word, value", [
    *[(w, True) for w in ("1", "y", "yes", "on", "t", "true", "Yes", "TRUE")],
    *[(w, False) for w in ("0", "n", "no", "off", "f", "false", "No")],
])
def test_booleans(word, value):
    assert saslauthd_conf.boolean(saslauthd_conf.Entry("k", word, "x")) is value


def test_boolean_rejects_other_words():
    with pytest.raises(ConfigError, match="ldap_start_tls must be yes or no"):
        settings("ldap_start_tls: maybe\n")


def test_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Config(mech_options=str(tmp_path / "nope.conf")), {})


# -- keys, aliases and defaults


def test_defaults_are_lak_c_defaults():
    s = settings("")
    assert s.servers == ["ldap://localhost/"]
    assert (s.filter, s.password_attr, s.auth_method) == ("(uid=%u)", "userPassword", "bind")
    assert (s.timeout, s.time_limit, s.size_limit, s.version) == (5, 5, 1, 3)
    assert (s.group_attr, s.group_match_method, s.scope) == ("uniqueMember", "attr",
                                                              ldap.SCOPE_SUBTREE)
    assert s.referrals is False and s.restart is True and s.start_tls is False


def test_aliases_and_every_key_are_accepted(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = settings(
        "ldap_servers: ldap://a:3389/ ldaps://b/\nldap_bind_dn: cn=svc\nldap_bind_pw: pw\n"
        "ldap_version: 3\nldap_search_base: dc=%2,dc=%1\nldap_filter: (mail=%U@%d)\n"
        "ldap_password_attr: secret\nldap_auth_method: custom\nldap_group_dn: cn=g\n"
        "ldap_group_attr: member\nldap_group_search_base: ou=g\nldap_group_scope: one\n"
        "ldap_default_domain: example.org\nldap_timeout: 2\nldap_time_limit: 0\n"
        "ldap_size_limit: 2\nldap_deref: always\nldap_referrals: yes\nldap_restart: no\n"
        "ldap_scope: base\nldap_start_tls: no\nldap_tls_check_peer: yes\n"
        f"ldap_tls_cacert_file: {ca}\nldap_tls_cacert_dir: {tmp_path}\n"
        "ldap_tls_ciphers: NORMAL:-VERS-TLS1.0\nldap_debug: 0\nldap_cache_ttl: 10\n"
        "krb5_keytab: /etc/krb5.keytab\n")
    assert s.servers == ["ldap://a:3389/", "ldaps://b/"]
    assert (s.bind_dn, s.password, s.default_realm) == ("cn=svc", "pw", "example.org")
    assert (s.auth_method, s.group_scope, s.scope, s.deref) == (
        "custom", ldap.SCOPE_ONELEVEL, ldap.SCOPE_BASE, ldap.DEREF_ALWAYS)
    assert s.tls_check_peer is True and s.referrals is True and s.size_limit == 2


def test_sasl_aliases_and_bind_becomes_fastbind():
    s = settings("ldap_use_sasl: yes\nldap_sasl_mech: DIGEST-MD5\nldap_sasl_authc_id: svc\n"
                 "ldap_sasl_realm: EXAMPLE\nldap_sasl_authz_id: u:x\nldap_version: 2\n"
                 "ldap_filter: uid=%u\n")
    assert (s.sasl_mech, s.sasl_id, s.sasl_realm, s.sasl_authz_id) == (
        "DIGEST-MD5", "svc", "EXAMPLE", "u:x")
    assert s.auth_method == "fastbind" and s.version == 3


@pytest.mark.parametrize("text, words", [
    ("ldap_serves: ldap://x/\n", "unknown key 'ldap_serves' (did you mean ldap_servers?)"),
    ("ldap_fliter: (uid=%u)\n", "did you mean ldap_filter?"),
    ("ldap_auth_method: kerberos\n", "ldap_auth_method must be one of bind, custom, fastbind"),
    ("ldap_timeout: 5s\n", "ldap_timeout must be a whole number"),
    ("ldap_timeout: 0\n", "ldap_timeout must be at least 1"),
    ("ldap_version: 4\n", "ldap_version must be at least 2 and at most 3"),
    ("ldap_scope: all\n", "ldap_scope must be one of"),
    ("ldap_deref: sometimes\n", "ldap_deref must be one of"),
    ("ldap_servers: http://x/\n", "is not an ldap://, ldaps:// or ldapi:// URI"),
    ("ldap_filter: (uid=%x)\n", "unknown token %x"),
    ("ldap_filter: (uid=%u)%\n", "lone '%'"),
    ("ldap_filter: (uid=%D)\n", "unknown token %D"),
    ("ldap_tls_cacert_file: /nonexistent/ca.pem\n", "is not a readable file"),
    ("ldap_tls_cert: /etc/hostname\n", "ldap_tls_key is missing"),
    ("ldap_tls_ciphers: NOTACIPHER\n", "selects no cipher"),
    ("ldap_group_filter: (member=%D)\n", "ldap_group_match_method is attr"),
    ("ldap_group_match_method: filter\nldap_group_dn: cn=g\n", "ldap_group_filter is not set"),
    ("ldap_auth_method: fastbind\n", "DN template"),
    ("ldap_use_sasl: yes\n", "ldap_mech is not set"),
    ("ldap_use_sasl: yes\nldap_mech: GSSAPI\n", "not supported"),
    ("ldap_use_sasl: yes\nldap_mech: EXTERNAL\nldap_filter: x\n", "cannot check a password"),
    ("ldap_use_sasl: yes\nldap_mech: PLAIN\nldap_filter: x\nldap_sasl_secprops: minssf=56\n",
     "security layers"),
])
def test_bad_settings_are_one_clear_line_naming_the_key(text, words):
    with pytest.raises(ConfigError) as err:
        settings(text)
    message = str(err.value)
    assert words in message and "\n" not in message
    assert "test.conf" in message


def test_toml_table_overrides_the_file(tmp_path):
    conf = tmp_path / "saslauthd.conf"
    conf.write_text("ldap_servers: ldap://file/\nldap_filter: (uid=%u)\nldap_timeout: 9\n")
    s = load_settings(Config(mech_options=str(conf), threads=3),
                      {"servers": ["ldap://a/", "ldap://b/"], "ldap_timeout": 2,
                       "start_tls": True, "pool_size": 7})
    assert s.servers == ["ldap://a/", "ldap://b/"]
    assert (s.timeout, s.start_tls, s.filter, s.pool_size) == (2, True, "(uid=%u)", 7)


def test_toml_only_without_saslauthd_conf(tmp_path):
    s = load_settings(Config(mech_options="", threads=3), {"servers": "ldap://t/"})
    assert s.servers == ["ldap://t/"] and s.pool_size == 3


def test_toml_unknown_key_and_bad_type():
    with pytest.raises(ConfigError, match="unknown key 'serverz'"):
        build_settings(toml_entries({"serverz": "x"}, "[ldap]"), 1, "t")
    with pytest.raises(ConfigError, match=r"\[ldap\] timeout: expected"):
        toml_entries({"timeout": [1]}, "[ldap]")


# -- tokens, exactly as Debian's saslauthd 2.1.28 expands them


def f(template, login, realm="", service="imap", dn=""):
    return expand(template, login, service, realm, dn, escape_filter_value)


@pytest.mark.parametrize("template, login, realm, expected", [
    ("%%%u", "alice", "", "%alice"),
    ("(uid=%u)", "alice@example.org", "", "(uid=alice@example.org)"),
    ("(uid=%U)", "alice@example.org", "", "(uid=alice)"),
    ("%U|%d", "alice@mail.example.org", "", "alice|mail.example.org"),
    ("%d", "alice", "example.org", ""),  # 2.1.27+: no fallback to the realm
    ("%1.%2.%3", "alice@mail.example.org", "x.y", "org.example.mail"),
    ("%1.%2", "alice", "example.net", "net.example"),  # labels from the realm
    ("[%4]", "alice@example.org", "", "[]"),  # no such label: nothing
    ("%s/%r/%R", "alice", "example.org", "imap/example.org/@example.org"),
    ("[%R]", "alice", "", "[]"),
    ("(uid=%u)", "*", "", "(uid=\\2a)"),
    ("(uid=%u)", "a*", "", "(uid=a\\2a)"),
    ("(uid=%u)", "x)(uid=*", "", "(uid=x\\29\\28uid=\\2a)"),
    ("(uid=%u)", "back\\slash\0", "", "(uid=back\\5cslash\\00)"),
    ("(r=%r)", "a", "*)(x", "(r=\\2a\\29\\28x)"),
])
def test_expand_tokens(template, login, realm, expected):
    assert f(template, login, realm) == expected


def test_expand_dn_token_is_escaped_for_filters():
    assert f("(member=%D)", "a", dn="uid=a*(x),dc=y") == "(member=uid=a\\2a\\28x\\29,dc=y)"


def test_dn_templates_escape_dn_specials():
    dn = expand("uid=%U,ou=people,dc=example,dc=org", "x,ou=admins+cn=y", "", "", "",
                escape_dn_value)
    assert dn == "uid=x\\,ou\\=admins\\+cn\\=y,ou=people,dc=example,dc=org"
    assert expand("uid=%u,dc=x", " #a ", "", "", "", escape_dn_value) == "uid=\\ #a\\ ,dc=x"
