"""The Dovecot auth client protocol, server side (saslauthpy/dovecot.py): pure state."""

from __future__ import annotations

import base64

import pytest

from saslauthpy import dovecot
from saslauthpy.dovecot import Login, ProtocolError, Send, Session


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def ready(**kw) -> Session:
    s = Session(**kw)
    assert s.handle(b"VERSION\t1\t0") is None
    assert s.handle(b"CPID\t4242") is None
    assert s.ready
    return s


def test_handshake_lists_mechanisms_before_spid_and_ends_with_done():
    lines = dovecot.handshake(77, 3, b"\x01" * 16).decode().splitlines()
    assert lines == ["VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tLOGIN\tplaintext",
                     "SPID\t77", "CUID\t3", "COOKIE\t" + "01" * 16, "DONE"]
    # Postfix takes a SPID before any MECH for the wrong (master) socket.
    assert lines.index("SPID\t77") > lines.index("MECH\tLOGIN\tplaintext")


@pytest.mark.parametrize("raw", [b"a\tb", b"\x01", b"x\ny\r\0", b"plain", b""])
def test_tab_escaping_round_trips(raw):
    escaped = dovecot.escape(raw)
    assert not set(escaped) & {0, 9, 10, 13}
    assert dovecot.unescape(escaped) == raw


def test_unescape_follows_dovecot():
    assert dovecot.unescape(b"a\x01tb\x01nc\x010\x011\x01r") == b"a\tb\nc\0\x01\r"
    assert dovecot.unescape(b"\x01x") == b"x"  # any other byte stands for itself
    assert dovecot.unescape(b"end\x01") == b"end"


@pytest.mark.parametrize("line", [b"VERSION\t2\t0", b"VERSION\t1", b"VERSION\tx\t0", b"HELLO",
                                  b""])
def test_bad_version_closes(line):
    with pytest.raises(ProtocolError):
        Session().handle(line)


@pytest.mark.parametrize("line", [b"CPID\t0", b"CPID\tx", b"AUTH\t1\tPLAIN\tservice=smtp",
                                  b"CPID"])
def test_anything_but_a_good_cpid_after_version_closes(line):
    s = Session()
    s.handle(b"VERSION\t1\t0")
    with pytest.raises(ProtocolError):
        s.handle(line)


def test_plain_with_initial_response_is_a_login_to_check():
    s = ready()
    got = s.handle(b"AUTH\t7\tPLAIN\tservice=smtp\tnologin\tlip=192.0.2.1\trip=198.51.100.7"
                   b"\trport=4711\tsecured\tresp=" + b64(b"\0alice@example.com\0pw"))
    assert isinstance(got, Login)
    assert (got.id, got.user, got.password, got.service) == (7, "alice@example.com", b"pw",
                                                             "smtp")
    assert got.params["secured"] == "" and got.params["lip"] == "192.0.2.1"
    req = got.request()
    assert (req.login, req.realm, req.service, req.client_addr) == (
        "alice", "example.com", "smtp", "198.51.100.7;4711")
    assert "pw" not in repr(got)
    assert s.answer(got, "ok") == b"OK\t7\tuser=alice@example.com\n"
    assert s.answer(got, "ok") is None  # answered once only


def test_plain_without_response_asks_for_it():
    s = ready()
    assert s.handle(b"AUTH\t1\tPLAIN\tservice=smtp") == Send(b"CONT\t1\t\n")
    got = s.handle(b"CONT\t1\t" + b64(b"alice\0alice\0pw"))
    assert isinstance(got, Login) and got.user == "alice"


def test_empty_resp_means_absent_for_old_clients_only():
    """Exim and Postfix speak 1.0 and may send ``resp=`` with nothing (Dovecot's rule)."""
    assert ready().handle(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=") == Send(b"CONT\t1\t\n")
    s = Session()
    s.handle(b"VERSION\t1\t2")
    s.handle(b"CPID\t1")
    got = s.handle(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=")
    assert isinstance(got, Send) and got.line == b"FAIL\t1\n" and got.malformed


def test_login_asks_username_then_password():
    s = ready()
    assert s.handle(b"AUTH\t3\tLOGIN\tservice=smtp").line == b"CONT\t3\tVXNlcm5hbWU6\n"
    assert s.handle(b"CONT\t3\t" + b64(b"bob")).line == b"CONT\t3\tUGFzc3dvcmQ6\n"
    got = s.handle(b"CONT\t3\t" + b64(b"secret"))
    assert isinstance(got, Login) and (got.user, got.password) == ("bob", b"secret")
    assert s.answer(got, "fail") == b"FAIL\t3\tuser=bob\n"


def test_login_initial_response_is_the_user_name():
    s = ready()
    assert s.handle(b"AUTH\t3\tLOGIN\tservice=smtp\tresp=" + b64(b"bob")).line == \
        b"CONT\t3\tUGFzc3dvcmQ6\n"


def test_many_requests_in_flight_are_answered_by_id_in_any_order():
    s = ready()
    logins = [s.handle(b"AUTH\t%d\tPLAIN\tservice=imap\tresp=%s" % (i, b64(b"\0u%d\0p" % i)))
              for i in range(1, 6)]
    assert all(isinstance(x, Login) for x in logins)
    assert s.answer(logins[3], "ok") == b"OK\t4\tuser=u4\n"
    assert s.answer(logins[0], "tempfail", "backend down") == \
        b"FAIL\t1\tuser=u1\tcode=temp_fail\ttemp\treason=backend down\n"
    assert s.answer(logins[1], "fail", "wrong\tpassword") == \
        b"FAIL\t2\tuser=u2\treason=wrong\x01tpassword\n"


@pytest.mark.parametrize("line", [
    b"AUTH\t0\tPLAIN\tservice=smtp", b"AUTH\tx\tPLAIN\tservice=smtp",
    b"AUTH\t99999999999\tPLAIN\tservice=smtp", b"AUTH\t1",
    b"AUTH\t1\tLOGIN\tservice=smtp\tresp=YQ==\tfoo",  # nothing may follow resp
    b"CONT\tx\tYQ==", b"CONT\t1", b"CANCEL\tx", b"HELLO\tworld", b"auth\t1\tPLAIN"])
def test_broken_lines_close_the_connection(line):
    with pytest.raises(ProtocolError):
        ready().handle(line)


def test_duplicate_id_closes():
    s = ready()
    s.handle(b"AUTH\t1\tLOGIN\tservice=smtp")
    with pytest.raises(ProtocolError, match="duplicate"):
        s.handle(b"AUTH\t1\tLOGIN\tservice=smtp")


@pytest.mark.parametrize("line, reply", [
    (b"AUTH\t1\tCRAM-MD5\tservice=smtp", b"FAIL\t1\treason=Unsupported authentication mechanism\n"),
    (b"AUTH\t1\tPLAIN\tresp=" + b64(b"\0a\0b"), b"FAIL\t1\treason=Missing service\n"),
    (b"AUTH\t1\tPLAIN\tservice=smtp\tresp=!!!!",
     b"FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"),
    (b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"\0alice\0secret1").rstrip(b"="),
     b"FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"),
    (b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"alice-secret"), b"FAIL\t1\n"),
    (b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"\0\0secret"), b"FAIL\t1\n"),
    (b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"bob\0alice\0secret"), b"FAIL\t1\tuser=alice\n"),
    (b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"\0alice\0"), b"FAIL\t1\tuser=alice\n"),
    (b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"\0alice\0pw\0more"), b"FAIL\t1\n"),
])
def test_refused_requests_get_a_fail_and_the_connection_goes_on(line, reply):
    s = ready()
    got = s.handle(line)
    assert got == Send(reply, got.malformed) and got.malformed
    assert isinstance(s.handle(b"AUTH\t2\tPLAIN\tservice=smtp\tresp=" + b64(b"\0a\0b")), Login)


def test_fields_longer_than_saslauthd_allows_are_refused():
    s = ready(max_field=8)
    got = s.handle(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"\0alice\0" + b"p" * 9))
    assert got.line == b"FAIL\t1\n" and "password exceeded" in got.malformed
    got = s.handle(b"AUTH\t2\tLOGIN\tservice=smtp\tresp=" + b64(b"u" * 9))
    assert got.line == b"FAIL\t2\n" and "login exceeded" in got.malformed
    assert isinstance(s.handle(b"AUTH\t3\tPLAIN\tservice=smtp\tresp=" + b64(b"\0u\0" + b"p" * 8)),
                      Login)


def test_continuations_out_of_turn():
    s = ready()
    assert s.handle(b"CONT\t9\tYQ==") == Send(b"FAIL\t9\treason=Authentication request timed out\n")
    s.handle(b"AUTH\t1\tLOGIN\tservice=smtp")
    got = s.handle(b"CONT\t1\t%%%")
    assert got.line == (b"FAIL\t1\tcode=invalid_base64"
                        b"\treason=Invalid base64 data in continued response\n")
    login = s.handle(b"AUTH\t2\tPLAIN\tservice=smtp\tresp=" + b64(b"\0a\0b"))
    assert s.handle(b"CONT\t2\tYQ==").line == b"FAIL\t2\treason=Unexpected continuation\n"
    assert s.answer(login, "ok") is None  # that request is over


def test_cancel_drops_the_request_and_its_late_answer():
    s = ready()
    login = s.handle(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"\0a\0b"))
    assert s.handle(b"CANCEL\t1") is None
    assert s.answer(login, "ok") is None
    again = s.handle(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b64(b"\0a\0c"))  # id reusable
    assert s.answer(login, "fail") is None and s.answer(again, "ok") == b"OK\t1\tuser=a\n"


def test_waiting_requests_are_bounded_and_expire():
    s = ready(max_waiting=2)
    s.handle(b"AUTH\t1\tLOGIN\tservice=smtp", now=10.0)
    s.handle(b"AUTH\t2\tLOGIN\tservice=smtp", now=20.0)
    got = s.handle(b"AUTH\t3\tLOGIN\tservice=smtp", now=20.0)
    assert got.line.startswith(b"FAIL\t3\treason=Too many") and got.malformed
    assert s.expire(older_than=15.0) == 1
    assert s.handle(b"CONT\t1\tYQ==").line == b"FAIL\t1\treason=Authentication request timed out\n"
    assert s.handle(b"CONT\t2\tYQ==").line == b"CONT\t2\tUGFzc3dvcmQ6\n"


def test_crlf_and_mechanism_case_are_accepted():
    s = Session()
    s.handle(b"VERSION\t1\t0\r")
    s.handle(b"CPID\t1\r")
    assert isinstance(s.handle(b"AUTH\t1\tplain\tservice=smtp\tresp=" + b64(b"\0a\0b") + b"\r"),
                      Login)


def test_escaped_fields_are_unescaped():
    s = ready()
    got = s.handle(b"AUTH\t1\tPLAIN\tservice=sm\x01ttp\tresp=" + b64(b"\0a\0b"))
    assert got.service == "sm\ttp"


# -- the listener's options and its reading of the Authenticator's replies ---------------

def test_replies_map_to_ok_fail_and_tempfail():
    from saslauthpy.authenticator import REPLY_FAIL, REPLY_OK, REPLY_TEMPFAIL
    from saslauthpy.dovecot_listener import TEMPFAIL_REASON, outcome
    from saslauthpy.protocol import format_reply

    assert outcome(REPLY_OK, reveal=False) == ("ok", "")
    assert outcome(REPLY_TEMPFAIL, reveal=False) == ("tempfail", TEMPFAIL_REASON)
    assert outcome(REPLY_FAIL, reveal=False) == ("fail", "")
    assert outcome(format_reply("NO unknown user"), reveal=True) == ("fail", "unknown user")


def test_dovecot_table_is_checked_and_reaches_the_config(tmp_path):
    from saslauthpy.config import DovecotOptions, load_toml
    from saslauthpy.errors import ConfigError
    from saslauthpy.options import load

    conf = tmp_path / "c.toml"
    conf.write_text('[dovecot]\nlisten = "/run/x/auth"\nsocket_mode = "0600"\n')
    opts = load_toml(str(conf)).dovecot
    assert (opts.listen, opts.socket_mode, opts.max_in_flight) == ("/run/x/auth", 0o600, 8)
    for table, word in (({"listen": "auth"}, "absolute"), ({"port": 1}, "unknown key"),
                        ({"max_in_flight": 0}, "at least 1"), ({"socket_mode": "rw"}, "octal")):
        with pytest.raises(ConfigError, match=word):
            load(DovecotOptions, table, "[dovecot] ")
