"""The one loader for every configuration table: a TOML table -> a dataclass.

A table's schema is a plain dataclass whose fields have defaults.  The loader reads each
field's type (``bool``, ``int``, ``float``, ``str``, ``list[str]``, ``X | None``, or another
dataclass for a nested table) and, when the field was made with ``option()``, its help
text and limits.  Every mistake is a ``ConfigError`` with one line naming the key::

    @dataclass
    class PamOptions:
        timeout: float = option(30.0, "seconds one PAM call may take", min=0.1, duration=True)
        default_service: str = "other"      # a plain field works too (type from the default)

    load(PamOptions, {"timeout": "2m"}, "[pam] ")   # PamOptions(timeout=120.0, ...)

Rules, the same for every table: an unknown key is refused with the closest valid one;
booleans are TOML booleans (``"no"`` is not false); numbers are never negative unless
``min`` says so; a field whose name ends in ``mode`` takes an octal string (``"0660"``);
``duration=True`` also takes ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` or ``"250ms"``;
``choices`` are matched case-insensitively; a single string is a one-element list.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

_MISSING: Any = dataclasses.MISSING
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")  # a string needs a unit
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def option(default: Any, help: str = "", *, choices: Iterable[str] | None = None,
           min: float | None = None, max: float | None = None, positive: bool = False,
           duration: bool = False, in_file: bool = True, repr: bool = True) -> Any:
    """A dataclass field with its help text and limits (a list default is copied per
    instance).  ``in_file=False``: set by flags only, not a key of the file."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None,
            "min": min, "max": max, "positive": positive, "duration": duration,
            "in_file": in_file}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=meta, repr=repr)
    return dataclasses.field(default=default, metadata=meta, repr=repr)


def keys(cls: type) -> list[str]:
    """The keys a table of schema ``cls`` may hold, in declaration order."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("in_file", True)]


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """(key, default, help) for every key of ``cls``: for docs and ``check-config``."""
    out = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("in_file", True):
            continue
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else None)
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def unknown_key(where: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for a key no schema has: names it, the closest valid one, and the rest."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = f"known keys: {', '.join(known)}" if known else "this table takes no keys"
    return ConfigError(f"{where}{key}: unknown key {key!r}{hint}; {listed}")


def load(cls: type[T], table: Mapping[str, Any] | T | None, where: str = "") -> T:
    """Fill dataclass ``cls`` from ``table`` (a TOML table); an instance passes through,
    None gives the defaults.

    ``where`` prefixes every message and ends with its separator (``"[sql] "``,
    ``"/etc/x.toml: [server]."``).  A class attribute ``ALIASES`` (a ``ClassVar``) maps
    other spellings of keys to field names.
    """
    if isinstance(table, cls):
        return table
    if table is None:
        return cls()
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where.rstrip('. ')}: must be a table, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)  # type: ignore[arg-type]
              if f.metadata.get("in_file", True)}
    hints = typing.get_type_hints(cls)
    aliases: Mapping[str, str] = getattr(cls, "ALIASES", {})
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = aliases.get(key, key)
        f = fields.get(name)
        if f is None:
            raise unknown_key(where, key, [*fields, *aliases])
        values[name] = _convert(value, hints[name], f, where, key)
    return cls(**values)


def _convert(value: Any, tp: Any, f: dataclasses.Field, where: str, key: str) -> Any:
    at = f"{where}{key}"
    meta = f.metadata
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        tp = next(a for a in args if a is not type(None))  # TOML has no null: the value
        args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return load(tp, value, f"{where}[{key}].")
    if typing.get_origin(tp) is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{at}: expected a list like [\"a\", \"b\"], got {value!r}")
        return [_scalar(v, args[0] if args else str, meta, at, key) for v in items]
    return _scalar(value, tp, meta, at, key)


def _scalar(value: Any, tp: Any, meta: Mapping[str, Any], at: str, key: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{at}: expected true or false, got {value!r}")
        return value
    if tp is int and key.endswith("mode"):
        return _mode(value, at)
    if tp in (int, float):
        return _number(value, tp, meta, at)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{at}: expected a string, got {value!r}")
        choices = meta.get("choices")
        if choices is not None:
            if value.lower() not in choices:
                raise ConfigError(f"{at}: {value!r} is not one of {', '.join(choices)}")
            return value.lower()
        return value
    raise TypeError(f"{at}: the loader does not know type {tp!r}")  # a schema bug, not a user's


def _mode(value: Any, at: str) -> int:
    try:
        mode = int(value, 8) if isinstance(value, str) else value
    except ValueError:
        mode = None
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise ConfigError(f'{at}: {value!r} is not an octal mode like "0660"')
    return mode


def _number(value: Any, tp: type, meta: Mapping[str, Any], at: str) -> Any:
    if meta.get("duration") and isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if m is None:
            raise ConfigError(f"{at}: expected a number of seconds or a duration like "
                              f"\"90s\", \"5m\", \"2h\", \"1d\", got {value!r}")
        value = float(m.group(1)) * _UNITS[m.group(2)]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{at}: expected a number, got {value!r}")
    if tp is int:
        if value != int(value):
            raise ConfigError(f"{at}: expected a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    low, high = meta.get("min"), meta.get("max")
    if meta.get("positive") and value <= 0:
        raise ConfigError(f"{at}: must be positive, got {value!r}")
    if low is None and value < 0:
        raise ConfigError(f"{at}: must not be negative, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"between {low:g} and {high:g}" if low is not None and high is not None
                  else f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise ConfigError(f"{at}: must be {bounds}, got {value!r}")
    return value
