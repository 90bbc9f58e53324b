from __future__ import annotations

import pytest
from harness import Daemon


@pytest.fixture
def daemon_factory(tmp_path):
    """``daemon_factory(args=[...], config={...})`` starts a daemon; all are stopped after."""
    started: list[Daemon] = []

    def start(args=None, config=None, env=None, subdir=None, wait=True, **kw):
        base = tmp_path / (subdir or f"d{len(started)}")
        base.mkdir(parents=True, exist_ok=True)
        d = Daemon(base, args=args, config=config, env=env, **kw)
        started.append(d)
        return d.start(wait=wait)

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def daemon(daemon_factory):
    """A daemon on the embedded SQLite store with default settings."""
    return daemon_factory()


@pytest.fixture
def accounts():
    """Real local accounts (useradd + chpasswd), all deleted after the test."""
    from reference import Accounts

    with Accounts() as acc:
        yield acc


@pytest.fixture
def service():
    """A PAM service file of the test's own in /etc/pam.d (pam_unix), removed after."""
    from reference import PamService

    with PamService() as svc:
        yield svc
