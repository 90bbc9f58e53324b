"""Smoke test of the benchmark harness: it builds the load generator, starts the C
saslauthd and saslauthpy, both answer correct logins, and the results table is written.
Never a timing assertion (benchmarks are not tests)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_bench_harness_runs_both_daemons_and_writes_the_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    plot = tmp_path / "results.png"
    raw = tmp_path / "rows.json"
    # --python: saslauthpy runs on each interpreter given, side by side (the first one
    # here notes its calls)
    calls = tmp_path / "python-calls"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--scenarios", "1,5",
         "--duration", "1", "--users", "2", "--idle", "50",
         "--python", f"{python},{sys.executable}",
         "--out", str(out), "--plot", str(plot), "--json", str(raw)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {(r["scenario"], r["daemon"]): r for r in json.loads(raw.read_text())}
    for daemon in ("C saslauthd", "saslauthpy", f"saslauthpy on {sys.executable}"):
        row = rows[("1", daemon)]
        assert row["error"] == "", row["error"]
        hits = row["groups"]["hits"]
        # Every daemon answered, and every answer was the expected OK.
        assert hits["ok"] > 0 and hits["mismatch"] == 0, hits
    ours_5 = rows[("5", "saslauthpy")]["groups"]["legit"]
    assert ours_5["ok"] > 0, ours_5
    text = out.read_text()
    assert "| 1 | cache hits, 8 clients" in text
    assert "C saslauthd" in text and "saslauthpy" in text and "nproc" in text
    # one daemon of scenario 1 and one of 5 ran on the first, and the table names both
    assert calls.read_text().count("-m saslauthpy") == 2
    assert f"saslauthpy's Python: {platform.python_version()} (" in text
    assert f"| 1 | cache hits, 8 clients (shadow, -c) [saslauthpy on {sys.executable}] |" in text
    assert plot.exists() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The bench accounts are gone again.
    assert "sbench" not in Path("/etc/passwd").read_text()


def test_saslauthpy_is_measured_once_every_worker_serves(tmp_path, monkeypatch):
    # As systemd starts it (Type=notify): start() returns at READY=1, when every worker
    # process serves, not when the socket first accepts (the first worker alone then).
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from daemons import Saslauthpy

    daemon = Saslauthpy(tmp_path / "d", "getpwent", 4, False, config={"server": {"processes": 3}})
    daemon.start()
    try:
        workers = daemon.pids()[1:]  # the supervisor's children
        assert len(workers) == 3
    finally:
        daemon.stop()


@pytest.mark.python_ldap
@pytest.mark.slapd
def test_ldap_floor_runs_every_server_and_each_answers_good_logins(tmp_path):
    # bench/ldap_floor.py: the C daemon, ours, ours with only a floor's work in its fast
    # lane (saslauthpy-shell) and the floors, one round each against a private slapd.
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ldap_floor.py"), "--seconds", "0.5",
         "--rounds", "1"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    medians = {name.strip(): float(rest.split("/s")[0])
               for name, _, rest in (line.partition(" median ")
                                     for line in res.stdout.splitlines()) if rest}
    assert set(medians) == {"C saslauthd", "saslauthpy", "saslauthpy-shell", "blocking-2",
                            "blocking-5", "multiplexed-2"}, res.stdout
    # each answered OK to the good passwords it was asked about (only those are counted)
    assert all(rate > 0 for rate in medians.values()), medians
