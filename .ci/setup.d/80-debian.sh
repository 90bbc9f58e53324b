#!/usr/bin/env bash
# The Debian package and the systemd container tests (tests/integration/debian/):
# - the tools to build the .deb from this checkout (dpkg-buildpackage with dh-virtualenv)
#   and to check it (lintian);
# - a booted Debian 12 container: debootstrap makes the root file system once, and
#   systemd-nspawn (systemd-container) boots it with systemd as PID 1 for each test run,
#   on a throw-away overlay, so the cached tree is never changed by a test.
#
# The tree is cached in $SASLAUTHPY_CONTAINER_CACHE (default /var/cache/saslauthpy-ci), in a
# directory named after a hash of what goes into it (this script: the suite, the mirror and
# the package list).  An unchanged script reuses it; a changed one builds a new tree and
# removes the old ones.  tests/integration/debian/container.py finds the tree through the
# "current" symlink.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
for pkg in debootstrap systemd-container dh-virtualenv debhelper lintian python3-venv \
           build-essential fakeroot; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
# systemd as PID 1, what the package depends on (so dpkg -i works offline), and what the
# tests run inside: testsaslauthd (sasl2-bin), useradd/chpasswd, PAM, ps.
INCLUDE=systemd,systemd-sysv,dbus,python3,libcrypt1,libdb5.3,libgdbm6,libpam-modules,libpam-runtime,passwd,login,procps,sasl2-bin,libsasl2-modules,logrotate

cache="${SASLAUTHPY_CONTAINER_CACHE:-/var/cache/saslauthpy-ci}"
key="$(sha256sum "$0" | cut -c1-16)"
root="$cache/$SUITE-$key"
if [ -e "$root/.complete" ]; then
    ln -sfn "$(basename "$root")" "$cache/current"
    exit 0
fi

mkdir -p "$cache"
if [ -e "$root.tmp" ]; then  # an interrupted build: debootstrap may have left /proc mounted
    findmnt -rno TARGET | grep -F "$root.tmp/" | sort -r | xargs -r -n1 umount -l
    rm -rf --one-file-system "$root.tmp"
fi
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root.tmp" "$MIRROR" \
    >"$cache/debootstrap.log" 2>&1 || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
chroot "$root.tmp" apt-get clean
rm -rf "$root.tmp"/var/lib/apt/lists/*
echo saslauthpy-test > "$root.tmp/etc/hostname"
# A root login is never needed (the tests use nsenter); boot without waiting for a network.
chroot "$root.tmp" systemctl mask -q systemd-networkd-wait-online.service \
    systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
touch "$root.tmp/.complete"
mv "$root.tmp" "$root"
ln -sfn "$(basename "$root")" "$cache/current"
# Older trees (other keys) are no longer used.
for old in "$cache/$SUITE"-*; do
    [ "$old" = "$root" ] || rm -rf "$old"
done
