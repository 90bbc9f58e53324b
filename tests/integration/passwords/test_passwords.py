"""saslauthpy.passwords against hashes made by the reference tools themselves:
mkpasswd (whois), openssl passwd, slappasswd (slapd), doveadm pw (dovecot-core), chpasswd,
Python bcrypt and argon2-cffi.  Each: the right password verifies, a wrong one does not."""

from __future__ import annotations

import ctypes
import subprocess
import threading
import time
import uuid

import pytest
from harness import need

from saslauthpy import libxcrypt, passwords
from saslauthpy.passwords import UnknownScheme, crypt, hash_password, verify

PW = "Corr3ct horse–battery"  # non-ASCII on purpose (an en dash)
PWB = PW.encode("utf-8")
WRONG = [b"", PWB[:-1], PWB + b"x", PWB.upper(), b"corr3ct horse\xe2\x80\x93battery"]


def run(*argv: str, stdin: str | None = None) -> str:
    out = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60,
                         check=True)
    return out.stdout.strip()


def assert_verifies(stored: str, default_scheme: str | None = None) -> None:
    assert verify(PWB, stored, default_scheme) is True, passwords.scheme_of(stored)
    wrongs = WRONG
    if passwords.scheme_of(stored.split("}")[-1]) == "DES":  # DES reads 8 characters only
        wrongs = [w for w in WRONG if w[:8] != PWB[:8]] + [PWB[:7], b"x" + PWB[1:]]
    for wrong in wrongs:
        assert verify(wrong, stored, default_scheme) is False, passwords.scheme_of(stored)


# --- mkpasswd (Debian whois) ------------------------------------------------------------------

MKPASSWD = {
    "yescrypt": "$y$", "gost-yescrypt": "$gy$", "scrypt": "$7$", "bcrypt": "$2b$",
    "bcrypt-a": "$2a$", "sha512crypt": "$6$", "sha256crypt": "$5$", "md5crypt": "$1$",
    "sunmd5": "$md5", "descrypt": "", "bsdicrypt": "_", "nt": "$3$",
}


@pytest.mark.parametrize("method", sorted(MKPASSWD))
def test_mkpasswd_hashes_verify_bare_and_under_crypt(method):
    need("mkpasswd")
    h = run("mkpasswd", "-m", method, "--stdin", stdin=PW)
    assert h.startswith(MKPASSWD[method])
    assert_verifies(h)
    assert_verifies("{CRYPT}" + h)
    assert_verifies("{crypt}" + h)
    assert_verifies("{UNIX}" + h)


def test_mkpasswd_sha512_with_rounds():
    need("mkpasswd")
    h = run("mkpasswd", "-m", "sha-512", "-R", "20000", "--stdin", stdin=PW)
    assert h.startswith("$6$rounds=20000$")
    assert_verifies(h)


def test_des_under_crypt_with_plain_default():
    """With default_scheme=PLAIN a bare 13-character value is cleartext, {CRYPT} is still DES."""
    h = run("mkpasswd", "-m", "descrypt", "--stdin", stdin=PW)
    assert verify(PWB, h, "PLAIN") is False
    assert verify(h.encode(), h, "PLAIN") is True
    assert verify(PWB, h, "CRYPT") is True
    assert_verifies("{CRYPT}" + h, "PLAIN")


# --- openssl passwd -----------------------------------------------------------------------------

@pytest.mark.parametrize("flag,prefix", [("-1", "$1$"), ("-5", "$5$"), ("-6", "$6$")])
def test_openssl_passwd(flag, prefix):
    need("openssl")
    h = run("openssl", "passwd", flag, "-stdin", stdin=PW)
    assert h.startswith(prefix)
    assert_verifies(h)
    assert_verifies("{CRYPT}" + h)


# --- slappasswd (Debian slapd) --------------------------------------------------------------------

@pytest.mark.slapd
@pytest.mark.parametrize("scheme", ["{SSHA}", "{SHA}", "{MD5}", "{SMD5}", "{CRYPT}"])
def test_slappasswd(scheme, tmp_path):
    need("slappasswd")
    secret = tmp_path / "pw"
    secret.write_bytes(PWB)  # -T reads the whole file (no newline) rather than argv
    argv = ["slappasswd", "-h", scheme, "-T", str(secret)]
    if scheme == "{CRYPT}":
        argv += ["-c", "$6$%.16s"]
    h = run(*argv)
    assert h.startswith(scheme)
    assert_verifies(h)
    assert_verifies(scheme.lower() + h[len(scheme):])


@pytest.mark.slapd
def test_slappasswd_crypt_default_is_des_like():
    need("slappasswd")
    h = run("slappasswd", "-h", "{CRYPT}", "-s", "secret12")
    assert verify(b"secret12", h) is True
    assert verify(b"secret13", h) is False


# --- doveadm pw (Debian dovecot-core) ------------------------------------------------------------

# `-c /dev/null`: doveadm pw needs no dovecot.conf (nor a running dovecot) this way.
DOVEADM = ("doveadm", "-c", "/dev/null")


def doveadm_pw(scheme: str, password: str = PW) -> str:
    need("doveadm")
    return run(*DOVEADM, "pw", "-s", scheme, "-p", password)


DOVECOT_SCHEMES = [
    "SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "CRYPT", "ARGON2I", "ARGON2ID",
    "PBKDF2", "SSHA512", "SSHA256", "SSHA", "SHA512", "SHA256", "SHA", "SHA1", "SMD5", "MD5",
    "PLAIN-MD5", "LDAP-MD5", "PLAIN", "CLEARTEXT", "CLEAR",
    "SHA256.HEX", "SHA512.hex", "SSHA.HEX", "SSHA512.hex", "SMD5.HEX", "PLAIN-MD5.b64",
    "LDAP-MD5.hex", "SHA.hex", "PLAIN.b64", "PLAIN.HEX", "SSHA256.b64",
]


@pytest.mark.dovecot
@pytest.mark.parametrize("scheme", DOVECOT_SCHEMES)
def test_doveadm_pw(scheme):
    h = doveadm_pw(scheme)
    assert h.upper().startswith("{" + scheme.upper() + "}")
    assert_verifies(h)
    assert_verifies(h.replace(h[1:h.index("}")], h[1:h.index("}")].lower(), 1))


@pytest.mark.dovecot
def test_doveadm_md5_is_md5_crypt_and_plain_md5_payloads():
    """Dovecot's {MD5} is MD5-CRYPT; an LDAP {MD5} is base64 of the digest; both verify, and so
    does a hex digest under {MD5} (Dovecot accepts it: checked with doveadm pw -t)."""
    h = doveadm_pw("MD5")
    assert h.startswith("{MD5}$1$")
    assert_verifies(h)
    hexdigest = doveadm_pw("PLAIN-MD5")[len("{PLAIN-MD5}"):]
    b64digest = doveadm_pw("LDAP-MD5")[len("{LDAP-MD5}"):]
    for payload in (hexdigest, hexdigest.upper(), b64digest):
        assert_verifies("{MD5}" + payload)
        assert_verifies("{PLAIN-MD5}" + payload)
        run(*DOVEADM, "pw", "-t", "{MD5}" + payload, "-p", PW)  # the reference agrees


@pytest.mark.dovecot
def test_doveadm_pbkdf2_format():
    h = doveadm_pw("PBKDF2")
    _, one, salt, rounds, digest = h[len("{PBKDF2}"):].split("$")
    assert one == "1" and rounds.isdigit() and len(digest) == 40
    assert_verifies(h)


@pytest.mark.dovecot
def test_our_hashes_pass_doveadm_pw_t():
    """Every hash_password() scheme with a Dovecot name is accepted by `doveadm pw -t`."""
    need("doveadm")
    for scheme, (prefix, _) in passwords.HASH_SCHEMES.items():
        h = hash_password(PWB, scheme)
        stored = h if prefix else "{CRYPT}" + h
        if scheme in ("SCRYPT", "GOST-YESCRYPT") or (scheme == "BCRYPT"):
            stored = "{CRYPT}" + h  # Dovecot reads these through crypt(3)
        out = subprocess.run([*DOVEADM, "pw", "-t", stored, "-p", PW], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and "(verified)" in out.stdout, scheme
        wrong = subprocess.run([*DOVEADM, "pw", "-t", stored, "-p", PW + "x"],
                               capture_output=True, text=True, timeout=60)
        assert wrong.returncode != 0, scheme


# --- chpasswd (a real shadow line) ------------------------------------------------------------

@pytest.mark.root  # useradd
@pytest.mark.parametrize("method", ["SHA512", "YESCRYPT"])
def test_chpasswd_shadow_line(method):
    need("chpasswd")
    user = "sptpw" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", user], check=True)
    try:
        subprocess.run(["chpasswd", "-c", method], input=f"{user}:{PW}\n", text=True,
                       check=True)
        with open("/etc/shadow", encoding="utf-8") as f:
            line = next(x for x in f if x.startswith(user + ":"))
        h = line.split(":")[1]
        assert h.startswith({"SHA512": "$6$", "YESCRYPT": "$y$"}[method])
        assert_verifies(h)
        subprocess.run(["usermod", "-L", user], check=True)  # locked: "!" + hash
        with open("/etc/shadow", encoding="utf-8") as f:
            locked = next(x for x in f if x.startswith(user + ":")).split(":")[1]
        assert locked == "!" + h
        assert verify(PWB, locked) is False
    finally:
        subprocess.run(["userdel", user], check=False)


# --- Python bcrypt and argon2-cffi ------------------------------------------------------------

def test_python_bcrypt():
    import bcrypt

    h = bcrypt.hashpw(PWB, bcrypt.gensalt(6)).decode()
    assert h.startswith("$2b$06$")
    assert_verifies(h)
    assert_verifies("{BLF-CRYPT}" + h)
    assert_verifies("{BLF-CRYPT}$2y$" + h[4:])
    assert_verifies("$2y$" + h[4:])
    a = bcrypt.hashpw(PWB, bcrypt.gensalt(6, prefix=b"2a")).decode()
    assert a.startswith("$2a$")
    assert_verifies(a)


def test_bcrypt_long_password_is_truncated_at_72_like_crypt():
    import bcrypt

    long_pw = b"a" * 80
    h = bcrypt.hashpw(long_pw[:72], bcrypt.gensalt(4)).decode()
    assert verify(long_pw, h) is True
    assert verify(b"a" * 71, h) is False


@pytest.mark.parametrize("kind", ["ID", "I"])
def test_python_argon2(kind):
    import argon2

    ph = argon2.PasswordHasher(type=getattr(argon2.Type, kind), memory_cost=8192, time_cost=1)
    h = ph.hash(PWB)
    assert h.startswith(f"$argon2{kind.lower()}$")
    assert_verifies(h)
    assert_verifies("{ARGON2" + kind + "}" + h)
    assert_verifies("{ARGON2}" + h)  # OpenLDAP's pw-argon2 prefix for either variant


@pytest.mark.dovecot
def test_without_libxcrypt_bcrypt_still_works(monkeypatch):
    """Where libxcrypt cannot be loaded, bcrypt hashes verify through the bcrypt package, new
    hashes fall back to bcrypt cost 12, and other crypt(3) hashes are simply False."""
    import bcrypt

    dove = doveadm_pw("BLF-CRYPT")  # $2y$, made while libxcrypt is still there
    sha = run("openssl", "passwd", "-6", "-stdin", stdin=PW)
    monkeypatch.setattr(libxcrypt, "_lib", None)
    assert not passwords.crypt_available() and crypt(PWB, sha) is None
    assert passwords._yescrypt_works() is False  # so DEFAULT_SCHEME would be BCRYPT
    assert_verifies(dove)
    assert_verifies(bcrypt.hashpw(PWB, bcrypt.gensalt(4, prefix=b"2a")).decode())
    h = hash_password(PWB, "BCRYPT")
    assert h.startswith("$2b$12$")
    assert_verifies(h)
    assert verify(PWB, sha) is False


# --- our own hashing ---------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", sorted(passwords.HASH_SCHEMES))
def test_hash_password_round_trip(scheme):
    h = hash_password(PWB, scheme)
    assert PW not in h
    assert_verifies(h)
    assert hash_password(PWB, scheme) != h  # salted


def test_default_scheme_is_yescrypt():
    assert passwords.crypt_available()
    assert passwords.DEFAULT_SCHEME == "YESCRYPT"
    h = hash_password(PWB)
    assert h.startswith("$y$")
    assert_verifies(h)


def test_hash_password_refuses_weak_and_unknown_schemes():
    for weak in ("PLAIN", "SHA", "PLAIN-MD5", "MD5"):
        with pytest.raises(ValueError):
            hash_password(PWB, weak)
    with pytest.raises(UnknownScheme):
        hash_password(PWB, "ROT13")


# --- unknown, locked, malformed -----------------------------------------------------------------

def test_unknown_scheme_names_prefix_never_hash():
    cases = {
        "{FOO}c2VjcmV0aGFzaA==": "{FOO}",
        "{SSHA.rot}c2VjcmV0aGFzaA==": "{SSHA.rot}",
        "$9$saltsalt$hashhashhash": "$9$",
        "$pbkdf2-sha256$29000$abc$def": "$pbkdf2-sha256$",
        "plainvaluehere": "",
        "c2VjcmV0aGFzaA==": "",
    }
    for stored, prefix in cases.items():
        with pytest.raises(UnknownScheme) as ei:
            verify(PWB, stored)
        assert ei.value.scheme == prefix
        assert isinstance(ei.value, ValueError)
        body = stored[len(ei.value.scheme):]
        assert body not in str(ei.value) and body not in repr(ei.value.args)


def test_default_scheme_for_plain_values():
    assert verify(b"hunter2", "hunter2", default_scheme="PLAIN") is True
    assert verify(b"hunter3", "hunter2", default_scheme="CLEARTEXT") is False
    md5hex = run(*DOVEADM, "pw", "-s", "PLAIN-MD5", "-p", "hunter2")[len("{PLAIN-MD5}"):]
    assert verify(b"hunter2", md5hex, default_scheme="PLAIN-MD5") is True
    assert verify(b"hunter2", md5hex, default_scheme="{plain-md5}") is True
    # a value with its own scheme ignores the default
    assert verify(b"hunter2", "{PLAIN-MD5}" + md5hex, default_scheme="PLAIN") is True
    assert passwords.is_known_scheme("ssha.hex") and not passwords.is_known_scheme("NOPE")
    with pytest.raises(UnknownScheme):
        verify(b"x", "hunter2", default_scheme="NOPE")


@pytest.mark.parametrize("name", ["SSHA.", "{PLAIN.}", "PLAIN.rot", "PL AIN", ""])
def test_a_default_scheme_is_known_exactly_when_verify_can_use_it(name):
    """is_known_scheme (the config check) and verify (the login) agree: "SSHA." used to pass
    the check and then make every login raise UnknownScheme."""
    assert passwords.is_known_scheme(name) is False
    with pytest.raises(UnknownScheme):
        verify(b"hunter2", "hunter2", default_scheme=name)
    for good in ("PLAIN", " {plain} ", "PLAIN.hex", "{Plain.B64}"):
        assert passwords.is_known_scheme(good)
        verify(b"hunter2", "hunter2", default_scheme=good)  # no UnknownScheme


def test_locked_hashes_are_never_ok():
    good = run("mkpasswd", "-m", "sha512crypt", "--stdin", stdin=PW)
    assert verify(PWB, good) is True
    for stored in ["!", "*", "!!", "*LK*", "!" + good, "!!" + good, "*" + good, "",
                   "{CRYPT}!" + good, "{CRYPT}*", "{SHA512-CRYPT}!" + good]:
        assert verify(PWB, stored) is False, stored[:3]
        assert verify(b"", stored) is False
    # even with cleartext as the default, a leading ! or * means locked
    assert verify(b"!pw", "!pw", default_scheme="PLAIN") is False


def test_malformed_values_of_known_schemes_are_false():
    bad = [
        "{SSHA}", "{SSHA}!!!not base64", "{SSHA}AAAA", "{SHA}abc", "{SHA256.HEX}zz",
        "{PLAIN-MD5}xyz", "{MD5}$1$", "{SMD5}====", "{PBKDF2}$1$salt$10$nothex",
        "{PBKDF2}$1$salt$99999999999$" + "0" * 40, "{PBKDF2}garbage", "{ARGON2ID}junk",
        "{ARGON2ID}$argon2id$v=19$m=x", "$argon2id$v=19$m=65536,t=3,p=4$bad",
        "$6$", "$6$rounds=abc$x$y", "$y$j9T$", "$2b$12$short", "$2y$99$" + "a" * 53,
        "{CRYPT}", "{CRYPT}$1$", "{BLF-CRYPT}$2b$xx", "$1$\u00e9\u00e9$x", "{PLAIN.b64}%%%",
        "{SHA512-CRYPT}$6$sa\x00lt$abc",
    ]
    for stored in bad:
        assert verify(PWB, stored) is False, passwords.scheme_of(stored)


def test_crypt_failure_tokens_and_nul():
    assert crypt(PWB, "*0") is None
    assert crypt(PWB, "*1") is None
    assert crypt(PWB, "$9$abc$") is None
    assert crypt(b"a\0b", "$6$salt$") is None
    h = crypt(PWB, "$6$saltsalt$")
    assert h is not None and h.startswith("$6$saltsalt$")
    assert verify(PWB + b"\0junk", h) is False
    assert verify(PWB, "*0") is False and verify(PWB, "*1") is False


def test_stored_bytes_are_accepted():
    h = hash_password(PWB, "SSHA512")
    assert verify(PWB, h.encode()) is True
    assert verify(PWB, b"\xff\xfe") is False


# --- the GIL ----------------------------------------------------------------------------------

def _longest_stall(call) -> tuple[float, float]:
    """Run ``call`` in a thread while this thread keeps executing Python; return (duration of
    the call, longest gap between two iterations of this thread's loop during it)."""
    span: list[float] = []

    def work() -> None:
        time.sleep(0.05)  # let the main loop get going first
        span.append(time.perf_counter())
        call()
        span.append(time.perf_counter())

    t = threading.Thread(target=work)
    stamps = []
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    start, end = span
    inside = [x for x in stamps if start <= x <= end] or [start]
    edges = [start] + inside + [end]
    return end - start, max(b - a for a, b in zip(edges, edges[1:], strict=False))


def _crypt_holding_gil(password: bytes, setting: str) -> bytes | None:
    """The same libxcrypt call through ctypes.PyDLL, which keeps the GIL (the negative
    control: it shows the measurement below would catch a GIL-holding crypt)."""
    lib = ctypes.PyDLL("libcrypt.so.1")
    fn = lib.crypt_rn
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    fn.restype = ctypes.c_char_p
    buf = ctypes.create_string_buffer(32768)
    return fn(password, setting.encode(), buf, 32768)


@pytest.mark.parametrize("prefix,count", [("$y$", 8), ("$6$", 1_000_000)])
def test_crypt_releases_the_gil_during_the_call(prefix, count):
    """While one thread is inside crypt() another keeps running Python: its longest stall is a
    small part of the call (measured 1-7 %, on a loaded machine).  Through PyDLL (GIL held)
    it stalls for the whole call (83-100 %)."""
    setting = passwords.gensalt(prefix, count)
    assert setting
    dur, stall = _longest_stall(lambda: crypt(PWB, setting))
    assert dur > 0.05, dur
    assert stall < 0.3 * dur, (stall, dur)
    dur_held, stall_held = _longest_stall(lambda: _crypt_holding_gil(PWB, setting))
    assert stall_held > 0.6 * dur_held, (stall_held, dur_held)


# --- end to end: the daemon, an existing SQL schema, the real testsaslauthd --------------------

def _reference_rows() -> dict[str, str]:
    """login -> stored hash of PW, one per reference tool and scheme."""
    rows = {
        "mk-yescrypt": run("mkpasswd", "-m", "yescrypt", "--stdin", stdin=PW),
        "mk-bcrypt": "{CRYPT}" + run("mkpasswd", "-m", "bcrypt", "--stdin", stdin=PW),
        "ossl-md5": run("openssl", "passwd", "-1", "-stdin", stdin=PW),
        "ossl-sha256": run("openssl", "passwd", "-5", "-stdin", stdin=PW),
        "slap-ssha": run("slappasswd", "-h", "{SSHA}", "-s", PW),
        "slap-smd5": run("slappasswd", "-h", "{SMD5}", "-s", PW),
    }
    for scheme in ("SHA512-CRYPT", "BLF-CRYPT", "ARGON2ID", "PBKDF2", "PLAIN-MD5", "SSHA512",
                   "MD5", "SHA256.HEX", "CLEARTEXT"):
        rows["dove-" + scheme.lower()] = doveadm_pw(scheme)
    return rows


@pytest.mark.csaslauthd
@pytest.mark.dovecot
def test_daemon_answers_testsaslauthd_for_every_reference_hash(daemon_factory, tmp_path):
    import sqlite3

    from harness import testsaslauthd

    need("testsaslauthd")
    rows = _reference_rows()
    db = tmp_path / "mail.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE mailbox (username TEXT PRIMARY KEY, password TEXT)")
        conn.executemany("INSERT INTO mailbox VALUES (?, ?)",
                         [(f"{u}@example.com", h) for u, h in rows.items()]
                         + [("unknown@example.com", "{ROT13}" + "pbeerpg"),
                            ("locked@example.com", "!" + rows["ossl-sha256"]),
                            ("bare@example.com", PW)])
    conn.close()
    d = daemon_factory(config={"mechanisms": ["sql"], "sql": {
        "url": f"sqlite:///{db}",
        "query": "SELECT password FROM mailbox WHERE username = :address"}})
    ok, no = '0: OK "Success."', '0: NO "authentication failed"'
    for user in rows:
        good = testsaslauthd(d.mux, user, PW, realm="example.com")
        assert good.stdout.strip() == ok, (user, good.stdout, good.stderr)
        bad = testsaslauthd(d.mux, user, PW + "x", realm="example.com")
        assert bad.stdout.strip() == no, (user, bad.stdout)
    for user in ("unknown", "locked", "bare"):  # unknown scheme, locked, no scheme at all
        res = testsaslauthd(d.mux, user, PW, realm="example.com")
        assert res.stdout.strip() == no, (user, res.stdout)
    # neither the password nor any stored hash reaches a log
    logs = d.stderr() + (d.audit_path.read_text() if d.audit_path.exists() else "")
    assert PW not in logs and "pbeerpg" not in logs
    for h in rows.values():
        assert h[-12:] not in logs
