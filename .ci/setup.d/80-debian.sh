#!/usr/bin/env bash
# The Debian package and the systemd container tests (tests/integration/debian/):
# - the tools to build the .deb from this checkout (dpkg-buildpackage with dh-virtualenv)
#   and to check it (lintian);
# - a booted Debian 12 container: debootstrap makes the root file system once, and
#   systemd-nspawn (systemd-container) boots it with systemd as PID 1 for each test run,
#   on a throw-away overlay, so the cached tree is never changed by a test.
#
# The tree is cached in $SASLAUTHPY_CONTAINER_CACHE (default /var/cache/saslauthpy-ci), in a
# directory named after a hash of what goes into it (the suite, the mirror, the package list
# and the customize function below).  The same inputs reuse it; changed ones build a new
# tree and remove the old ones.  tests/helpers/container.py finds it through the "current"
# symlink.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
for pkg in debootstrap systemd-container lintian build-essential fakeroot dpkg-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The package's Build-Depends, read from debian/control itself.
if ! dpkg-checkbuilddeps >/dev/null 2>&1; then
    apt-get update -qq
    apt-get build-dep -y -qq ./ >/dev/null
fi

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
# systemd as PID 1, what the package depends on (so dpkg -i works offline), and what the
# tests run inside: testsaslauthd (sasl2-bin), useradd/chpasswd, PAM, ps.
INCLUDE=systemd,systemd-sysv,dbus,python3,libcrypt1,libdb5.3,libgdbm6,libpam-modules,libpam-runtime,passwd,login,procps,sasl2-bin,libsasl2-modules,logrotate

customize() {  # $1 = the new tree
    chroot "$1" apt-get clean
    rm -rf "$1"/var/lib/apt/lists/*
    echo saslauthpy-test > "$1/etc/hostname"
    # Boot without waiting for a network or starting timers the tests do not need.
    chroot "$1" systemctl mask -q systemd-networkd-wait-online.service \
        systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
}

cache="${SASLAUTHPY_CONTAINER_CACHE:-/var/cache/saslauthpy-ci}"
# The key: what goes into the tree (suite, mirror, packages, customize), nothing else.
key="$(printf '%s\n' "$SUITE" "$MIRROR" "$INCLUDE" "$(declare -f customize)" \
       | sha256sum | cut -c1-16)"
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
customize "$root.tmp"
touch "$root.tmp/.complete"
mv "$root.tmp" "$root"
ln -sfn "$(basename "$root")" "$cache/current"
# Older trees (other keys) are no longer used.
for old in "$cache/$SUITE"-*; do
    [ "$old" = "$root" ] || rm -rf --one-file-system "$old"
done
