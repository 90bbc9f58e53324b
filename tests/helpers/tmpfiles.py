"""Placeholders for paths in parametrised cases, made real in the test's own tmp_path (no
case depends on what exists outside it, such as /etc/hostname or /nonexistent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXISTS, MISSING = "<a file>", "<no file>"


def in_tmp(tmp: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with EXISTS turned into a file in ``tmp`` and MISSING into a path there
    that does not exist."""
    (tmp / "file.pem").write_text("not a certificate\n")
    paths = {EXISTS: str(tmp / "file.pem"), MISSING: str(tmp / "missing" / "file.pem")}
    return {k: paths.get(v, v) if isinstance(v, str) else v for k, v in options.items()}
