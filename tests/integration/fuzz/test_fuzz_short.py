"""A short fuzz of every parser in CI: each atheris target (tests/helpers/fuzz_targets.py)
runs a few seconds from its seed corpus and must find nothing.  The long campaign is
bench/fuzz.py; crashes it found are tests in tests/unit/test_fuzz_found.py."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from harness import ROOT, missing, python_env

FUZZ = ROOT / "tests" / "helpers" / "fuzz_targets.py"
TARGETS = ["request", "saslauthd_conf", "toml", "password_hash", "control", "identity"]
SECONDS = 3


@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_finds_nothing(target, tmp_path):
    try:
        import fuzz_targets
    except ImportError:
        missing("atheris is not installed: .ci/setup.d/25-fuzz.sh installs it (pip)")
    assert set(fuzz_targets.TARGETS) == set(TARGETS)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(fuzz_targets.SEEDS[target]):
        (corpus / f"seed{i}").write_bytes(seed)
    res = subprocess.run(
        [sys.executable, str(FUZZ), target, f"-max_total_time={SECONDS}", "-timeout=30",
         "-rss_limit_mb=4096", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=300, env=python_env(), cwd=tmp_path)
    found = sorted(p.name for p in tmp_path.iterdir() if p.name != "corpus")
    assert res.returncode == 0 and not found, f"{found}\n{res.stderr[-4000:]}"
    runs = int(re.search(r"Done (\d+) runs", res.stderr).group(1))
    print(f"{target}: {runs} executions in {SECONDS} s")
    assert runs > len(fuzz_targets.SEEDS[target])
