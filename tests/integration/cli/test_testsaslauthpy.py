"""testsaslauthpy: testsaslauthd's output and exit codes for OK and NO, and what
testsaslauthd cannot do: show the daemon's reply, tell a backend outage from a wrong
password, and take the password from a prompt or stdin instead of the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from harness import need, python_env
from tty_session import on_tty

MINE = [sys.executable, "-m", "saslauthpy.cli.testclient"]
PW = "s3cret-Alice!"


def mine(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MINE, *args], capture_output=True, text=True, env=python_env(),
                          input=input, timeout=60)


@pytest.fixture
def users(daemon):
    daemon.admin("user", "add", "alice", password=PW)
    daemon.admin("user", "add", "bob", "--realm", "example.org", password="bob-pw")
    return daemon


@pytest.mark.csaslauthd
def test_output_and_status_are_testsaslauthds(users):
    ref_tool = need("testsaslauthd")
    cases = [
        ["-u", "alice", "-p", PW],
        ["-u", "alice", "-p", "wrong", "-s", "smtp"],
        ["-u", "nobody", "-p", "x", "-R", "3"],
        ["-u", "bob", "-p", "bob-pw", "-r", "example.org"],
    ]
    for args in cases:
        ref = subprocess.run([ref_tool, "-f", str(users.mux), *args], capture_output=True,
                             text=True)
        got = mine("-f", str(users.mux), *args)
        assert (got.stdout, got.returncode) == (ref.stdout, ref.returncode), args


@pytest.mark.csaslauthd
def test_an_unreachable_daemon_is_a_runtime_error(tmp_path):
    """testsaslauthd prints the same error and exits 255, as for a wrong password;
    testsaslauthpy exits 1, so a script can tell a daemon that is down."""
    ref_tool = need("testsaslauthd")
    path = str(tmp_path / "missing")
    ref = subprocess.run([ref_tool, "-f", path, "-u", "a", "-p", "b"], capture_output=True,
                         text=True)
    got = mine("-f", path, "-u", "a", "-p", "b")
    assert got.stdout == ref.stdout == "0: "
    assert got.stderr.splitlines()[:1] == ref.stderr.splitlines()[:1]
    assert (ref.returncode, got.returncode) == (255, 1)


def test_v_shows_the_reply_and_a_tempfail_has_its_own_status(daemon_factory, tmp_path):
    ok = daemon_factory(config={"server": {"reveal_reasons": True}})
    ok.admin("user", "add", "alice", password=PW)
    res = mine("-f", str(ok.mux), "-u", "alice", "-p", "wrong", "-v")
    assert (res.stdout, res.returncode) == (
        '0: NO "authentication failed" (daemon: "NO wrong password")\n', 255)
    res = mine("-f", str(ok.mux), "-u", "alice", "-p", PW, "-v")
    assert (res.stdout, res.returncode) == ('0: OK "Success." (daemon: "OK")\n', 0)
    # a backend that is down (its sasldb is missing) answers NO [ALERT]: exit 75, not 255
    down = daemon_factory(args=["-a", "sasldb", "-O", str(tmp_path / "absent" / "sasldb2")])
    res = mine("-f", str(down.mux), "-u", "alice", "-p", PW)
    assert (res.stdout, res.returncode) == ('0: NO "authentication failed"\n', 75)
    res = mine("-f", str(down.mux), "-u", "alice", "-p", PW, "-v")
    assert "[ALERT] The authentication backend is temporarily unavailable" in res.stdout


def test_password_from_stdin(users):
    res = mine("-f", str(users.mux), "-u", "alice", "--password-stdin", input=PW + "\n")
    assert (res.stdout, res.returncode) == ('0: OK "Success."\n', 0)


def test_without_p_it_asks_on_the_terminal_without_echo(users):
    status, out = on_tty([*MINE, "-f", str(users.mux), "-u", "alice"], [PW])
    assert status == 0
    assert '0: OK "Success."' in out and PW not in out


@pytest.mark.parametrize("args,needle", [
    (["-u"], "option -u requires argument"),
    (["-p", "x"], "usage:"),
    (["-u", "a", "-p", "x", "--password-stdin"], "exclude each other"),
    (["-u", "a", "-p", "x", "-R", "many"], "-R 'many': not a number"),
    (["-u", "a", "-p", "x", "stray"], "unexpected argument 'stray'"),
])
def test_usage_errors_exit_2(args, needle):
    res = mine(*args)
    assert res.returncode == 2 and needle in res.stderr and res.stdout == ""


def test_no_terminal_and_no_password_is_an_error_not_a_hang(users):
    res = subprocess.run([*MINE, "-f", str(users.mux), "-u", "alice"], capture_output=True,
                         text=True, env=python_env(), stdin=subprocess.DEVNULL, timeout=60,
                         start_new_session=True)  # no controlling terminal
    assert res.returncode == 1 and "use --password-stdin" in res.stderr


def test_a_closed_pipe_ends_quietly(users):
    cmd = " ".join([*MINE, "-f", str(users.mux), "-u", "alice", "-p", "'x'", "-R", "500"])
    res = subprocess.run(f"{cmd} | head -1", shell=True, capture_output=True, text=True,
                         env=python_env(), timeout=120)
    assert res.stdout == '0: NO "authentication failed"\n'
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr
