"""Canonical identities: what each backend says a login reaches, how a chain combines them,
and the control socket's throttle commands that read and clear penalties by them."""

from __future__ import annotations

import json
import socket

import pytest
from harness import need_module

from saslauthpy import control
from saslauthpy.authenticator import Authenticator
from saslauthpy.backends import getpwent, pam, sasldb, shadow, sql
from saslauthpy.backends.base import Backend, Result, fold
from saslauthpy.config import Config
from saslauthpy.protocol import Request
from saslauthpy.throttle import Throttle


def ldap_parts():
    """The LDAP backend's identity rule and settings (the backend needs python-ldap)."""
    need_module("ldap", "pip install '.[ldap]' (python-ldap, built on libldap)")
    from saslauthpy.backends.ldap.identity import identity
    from saslauthpy.backends.ldap.settings import Settings

    return identity, Settings


def test_fold_is_ldaps_case_ignore_match():
    assert fold("  Alice\tSmith ") == "alice smith"
    assert fold("ＡＬＩＣＥ") == "alice"  # full-width forms (NFKC)
    assert fold("Straße") == fold("STRASSE")
    assert fold("root") != fold("r00t")


def test_system_backends_ignore_the_realm_only():
    for cls in (shadow.Backend, getpwent.Backend):
        assert cls(Config(), {}).identity("root", "x1") == ("root", "")
        assert cls(Config(), {}).identity("ROOT", "") == ("ROOT", "")
    assert pam.Backend(Config(), {}).identity(" root", "x") == (" root", "")


def test_sasldb_is_exact_with_the_hosts_realm():
    b = sasldb.Backend(Config(), {"path": "/nonexistent"})
    assert b.identity("Bob", "") == ("Bob", socket.gethostname())
    assert b.identity("Bob", "x.example") == ("Bob", "x.example")


def test_sql_identities(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.db'}"
    table = sql.Backend(Config(), {"url": url})
    # the built-in table compares exactly; every spelling of one address is one row's
    assert table.identity("alice", "example.com") == ("alice", "example.com")
    assert table.identity("alice@example.com", "") == ("alice", "example.com")
    assert table.identity("alice@example.com", "example.com") == ("alice", "example.com")
    assert table.identity("Alice", "") == ("Alice", "")
    by_address = sql.Backend(Config(), {"url": url, "query": "SELECT 'x' WHERE :address <> ''"})
    assert by_address.identity("Alice", "Example.com") == ("alice@example.com", "")
    assert by_address.identity(" ALICE@example.COM", "other") == ("alice@example.com", "")
    by_login = sql.Backend(Config(), {"url": url, "query": "SELECT 'x' WHERE :login <> ''",
                                      "fold_case": False})
    assert by_login.identity("Alice", "x") == ("Alice", "")
    both = sql.Backend(Config(), {"url": url,
                                  "query": "SELECT 'x' WHERE :login <> :realm"})
    assert both.identity("Alice", "X") == ("alice", "x")


@pytest.mark.parametrize("filt, base, login, realm, expected", [
    ("(uid=%u)", "dc=org", " ALICE ", "x1", ("alice", "")),
    ("(uid=%u)", "dc=org", "alice@Example.org", "x1", ("alice@example.org", "")),
    ("(uid=%U)", "dc=org", "alice@x", "y", ("alice", "")),
    ("(&(uid=%U)(dom=%d))", "dc=org", "Alice@X.org", "", ("alice@x.org", "")),
    ("(uid=%U)", "dc=%r", "alice", "EXAMPLE", ("alice", "example")),
    ("(mail=%U@%r)", "", "alice", "", ("alice", "default.example")),
    ("(uid=%U)", "dc=%2,dc=%1", "alice", "Example.org", ("alice", "example.org")),
    ("(uid=%U)", "dc=%2,dc=%1", "alice@a.org", "b.org", ("alice@a.org", "")),
])
def test_ldap_identity_follows_the_filters_tokens(filt, base, login, realm, expected):
    ldap_identity, Settings = ldap_parts()
    s = Settings(filter=filt, search_base=base, default_realm="default.example")
    assert ldap_identity(s, login, realm) == expected


def test_ldap_sasl_fastbind_uses_login_at_realm():
    ldap_identity, Settings = ldap_parts()
    s = Settings(auth_method="fastbind", use_sasl=True)
    assert ldap_identity(s, "Alice", "EX") == ("alice", "ex")
    assert ldap_identity(s, "alice@ex", "other") == ("alice@ex", "")


class Named(Backend):
    def __init__(self, name: str, realm: bool, fold_case: bool):
        super().__init__(Config(), {})
        self.name, self.uses_realm, self.fold_case = name, realm, fold_case

    def identity(self, login, realm):
        login, realm = super().identity(login, realm)
        return (fold(login), fold(realm)) if self.fold_case else (login, realm)


def make(*backends: Backend, realm_join: bool = False) -> Authenticator:
    config = Config(realm_join=realm_join)
    throttle = Throttle(options={"base_delay": 1.0, "max_delay": 8.0})
    return Authenticator(config, list(backends), None, throttle)


def ask(auth: Authenticator, **request) -> dict:
    return json.loads(control.reply(json.dumps(request).encode(), 0, None, dict, auth))


def test_a_chain_checks_every_identity_once():
    auth = make(Named("sql", True, True), Named("pam", False, False), Named("x", False, False))
    assert auth.identities("Root", "X1") == [("root", "x1"), ("Root", "")]
    joined = make(Named("shadow", False, False), realm_join=True)
    norm = joined.normalise(Request("root", b"", "", "x1"))
    assert joined.identities(norm.login, norm.realm) == [("root@x1", "")]


def test_throttle_show_and_clear_on_the_control_socket():
    auth = make(Named("ldap", False, True))
    throttle = auth.throttle
    for i, spelling in enumerate(["root", "ROOT", " root"]):
        req = Request(spelling, b"x", "smtp", f"r{i}", "192.0.2.7;1")
        throttle.record(req, Result.FAIL, throttle.fingerprint(b"guess%d" % i),
                        auth.identities(req.login, req.realm))
    assert ask(auth, cmd="throttle-show", login="Root ") == {
        "ok": True, "keys": [{"key": "user:root", "level": 3, "delay": 4.0}]}
    assert ask(auth, cmd="throttle-show", address="192.0.2.7;9")["keys"] == [
        {"key": "address:192.0.2.7", "level": 3, "delay": 4.0}]
    assert ask(auth, cmd="throttle-show")["penalised"] == 2  # the table keeps no names
    assert ask(auth, cmd="throttle-show", login="nobody")["keys"] == []
    assert ask(auth, cmd="throttle-clear", login="ROOT") == {"ok": True, "cleared": 1}
    assert ask(auth, cmd="throttle-clear")["ok"] is False  # name one
    assert ask(auth, cmd="throttle-clear", address="192.0.2.7;1") == {"ok": True, "cleared": 1}
    assert ask(auth, cmd="throttle-show")["penalised"] == 0
    assert ask(auth, cmd="throttle-show", realm=3)["ok"] is False
    assert ask(None, cmd="throttle-show")["note"] == "the throttle is off"


def test_same_wrong_password_counts_once_whatever_the_service_or_spelling():
    auth = make(Named("ldap", False, True))
    throttle = auth.throttle
    for service, spelling in [("smtp", "root"), ("imap", "ROOT"), ("pop", "root ")]:
        req = Request(spelling, b"x", service, "")
        throttle.record(req, Result.FAIL, throttle.fingerprint(b"stale"),
                        auth.identities(req.login, req.realm))
    assert ask(auth, cmd="throttle-show", login="root")["keys"][0]["level"] == 1
