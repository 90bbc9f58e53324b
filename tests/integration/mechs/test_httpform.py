"""httpform against a real HTTP(S) server (tests/helpers/form_server.py): the backend
directly, then through the daemon with the real testsaslauthd.  Debian's C saslauthd is
built without httpform, so there are no side-by-side rows."""

from __future__ import annotations

import asyncio

import pytest
from form_server import USERS, FormServer, form_fields
from harness import need, testsaslauthd
from ldap_server import free_port

from saslauthpy.backends.base import Result
from saslauthpy.backends.httpform import Backend
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError
from saslauthpy.protocol import Request

pytestmark = pytest.mark.timeout(120)
NO_THROTTLE = {"throttle": {"enabled": False}}
FORM = "user=%u&pass=%p&realm=%r&service=%s"


def backend(url: str, mech_options: str = "", **options) -> Backend:
    return Backend(Config(mech_options=mech_options), {"url": url, "data": FORM, **options})


def ask(b: Backend, login: str, password: bytes, realm: str = "", service: str = "smtp"):
    return asyncio.run(b.authenticate(Request(login, password, service, realm)))


def test_good_wrong_and_unknown(form_server):
    b = backend(form_server.url())
    for login, password in USERS.items():
        assert ask(b, login, password).result is Result.OK, login
    assert ask(b, "alice", b"wrong-pw").result is Result.FAIL  # 403
    unknown = ask(b, "nosuchuser", b"alice-pw")  # 404: any 4xx is a NO
    assert unknown.result is Result.FAIL and unknown.reason == "HTTP 404 Not Found"
    assert ask(backend(form_server.url("/login200")), "alice", b"alice-pw").result is Result.OK
    assert ask(backend(form_server.url("/continue")), "alice", b"alice-pw").result is Result.OK


def test_every_token_is_url_encoded(form_server):
    b = backend(form_server.url())
    password = USERS["jörg"]
    before = len(form_server.bodies)
    assert ask(b, "jörg", password, realm="ex ample&org", service="s=1").result is Result.OK
    body = form_server.bodies[before]
    assert form_fields(body) == {b"user": "jörg".encode(), b"pass": password,
                                 b"realm": b"ex ample&org", b"service": b"s=1"}
    # only letters, digits and %XX: no raw separator, space, plus or line break leaks through
    assert body.count(b"&") == 3 and body.count(b"=") == 4
    assert not set(body) & set(b" +\r\n") and max(body) < 0x80


def test_percent_tokens_as_saslauthd_expands_them(form_server):
    b = Backend(Config(), {"url": form_server.url(), "data": "user=%u&pass=%p&x=%%u%q%"})
    before = len(form_server.bodies)
    assert ask(b, "alice", b"alice-pw").result is Result.OK
    assert form_server.bodies[before] == b"user=alice&pass=alice%2Dpw&x=%u%q%"


def test_server_errors_redirects_and_timeouts_are_temporary(form_server):
    for path, text in (("/error", "HTTP 500"), ("/redirect", "redirects are not followed")):
        answer = ask(backend(form_server.url(path)), "alice", b"alice-pw")
        assert answer.result is Result.TEMPFAIL and text in answer.reason
    slow = ask(backend(form_server.url("/slow"), timeout=0.5), "alice", b"alice-pw")
    assert slow.result is Result.TEMPFAIL and "timed out" in slow.reason


def test_server_down_is_a_temporary_failure():
    answer = ask(backend(f"http://127.0.0.1:{free_port()}/login"), "alice", b"alice-pw")
    assert answer.result is Result.TEMPFAIL and "connection refused" in answer.reason


def test_https_with_the_test_ca(https_form_server, ca):
    b = backend(https_form_server.url(), ca_file=str(ca.ca_cert))
    assert ask(b, "alice", b"alice-pw").result is Result.OK
    assert ask(b, "alice", b"wrong").result is Result.FAIL
    untrusted = ask(backend(https_form_server.url()), "alice", b"alice-pw")
    assert untrusted.result is Result.TEMPFAIL and "certificate" in untrusted.reason


def test_saslauthd_conf_keys(form_server, tmp_path):
    conf = tmp_path / "saslauthd.conf"
    conf.write_text("ldap_servers: ldap://ldap.example.org/\n"  # another mechanism's key
                    "httpform_host: 127.0.0.1\n"
                    f"httpform_port: {form_server.port}\n"
                    "httpform_uri: /login\n"
                    "httpform_data: user=%u&pass=%p\n")
    b = Backend(Config(mech_options=str(conf)), {})
    assert ask(b, "alice", b"alice-pw").result is Result.OK
    assert ask(b, "alice", b"nope").result is Result.FAIL
    conf.write_text(conf.read_text() + "httpform_urii: /x\n")
    with pytest.raises(ConfigError, match="line 6: unknown key httpform_urii; did you mean "
                                          "httpform_uri"):
        Backend(Config(mech_options=str(conf)), {})


@pytest.mark.csaslauthd
def test_through_the_daemon_with_testsaslauthd(daemon_factory, form_server):
    need("testsaslauthd")
    d = daemon_factory(args=["-a", "httpform", "-V"],
                       config={"httpform": {"url": form_server.url(), "data": FORM},
                               **NO_THROTTLE})
    assert testsaslauthd(d.mux, "alice", "alice-pw").stdout.strip() == '0: OK "Success."'
    assert testsaslauthd(d.mux, "jörg", USERS["jörg"].decode()).returncode == 0
    assert testsaslauthd(d.mux, "alice", "wrong-pw").returncode == 255
    assert testsaslauthd(d.mux, "nosuchuser", "alice-pw").returncode == 255
    assert [(e["login"], e["result"], e["backend"]) for e in d.audit()] == [
        ("alice", "ok", "httpform"), ("jörg", "ok", "httpform"),
        ("alice", "fail", "httpform"), ("nosuchuser", "fail", "httpform")]


@pytest.mark.csaslauthd
def test_server_down_through_the_daemon(daemon_factory):
    need("testsaslauthd")
    url = f"http://127.0.0.1:{free_port()}/login"
    d = daemon_factory(args=["-a", "httpform"],
                       config={"httpform": {"url": url, "data": FORM}, **NO_THROTTLE})
    assert testsaslauthd(d.mux, "alice", "alice-pw").returncode == 255
    assert [e["result"] for e in d.audit()] == ["tempfail"]


def test_a_form_server_that_goes_away(daemon_factory):
    # connected per login: a server that goes away costs a temporary failure, nothing more
    server = FormServer().start()
    d = daemon_factory(args=["-a", "httpform"],
                       config={"httpform": {"url": server.url(), "data": FORM}, **NO_THROTTLE})
    assert d.ask("alice", "alice-pw") == "OK"
    server.stop()
    assert d.ask("alice", "alice-pw").startswith("NO")
    assert [e["result"] for e in d.audit()] == ["ok", "tempfail"]
