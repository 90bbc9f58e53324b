"""No user enumeration by timing against -a sql: an unknown user and a disabled account
take as long as a wrong password for a real user (a decoy hash of the table's scheme is
checked).  Medians compared with each other, never with a fixed time."""

from __future__ import annotations

from timing import assert_alike, check_medians

from saslauthpy.backends import sql
from saslauthpy.backends.base import Result
from saslauthpy.config import Config


def test_unknown_and_disabled_take_as_long_as_wrong(tmp_path):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    store = sql.Store(Config(), {"url": url})
    store.add("alice", "", b"alice-pw")
    store.add("bob", "", b"bob-pw")
    store.set_enabled("bob", "", False)
    store.close()
    backend = sql.Backend(Config(), {"url": url})
    backend.open()
    try:
        found = check_medians(backend.check, {
            "wrong password": ("alice", Result.FAIL), "unknown user": ("nobody", Result.UNKNOWN),
            "disabled account": ("bob", Result.FAIL)})
    finally:
        backend.close()
    assert_alike(found, "wrong password")
