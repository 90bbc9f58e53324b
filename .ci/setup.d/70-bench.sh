#!/usr/bin/env bash
# Benchmark harness smoke test (tests/integration/bench/test_bench_smoke.py): gcc builds bench/loadgen.c,
# the C saslauthd (sasl2-bin) is the reference, useradd/chpasswd make bench accounts,
# matplotlib draws the plot; slapd/py-spy are only used by the full benchmark.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v saslauthd >/dev/null || [ -x /usr/sbin/saslauthd ] || need+=(sasl2-bin)
command -v useradd >/dev/null || [ -x /usr/sbin/useradd ] || need+=(passwd)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib
# py-spy (bench/run.py --profile) is optional: a failed install is not an error.
command -v py-spy >/dev/null || python3 -m pip install -q py-spy || true
