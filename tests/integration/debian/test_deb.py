"""The Debian package, built from this checkout with ``dpkg-buildpackage -us -uc -b``,
installed with dpkg in a booted Debian 12 container (systemd as PID 1, sasl2-bin beside it),
and run the way an administrator runs it: socket activation, readiness, reload, stop,
restart after a crash, the hardened unit against shadow and PAM, the journal, and
saslauthpy-admin on the configuration in /etc/default/saslauthd."""

from __future__ import annotations

import re
import subprocess

import pytest
from container import Container, build_deb
from harness import need

PW = "s3cret-Pass"
DEFAULTS = "/etc/default/saslauthd"
CONF = "/etc/saslauthpy/saslauthpy.toml"
# One login over the Dovecot auth protocol, as Postfix's smtpd asks (run in the box):
# argv: socket, login, password; prints the server's answer line.
DOVECOT_LOGIN = r"""
import base64, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rwb")
while f.readline() not in (b"DONE\n", b""):
    pass
resp = base64.b64encode(b"\0" + sys.argv[2].encode() + b"\0" + sys.argv[3].encode())
f.write(b"VERSION\t1\t2\nCPID\t4242\nAUTH\t1\tPLAIN\tservice=smtp\tresp=" + resp + b"\n")
f.flush()
print(f.readline().decode().strip())
"""


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    return build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="module")
def box(deb, tmp_path_factory):
    c = Container(tmp_path_factory.mktemp("container"), deb.parent)
    try:
        c.run("dpkg", "-i", f"/mnt/host/{deb.name}", timeout=300)
        yield c
    finally:
        c.stop()


def defaults(box: Container, text: str) -> None:
    """A new /etc/default/saslauthd, and a daemon that reads it (the socket stays)."""
    box.write(DEFAULTS, text)
    box.run("systemctl", "enable", "--now", "saslauthpy.socket")
    box.run("systemctl", "stop", "saslauthpy.service")
    box.run("systemctl", "reset-failed", "saslauthpy.service", check=False)


def ask(box: Container, user: str, password: str, *extra: str) -> subprocess.CompletedProcess:
    return box.run("testsaslauthd", "-u", user, "-p", password, "-s", "smtp", *extra,
                   check=False)


def add_local_user(box: Container, name: str) -> None:
    box.run("useradd", "-M", "-s", "/usr/sbin/nologin", name, check=False)
    box.run("chpasswd", input=f"{name}:{PW}\n")


def test_lintian_finds_no_errors(deb):
    need("lintian")
    res = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)], capture_output=True,
                         text=True, timeout=600)
    errors = [line for line in res.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], "\n".join(errors)


def test_installs_beside_sasl2_bin_with_its_files(box):
    status = box.run("dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Package}\n",
                     "saslauthpy", "sasl2-bin").stdout.split()
    pairs = sorted(zip(status[::2], status[1::2], strict=True))
    assert pairs == [("ii", "sasl2-bin"), ("ii", "saslauthpy")]
    for path in ("/usr/sbin/saslauthpy", "/usr/sbin/testsaslauthpy", "/usr/sbin/saslauthpy-admin",
                 "/usr/libexec/saslauthpy/saslauthpy-env", "/lib/systemd/system/saslauthpy.socket",
                 "/usr/lib/tmpfiles.d/saslauthpy.conf", "/usr/lib/sysusers.d/saslauthpy.conf",
                 "/etc/logrotate.d/saslauthpy", "/usr/share/man/man8/saslauthpy-admin.8.gz"):
        box.run("test", "-e", path)
    conffiles = box.run("cat", "/var/lib/dpkg/info/saslauthpy.conffiles").stdout.split()
    assert "/etc/saslauthpy/saslauthpy.toml" in conffiles
    assert "saslauthpy 0." in box.run("saslauthpy", "-v").stdout
    # every mechanism's modules load, python-ldap's against Debian's libldap included
    box.run("/usr/lib/saslauthpy/bin/python3", "-c",
            "from saslauthpy.backends import MODULES, backend_class\n"
            "for name in MODULES: backend_class(name)")
    # not enabled by the installation: the C saslauthd may own the socket
    assert box.run("systemctl", "is-enabled", "saslauthpy.socket", check=False).stdout.strip() \
        == "disabled"


def test_sysusers_creates_the_sasl_group(box, deb):
    """Without sasl2-bin's group (and its dpkg-statoverride entries), installing the
    package creates it: sysusers.d."""
    for line in box.run("dpkg-statoverride", "--list").stdout.splitlines():
        if line.split()[1] == "sasl":
            box.run("dpkg-statoverride", "--remove", line.split()[3])
    box.run("groupdel", "sasl")
    box.run("dpkg", "-i", f"/mnt/host/{deb.name}", timeout=300)  # reinstall: postinst again
    assert box.run("getent", "group", "sasl").returncode == 0


def test_socket_activation_starts_the_service_on_the_first_connection(box):
    defaults(box, 'MECHANISMS="sql"\nOPTIONS="-c"\n')
    assert box.run("systemctl", "is-active", "saslauthpy.service", check=False).stdout.strip() \
        == "inactive"
    box.run("saslauthpy-admin", "user", "add", "alice", "--password-stdin", input=PW + "\n")
    res = ask(box, "alice", PW)
    assert (res.stdout, res.returncode) == ('0: OK "Success."\n', 0)
    # The first worker answers while the others still start; the unit turns active at
    # READY=1, once every worker serves.
    box.wait_for(lambda: box.show("saslauthpy.service", "ActiveState") == "active", "active")
    assert ask(box, "alice", "wrong").returncode == 255
    mode = box.run("stat", "-c", "%a %G", "/run/saslauthd/mux").stdout.split()
    assert mode == ["660", "sasl"]


def test_type_notify_readiness_and_status(box):
    assert box.show("saslauthpy.service", "Type") == "notify"
    assert box.show("saslauthpy.service", "StatusText") == "serving"  # sd_notify STATUS=
    status = box.run("saslauthpy-admin", "status").stdout
    assert "mechanisms: sql" in status


def test_reload_rereads_the_configuration_in_the_same_process(box):
    pid = box.show("saslauthpy.service", "MainPID")
    toml = box.run("cat", "/etc/saslauthpy/saslauthpy.toml").stdout
    box.write("/etc/saslauthpy/saslauthpy.toml",
              toml.replace("[server]\n", "[server]\nreveal_reasons = true\n"))
    box.run("systemctl", "reload", "saslauthpy.service")
    box.wait_for(lambda: "configuration reloaded" in box.run(
        "journalctl", "-u", "saslauthpy", "-o", "cat", "--no-pager").stdout, "the reload")
    res = box.run("testsaslauthpy", "-v", "-u", "alice", "-p", "wrong", check=False)
    assert res.stdout == '0: NO "authentication failed" (daemon: "NO wrong password")\n'
    assert box.show("saslauthpy.service", "MainPID") == pid
    box.write("/etc/saslauthpy/saslauthpy.toml", toml)
    box.run("systemctl", "reload", "saslauthpy.service")


def test_a_crash_is_restarted_and_the_socket_keeps_clients(box):
    pid = box.show("saslauthpy.service", "MainPID")
    box.run("kill", "-SEGV", pid)
    box.wait_for(lambda: box.show("saslauthpy.service", "NRestarts") == "1", "the restart")
    box.wait_for(lambda: box.show("saslauthpy.service", "ActiveState") == "active", "active")
    assert box.show("saslauthpy.service", "MainPID") != pid
    assert ask(box, "alice", PW).returncode == 0


def test_admin_flushes_the_cache_of_the_daemon_in_the_chrooted_run_directory(box):
    """Debian's chrooted Postfix layout: the daemon's run directory comes from OPTIONS -m;
    saslauthpy-admin reads the same file, reaches that control socket, and a changed
    password stops working at once although the daemon caches (-c)."""
    chroot = "/var/spool/postfix/var/run/saslauthd"
    box.write("/etc/systemd/system/saslauthpy.socket.d/chroot.conf",
              f"[Socket]\nListenStream=\nListenStream={chroot}/mux\n")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "stop", "saslauthpy.socket", "saslauthpy.service")
    defaults(box, f'MECHANISMS="sql"\nOPTIONS="-c -m {chroot}"\n')
    try:
        mux = ["-f", f"{chroot}/mux"]
        assert ask(box, "alice", PW, *mux).returncode == 0
        assert ask(box, "alice", PW, *mux).returncode == 0  # from the cache
        res = box.run("saslauthpy-admin", "user", "passwd", "alice", "--password-stdin",
                      "--json", input="n3w-" + PW + "\n")
        assert '"flushed": 1' in res.stdout
        assert ask(box, "alice", PW, *mux).returncode == 255
        assert ask(box, "alice", "n3w-" + PW, *mux).returncode == 0
        # a daemon stopped without its socket: nothing answers, and the admin says so
        box.run("systemctl", "stop", "saslauthpy.socket", "saslauthpy.service")
        res = box.run("saslauthpy-admin", "user", "passwd", "alice", "--password-stdin",
                      input=PW + "\n", check=False)
        assert res.returncode == 1
        assert f"nothing answers on {chroot}/saslauthpy.control" in res.stderr
        assert "saslauthpy-admin -m DIR cache flush alice" in res.stderr
    finally:
        box.run("rm", "-r", "/etc/systemd/system/saslauthpy.socket.d")
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "stop", "saslauthpy.socket", "saslauthpy.service")
        box.run("systemctl", "start", "saslauthpy.socket")


def test_sasldb_from_etc_default_saslauthd(box):
    """The issue's case: MECHANISMS="sasldb" in /etc/default/saslauthd; saslauthpy-admin
    user add writes the sasldb the daemon reads (Debian's /etc/sasldb2, which the C
    sasldblistusers2 lists), and testsaslauthd gets OK."""
    defaults(box, 'MECHANISMS="sasldb"\nMECH_OPTIONS=""\nOPTIONS="-c"\n')
    res = box.run("saslauthpy-admin", "user", "add", "bob", "--realm", "saslauthpy-test",
                  "--password-stdin", input=PW + "\n")
    assert res.stdout == "added bob@saslauthpy-test\n"
    assert "bob@saslauthpy-test: userPassword" in box.run("sasldblistusers2").stdout
    assert ask(box, "bob", PW, "-r", "saslauthpy-test").returncode == 0
    assert ask(box, "bob", "wrong", "-r", "saslauthpy-test").returncode == 255
    # with pam, users are system accounts: the admin refuses instead of writing elsewhere
    box.write(DEFAULTS, 'MECHANISMS="pam"\n')
    res = box.run("saslauthpy-admin", "user", "add", "carol", "--password-stdin",
                  input=PW + "\n", check=False)
    assert res.returncode == 1 and "checks passwords with pam" in res.stderr


@pytest.mark.parametrize("mech", ["shadow", "pam"])
def test_the_hardened_unit_checks_local_accounts(box, mech):
    add_local_user(box, "sapylocal")
    defaults(box, f'MECHANISMS="{mech}"\nOPTIONS="-c"\n')
    assert ask(box, "sapylocal", PW).returncode == 0
    assert ask(box, "sapylocal", "wrong").returncode == 255
    pid = box.show("saslauthpy.service", "MainPID")
    status = box.run("cat", f"/proc/{pid}/status").stdout
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    cap_bnd = int(re.search(r"^CapBnd:\s+(\w+)$", status, re.M).group(1), 16)
    assert cap_bnd & (1 << 1) == 0  # no CAP_DAC_OVERRIDE: files are read through their modes
    assert cap_bnd & (1 << 2)  # CAP_DAC_READ_SEARCH: /etc/shadow
    mounts = box.run("cat", f"/proc/{pid}/mountinfo").stdout
    assert re.search(r" /usr ro[ ,]", mounts) or re.search(r" / ro[ ,]", mounts)


def test_the_journal_has_the_auth_failures_at_notice(box):
    add_local_user(box, "sapylocal")
    defaults(box, 'MECHANISMS="shadow"\n')
    assert ask(box, "sapylocal", "wrong-once").returncode == 255
    assert ask(box, "sapylocal", PW).returncode == 0
    box.wait_for(lambda: "[user=sapylocal]" in box.run(
        "journalctl", "-u", "saslauthpy", "-p", "notice", "-o", "cat", "--no-pager").stdout,
        "the failure in the journal")
    notice = box.run("journalctl", "-u", "saslauthpy", "-p", "notice", "-o", "cat",
                     "--no-pager").stdout
    assert "auth failure: [user=sapylocal] [service=smtp] [realm=] [mech=shadow] " \
           "[reason=wrong password]" in notice
    assert "listening on" not in notice  # info lines are below notice
    everything = box.run("journalctl", "-u", "saslauthpy", "-o", "verbose",
                         "--no-pager").stdout
    assert "SYSLOG_FACILITY=4" in everything  # auth, as saslauthd's lines
    assert "INFO" not in box.run("journalctl", "-u", "saslauthpy", "-o", "cat",
                                 "--no-pager").stdout  # no level prefix of our own
    assert PW not in everything and "wrong-once" not in everything


def test_the_dovecot_socket_unit_serves_postfixs_private_auth(box):
    """saslauthpy-dovecot.socket: systemd makes Postfix's private/auth (where the hardened
    service could not) and passes it with the saslauthd socket; a connection to it starts
    the service, which answers there, and the socket outlives the service."""
    auth = "/var/spool/postfix/private/auth"
    toml = box.run("cat", CONF).stdout
    box.run("useradd", "--system", "-M", "-s", "/usr/sbin/nologin", "postfix", check=False)
    box.write(CONF, toml + f'\n[dovecot]\nlisten = "{auth}"\n')
    defaults(box, 'MECHANISMS="sql"\n')
    try:
        box.run("saslauthpy-admin", "user", "add", "dovey", "--password-stdin",
                input=PW + "\n")
        box.run("systemctl", "enable", "--now", "saslauthpy-dovecot.socket")
        assert box.run("stat", "-c", "%a %U %G", auth).stdout.split() == \
            ["660", "postfix", "postfix"]
        assert box.show("saslauthpy.service", "ActiveState") == "inactive"
        python = "/usr/lib/saslauthpy/bin/python3"
        login = box.run(python, "-c", DOVECOT_LOGIN, auth, "dovey", PW).stdout
        assert login == "OK\t1\tuser=dovey\n"
        assert box.show("saslauthpy.service", "ActiveState") == "active"
        wrong = box.run(python, "-c", DOVECOT_LOGIN, auth, "dovey", "wrong").stdout
        assert wrong == "FAIL\t1\tuser=dovey\n"
        assert ask(box, "dovey", PW).returncode == 0  # the saslauthd socket, passed beside it
        journal = box.run("journalctl", "-u", "saslauthpy", "-o", "cat", "--no-pager").stdout
        assert f"Dovecot auth protocol on {auth}, the socket passed by the service manager" \
            in journal
        box.run("systemctl", "stop", "saslauthpy.service")
        box.run("test", "-S", auth)  # systemd's socket: it stays for the next start
    finally:
        box.run("systemctl", "disable", "--now", "saslauthpy-dovecot.socket", check=False)
        box.write(CONF, toml)
        box.run("systemctl", "stop", "saslauthpy.service", check=False)


def test_stop_removes_the_socket(box):
    box.run("systemctl", "stop", "saslauthpy.socket", "saslauthpy.service")
    assert box.run("test", "-e", "/run/saslauthd/mux", check=False).returncode == 1
    assert box.show("saslauthpy.service", "ActiveState") == "inactive"
