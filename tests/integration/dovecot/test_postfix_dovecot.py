"""Postfix with ``smtpd_sasl_type = dovecot`` on our listener: the roaming-user case again,
now with the client's address, and penalties per address through real SMTP sessions.

smtpd runs as ``postfix`` and keeps one connection to the auth socket per process; the
socket is ``0660 postfix:postfix``, as for /var/spool/postfix/private/auth.  swaks binds
loopback source addresses (127.0.0.2, .3, .4) so Postfix passes three different ``rip=``.
"""

from __future__ import annotations

import subprocess

import pytest
from harness import need
from postfix_server import PostfixServer

OUTSIDE = "someone@outside.example"
SOCKET = {"socket_owner": "postfix", "socket_group": "postfix", "socket_mode": "0660"}


def swaks(port: int, *args: str, source: str = "127.0.0.1") -> subprocess.CompletedProcess:
    cmd = [need("swaks"), "--server", "127.0.0.1", "--port", str(port), "--local-interface",
           source, "--helo", "roaming.example", "--from", "alice@saslauthpy.test", "--to",
           OUTSIDE, "--timeout", "30", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def login(port: int, mech: str, user: str, password: str, source: str = "127.0.0.1"):
    return swaks(port, "--auth", mech, "--auth-user", user, "--auth-password", password,
                 source=source)


@pytest.fixture(scope="module")
def daemon(dovecot_daemon):
    return dovecot_daemon("postfix-auth", dovecot=SOCKET, short_penalties=True)


@pytest.fixture(scope="module")
def postfix(base, daemon):
    need("postfix")
    pf = PostfixServer(base / "pf", daemon.auth, sasl_type="dovecot")
    pf.start()
    yield pf
    pf.stop()


def records(daemon, login: str) -> list[tuple]:
    return [(r["client"], r["result"], r["delay"]) for r in daemon.audit()
            if r["login"] == login]


@pytest.mark.postfix
def test_postfix_offers_what_the_handshake_lists(postfix):
    res = swaks(postfix.port, "--quit-after", "EHLO")
    assert "250-AUTH PLAIN LOGIN" in res.stdout, res.stdout + postfix.log()


@pytest.mark.postfix
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_good_password_relays_and_the_audit_has_the_client_address(postfix, daemon, mech):
    res = login(postfix.port, mech, "alice", "Wonder land 1", source="127.0.0.2")
    assert "235 2.7.0 Authentication successful" in res.stdout, res.stdout + postfix.log()
    assert "250 2.0.0 Ok: queued as" in res.stdout  # relayed to the outside domain
    assert f"sasl_method={mech}, sasl_username=alice" in postfix.log()
    assert records(daemon, "alice")[-1] == ("127.0.0.2", "ok", 0.0)
    assert daemon.audit()[-1]["service"] == "smtp"


@pytest.mark.postfix
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_wrong_password_gets_535(postfix, daemon, mech):
    res = login(postfix.port, mech, "bob@example.com", f"not bob's {mech}", source="127.0.0.5")
    assert "535 5.7.8 Error: authentication failed" in res.stdout, res.stdout
    assert "235 " not in res.stdout
    rec = [r for r in daemon.audit() if r["login"] == "bob"][-1]
    assert (rec["realm"], rec["client"], rec["result"]) == ("example.com", "127.0.0.5", "fail")


@pytest.mark.postfix
def test_guesser_slows_itself_not_the_user_at_her_known_address(postfix, daemon):
    """alice logs in from 127.0.0.2.  A guesser at 127.0.0.3 raises alice's penalty and
    its own; alice at 127.0.0.2 still gets in at once, a guess for her from a third, new
    address (127.0.0.4) is held, and the guessing address waits for bob too."""
    assert "235 2.7.0" in login(postfix.port, "PLAIN", "alice", "Wonder land 1",
                                source="127.0.0.2").stdout
    before = len(records(daemon, "alice"))
    for i in range(3):
        res = login(postfix.port, "PLAIN", "alice", f"guess {i}", source="127.0.0.3")
        assert "535 5.7.8" in res.stdout, res.stdout
    res = login(postfix.port, "LOGIN", "alice", "Wonder land 1", source="127.0.0.2")
    assert "235 2.7.0" in res.stdout, res.stdout
    res = login(postfix.port, "PLAIN", "alice", "guess 4", source="127.0.0.4")
    assert "535 5.7.8" in res.stdout
    res = login(postfix.port, "PLAIN", "bob@example.com", "b0b's pass", source="127.0.0.3")
    assert "235 2.7.0" in res.stdout, res.stdout
    assert records(daemon, "alice")[before:] == [
        ("127.0.0.3", "fail", 0.0), ("127.0.0.3", "fail", 0.5), ("127.0.0.3", "fail", 1.0),
        ("127.0.0.2", "ok", 0.0),
        ("127.0.0.4", "fail", 2.0),
    ]
    assert records(daemon, "bob")[-1] == ("127.0.0.3", "ok", 2.0)
