"""``run_now``: the LDAP check's coroutine run to its end in the fast lane's thread, or
``NotNow`` when it would have to wait on the event loop (nothing decided)."""

from __future__ import annotations

import asyncio

import pytest
from harness import need_module

from saslauthpy.backends.base import NotNow, run_now

need_module("ldap", "pip install '.[ldap]' (python-ldap, built on libldap)")
from saslauthpy.backends.ldap.now import NowLinks  # noqa: E402 (python-ldap first)


class Answers:
    """Links whose calls return at once, as NowLinks' do."""

    blocking = True

    async def call(self, kind, op, args, deadline):
        return 101, [(f"uid={args[0]}", {})]


async def check(links) -> str:
    _, entries = await links.call("service", "search_ext", ("alice",), 0.0)
    return entries[0][0]


def test_a_coroutine_whose_awaits_return_at_once_gives_its_value():
    assert run_now(check(Answers())) == "uid=alice"


def test_a_coroutine_that_would_suspend_is_closed_with_notnow():
    closed = []

    async def waits():
        try:
            await asyncio.sleep(0)  # yields to an event loop there is not
        finally:
            closed.append(True)

    with pytest.raises(NotNow):
        run_now(waits())
    assert closed == [True]  # its finally ran: nothing left half done


def test_notnow_passes_every_except_exception():
    async def guarded():
        try:
            raise NotNow()
        except Exception:  # what a backend's error mapping catches
            return "mapped"

    with pytest.raises(NotNow):
        run_now(guarded())


def test_a_directory_that_answers_nothing_gives_notnow_not_an_answer():
    """No server listens: opening the thread's connection fails at once -> NotNow."""
    from types import SimpleNamespace

    from saslauthpy.backends.ldap.connection import Directory, Identity

    s = SimpleNamespace(servers=["ldap://127.0.0.1:1/"], timeout=1, version=3,
                        referrals=False, restart=False, deref=0, debug=0, start_tls=False,
                        tls_check_peer=None, tls_cacert_file="", tls_cacert_dir="",
                        tls_cert="", tls_key="", tls_ciphers="")
    directory = Directory(s)
    links = NowLinks(directory, Identity())
    with pytest.raises(NotNow):
        run_now(check_service(links))
    # a try this short says nothing of the server: the event loop's failover order stays
    assert directory.down_until == [0.0]


async def check_service(links) -> object:
    return await links.call(links.service, "search_ext", (
        "dc=example,dc=org", 2, "(uid=a)", ["1.1"], 0, None, None, -1, 0), 10**9)
