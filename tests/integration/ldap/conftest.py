"""Fixtures of the LDAP tests: a test CA and a private slapd, one of each per test module."""

from __future__ import annotations

import pytest
from ldap_server import Slapd, TestCA


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    """A test certificate authority for the LDAP tests (one per test module)."""
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def slapd(tmp_path_factory, ca):
    """A private slapd with the test directory (tests/integration/ldap/data/)."""
    server = Slapd(tmp_path_factory.mktemp("slapd"), ca=ca).start()
    yield server
    server.stop()
