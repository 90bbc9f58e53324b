"""``run_import``: CSV and shadow files into the built-in table (PostgreSQL, MariaDB, SQLite)."""

from __future__ import annotations

import hashlib
import io
import os
import pty
import threading

import pytest
from sqlalchemy import create_engine, text

from saslauthpy.backends.base import Result
from saslauthpy.backends.sql import backend as sql
from saslauthpy.backends.sql.importer import run_import
from saslauthpy.config import Config
from saslauthpy.protocol import Request


def plain_md5(pw: str) -> str:
    return "{PLAIN-MD5}" + hashlib.md5(pw.encode()).hexdigest()


def check(url: str, login: str, pw: str, realm: str = "") -> Result:
    b = sql.Backend(Config(), {"url": url})
    b.open()
    try:
        return b.check(Request(login, pw.encode(), "smtp", realm)).result
    finally:
        b.close()


BAD_LINES = [
    "onlylogin",                                   # too few fields
    "nohash,example.com,",                         # empty hash
    ",example.com," + plain_md5("x"),              # empty login
    "locked,example.com,!" + plain_md5("x")[11:],  # locked marker
    "spaces,example.com,not a hash",               # whitespace in the hash
    "x" * 300 + ",example.com," + plain_md5("x"),  # login too long
    "ctl\x01user,example.com," + plain_md5("x"),   # control character
]


def write_csv(path, n: int, reference_hashes) -> dict[int, str]:
    """n good users u0..u{n-1}@example.com, the reference-tool hashes on the first ones,
    bad lines spread through the file; returns line number -> expected complaint."""
    lines = ["login,realm,password", "# a comment", ""]
    bad_at: dict[int, str] = {}
    ref = list(reference_hashes.values())
    bad = iter(BAD_LINES)
    for i in range(n):
        if i < len(ref):
            lines.append(f"u{i},example.com,{ref[i][1]}")
        else:
            lines.append(f"u{i},example.com,{plain_md5(f'pw{i}')}")
        if i % 250 == 100:
            try:
                lines.append(next(bad))
                bad_at[len(lines)] = "skipped"
            except StopIteration:
                pass
    lines.append("u5,example.com," + plain_md5("again"))  # repeats an earlier line
    bad_at[len(lines)] = "already exists"
    path.write_text("\n".join(lines) + "\n")
    return bad_at


def test_csv_import_with_bad_lines(server_url, reference_hashes, tmp_path):
    store = sql.Store(Config(), {"url": server_url})
    store.add("u7", "example.com", b"kept-password")  # exists before the import
    path = tmp_path / "users.csv"
    bad_at = write_csv(path, 2000, reference_hashes)
    out = io.StringIO()
    imported, skipped = run_import(store, str(path), out)
    report = out.getvalue()
    assert imported == 1999  # 2000 minus u7, which existed
    assert skipped == len(bad_at) + 1
    for number, what in bad_at.items():
        assert f"line {number}: " in report and what in report, number
    assert "user 'u7@example.com' already exists" in report
    assert "import: 50%" in report and "import: 100%" in report  # periodic lines (not a tty)
    assert report.splitlines()[-1].startswith(f"imported 1999 user(s), skipped {skipped} in ")
    assert sum(1 for _ in store.users("example.com")) == 2000
    store.close()
    # the reference-tool hashes work, the existing user kept its password, the repeat lost
    for i, (pw, _hash) in enumerate(reference_hashes.values()):
        assert check(server_url, f"u{i}", pw, "example.com") is Result.OK, i
    assert check(server_url, "u7", "kept-password", "example.com") is Result.OK
    assert check(server_url, "u1500", "pw1500", "example.com") is Result.OK
    assert check(server_url, "u5@example.com", "again", "example.com") is Result.FAIL
    for secret in ("pw1500", "kept-password"):
        assert secret not in report


def test_shadow_import_into_sqlite(tmp_path, reference_hashes):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    pw, sha512 = reference_hashes["SHA512-CRYPT"]
    shadow = tmp_path / "shadow"
    shadow.write_text(
        "root:*:19000:0:99999:7:::\n"
        f"carol:{sha512.removeprefix('{SHA512-CRYPT}')}:19000:0:99999:7:::\n"
        f"dave:{reference_hashes['$1$openssl'][1]}:19000::::::\n"
        "erin:!$6$abc$def:19000:0:99999:7:::\n"
        "broken\n"
    )
    store = sql.Store(Config(), {"url": url})
    out = io.StringIO()
    assert run_import(store, str(shadow), out, realm="example.org") == (2, 3)
    report = out.getvalue()
    assert "line 1: user 'root': no usable password" in report
    assert "line 4: user 'erin': no usable password" in report
    assert "line 5: expected login:hash" in report
    assert {(u.login, u.realm) for u in store.users()} == {("carol", "example.org"),
                                                           ("dave", "example.org")}
    store.close()
    assert check(url, "carol", pw, "example.org") is Result.OK
    assert check(url, "dave", reference_hashes["$1$openssl"][0], "example.org") is Result.OK


def test_progress_bar_on_a_terminal(tmp_path):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    path = tmp_path / "users.csv"
    path.write_text("".join(f"t{i},,{plain_md5(str(i))}\n" for i in range(3000)))
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    store = sql.Store(Config(), {"url": url})
    with os.fdopen(slave, "w") as tty:
        assert tty.isatty()
        assert run_import(store, str(path), tty, batch=500) == (3000, 0)
    reader.join(5)
    os.close(master)
    shown = b"".join(chunks).decode()
    assert "\r[" in shown and "100% 3000/3000 lines" in shown
    assert "imported 3000 user(s), skipped 0" in shown
    store.close()


def test_failure_mid_import_keeps_committed_batches(pg_url, tmp_path):
    """A database error in the third batch: the first two stay imported, the error is
    reported, and importing the same file again adds the rest and skips the first ones."""
    store = sql.Store(Config(), {"url": pg_url})
    store.init()
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
            "IF NEW.login = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER poison BEFORE INSERT ON saslauthpy_users "
                          "FOR EACH ROW EXECUTE FUNCTION poison()"))
    path = tmp_path / "users.csv"
    rows = [f"p{i},,{plain_md5(str(i))}" for i in range(250)]
    rows[120] = f"poison,,{plain_md5('x')}"
    path.write_text("\n".join(rows) + "\n")
    out = io.StringIO()
    with pytest.raises(Exception, match="poisoned row"):
        run_import(store, str(path), out, batch=50)
    assert "import stopped before line 101" in out.getvalue()
    assert "100 user(s) imported and committed before the error" in out.getvalue()
    assert sum(1 for _ in store.users()) == 100
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER poison ON saslauthpy_users"))
    engine.dispose()
    out = io.StringIO()
    assert run_import(store, str(path), out, batch=50) == (150, 100)
    assert sum(1 for _ in store.users()) == 250
    store.close()
