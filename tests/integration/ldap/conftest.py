"""Fixtures of the LDAP tests: a test CA and a private slapd (one of each per test module),
and ``backend``: ldap Backends on one event loop per test, asked synchronously."""

from __future__ import annotations

import asyncio

import pytest
from ldap_server import SASL_CLEARTEXT, Slapd, TestCA

from saslauthpy.backends.base import Answer
from saslauthpy.backends.ldap import Backend
from saslauthpy.config import Config
from saslauthpy.protocol import Request


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


@pytest.fixture(scope="module")
def sasl_slapd(tmp_path_factory, ca):
    """A private slapd whose SASL accounts have cleartext secrets (DIGEST-MD5)."""
    server = Slapd(tmp_path_factory.mktemp("sasl-slapd"), ca=ca).start()
    try:
        server.modify(SASL_CLEARTEXT)
        yield server
    finally:
        server.stop()


class Running:
    """An opened Backend and the event loop its connections live on (the daemon's role)."""

    def __init__(self, backend: Backend, loop: asyncio.AbstractEventLoop):
        self.backend, self.loop = backend, loop

    def __getattr__(self, name: str):
        return getattr(self.backend, name)

    def answer(self, login: str, password: str | bytes, realm: str = "",
               service: str = "imap") -> Answer:
        raw = password.encode() if isinstance(password, str) else password
        return self.loop.run_until_complete(
            self.backend.authenticate(Request(login, raw, service, realm)))

    def answers(self, cases: list[tuple[str, str]]) -> list[Answer]:
        """(login, password) pairs asked all at once, as concurrent clients would."""
        async def ask_all() -> list[Answer]:
            return await asyncio.gather(*(self.backend.authenticate(
                Request(login, password.encode(), "imap", "")) for login, password in cases))
        return self.loop.run_until_complete(ask_all())


@pytest.fixture
def backend(tmp_path):
    """``backend(conf_text, threads=4, **toml)``: an opened Backend (as ``Running``); all
    are closed after the test."""
    loop = asyncio.new_event_loop()
    made: list[Backend] = []

    def make(text: str, threads: int = 4, **options) -> Running:
        conf = tmp_path / f"saslauthd{len(made)}.conf"
        conf.write_text(text)
        b = Backend(Config(mech_options=str(conf), threads=threads), options)
        made.append(b)
        b.open()
        return Running(b, loop)

    yield make
    for b in made:
        b.close()
    loop.close()
