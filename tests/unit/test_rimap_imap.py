"""rimap without a server: IMAP quoting and literals, reply parsing, ``-O host[/port]``."""

from __future__ import annotations

import pytest
from tmpfiles import EXISTS, MISSING, in_tmp

from saslauthpy.backends.rimap import Backend
from saslauthpy.backends.rimap.imap import (
    Unsendable,
    capabilities,
    login_chunks,
    parse_status,
)
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError


def test_plain_values_are_quoted_with_quoted_specials_escaped():
    assert login_chunks(b"s1", b"alice", b'a"b\\c d') == [b's1 LOGIN "alice" "a\\"b\\\\c d"\r\n']
    assert login_chunks(b"s1", b"", b"x") == [b's1 LOGIN "" "x"\r\n']


@pytest.mark.parametrize("password", ["pässwörd".encode(), b"two\r\nlines", b"cr\ronly"])
def test_eight_bit_and_line_breaks_go_as_synchronizing_literals(password):
    chunks = login_chunks(b"s1", b"alice", password)
    assert chunks == [b's1 LOGIN "alice" {%d}\r\n' % len(password), password + b"\r\n"]


def test_literal_plus_sends_the_whole_command_at_once():
    login = "jörg".encode()
    chunks = login_chunks(b"s1", login, b"pw\n", frozenset({"LITERAL+"}))
    assert chunks == [b"s1 LOGIN {5+}\r\n" + login + b' {3+}\r\npw\n\r\n']


def test_literal_minus_only_up_to_4096_bytes():
    small, big = b"\xff" * 10, b"\xff" * 5000
    assert len(login_chunks(b"t", b"u", small, frozenset({"LITERAL-"}))) == 1
    assert len(login_chunks(b"t", b"u", big, frozenset({"LITERAL-"}))) == 2


def test_two_literals_make_three_chunks():
    chunks = login_chunks(b"s1", b"\xe4", b"\xf6")
    assert chunks == [b"s1 LOGIN {1}\r\n", b"\xe4 {1}\r\n", b"\xf6\r\n"]


def test_a_nul_cannot_be_sent():
    with pytest.raises(Unsendable):
        login_chunks(b"s1", b"alice", b"pw\0x")


def test_capabilities_from_the_greeting_and_a_capability_line():
    greeting = b"* OK [CAPABILITY IMAP4rev1 LITERAL+ LOGINDISABLED] ready\r\n"
    assert capabilities(greeting) == {"IMAP4REV1", "LITERAL+", "LOGINDISABLED"}
    assert capabilities(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n") == {"IMAP4REV1", "STARTTLS"}
    assert capabilities(b"* OK ready\r\n") is None


def test_status_replies():
    r = parse_status(b"s2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", b"s2")
    assert (r.status, r.code, r.text, r.temporary) == (
        "NO", "AUTHENTICATIONFAILED", "Authentication failed.", False)
    r = parse_status(b"s2 NO [UNAVAILABLE] Temporary authentication failure\r\n", b"s2")
    assert r.temporary
    assert parse_status(b"s2 ok Logged in\r\n", b"s2").status == "OK"
    assert parse_status(b"* OK hello\r\n", b"s2") is None
    assert parse_status(b"s22 OK x\r\n", b"s2") is None  # another tag
    assert parse_status(b"s2 WHAT\x01\r\n", b"s2").status == ""
    assert parse_status(b"s2 BAD bad \x1b[31m\r\n", b"s2").text == "bad ?[31m"


def server(raw: str, **options) -> Backend:
    return Backend(Config(mech_options=raw), options)


@pytest.mark.parametrize("raw,host,port", [
    ("127.0.0.1/1143", "127.0.0.1", 1143),
    ("imap.example.org", "imap.example.org", 143),
    ("::1/143", "::1", 143),
    ("::1", "::1", 143),
    ("mail/imap", "mail", 143),
    ("mail/imaps", "mail", 993),
])
def test_host_and_port_as_saslauthd_reads_them(raw, host, port):
    b = server(raw)
    assert (b.host, b.port) == (host, port)


def test_imaps_defaults_to_port_993():
    assert Backend(Config(), {"server": "mail", "tls": "imaps"}).port == 993


@pytest.mark.parametrize("raw,fix", [
    ("127.0.0.1:1143", "write 127.0.0.1/1143"),
    ("[::1]:143", "write ::1/143"),
    ("imap.example.org:143", "write imap.example.org/143"),
    ("", "needs the IMAP server"),
    ("mail/", "nothing after '/'"),
    ("mail/nosuchservice", "neither a number nor a service name"),
    ("mail/70000", "out of range"),
    ("bad host/143", "not a host name"),
])
def test_bad_server_forms_are_refused_with_the_fix(raw, fix):
    with pytest.raises(ConfigError, match=fix.replace("[", r"\[")):
        server(raw)


@pytest.mark.parametrize("options,text", [
    ({"tls": "ssl"}, "tls: 'ssl' is not one of none, starttls, imaps"),
    ({"timeout": 0}, "timeout: must be positive"),
    ({"ca_file": EXISTS}, "ca_file is set but tls is"),
    ({"tls": "imaps", "ca_file": MISSING}, "missing or not readable"),
    ({"port": 143}, "unknown key 'port'"),
])
def test_bad_options_are_refused(tmp_path, options, text):
    with pytest.raises(ConfigError, match=text):
        Backend(Config(), {"server": "mail", **in_tmp(tmp_path, options)})
