"""Security properties of the ldap backend against a real slapd.

- A user bind never goes out with an empty DN: that is an anonymous bind, which slapd
  (like most servers) accepts, so it would turn a login into OK.
- sizeLimitExceeded (result code 4) means "several entries match": an ambiguous login,
  whatever ``ldap_size_limit`` is (0 = none, so the server's own limit answers).
- No copy of a user's password stays in memory once the login is answered, with the
  connections still pooled (checked by scanning the process's memory: ``memscan``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import ldap
import pytest
from ldap_server import BASE_DN, PEOPLE_DN, SERVICE_DN, SERVICE_PW, USERS, Slapd, user_dn
from memscan import scan_env

from saslauthpy.backends.base import Result

HELPERS = Path(__file__).resolve().parents[2] / "helpers"
SERVICE = f"ldap_bind_dn: {SERVICE_DN}\nldap_password: {SERVICE_PW}\n"


def base(slapd: Slapd, extra: str = "") -> str:
    return f"ldap_servers: {slapd.uri}\nldap_search_base: {BASE_DN}\n{extra}"


def test_anonymous_bind_is_accepted_by_the_server(slapd):
    """What the tests below guard against: slapd says yes to an empty DN."""
    conn = ldap.initialize(slapd.uri)
    try:
        conn.simple_bind_s("", "")
        assert conn.whoami_s() == ""
    finally:
        conn.unbind_s()


@pytest.mark.parametrize("template", ["%d", "%1", "%R%d"])
def test_fastbind_template_that_expands_to_nothing_is_refused(slapd, backend, template):
    """A login without a domain makes ``%d`` empty: no anonymous bind, whatever password."""
    b = backend(base(slapd, f"ldap_auth_method: fastbind\nldap_filter: {template}\n"))
    for password in ("alice-secret", "anything"):
        answer = b.answer("alice", password)
        assert answer.result is Result.FAIL and "DN is empty" in answer.reason


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A slapd whose own size limit is one entry per search."""
    server = Slapd(tmp_path_factory.mktemp("limited"), sizelimit=1).start()
    yield server
    server.stop()


@pytest.mark.parametrize("size_limit", [0, 1, 5])
def test_size_limit_exceeded_is_an_ambiguous_login(limited, backend, size_limit):
    """``twin`` has two entries; every people entry matches the second filter.  With
    ``ldap_size_limit: 0`` slapd's own limit (1) answers sizeLimitExceeded: still no
    login, never an anonymous bind."""
    for filt in ("(uid=%u)", "(|(uid=%u)(objectClass=inetOrgPerson))"):
        b = backend(base(limited, SERVICE + f"ldap_size_limit: {size_limit}\n"
                         f"ldap_filter: {filt}\n"))
        for login, password in (("twin", "twin-secret"), ("twin", "wrong"),
                                ("alice", "wrong")):
            if login == "alice" and filt == "(uid=%u)":
                continue  # one match: a plain wrong password
            answer = b.answer(login, password)
            assert answer.result is Result.UNKNOWN, (filt, login, password, answer)
            assert "several directory entries match" in answer.reason
    b = backend(base(limited, SERVICE + f"ldap_size_limit: {size_limit}\n"))
    assert b.answer("alice", "alice-secret").result is Result.OK  # one match is fine


# -- no password left in memory

CHILD = """
import asyncio, json, os, sys
sys.path.insert(0, {helpers!r})
import memscan
from saslauthpy.backends.ldap import Backend
from saslauthpy.config import Config
from saslauthpy.protocol import Request

conf, login, mode = sys.argv[1:4]
password = os.read(0, 4096)
half = len(password) // 2
first, second = password[:half], password[half:]
results = []
if mode == "interactive":  # python-ldap's own SASL bind, for contrast
    import ldap, ldap.sasl
    conn = ldap.initialize(sys.argv[4])
    conn.sasl_interactive_bind_s("", ldap.sasl.digest_md5(login, password.decode()))
    results.append(conn.whoami_s())
else:
    backend = Backend(Config(mech_options=conf, threads=2), {{}})
    backend.open()
    loop = asyncio.new_event_loop()
    for _ in range(3):
        answer = loop.run_until_complete(backend.authenticate(Request(login, password, "imap")))
        results.append(answer.result.value)
del password
print(json.dumps({{"results": results, "copies": memscan.copies(first, second)}}))
"""


def scan_child(conf: Path, login: str, password: bytes, mode: str = "backend",
               uri: str = "") -> dict:
    """Run logins in a child process, then list the copies of ``password`` it still has."""
    code = CHILD.format(helpers=str(HELPERS))
    res = subprocess.run([sys.executable, "-c", code, str(conf), login, mode, uri],
                         input=password, capture_output=True, env=scan_env(), timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def random_password(slapd):
    """dave's password, replaced by a long random one (cleartext: simple binds, custom
    and DIGEST-MD5 all check it)."""
    password = secrets.token_hex(24)
    slapd.modify(f"dn: {user_dn('dave')}\nchangetype: modify\nreplace: userPassword\n"
                 f"userPassword: {password}\n")
    yield password.encode()
    slapd.modify(f"dn: {user_dn('dave')}\nchangetype: modify\nreplace: userPassword\n"
                 f"userPassword: {USERS['dave']}\n")


DIGEST = "ldap_use_sasl: yes\nldap_mech: DIGEST-MD5\n"
METHODS = {
    "bind": SERVICE,
    "custom": SERVICE + "ldap_auth_method: custom\n",
    "fastbind": f"ldap_auth_method: fastbind\nldap_filter: uid=%U,{PEOPLE_DN}\n",
    "sasl-fastbind": DIGEST,
}


@pytest.mark.parametrize("method", METHODS)
def test_no_copy_of_the_password_stays_in_memory(method, slapd, random_password, tmp_path):
    conf = tmp_path / "saslauthd.conf"
    conf.write_text(base(slapd, METHODS[method]))
    out = scan_child(conf, "dave", random_password)
    assert out["results"] == ["ok"] * 3
    assert out["copies"] == []


def test_the_memory_scan_finds_what_python_ldap_keeps(slapd, random_password, tmp_path):
    """The contrast that makes the test above meaningful: python-ldap's
    ``sasl_interactive_bind_s`` strdup()s the password and never frees it."""
    out = scan_child(tmp_path / "unused.conf", "dave", random_password, mode="interactive",
                     uri=slapd.uri)
    assert out["results"] == [f"dn:{user_dn('dave')}"]
    assert out["copies"], "python-ldap no longer keeps the password: update docs/ldap.md"
