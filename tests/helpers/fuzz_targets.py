"""Fuzz targets for everything that parses what someone else wrote: the saslauthd request,
saslauthd.conf, the TOML configuration (every table's schema), stored password hashes and
scheme names, the control socket's JSON line, and the LDAP identity templates.

Each target takes the fuzzer's bytes and may raise only the errors its parser documents
(``Incomplete``/``Malformed``, ``ConfigError``, ``UnknownScheme``); anything else, or a
broken invariant (an assert), is a crash.  Every crash found becomes a test in
tests/unit/test_fuzz_found.py.

Run one target with atheris (libFuzzer flags after the name)::

    python3 tests/helpers/fuzz_targets.py request -max_total_time=60 CORPUS_DIR

tests/integration/fuzz/ runs each for a few seconds in CI; bench/fuzz.py is the long run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable

import atheris

# coverage feedback from our code and the pure-Python parsers it relies on
with atheris.instrument_imports(include=["saslauthpy", "tomllib", "json"]):
    from saslauthpy import config, control, hashcost, passwords, protocol
    from saslauthpy.backends import pam, saslauthd_conf
    from saslauthpy.backends.base import fold
    from saslauthpy.backends.ldap import identity as ldap_identity
    from saslauthpy.backends.ldap import settings
    from saslauthpy.backends.sql import settings as sql_settings
    from saslauthpy.decoy import signature
    from saslauthpy.errors import ConfigError, TooCostly, UnknownScheme

_DIR = tempfile.mkdtemp(prefix="saslauthpy-fuzz-",
                        dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def _file(data: bytes, name: str) -> str:
    path = os.path.join(_DIR, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def request(data: bytes) -> None:
    max_field = data[0] + 1 if data else 256
    try:
        req = protocol.parse_request(data[1:], max_field)
    except (protocol.Incomplete, protocol.Malformed):
        return
    for field in (req.login, req.service, req.realm, req.client_addr):
        raw = field.encode("utf-8", "surrogateescape")
        assert len(raw) <= max_field and b"\0" not in raw
    assert req.login and req.password and b"\0" not in req.password
    assert protocol.parse_request(protocol.format_request(
        req.login, req.password, req.service, req.realm, req.client_addr or None),
        max_field) == req


def saslauthd_conf_file(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        saslauthd_conf.parse(text)
    except ConfigError as exc:
        assert "\n" not in str(exc), "a config error is one line"
    try:
        settings.load_settings(config.Config(mech_options=_file(data, "saslauthd.conf")), {})
    except ConfigError as exc:
        assert "\n" not in str(exc), "a config error is one line"


def toml_file(data: bytes) -> None:
    try:
        cfg = config.load_toml(_file(data, "saslauthpy.toml"))
        config.validate(cfg)
        pam.Backend(cfg, cfg.section("pam"))
        sql_settings.parse_options(cfg.section("sql"), cfg.threads)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip(), "a config error is one line"


def password_hash(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    password = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
    default = fdp.PickValueInList([None, "PLAIN", "SHA512-CRYPT", "SSHA.hex", "{MD5}", "X"])
    stored = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    passwords.scheme_of(stored)
    passwords.is_known_scheme(stored)
    signature(stored)
    try:
        hashcost.check_crypt(stored)
        hashcost.check_argon2(stored)
    except UnknownScheme:
        pass
    try:
        result = passwords.verify(password, stored, default)
    except UnknownScheme as exc:
        if default == "X" and "bad default scheme" in str(exc):
            return  # the configured name, not the stored value
        # a message names a scheme at most, never the whole stored value
        assert isinstance(exc, TooCostly) or exc.scheme in ("", "{?}", "$?$") or \
            len(exc.scheme) < len(stored), exc.scheme
        return
    assert result in (True, False)


def control_line(data: bytes) -> None:
    out = control.reply(data, 0, None, dict, None)
    assert out.endswith(b"\n")
    assert isinstance(json.loads(out)["ok"], bool)


def identity(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    s = settings.Settings(filter=fdp.ConsumeUnicode(40), search_base=fdp.ConsumeUnicode(20),
                          default_realm=fdp.ConsumeUnicode(10),
                          auth_method=fdp.PickValueInList(["bind", "fastbind"]),
                          use_sasl=fdp.ConsumeBool())
    login, realm = fdp.ConsumeUnicode(30), fdp.ConsumeUnicode(20)
    got = ldap_identity.identity(s, login, realm)
    assert got == (fold(got[0]), fold(got[1])), "an identity is folded"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "request": request, "saslauthd_conf": saslauthd_conf_file, "toml": toml_file,
    "password_hash": password_hash, "control": control_line, "identity": identity,
}


# A starting corpus: one well-formed input of each kind the parsers know.
SEEDS: dict[str, list[bytes]] = {
    "request": [b"\xff" + protocol.format_request("alice", "pw", "smtp", "example.org",
                                                    "192.0.2.1;25"),
                b"\x20" + protocol.format_request("bob@x", "secret", "imap", "")],
    "saslauthd_conf": [b"ldap_servers: ldap://127.0.0.1/\nldap_search_base: dc=example\n"
                       b"ldap_filter: (&(uid=%U)(mail=%u@%r))\nldap_use_sasl: yes\n"
                       b"# comment\nldap_timeout: 5\nldap_scope: one\n"],
    "toml": [b'mechanisms = ["sql", "pam"]\nthreads = 4\n[server]\nsocket_mode = "0660"\n'
             b'[throttle]\nbase_delay = 1.5\nexempt = ["10.0.0.0/8"]\n'
             b'[pam]\nservices = ["smtp"]\n[sql]\nquery = "SELECT p FROM u WHERE l = :login"\n'],
    "password_hash": [b"\x04pass\x00" + h for h in (
        b"$6$rounds=5000$salt$", b"$y$j9T$salt$hash", b"$2b$04$" + b"a" * 53,
        b"{SSHA}c2FsdGVkaGFzaA==", b"{PBKDF2}$1$salt$1000$" + b"0" * 40, b"_J9..salt" + b"a" * 11,
        b"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + b"A" * 22, b"{PLAIN.b64}cGFzcw==",
        b"$7$CU..../....salt$hash", b"{MD5}$1$salt$hash")],
    "control": [b'{"cmd": "throttle-show", "login": "root", "address": "192.0.2.7;1"}',
                b'{"cmd": "flush", "login": "alice"}', b'{"cmd": "status"}'],
    "identity": [b"(uid=%U)(mail=%u@%r)dc=%2,dc=%1" + b"alice@example.org" * 3],
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options] [CORPUS]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
