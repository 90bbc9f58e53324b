"""packaging/: systemd units, the /etc/default/saslauthd wrapper, socket activation the way
systemd does it, man pages, tmpfiles.d, logrotate and the example configuration."""

from __future__ import annotations

import grp
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import harness
import pytest
from harness import need

from saslauthpy import config as configmod
from saslauthpy import protocol
from saslauthpy.cli import admin

ROOT = Path(__file__).resolve().parents[3]
PKG = ROOT / "packaging"
ENV_WRAPPER = ROOT / "saslauthpy" / "share" / "systemd" / "saslauthpy-env"
INSTALLED_WRAPPER = "/usr/libexec/saslauthpy/saslauthpy-env"
MAN_PAGES = ["saslauthpy.8", "testsaslauthpy.8", "saslauthpy-admin.8"]


# -- systemd units -----------------------------------------------------------------


@pytest.fixture
def man_dir(tmp_path):
    d = tmp_path / "man" / "man8"
    d.mkdir(parents=True)
    for page in MAN_PAGES:
        shutil.copy(PKG / "man" / page, d / page)
    return d.parent


def test_units_pass_systemd_analyze_verify(tmp_path, man_dir):
    """systemd-analyze verify checks every directive, that the ExecStart/ExecCondition
    programs exist and that the Documentation= man pages resolve.  The wrapper is
    installed as /usr/libexec/saslauthpy/saslauthpy-env; this checkout's copy stands in
    for it (the only change made to the units here)."""
    exe = need("systemd-analyze")
    units = tmp_path / "units"
    units.mkdir()
    for name in ("saslauthpy.service", "saslauthpy.socket", "saslauthpy-dovecot.socket"):
        text = (PKG / name).read_text()
        if name.endswith(".service"):
            assert f"ExecStart={INSTALLED_WRAPPER}\n" in text
            text = text.replace(INSTALLED_WRAPPER, str(ENV_WRAPPER))
        (units / name).write_text(text)
    res = subprocess.run([exe, "verify", str(units / "saslauthpy.socket"),
                          str(units / "saslauthpy-dovecot.socket"),
                          str(units / "saslauthpy.service")],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MANPATH": str(man_dir)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "" and res.stderr.strip() == "", res.stdout + res.stderr


def test_service_is_notify_and_socket_is_saslauthds_path():
    service = (PKG / "saslauthpy.service").read_text()
    sock = (PKG / "saslauthpy.socket").read_text()
    assert re.search(r"^Type=notify$", service, re.M)
    assert re.search(r"^EnvironmentFile=-/etc/default/saslauthd$", service, re.M)
    assert re.search(r"^EnvironmentFile=-/etc/sysconfig/saslauthd$", service, re.M)
    assert re.search(r"^ListenStream=/run/saslauthd/mux$", sock, re.M)
    assert re.search(r"^SocketMode=0660$", sock, re.M)


def test_service_allows_the_descriptors_the_default_cap_needs():
    from saslauthpy.config import Config
    from saslauthpy.rundir import fd_reserve

    limit = re.search(r"^LimitNOFILE=(\d+)$", (PKG / "saslauthpy.service").read_text(), re.M)
    cfg = Config()
    assert limit and int(limit.group(1)) >= cfg.server.max_connections + fd_reserve(cfg)


# -- man pages ---------------------------------------------------------------------


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_without_warnings(page):
    man = need("man")
    res = subprocess.run([man, "-l", "--warnings", str(PKG / "man" / page)],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
    assert res.returncode == 0
    assert res.stderr == ""
    assert "NAME" in res.stdout and "SEE ALSO" in res.stdout


def test_daemon_man_page_documents_every_flag():
    text = (PKG / "man" / "saslauthpy.8").read_text().replace("\\-", "-")
    options = text.split("\n.SH OPTIONS\n", 1)[1].split("\n.SH ", 1)[0]
    for action in configmod.arg_parser()._actions:
        for opt in action.option_strings:
            pattern = rf"(?m)^\.\w+ .*(?<![\w-]){re.escape(opt)}(?![\w-])"
            assert re.search(pattern, options), f"{opt} is not in OPTIONS"


def test_admin_man_page_documents_every_command():
    text = (PKG / "man" / "saslauthpy-admin.8").read_text().replace("\\-", "-")
    sub = next(a for a in admin.parser()._actions if a.dest == "command")
    for command in sub.choices:
        assert command in text, f"{command} is undocumented"
    user = sub.choices["user"]
    actions = next(a for a in user._actions if a.dest == "action").choices
    for action in actions:
        assert action in text, f"user {action} is undocumented"


# -- /etc/default/saslauthd -> daemon arguments --------------------------------------


def wrapper(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SASLAUTHPY_DAEMON": "/usr/sbin/saslauthpy"}
    return subprocess.run(["/bin/sh", str(ENV_WRAPPER), *args], env={**base, **env},
                          capture_output=True, text=True, timeout=30)


def mapped(env: dict[str, str], *extra: str) -> list[str]:
    res = wrapper(env, "--print", *extra)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "/usr/sbin/saslauthpy"
    return lines[1:]


def source(path: Path) -> dict[str, str]:
    """The variables a shell-syntax defaults file sets, read by a real shell as systemd's
    EnvironmentFile= would (plain assignments)."""
    res = subprocess.run(["/bin/sh", "-c", 'set -a; . "$1"; env -0', "sh", str(path)],
                         env={}, capture_output=True, text=True, check=True)
    out = dict(item.split("=", 1) for item in res.stdout.split("\0") if "=" in item)
    return {k: v for k, v in out.items() if k not in ("PWD", "SHLVL", "_")}


def test_debian_variables_map_to_saslauthd_flags():
    env = {"MECHANISMS": "pam", "MECH_OPTIONS": "/etc/saslauthd.conf", "THREADS": "7",
           "OPTIONS": "-c -m /var/spool/postfix/var/run/saslauthd -r"}
    assert mapped(env) == ["-f", "-a", "pam", "-O", "/etc/saslauthd.conf", "-n", "7",
                           "-c", "-m", "/var/spool/postfix/var/run/saslauthd", "-r"]


def test_several_mechanisms_become_a_chain():
    assert mapped({"MECHANISMS": " sql  pam "})[:3] == ["-f", "-a", "sql,pam"]
    assert mapped({"MECHANISMS": "sql,ldap"})[:3] == ["-f", "-a", "sql,ldap"]


def test_rhel_variables_map_to_saslauthd_flags():
    env = {"SOCKETDIR": "/run/saslauthd", "MECH": "shadow", "FLAGS": "-t 60 -c"}
    assert mapped(env) == ["-f", "-a", "shadow", "-m", "/run/saslauthd", "-t", "60", "-c"]


def test_no_globbing_and_extra_arguments_last(tmp_path):
    (tmp_path / "match-me").write_text("")
    env = {"OPTIONS": f"-O {tmp_path}/*", "SASLAUTHPY_OPTIONS": "--config /etc/x.toml"}
    assert mapped(env, "-V") == ["-f", "-O", f"{tmp_path}/*", "--config", "/etc/x.toml", "-V"]
    assert mapped({}) == ["-f"]


def test_start_no_skips_the_start():
    assert wrapper({"START": "no"}, "--check-start").returncode == 1
    assert wrapper({"START": "yes"}, "--check-start").returncode == 0
    assert wrapper({}, "--check-start").returncode == 0  # Debian 12's file has no START


@pytest.mark.parametrize("defaults", [PKG / "saslauthpy.default", Path("/etc/default/saslauthd")])
def test_defaults_files_give_arguments_the_daemon_accepts(defaults):
    """Our shipped defaults file and the Debian sasl2-bin one on this machine both turn
    into a command line that saslauthpy's own parser accepts and validates."""
    if not defaults.exists():
        pytest.fail(f"{defaults} is missing: sasl2-bin installs it (.ci/setup.d/00-base.sh)")
    args = mapped(source(defaults))
    assert args[0] == "-f" and "-a" in args
    parsed = configmod.arg_parser().parse_args(args)
    if parsed.config and not os.path.exists(parsed.config):
        parsed.config = None
    cfg = configmod.from_args(parsed)
    assert cfg.mechanisms == args[args.index("-a") + 1].split(",")
    assert cfg.foreground


@pytest.mark.csaslauthd
def test_wrapper_execs_the_daemon(tmp_path):
    """The whole chain systemd runs: environment file variables -> saslauthpy-env ->
    the daemon, answering the real testsaslauthd."""
    need("testsaslauthd")
    daemon_script = tmp_path / "saslauthpy"
    daemon_script.write_text(f"#!/bin/sh\nexec {sys.executable} -m saslauthpy \"$@\"\n")
    daemon_script.chmod(0o755)
    run_dir = tmp_path / "run"
    conf = tmp_path / "saslauthpy.toml"
    conf.write_text(harness.toml_dumps({
        "audit": {"syslog": False},
        "sql": {"url": f"sqlite:///{tmp_path / 'users.db'}"},
    }))
    harness.admin(conf, "user", "add", "dora", password="explorer")
    env = {**harness.python_env(), "SASLAUTHPY_DAEMON": str(daemon_script),
           "MECHANISMS": "sql", "THREADS": "2", "OPTIONS": f"-c -m {run_dir}",
           "SASLAUTHPY_OPTIONS": f"--config {conf}"}
    proc = subprocess.Popen(["/bin/sh", str(ENV_WRAPPER)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_socket(run_dir / "mux", proc)
        assert harness.testsaslauthd(run_dir / "mux", "dora", "explorer").returncode == 0
        assert harness.testsaslauthd(run_dir / "mux", "dora", "wrong").returncode == 255
        # exec: the wrapper's pid is the daemon's (systemd's MAINPID gets the signals)
        assert int((run_dir / "saslauthd.pid").read_text()) == proc.pid
    finally:
        code = harness.terminate(proc, 20)
        err = proc.stderr.read()
        proc.stderr.close()
    assert code == 0, err


def wait_for_socket(path: Path, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {path}")


# -- socket activation, the way systemd does it ------------------------------------

# The child sets LISTEN_PID to its own pid (as systemd does after fork) and execs the
# daemon; the listening socket arrives as fd 3.
ACTIVATE = """\
import os, sys
fd = int(os.environ.pop("TEST_SOCKET_FD"))
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "saslauthpy", "-f", "--config", sys.argv[1]])
"""


class Activator:
    """Plays systemd: owns the listening socket and the notify socket, starts the daemon."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.path = tmp / "sock" / "mux"
        self.path.parent.mkdir()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(64)
        self.notify_path = tmp / "notify"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(20)
        self.run_dir = tmp / "run"
        self.config = tmp / "saslauthpy.toml"
        self.config.write_text(harness.toml_dumps({
            "run_dir": str(self.run_dir),
            "audit": {"syslog": False},
            "sql": {"url": f"sqlite:///{tmp / 'users.db'}"},
        }))
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        env = {**harness.python_env(), "TEST_SOCKET_FD": str(self.listener.fileno()),
               "NOTIFY_SOCKET": str(self.notify_path)}
        self.proc = subprocess.Popen([sys.executable, "-c", ACTIVATE, str(self.config)],
                                     env=env, pass_fds=(self.listener.fileno(),),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self.proc

    def message(self) -> str:
        return self.notify.recv(4096).decode()

    def stop(self) -> int:
        return harness.terminate(self.proc, 20)

    def close(self) -> None:
        if self.proc:
            harness.terminate(self.proc)
        self.listener.close()
        self.notify.close()


@pytest.fixture
def activator(tmp_path):
    a = Activator(tmp_path)
    yield a
    a.close()


@pytest.mark.csaslauthd
def test_socket_activation_answers_through_the_passed_socket(activator):
    need("testsaslauthd")
    harness.admin(activator.config, "user", "add", "sam", password="activated")
    activator.start()
    assert "READY=1" in activator.message()
    assert harness.testsaslauthd(activator.path, "sam", "activated").returncode == 0
    assert harness.testsaslauthd(activator.path, "sam", "nope").returncode == 255
    # the daemon used the passed socket and did not create its own
    assert not (activator.run_dir / "mux").exists()
    assert activator.stop() == 0
    assert "STOPPING=1" in activator.message()
    # systemd owns the socket: it outlives the daemon
    assert activator.path.exists()


def test_restart_keeps_the_socket_and_queued_clients(activator):
    """While the daemon is down (restart, crash) clients queue on systemd's socket and
    are answered by the next instance: what the socket unit is for."""
    harness.admin(activator.config, "user", "add", "sam", password="activated")
    activator.start()
    assert "READY=1" in activator.message()
    assert activator.stop() == 0
    assert "STOPPING=1" in activator.message()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(30)
    client.connect(str(activator.path))  # nobody runs: the kernel queues it
    client.sendall(protocol.format_request("sam", "activated", "smtp", ""))
    activator.start()
    try:
        assert harness.read_reply(client) == "OK"
    finally:
        client.close()
    assert "READY=1" in activator.message()
    assert activator.stop() == 0


def test_socket_activation_passes_the_dovecot_socket_too(tmp_path):
    """Both sockets passed, as with packaging/saslauthpy-dovecot.socket beside
    saslauthpy.socket, by systemd's own systemd-socket-activate (which starts the daemon
    on the first connection): each protocol is served on its socket, none is made by the
    daemon, and neither is removed when it stops."""
    from dovecot_auth import AuthClient, auth_line, plain

    exe = need("systemd-socket-activate")
    (tmp_path / "sock").mkdir()
    mux, auth = tmp_path / "sock" / "mux", tmp_path / "sock" / "auth"
    conf = tmp_path / "saslauthpy.toml"
    conf.write_text(harness.toml_dumps({
        "run_dir": str(tmp_path / "run"),
        "audit": {"syslog": False},
        "sql": {"url": f"sqlite:///{tmp_path / 'users.db'}"},
        "dovecot": {"listen": str(auth)},
    }))
    harness.admin(conf, "user", "add", "sam", password="activated")
    proc = subprocess.Popen(
        [exe, "-l", str(mux), "-l", str(auth), "--fdname=saslauthpy.socket:dovecot",
         "-E", f"PYTHONPATH={harness.python_env()['PYTHONPATH']}",
         sys.executable, "-m", "saslauthpy", "-d", "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (mux.exists() and auth.exists()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        made = (mux.stat().st_ino, auth.stat().st_ino)
        with AuthClient(auth, timeout=30) as c:  # this connection starts the daemon
            assert c.ask(auth_line(1, resp=plain("sam", "activated"))) == b"OK\t1\tuser=sam"
            assert c.ask(auth_line(2, resp=plain("sam", "nope"))) == b"FAIL\t2\tuser=sam"
        assert harness.ask(mux, "sam", "activated") == "OK"
        assert not (tmp_path / "run" / "mux").exists()  # the passed one serves saslauthd's
    finally:
        code = harness.terminate(proc, 20)
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    assert code == 0, err
    assert (mux.stat().st_ino, auth.stat().st_ino) == made  # the same sockets, still there
    assert f"listening on {mux} with mechanisms sql" in err  # the passed one, not run_dir's


# -- tmpfiles.d, logrotate, the example configuration ----------------------------------


def test_tmpfiles_creates_the_directories(tmp_path):
    exe = need("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for f in ("passwd", "group"):  # --root resolves users and groups inside the root
        shutil.copy(f"/etc/{f}", root / "etc" / f)
    res = subprocess.run([exe, f"--root={root}", "--create", str(PKG / "saslauthpy.tmpfiles")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    run = (root / "run" / "saslauthd").stat()
    assert oct(run.st_mode & 0o777) == "0o710"
    assert run.st_gid == grp.getgrnam("sasl").gr_gid
    assert oct((root / "var" / "lib" / "saslauthpy").stat().st_mode & 0o777) == "0o750"
    assert (root / "var" / "log" / "saslauthpy").is_dir()


def test_logrotate_rotates_and_the_daemon_reopens(tmp_path, daemon_factory):
    """The shipped logrotate stanza, pointed at a test daemon's audit log and pid file:
    after rotation (its postrotate sends SIGHUP) new decisions go to a fresh file."""
    exe = need("logrotate")
    d = daemon_factory()
    d.admin("user", "add", "rita", password="rotate")
    assert d.ask("rita", "rotate") == "OK"
    text = (PKG / "saslauthpy.logrotate").read_text()
    text = text.replace("/var/log/saslauthpy/audit.log", str(d.audit_path))
    text = text.replace("/run/saslauthd/saslauthd.pid", str(d.run_dir / "saslauthd.pid"))
    text = text.replace("systemctl kill", "false")  # no systemd here: use the pid file path
    text = text.replace("create 0640 root adm", "create 0640 root root")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    res = subprocess.run([exe, "-f", "-s", str(tmp_path / "state"), str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    rotated = Path(str(d.audit_path) + ".1")
    assert rotated.exists() and "rita" in rotated.read_text()
    deadline = time.monotonic() + 10
    while True:  # the HUP is asynchronous
        assert d.ask("rita", "rotate") == "OK"
        if d.audit_path.exists() and "rita" in d.audit_path.read_text():
            break
        assert time.monotonic() < deadline, "the daemon kept writing to the rotated file"
        time.sleep(0.2)


def test_example_configuration_loads():
    cfg = configmod.load_toml(str(PKG / "saslauthpy.toml"))
    configmod.validate(cfg)
    assert cfg.server.socket_group == "sasl"
    assert cfg.server.socket_mode == 0o660
    assert cfg.audit.file == "/var/log/saslauthpy/audit.log"
    assert cfg.section("sql").url.startswith("sqlite:////var/lib/saslauthpy/")
