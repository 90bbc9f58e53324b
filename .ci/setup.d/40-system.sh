#!/usr/bin/env bash
# System backends (getpwent, shadow, pam, sasldb) and their reference tools:
# the C saslauthd/saslpasswd2/sasldblistusers2, libdb 5.3 (+ db_dump/db_load), GDBM
# (libgdbm6, and python3-gdbm as an independent GDBM writer for tests), LMDB tools,
# PAM modules (pam_unix, pam_access, pam_exec), shadow tools (useradd, chpasswd, chage);
# unshare/mount (util-linux, mount) run the C saslauthd
# against a test sasldb in a private mount namespace.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends \
    sasl2-bin libsasl2-modules libdb5.3 db5.3-util libgdbm6 python3-gdbm lmdb-utils \
    libpam0g libpam-modules libpam-modules-bin libpam-runtime passwd login \
    util-linux mount >/dev/null
python3 -m pip install -q --root-user-action=ignore "lmdb>=1.4"
