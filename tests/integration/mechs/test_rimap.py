"""rimap against a real Dovecot IMAP server: the backend directly, then through the daemon
with the real testsaslauthd, in clear, with STARTTLS and with imaps."""

from __future__ import annotations

import asyncio

import pytest
from harness import need, testsaslauthd
from imap_server import USERS, SilentServer
from ldap_server import free_port

from saslauthpy.backends.base import Result
from saslauthpy.backends.rimap import Backend
from saslauthpy.config import Config
from saslauthpy.protocol import Request

pytestmark = pytest.mark.timeout(120)
NO_THROTTLE = {"throttle": {"enabled": False}}


def backend(server: str, **options) -> Backend:
    return Backend(Config(), {"server": server, **options})


def ask(b: Backend, login: str, password: str | bytes):
    pw = password.encode() if isinstance(password, str) else password
    return asyncio.run(b.authenticate(Request(login, pw, "imap")))


@pytest.fixture(params=["none", "starttls", "imaps"])
def tls_backend(request, dovecot, ca):
    if request.param == "none":
        return backend(f"127.0.0.1/{dovecot.imap_port}")
    port = dovecot.imaps_port if request.param == "imaps" else dovecot.imap_port
    return backend(f"127.0.0.1/{port}", tls=request.param, ca_file=str(ca.ca_cert))


def test_good_wrong_and_unknown(tls_backend):
    for login, password in USERS.items():
        assert ask(tls_backend, login, password).result is Result.OK, login
    assert ask(tls_backend, "alice", "wrong-pw").result is Result.FAIL
    assert ask(tls_backend, "alice", USERS["alice"] + "x").result is Result.FAIL
    assert ask(tls_backend, "nosuchuser", "alice-pw").result is Result.FAIL
    # a quoted-special's escape is not a wildcard: the unescaped form is wrong
    assert ask(tls_backend, "quoted", USERS["quoted"].replace("\\", "")).result is Result.FAIL


def test_a_line_break_in_the_password_cannot_inject_a_command(dovecot):
    b = backend(f"127.0.0.1/{dovecot.imap_port}")
    # Sent quoted (as saslauthd does), the CRLF would end the LOGIN and the rest would run
    # as a second command logging in as alice.  Sent as a literal, it is one odd password.
    for tag in range(1, 6):
        injected = f'x"\r\ns{tag} LOGIN alice alice-pw\r\ns{tag + 1} LOGIN alice alice-pw'
        assert ask(b, "nosuchuser", injected).result is Result.FAIL


def test_a_nul_byte_cannot_be_sent_and_is_no(dovecot):
    answer = ask(backend(f"127.0.0.1/{dovecot.imap_port}"), "alice", b"alice-pw\0junk")
    assert answer.result is Result.FAIL


def test_server_down_is_a_temporary_failure():
    answer = ask(backend(f"127.0.0.1/{free_port()}"), "alice", "alice-pw")
    assert answer.result is Result.TEMPFAIL and "connection refused" in answer.reason


def test_a_silent_server_times_out_as_a_temporary_failure():
    silent = SilentServer()
    try:
        answer = ask(backend(f"127.0.0.1/{silent.port}", timeout=0.5), "alice", "alice-pw")
    finally:
        silent.close()
    assert answer.result is Result.TEMPFAIL and "timed out" in answer.reason


def test_an_untrusted_certificate_is_a_temporary_failure(dovecot):
    # no ca_file: the system store does not know the test CA
    answer = ask(backend(f"127.0.0.1/{dovecot.imaps_port}", tls="imaps"), "alice", "alice-pw")
    assert answer.result is Result.TEMPFAIL and "certificate" in answer.reason


def test_starttls_to_a_plain_port_of_a_server_without_tls(tmp_path):
    # a server that answers STARTTLS with BAD: never OK, a temporary failure
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"* OK IMAP4rev1 ready\r\n")
            line = conn.makefile("rb").readline()
            tag = line.split(b" ", 1)[0]
            conn.sendall(tag + b" BAD STARTTLS not supported\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        answer = ask(backend(f"127.0.0.1/{port}", tls="starttls"), "alice", "alice-pw")
    finally:
        thread.join(5)
        listener.close()
    assert answer.result is Result.TEMPFAIL and "STARTTLS refused" in answer.reason


@pytest.mark.csaslauthd
def test_through_the_daemon_with_testsaslauthd(daemon_factory, dovecot):
    need("testsaslauthd")
    d = daemon_factory(args=["-a", "rimap", "-O", f"127.0.0.1/{dovecot.imap_port}", "-V"],
                       config=NO_THROTTLE)
    assert testsaslauthd(d.mux, "alice", "alice-pw").stdout.strip() == '0: OK "Success."'
    assert testsaslauthd(d.mux, "unicode", USERS["unicode"]).returncode == 0
    assert testsaslauthd(d.mux, "quoted", USERS["quoted"]).returncode == 0
    wrong = testsaslauthd(d.mux, "alice", "wrong-pw")
    assert wrong.returncode == 255 and "NO" in wrong.stdout
    assert testsaslauthd(d.mux, "nosuchuser", "alice-pw").returncode == 255
    results = [(e["login"], e["result"]) for e in d.audit()]
    assert results == [("alice", "ok"), ("unicode", "ok"), ("quoted", "ok"),
                       ("alice", "fail"), ("nosuchuser", "fail")]
    assert all(e["backend"] == "rimap" for e in d.audit())


@pytest.mark.csaslauthd
def test_server_down_through_the_daemon_is_no_and_audited_as_tempfail(daemon_factory):
    need("testsaslauthd")
    d = daemon_factory(args=["-a", "rimap", "-O", f"127.0.0.1/{free_port()}"],
                       config=NO_THROTTLE)
    res = testsaslauthd(d.mux, "alice", "alice-pw")
    assert res.returncode == 255
    assert d.ask("alice", "alice-pw").startswith("NO [ALERT]")
    assert [e["result"] for e in d.audit()] == ["tempfail", "tempfail"]
    assert "connection refused" in d.audit()[0]["reason"]


def test_host_colon_port_is_refused_with_the_right_form(daemon_factory, dovecot):
    d = daemon_factory(args=["-a", "rimap", "-O", f"127.0.0.1:{dovecot.imap_port}"],
                       wait=False)
    assert d.proc.wait(30) == 1
    assert f"write 127.0.0.1/{dovecot.imap_port}" in d.stderr()
    assert not d.mux.exists()
