#!/usr/bin/env bash
# Debian packages the core tests use (the real testsaslauthd and C saslauthd) and
# the project itself with every optional extra; socat is a real client that half-closes
# (tests/integration/daemon/test_fastlane.py).
set -euo pipefail
apt-get update -qq
# python-ldap (the ldap extra) builds against libldap and libsasl2: headers and a compiler.
apt-get install -y -qq --no-install-recommends sasl2-bin libsasl2-modules socat \
    libldap-dev libsasl2-dev gcc >/dev/null
python3 -m pip install -q --upgrade pip
python3 -m pip install -q -e '.[test]'
