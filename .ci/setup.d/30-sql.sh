#!/usr/bin/env bash
# The sql backend's tests (tests/integration/sql/):
# - PostgreSQL 15 (127.0.0.1:5432, trust) and MariaDB (127.0.0.1:3306, root without
#   password) must be up: start them if they are not, and wait until they accept logins;
# - initdb/pg_ctl (postgresql-15) and mariadb-install-db/mariadbd (mariadb-server): the
#   outage tests run private servers of their own on other ports and stop/freeze those;
# - reference hash tools: doveadm pw (dovecot-core; its daemon is kept from starting),
#   mkpasswd (whois), openssl passwd; ps (procps) and runuser (util-linux).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

pkgs=(postgresql-15 postgresql-client-15 mariadb-server mariadb-client dovecot-core whois
      openssl procps util-linux)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    dovecot_before=0
    pgrep -x dovecot >/dev/null 2>&1 && dovecot_before=1
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then  # no daemon starts during the install
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    trap '[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; true' EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$dovecot_before" = 0 ] && pgrep -x dovecot >/dev/null 2>&1; then
        service dovecot stop >/dev/null 2>&1 || true
    fi
fi

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 && psql -qtA -h 127.0.0.1 -U postgres -c 'SELECT 1' >/dev/null 2>&1; }
my_up() { mysql -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; }
wait_for() {  # $1 = check function, $2 = name
    for _ in $(seq 1 150); do "$1" && return 0; sleep 0.2; done
    echo "30-sql: $2 does not accept connections on loopback" >&2
    return 1
}

if ! pg_up; then
    for ver in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    done
fi
wait_for pg_up PostgreSQL

if ! my_up; then
    install -d -o mysql -g mysql -m 755 /run/mysqld
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
fi
wait_for my_up MariaDB
