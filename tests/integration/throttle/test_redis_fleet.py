"""A fleet on one Redis (the real one on 127.0.0.1:6379): two daemons share the penalty
table and the key of the password fingerprints, so one stale password retried on both
counts once; a Redis reached in clear over a network is warned about at start."""

from __future__ import annotations

import os

import pytest

WARNING = "is reached without TLS over the network"


def fleet(daemon_factory, redis_prefix, **extra):
    throttle = {"redis": "redis://127.0.0.1:6379/0", "redis_prefix": redis_prefix,
                "redis_timeout": 1.0, "base_delay": 0.01, "max_delay": 30.0, "decay": 600.0,
                "per_address": False, **extra}
    hosts = [daemon_factory(config={"throttle": throttle}) for _ in range(2)]
    for d in hosts:
        d.admin("user", "add", "alice", password="alice-pw")
    return hosts


def level(d, login: str) -> int:
    keys = d.control(cmd="throttle-show", login=login)["keys"]
    return max((k["level"] for k in keys), default=0)


def test_one_stale_password_counts_once_across_the_fleet(daemon_factory, redis_prefix):
    a, b = fleet(daemon_factory, redis_prefix)
    assert a.ask("alice", "stale-pw", "smtp").startswith("NO")
    assert b.ask("alice", "stale-pw", "imap").startswith("NO")  # the same, on the other host
    assert a.ask("alice", "stale-pw", "smtp").startswith("NO")
    assert level(a, "alice") == level(b, "alice") == 1
    assert b.ask("alice", "another-guess", "smtp").startswith("NO")
    assert level(a, "alice") == 2
    assert WARNING not in a.stderr() + b.stderr()  # loopback: no warning


def test_fleet_key_from_a_file(daemon_factory, redis_prefix, tmp_path):
    key = tmp_path / "throttle.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    a, b = fleet(daemon_factory, redis_prefix, fingerprint_key_file=str(key))
    for d in (a, b, a):
        assert d.ask("alice", "stale-pw", "smtp").startswith("NO")
    assert level(b, "alice") == 1


def test_redis_in_clear_over_a_network_is_warned_about(daemon_factory):
    # 192.0.2.1 (TEST-NET-1) answers nobody: the daemon serves from its local table.
    d = daemon_factory(config={"throttle": {"redis": "redis://192.0.2.1:6379/0",
                                            "redis_timeout": 0.05}})
    d.admin("user", "add", "alice", password="alice-pw")
    assert d.ask("alice", "alice-pw", "smtp") == "OK"
    assert f"Redis at 192.0.2.1 {WARNING}" in d.stderr()


@pytest.mark.parametrize("url", ["rediss://192.0.2.1:6380/0", "unix:///run/redis.sock",
                                 "redis://localhost:6379/0", "redis://[::1]:6379/0"])
def test_tls_or_local_redis_is_not_warned_about(url):
    from saslauthpy.throttle_keys import exposed

    assert not exposed(url)
    assert exposed("redis://redis.example:6379/0") and exposed("redis://10.0.0.5/0")
