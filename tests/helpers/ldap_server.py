"""A real OpenLDAP ``slapd`` for tests: temporary directory, loopback ports, test data.

Reusable by any test module (the ldap backend's tests, an OpenLDAP pass-through test...)::

    from ldap_server import Slapd, TestCA, USERS, BASE_DN

    @pytest.fixture(scope="module")
    def slapd(tmp_path_factory):
        ca = TestCA(tmp_path_factory.mktemp("ca"))          # optional: ldaps:// + StartTLS
        server = Slapd(tmp_path_factory.mktemp("slapd"), ca=ca).start()
        yield server
        server.stop()

    server.uri        # "ldap://127.0.0.1:PORT/"
    server.ldapi_uri  # "ldapi://%2Ftmp%2F...%2Fldapi" (SASL EXTERNAL: root maps to cn=saslauthd)
    server.ldaps_uri  # "ldaps://127.0.0.1:PORT/" (only with a CA)
    server.stop(); server.start()          # same ports, same data: a server "coming back"
    server.pause(); server.resume()        # SIGSTOP / SIGCONT: a stalled server
    server.set_password("uid=alice,...", "new")  # as the rootdn, with ldappasswd
    server.modify(ldif_text)                     # ldapmodify as the rootdn

The directory is ``slapd.conf`` + ``example.ldif`` in tests/integration/ldap/data/ (users,
passwords and groups are listed in ``USERS`` below and in the LDIF's header).  It runs
in the foreground (``-d 0``) under this test process, also listens on ``ldapi_uri``
(a socket in its directory), accepts SASL binds (DIGEST-MD5, PLAIN over TLS, EXTERNAL:
see the slapd.conf and tests/integration/ldap/test_ldap_sasl.py), never touches the system slapd
or /var/lib/ldap, and ``stop()`` kills only the process it started.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from harness import freeze, need

DATA = Path(__file__).resolve().parents[1] / "integration" / "ldap" / "data"

BASE_DN = "dc=example,dc=org"
PEOPLE_DN = f"ou=people,{BASE_DN}"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PW = "admin-secret"
SERVICE_DN = f"cn=saslauthd,{BASE_DN}"
SERVICE_PW = "service-secret"
MAILUSERS_DN = f"cn=mailusers,ou=groups,{BASE_DN}"
STAFF_DN = f"cn=staff,ou=groups,{BASE_DN}"

# login -> password (None: the entry has no userPassword)
USERS: dict[str, str | None] = {
    "alice": "alice-secret",  # {SSHA}; in mailusers and staff
    "bob": "bob-secret",  # {CRYPT}$6$; in no group
    "carol": None,  # no userPassword
    "dave": "dave-secret",  # cleartext userPassword; in mailusers
    "erin": "erin-secret",  # {ARGON2}; in mailusers
    "frank": "frank-secret",  # {SSHA512}; in staff
    "twin": "twin-secret",  # two entries: ambiguous
}


def user_dn(login: str) -> str:
    return f"uid={login},{PEOPLE_DN}"


# DIGEST-MD5 needs the secret in cleartext on the server: the service account's and bob's
# (dave's is cleartext in the LDIF).  ``Slapd.modify(SASL_CLEARTEXT)``.
SASL_CLEARTEXT = f"""\
dn: {SERVICE_DN}
changetype: modify
replace: userPassword
userPassword: {SERVICE_PW}

dn: {user_dn("bob")}
changetype: modify
replace: userPassword
userPassword: bob-secret
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestCA:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, made with openssl."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, names: tuple[str, ...] = ("127.0.0.1", "localhost")):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_cert = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self.cert = self.dir / "server.pem"
        self.key = self.dir / "server.key"
        self.client_cert = self.dir / "client.pem"
        self.client_key = self.dir / "client.key"
        openssl = need("openssl")

        def run(*args: str) -> None:
            subprocess.run([openssl, *args], check=True, capture_output=True, cwd=self.dir)

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=saslauthpy test CA", "-keyout", str(self.ca_key),
            "-out", str(self.ca_cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        san = ",".join(("IP:" if n[0].isdigit() else "DNS:") + n for n in names)
        for cert, key, cn in ((self.cert, self.key, names[0]),
                              (self.client_cert, self.client_key, "saslauthpy client")):
            csr = self.dir / (cert.stem + ".csr")
            ext = self.dir / (cert.stem + ".ext")
            ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
            run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", str(key), "-out", str(csr))
            run("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey",
                str(self.ca_key), "-CAcreateserial", "-days", "2", "-out", str(cert),
                "-extfile", str(ext))
        for key in (self.ca_key, self.key, self.client_key):
            key.chmod(0o600)


class Slapd:
    """One slapd process serving the example directory from its own temporary directory."""

    def __init__(self, directory: Path, ca: TestCA | None = None,
                 ldif: Path | None = None, port: int | None = None, sizelimit: int = 500,
                 ldapi_uri: str = ""):
        """``sizelimit``: slapd's own limit on entries per search; ``ldapi_uri``: where it
        listens for ldapi:// (default: a socket in its directory)."""
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.port = port or free_port()
        self.ldaps_port = free_port() if ca else None
        self.proc: subprocess.Popen | None = None
        self.conf = self.dir / "slapd.conf"
        self.log = self.dir / "slapd.log"
        tls = ""
        if ca:
            tls = (f"TLSCACertificateFile {ca.ca_cert}\nTLSCertificateFile {ca.cert}\n"
                   f"TLSCertificateKeyFile {ca.key}\nTLSVerifyClient allow")
        text = (DATA / "slapd.conf").read_text().replace("@dir@", str(self.dir))
        text = text.replace("@tls@", tls).replace("@sizelimit@", str(sizelimit))
        self._ldapi_uri = ldapi_uri
        self.conf.write_text(text)
        (self.dir / "data").mkdir(exist_ok=True)
        subprocess.run([need("slapadd"), "-q", "-f", str(self.conf), "-l",
                        str(ldif or DATA / "example.ldif")],
                       check=True, capture_output=True)

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def ldapi_uri(self) -> str:
        return self._ldapi_uri or "ldapi://" + quote(str(self.dir / "ldapi"), safe="")

    @property
    def ldaps_uri(self) -> str:
        if self.ldaps_port is None:
            raise RuntimeError("this slapd has no TLS: pass ca=TestCA(...)")
        return f"ldaps://127.0.0.1:{self.ldaps_port}/"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> Slapd:
        if self.running:
            return self
        urls = f"{self.uri} {self.ldapi_uri}" + (f" {self.ldaps_uri}" if self.ldaps_port else "")
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [need("slapd"), "-f", str(self.conf), "-h", urls, "-n", "saslauthpy-test-slapd",
             "-d", "0"],
            stdout=self._log, stderr=self._log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not answer on {self.uri} within {timeout}s")

    def _answers(self) -> bool:
        res = subprocess.run(
            [need("ldapsearch"), "-x", "-H", self.uri, "-b", "", "-s", "base",
             "-o", "nettimeout=1", "(objectClass=*)", "1.1"], capture_output=True)
        # 0, or a refusal with the server's result code (a slapd that allows no anonymous
        # bind); 255 is libldap's "Can't contact LDAP server"
        return res.returncode != 255

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._log.close()

    def pause(self) -> None:
        """Stall the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self.proc is not None
        freeze(self.proc.pid)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def _admin(self, program: str, *args: str, stdin: str | None = None) -> str:
        res = subprocess.run([need(program), "-x", "-H", self.uri, "-D", ADMIN_DN, "-w", ADMIN_PW,
                              *args], input=stdin, capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"{program} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def modify(self, ldif: str) -> None:
        """Apply an LDIF change set as the rootdn (``ldapmodify``)."""
        self._admin("ldapmodify", stdin=ldif)

    def set_password(self, dn: str, password: str) -> None:
        """Change a password as the rootdn (``ldappasswd``: slapd stores {SSHA})."""
        self._admin("ldappasswd", "-s", password, dn)

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
