"""Side by side with the C saslauthd (sasl2-bin 2.1.28) for the mechanisms it has here:
rimap against the same Dovecot and kerberos5 against the same KDC and keytab (Debian's
saslauthd is built without httpform).  Same requests to both daemons; both must give the
answer each row expects.  Where saslauthpy answers differently on purpose, the test says so.
"""

from __future__ import annotations

import pytest
from harness import ask, need
from imap_server import USERS as IMAP
from kdc import KDC, REALM
from kdc import USERS as KRB
from ldap_server import free_port
from reference import CSaslauthd, compare, verdict

pytestmark = pytest.mark.timeout(240)
NO_THROTTLE = {"throttle": {"enabled": False}}


def both(tmp_path, daemon_factory, mech, args=(), env=None):
    need("saslauthd")
    ours = daemon_factory(args=["-a", mech, *args], config=NO_THROTTLE, env=env)
    return ours, CSaslauthd(tmp_path, mech, args=tuple(args), env=env)


@pytest.mark.csaslauthd
def test_rimap_same_answers_as_c_saslauthd(tmp_path, daemon_factory, dovecot):
    rows = [
        ("good", "alice", IMAP["alice"], "imap", "", "OK"),
        ("wrong", "alice", "wrong-pw", "imap", "", "NO"),
        ("unknown", "nosuchuser", IMAP["alice"], "imap", "", "NO"),
        ("password prefix", "alice", IMAP["alice"][:-1], "imap", "", "NO"),
        ('quotes and backslashes', "quoted", IMAP["quoted"], "smtp", "", "OK"),
        ("8-bit password", "unicode", IMAP["unicode"], "imap", "", "OK"),
        ("8-bit login", "jörg", IMAP["jörg"], "imap", "", "OK"),
        ("realm is not used", "alice", IMAP["alice"], "imap", "other.example", "OK"),
        ("Dovecot folds the case", "ALICE", IMAP["alice"], "imap", "", "OK"),
        ("empty service", "alice", IMAP["alice"], "", "", "OK"),
    ]
    ours, c = both(tmp_path, daemon_factory, "rimap", ["-O", f"127.0.0.1/{dovecot.imap_port}"])
    with c:
        assert compare(c.mux, ours.mux, rows) == []


@pytest.mark.csaslauthd
def test_rimap_server_down_both_say_no(tmp_path, daemon_factory):
    ours, c = both(tmp_path, daemon_factory, "rimap", ["-O", f"127.0.0.1/{free_port()}"])
    with c:
        assert compare(c.mux, ours.mux, [("down", "alice", "alice-pw", "imap", "", "NO")]) == []
    assert ours.audit()[0]["result"] == "tempfail"  # ours also says why, and never caches it


@pytest.mark.csaslauthd
def test_kerberos5_same_answers_as_c_saslauthd(tmp_path, daemon_factory, kdc):
    rows = [
        ("good", "alice", KRB["alice"], "imap", "", "OK"),
        ("wrong", "alice", "wrong-pw", "imap", "", "NO"),
        ("unknown", "nosuchuser", KRB["alice"], "imap", "", "NO"),
        ("password prefix", "alice", KRB["alice"][:-1], "imap", "", "NO"),
        ("8-bit name and password", "jörg", KRB["jörg"], "smtp", "", "OK"),
        ("realm given", "alice", KRB["alice"], "imap", REALM, "OK"),
        ("realm in the login", f"alice@{REALM}", KRB["alice"], "imap", "", "OK"),
        ("lower-case realm", "alice", KRB["alice"], "imap", REALM.lower(), "NO"),
        ("another realm", "alice", KRB["alice"], "imap", "OTHER.TEST", "NO"),
        ("principals are case-sensitive", "ALICE", KRB["alice"], "imap", "", "NO"),
        ("an instance", "carol/mail", KRB["carol/mail"], "imap", "", "OK"),
        ("expired password", "expired", KRB["expired"], "imap", "", "NO"),
        ("locked principal", "locked", KRB["locked"], "imap", "", "NO"),
        ("empty service", "alice", KRB["alice"], "", "", "OK"),
    ]
    ours, c = both(tmp_path, daemon_factory, "kerberos5", env=kdc.env)
    with c:
        assert compare(c.mux, ours.mux, rows) == []
        # On purpose: saslauthd -r makes alice@R@R for kerberos5 (cyrus-sasl#832) and says
        # NO; saslauthpy does not append the realm twice.
        joined = (f"alice@{REALM}", KRB["alice"], "imap", REALM)
        assert verdict(ask(c.mux, *joined)) == "NO" and verdict(ours.ask(*joined)) == "OK"


@pytest.mark.csaslauthd
def test_kerberos5_kdc_down_both_say_no(tmp_path, daemon_factory, kdc):
    ours, c = both(tmp_path, daemon_factory, "kerberos5", env=kdc.env)
    with c:
        kdc.stop()
        try:
            rows = [("KDC down", "alice", KRB["alice"], "imap", "", "NO")]
            assert compare(c.mux, ours.mux, rows) == []
        finally:
            kdc.start()
    assert ours.audit()[-1]["result"] == "tempfail"


@pytest.mark.csaslauthd
def test_kerberos5_a_spoofed_kdc_cannot_say_yes_to_either(tmp_path, daemon_factory, kdc):
    # krb5.conf points at another KDC of the same realm, same user and password, its own
    # host key; the keytab is the real KDC's: the keytab check must fail in both daemons
    spoof = KDC(tmp_path / "spoof").start()
    try:
        env = {**kdc.env, "KRB5_CONFIG": str(spoof.krb5_conf)}
        ours, c = both(tmp_path, daemon_factory, "kerberos5", env=env)
        with c:
            rows = [("spoofed KDC", "alice", KRB["alice"], "imap", "", "NO")]
            assert compare(c.mux, ours.mux, rows) == []
        assert "keytab check failed" in ours.audit()[0]["reason"]
    finally:
        spoof.stop()

