#!/usr/bin/env bash
# The ldap backend and its tests.
# - python-ldap (the `ldap` extra) is built from PyPI against the system's libldap and
#   libsasl2: it needs libldap-dev, libsasl2-dev and a compiler (00-base.sh installs them
#   before `pip install -e .[test]`; checked again here).
# - ldap3 (the previous engine) must not be installed: nothing may import it any more.
# - A private slapd (started by tests/helpers/ldap_server.py on loopback ports from a
#   temporary directory), the OpenLDAP client tools, openssl for the test CA, the C
#   saslauthd/testsaslauthd to compare answers with, and the SASL plugins (DIGEST-MD5,
#   PLAIN) that slapd needs for the SASL binds of tests/integration/ldap/test_ldap_sasl.py.
#   The system slapd is not used: if the package's postinst started it, stop it again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in slapd ldap-utils openssl sasl2-bin libsasl2-modules libldap-dev libsasl2-dev gcc; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    was_running=0
    pgrep -x slapd >/dev/null && was_running=1
    # Answer slapd's debconf questions so the install never waits for a terminal.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if ((was_running == 0)) && pgrep -x slapd >/dev/null; then
        (systemctl stop slapd 2>/dev/null || service slapd stop 2>/dev/null || true) >/dev/null
    fi
fi
python3 -c "import ldap" 2>/dev/null || python3 -m pip install -q 'python-ldap>=3.4'
python3 -m pip uninstall -q -y ldap3 2>/dev/null || true
if python3 -c "import ldap3" 2>/dev/null; then
    echo "ldap3 is still importable; nothing may use it any more" >&2
    exit 1
fi
# The tests run /usr/sbin/slapd and slapadd directly; make sure they are there.
test -x /usr/sbin/slapd && test -x /usr/sbin/slapadd && command -v ldapsearch >/dev/null
