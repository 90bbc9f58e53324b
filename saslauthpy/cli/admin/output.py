"""How saslauthpy-admin's commands report: a result as text or JSON, an error as one line."""

from __future__ import annotations

import json
from collections.abc import Iterable


class Fail(Exception):
    """An error for the user: printed as one line, exit status 1."""


class Output:
    """Prints a command's result: ``text`` lines, or ``data`` as JSON with ``--json``."""

    def __init__(self, as_json: bool):
        self.json = as_json

    def result(self, data: object, text: str | Iterable[str]) -> None:
        if self.json:
            print(json.dumps(data, indent=2, ensure_ascii=False))
        elif isinstance(text, str):
            print(text)
        else:
            for line in text:
                print(line)
