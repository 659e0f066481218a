"""``vactor bench``'s processes row starts its clock once every writer has loaded.

It waited a fixed 3 s + 0.5 s per process (h169 noticed): a writer slower to import and load
the actor than that (a loaded host, a cold store) started its window late, overlapped the others
less, and flattered the aggregate. Each writer now says it has loaded, and the clock starts on
the last one's word (at most ``_READY_LIMIT`` seconds; at once when one died).
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest
from test_review_h169_bench_sweep import _Reporting

from vactor_cloud.cli import bench_harness as harness
from vactor_cloud.cli import bench_processes


class _Context:
    Event = threading.Event
    Queue = queue.Queue
    Process = _Reporting  # (a writer process on a thread of this process)


def test_the_clock_starts_after_the_slowest_writer_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = threading.Event()
    started_before_the_slow_one_loaded: list[bool] = []

    def writer(
        _target: Any, _actor_id: str, start: Any, _duration: float, results: Any, index: int, ready: Any
    ) -> None:
        if index == 1:  # the slow one: loads only once writer 0 is waiting for the start
            loaded.wait(30)
            ready.put(index)
        else:
            ready.put(index)
            started_before_the_slow_one_loaded.append(start.wait(0.5))
            loaded.set()
        assert start.wait(30)
        results.put((index, 1))

    monkeypatch.setattr(harness.multiprocessing, "get_context", lambda _method: _Context())
    monkeypatch.setattr(harness, "_process_writer", writer)
    assert harness._processes(harness.Target("file:///x"), "a", 2, 0.1) == [1, 1]
    assert started_before_the_slow_one_loaded == [False]


def test_the_wait_for_writers_counts_each_ones_word() -> None:
    class Alive:
        def is_alive(self) -> bool:
            return True

    ready: queue.Queue[int] = queue.Queue()
    for index in (0, 1, 2):
        ready.put(index)
    bench_processes._wait_ready([Alive(), Alive()], 60.0, ready)
    assert ready.get_nowait() == 2  # (took two words, one per writer; left the third)
