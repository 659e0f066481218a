"""Review h158: a mutation sweep of ``worker_pool.py`` (the bounded pools ``run_async`` calls
run on), driven on a ``WorkerPool`` directly.

Table (mutation: survived ``test_review_pool``, ``test_review_queues``, the exit tests and
``test_shutdown_async_work``?, killed by):

* P1 ``_Task.run`` catching ``Exception`` only: survived; ``..._base_exception_of_a_task_...``
* P2 an interrupted ``submit`` leaving its task queued: killed, pool interrupted-submit
* P3 no refusal after shutdown: killed, pool shut-down-refuses
* P4 ``waiting()`` re-entered by a waiting thread: survived; ``..._wait_inside_a_wait_...``
* P5 ``waiting()`` not giving its place back: killed, pool hands-its-place (and here)
* P6 ``_room`` without the waiters: killed, pool thread-started-beside
* P7 ``room < 0`` for ``room <= 0``: survived, equivalent (a thread woken without room finds
  none in ``_next_task`` and waits again)
* P8 no thread bound in ``_place_for_a_task``: killed, exit-with-daemon-calls
* P9 ``>=`` for ``>`` as a thread looks for work: killed, pool (and here)
* P10 ``_running`` not counted down: killed, pool
* P11 ``shutdown(cancel_futures=True)`` cancelling nothing: killed, pool
* P12 ``shutdown`` not waking idle threads: killed, pool (and ``..._ends_idle_threads_...``)
* P13 ``_start`` keeping a thread given up: killed, pool interrupted-submit
* P14 ``_work`` not checking it still counts: survived; ``..._start_was_given_up_...``
* P15 ``queued`` not set back on withdrawal: killed, pool Ctrl-C as a thread starts
* P16 threads being started not counted as coming: survived, equivalent (a thread more may
  start in a race, within the bound; it takes the next task or ends after ``idle``)
* P17 ``_work`` holding its last task: survived; ``..._idle_thread_holds_nothing_...``
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from garbage import full_collection
from interrupts import Interrupted

from vactor_cloud.worker_pool import WorkerPool

HANG = 30.0


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    pause = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError("the condition never held")


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_base_exception_of_a_task_reaches_its_future_unchanged(kind: type[BaseException]) -> None:
    """Mutation: ``_Task.run`` catching ``Exception`` only: a method's ``sys.exit()`` ended the
    pool's thread and left the call's future pending for ever (its caller hung)."""
    pool = WorkerPool(1, "h158-pool")

    def raises() -> None:
        raise kind("from the task")

    try:
        future = pool.submit(raises)
        error = future.exception(HANG)
        assert type(error) is kind
        assert pool.submit(lambda: "next").result(HANG) == "next"
    finally:
        pool.shutdown(wait=True)


def test_a_task_back_from_its_wait_counts_against_the_bound_again() -> None:
    """Mutation: ``waiting()`` not giving the place back at its end: each wait a task had ever
    made raised the bound by one for good (as many tasks at once as waits so far)."""
    pool = WorkerPool(1, "h158-pool")
    lock = threading.Lock()
    now = [0]
    most = [0]
    release = threading.Event()

    def waits_once() -> None:
        with pool.waiting():
            pass

    def counted() -> None:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        release.wait(HANG)
        with lock:
            now[0] -= 1

    try:
        pool.submit(waits_once).result(HANG)
        futures = [pool.submit(counted) for _ in range(3)]
        _wait_until(lambda: now[0] >= 1)
        threading.Event().wait(0.2)  # (room for a second task to start, were there a place)
        assert most[0] == 1
        release.set()
        for future in futures:
            future.result(HANG)
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_an_idle_thread_holds_nothing_of_the_task_it_ran() -> None:
    """Mutation: ``_work`` without ``del task``: a thread waiting for its next task held the last
    one's function, and what its arguments refer to (a large state), up to ``idle`` seconds."""

    class Payload:
        pass

    pool = WorkerPool(1, "h158-pool", idle=HANG)
    payload = Payload()
    kept = weakref.ref(payload)

    def task(held: Any = payload) -> int:
        return 1

    try:
        assert pool.submit(task).result(HANG) == 1
        del task, payload
        _wait_until(lambda: pool.running() == 0)
        full_collection()
        assert kept() is None
    finally:
        pool.shutdown(wait=True)


def test_shutdown_ends_idle_threads_at_once() -> None:
    """Mutation: ``shutdown`` without waking the idle threads: ``shutdown(wait=True)`` (and a
    runtime's close) waited out their ``idle`` seconds."""
    pool = WorkerPool(2, "h158-pool", idle=HANG)
    assert [pool.submit(lambda: 1).result(HANG) for _ in range(2)] == [1, 1]
    _wait_until(lambda: pool.running() == 0)
    closer = threading.Thread(target=pool.shutdown, daemon=True)
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "shutdown waits for idle threads to time out"
    assert pool.threads() == []


def test_no_more_threads_than_the_bound_while_tasks_queue() -> None:
    pool = WorkerPool(2, "h158-pool")
    release = threading.Event()
    try:
        futures = [pool.submit(lambda: release.wait(HANG)) for _ in range(6)]
        _wait_until(lambda: pool.running() == 2)
        threading.Event().wait(0.1)
        assert len(pool.threads()) <= 2 and pool.queued() == 4
        release.set()
        assert all(future.result(HANG) for future in futures)
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_a_wait_inside_a_wait_keeps_the_outer_wait_handing_its_place_on() -> None:
    """Mutation: ``waiting()`` taking a thread already waiting for its own: the inner wait's end
    took the thread out of the waiters while the outer wait went on, and the work queued behind
    it waited for that outer wait (a poster's ``commit_timeout``)."""
    pool = WorkerPool(1, "h158-pool")
    behind_ran = threading.Event()

    def waits_twice() -> bool:
        with pool.waiting():
            with pool.waiting():
                pass
            behind = pool.submit(behind_ran.set)  # (queued behind this task, which still waits)
            seen = behind_ran.wait(5)
        if seen:
            behind.result(HANG)
        return seen

    try:
        assert pool.submit(waits_twice).result(HANG) is True, "the work behind the outer wait never ran"
    finally:
        pool.shutdown(wait=True)


def test_a_thread_within_the_bound_stays_for_the_next_task() -> None:
    """Mutation: a thread ending when the pool has as many threads as its bound (``>=`` for
    ``>``): every thread ended after each task, and each ``run_async`` call started a thread."""
    pool = WorkerPool(1, "h158-pool", idle=HANG)
    try:
        assert pool.submit(lambda: 1).result(HANG) == 1
        first = pool.threads()
        _wait_until(lambda: pool.running() == 0)
        assert pool.submit(lambda: 2).result(HANG) == 2
        assert pool.threads() == first and len(first) == 1
    finally:
        pool.shutdown(wait=True)


def test_a_thread_whose_start_was_given_up_runs_nothing_even_if_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C lands as ``Thread.start`` returns, the thread started: ``submit`` gives the thread
    up (it never counts) and raises. Mutation: ``_work`` without its check that it still counts:
    that thread went on to take tasks, uncounted, and stayed as one more thread than the bound."""
    pool = WorkerPool(1, "h158-pool", idle=HANG)
    given_up = threading.Event()
    real_start = threading.Thread.start
    armed = [True]

    def started_then_interrupted(thread: threading.Thread) -> None:
        if armed and threading.current_thread() is threading.main_thread():
            armed.clear()
            work = thread._target  # type: ignore[attr-defined]

            def late() -> None:  # (reaches the pool's loop only once submit gave it up)
                given_up.wait(HANG)
                work()

            thread._target = late  # type: ignore[attr-defined]
            real_start(thread)
            raise Interrupted
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", started_then_interrupted)
    try:
        with pytest.raises(Interrupted):
            pool.submit(lambda: "lost")
        given_up.set()
        assert pool.submit(lambda: "next").result(HANG) == "next"
        _wait_until(lambda: len(pool.threads()) <= 1, 5)
    finally:
        given_up.set()
        pool.shutdown(wait=True)
