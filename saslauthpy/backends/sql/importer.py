"""``saslauthpy-admin user import FILE``: bulk-load users whose passwords are already hashed.

Two line formats, chosen from the first data line of the file:

* CSV ``login,realm,password-hash`` (a hash with commas, like argon2's ``m=65536,t=3,p=1``,
  may stay unquoted: everything after the second comma is the hash); an optional header line
  ``login,realm,password`` is skipped;
* ``/etc/shadow`` style ``login:hash:...`` (the fields after the hash are ignored); the
  realm is the ``realm`` argument (default none).

The password field must be a hash saslauthpy can verify (``hashshape.verifiable``): a
cleartext value, or a malformed or unknown hash, is a bad line, unless ``scheme`` names the
scheme of bare values (``SSHA`` for base64 without ``{SSHA}``) or ``allow_plain`` says the
file holds cleartext passwords, which are then hashed with the default scheme (never
stored in clear).

Blank lines and ``#`` comments are ignored.  A bad line is reported with its number and
skipped; users that already exist are left untouched and reported.  Rows are committed in
batches, so an interruption loses nothing that was already reported as imported.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Iterator
from typing import Protocol, TextIO

from ... import hashcost, hashshape, passwords
from ...errors import TooCostly
from .store import MAX_HASH, check_names, display_name

BATCH = 1000
# shadow markers for "no password" / "locked"
LOCKED = ("!", "*", "!!", "x")


class BulkStore(Protocol):
    def add_hashed_many(self, rows: list[tuple[str, str, str]]) -> list[tuple[str, str]]: ...


class BadLine(ValueError):
    pass


class Passwords:
    """What the password field may hold: a verifiable hash, bare values of ``scheme``,
    or (``allow_plain``) cleartext, hashed here."""

    def __init__(self, scheme: str | None = None, allow_plain: bool = False):
        if scheme is not None and not passwords.is_known_scheme(scheme):
            raise ValueError(f"--scheme {scheme}: unknown password scheme")
        self.prefix = "{" + scheme.strip().strip("{}").upper() + "}" if scheme else ""
        self.allow_plain = allow_plain

    def stored(self, login: str, value: str) -> str:
        if self.prefix and not value.startswith("{"):
            value = self.prefix + value
        try:
            hashcost.check(value)  # before hashshape runs crypt(3) on it
        except TooCostly as exc:
            raise BadLine(f"user {login!r}: {exc}") from None
        if hashshape.verifiable(value):
            return value
        if self.allow_plain and (hashshape.is_plain(value) or value[:1] not in ("$", "{")):
            clear = value.split("}", 1)[1] if hashshape.is_plain(value) else value
            return passwords.hash_password(clear.encode("utf-8", "surrogateescape"))
        raise BadLine(f"user {login!r}: the password field is not a hash saslauthpy can verify "
                      "(cleartext, or a malformed or unknown hash); --scheme NAME says what "
                      "bare hashes are, --allow-plain hashes cleartext passwords")


def _check(login: str, realm: str, hashed: str, pw: Passwords) -> tuple[str, str, str]:
    login, realm, hashed = login.strip(), realm.strip(), hashed.strip()
    try:
        check_names(login, realm)
    except ValueError as exc:
        raise BadLine(str(exc)) from None
    if not hashed:
        raise BadLine(f"user {login!r}: empty password hash")
    if hashed in LOCKED or hashed.startswith("!"):
        raise BadLine(f"user {login!r}: no usable password (locked account)")
    if len(hashed) > MAX_HASH or any(c.isspace() for c in hashed):
        raise BadLine(f"user {login!r}: not a password hash (too long or contains spaces)")
    return login, realm, pw.stored(login, hashed)


def parse_csv(line: str, pw: Passwords) -> tuple[str, str, str]:
    fields = next(csv.reader([line]))
    if len(fields) < 3:
        raise BadLine(f"expected login,realm,password-hash; got {len(fields)} field(s)")
    return _check(fields[0], fields[1], ",".join(fields[2:]), pw)


def parse_shadow(line: str, realm: str, pw: Passwords) -> tuple[str, str, str]:
    fields = line.split(":")
    if len(fields) < 2:
        raise BadLine("expected login:hash[:...]")
    return _check(fields[0], realm, fields[1], pw)


def detect(line: str) -> str:
    head = line.split(":", 1)[0]
    return "shadow" if ":" in line and "," not in head else "csv"


def _is_header(line: str) -> bool:
    return line.replace(" ", "").lower().startswith("login,realm,")


def _data_lines(f: TextIO) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(f, 1):
        line = raw.rstrip("\r\n")
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


class Progress:
    """A bar redrawn in place on a terminal; otherwise a line every 10 %."""

    def __init__(self, stream: TextIO, total: int):
        self.stream, self.total = stream, max(total, 1)
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._next_pct = 10

    def update(self, done: int, final: bool = False) -> None:
        pct = min(100, done * 100 // self.total)
        rate = done / max(time.monotonic() - self.start, 1e-6)
        if self.tty:
            now = time.monotonic()
            if not final and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            bar = "#" * (pct * 30 // 100)
            self.stream.write(f"\r[{bar:<30}] {pct:3d}% {done}/{self.total} lines "
                              f"{rate:,.0f}/s")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        elif pct >= self._next_pct and not final:
            while self._next_pct <= pct:
                self._next_pct += 10
            self.stream.write(f"import: {pct}% ({done}/{self.total} lines)\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self._last_draw = 0.0


def run_import(store: BulkStore, path: str, stream: TextIO = sys.stderr, *,
               realm: str = "", fmt: str = "auto", batch: int = BATCH,
               scheme: str | None = None, allow_plain: bool = False) -> tuple[int, int]:
    """Import ``path`` into ``store``; returns (imported, skipped)."""
    pw = Passwords(scheme, allow_plain)
    started = time.monotonic()
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        lines = list(_data_lines(f))
    if lines and fmt == "auto":
        fmt = detect(lines[0][1])
    if lines and fmt == "csv" and _is_header(lines[0][1]):
        del lines[0]
    progress = Progress(stream, len(lines))
    imported = skipped = 0
    pending: list[tuple[str, str, str]] = []
    lines_of: dict[tuple[str, str], int] = {}

    def flush() -> None:
        nonlocal imported, skipped
        if not pending:
            return
        try:
            existing = store.add_hashed_many(pending)
        except Exception as exc:
            progress.note(f"import stopped before line {min(lines_of.values())}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            stream.write(f"{imported} user(s) imported and committed before the error; "
                         f"run the import again to add the rest (existing users are kept)\n")
            raise
        for key in existing:
            progress.note(f"line {lines_of.get(key, '?')}: user {display_name(*key)!r} already "
                          f"exists, left unchanged")
        skipped += len(existing)
        imported += len(pending) - len(existing)
        pending.clear()
        lines_of.clear()

    for done, (number, line) in enumerate(lines, 1):
        try:
            if "\ufffd" in line:
                raise BadLine("not valid UTF-8")
            row = parse_csv(line, pw) if fmt == "csv" else parse_shadow(line, realm, pw)
        except (BadLine, csv.Error) as exc:
            progress.note(f"line {number}: {exc}; skipped")
            skipped += 1
        else:
            key = (row[0], row[1])
            if key in lines_of:
                progress.note(f"line {number}: user {display_name(*key)!r} repeats line "
                              f"{lines_of[key]}; skipped")
                skipped += 1
            else:
                lines_of[key] = number
                pending.append(row)
        if len(pending) >= batch:
            flush()
        progress.update(done)
    flush()
    progress.update(len(lines), final=True)
    took = time.monotonic() - started
    stream.write(f"imported {imported} user(s), skipped {skipped} in {took:.1f} s\n")
    stream.flush()
    return imported, skipped
