"""A sub-task child that raises an interrupt itself (``SystemExit``, ``KeyboardInterrupt``: a
``BaseException`` that is not an ``Exception``).

The waiting thread, running a queued child itself (caller runs), raised such an exception at
once: the call failed with it, no retry ran, the children not started never started. A pool
thread's child raising the same was taken for an ordinary failure: run again
``max_retries`` times, and, beside a sibling's ordinary failure at an earlier position, dropped
for that one (the caller never saw it). One rule now, wherever the child ran: the interrupt
reaches the caller at once and is never retried (as an actor call's ``max_retries`` runs a body
again only for an ``Exception``).
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

import vactor_cloud as vc
from vactor_cloud.subtask_executors import Runner

HANG = 60.0

INTERRUPTS = [
    pytest.param(lambda: SystemExit(3), id="SystemExit"),
    pytest.param(KeyboardInterrupt, id="KeyboardInterrupt"),
]


class _Child:
    """A child raising ``interrupt`` (position 1) or ``ValueError`` (position 0), counting its runs."""

    def __init__(self, interrupt: type[BaseException] | object) -> None:
        self.interrupt = interrupt
        self.runs: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, position: int) -> int:
        with self.lock:
            self.runs.append(position)
        if position == 0:
            raise ValueError("an ordinary failure")
        raise self.interrupt()  # type: ignore[operator]


@pytest.fixture
def on_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every child runs on a pool thread (the waiting thread runs none itself)."""
    monkeypatch.setattr(Runner, "_run_one_here", staticmethod(lambda _fn, _pending: False))


@pytest.mark.usefixtures("on_the_pool")
@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_an_interrupt_raised_by_a_child_on_a_pool_thread_is_not_retried(interrupt: object) -> None:
    child = _Child(interrupt)
    with ThreadPoolExecutor(1) as pool, pytest.raises((SystemExit, KeyboardInterrupt)):
        vc.subtask(child, executor=pool, max_retries=2).run(1)
    assert child.runs == [1]  # (before: [1, 1, 1], each retry raising it again)


@pytest.mark.usefixtures("on_the_pool")
@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_an_interrupt_raised_by_a_child_on_a_pool_thread_is_not_dropped_for_a_sibling_failure(
    interrupt: object,
) -> None:
    """Before, the first failure by position was raised: the sibling's ``ValueError``, the
    interrupt of child 1 never reaching the caller."""
    child = _Child(interrupt)
    with ThreadPoolExecutor(2) as pool, pytest.raises((SystemExit, KeyboardInterrupt)):
        vc.subtask(child, executor=pool).map([0, 1])


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_an_interrupt_raised_by_a_child_on_the_waiting_thread_is_not_retried(interrupt: object) -> None:
    """The pool's one thread is busy: the waiting thread runs the child itself (caller runs)."""
    child = _Child(interrupt)
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(release.wait, HANG)
        try:
            with pytest.raises((SystemExit, KeyboardInterrupt)):
                vc.subtask(child, executor=pool, max_retries=2).run(1)
            assert not busy.done()  # (so the child ran on the waiting thread)
        finally:
            release.set()
    assert child.runs == [1]


def _exits_noting_each_run(runs: str) -> None:
    with open(runs, "a") as noted:
        noted.write("ran\n")
    raise SystemExit(3)


def test_an_interrupt_raised_by_a_child_in_a_worker_process_is_not_retried(tmp_path: Path) -> None:
    """In a process pool's worker, as on a pool thread (the pool sends the ``SystemExit`` back)."""
    runs = tmp_path / "runs"
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool, pytest.raises(SystemExit):
        vc.subtask(_exits_noting_each_run, executor=pool, max_retries=2).run(str(runs))
    assert runs.read_text().splitlines() == ["ran"]
