"""A reload leaves no stale answer in the cache: a request that came in before the reload
and is answered by the old configuration after it must not write its OK into the cache
(the reload flushed it, and the new configuration may say NO)."""

from __future__ import annotations

import signal
import threading
import time

from harness import merge, toml_dumps


def wait_for(d, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in d.stderr():
        assert time.monotonic() < deadline, f"no {text!r} in the daemon's log"
        time.sleep(0.05)


def test_answer_in_flight_across_a_reload_is_not_cached(daemon_factory, tmp_path):
    # One wrong password makes the next request for alice wait 3 s before its check: long
    # enough to reload while it is in flight on the old pipeline.
    d = daemon_factory(args=["-c"], config={
        "throttle": {"base_delay": 3.0, "max_delay": 3.0, "decay": 600.0, "per_address": False}})
    d.admin("user", "add", "alice", password="old-pw")
    assert d.ask("alice", "wrong-pw", "smtp").startswith("NO")
    in_flight: list[str] = []
    t = threading.Thread(target=lambda: in_flight.append(d.ask("alice", "old-pw", "smtp")))
    t.start()
    time.sleep(0.5)
    # The new configuration reads another user table, where alice does not exist.
    new = merge(d.config, {"sql": {"url": f"sqlite:///{tmp_path / 'other-users.db'}"}})
    d.config_path.write_text(toml_dumps(new))
    d.signal(signal.SIGHUP)
    wait_for(d, "configuration reloaded")
    t.join(30)
    assert in_flight == ["OK"]  # answered by the configuration it came in under
    assert d.ask("alice", "old-pw", "smtp").startswith("NO")  # not from a stale cache entry
    assert [r["backend"] for r in d.audit()][-1] == "sql"


def test_a_lower_field_limit_on_reload_leaves_no_cached_ok_beyond_it(daemon_factory):
    # The fast lane asks the cache before it checks the fields' lengths: the reload
    # must flush what was cached under the longer limit.
    d = daemon_factory(args=["-c"])
    d.admin("user", "add", "alice-long", password="pw")
    assert d.ask("alice-long", "pw", "smtp") == "OK"
    assert d.ask("alice-long", "pw", "smtp") == "OK"  # now from the cache
    d.config_path.write_text(toml_dumps(merge(d.config, {"server": {"max_field": 8}})))
    d.signal(signal.SIGHUP)
    wait_for(d, "configuration reloaded")
    assert d.ask("alice-long", "pw", "smtp") == "NO "  # as saslauthd answers an oversize field
