"""OpenLDAP pass-through: slapd checks ``userPassword: {SASL}user@realm`` through our socket.

slapd's libsasl reads its application file ``slapd.conf`` (``pwcheck_method: saslauthd``,
``saslauthd_path: ...``).  Debian's slapd gives libsasl a fixed search path,
``/etc/ldap/sasl2:/usr/lib/sasl2`` (measured with strace: ``SASL_CONF_PATH`` is ignored
and no slapd.conf directive changes it), so the test runs slapd in a private mount
namespace (``unshare --mount``) with a temporary directory bind-mounted over
/etc/ldap/sasl2: the system's file is never read or written.
A simple bind (``ldapwhoami -x -D DN -w PW``) to an entry whose userPassword is
``{SASL}login@realm`` is answered by our daemon; slapd names the service ``ldap``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from harness import Daemon
from ldap_server import PEOPLE_DN, Slapd

SLAPD = "/usr/sbin/slapd"
# Debian's slapd hard-codes SASL_CONFIGPATH "/etc/ldap/sasl2:/usr/lib/sasl2".
SYSTEM_SASL_DIR = "/etc/ldap/sasl2"


def dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE_DN}"


ENTRIES = """\
dn: {sam}
changetype: add
objectClass: inetOrgPerson
uid: sam
cn: Sam
sn: Pass-through
userPassword: {{SASL}}sam@example.org

dn: {tess}
changetype: add
objectClass: inetOrgPerson
uid: tess
cn: Tess
sn: No realm
userPassword: {{SASL}}tess
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("saslauthpy")).start()
    d.admin("user", "add", "sam", "--realm", "example.org", password="s4m in LDAP")
    d.admin("user", "add", "tess", password="tess-pw")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def slapd(tmp_path_factory, daemon):
    if not os.path.isdir(SYSTEM_SASL_DIR):
        pytest.fail(f"{SYSTEM_SASL_DIR} is missing: the slapd package creates it")
    sasl_dir = tmp_path_factory.mktemp("sasl2")
    (sasl_dir / "slapd.conf").write_text(
        f"pwcheck_method: saslauthd\nsaslauthd_path: {daemon.mux}\n")
    # A "slapd" first on PATH that enters its own mount namespace, bind-mounts our
    # directory over Debian's SASL config directory and execs the real slapd (same pid).
    wrap_dir = tmp_path_factory.mktemp("bin")
    wrapper = wrap_dir / "slapd"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec unshare --mount --propagation private /bin/sh -c "
        f"'mount --bind \"$0\" {SYSTEM_SASL_DIR} && exec {SLAPD} \"$@\"' "
        f"'{sasl_dir}' \"$@\"\n")
    wrapper.chmod(0o755)
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{wrap_dir}{os.pathsep}{old_path}"
    try:
        server.start()
    finally:
        os.environ["PATH"] = old_path
    try:
        server.modify(ENTRIES.format(sam=dn("sam"), tess=dn("tess")))
        yield server
    finally:
        server.stop()


def whoami(server: Slapd, bind_dn: str, password: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ldapwhoami") or "ldapwhoami"
    return subprocess.run([exe, "-x", "-H", server.uri, "-D", bind_dn, "-w", password],
                          capture_output=True, text=True, timeout=30)


def last(daemon: Daemon, login: str) -> dict:
    return [r for r in daemon.audit() if r.get("login") == login][-1]


def test_right_password_binds(slapd, daemon):
    res = whoami(slapd, dn("sam"), "s4m in LDAP")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"dn:{dn('sam')}"
    rec = last(daemon, "sam")
    assert (rec["service"], rec["realm"], rec["result"]) == ("ldap", "example.org", "ok")


def test_wrong_password_is_invalid_credentials(slapd, daemon):
    res = whoami(slapd, dn("sam"), "s4m in ldap")
    assert res.returncode == 49, res.stdout + res.stderr
    assert "Invalid credentials" in res.stderr
    assert last(daemon, "sam")["result"] == "fail"


def test_sasl_value_without_realm(slapd, daemon):
    assert whoami(slapd, dn("tess"), "tess-pw").returncode == 0
    assert whoami(slapd, dn("tess"), "wrong").returncode == 49
    rec = last(daemon, "tess")
    assert (rec["service"], rec["realm"]) == ("ldap", "")


def test_other_entries_still_use_their_own_hashes(slapd, daemon):
    """Only {SASL} values go to the daemon: a {SSHA} entry is checked by slapd itself."""
    before = len(daemon.audit())
    assert whoami(slapd, dn("alice"), "alice-secret").returncode == 0
    assert len(daemon.audit()) == before


def test_daemon_down_refuses_the_bind(slapd, daemon):
    daemon.stop()
    try:
        res = whoami(slapd, dn("sam"), "s4m in LDAP")
        assert res.returncode != 0
    finally:
        daemon.start()
    assert whoami(slapd, dn("sam"), "s4m in LDAP").returncode == 0
