"""kerberos5 against a real MIT KDC (tests/helpers/kdc.py): the backend directly, then
through the daemon with the real testsaslauthd."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from harness import need, testsaslauthd
from kdc import KDC, REALM, USERS

from saslauthpy.backends.base import Result
from saslauthpy.backends.kerberos5 import Backend
from saslauthpy.config import Config
from saslauthpy.errors import ConfigError
from saslauthpy.protocol import Request

pytestmark = pytest.mark.timeout(180)
NO_THROTTLE = {"throttle": {"enabled": False}}


@pytest.fixture
def krb5_env(kdc, monkeypatch):
    """libkrb5 in this process reads the test KDC's krb5.conf."""
    monkeypatch.setenv("KRB5_CONFIG", str(kdc.krb5_conf))
    monkeypatch.delenv("KRB5_KTNAME", raising=False)
    return kdc


def backend(kdc: KDC, mech_options: str = "", **options) -> Backend:
    b = Backend(Config(mech_options=mech_options), {"keytab": str(kdc.keytab), **options})
    b.open()
    return b


def ask(b: Backend, login: str, password: str, realm: str = "", service: str = "imap"):
    return b.check(Request(login, password.encode(), service, realm))


def test_good_wrong_unknown_expired_locked(krb5_env):
    b = backend(krb5_env)
    assert b.realm == REALM
    assert ask(b, "alice", USERS["alice"]).result is Result.OK
    assert ask(b, "jörg", USERS["jörg"]).result is Result.OK
    assert ask(b, "alice", "wrong-pw").result is Result.FAIL
    assert ask(b, "alice", USERS["alice"][:-1]).result is Result.FAIL
    assert ask(b, "nosuchuser", "x").result is Result.UNKNOWN
    expired = ask(b, "expired", USERS["expired"])
    assert expired.result is Result.FAIL and expired.reason == "Password expired"
    locked = ask(b, "locked", USERS["locked"])
    assert locked.result is Result.FAIL and "locked" in locked.reason


def test_realms(krb5_env):
    b = backend(krb5_env)
    assert ask(b, "alice", USERS["alice"], realm=REALM).result is Result.OK
    assert ask(b, f"alice@{REALM}", USERS["alice"]).result is Result.OK
    # saslauthd -r joins login@realm and still passes the realm: not appended twice here
    assert ask(b, f"alice@{REALM}", USERS["alice"], realm=REALM).result is Result.OK
    # another realm is not this host's: unknown, no KDC asked
    other = ask(b, "alice", USERS["alice"], realm="OTHER.TEST")
    assert other.result is Result.UNKNOWN and "not this host's" in other.reason
    assert ask(b, "alice", USERS["alice"], realm=REALM.lower()).result is Result.UNKNOWN
    up = backend(krb5_env, uppercase_realm=True)
    assert ask(up, "alice", USERS["alice"], realm=REALM.lower()).result is Result.OK
    assert ask(b, "a@b@c", "x").result is Result.UNKNOWN


def test_instances_from_saslauthd_conf(krb5_env, tmp_path):
    conf = tmp_path / "saslauthd.conf"
    conf.write_text(f"ldap_servers: ldap://x/\nkrb5_keytab: {krb5_env.keytab}\n"
                    "krb5_imap_instance: mail\nkrb5_conv_krb4_instance: yes\n")
    b = Backend(Config(mech_options=str(conf)), {})
    b.open()
    pw = USERS["carol/mail"]
    assert ask(b, "carol", pw, service="imap").result is Result.OK  # carol/mail
    assert ask(b, "carol/mail", pw, service="imap").result is Result.OK
    assert ask(b, "carol.mail", pw, service="smtp").result is Result.OK  # krb4 style
    assert ask(b, "carol", pw, service="smtp").result is Result.UNKNOWN  # carol@ has no key
    refused = ask(b, "carol/admin", pw, service="imap")
    assert refused.result is Result.FAIL and "allows only instance mail" in refused.reason
    conf.write_text(conf.read_text() + "krb5_keytabb: /x\n")
    with pytest.raises(ConfigError, match="line 5: unknown key krb5_keytabb; did you mean "
                                          "krb5_keytab"):
        Backend(Config(mech_options=str(conf)), {})


def test_the_keytab_is_checked_at_start(krb5_env, tmp_path):
    with pytest.raises(ConfigError, match="has no usable key for host/.*ktadd -k"):
        backend(krb5_env, keytab=str(tmp_path / "missing.keytab"))
    with pytest.raises(ConfigError, match="no usable key for imap/"):
        backend(krb5_env, verify_principal="imap")


def test_kdc_down_is_a_temporary_failure(krb5_env):
    b = backend(krb5_env)
    krb5_env.stop()
    try:
        answer = ask(b, "alice", USERS["alice"])
    finally:
        krb5_env.start()
    assert answer.result is Result.TEMPFAIL and "KDC" in answer.reason
    assert ask(b, "alice", USERS["alice"]).result is Result.OK  # back


def test_a_kdc_that_never_answers_is_a_temporary_failure(tmp_path, monkeypatch, kdc):
    # a port that takes UDP and TCP and never replies: libkrb5 1.20 waits about 30 s, the
    # login is answered after [kerberos5] timeout all the same
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.create_server(("127.0.0.1", port))
    conf = tmp_path / "krb5.conf"
    conf.write_text(kdc.krb5_conf.read_text().replace(f"127.0.0.1:{kdc.port}",
                                                      f"127.0.0.1:{port}"))
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    b = backend(kdc, timeout=1.0)
    try:
        started = time.monotonic()
        answer = asyncio.run(b.authenticate(Request("alice", b"alice-pw", "imap")))
        took = time.monotonic() - started
    finally:
        b.close()
        udp.close()  # libkrb5, still trying in its thread, now gets refused at once
        tcp.close()
    assert answer.result is Result.TEMPFAIL and "no answer within 1.0 s" in answer.reason
    assert took < 10  # not libkrb5's 30 s


def test_a_spoofed_kdc_cannot_say_yes(tmp_path, monkeypatch, kdc):
    # Same realm, same user and password, but its own host key: the AS exchange succeeds,
    # the keytab check against the real KDC's keytab must not.
    spoof = KDC(tmp_path / "spoof").start()
    try:
        monkeypatch.setenv("KRB5_CONFIG", str(spoof.krb5_conf))
        answer = ask(backend(kdc), "alice", USERS["alice"])
        assert answer.result is Result.TEMPFAIL and "keytab check failed" in answer.reason
        # control: with the keytab that matches the answering KDC the same login is OK
        assert ask(backend(spoof), "alice", USERS["alice"]).result is Result.OK
    finally:
        spoof.stop()


@pytest.mark.csaslauthd
def test_through_the_daemon_with_testsaslauthd(daemon_factory, kdc):
    need("testsaslauthd")
    d = daemon_factory(args=["-a", "kerberos5", "-V"], config=NO_THROTTLE, env=kdc.env)
    assert testsaslauthd(d.mux, "alice", USERS["alice"]).stdout.strip() == '0: OK "Success."'
    assert testsaslauthd(d.mux, "jörg", USERS["jörg"]).returncode == 0
    assert testsaslauthd(d.mux, "alice", "wrong-pw").returncode == 255
    assert testsaslauthd(d.mux, "nosuchuser", "x").returncode == 255
    assert testsaslauthd(d.mux, "alice", USERS["alice"], realm=REALM).returncode == 0
    assert [(e["login"], e["result"]) for e in d.audit()] == [
        ("alice", "ok"), ("jörg", "ok"), ("alice", "fail"), ("nosuchuser", "unknown"),
        ("alice", "ok")]
    kdc.stop()
    try:
        assert testsaslauthd(d.mux, "alice", USERS["alice"]).returncode == 255
    finally:
        kdc.start()
    assert d.audit()[-1]["result"] == "tempfail"


def test_a_missing_keytab_stops_the_daemon(daemon_factory, kdc, tmp_path):
    env = {**kdc.env, "KRB5_KTNAME": f"FILE:{tmp_path / 'none.keytab'}"}
    d = daemon_factory(args=["-a", "kerberos5"], env=env, wait=False)
    assert d.proc.wait(30) == 1
    assert "has no usable key for host/" in d.stderr() and not d.mux.exists()
