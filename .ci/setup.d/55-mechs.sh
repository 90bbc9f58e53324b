#!/usr/bin/env bash
# The rimap, httpform and kerberos5 backends' tests (tests/integration/mechs/):
# - Dovecot's IMAP server, which rimap logs in to (a private instance per test module,
#   started from a temporary dovecot.conf on loopback ports). The dovecot-imapd package
#   conflicts with cyrus-imapd (both provide imap-server), which 60-deploy.sh installs for
#   the Cyrus tests: installing it would remove Cyrus. So its binaries (imap, imap-login,
#   of the same version as dovecot-core) are unpacked into $IMAPD_DIR instead, and the test
#   config names them (service imap/imap-login { executable = ... });
# - krb5-kdc, krb5-admin-server (kdb5_util, kadmin.local, krb5kdc) and krb5-user (kinit,
#   klist): a private MIT KDC per test module, from temporary files (KRB5_CONFIG,
#   KRB5_KDC_PROFILE); the backend itself calls libkrb5.so.3 (libkrb5-3) through ctypes;
# - openssl for the test CA (STARTTLS, imaps, https); sasl2-bin for the C saslauthd rows.
# No system daemon may start: a temporary policy-rc.d during the install, and any instance
# the install started anyway is stopped again, unless it was running before.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

pkgs=(dovecot-core krb5-kdc krb5-admin-server krb5-user libkrb5-3 openssl sasl2-bin)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
IMAPD_DIR=/usr/local/lib/saslauthpy-test/dovecot-imapd

unpack_imapd() {  # dovecot-imapd's files, same version as dovecot-core, not installed
    local version tmp
    version="$(dpkg-query -W -f='${Version}' dovecot-core)"
    [ "$(cat "$IMAPD_DIR/VERSION" 2>/dev/null)" = "$version" ] && return 0
    tmp="$(mktemp -d)"
    chmod 755 "$tmp"  # apt's download user writes here
    (cd "$tmp" && apt-get download -qq "dovecot-imapd=$version" 2>/dev/null)
    rm -rf "$IMAPD_DIR"
    mkdir -p "$IMAPD_DIR"
    dpkg-deb -x "$tmp"/dovecot-imapd_*.deb "$IMAPD_DIR"
    echo "$version" >"$IMAPD_DIR/VERSION"
    rm -rf "$tmp"
}

if [ ${#missing[@]} -eq 0 ]; then
    unpack_imapd
    exit 0
fi

running() { pgrep -x "$1" >/dev/null 2>&1; }
before=()
for d in dovecot krb5kdc kadmind; do running "$d" && before+=("$d"); done

made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; true' EXIT

# krb5-config's questions take their defaults (noninteractive): the tests bring their own
# krb5.conf (KRB5_CONFIG) and never read /etc/krb5.conf.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for d in dovecot krb5kdc kadmind; do
    [[ " ${before[*]} " == *" $d "* ]] && continue
    running "$d" || continue
    svc=$d; [ "$d" = krb5kdc ] && svc=krb5-kdc; [ "$d" = kadmind ] && svc=krb5-admin-server
    service "$svc" stop >/dev/null 2>&1 || true
done
unpack_imapd
