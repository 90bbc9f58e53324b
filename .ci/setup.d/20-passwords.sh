#!/usr/bin/env bash
# Reference password-hashing tools the tests in tests/integration/passwords/test_passwords.py run:
# mkpasswd (whois), openssl passwd, slappasswd (slapd), doveadm pw (dovecot-core), and
# libxcrypt itself (libcrypt1).  slapd and dovecot are only needed as tools: their
# daemons are kept from starting during the install (a temporary policy-rc.d) and any
# instance the install started anyway is stopped, unless it was running before.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

pkgs=(whois openssl slapd dovecot-core libcrypt1 passwd procps)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

was_running() { pgrep -x "$1" >/dev/null 2>&1; }
slapd_before=0; dovecot_before=0
was_running slapd && slapd_before=1
was_running dovecot && dovecot_before=1

made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
fi
cleanup() { [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; return 0; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

stop() {  # $1 = service, $2 = 1 if it was running before we started
    [ "$2" = 1 ] && return 0
    was_running "$1" || return 0
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$1" 2>/dev/null; then
        systemctl stop "$1" || true
    else
        service "$1" stop >/dev/null 2>&1 || true
    fi
}
stop slapd "$slapd_before"
stop dovecot "$dovecot_before"
