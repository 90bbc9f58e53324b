"""The one option loader (saslauthpy/options.py) and every table's schema read through it."""

from __future__ import annotations

import re
from dataclasses import dataclass, is_dataclass
from pathlib import Path

import pytest

from saslauthpy import config as configmod
from saslauthpy.backends import MODULES, options_class
from saslauthpy.errors import ConfigError
from saslauthpy.options import describe, keys, load, option

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Sample:
    flag: bool = False
    count: int = option(3, "a count", min=1, max=10)
    ratio: float = 0.5
    wait: float = option(5.0, "seconds", duration=True, positive=True)
    name: str = "x"
    color: str = option("red", "a color", choices=("red", "green"))
    names: list[str] = option([], "some names")
    file_mode: int = 0o640
    limit: int | None = option(None, "default: something else", min=1)
    hidden: str = option("", "set by a flag", in_file=False)


def test_defaults_and_plain_fields():
    s = load(Sample, {}, "[t] ")
    assert (s.flag, s.count, s.ratio, s.name, s.names, s.limit) == (False, 3, 0.5, "x", [], None)
    assert load(Sample, None) == Sample()
    assert load(Sample, s) is s  # an instance passes through


def test_types_are_converted_and_checked():
    s = load(Sample, {"flag": True, "count": 4.0, "ratio": 2, "names": "solo", "limit": 7,
                      "color": "GREEN", "file_mode": "0600"})
    assert s.flag is True and s.count == 4 and isinstance(s.count, int)
    assert s.ratio == 2.0 and isinstance(s.ratio, float)
    assert s.names == ["solo"] and s.limit == 7 and s.color == "green"
    assert s.file_mode == 0o600
    assert load(Sample, {"file_mode": 0o644}).file_mode == 0o644


@pytest.mark.parametrize("text, seconds", [
    (30, 30.0), (1.5, 1.5), ("90s", 90.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0),
    ("250ms", 0.25), (" 1.5 m ", 90.0),
])
def test_durations(text, seconds):
    assert load(Sample, {"wait": text}).wait == seconds


@pytest.mark.parametrize("table, words", [
    ({"flag": "no"}, ["[t] flag", "expected true or false", "'no'"]),
    ({"flag": 0}, ["[t] flag", "true or false"]),
    ({"count": 2.5}, ["[t] count", "whole number"]),
    ({"count": "3"}, ["[t] count", "expected a number"]),
    ({"count": True}, ["[t] count", "expected a number"]),
    ({"count": 0}, ["[t] count", "between 1 and 10"]),
    ({"count": 11}, ["[t] count", "between 1 and 10"]),
    ({"ratio": -1}, ["[t] ratio", "negative"]),
    ({"wait": 0}, ["[t] wait", "positive"]),
    ({"wait": "3"}, ["[t] wait", "duration"]),
    ({"wait": "5 parsecs"}, ["[t] wait", "duration"]),
    ({"name": 5}, ["[t] name", "expected a string"]),
    ({"color": "blue"}, ["[t] color", "'blue'", "red, green"]),
    ({"names": [1]}, ["[t] names", "expected a string"]),
    ({"names": {"a": 1}}, ["[t] names", "expected a list"]),
    ({"file_mode": "rw-r-----"}, ["[t] file_mode", "octal mode"]),
    ({"file_mode": "0o99"}, ["[t] file_mode", "octal mode"]),
    ({"limit": 0}, ["[t] limit", "at least 1"]),
    ({"hidden": "x"}, ["[t] hidden", "unknown key"]),
])
def test_bad_values_are_one_line_naming_the_key(table, words):
    with pytest.raises(ConfigError) as err:
        load(Sample, table, "[t] ")
    message = str(err.value)
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_unknown_key_names_it_and_the_closest_valid_one():
    with pytest.raises(ConfigError) as err:
        load(Sample, {"cuont": 1}, "[t] ")
    message = str(err.value)
    assert "unknown key 'cuont'" in message and "did you mean 'count'?" in message
    assert "known keys: color, count" in message
    with pytest.raises(ConfigError, match="unknown key 'zzz'; known keys"):
        load(Sample, {"zzz": 1}, "[t] ")


def test_describe_gives_key_default_and_help():
    described = {key: (default, text) for key, default, text in describe(Sample)}
    assert described["count"] == (3, "a count")
    assert described["name"] == ("x", "")
    assert "hidden" not in described and "hidden" not in keys(Sample)


# -- every table of the configuration file ------------------------------------------------

TABLES = ["", "server", "cache", "audit", "throttle", "metrics", "dovecot", *MODULES]
# the ldap backend's modules import python-ldap (the [ldap] extra): its table needs it
PARAMS = [pytest.param(t, marks=pytest.mark.python_ldap) if t == "ldap" else t for t in TABLES]


def schema(table: str) -> type:
    if not table:
        return configmod.Config
    if table in MODULES:
        return options_class(table)
    return type(getattr(configmod.Config(), table))


def misspelt(key: str) -> str:
    return key[:-1] + ("x" if key[-1] != "x" else "y") if len(key) > 4 else key[0] + key[2:]


def write(tmp_path: Path, table: str, body: str) -> str:
    path = tmp_path / "saslauthpy.toml"
    path.write_text((f"[{table}]\n" if table else "") + body)
    return str(path)


@pytest.mark.parametrize("table", PARAMS)
def test_a_misspelt_key_in_any_table_is_refused_naming_it(tmp_path, table):
    known = keys(schema(table))
    if not known:  # shadow, getpwent: no keys at all
        with pytest.raises(ConfigError, match=r"unknown key 'path'; this table takes no keys"):
            configmod.load_toml(write(tmp_path, table, 'path = "x"\n'))
        return
    key = "path" if table == "sasldb" else known[0]
    wrong = "pth" if table == "sasldb" else misspelt(key)
    with pytest.raises(ConfigError) as err:
        configmod.load_toml(write(tmp_path, table, f"{wrong} = 1\n"))
    message = str(err.value)
    assert f"unknown key {wrong!r}" in message and f"did you mean {key!r}" in message
    assert message.startswith(str(tmp_path)) and "\n" not in message


@pytest.mark.parametrize("table", PARAMS)
def test_every_table_loads_its_defaults_written_out(tmp_path, table):
    """Each key with its default value is accepted: the schema and the loader agree."""
    lines = []
    for key, default, _help in describe(schema(table)):
        if default is None or is_dataclass(default):
            continue  # not given / a table of its own
        if key.endswith("mode"):
            default = f"{default:04o}"
        lines.append(f"{key} = {_toml(default)}")
    configmod.load_toml(write(tmp_path, table, "\n".join(lines) + "\n"))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def test_sasldb_backup_no_is_an_error_not_true(tmp_path):
    with pytest.raises(ConfigError, match=r"\[sasldb\]\.backup: expected true or false, got 'no'"):
        configmod.load_toml(write(tmp_path, "sasldb", 'backup = "no"\n'))


def test_tables_are_typed_after_loading(tmp_path):
    cfg = configmod.load_toml(write(tmp_path, "", (
        'mechanisms = "SASLDB"\nthreads = 3\n[server]\nsocket_mode = "0660"\n'
        'read_timeout = "1m"\n[throttle]\nexempt = ["10.0.0.0/8"]\n'
        '[sasldb]\npath = "/x"\nmode = "0600"\n[pam]\nworkers = 2\n')))
    assert cfg.server.socket_mode == 0o660 and cfg.server.read_timeout == 60.0
    assert cfg.throttle.exempt == ["10.0.0.0/8"] and cfg.threads == 3
    assert cfg.section("sasldb").path == "/x" and cfg.section("sasldb").mode == 0o600
    assert cfg.section("pam").workers == 2 and cfg.section("sql") is None
    configmod.validate(cfg)
    assert cfg.mechanisms == ["sasldb"]


@pytest.mark.parametrize("body, words", [
    ("[throttle]\nbase_delay = 5.0\nmax_delay = 1.0\n", ["max_delay", "base_delay"]),
    ('[throttle]\nexempt = ["nonsense"]\n', ["exempt", "nonsense"]),
    ("[server]\nmax_field = 70000\n", ["max_field", "between 1 and 65535"]),
    ('[audit]\nfacility = "kern"\n', ["facility", "'kern'", "local7"]),
    ('[sasldb]\nformat = "ndbm"\n', ["format", "berkeley, gdbm, lmdb"]),
    ("[pam]\ntimeout = 0.01\n", ["[pam].timeout", "at least 0.1"]),
    pytest.param("[ldap]\nstart_tls = \"yes\"\n", ["[ldap].start_tls", "true or false"],
                 marks=pytest.mark.python_ldap),
    ("[sqll]\nurl = \"x\"\n", ["unknown key 'sqll'", "did you mean 'sql'"]),
])
def test_bad_values_stop_the_load(tmp_path, body, words):
    with pytest.raises(ConfigError) as err:
        configmod.load_toml(write(tmp_path, "", body))
    for word in words:
        assert word in str(err.value), str(err.value)


@pytest.mark.python_ldap
def test_ldap_table_takes_the_prefix_and_saslauthds_aliases(tmp_path):
    cfg = configmod.load_toml(write(tmp_path, "ldap", (
        'ldap_servers = ["ldap://a/"]\nbind_pw = "pw"\nldap_default_domain = "x.org"\n'
        "timeout = 3\n")))
    opts = cfg.section("ldap")
    assert (opts.servers, opts.password, opts.default_realm, opts.timeout) == (
        ["ldap://a/"], "pw", "x.org", 3)
    assert "pw" not in repr(opts)


# -- the documentation lists every key ----------------------------------------------------

# table -> the documents that list its keys (beside saslauthpy(8), which lists them all)
DOCS = {
    "": "README.md", "server": "README.md", "cache": "README.md", "audit": "README.md",
    "throttle": "docs/performance.md", "metrics": "docs/deployment.md", "sql": "docs/sql.md",
    "ldap": "docs/ldap.md", "pam": "docs/system-backends.md",
    "sasldb": "docs/system-backends.md", "rimap": "docs/remote-backends.md",
    "httpform": "docs/remote-backends.md", "kerberos5": "docs/remote-backends.md",
    "dovecot": "docs/dovecot.md",
}


@pytest.mark.parametrize("table", PARAMS)
def test_every_key_is_documented(table):
    man = (ROOT / "packaging/man/saslauthpy.8").read_text()
    if not keys(schema(table)):
        assert f".B [{table}]" in man.split(".SH CONFIGURATION KEYS", 1)[1]  # "takes no keys"
        return
    section = man.split(f'.SS "[{table}]"' if table else '.SS "top level"', 1)
    assert len(section) == 2, f"saslauthpy(8) has no key list for [{table}]"
    body = re.split(r"^\.S[SH] ", section[1], maxsplit=1, flags=re.M)[0]
    listed = set(re.findall(r"^\.TP\n\.B (\S+)$", body, re.M))
    known = {key for key, default, _ in describe(schema(table)) if not is_dataclass(default)}
    assert known <= listed, f"saslauthpy(8) [{table}] misses {sorted(known - listed)}"
    assert listed <= known, f"saslauthpy(8) [{table}] lists unknown {sorted(listed - known)}"
    if table in DOCS:
        text = (ROOT / DOCS[table]).read_text()
        missing = [k for k in known if not re.search(rf"\b(ldap_)?{k}\b", text)]
        assert not missing, f"{DOCS[table]} does not mention [{table}] {missing}"
