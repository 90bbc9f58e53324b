"""One exit-status table for saslauthpy, testsaslauthpy and saslauthpy-admin (0 ok,
1 runtime error, 2 usage error, 130 Ctrl-C), and no traceback when the output pipe is
closed or the user presses Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness import python_env
from tty_session import on_tty

DAEMON = [sys.executable, "-m", "saslauthpy"]
CLIENT = [sys.executable, "-m", "saslauthpy.cli.testclient"]
ADMIN = [sys.executable, "-m", "saslauthpy.cli.admin"]


def status(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=python_env(), timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("cmd,code", [
    ([*DAEMON, "--bogus"], 2),
    ([*DAEMON, "-n", "abc"], 2),
    ([*DAEMON, "-f", "--config", "/nonexistent.toml"], 1),
    ([*CLIENT, "-x"], 2),
    ([*CLIENT, "-u", "a", "-p", "b", "-f", "/nonexistent/mux"], 1),
    ([*ADMIN, "--bogus"], 2),
    ([*ADMIN, "user", "import", "/nonexistent.csv", "--config", "/dev/null"], 1),
    ([*DAEMON, "-v"], 0),
    ([*ADMIN, "sql", "schema", "sqlite"], 0),
])
def test_the_table(cmd, code):
    res = status(cmd)
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    if code and cmd[:3] != CLIENT:  # testsaslauthpy adds testsaslauthd's usage lines
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.parametrize("cmd", [[*DAEMON, "-h"], [*ADMIN, "--help"], [*CLIENT, "--help"],
                                 [*ADMIN, "sql", "schema", "postgresql"]])
def test_a_closed_output_pipe_is_no_traceback(cmd):
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: the first write fails (EPIPE), as with "| head"
    proc = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.PIPE, env=python_env())
    os.close(write_end)
    _, err = proc.communicate(timeout=60)
    assert err == b"", err
    # 1, or 0 where argparse's --help gives up writing by itself; never Python's 120
    assert proc.returncode in (0, 1)


# the store in the test's tmp_path: the default one (/var/lib/saslauthpy) needs root
STORE = "<tmp>/users.db"


@pytest.mark.parametrize("cmd", [[*ADMIN, "user", "add", "x", "--config", "/dev/null",
                                  "--file", STORE],
                                 [*CLIENT, "-u", "x", "-f", "/nonexistent/mux"],
                                 [*ADMIN, "pw"]])
def test_ctrl_c_at_the_password_prompt(tmp_path, cmd):
    cmd = [str(tmp_path / "users.db") if word == STORE else word for word in cmd]
    status, out = on_tty(cmd, interrupt=True)
    assert status == 130
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
