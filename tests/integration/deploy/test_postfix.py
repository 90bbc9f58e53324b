"""Postfix SMTP AUTH end to end: the roaming-user case.

A private Postfix (Debian's postfix + libsasl2-modules, Cyrus SASL configured through
``sasl/smtpd.conf`` with ``pwcheck_method: saslauthd``) asks our daemon over its socket.
Clients log in with swaks (AUTH PLAIN and AUTH LOGIN); loopback is not in mynetworks,
so relaying to an outside domain is allowed only after a successful AUTH.
"""

from __future__ import annotations

import smtplib
import subprocess

import pytest
from harness import need
from postfix_server import PostfixServer, alive, audit_for, reachable_daemon

OUTSIDE = "someone@outside.example"


@pytest.fixture(scope="module")
def daemon(base):
    d = reachable_daemon(base / "sa")
    d.admin("user", "add", "alice", password="Wonder land 1")
    d.admin("user", "add", "bob", "--realm", "example.com", password="b0b's pass")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def postfix(base, daemon):
    need("postfix")
    pf = PostfixServer(base / "pf", daemon.mux)
    pf.start()
    yield pf
    pf.stop()


def swaks(port: int, *args: str, to: str = OUTSIDE) -> subprocess.CompletedProcess:
    exe = need("swaks")
    cmd = [exe, "--server", "127.0.0.1", "--port", str(port), "--helo", "roaming.example",
           "--from", "alice@saslauthpy.test", "--to", to, "--timeout", "20", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def auth(port: int, mech: str, user: str, password: str, *extra: str):
    return swaks(port, "--auth", mech, "--auth-user", user, "--auth-password", password, *extra)


@pytest.mark.postfix
def test_postfix_offers_plain_and_login(postfix):
    res = swaks(postfix.port, "--quit-after", "EHLO")
    assert "250-AUTH PLAIN LOGIN" in res.stdout


@pytest.mark.postfix
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_good_password_authenticates_and_relays(postfix, daemon, mech):
    res = auth(postfix.port, mech, "alice", "Wonder land 1")
    assert res.returncode == 0, res.stdout + postfix.log()
    assert "235 2.7.0 Authentication successful" in res.stdout
    assert "250 2.0.0 Ok: queued as" in res.stdout  # accepted for the outside domain
    assert f"sasl_method={mech}, sasl_username=alice" in postfix.log()
    rec = audit_for(daemon, "alice")[-1]
    assert (rec["service"], rec["realm"], rec["result"]) == ("smtp", "", "ok")


@pytest.mark.postfix
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_wrong_password_is_refused(postfix, daemon, mech):
    res = auth(postfix.port, mech, "alice", "wonder land 1")
    assert "535 5.7.8 Error: authentication failed" in res.stdout
    assert "235 " not in res.stdout
    assert audit_for(daemon, "alice")[-1]["result"] == "fail"


@pytest.mark.postfix
def test_unknown_user_is_refused(postfix, daemon):
    res = auth(postfix.port, "PLAIN", "mallory", "anything")
    assert "535 5.7.8 Error: authentication failed" in res.stdout
    assert audit_for(daemon, "mallory")[-1]["result"] in ("unknown", "fail")


@pytest.mark.postfix
def test_user_at_realm_login(postfix, daemon):
    """libsasl splits ``bob@example.com`` at the last ``@``: login bob, realm example.com."""
    res = auth(postfix.port, "LOGIN", "bob@example.com", "b0b's pass")
    assert res.returncode == 0, res.stdout
    assert "235 2.7.0 Authentication successful" in res.stdout
    rec = audit_for(daemon, "bob")[-1]
    assert (rec["realm"], rec["service"], rec["result"]) == ("example.com", "smtp", "ok")
    # The realm is part of the identity: bob without it is another (unknown) user.
    res = auth(postfix.port, "PLAIN", "bob", "b0b's pass")
    assert "535 5.7.8" in res.stdout
    # And alice does not exist in example.com.
    res = auth(postfix.port, "PLAIN", "alice@example.com", "Wonder land 1")
    assert "535 5.7.8" in res.stdout


@pytest.mark.postfix
def test_relay_denied_without_auth(postfix):
    res = swaks(postfix.port, "--quit-after", "RCPT")
    assert "554 5.7.1 <someone@outside.example>: Relay access denied" in res.stdout
    assert "Relay access denied" in postfix.log()


@pytest.mark.postfix
def test_relay_denied_after_failed_auth(postfix):
    res = auth(postfix.port, "PLAIN", "alice", "nope", "--quit-after", "RCPT")
    assert "535 " in res.stdout
    # swaks stops at the failed AUTH; try the same session by hand with smtplib.
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=20) as s:
        s.ehlo("roaming.example")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice", "nope")
        s.mail("alice@saslauthpy.test")
        code, msg = s.rcpt(OUTSIDE)
    assert code == 554 and b"Relay access denied" in msg


def test_local_domain_supplies_the_realm(base, daemon):
    """smtpd_sasl_local_domain is the realm Postfix passes for logins without @."""
    pf = PostfixServer(base / "pf-realm", daemon.mux, local_domain="example.com")
    with pf:
        res = auth(pf.port, "PLAIN", "bob", "b0b's pass")
        assert "235 2.7.0 Authentication successful" in res.stdout, res.stdout
        res = auth(pf.port, "PLAIN", "alice", "Wonder land 1")
        assert "535 5.7.8" in res.stdout  # alice has no account in example.com


def test_realm_join_flag_with_postfix(base):
    """saslauthd -r: Postfix passes login carol, realm example.org and the daemon joins
    them into ``carol@example.org`` before asking the backend (multi-domain setups)."""
    d = reachable_daemon(base / "sa-r", args=["-r"])
    pf = PostfixServer(base / "pf-r", d.mux)
    try:
        d.admin("user", "add", "carol", "--realm", "example.org", password="c4rol")
        with pf:
            res = auth(pf.port, "PLAIN", "carol@example.org", "c4rol")
            assert "235 2.7.0 Authentication successful" in res.stdout, res.stdout + d.stderr()
            res = auth(pf.port, "PLAIN", "carol@example.org", "carol")
            assert "535 5.7.8" in res.stdout
        recs = audit_for(d, "carol@example.org")
        assert [(r["realm"], r["service"], r["result"]) for r in recs] == [
            ("example.org", "smtp", "ok"), ("example.org", "smtp", "fail")]
    finally:
        d.stop()


@pytest.mark.postfix
def test_a_start_that_times_out_leaves_no_master(base, daemon):
    """PostfixServer.start stops master when smtpd does not greet in time: a fixture or
    ``with`` whose start raised never reaches its stop, so master would run on."""
    need("postfix")
    pf = PostfixServer(base / "pf-timeout", daemon.mux)
    try:
        with pytest.raises(RuntimeError, match="did not answer"):
            pf.start(timeout=0)
        assert pf.postfix("status", check=False).returncode != 0
        pid = pf.master_pid()
        assert pid is None or not alive(pid)
    finally:
        pf.stop()
