"""The scoreboard: each worker's numbers in shared memory, read whole by any process."""

from __future__ import annotations

import os

from saslauthpy.scoreboard import BUFFER, Scoreboard
from saslauthpy.stats import Stats, merge


def test_a_slot_reads_as_its_last_whole_snapshot():
    board = Scoreboard(2)
    assert board.read(0) is None and board.read_all() == []
    board.publish(1, {"requests": {("cache", "smtp", "ok"): 3}, "pid": 7})
    board.publish(1, {"requests": {("cache", "smtp", "ok"): 4}, "pid": 7})
    assert board.read(1) == {"requests": {("cache", "smtp", "ok"): 4}, "pid": 7}
    assert board.read_all() == [board.read(1)]


def test_a_forked_worker_publishes_for_the_parent_to_read():
    board = Scoreboard(1)
    pid = os.fork()
    if pid == 0:
        stats = Stats()
        board.publish(0, stats.snapshot(connections_open=5))
        os._exit(0)
    os.waitpid(pid, 0)
    snap = board.read(0)
    assert snap["pid"] == pid and snap["connections_open"] == 5


def test_a_half_written_buffer_is_never_read(monkeypatch):
    board = Scoreboard(1)
    board.publish(0, {"connections": 1})
    board.publish(0, {"connections": 2})
    # Corrupt the buffer the generation number points at, as a writer caught midway would.
    off = board._buffer(0, 0)
    board._mm[off + 8:off + 12] = b"\xff\xff\xff\xff"
    assert board.read(0) is None  # not a wrong snapshot


def test_a_snapshot_too_big_is_refused_with_one_log_line(caplog):
    board = Scoreboard(1)
    board.publish(0, {"connections": 1})
    board.publish(0, {"junk": "x" * (BUFFER + 1)})
    board.publish(0, {"junk": "x" * (BUFFER + 1)})
    assert board.read(0) == {"connections": 1}
    assert sum("does not fit" in r.message for r in caplog.records) == 1


def test_merge_adds_counters_and_gauges_over_workers():
    a = {"requests": {("sql", "", "ok"): 1}, "latency": [1, 0], "connections": 2,
         "connections_open": 1, "pid": 10}
    b = {"requests": {("sql", "", "ok"): 2, ("cache", "", "ok"): 5}, "latency": [0, 3],
         "connections": 4, "connections_open": 0, "pid": 11}
    total = merge([a, b])
    assert total["requests"] == {("sql", "", "ok"): 3, ("cache", "", "ok"): 5}
    assert total["latency"] == [1, 3] and total["connections"] == 6
    assert total["connections_open"] == 1 and total["workers"] == 2 and "pid" not in total
