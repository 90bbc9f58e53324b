"""-a ldap with the default (uid=%u) filter, through the real testsaslauthd and slapd:
guesses spread over realm, case and blank variants of one login (all of which the
directory takes for the same entry) reach the penalty of as many plain guesses."""

from __future__ import annotations

import pytest
from harness import need, testsaslauthd
from ldap_server import BASE_DN, SERVICE_DN, SERVICE_PW

VARIANTS = [("alice", "x1.example"), ("ALICE", None), (" alice", None), ("alice ", "x2"),
            ("Alice", "x3.example"), (" aLiCe  ", "example.org")]


@pytest.mark.csaslauthd
def test_variants_of_a_login_count_as_one_account(slapd, tmp_path, daemon_factory):
    need("testsaslauthd")
    conf = tmp_path / "saslauthd.conf"
    conf.write_text(f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n"
                    f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\n")
    d = daemon_factory(args=["-a", "ldap", "-O", str(conf)], config={
        "throttle": {"base_delay": 0.01, "max_delay": 30.0, "decay": 600.0}})

    def ask(login: str, password: str, realm: str | None = None) -> str:
        return testsaslauthd(d.mux, login, password, realm=realm, service="imap").stdout

    for i, (login, realm) in enumerate(VARIANTS):
        assert "NO" in ask(login, f"wrong-{i}", realm)
        assert "NO" in ask("bob", f"wrong-{i}")

    def level(login: str, realm: str | None = None) -> int:
        keys = d.control(cmd="throttle-show", login=login, realm=realm)["keys"]
        return max((k["level"] for k in keys), default=0)

    assert level("bob") == len(VARIANTS)
    assert level("alice") == len(VARIANTS)
    assert level("  ALICE", "anywhere") == len(VARIANTS)  # shown however it is spelt
    # The directory really takes a variant for alice: her password is good through it.
    assert "OK" in ask(" ALICE ", "alice-secret", "x9.example")
    assert level("alice") == 0
