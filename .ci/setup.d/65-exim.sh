#!/usr/bin/env bash
# Exim with its `dovecot` authenticator, for tests/integration/dovecot/test_exim.py.
#
# Debian's exim4 packages conflict with postfix (both provide mail-transport-agent), and
# only exim4-daemon-heavy has the dovecot authenticator.  So the package is unpacked, not
# installed: its binary goes to /opt/saslauthpy-test/exim4 (the tests run it with -C and
# their own configuration), its libraries are installed, and the user Debian-exim it drops
# to (compiled in) is created.  Postfix stays installed; no Exim service ever starts.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

dest=/opt/saslauthpy-test/exim4
id Debian-exim >/dev/null 2>&1 || useradd --system --no-create-home \
    --home-dir /var/spool/exim4 --shell /usr/sbin/nologin Debian-exim
[ -x "$dest/usr/sbin/exim4" ] && exit 0

# The libraries exim4-daemon-heavy links (its Depends: line without exim4-base/debconf).
apt-get install -y -qq --no-install-recommends libdb5.3 libgnutls-dane0 libgnutls30 libidn12 \
    libidn2-0 libldap-2.5-0 libmariadb3 libnsl2 libpam0g libpcre2-8-0 libperl5.36 libpq5 \
    libsasl2-2 libspf2-2 libsqlite3-0 >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq exim4-daemon-heavy 2>/dev/null)
mkdir -p "$dest"
dpkg-deb -x "$tmp"/exim4-daemon-heavy_*.deb "$dest"
"$dest/usr/sbin/exim4" -bV -C /dev/null 2>/dev/null | grep -q 'Authenticators:.*dovecot'
