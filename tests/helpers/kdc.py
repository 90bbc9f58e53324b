"""A real MIT Kerberos KDC for the kerberos5 tests, from temporary files.

    kdc = KDC(tmp_dir).start()     # realm SASLAUTHPY.TEST, users USERS, a host keytab
    kdc.env        # {"KRB5_CONFIG": ..., "KRB5_KTNAME": ...} for libkrb5 and the daemons
    kdc.keytab     # host/<this host> keys
    kdc.stop(); kdc.start()        # same port: a KDC going away and coming back

``kdb5_util create`` makes the database, ``kadmin.local`` the principals and the keytab,
and ``krb5kdc -n`` serves them on a loopback port (UDP and TCP) under this test process;
KRB5_CONFIG and KRB5_KDC_PROFILE point every tool at the temporary files, so the system's
/etc/krb5.conf, /etc/krb5kdc and /etc/krb5.keytab are never read or written.  Two KDCs of
the same realm with different keys stand for the real KDC and a spoofed one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import need
from ldap_server import free_port

REALM = "SASLAUTHPY.TEST"
# principal (without realm) -> password
USERS = {
    "alice": "alice-pw",
    "jörg": "pässwörd-€",
    "carol/mail": "carol-mail-pw",  # an instance, for krb5_<service>_instance
    "expired": "expired-pw",  # password expired (-pwexpire)
    "locked": "locked-pw",  # no tickets allowed (-allow_tix)
}

KRB5_CONF = """\
[libdefaults]
  default_realm = {realm}
  dns_lookup_kdc = false
  dns_lookup_realm = false
  dns_canonicalize_hostname = false
  rdns = false
[realms]
  {realm} = {{
    kdc = 127.0.0.1:{port}
  }}
"""

KDC_CONF = """\
[kdcdefaults]
  kdc_listen = 127.0.0.1:{port}
  kdc_tcp_listen = 127.0.0.1:{port}
[realms]
  {realm} = {{
    database_name = {dir}/principal
    key_stash_file = {dir}/stash
    acl_file = {dir}/kadm5.acl
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
  }}
[logging]
  kdc = FILE:{dir}/kdc.log
"""


def host_principal() -> str:
    return f"host/{socket.gethostname()}"


class KDC:
    def __init__(self, directory: Path, users: dict[str, str] | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.realm = REALM
        self.port = free_port()
        self.krb5_conf = self.dir / "krb5.conf"
        self.keytab = self.dir / "krb5.keytab"
        self.krb5_conf.write_text(KRB5_CONF.format(realm=REALM, port=self.port))
        (self.dir / "kdc.conf").write_text(KDC_CONF.format(realm=REALM, port=self.port,
                                                            dir=self.dir))
        (self.dir / "kadm5.acl").write_text("")
        self.env = {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KTNAME": f"FILE:{self.keytab}"}
        self._tool_env = {**os.environ, **self.env,
                          "KRB5_KDC_PROFILE": str(self.dir / "kdc.conf")}
        self.proc: subprocess.Popen | None = None
        subprocess.run([need("kdb5_util"), "create", "-s", "-r", REALM, "-P",
                        "master-" + os.urandom(6).hex()], env=self._tool_env, check=True,
                       capture_output=True)
        for name, password in (users or USERS).items():
            self.kadmin(f"addprinc -pw {password} {name}")
        if "expired" in (users or USERS):
            self.kadmin("modprinc -pwexpire 2000-01-01 expired")
        if "locked" in (users or USERS):
            self.kadmin("modprinc -allow_tix locked")
        self.kadmin(f"addprinc -randkey {host_principal()}")
        self.kadmin(f"ktadd -k {self.keytab} {host_principal()}")

    def kadmin(self, query: str) -> str:
        res = subprocess.run([need("kadmin.local"), "-r", REALM, "-q", query],
                             env=self._tool_env, capture_output=True, text=True)
        if res.returncode != 0 or "error" in res.stderr.lower():
            raise RuntimeError(f"kadmin.local {query.split()[0]}: {res.stderr}")
        return res.stdout

    def start(self) -> KDC:
        self.proc = subprocess.Popen([need("krb5kdc"), "-n", "-r", REALM],
                                     env=self._tool_env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"krb5kdc exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"krb5kdc did not listen on 127.0.0.1:{self.port}: {self.log()}")

    def log(self) -> str:
        path = self.dir / "kdc.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
