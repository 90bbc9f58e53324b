"""Loading the C database libraries (libdb, libgdbm) through ctypes."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

# A C function we call: our name -> (its symbol, argument types, result type).
Signatures = Mapping[str, tuple[str, list[Any], Any]]


def load_library(short: str, names: tuple[str, ...], signatures: Signatures,
                 missing: Exception) -> SimpleNamespace:
    """The first of ``find_library(short)`` and ``names`` that loads and exports every
    symbol of ``signatures``, those functions typed, as attributes; raises ``missing``
    (naming the package to install) when there is none."""
    found = ctypes.util.find_library(short)
    for name in (found, *names) if found else names:
        try:
            lib = ctypes.CDLL(name)
            api = SimpleNamespace()
            for ours, (symbol, args, result) in signatures.items():
                fn = getattr(lib, symbol)
                fn.argtypes, fn.restype = args, result
                setattr(api, ours, fn)
            return api
        except (OSError, AttributeError):
            continue
    raise missing
