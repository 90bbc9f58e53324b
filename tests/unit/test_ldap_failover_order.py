"""The order in which ldap_servers are tried: answering servers first, in the configured
order, then the servers that failed, the one that failed longest ago first."""

from __future__ import annotations

import time
from types import SimpleNamespace

from harness import need_module

need_module("ldap", "pip install '.[ldap]' (python-ldap, built on libldap)")
from saslauthpy.backends.ldap.connection import Directory  # noqa: E402 (python-ldap first)


def test_failed_servers_go_last_oldest_failure_first():
    d = Directory(SimpleNamespace(servers=["ldap://a/", "ldap://b/", "ldap://c/"]))
    assert d._order() == [0, 1, 2]
    d.mark(0, ok=False)
    time.sleep(0.01)
    d.mark(1, ok=False)
    assert d._order() == [2, 0, 1]
    d.mark(0, ok=False)  # a fails again: now b has waited longest
    assert d._order() == [2, 1, 0]
    d.mark(1, ok=True)
    assert d._order() == [1, 2, 0]
