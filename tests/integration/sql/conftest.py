"""Fixtures of the SQL tests.

* ``pg_url`` / ``my_url``: a fresh database with a random name on the shared PostgreSQL
  (127.0.0.1:5432) or MariaDB (127.0.0.1:3306), dropped after the test; ``server_url``: both.
* ``private_pg`` / ``private_mariadb``: a server of our own that a test may stop and freeze.
* ``reference_hashes``: password hashes made by the reference tools (doveadm pw, openssl
  passwd, mkpasswd).
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
from harness import need
from sql_servers import MY_ADMIN, PG_ADMIN, PrivateMariadb, PrivatePostgres, admin_exec, random_name


@pytest.fixture
def pg_url():
    name = random_name()
    admin_exec(PG_ADMIN, f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    admin_exec(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def my_url():
    name = random_name()
    admin_exec(MY_ADMIN, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    admin_exec(MY_ADMIN, f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request):
    """The same test on a fresh PostgreSQL database and a fresh MariaDB database."""
    fixture = "pg_url" if request.param == "postgresql" else "my_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def private_pg():
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def private_mariadb():
    server = PrivateMariadb()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def _tool(*cmd: str) -> str:
    return subprocess.run([need(cmd[0]), *cmd[1:]], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


@pytest.fixture(scope="session")
def reference_hashes() -> dict[str, tuple[str, str]]:
    """scheme -> (password, hash made by the reference tool)."""
    out = {}
    for scheme in ("SHA512-CRYPT", "BLF-CRYPT", "ARGON2ID", "PLAIN-MD5"):
        pw = f"pw-{scheme.lower()}-{secrets.token_hex(3)}"
        out[scheme] = (pw, _tool("doveadm", "pw", "-s", scheme, "-p", pw))
    pw = "pw-md5crypt-openssl"
    out["$1$openssl"] = (pw, _tool("openssl", "passwd", "-1", pw))
    pw = "pw-md5crypt-mkpasswd"
    out["$1$mkpasswd"] = (pw, _tool("mkpasswd", "-m", "md5crypt", pw))
    return out
