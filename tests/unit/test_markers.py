"""The markers of the suite (tests/helpers/requirements.py): registered, each with a check,
and the checks tell a missing need from a present one."""

from __future__ import annotations

import re
import socket
import tomllib
from pathlib import Path

import harness
import pytest
import requirements
from requirements import AREAS, FIXTURES, PARAMS, REQUIREMENTS, markers_of

ROOT = Path(__file__).resolve().parents[2]


def registered() -> set[str]:
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return {line.split(":", 1)[0] for line in ini["markers"]}


def test_every_marker_is_registered_and_has_a_check():
    assert registered() == set(REQUIREMENTS)


def test_fixtures_and_areas_name_known_markers_fixtures_and_folders():
    used = {m for ms in [*FIXTURES.values(), *AREAS.values()] for m in ms}
    used |= {m for by_param in PARAMS.values() for ms in by_param.values() for m in ms}
    assert used <= set(REQUIREMENTS)
    assert all((ROOT / "tests/integration" / area).is_dir() for area in AREAS)
    source = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    defined = set(re.findall(r"^@pytest\.fixture.*\n(?:    )?def (\w+)\(", source, re.M))
    assert set(FIXTURES) | set(PARAMS) <= defined


def test_a_test_gets_its_areas_and_its_fixtures_markers():
    path = ROOT / "tests/integration/ldap/test_x.py"
    assert markers_of(path, ["tmp_path", "service"], {}) == ["python_ldap", "slapd", "root",
                                                             "pam"]
    sql = ROOT / "tests/integration/sql/test_x.py"
    assert markers_of(sql, ["server_url"], {"server_url": "mariadb"}) == ["mariadb"]
    assert markers_of(sql, ["any_url"], {"any_url": "sqlite"}) == []
    assert markers_of(ROOT / "tests/unit/test_x.py", ["tmp_path"], {}) == []


def test_a_port_check_tells_a_listener_from_a_closed_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        number = listener.getsockname()[1]
        assert requirements.port("X", number, "hint")() is None
    reason = requirements.port("X", number, "start it")()
    assert reason and f"127.0.0.1:{number}" in reason and "start it" in reason


def test_program_and_module_checks_name_what_is_missing():
    assert requirements.program("sh", hint="")() is None
    reason = requirements.program("sh", "no-such-tool-x1", hint="apt-get it")()
    assert reason == "no-such-tool-x1 not installed: apt-get it"
    assert requirements.module("json", "")() is None
    assert "no_such_module_x1" in requirements.module("no_such_module_x1", "pip")()


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception),
                                         ("true", pytest.fail.Exception)])
def test_a_missing_need_skips_here_and_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="slapd is not installed"):
        harness.missing("slapd is not installed")


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception),
                                         ("true", pytest.fail.Exception)])
def test_a_test_whose_marker_is_unmet_is_skipped_or_failed(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setitem(REQUIREMENTS, "present", ("always", lambda: None))
    monkeypatch.setitem(REQUIREMENTS, "absent", ("never", lambda: "the widget is missing"))
    requirements.unmet.cache_clear()
    try:
        requirements.check(["parametrize", "present"])  # no need, or met: nothing happens
        with pytest.raises(outcome, match=r"\[absent\] the widget is missing"):
            requirements.check(["present", "absent"])
    finally:
        requirements.unmet.cache_clear()
