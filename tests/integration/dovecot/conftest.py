"""Fixtures for the Dovecot auth listener: daemons whose ``[dovecot]`` socket unprivileged
clients (Postfix's smtpd as ``postfix``, Exim as ``Debian-exim``) can reach."""

from __future__ import annotations

import pytest
from harness import Daemon, merge

USERS = {"alice": "Wonder land 1", "bob@example.com": "b0b's pass"}
# Penalties that do not decay during a test, and are short enough to wait out.
THROTTLE = {"base_delay": 0.5, "max_delay": 2.0, "decay": 600.0}


@pytest.fixture(scope="module")
def dovecot_daemon(base):
    """``dovecot_daemon(name, dovecot={...}, config={...})``: a started daemon with the
    users of USERS and its Dovecot socket at ``base/name/private/auth``; ``.auth`` is its
    path; ``short_penalties=True``: the THROTTLE settings.  All are stopped at the end of
    the module."""
    started: list[Daemon] = []

    def start(name: str, dovecot: dict | None = None, config: dict | None = None,
              users: dict[str, str] = USERS, short_penalties: bool = False) -> Daemon:
        home = base / name
        home.mkdir(mode=0o755)
        (home / "private").mkdir(mode=0o755)
        auth = home / "private" / "auth"
        cfg = merge({"dovecot": {"listen": str(auth), **(dovecot or {})}}, config or {})
        if short_penalties:
            cfg = merge(cfg, {"throttle": THROTTLE})
        d = Daemon(home / "sa", config=cfg)
        d.auth = auth
        started.append(d)
        d.start()
        for login, password in users.items():
            name_, _, realm = login.partition("@")
            d.admin("user", "add", name_, *(["--realm", realm] if realm else []),
                    password=password)
        return d

    yield start
    for d in started:
        d.stop()
