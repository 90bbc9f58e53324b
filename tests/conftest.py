from __future__ import annotations

import shutil

import pytest
from harness import Daemon


@pytest.fixture
def daemon_factory(tmp_path):
    """``daemon_factory(args=[...], config={...})`` starts a daemon; all are stopped after."""
    started: list[Daemon] = []

    def start(args=None, config=None, env=None, subdir=None, wait=True):
        base = tmp_path / (subdir or f"d{len(started)}")
        base.mkdir(parents=True, exist_ok=True)
        d = Daemon(base, args=args, config=config, env=env)
        started.append(d)
        return d.start(wait=wait)

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def daemon(daemon_factory):
    """A daemon on the embedded SQLite store with default settings."""
    return daemon_factory()


def need(program: str) -> str:
    path = shutil.which(program)
    if not path:
        pytest.fail(f"{program} is not installed: .ci/run installs it (apt-get)")
    return path


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    """A test certificate authority for the LDAP tests (one per test module)."""
    from ldap_server import TestCA

    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def slapd(tmp_path_factory, ca):
    """A private slapd with the test directory (backends/ldap/), one per test module."""
    from ldap_server import Slapd

    server = Slapd(tmp_path_factory.mktemp("slapd"), ca=ca).start()
    yield server
    server.stop()
