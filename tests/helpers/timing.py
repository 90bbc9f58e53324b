"""Timing comparisons for the no-enumeration tests: medians of interleaved runs, compared
with each other (never with a fixed time, so load on the machine cannot fail them)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from saslauthpy.backends.base import Result
from saslauthpy.protocol import Request

ROUNDS = 15


def check_medians(check: Callable[[Request], object], cases: dict[str, tuple[str, Result]],
                  rounds: int = ROUNDS) -> dict[str, float]:
    """Median seconds of ``check`` per case (name -> (login, expected result)), asked
    with one wrong password, the cases interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (login, expected) in cases.items():
            started = time.perf_counter()
            answer = check(Request(login, b"a-wrong-password", "smtp", ""))
            times[name].append(time.perf_counter() - started)
            assert answer.result is expected, name
    return {name: statistics.median(t) for name, t in times.items()}


def assert_alike(found: dict[str, float], reference: str, factor: float = 2.0) -> None:
    """Every median within ``factor`` of the ``reference`` case's, either way."""
    base = found[reference]
    shown = ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in found.items())
    for name, value in found.items():
        assert base / factor <= value <= base * factor, f"{name} vs {reference}: {shown}"
