"""rimap, httpform and kerberos5 in the daemon like every other backend: the cache answers a
known good password while the server is down, a server that is down is never cached, the
throttle slows down guessing, the audit names the backend, and no password ever reaches a
log, even with -V."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import form_server
import imap_server
import kdc as kdc_helper
import pytest
from form_server import FormServer

pytestmark = pytest.mark.timeout(180)


@dataclass
class Mech:
    name: str
    args: list[str]
    config: dict[str, Any]
    env: dict[str, str] | None
    login: str
    password: str
    stop: Any
    start: Any


@pytest.fixture(params=["rimap", "httpform", "kerberos5"])
def mech(request, tmp_path):
    if request.param == "rimap":
        server = request.getfixturevalue("dovecot")
        yield Mech("rimap", ["-O", f"127.0.0.1/{server.imap_port}"], {}, None,
                   "unicode", imap_server.USERS["unicode"], server.stop, server.start)
    elif request.param == "httpform":
        server = FormServer().start()
        yield Mech("httpform", [], {"httpform": {"url": server.url(), "data": "user=%u&pass=%p"}},
                   None, "jörg", form_server.USERS["jörg"].decode(), server.stop, None)
        server.stop()
    else:
        server = request.getfixturevalue("kdc")
        yield Mech("kerberos5", [], {}, server.env, "jörg", kdc_helper.USERS["jörg"],
                   server.stop, server.start)


def test_cache_throttle_audit_and_no_password_in_any_log(daemon_factory, mech):
    config = {"cache": {"enabled": True}, "audit": {"syslog": True},  # -f -V: on stderr
              "throttle": {"base_delay": 0.2, "max_delay": 0.4}, **mech.config}
    d = daemon_factory(args=["-a", mech.name, "-V", *mech.args], config=config, env=mech.env)
    guesses = [f"guess-{i}-{mech.name}" for i in range(3)]
    assert d.ask(mech.login, mech.password) == "OK"
    for guess in guesses:
        assert d.ask(mech.login, guess) == "NO authentication failed"
    # the second and third guess waited: a penalty per user, as for every backend
    assert [e["delay"] > 0 for e in d.audit()[1:]] == [False, True, True]
    mech.stop()
    try:
        assert d.ask(mech.login, mech.password) == "OK"  # from the cache
        down = d.ask(mech.login, "another-guess")  # not cached: the backend is asked, and down
        assert down.startswith("NO [ALERT]")
        again = d.ask(mech.login, "another-guess")
        assert again.startswith("NO [ALERT]")  # a temporary failure is never cached
    finally:
        if mech.start:
            mech.start()
    entries = d.audit()
    assert entries[4]["cache_hit"] and entries[4]["result"] == "ok"
    assert [e["result"] for e in entries[5:]] == ["tempfail", "tempfail"]
    assert {e["backend"] for e in entries if not e["cache_hit"]} == {mech.name}
    logs = d.stderr() + d.audit_path.read_text()
    assert logs.count(mech.login) >= 2 * len(entries)  # every decision is in both logs
    for secret in [mech.password, "another-guess", *guesses]:
        assert secret not in logs
