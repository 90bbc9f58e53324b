"""Fixtures of the rimap, httpform and kerberos5 tests: a test CA and the real servers each
mechanism asks (Dovecot IMAP, a small HTTP(S) form server, an MIT KDC), one of each per
module."""

from __future__ import annotations

import pytest
from form_server import FormServer
from imap_server import Dovecot
from kdc import KDC
from ldap_server import TestCA


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def dovecot(ca):
    server = Dovecot(ca=ca).start()
    yield server
    server.stop(remove=True)


@pytest.fixture(scope="module")
def form_server():
    server = FormServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def https_form_server(ca):
    server = FormServer(ca=ca).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kdc(tmp_path_factory):
    server = KDC(tmp_path_factory.mktemp("kdc")).start()
    yield server
    server.stop()
