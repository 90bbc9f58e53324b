"""Fixtures of the throttle tests."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own on the real Redis (127.0.0.1:6379); its keys are
    deleted afterwards."""
    import redis

    prefix = f"saslauthpy-test-{uuid.uuid4().hex}:"
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
