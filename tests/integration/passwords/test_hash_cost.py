"""Stored hashes whose own parameters ask for too much (a user who can write their own
password hash must not be able to exhaust the root daemon) are refused with a log line,
not computed.  Through the daemon: the SQL table and a real local account."""

from __future__ import annotations

import sqlite3
import time

import pytest
from reference import Accounts

B64_43 = "A" * 43
HUGE = {
    "bcrypt": "$2b$31$" + "a" * 53,
    "sha512crypt": "$6$rounds=999999999$saltsalt$" + "b" * 86,
    "yescrypt": "$y$jFT$" + "c" * 22 + "$" + "d" * 43,  # N = 2^18, r = 32: 1 GiB
    "argon2": "{ARGON2ID}$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHQ$" + B64_43,
    "pbkdf2": "{PBKDF2}$1$saltsalt$999999999$" + "0" * 40,
}


def test_sql_refuses_hashes_beyond_the_cost_limits(daemon_factory, tmp_path):
    d = daemon_factory()
    rows = tmp_path / "users.csv"
    rows.write_text("".join(f'{name},,"{h}"\n' for name, h in HUGE.items()) + "\n")
    refused = d.admin("user", "import", str(rows), check=False)
    assert refused.returncode == 1 and "imported 0" in refused.stdout + refused.stderr
    for scheme in ("bcrypt", "SHA-crypt", "yescrypt", "argon2", "PBKDF2"):
        assert f"refusing a {scheme} hash unchecked" in refused.stderr
    # What a user who may write their own row (or a careless script) can put there anyway.
    with sqlite3.connect(d.tmp / "users.db") as db:
        db.executemany("INSERT INTO saslauthpy_users (login, realm, password, created, changed)"
                       " VALUES (?, '', ?, '2024-01-01', '2024-01-01')", list(HUGE.items()))
    started = time.monotonic()
    for name in HUGE:
        assert d.ask(name, "any-password", "smtp", timeout=20).startswith("NO"), name
    assert time.monotonic() - started < 20  # nothing was computed (bcrypt 31: days)
    log = d.stderr()
    for name, scheme in [("bcrypt", "bcrypt"), ("sha512crypt", "SHA-crypt"),
                         ("yescrypt", "yescrypt"), ("argon2", "argon2"), ("pbkdf2", "PBKDF2")]:
        assert f"user {name!r}: refusing a {scheme} hash unchecked" in log, name
    for h in HUGE.values():
        assert h not in log  # the line names the scheme and the parameter, not the hash
    assert all(r["result"] == "fail" for r in d.audit())


@pytest.mark.root  # local accounts
def test_shadow_refuses_hashes_beyond_the_cost_limits(daemon_factory):
    with Accounts() as accounts:
        user = accounts.add("Cost-good-1")
        accounts.set_hash(user, HUGE["sha512crypt"])
        d = daemon_factory(args=["-a", "shadow"])
        started = time.monotonic()
        assert d.ask(user, "any-password", "smtp", timeout=20).startswith("NO")
        assert time.monotonic() - started < 20
        assert f"shadow: user {user!r}: refusing a SHA-crypt hash unchecked: rounds " \
               "999999999 is beyond the limit" in d.stderr()


@pytest.mark.parametrize("stored", ["$2b$12$" + "a" * 53, "$6$rounds=5000$saltsalt$" + "b" * 86,
                                    "$y$j9T$" + "c" * 22 + "$" + "d" * 43])
def test_usual_costs_are_still_computed(stored):
    from saslauthpy import passwords

    assert passwords.verify(b"x", stored) is False  # computed, and simply wrong
