"""The long fuzzing campaign, run by hand (CI runs each target for 3 s only).

    pip install atheris                      # .ci/setup.d/25-fuzz.sh does it for CI
    python3 bench/fuzz.py                    # every target 10 minutes
    python3 bench/fuzz.py --seconds 3600 toml password_hash

Each target of tests/helpers/fuzz_targets.py runs in its own atheris process for
``--seconds``, starting from its seeds and from what earlier runs kept in
``--dir``/<target>/ (default /var/tmp/saslauthpy-fuzz), so a second run continues where
the first stopped.  The executions of each target are printed and summed.  A crash
leaves ``crash-*`` (the input) in ``--dir`` and makes the exit status 1: reproduce it
with ``python3 tests/helpers/fuzz_targets.py TARGET crash-...``, add it to
tests/unit/test_fuzz_found.py, fix, and run again.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tests" / "helpers" / "fuzz_targets.py"


def run(target: str, seeds: list[bytes], seconds: int, where: Path) -> tuple[int, list[str]]:
    corpus = where / target / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, str(FUZZ), target, f"-max_total_time={seconds}", "-timeout=60",
         "-rss_limit_mb=4096", f"-artifact_prefix={where / target}/", str(corpus)],
        capture_output=True, text=True, env=env, cwd=where / target)
    found = re.search(r"Done (\d+) runs", res.stderr)
    crashes = sorted(p.name for p in (where / target).iterdir()
                     if p.name.startswith(("crash-", "timeout-", "oom-")))
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
    return int(found.group(1)) if found else 0, crashes


def main() -> int:
    sys.path[:0] = [str(ROOT / "tests" / "helpers"), str(ROOT)]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=600, help="per target (default 600)")
    p.add_argument("--dir", type=Path, default=Path("/var/tmp/saslauthpy-fuzz"))
    p.add_argument("targets", nargs="*", help="default: all")
    args = p.parse_args()
    import fuzz_targets

    targets = args.targets or list(fuzz_targets.TARGETS)
    total, failed = 0, False
    for target in targets:
        started = time.monotonic()
        runs, crashes = run(target, fuzz_targets.SEEDS[target], args.seconds, args.dir)
        total += runs
        failed |= bool(crashes)
        print(f"{target:16} {runs:>12,} executions in {time.monotonic() - started:6.0f} s"
              f"{'  FOUND: ' + ' '.join(crashes) if crashes else ''}", flush=True)
    print(f"{'total':16} {total:>12,} executions")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
