#!/usr/bin/env bash
# atheris, the coverage-guided fuzzer of tests/integration/fuzz/ (a few seconds per parser
# in every run) and bench/fuzz.py (the long campaign, by hand).  Wheels exist for x86_64
# Linux and CPython 3.11.
set -euo pipefail
python3 -c 'import atheris' 2>/dev/null || python3 -m pip install -q atheris
