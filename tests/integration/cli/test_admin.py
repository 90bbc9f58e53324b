"""saslauthpy-admin, command by command: its help, its output as text and as JSON, one bad
input with its exit status; options before or after the command; the store and the run
directory the daemon uses, read from an /etc/default/saslauthd-style file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from harness import Daemon, ask, need, python_env, testsaslauthd

from saslauthpy import passwords
from saslauthpy.cli.admin.parser import parser

ADMIN = [sys.executable, "-m", "saslauthpy.cli.admin"]
PW = "s3cret-Pass"


def admin(*args: str, input: str | None = None, env: dict | None = None,
          cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*ADMIN, *args], capture_output=True, text=True, input=input,
                          env={**python_env(), **(env or {})}, timeout=120, cwd=cwd)


def leaves(p=None, words=()):
    """Every command of the parser, as its words (("user", "add"), ("status",) ...)."""
    p = p or parser()
    sub = next((a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"), None)
    if sub is None:
        return [tuple(words)]
    out = []
    for name, child in sub.choices.items():
        out += leaves(child, (*words, name))
    return out


LEAVES = leaves()


@pytest.mark.parametrize("words", LEAVES, ids=" ".join)
def test_every_command_has_help(words):
    res = admin(*words, "--help")
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.startswith(f"usage: saslauthpy-admin {' '.join(words)}")
    summary = res.stdout.split("\n\n")[1].strip()
    assert len(summary) > 15, summary  # a description, not just the usage line
    assert "--json" in res.stdout and "--config" in res.stdout


def test_top_help_is_plain_text():
    res = admin("--help")
    assert res.returncode == 0
    assert "``" not in res.stdout and "::" not in res.stdout
    for words in LEAVES:
        assert words[0] in res.stdout


@pytest.fixture
def d(daemon_factory):
    """A caching daemon with two users, one of them in a realm."""
    d = daemon_factory(args=["-c"])
    d.admin("user", "add", "alice", password=PW)
    d.admin("user", "add", "bob", "--realm", "example.org", password="bob-pw")
    return d


def run(d: Daemon, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Options after the command words, where a hand reaches for them."""
    config = [] if "--config" in args else ["--config", str(d.config_path)]
    return admin(*args, *config, input=input)


def both(d: Daemon, *args: str, input: str | None = None) -> tuple[str, object]:
    text, js = run(d, *args, input=input), run(d, *args, "--json", input=input)
    assert (text.returncode, js.returncode) == (0, 0), text.stderr + js.stderr
    return text.stdout, json.loads(js.stdout)


# -- success, as text and as JSON ----------------------------------------------------------

def test_user_add_passwd_delete(d):
    res = run(d, "user", "add", "carol", "--password-stdin", input="c-pw\n")
    assert (res.returncode, res.stdout) == (0, "added carol\n")
    js = json.loads(run(d, "user", "add", "dave", "--password-stdin", "--json",
                        input="d-pw\n").stdout)
    assert js == {"ok": True, "action": "add", "login": "dave", "realm": "", "store": "sql",
                  "flushed": 0}
    assert ask(d.mux, "carol", "c-pw") == ask(d.mux, "dave", "d-pw") == "OK"
    assert ask(d.mux, "alice", PW) == "OK"  # now cached
    res = run(d, "user", "passwd", "alice", "--password-stdin", input="n3w\n")
    assert (res.returncode, res.stdout) == (0, "changed the password of alice\n")
    assert ask(d.mux, "alice", PW).startswith("NO")  # the cached answer was flushed
    js = json.loads(run(d, "user", "passwd", "alice", "--password-stdin", "--json",
                        input="n3w2\n").stdout)
    assert js["ok"] and js["action"] == "passwd" and js["flushed"] == 0
    assert ask(d.mux, "alice", "n3w2") == "OK"
    res = run(d, "user", "delete", "bob", "--realm", "example.org")
    assert (res.returncode, res.stdout) == (0, "deleted bob@example.org\n")
    js = json.loads(run(d, "user", "delete", "carol", "--json").stdout)
    assert js["ok"] and js["action"] == "delete" and js["login"] == "carol"
    assert ask(d.mux, "carol", "c-pw").startswith("NO")


def test_user_enable_disable(d):
    out, js = both(d, "user", "disable", "alice")
    assert out == "disabled alice\n" and js["action"] == "disable" and js["ok"]
    assert ask(d.mux, "alice", PW).startswith("NO")
    out, js = both(d, "user", "enable", "alice")
    assert out == "enabled alice\n" and js["action"] == "enable"
    assert ask(d.mux, "alice", PW) == "OK"


def test_user_list(d):
    run(d, "user", "disable", "alice")
    out, js = both(d, "user", "list")
    assert out.splitlines() == ["alice  (disabled)", "bob@example.org"]
    assert [(u["login"], u["realm"], u["enabled"]) for u in js] == [
        ("alice", "", False), ("bob", "example.org", True)]


def test_user_import(d, tmp_path):
    good = tmp_path / "users.csv"
    good.write_text(f"erin,,{passwords.hash_password(b'erin-pw', 'SHA512-CRYPT')}\n")
    res = run(d, "user", "import", str(good))
    assert res.returncode == 0 and res.stdout == "imported 1 user(s) into the sql store\n"
    plain = tmp_path / "plain.csv"
    plain.write_text("frank,,frank-pw\n")
    js = json.loads(run(d, "user", "import", str(plain), "--allow-plain", "--json").stdout)
    assert (js["imported"], js["skipped"], js["ok"]) == (1, 0, True)
    assert ask(d.mux, "erin", "erin-pw") == ask(d.mux, "frank", "frank-pw") == "OK"
    import sqlite3

    with sqlite3.connect(d.tmp / "users.db") as db:
        stored = db.execute("SELECT password FROM saslauthpy_users WHERE login='frank'").fetchone()
    assert "frank-pw" not in stored[0] and passwords.verify(b"frank-pw", stored[0])


def test_user_import_names_each_line_it_refuses(d, tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("login,realm,password\nfrank,,secret123\ngina,,$6$abc$def\n"
                    f"hal,,{passwords.hash_password(b'hal-pw')}\n")
    res = run(d, "user", "import", str(path))
    assert res.returncode == 1
    assert "line 2: user 'frank': the password field is not a hash" in res.stderr
    assert "line 3: user 'gina': the password field is not a hash" in res.stderr
    assert "imported 1 user(s)" in res.stdout and "2 line(s) skipped" in res.stdout
    assert ask(d.mux, "frank", "secret123").startswith("NO")
    assert ask(d.mux, "hal", "hal-pw") == "OK"
    # bare base64 SSHA values are taken once --scheme says what they are
    ssha = passwords.hash_password(b"ivy-pw", "SSHA").removeprefix("{SSHA}")
    path.write_text(f"ivy,,{ssha}\n")
    assert run(d, "user", "import", str(path)).returncode == 1
    assert run(d, "user", "import", str(path), "--scheme", "SSHA").returncode == 0
    assert ask(d.mux, "ivy", "ivy-pw") == "OK"


def test_init(tmp_path):
    d = Daemon(tmp_path)
    out, js = both(d, "init")
    assert out == "the sql store is ready\n" and js == {"ok": True, "store": "sql"}
    assert (tmp_path / "users.db").exists()


def test_check_config(d):
    out, js = both(d, "check-config")
    assert out.startswith("configuration OK: mechanisms sql, socket ")
    assert str(d.config_path) in out
    assert js["ok"] and js["mechanisms"] == ["sql"] and js["socket"] == str(d.mux)


def test_status(d):
    out, js = both(d, "status")
    assert "mechanisms: sql" in out.splitlines() and "cache.entries: 0" in out.splitlines()
    assert js["ok"] and js["pid"] == d.proc.pid


def test_cache_flush(d):
    assert ask(d.mux, "alice", PW) == "OK"
    out, js = both(d, "cache", "flush", "alice")
    assert out == "flushed 1 cache entries\n" and js == {"ok": True, "flushed": 0}


def test_throttle_show_and_clear(d):
    for _ in range(2):
        assert ask(d.mux, "alice", "guess-1").startswith("NO")
        assert ask(d.mux, "alice", "guess-2", client_addr="192.0.2.7;4321").startswith("NO")
    out, js = both(d, "throttle", "show")  # the shared table can count its keys, not name them
    assert js["penalised"] >= 2 and out.startswith(f"{js['penalised']} penalised")
    out, js = both(d, "throttle", "show", "alice")
    assert [k["key"] for k in js] == ["user:alice"] and js[0]["level"] >= 1
    assert js[0]["delay"] > 0 and "KEY" in out.splitlines()[0] and "user:alice" in out
    _, js = both(d, "throttle", "show", "192.0.2.7")
    assert [k["key"] for k in js] == ["address:192.0.2.7"]
    res = run(d, "throttle", "clear", "alice")
    assert (res.returncode, res.stdout) == (0, "cleared 1 penalties\n")
    js = json.loads(run(d, "throttle", "clear", "192.0.2.7", "--json").stdout)
    assert js == {"ok": True, "cleared": 1}
    assert json.loads(run(d, "throttle", "show", "alice", "--json").stdout) == []
    assert run(d, "throttle", "show", "192.0.2.7").stdout == "no penalties\n"


def test_pw_hashes_and_tests_like_doveadm(tmp_path):
    res = admin("pw", "-s", "SHA512-CRYPT", "--password-stdin", input="pw-1\n")
    assert res.returncode == 0 and res.stdout.startswith("{SHA512-CRYPT}$6$")
    stored = res.stdout.strip()
    assert passwords.verify(b"pw-1", stored)
    js = json.loads(admin("pw", "--json", "--password-stdin", input="pw-2\n").stdout)
    assert js["scheme"] == passwords.DEFAULT_SCHEME and passwords.verify(b"pw-2", js["hash"])
    res = admin("pw", "-t", stored, "--password-stdin", input="pw-1\n")
    assert (res.returncode, res.stdout) == (0, "verified\n")
    js = json.loads(admin("pw", "-t", stored, "--password-stdin", "--json", input="pw-x\n").stdout)
    assert js == {"verified": False, "scheme": "{SHA512-CRYPT}"}


def test_sql_schema(tmp_path):
    out, js = both(Daemon(tmp_path), "sql", "schema", "postgresql")
    assert "CREATE TABLE" in out and "saslauthpy_users" in out
    assert js["dialect"] == "postgresql" and js["ddl"].rstrip("\n") == out.rstrip("\n")


# -- one bad input per command ------------------------------------------------------------

BAD = [
    (("user", "add", "alice", "--password-stdin"), PW + "\n", 1, "alice already exists"),
    (("user", "passwd", "nobody", "--password-stdin"), "x\n", 1, "no user nobody"),
    (("user", "delete", "nobody"), None, 1, "no user nobody"),
    (("user", "enable", "nobody"), None, 1, "no user nobody"),
    (("user", "disable", "nobody"), None, 1, "no user nobody"),
    (("user", "list", "--bogus"), None, 2, "unrecognized arguments: --bogus"),
    (("user", "import", "/nonexistent/users.csv"), None, 1,
     "/nonexistent/users.csv: No such file or directory"),
    (("init", "--store", "nosuch"), None, 1, "--store nosuch: unknown store"),
    (("check-config", "--config", "/nonexistent.toml"), None, 1,
     "/nonexistent.toml does not exist"),
    (("status", "-m", "/nonexistent-run"), None, 1, "nothing answers on /nonexistent-run/"),
    (("cache", "flush", "-m", "/nonexistent-run"), None, 1, "nothing answers on"),
    (("throttle", "show", "-m", "/nonexistent-run"), None, 1, "nothing answers on"),
    (("throttle", "clear"), None, 2, "the following arguments are required: LOGIN|ADDRESS"),
    (("pw", "-s", "NOSUCH", "--password-stdin"), "x\n", 1, "-s NOSUCH: not a scheme"),
    (("sql", "schema", "oracle"), None, 2, "invalid choice: 'oracle'"),
]


def test_every_command_has_a_bad_input_case():
    assert {words[:2] if words[0] in ("user", "cache", "throttle", "sql") else words[:1]
            for words, *_ in BAD} == set(LEAVES)


@pytest.mark.parametrize("args,stdin,status,needle", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_with_its_status(d, args, stdin, status, needle):
    res = run(d, *args, input=stdin)
    assert res.returncode == status, res.stderr
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("saslauthpy-admin")
    assert "Traceback" not in res.stderr


def test_options_before_and_after_the_command_are_the_same(d):
    before = admin("--config", str(d.config_path), "--json", "user", "list")
    after = admin("user", "list", "--json", "--config", str(d.config_path))
    assert before.returncode == after.returncode == 0 and before.stdout == after.stdout
    assert json.loads(before.stdout)[0]["login"] == "alice"


# -- the daemon's own configuration: /etc/default/saslauthd -------------------------------

def start_with_defaults(tmp_path, defaults: str) -> subprocess.Popen:
    """The daemon the way the unit starts it: saslauthpy-env with the file's variables."""
    from saslauthpy.cli.admin.hostconfig import read_environment_file

    wrapper = tmp_path / "saslauthpy"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m saslauthpy \"$@\"\n")
    wrapper.chmod(0o755)
    env = {**python_env(), **read_environment_file(defaults), "SASLAUTHPY_DAEMON": str(wrapper)}
    script = os.path.join(os.path.dirname(__file__), "../../../saslauthpy/share/systemd/"
                                                     "saslauthpy-env")
    return subprocess.Popen(["/bin/sh", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def wait_listening(path, proc) -> None:
    import time

    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.csaslauthd
def test_sasldb_named_in_the_defaults_file(tmp_path):
    """MECHANISMS="sasldb": user add writes the sasldb the daemon reads (MECH_OPTIONS), and
    the change reaches the daemon's control socket in the run directory of OPTIONS -m."""
    need("testsaslauthd")
    run_dir, sasldb = tmp_path / "run", tmp_path / "sasldb2"
    defaults = tmp_path / "saslauthd"
    defaults.write_text(f'# as in /etc/default/saslauthd\nMECHANISMS="sasldb"\n'
                        f'MECH_OPTIONS="{sasldb}"\nOPTIONS="-c -m {run_dir}"\n'
                        f'SASLAUTHPY_OPTIONS="--config /dev/null"\n')
    res = admin("--defaults", str(defaults), "user", "add", "bob", "--realm", "example.org",
                "--password-stdin", input="bob-pw\n")
    assert res.returncode == 0 and res.stdout == "added bob@example.org\n", res.stderr
    assert sasldb.exists()
    proc = start_with_defaults(tmp_path, str(defaults))
    try:
        wait_listening(run_dir / "mux", proc)
        assert testsaslauthd(run_dir / "mux", "bob", "bob-pw", realm="example.org").returncode == 0
        assert testsaslauthd(run_dir / "mux", "bob", "bob-pw", realm="example.org").returncode == 0
        res = admin("user", "passwd", "bob", "--realm", "example.org", "--defaults",
                    str(defaults), "--password-stdin", "--json", input="new-pw\n")
        assert json.loads(res.stdout)["flushed"] == 1  # the cached OK is gone at once
        assert testsaslauthd(run_dir / "mux", "bob", "bob-pw", realm="example.org").returncode \
            == 255
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_store_the_daemon_does_not_read_is_refused(tmp_path):
    defaults = tmp_path / "saslauthd"
    defaults.write_text('MECHANISMS="pam"\nSASLAUTHPY_OPTIONS="--config /dev/null"\n')
    res = admin("--defaults", str(defaults), "user", "add", "carol", "--password-stdin",
                input="x\n")
    assert res.returncode == 1
    assert "the daemon checks passwords with pam (from " in res.stderr
    res = admin("--defaults", str(defaults), "user", "add", "carol", "--store", "sql",
                "--password-stdin", input="x\n")
    assert res.returncode == 1 and "--store sql: the daemon does not read it" in res.stderr


def test_a_flush_that_reaches_no_daemon_is_reported(d, tmp_path):
    """The daemon runs on one run directory, the admin is pointed at another: the password
    changes, and the admin says the cached answers were not flushed, naming the command."""
    assert ask(d.mux, "alice", PW) == "OK"  # cached
    res = admin("--config", str(d.config_path), "-m", str(tmp_path / "elsewhere"),
                "user", "passwd", "alice", "--password-stdin", input="n3w\n")
    assert res.returncode == 1 and res.stdout == "changed the password of alice\n"
    assert f"nothing answers on {tmp_path / 'elsewhere'}/saslauthpy.control" in res.stderr
    assert "saslauthpy-admin -m DIR cache flush alice" in res.stderr
    assert ask(d.mux, "alice", PW) == "OK"  # still cached: what the message warns about


def test_a_store_that_cannot_be_reached_is_one_line(tmp_path):
    """PostgreSQL down (nothing listens on the port): one line naming the driver's error."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sql]\nurl = "postgresql+psycopg://nobody@127.0.0.1:9/none"\n'
                   'connect_timeout = 2\n')
    res = admin("user", "list", "--config", str(cfg))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "saslauthpy-admin: " in res.stderr


@pytest.mark.parametrize("words, needle", [
    (("user", "list"), "no such file ('user add' or 'init' creates a store)"),
    (("user", "delete", "bob"), "no such file"),
    (("init",), "no such directory"),
    (("user", "add", "bob", "--password-stdin"), "no such directory"),
])
def test_a_file_that_is_not_there_is_reported_and_no_folder_is_made(tmp_path, words, needle):
    missing = tmp_path / "not-here" / "deeper"
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    res = admin("--config", str(cfg), *words, "--file", str(missing / "x.db"), input="pw\n")
    assert res.returncode == 1 and f"--file {missing / 'x.db'}: " in res.stderr
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "not-here").exists()


def test_a_file_in_a_folder_that_exists_is_created_by_add(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    db = tmp_path / "new.db"
    here = ("--config", str(cfg), "-m", str(tmp_path / "run"))  # no daemon to tell
    res = admin(*here, "user", "add", "bob", "--password-stdin", "--file", str(db),
                input="pw\n")
    assert res.returncode == 0, res.stderr
    assert admin(*here, "user", "list", "--file", str(db)).stdout.split() == ["bob"]
