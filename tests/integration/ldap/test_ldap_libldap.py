"""What the backend relies on in python-ldap and libldap, checked against a real slapd.

- python-ldap releases the GIL while libldap waits for the server (the calls the backend
  makes in its threads: connect, StartTLS, simple and SASL binds), so a slow directory
  never stops the event loop; its ``sasl_interactive_bind_s`` does not, which is why the
  backend speaks SASL itself (backends/ldap/sasl.py).
- ``ldapi:///`` without a path is libldap's default socket, as for the C saslauthd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import ldap
import ldap.sasl
import pytest
from harness import need, python_env
from ldap_server import BASE_DN, Slapd


def iterations_while(blocking) -> int:
    """How far this thread counts while another thread runs ``blocking()``."""
    worker = threading.Thread(target=blocking)
    count = 0
    worker.start()
    time.sleep(0.05)  # let the worker get into its wait
    while worker.is_alive():
        count += 1
    worker.join()
    return count


def test_libldap_waits_without_the_gil(slapd):
    conn = ldap.initialize(slapd.uri)
    conn.simple_bind_s("", "")
    conn.set_option(ldap.OPT_TIMEOUT, 1.0)

    def stalled_bind(call) -> None:
        try:
            call()
        except ldap.TIMEOUT:
            pass

    baseline = iterations_while(lambda: time.sleep(1.0))
    slapd.pause()
    try:
        simple = iterations_while(lambda: stalled_bind(lambda: conn.simple_bind_s(
            "uid=alice,ou=people,dc=example,dc=org", b"alice-secret")))
        sasl = iterations_while(lambda: stalled_bind(lambda: conn.sasl_bind_s(
            "", "PLAIN", b"\0alice\0alice-secret")))
        fresh = ldap.initialize(slapd.uri)
        fresh.set_option(ldap.OPT_TIMEOUT, 1.0)
        fresh.set_option(ldap.OPT_NETWORK_TIMEOUT, 1.0)
        interactive = iterations_while(lambda: stalled_bind(lambda: fresh.sasl_interactive_bind_s(
            "", ldap.sasl.digest_md5("alice", "alice-secret"))))
    finally:
        slapd.resume()
    print(f"iterations in 1 s: sleeping {baseline}, simple bind {simple}, sasl_bind_s {sasl}, "
          f"sasl_interactive_bind_s {interactive}")
    assert simple > baseline / 3 and sasl > baseline / 3
    # python-ldap holds the GIL through sasl_interactive_bind_s (if this starts failing,
    # python-ldap was fixed: docs/ldap.md and sasl.py say why we avoid it)
    assert interactive < baseline / 10


@pytest.fixture
def default_ldapi_slapd(tmp_path, monkeypatch):
    """A slapd listening on ``ldapi:///`` (libldap's default socket, /var/run/slapd/ldapi)
    in a private mount namespace whose /run is a temporary directory: the system's
    /run/slapd is never touched."""
    need("unshare")
    need("nsenter")
    run = tmp_path / "run"
    (run / "slapd").mkdir(parents=True)
    wrap = tmp_path / "bin"
    wrap.mkdir()
    slapd = shutil.which("slapd") or "/usr/sbin/slapd"
    (wrap / "slapd").write_text(
        "#!/bin/sh\n"
        "exec unshare --mount --propagation private /bin/sh -c "
        f"'mount --bind \"$0\" /run && exec {slapd} \"$@\"' '{run}' \"$@\"\n")
    (wrap / "slapd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrap}{os.pathsep}{os.environ['PATH']}")
    server = Slapd(tmp_path / "slapd", ldapi_uri="ldapi:///").start()
    monkeypatch.undo()
    yield server
    server.stop()


CHILD = """
import asyncio, json, sys
from saslauthpy.backends.ldap import Backend
from saslauthpy.config import Config
from saslauthpy.protocol import Request
b = Backend(Config(mech_options=sys.argv[1], threads=2), {})
b.open()
loop = asyncio.new_event_loop()
answers = [loop.run_until_complete(b.authenticate(Request(u, p.encode(), "imap")))
           for u, p in (("alice", "alice-secret"), ("alice", "wrong"))]
print(json.dumps([a.result.value for a in answers]))
"""


def test_ldapi_without_a_path_is_libldaps_default_socket(default_ldapi_slapd, tmp_path):
    """EXTERNAL over ldapi:///: root is mapped to the service account, which may read
    userPassword, so custom succeeds only if the connection really is ldapi."""
    assert (tmp_path / "run" / "slapd" / "ldapi").exists()
    conf = tmp_path / "saslauthd.conf"
    conf.write_text(f"ldap_servers: ldapi:///\nldap_search_base: {BASE_DN}\n"
                    "ldap_use_sasl: yes\nldap_mech: EXTERNAL\nldap_auth_method: custom\n")
    res = subprocess.run(["nsenter", f"--mount=/proc/{default_ldapi_slapd.proc.pid}/ns/mnt",
                          sys.executable, "-c", CHILD, str(conf)],
                         capture_output=True, text=True, timeout=60,
                         env=python_env())  # nsenter leaves the working directory
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout) == ["ok", "fail"]
