"""Exim's ``dovecot`` authenticator on our listener (exim4-daemon-heavy, unpacked by
.ci/setup.d/65-exim.sh).  Exim opens one connection per AUTH, reads our handshake before
it says VERSION, and sends ``resp=`` even when the SMTP client gave no initial response.
Its SMTP process runs as ``Debian-exim``: the socket is ``0660 root:Debian-exim``."""

from __future__ import annotations

import subprocess

import pytest
from exim_server import EximServer, exim_binary
from harness import need

SOCKET = {"socket_group": "Debian-exim", "socket_mode": "0660"}


def login(port: int, mech: str, user: str, password: str, source: str = "127.0.0.1"):
    cmd = [need("swaks"), "--server", "127.0.0.1", "--port", str(port), "--local-interface",
           source, "--helo", "roaming.example", "--from", "alice@saslauthpy.test",
           "--to", "someone@outside.example", "--timeout", "30", "--quit-after", "RCPT",
           "--auth", mech, "--auth-user", user, "--auth-password", password]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def daemon(dovecot_daemon):
    exim_binary()  # skips (fails under CI) before the socket asks for group Debian-exim
    return dovecot_daemon("exim-auth", dovecot=SOCKET, short_penalties=True)


@pytest.fixture(scope="module")
def exim(base, daemon):
    server = EximServer(base / "exim", daemon.auth).start()
    yield server
    server.stop()


def records(daemon, login: str) -> list[tuple]:
    return [(r["client"], r["result"], r["delay"]) for r in daemon.audit()
            if r["login"] == login]


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_good_password_is_allowed_to_relay(exim, daemon, mech):
    res = login(exim.port, mech, "alice", "Wonder land 1", source="127.0.0.2")
    assert "235 Authentication succeeded" in res.stdout, res.stdout + exim.log()
    assert "250 Accepted" in res.stdout  # RCPT to an outside domain, after AUTH only
    assert records(daemon, "alice")[-1] == ("127.0.0.2", "ok", 0.0)
    assert [r["peer_uid"] for r in daemon.audit()][-1] != 0  # Exim asked as Debian-exim


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_wrong_password_gets_535(exim, daemon, mech):
    res = login(exim.port, mech, "bob@example.com", "not bob's", source="127.0.0.5")
    assert "535 Incorrect authentication data" in res.stdout, res.stdout + exim.log()
    rec = [r for r in daemon.audit() if r["login"] == "bob"][-1]
    assert (rec["realm"], rec["client"], rec["result"]) == ("example.com", "127.0.0.5", "fail")


def test_guesser_slows_itself_not_the_user_at_her_known_address(exim, daemon):
    assert "235 " in login(exim.port, "PLAIN", "alice", "Wonder land 1", "127.0.0.2").stdout
    before = len(records(daemon, "alice"))
    for i in range(3):
        assert "535 " in login(exim.port, "PLAIN", "alice", f"guess {i}", "127.0.0.3").stdout
    assert "235 " in login(exim.port, "LOGIN", "alice", "Wonder land 1", "127.0.0.2").stdout
    assert "535 " in login(exim.port, "PLAIN", "alice", "guess 4", "127.0.0.4").stdout
    assert records(daemon, "alice")[before:] == [
        ("127.0.0.3", "fail", 0.0), ("127.0.0.3", "fail", 0.5), ("127.0.0.3", "fail", 1.0),
        ("127.0.0.2", "ok", 0.0),
        ("127.0.0.4", "fail", 2.0),
    ]
