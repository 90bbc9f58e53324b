"""The same saslauthd.conf, the C saslauthd and ours, the same answers (real testsaslauthd).

Each case is asked of ``saslauthd -a ldap -O FILE`` (Debian's 2.1.28) and of
``saslauthpy -a ldap -O FILE`` through the real ``testsaslauthd``; the two replies must be
identical, and the OK set must be the one expected (so "both say NO" cannot pass by
accident).  Then our daemon alone: a misspelt key stops the start, and failover.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import need, testsaslauthd
from ldap_server import BASE_DN, MAILUSERS_DN, PEOPLE_DN, SERVICE_DN, SERVICE_PW, Slapd, TestCA
from reference import CSaslauthd

SERVICE = f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\n"
INJECTIONS = ["*", "a*", "x)(uid=*", "alice)(|(uid=*", "*)(uid=alice", "alice*"]

# (login, password, realm)
COMMON = [
    ("alice", "alice-secret", None), ("alice", "wrong", None), ("alice", "", None),
    ("bob", "bob-secret", None), ("bob", "alice-secret", None), ("carol", "x", None),
    ("dave", "dave-secret", None), ("twin", "twin-secret", None), ("nobody", "x", None),
    ("alice", "alice-secret", "example.org"), ("alice@example.org", "alice-secret", None),
    *[(login, "alice-secret", None) for login in INJECTIONS],
]
REALMS = [
    ("alice", "alice-secret", None), ("alice", "alice-secret", "example.org"),
    ("alice", "alice-secret", "example.net"), ("alice@example.org", "alice-secret", None),
    ("alice@example.org", "alice-secret", "example.org"),
    ("alice@example.net", "alice-secret", None),
    ("alice", "wrong", "example.org"), ("*", "alice-secret", "example.org"),
    ("alice", "alice-secret", "*"),
]
PLAIN_OK = {("alice", "alice-secret", None), ("bob", "bob-secret", None),
            ("dave", "dave-secret", None), ("alice", "alice-secret", "example.org")}


# Where the C saslauthd is known to be wrong, and ours right: with fastbind it checks the
# group with the *user's* bind (cyrus-sasl#427), and our slapd lets users read no group.
C_WRONG = {
    "fastbind+groupfilter": {("alice", "alice-secret", None),
                             ("alice", "alice-secret", "example.org"),
                             ("alice@example.org", "alice-secret", None)},
}


def configs(slapd: Slapd, ca: TestCA) -> dict[str, tuple[str, list[str], list, set]]:
    """name -> (saslauthd.conf text, extra daemon flags, cases, expected OK cases)."""
    base = f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n"
    fast = f"ldap_auth_method: fastbind\nldap_filter: uid=%U,{PEOPLE_DN}\n"
    custom = SERVICE + "ldap_auth_method: custom\n"
    tls = f"ldap_tls_cacert_file: {ca.ca_cert}\n"
    group_ok = {("alice", "alice-secret", None), ("dave", "dave-secret", None),
                ("alice", "alice-secret", "example.org")}
    # %U drops the domain; the DN uid=twin,ou=people,... is unique
    fast_ok = PLAIN_OK | {("alice@example.org", "alice-secret", None),
                          ("twin", "twin-secret", None)}
    return {
        "bind": (base, [], COMMON, PLAIN_OK),
        "custom": (base + custom, [], COMMON, PLAIN_OK),
        "fastbind": (base + fast, [], COMMON, fast_ok),
        "bind+group": (base + SERVICE + f"ldap_group_dn: {MAILUSERS_DN}\n", [], COMMON, group_ok),
        "custom+group": (base + custom + f"ldap_group_dn: {MAILUSERS_DN}\n", [], COMMON,
                         group_ok),
        "fastbind+groupfilter": (
            base + fast + SERVICE + "ldap_group_match_method: filter\n"
            "ldap_group_filter: (&(cn=staff)(member=%D))\n", [], COMMON,
            {("alice", "alice-secret", None), ("alice", "alice-secret", "example.org"),
             ("alice@example.org", "alice-secret", None)}),
        "realm": (base + "ldap_filter: (mail=%U@%r)\nldap_default_realm: example.org\n", [],
                  REALMS, {("alice", "alice-secret", None),
                           ("alice", "alice-secret", "example.org"),
                           ("alice@example.org", "alice-secret", None),
                           ("alice@example.org", "alice-secret", "example.org"),
                           ("alice@example.net", "alice-secret", None)}),
        "domain-token": (base + "ldap_filter: (mail=%U@%d)\n", [], REALMS,
                         {("alice@example.org", "alice-secret", None),
                          ("alice@example.org", "alice-secret", "example.org")}),
        "-r": (base + "ldap_filter: (mail=%u)\n", ["-r"], REALMS,
               {("alice", "alice-secret", "example.org"),
                ("alice@example.org", "alice-secret", None)}),
        "starttls": (base + tls + "ldap_start_tls: yes\n", [], COMMON[:6], {COMMON[0], COMMON[3]}),
        "ldaps+custom": (f"ldap_servers: {slapd.ldaps_uri}\nldap_search_base: {BASE_DN}\n"
                         + tls + custom, [], COMMON[:6], {COMMON[0], COMMON[3]}),
    }


def answer(mux: Path, case: tuple) -> str:
    login, password, realm = case
    res = testsaslauthd(mux, login, password, realm=realm, service="imap")
    return res.stdout.strip()


NAMES = ["bind", "custom", "fastbind", "bind+group", "custom+group", "fastbind+groupfilter",
         "realm", "domain-token", "-r", "starttls", "ldaps+custom"]


def compare(name: str, spec: tuple, tmp_path: Path, daemon_factory) -> None:
    need("testsaslauthd")
    text, flags, cases, expected_ok = spec
    conf = tmp_path / "saslauthd.conf"
    conf.write_text(text)
    ours = daemon_factory(args=["-a", "ldap", "-O", str(conf), *flags])
    with CSaslauthd(tmp_path, "ldap", workers=1, args=("-O", str(conf), *flags)) as ref:
        theirs = {case: answer(ref.mux, case) for case in cases}
    mine = {case: answer(ours.mux, case) for case in cases}
    differ = {case: (theirs[case], mine[case]) for case in cases if theirs[case] != mine[case]}
    known = C_WRONG.get(name, set())
    assert set(differ) == known, f"C saslauthd vs ours: {differ}"
    assert all(theirs[c].startswith("0: NO") and mine[c].startswith("0: OK") for c in known)
    assert {case for case in cases if mine[case].startswith("0: OK")} == expected_ok


@pytest.mark.csaslauthd
@pytest.mark.parametrize("name", NAMES)
def test_same_answers_as_c_saslauthd(name, slapd, ca, tmp_path, daemon_factory):
    compare(name, configs(slapd, ca)[name], tmp_path, daemon_factory)


def sasl_configs(slapd: Slapd, ca: TestCA) -> dict[str, tuple[str, list[str], list, set]]:
    """SASL binds (``ldap_use_sasl``): users bind with the mechanism as login[@realm]."""
    base = f"ldap_search_base: {BASE_DN}\nldap_use_sasl: yes\n"
    digest = f"ldap_servers: {slapd.uri}\n{base}ldap_mech: DIGEST-MD5\n"
    service = f"ldap_id: saslauthd\nldap_password: {SERVICE_PW}\n"
    plain = (f"ldap_servers: {slapd.ldaps_uri}\nldap_tls_cacert_file: {ca.ca_cert}\n"
             f"{base}ldap_mech: PLAIN\n")
    # slapd's SASL (sasl-auxprops slapd) checks both mechanisms against a cleartext
    # userPassword: bob's and dave's
    cleartext = {("bob", "bob-secret", None), ("dave", "dave-secret", None)}
    return {
        "digest-md5": (digest + service, [], COMMON, cleartext),
        "digest-md5 without ldap_id": (digest, [], COMMON, cleartext),
        "plain without ldap_id": (plain, [], COMMON, cleartext),
        "external over ldapi, custom": (
            f"ldap_servers: {slapd.ldapi_uri}\n{base}ldap_mech: EXTERNAL\n"
            "ldap_auth_method: custom\n", [], COMMON, PLAIN_OK),
    }


SASL_NAMES = ["digest-md5", "digest-md5 without ldap_id", "plain without ldap_id",
              "external over ldapi, custom"]


@pytest.mark.csaslauthd
@pytest.mark.parametrize("name", SASL_NAMES)
def test_sasl_binds_same_answers_as_c_saslauthd(name, sasl_slapd, ca, tmp_path,
                                                daemon_factory):
    compare(name, sasl_configs(sasl_slapd, ca)[name], tmp_path, daemon_factory)


@pytest.mark.csaslauthd
def test_external_user_binds_c_accepts_any_password_ours_refuses_to_start(
        sasl_slapd, tmp_path, daemon_factory):
    """EXTERNAL with the default method (bind, which SASL turns into fastbind): the C
    saslauthd "checks" each login with an EXTERNAL bind, which authenticates the
    connection (root over ldapi) and not the user, so any password is OK.  Ours refuses
    the configuration with one line."""
    need("testsaslauthd")
    conf = tmp_path / "saslauthd.conf"
    conf.write_text(f"ldap_servers: {sasl_slapd.ldapi_uri}\nldap_search_base: {BASE_DN}\n"
                    "ldap_use_sasl: yes\nldap_mech: EXTERNAL\n")
    with CSaslauthd(tmp_path, "ldap", workers=1, args=("-O", str(conf))) as ref:
        assert answer(ref.mux, ("alice", "wrong", None)).startswith("0: OK")
        assert answer(ref.mux, ("nobody", "x", None)).startswith("0: OK")
    d = daemon_factory(args=["-a", "ldap", "-O", str(conf)], wait=False)
    assert d.proc.wait(20) != 0
    assert "cannot check a password" in d.stderr()


@pytest.mark.csaslauthd
def test_custom_accepts_schemes_saslauthd_cannot(slapd, tmp_path, daemon_factory):
    """{SSHA512} and {ARGON2} via custom: NO from the C saslauthd (#794), OK from ours."""
    conf = tmp_path / "saslauthd.conf"
    conf.write_text(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{SERVICE}"
                    "ldap_auth_method: custom\n")
    ours = daemon_factory(args=["-a", "ldap", "-O", str(conf)])
    for login in ("frank", "erin"):
        assert answer(ours.mux, (login, f"{login}-secret", None)).startswith("0: OK")
        assert answer(ours.mux, (login, "wrong", None)).startswith("0: NO")


def test_misspelt_key_stops_the_start_naming_it(tmp_path, daemon_factory):
    conf = tmp_path / "saslauthd.conf"
    conf.write_text("ldap_servers: ldap://127.0.0.1:9/\nldap_serch_base: dc=example,dc=org\n")
    d = daemon_factory(args=["-a", "ldap", "-O", str(conf)], wait=False)
    assert d.proc.wait(20) != 0
    errors = [line for line in d.stderr().splitlines() if "ldap_serch_base" in line]
    assert errors and "unknown key" in errors[0] and "line 2" in errors[0]
    assert "ldap_search_base" in errors[0]  # the suggestion


@pytest.mark.csaslauthd
def test_failover_through_the_daemon(tmp_path, daemon_factory):
    one = Slapd(tmp_path / "one").start()
    two = Slapd(tmp_path / "two").start()
    try:
        conf = tmp_path / "saslauthd.conf"
        conf.write_text(f"ldap_servers: {one.uri} {two.uri}\nldap_search_base: {BASE_DN}\n"
                        f"ldap_timeout: 2\n{SERVICE}")
        d = daemon_factory(args=["-a", "ldap", "-O", str(conf)])

        def ask(password: str = "alice-secret") -> str:
            return answer(d.mux, ("alice", password, None))

        assert ask().startswith("0: OK")
        one.stop()
        for _ in range(5):
            assert ask().startswith("0: OK")
        assert ask("wrong").startswith("0: NO")
        two.stop()
        started = time.monotonic()
        assert ask().startswith("0: NO")
        assert time.monotonic() - started < 2 + 1
        last = d.audit()[-1]
        assert last["login"] == "alice" and last["result"] == "tempfail"
        assert "no LDAP server answers" in last["reason"]
        two.start()
        assert ask().startswith("0: OK")
    finally:
        one.stop()
        two.stop()
