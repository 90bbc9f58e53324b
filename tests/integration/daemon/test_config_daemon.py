"""The configuration through the real daemon: a misspelt key in any table stops the start,
and a refused reload leaves the running daemon exactly as it was."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from harness import python_env

# table -> (a misspelt key, the key it should have been)
MISSPELT = {
    "": ("mechanism", "mechanisms"),
    "server": ("max_feild", "max_field"),
    "cache": ("tll", "ttl"),
    "audit": ("facilty", "facility"),
    "throttle": ("base_dely", "base_delay"),
    "metrics": ("lisen", "listen"),
    "sql": ("uri", "url"),
    "ldap": ("serverz", "servers"),
    "sasldb": ("pth", "path"),
    "pam": ("worker", "workers"),
    "shadow": ("path", None),
    "getpwent": ("path", None),
}


@pytest.mark.parametrize("table", list(MISSPELT))
def test_a_misspelt_key_in_any_table_stops_the_start(tmp_path, table):
    wrong, right = MISSPELT[table]
    config = tmp_path / "c.toml"
    config.write_text(f'run_dir = "{tmp_path / "run"}"\n' + (f"[{table}]\n" if table else "")
                      + f"{wrong} = 1\n")
    res = subprocess.run([sys.executable, "-m", "saslauthpy", "-f", "--config", str(config)],
                         capture_output=True, text=True, env=python_env(), timeout=30)
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"unknown key {wrong!r}" in res.stderr
    assert (f"did you mean {right!r}" if right else "takes no keys") in res.stderr
    assert not (tmp_path / "run" / "mux").exists()


def test_a_refused_reload_changes_nothing(daemon_factory):
    """The new file parses but cannot be built (an in-memory SQLite URL is refused when the
    backend is made): the audit file, its verbosity and the answers stay as they were."""
    d = daemon_factory()
    d.admin("user", "add", "alice", password="alice-pw")
    assert d.ask("alice", "alice-pw") == "OK"
    other = d.tmp / "other-audit.log"
    good = d.config_path.read_text()
    bad = good.replace(str(d.audit_path), str(other)).replace(
        f"sqlite:///{d.tmp / 'users.db'}", "sqlite://")
    assert bad != good and str(other) in bad
    d.config_path.write_text(bad)
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload refused" not in d.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "in-memory" in d.stderr()
    assert d.ask("alice", "wrong").startswith("NO")
    assert d.ask("alice", "alice-pw") == "OK"
    assert not other.exists()  # the refused file was never opened
    results = [r["result"] for r in d.audit()]
    assert results[-2:] == ["fail", "ok"]  # still written where the running config says
