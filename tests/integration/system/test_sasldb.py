"""-a sasldb and the sasldb user store against files made and read by the real tools:
saslpasswd2 / sasldblistusers2 / the C saslauthd (Berkeley DB), mdb_load / mdb_dump
(LMDB), and Debian's python3-gdbm (GDBM)."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest
from harness import admin, testsaslauthd
from reference import CSaslauthd, need, run

from saslauthpy.backends.base import Result
from saslauthpy.backends.sasldb import Backend, Store
from saslauthpy.backends.sasldb.files import detect
from saslauthpy.config import Config
from saslauthpy.errors import NoSuchUser, UserExists
from saslauthpy.protocol import Request

pytestmark = pytest.mark.timeout(120)
HOST = socket.gethostname()
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gdbm: an independent GDBM


def saslpasswd2(db, user: str, password: str, realm: str = HOST) -> None:
    run(need("saslpasswd2"), "-f", str(db), "-c", "-p", "-u", realm, user, input=password)


def listed(db) -> list[str]:
    out = subprocess.run([need("sasldblistusers2"), "-f", str(db)], capture_output=True,
                         text=True, check=True).stdout
    return sorted(out.splitlines())


def check(path, login, password, realm="") -> Result:
    return Backend(Config(), {"path": str(path)}).check(
        Request(login, password.encode(), "smtp", realm)).result


@pytest.mark.csaslauthd
@pytest.mark.sasldb
def test_reads_what_saslpasswd2_wrote(tmp_path, daemon_factory):
    db = tmp_path / "sasldb2"
    saslpasswd2(db, "alice", "alice-pw")
    saslpasswd2(db, "bob", "bob-pw", "example.org")
    assert detect(str(db)) == "berkeley"
    d = daemon_factory(args=["-a", "sasldb"], config={"sasldb": {"path": str(db)},
                                                       "throttle": {"enabled": False}})
    assert testsaslauthd(d.mux, "alice", "alice-pw").stdout.startswith('0: OK')
    assert testsaslauthd(d.mux, "alice", "alice-pw", realm=HOST).stdout.startswith('0: OK')
    assert testsaslauthd(d.mux, "bob", "bob-pw", realm="example.org").stdout.startswith("0: OK")
    assert testsaslauthd(d.mux, "bob", "bob-pw").stdout.startswith("0: NO")
    assert testsaslauthd(d.mux, "alice", "wrong").stdout.startswith("0: NO")
    # -O names the file too (saslauthd's mechanism option)
    d2 = daemon_factory(args=["-a", "sasldb", "-O", str(db)],
                        config={"throttle": {"enabled": False}})
    assert d2.ask("alice", "alice-pw") == "OK"


@pytest.mark.csaslauthd
@pytest.mark.sasldb
def test_admin_user_is_accepted_by_c_saslauthd_and_listed(tmp_path):
    db = tmp_path / "sasldb2"
    saslpasswd2(db, "carol", "carol-pw")  # an existing file, as on a real host
    cfg = tmp_path / "none.toml"
    cfg.write_text("")
    sasldb = ("--store", "sasldb", "--file", str(db))
    admin(cfg, *sasldb, "user", "add", "dave", "--realm", "example.org", password="dave-pw")
    admin(cfg, *sasldb, "user", "add", "erin", password="erin-pw")  # realm = host name
    assert listed(db) == sorted(["carol@" + HOST + ": userPassword",
                                 "dave@example.org: userPassword",
                                 "erin@" + HOST + ": userPassword"])
    out = admin(cfg, *sasldb, "user", "list").stdout
    assert "dave@example.org" in out and f"carol@{HOST}" in out
    with CSaslauthd(tmp_path, "sasldb", sasldb=str(db)) as c:
        ok = '0: OK "Success."'
        assert testsaslauthd(c.mux, "dave", "dave-pw", realm="example.org").stdout.strip() == ok
        assert testsaslauthd(c.mux, "erin", "erin-pw").stdout.strip() == ok
        assert testsaslauthd(c.mux, "carol", "carol-pw").stdout.strip() == ok
        # no saslauthpy daemon runs (the C one has no control socket): the change is made,
        # and the admin says that no daemon's cache was flushed (exit 1)
        res = admin(cfg, *sasldb, "user", "passwd", "dave", "--realm", "example.org",
                    password="new-pw", check=False)
        assert res.returncode == 1 and "cached answers were not flushed" in res.stderr
        assert testsaslauthd(c.mux, "dave", "new-pw", realm="example.org").stdout.strip() == ok
        assert "NO" in testsaslauthd(c.mux, "dave", "dave-pw", realm="example.org").stdout
        admin(cfg, *sasldb, "user", "delete", "dave", "--realm", "example.org", check=False)
        assert "NO" in testsaslauthd(c.mux, "dave", "new-pw", realm="example.org").stdout
        assert all("dave" not in line for line in listed(db))
    res = admin(cfg, *sasldb, "user", "disable", "erin", check=False)
    assert res.returncode != 0 and "sasldb has no enabled/disabled flag" in res.stderr
    res = admin(cfg, *sasldb, "user", "add", "erin", password="x", check=False)
    assert res.returncode != 0 and "already exists" in res.stderr


@pytest.mark.sasldb
def test_new_berkeley_file_is_readable_by_saslpasswd2_tools(tmp_path):
    db = tmp_path / "fresh"
    Store(Config(), {"path": str(db)}).add("frank", "", b"frank-pw")
    assert listed(db) == [f"frank@{HOST}: userPassword"]
    saslpasswd2(db, "gina", "gina-pw")  # saslpasswd2 can write into our file too
    assert check(db, "gina", "gina-pw") is Result.OK
    assert check(db, "frank", "frank-pw") is Result.OK


def test_gdbm_both_ways(tmp_path):
    made = tmp_path / "made.gdbm"
    subprocess.run([SYSTEM_PYTHON, "-c",
                    "import dbm.gnu,sys; d=dbm.gnu.open(sys.argv[1],'c');"
                    "d[b'hal\\0ex.org\\0userPassword']=b'hal-pw'; d.close()", str(made)],
                   check=True)
    assert detect(str(made)) == "gdbm"
    assert check(made, "hal", "hal-pw", "ex.org") is Result.OK
    assert check(made, "hal", "nope", "ex.org") is Result.FAIL
    assert check(made, "ivy", "x", "ex.org") is Result.UNKNOWN
    ours = tmp_path / "ours.gdbm"
    store = Store(Config(), {"path": str(ours), "format": "gdbm"})
    store.add("ivy", "ex.org", b"ivy-pw")
    store.set_password("ivy", "ex.org", b"ivy-pw2")
    got = subprocess.run([SYSTEM_PYTHON, "-c",
                          "import dbm.gnu,sys; d=dbm.gnu.open(sys.argv[1],'r');"
                          "print(d[b'ivy\\0ex.org\\0userPassword'].decode())", str(ours)],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert got == "ivy-pw2"


def test_lmdb_both_ways(tmp_path):
    need("mdb_load")
    made = tmp_path / "made.lmdb"
    key = b"jo\0ex.org\0userPassword".hex()
    dump = f"VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n {key}\n {b'jo-pw'.hex()}\n" \
           "DATA=END\n"
    subprocess.run(["mdb_load", "-n", "-f", "/dev/stdin", str(made)], input=dump, text=True,
                   check=True)
    assert detect(str(made)) == "lmdb"
    assert check(made, "jo", "jo-pw", "ex.org") is Result.OK
    assert check(made, "jo", "x", "ex.org") is Result.FAIL
    store = Store(Config(), {"path": str(made)})
    store.add("kim", "ex.org", b"kim-pw")
    out = subprocess.run(["mdb_dump", "-n", "-p", str(made)], capture_output=True,
                         text=True, check=True).stdout
    assert "kim\\00ex.org\\00userPassword" in out and "kim-pw" in out
    with pytest.raises(UserExists):
        store.add("kim", "ex.org", b"again")
    with pytest.raises(NoSuchUser):
        store.delete("nobody", "ex.org")


@pytest.mark.parametrize("fmt", ["berkeley", "gdbm", "lmdb"])
def test_no_torn_reads_while_writing(tmp_path, fmt):
    path = tmp_path / f"db.{fmt}"
    store = Store(Config(), {"path": str(path), "format": fmt})
    store.add("steady", "r", b"steady-pw")
    store.add("moving", "r", b"pw-0")
    backend = Backend(Config(), {"path": str(path)})
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            a = backend.check(Request("steady", b"steady-pw", "", "r"))
            if a.result is not Result.OK:
                bad.append(f"{a.result} {a.reason}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 60):
            store.set_password("moving", "r", f"pw-{i}".encode())
            store.add(f"user{i}", "r", b"x")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert bad == []
    assert backend.check(Request("moving", b"pw-59", "", "r")).result is Result.OK


@pytest.mark.sasldb
def test_backup_keeps_previous_version(tmp_path):
    db = tmp_path / "sasldb2"
    saslpasswd2(db, "lee", "old-pw")
    store = Store(Config(), {"path": str(db), "backup": True})
    store.set_password("lee", HOST, b"new-pw")
    assert check(db, "lee", "new-pw") is Result.OK
    assert check(str(db) + ".bak", "lee", "old-pw") is Result.OK
    lm = tmp_path / "users.lmdb"
    store = Store(Config(), {"path": str(lm), "format": "lmdb", "backup": True})
    store.add("max", "r", b"old-pw")
    store.set_password("max", "r", b"new-pw")
    assert check(lm, "max", "new-pw", "r") is Result.OK
    assert check(str(lm) + ".bak", "max", "old-pw", "r") is Result.OK


def test_unusable_files_give_a_clear_tempfail(tmp_path):
    missing = Backend(Config(), {"path": str(tmp_path / "nope")}).check(Request("a", b"b"))
    assert missing.result is Result.TEMPFAIL and "does not exist" in missing.reason
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a database" * 100)
    answer = Backend(Config(), {"path": str(junk)}).check(Request("a", b"b"))
    assert answer.result is Result.TEMPFAIL
    assert "is not a Berkeley DB, GDBM or LMDB" in answer.reason
