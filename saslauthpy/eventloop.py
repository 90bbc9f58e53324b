"""What every process of the daemon needs around its event loop: the signals it handles
(and those that arrive before its handlers are in place), and uvloop when installed."""

from __future__ import annotations

import asyncio
import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
early_signals: list[int] = []


def hold_signals(into: list[int] | None = None) -> None:
    """Until a loop takes over, keep SIGTERM/SIGINT/SIGHUP in ``into`` (default
    ``early_signals``, which ``Server.serve`` replays once its handlers are set)."""
    target = early_signals if into is None else into
    if into is None:
        early_signals.clear()
    for sig in SIGNALS:
        signal.signal(sig, lambda signum, frame: target.append(signum))


def run_loop(coro) -> None:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
