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
