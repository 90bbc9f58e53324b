"""Side by side with the C saslauthd (sasl2-bin 2.1.28): the same requests to both
daemons, same mechanism, same system files; both must answer the same OK/NO.

Rows: good (SHA-512 and yescrypt), wrong, unknown, empty realm, other realm, expired
account, expired password, locked, a stored value that is not a crypt(3) hash,
upper-case login (and for sasldb: realm rows; sasldb
has no expiry or lock).  Each row also asserts the answer we expect.
"""

from __future__ import annotations

import socket

import pytest
from reference import Accounts, CSaslauthd, PamService, compare, need, run

pytestmark = pytest.mark.timeout(240)
NO_THROTTLE = {"throttle": {"enabled": False}}
GOOD, YES_GOOD = "Good-pw-1", "Yes-pw-2"


def system_rows(acc: Accounts, service: str, check_expiry: bool) -> list[tuple]:
    good = acc.add(GOOD, "SHA512")
    yes = acc.add(YES_GOOD, "YESCRYPT")
    expired = acc.add(GOOD)
    acc.expire_account(expired)
    pw_expired = acc.add(GOOD)
    acc.expire_password(pw_expired)
    locked = acc.add(GOOD)
    acc.lock(locked)
    not_crypt = acc.add(GOOD)
    acc.set_hash(not_crypt, "NOLOGIN")  # no crypt(3) setting at all
    plain = acc.add(GOOD)
    acc.set_hash(plain, "{PLAIN}" + GOOD)  # a Dovecot scheme is not crypt(3) either
    no_if_expiry = "NO" if check_expiry else "OK"
    return [
        ("good sha512", good, GOOD, service, "", "OK"),
        ("good yescrypt", yes, YES_GOOD, service, "", "OK"),
        ("wrong", good, "wrong-pw", service, "", "NO"),
        ("unknown", "nosuch" + good, GOOD, service, "", "NO"),
        ("empty realm", good, GOOD, service, "", "OK"),
        ("other realm", good, GOOD, service, "other.example", "OK"),
        ("expired account", expired, GOOD, service, "", no_if_expiry),
        ("expired account, wrong", expired, "wrong-pw", service, "", "NO"),
        ("expired password", pw_expired, GOOD, service, "", no_if_expiry),
        ("locked", locked, GOOD, service, "", "NO"),
        ("stored value not a crypt hash", not_crypt, GOOD, service, "", "NO"),
        ("stored value {PLAIN}", plain, GOOD, service, "", "NO"),
        ("upper-case login", good.upper(), GOOD, service, "", "NO"),
    ]


def assert_same_answers(tmp_path, daemon_factory, mech, rows, config=None, sasldb=None):
    """Start both daemons on ``mech``, ask them every row, require no mismatch."""
    need("saslauthd")
    ours = daemon_factory(args=["-a", mech], config={**NO_THROTTLE, **(config or {})})
    with CSaslauthd(tmp_path, mech, sasldb=sasldb) as c:
        assert compare(c.mux, ours.mux, rows) == []


@pytest.mark.csaslauthd
def test_shadow_same_answers_as_c_saslauthd(tmp_path, daemon_factory, accounts):
    rows = system_rows(accounts, "smtp", check_expiry=True)
    assert_same_answers(tmp_path, daemon_factory, "shadow", rows)


@pytest.mark.csaslauthd
def test_getpwent_same_answers_as_c_saslauthd(tmp_path, daemon_factory, accounts):
    rows = system_rows(accounts, "imap", check_expiry=False)
    # getpwent reads pw_passwd: put each hash into /etc/passwd (a non-shadowed account)
    for name in {r[1] for r in rows if not r[1].startswith("nosuch") and r[1].islower()}:
        accounts.hash_into_passwd(name)
    shadowed = accounts.add(GOOD)  # a normal shadowed account: pw_passwd is "x"
    rows.append(("shadowed account", shadowed, GOOD, "imap", "", "NO"))
    rows.append(("password 'x'", shadowed, "x", "imap", "", "NO"))
    assert_same_answers(tmp_path, daemon_factory, "getpwent", rows)


@pytest.mark.csaslauthd
def test_pam_same_answers_as_c_saslauthd(tmp_path, daemon_factory, accounts):
    with PamService() as service:
        rows = system_rows(accounts, service.name, check_expiry=True)
        good = rows[0][1]
        # an empty service uses the "other" stack for both (Debian: common-auth, pam_unix)
        rows.append(("empty service", good, GOOD, "", "", "OK"))
        rows.append(("empty service, wrong", good, "wrong-pw", "", "", "NO"))
        assert_same_answers(tmp_path, daemon_factory, "pam", rows,
                            config={"pam": {"services": ["*"]}})


@pytest.mark.csaslauthd
@pytest.mark.sasldb
def test_sasldb_same_answers_as_c_saslauthd(tmp_path, daemon_factory):
    need("saslpasswd2")
    db = tmp_path / "sasldb2"
    host = socket.gethostname()
    run("saslpasswd2", "-f", str(db), "-c", "-p", "-u", host, "alice", input="alice-pw")
    run("saslpasswd2", "-f", str(db), "-c", "-p", "-u", "other.example", "bob", input="bob-pw")
    run("saslpasswd2", "-f", str(db), "-c", "-p", "-u", host, "Carol", input="carol-pw")
    rows = [
        ("good, host realm", "alice", "alice-pw", "smtp", host, "OK"),
        ("empty realm = host name", "alice", "alice-pw", "smtp", "", "OK"),
        ("wrong", "alice", "wrong", "smtp", host, "NO"),
        ("unknown", "nosuch", "alice-pw", "smtp", "", "NO"),
        ("other realm", "bob", "bob-pw", "smtp", "other.example", "OK"),
        ("other realm missing", "bob", "bob-pw", "smtp", "", "NO"),
        ("user in another realm", "alice", "alice-pw", "smtp", "other.example", "NO"),
        ("upper-case login", "ALICE", "alice-pw", "smtp", "", "NO"),
        ("login is case-sensitive", "carol", "carol-pw", "smtp", "", "NO"),
        ("mixed-case login", "Carol", "carol-pw", "smtp", "", "OK"),
        ("upper-case realm", "alice", "alice-pw", "smtp", host.upper() + "X", "NO"),
        ("password prefix", "alice", "alice-p", "smtp", "", "NO"),
        ("empty service", "alice", "alice-pw", "", "", "OK"),
    ]
    assert_same_answers(tmp_path, daemon_factory, "sasldb", rows,
                        config={"sasldb": {"path": str(db)}}, sasldb=str(db))
