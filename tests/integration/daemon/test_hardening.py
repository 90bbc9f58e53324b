"""What the daemon does to itself as root: umask 027, no core dumps, and no write through a
symbolic link planted where it creates files (pid file, audit log, SQLite file)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness import ROOT


def test_umask_and_no_core_dumps(daemon):
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    assert re.search(r"^Umask:\s+0027$", status, re.M)
    limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
    assert re.search(r"^Max core file size\s+0\s+0\s", limits, re.M)
    assert (daemon.run_dir / "saslauthd.pid").stat().st_mode & 0o777 == 0o640
    unit = (ROOT / "packaging" / "saslauthpy.service").read_text()
    assert re.search(r"^LimitCORE=0$", unit, re.M)


def test_a_symlinked_pid_file_stops_the_start_and_is_not_followed(daemon_factory, tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("not the daemon's to write\n")
    run = tmp_path / "d0" / "run"
    run.mkdir(parents=True)
    (run / "saslauthd.pid").symlink_to(precious)
    d = daemon_factory(wait=False)
    assert d.proc.wait(20) != 0
    assert "saslauthd.pid is a symbolic link: remove it" in d.stderr()
    assert precious.read_text() == "not the daemon's to write\n"


def test_a_symlinked_audit_log_is_not_followed(daemon_factory, tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("not the daemon's to write\n")
    link = tmp_path / "audit-link.log"
    link.symlink_to(precious)
    d = daemon_factory(config={"audit": {"file": str(link), "syslog": False}})
    d.admin("user", "add", "alice", password="alice-pw")
    assert d.ask("alice", "wrong", "smtp").startswith("NO")
    assert d.ask("alice", "alice-pw", "smtp") == "OK"  # answers go on without the log
    assert precious.read_text() == "not the daemon's to write\n"
    assert "audit: cannot open" in d.stderr() and "symbolic link" in d.stderr()


def test_a_symlinked_sqlite_file_is_not_created_through(daemon_factory, tmp_path):
    target = tmp_path / "elsewhere" / "users.db"
    link = tmp_path / "link.db"
    link.symlink_to(target)  # dangling: creating it would make the target
    target.parent.mkdir()
    d = daemon_factory(config={"sql": {"url": f"sqlite:///{link}"}}, wait=False)
    assert d.proc.wait(20) != 0
    assert "symbolic link" in d.stderr()
    assert not target.exists()
    assert os.path.islink(link)
