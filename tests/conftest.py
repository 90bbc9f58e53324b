from __future__ import annotations

import pytest
from harness import Daemon
from requirements import check, markers_of


@pytest.hookimpl(tryfirst=True)  # before -m selects on them
def pytest_collection_modifyitems(items):
    """Each test gets the markers of its area and of the fixtures it uses
    (tests/helpers/requirements.py)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        for name in markers_of(item.path, item.fixturenames,
                               callspec.params if callspec else {}):
            item.add_marker(name)


@pytest.hookimpl(tryfirst=True)  # before its fixtures start servers
def pytest_runtest_setup(item):
    """A test whose marker's need is missing here is skipped with the reason (under CI,
    ``CI=true``, it fails: .ci/run installs everything)."""
    check(m.name for m in item.iter_markers())


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
def server_factory(tmp_path):
    """``server_factory(config={...}, args=[...])``: the real server started inside the test
    process (tests/helpers/inprocess.py), on the embedded SQLite store; all stopped after."""
    from inprocess import InProcessServer

    started: list[InProcessServer] = []

    def start(config=None, args=None):
        server = InProcessServer(tmp_path / f"s{len(started)}", config=config, args=args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def base(request):
    """A fresh folder under /tmp that unprivileged daemons (Postfix's smtpd, Cyrus's imapd,
    Dovecot's processes) can traverse, shared by the test module and removed after it."""
    import shutil

    from postfix_server import world_dir

    path = world_dir(f"saslauthpy-{request.module.__name__}-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
