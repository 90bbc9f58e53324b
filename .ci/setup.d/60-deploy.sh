#!/usr/bin/env bash
# Real deployment tests (issue 6): Postfix with Cyrus SASL and swaks, OpenLDAP slapd with
# {SASL} pass-through, Cyrus IMAP, systemd-analyze for the units, man/groff for the pages.
# The tests start private instances; the system's own postfix/slapd/cyrus must not run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Postfix asks which configuration to install: "No configuration" leaves /etc/postfix alone.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# slapd: let the package create its default database; the tests use their own.
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections

# Never let a package start a service during installation (CI has no init anyway);
# the policy file is removed again even if the installation fails.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi

apt-get install -y -qq --no-install-recommends \
    postfix libsasl2-modules sasl2-bin swaks \
    slapd ldap-utils \
    cyrus-imapd cyrus-clients \
    systemd man-db groff-base groff logrotate >/dev/null

# Stop system instances that may have started anyway (a machine with an init).
for svc in postfix slapd cyrus-imapd; do
    if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
        systemctl disable -q "$svc" 2>/dev/null || true
    fi
done
if [ -x /usr/sbin/postfix ] && /usr/sbin/postfix status >/dev/null 2>&1; then
    /usr/sbin/postfix stop >/dev/null 2>&1 || true
fi
