"""saslauthd.conf: the ``key: value`` file that saslauthd's mechanisms read (``-O FILE``).

The syntax is the reference's (``saslauthd/lak.c`` ``lak_config_read`` and ``cfile.c``):

- one ``key: value`` per line; blank lines and lines whose first non-blank character
  is ``#`` are skipped (there are no comments after a value);
- the key is letters, digits, ``-`` and ``_``, lower-cased, followed directly by ``:``;
- blanks after the colon are skipped; the rest of the line, without its newline, is the
  value (a trailing ``\\r`` from a DOS file is dropped too, which saslauthd does not do);
- an empty value is an error; a repeated key keeps its last value.

Where saslauthd silently makes every login fail on a bad line (cyrus-sasl#274), this
module raises ``ConfigError`` with the file, the line number and the fix.

The typed helpers (``boolean``, ``integer``, ``choice``) are shared by every mechanism
that reads the file.  ``boolean`` takes saslauthd's words, case-insensitively:
``1 y yes on t true`` and ``0 n no off f false``; anything else is an error (saslauthd
looks only at the first letter and treats anything unknown, even ``Yes``, as false).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from ..errors import ConfigError

DEFAULT_PATH = "/etc/saslauthd.conf"

_KEY = re.compile(r"[A-Za-z0-9_-]+")
TRUE_WORDS = frozenset({"1", "y", "yes", "on", "t", "true"})
FALSE_WORDS = frozenset({"0", "n", "no", "off", "f", "false"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Entry:
    """One setting: its value and where it came from (for error messages)."""

    key: str
    value: str
    where: str  # "FILE line N" or "[ldap] in FILE"

    def __repr__(self) -> str:  # values may be passwords: never show them
        return f"Entry({self.key!r}, where={self.where!r})"


def parse(text: str, source: str = "saslauthd.conf") -> dict[str, Entry]:
    """Parse the text of a saslauthd.conf; ``source`` names it in errors."""
    entries: dict[str, Entry] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source} line {lineno}"
        m = _KEY.match(stripped)
        if not m or stripped[m.end():m.end() + 1] != ":":
            shown = stripped.split(":", 1)[0].strip()[:40]
            raise ConfigError(
                f"{where}: expected 'key: value' (a key of letters, digits, '-' or '_' "
                f"followed directly by ':'), got {shown!r}"
            )
        key = m.group(0).lower()
        value = stripped[m.end() + 1:].lstrip()
        if not value:
            raise ConfigError(f"{where}: {key} has no value; give one or delete the line")
        entries[key] = Entry(key, value, where)
    return entries


def read(path: str | os.PathLike[str]) -> dict[str, Entry]:
    """Read and parse a saslauthd.conf, raising ``ConfigError`` with one clear line."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: create it or point -O at the right file")
    except PermissionError:
        raise ConfigError(f"{path} is not readable by uid {os.getuid()}: fix its owner or mode")
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; -O must name a saslauthd.conf file")
    return parse(text, path)


def read_prefixed(mech_options: str, prefix: str) -> dict[str, Entry]:
    """The ``prefix*`` entries of the file a mechanism reads, keyed without the prefix:
    ``-O`` if given, else ``DEFAULT_PATH`` if it exists (saslauthd's rule for kerberos5
    and httpform).  Other mechanisms' keys in the same file are skipped."""
    if not mech_options and not os.path.exists(DEFAULT_PATH):
        return {}
    entries = read(mech_options or DEFAULT_PATH)
    return {k[len(prefix):]: e for k, e in entries.items() if k.startswith(prefix)}


def unknown(entry: Entry, prefix: str, known: tuple[str, ...]) -> ConfigError:
    """The error for a key of this mechanism's prefix that it does not read."""
    hint = difflib.get_close_matches(entry.key[len(prefix):], known, 1)
    better = f"; did you mean {prefix}{hint[0]}?" if hint else ""
    return ConfigError(f"{entry.where}: unknown key {entry.key}{better}")


def boolean(entry: Entry) -> bool:
    word = entry.value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{entry.where}: {entry.key} must be yes or no "
        f"(1/y/yes/on/t/true or 0/n/no/off/f/false), got {entry.value.strip()!r}"
    )


def integer(entry: Entry, minimum: int = 0, maximum: int | None = None) -> int:
    text = entry.value.strip()
    try:
        number = int(text, 10)
    except ValueError:
        raise ConfigError(f"{entry.where}: {entry.key} must be a whole number, got {text!r}")
    if number < minimum or (maximum is not None and number > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(
            f"{entry.where}: {entry.key} must be at least {minimum}{upper}, got {number}"
        )
    return number


def choice(entry: Entry, choices: Mapping[str, T]) -> T:
    word = entry.value.strip().lower()
    if word in choices:
        return choices[word]
    raise ConfigError(
        f"{entry.where}: {entry.key} must be one of {', '.join(choices)}, "
        f"got {entry.value.strip()!r}"
    )
