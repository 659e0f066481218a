"""Review h85: waits of the main thread that still blocked in one long wait, so that a signal
another thread took (the kernel may give SIGTERM or SIGINT to any thread of the process) had its
Python handler run only when the wait ended: the joins of shutdown and of the exit hook, the
timer runner's stop and a tick's fires, a read-only call waiting for read room, and sleeps.

Each test failed before the fix its docstring names. The pattern is
``test_review_own_runtime_waits``': the main thread waits, a signal goes to another thread,
and what the main thread waits for holds until the handler ran (at most ``HELD`` seconds).
Local stores under ``tmp_path``, in this process.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_review_own_runtime_waits import HANG, HELD, _answered, _handler_ran_while_waiting, signals

import vactor_cloud as vc
from vactor_cloud import runtime as runtime_module
from vactor_cloud.runtime import join_threads

pytestmark = signals


def _holding(held: list[bool]) -> threading.Thread:
    """A thread that holds until the handler ran (at most ``HELD``), then says in ``held``
    whether it ran; started."""
    _answered.clear()
    thread = threading.Thread(target=lambda: held.append(_answered.wait(HELD)), name="holding")
    thread.start()
    return thread


def test_join_threads_on_the_main_thread_lets_a_signal_handler_run() -> None:
    """``join_threads`` (shutdown's join of its pools' threads) on the main thread waited for
    its helper thread's joins in one ``Event.wait`` (up to its bound plus a second): a handler
    ran only once the threads ended."""
    held: list[bool] = []
    thread = _holding(held)
    _, seen = _handler_ran_while_waiting(
        "join_threads", lambda: join_threads([thread], time.monotonic() + HANG)
    )
    assert seen == [True]
    assert held == [True]


def test_join_threads_keeps_its_bound() -> None:
    """(Pin) Sliced, ``join_threads`` still returns by its bound, with the thread running."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("slices are the main thread's")
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(HANG,), daemon=True)
    thread.start()
    try:
        join_threads([thread], time.monotonic() + 0.3)
        assert thread.is_alive()
    finally:
        release.set()
    join_threads([thread], time.monotonic() + HANG)
    assert not thread.is_alive()


def test_the_exit_hooks_wait_for_the_programs_threads_lets_a_signal_handler_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At exit, vactor's hook waits for the program's non-daemon threads (up to 30 s) before it
    shuts the runtime down: in one ``Thread.join`` per thread, so a SIGTERM another thread took
    then had its handler run only when the thread ended or the 30 s passed."""
    vc.init(str(tmp_path))
    try:
        held: list[bool] = []
        thread = _holding(held)
        monkeypatch.setattr(threading, "enumerate", lambda: [threading.main_thread(), thread])
        _, seen = _handler_ran_while_waiting("_shutdown_at_exit", runtime_module._shutdown_at_exit)
        thread.join(HANG)
        assert seen == [True]
        assert held == [True]
    finally:
        vc.shutdown()


#: (the timer runner tests) set by the timer method: the runner stops
_stop = threading.Event()
#: what each fire of ``Slow.hold`` saw: whether the handler ran while it held
_fired: list[bool] = []


@vc.virtual_actor
class Slow:
    def arm(self) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("hold", after=0, key="k")

    def hold(self) -> None:
        _stop.set()
        _fired.append(_answered.wait(HELD))


def _armed(tmp_path: Path) -> None:
    vc.init(str(tmp_path))
    _stop.clear()
    _fired.clear()
    Slow.get_or_create("slow").arm.run()
    time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass


def test_a_timer_runners_stop_lets_a_signal_handler_run_while_fires_in_flight_finish(tmp_path: Path) -> None:
    """``run_timers`` (``vactor timers run``) stopping on the main thread waits for the fires
    in flight (a timer method may take long) in ``ThreadPoolExecutor.shutdown``'s joins, then
    for the lister and heartbeat threads in plain joins: the CLI's second SIGTERM ("stops at
    once"), taken by another thread, had its handler run only once the fires finished."""
    _armed(tmp_path)
    try:
        _, seen = _handler_ran_while_waiting(
            "run", lambda: vc.run_timers(poll=0.05, split="none", stop=_stop), unless="_dispatch"
        )
        assert seen == [True]
        assert _fired == [True]
    finally:
        vc.shutdown()


def test_a_tick_lets_a_signal_handler_run_while_its_fires_run(tmp_path: Path) -> None:
    """``fire_due_timers`` (``vactor timers tick``) on the main thread waited for its fires in
    ``ThreadPoolExecutor.map``'s one ``Future.result()`` each: a signal another thread took had
    its handler run only once the slow timer method returned."""
    _armed(tmp_path)
    try:
        report, seen = _handler_ran_while_waiting("_fire_slice", lambda: vc.fire_due_timers(split="none"))
        assert seen == [True]
        assert _fired == [True]
        assert report.fired == 1, report
    finally:
        vc.shutdown()


MB = 1024 * 1024
#: set as ``Large.held_size`` begins
_reading = threading.Event()


@vc.virtual_actor
class Large:
    def __init__(self) -> None:
        self.blob = bytes(MB)

    @vc.virtual_actor.readonly
    def held_size(self) -> bool:
        """Holds its read room until the handler ran (at most ``HELD``): whether it did."""
        _reading.set()
        return _answered.wait(HELD)

    @vc.virtual_actor.readonly
    def size(self) -> int:
        return len(self.blob)


def test_a_read_waiting_for_room_on_the_main_thread_lets_a_signal_handler_run(tmp_path: Path) -> None:
    """A read-only call on the main thread waiting for read room (``Settings.max_read_bytes``)
    that another read holds waited in one ``Condition.wait_for``, up to ``Settings.deadline``:
    a signal another thread took had its handler run only once the other read ended."""
    vc.init(str(tmp_path), settings=vc.Settings(storage="", max_read_bytes=MB + MB // 2))
    _reading.clear()
    _answered.clear()
    try:
        first, second = Large.get_or_create("first"), Large.get_or_create("second")
        holding = first.held_size.run_async()
        assert _reading.wait(HANG)
        size, seen = _handler_ran_while_waiting("taken", second.size.run)
        assert seen == [True]
        assert size == MB
        assert holding.result(HANG) is True
    finally:
        vc.shutdown()
