"""The wire format, as pure functions."""

import pytest

from saslauthpy import protocol
from saslauthpy.protocol import Incomplete, Malformed, format_request, parse_request


def test_four_fields_are_a_whole_request():
    req = parse_request(format_request("alice", "pw", "smtp", "example.org"))
    assert (req.login, req.password, req.service, req.realm, req.client_addr) == (
        "alice", b"pw", "smtp", "example.org", "")


def test_fifth_field_is_the_client_address_when_it_came_along():
    req = parse_request(format_request("alice", "pw", "imap", "", "192.0.2.7;4711"))
    assert req.client_addr == "192.0.2.7;4711"


def test_partial_fifth_field_is_not_waited_for():
    raw = format_request("alice", "pw", "imap", "") + b"\x00\x10abc"
    assert parse_request(raw).client_addr == ""


@pytest.mark.parametrize("cut", [0, 1, 2, 5, 8, 11])
def test_fewer_than_four_fields_is_incomplete(cut):
    raw = format_request("alice", "pw", "imap", "r")
    with pytest.raises(Incomplete):
        parse_request(raw[:cut])


def test_oversized_field_is_refused_as_soon_as_its_length_is_seen():
    raw = b"\x01\x01"  # 257 bytes announced, none sent yet
    with pytest.raises(Malformed) as exc:
        parse_request(raw)
    assert exc.value.reply == protocol.format_reply("NO ")


def test_field_of_exactly_the_limit_is_accepted():
    req = parse_request(format_request("a" * 256, "p" * 256, "s", "r"))
    assert len(req.login) == 256


def test_limit_is_configurable():
    with pytest.raises(Malformed):
        parse_request(format_request("a" * 20, "pw", "", ""), max_field=16)


def test_empty_login_and_password_get_saslauthds_texts():
    with pytest.raises(Malformed) as exc:
        parse_request(format_request("", "pw", "", ""))
    assert protocol.parse_reply(exc.value.reply) == "NO NULL login received"
    with pytest.raises(Malformed) as exc:
        parse_request(format_request("alice", "", "", ""))
    assert protocol.parse_reply(exc.value.reply) == "NO NULL password received"


@pytest.mark.parametrize("login,password", [(b"user\0junk", b"pw"), (b"user", b"pw\0junk")])
def test_nul_inside_login_or_password_is_refused(login, password):
    with pytest.raises(Malformed) as exc:
        parse_request(format_request(login, password, "", ""))
    assert protocol.parse_reply(exc.value.reply).startswith("NO")


def test_non_utf8_login_survives_round_trip():
    req = parse_request(format_request(b"\xffuser", "pw", "", ""))
    assert req.login.encode("utf-8", "surrogateescape") == b"\xffuser"


def test_request_repr_never_shows_the_password():
    req = parse_request(format_request("alice", "hunter2", "", ""))
    assert "hunter2" not in repr(req)


def test_reply_round_trip():
    assert protocol.parse_reply(protocol.format_reply("OK")) == "OK"
    with pytest.raises(Incomplete):
        protocol.parse_reply(b"\x00\x05NO")
