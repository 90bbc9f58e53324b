"""What each pytest marker of the suite needs, and how to tell whether this machine has it.

A test carries a marker for each thing it needs that a plain checkout does not have (root,
a database, a program): per area (``pytestmark`` in the area's conftest.py), per test, or
through a fixture it uses (``FIXTURES``: a test that asks for ``pg_url`` needs PostgreSQL).
tests/conftest.py checks them before each test: locally a test whose need is missing is
skipped with the reason; under CI (``CI=true``), where .ci/run installed everything, it
fails (``harness.missing``).  ``python3 -m pytest -m "not slapd"`` leaves a part out.

The markers are registered in pyproject.toml; tests/unit/test_markers.py checks that the
two lists agree.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import socket
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from harness import missing

Check = Callable[[], str | None]  # None when the need is met, else why not


def program(*names: str, hint: str) -> Check:
    def check() -> str | None:
        absent = [n for n in names if not (shutil.which(n) or os.access(f"/usr/sbin/{n}",
                                                                         os.X_OK))]
        return f"{', '.join(absent)} not installed: {hint}" if absent else None
    return check


def port(what: str, number: int, hint: str) -> Check:
    def check() -> str | None:
        try:
            socket.create_connection(("127.0.0.1", number), timeout=2).close()
        except OSError as exc:
            return f"{what} does not answer on 127.0.0.1:{number} ({exc.strerror}): {hint}"
        return None
    return check


def path(what: Path, hint: str) -> Check:
    def check() -> str | None:
        return None if what.exists() else f"{what} is missing: {hint}"
    return check


def module(name: str, hint: str) -> Check:
    def check() -> str | None:
        return None if importlib.util.find_spec(name) else (
            f"the Python module {name} is not installed: {hint}")
    return check


def root() -> str | None:
    return None if os.geteuid() == 0 else "needs root (local accounts, PAM, ownership)"


def pam() -> str | None:
    if ctypes.util.find_library("pam") is None:
        return "libpam is not installed: .ci/setup.d/40-system.sh installs it"
    return None if os.path.isdir("/etc/pam.d") else "/etc/pam.d is missing"


def both(*checks: Check) -> Check:
    def check() -> str | None:
        return next((r for r in (c() for c in checks) if r), None)
    return check


# marker -> (what it needs, the check)
REQUIREMENTS: dict[str, tuple[str, Check]] = {
    "root": ("running as root (euid 0)", root),
    "pam": ("libpam and /etc/pam.d", pam),
    "postgres": ("PostgreSQL answering on 127.0.0.1:5432",
                 port("PostgreSQL", 5432, ".ci/setup.d/30-sql.sh starts it")),
    "mariadb": ("MariaDB answering on 127.0.0.1:3306",
                port("MariaDB", 3306, ".ci/setup.d/30-sql.sh starts it")),
    "redis": ("Redis answering on 127.0.0.1:6379",
              port("Redis", 6379, ".ci/setup.d/30-sql.sh starts it")),
    "python_ldap": ("python-ldap importable (the [ldap] extra)",
                    module("ldap", "pip install '.[ldap]' (built on libldap)")),
    "slapd": ("OpenLDAP's slapd, slapadd and the ldap utilities on PATH",
              program("slapd", "slapadd", "ldapsearch", hint=".ci/setup.d/50-ldap.sh")),
    "csaslauthd": ("Cyrus SASL's C saslauthd and testsaslauthd on PATH",
                   program("saslauthd", "testsaslauthd", hint="apt-get install sasl2-bin")),
    "sasldb": ("saslpasswd2 and sasldblistusers2 on PATH",
               program("saslpasswd2", "sasldblistusers2", hint="apt-get install sasl2-bin")),
    "postfix": ("Postfix and swaks on PATH",
                program("postfix", "swaks", hint=".ci/setup.d/60-deploy.sh")),
    "exim": ("Exim unpacked under /opt/saslauthpy-test/exim4",
             path(Path("/opt/saslauthpy-test/exim4/usr/sbin/exim4"),
                  ".ci/setup.d/65-exim.sh unpacks exim4-daemon-heavy there")),
    "dovecot": ("Dovecot (dovecot, doveadm) on PATH",
                program("dovecot", "doveadm", hint=".ci/setup.d/55-mechs.sh")),
    "cyrus": ("Cyrus IMAP's master", path(Path("/usr/lib/cyrus/bin/master"),
                                          ".ci/setup.d/60-deploy.sh installs cyrus-imapd")),
    "kdc": ("MIT Kerberos' krb5kdc, kdb5_util and kadmin.local on PATH",
            program("krb5kdc", "kdb5_util", "kadmin.local", hint=".ci/setup.d/55-mechs.sh")),
    "container": ("dpkg-buildpackage, dh-virtualenv and systemd-nspawn (the Debian package "
                  "built and booted)",
                  both(root, program("dpkg-buildpackage", "dh_virtualenv", "systemd-nspawn",
                                     "nsenter", hint=".ci/setup.d/80-debian.sh"))),
}

# fixture -> the markers of every test that uses it
FIXTURES: dict[str, tuple[str, ...]] = {
    "pg_url": ("postgres",), "my_url": ("mariadb",),
    # servers of the test's own, run as the database's system user
    "private_pg": ("root", "postgres"), "private_mariadb": ("root", "mariadb"),
    "redis_prefix": ("redis",),
    "slapd": ("slapd",), "sasl_slapd": ("slapd",),
    "accounts": ("root",), "account": ("root",), "service": ("root", "pam"),
    "devlog": ("root",),  # a private /dev/log in a mount namespace (unshare)
    "kdc": ("kdc",), "krb5_env": ("kdc",),
    "dovecot": ("root", "dovecot"),  # Dovecot IMAP drops to its own users
    "c_daemon": ("csaslauthd",),
    "deb": ("container",), "box": ("container",),
    "postfix": ("postfix",), "exim": ("exim",), "imap": ("cyrus",),
    "reference_hashes": ("dovecot",),  # doveadm pw (and openssl, mkpasswd)
}

# area (the folder under tests/integration) -> the markers of all its tests
AREAS: dict[str, tuple[str, ...]] = {
    "ldap": ("python_ldap", "slapd"),
    "system": ("root",),  # local accounts, shadow, PAM, the C saslauthd's sasldb
    "deploy": ("root",),  # Postfix, Cyrus, systemd units: their own users reach the socket
    "debian": ("container",),
    "bench": ("root", "csaslauthd"),
}

# parametrised fixtures (one test on each database, or mechanism) -> parameter -> its
# markers (the fixture asks for the parameter's own fixture only when the test runs)
PARAMS: dict[str, dict[str, tuple[str, ...]]] = {
    "server_url": {"postgresql": FIXTURES["pg_url"], "mariadb": FIXTURES["my_url"]},
    "any_url": {"postgresql": FIXTURES["pg_url"], "mariadb": FIXTURES["my_url"]},
    "private_server": {"postgresql": FIXTURES["private_pg"],
                       "mariadb": FIXTURES["private_mariadb"]},
    "mech": {"rimap": FIXTURES["dovecot"], "kerberos5": FIXTURES["kdc"]},  # mechs/
}


def markers_of(path: Path, fixtures: list[str], params: dict[str, object]) -> list[str]:
    """The markers a test (in file ``path``) gets from its area and from the fixtures it
    uses (and their parameters)."""
    parts = path.parts
    area = parts[parts.index("integration") + 1] if "integration" in parts[:-1] else ""
    out = list(AREAS.get(area, ()))
    out += [m for f in fixtures for m in FIXTURES.get(f, ())]
    for name, value in params.items():
        out += PARAMS.get(name, {}).get(value, ()) if isinstance(value, str) else ()
    return list(dict.fromkeys(out))


@cache
def unmet(marker: str) -> str | None:
    """Why this machine lacks what ``marker`` needs, or None (asked once per run)."""
    return REQUIREMENTS[marker][1]()


def check(markers: Iterable[str]) -> None:
    """Skip the calling test (fail it under CI) for the first of ``markers`` whose need
    this machine lacks; markers that name no need are passed over."""
    for name in dict.fromkeys(markers):
        if name in REQUIREMENTS and (reason := unmet(name)):
            missing(f"[{name}] {reason}")
