"""httpform without a server: form encoding, the request bytes, status lines, settings."""

from __future__ import annotations

import pytest
from tmpfiles import EXISTS, MISSING, in_tmp

from saslauthpy.backends.httpform import Backend
from saslauthpy.backends.httpform.form import (
    Status,
    form_body,
    parse_status,
    post_request,
    url_escape,
)
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError

VALUES = {"login": b"al ice", "password": b"p&=%+\r\n\xe2\x82\xac", "realm": b"ex.org",
          "service": b"smtp"}


def test_url_escape_keeps_only_letters_and_digits():
    assert url_escape(b"aZ09") == b"aZ09"
    assert url_escape(b"a-b_c.d~ +&=%\r\n\xff") == b"a%2Db%5Fc%2Ed%7E%20%2B%26%3D%25%0D%0A%FF"


def test_tokens():
    assert form_body("u=%u&p=%p&r=%r&s=%s", VALUES) == (
        b"u=al%20ice&p=p%26%3D%25%2B%0D%0A%E2%82%AC&r=ex%2Eorg&s=smtp")
    assert form_body("%%u %x %", VALUES) == b"%u %x %"  # %% is a %, unknown tokens stay
    assert form_body("user=%u&realm=%r", {**VALUES, "realm": b""}) == b"user=al%20ice&realm="
    assert form_body("ü=%u", VALUES) == "ü=".encode() + b"al%20ice"


def test_post_request():
    raw = post_request("/auth?x=1", "127.0.0.1:8080", b"a=b")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /auth?x=1 HTTP/1.1" and b"Host: 127.0.0.1:8080" in lines
    assert b"Content-Type: application/x-www-form-urlencoded" in lines
    assert b"Content-Length: 3" in lines and b"Connection: close" in lines and body == b"a=b"


def test_status_lines():
    assert parse_status(b"HTTP/1.1 204 No Content\r\n") == Status(204, "No Content")
    assert parse_status(b"HTTP/1.0 403\r\n").code == 403
    assert parse_status(b"HTTP/1.1 200 OK\n").code == 200
    assert parse_status(b"HTTP/1.1 403 Bad \x1b[1m\r\n").phrase == "Bad ?[1m"
    for bad in (b"", b"SSH-2.0-OpenSSH\r\n", b"HTTP/2 200\r\n", b"HTTP/1.1 2000 x\r\n"):
        assert parse_status(bad) is None


def make(**options) -> Backend:
    return Backend(Config(), {"data": "u=%u&p=%p", **options})


def test_url_or_host_port_uri():
    t = make(url="https://auth.example.org/check?a=1").target
    assert (t.scheme, t.host, t.port, t.path, t.host_header) == (
        "https", "auth.example.org", 443, "/check?a=1", "auth.example.org")
    t = make(host="127.0.0.1", port=8080, uri="/login").target
    assert str(t) == "http://127.0.0.1:8080/login"
    assert make(url="http://[::1]:81/").target.host_header == "[::1]:81"
    assert make(httpform_uri="/x").target.path == "/x"  # the saslauthd.conf names work too


@pytest.mark.parametrize("options,text", [
    ({"url": "ftp://x/"}, "not an http:// or https:// URL"),
    ({"url": "http://u:p@x/"}, "no user:password@"),
    ({"url": "http://x:99999/"}, "bad port"),
    ({}, "needs where to post"),
    ({"uri": "login"}, "must be a path starting with '/'"),
    ({"uri": "/a b"}, "must be a path"),
    ({"uri": "/x", "host": "a b"}, "not a host name"),
    ({"uri": "/x", "port": 0}, "port: must be between 1 and 65535"),
    ({"uri": "/x", "port": "80"}, "expected a number"),
    ({"uri": "/x", "data": ""}, "needs the form"),
    ({"uri": "/x", "timeout": 0}, "timeout: must be positive"),
    ({"uri": "/x", "ca_file": EXISTS}, "ca_file is set but the URL is http://"),
    ({"url": "https://x/", "ca_file": MISSING}, "missing or not readable"),
    ({"uri": "/x", "method": "GET"}, "unknown key 'method'"),
])
def test_bad_settings_are_refused(tmp_path, options, text):
    with pytest.raises(ConfigError, match=text):
        make(**in_tmp(tmp_path, options))
