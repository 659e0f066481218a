"""Review h82: ``own_runtime()`` (the ``vactor`` command's ``main()`` called in a program) once
its scope has ended, and waits of the main thread that still blocked in one long wait.

Each test failed before the fix its docstring names. Everything runs in this process on local
stores under ``tmp_path`` (the signal tests on the lane's store).
"""

from __future__ import annotations

import asyncio
import concurrent.futures._base as futures
import linecache
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.runtime import Runtime, get_runtime, own_runtime
from vactor_cloud.runtime_scope import carry_runtime
from vactor_cloud.subtask_executors import Runner

#: a hang bound, never the thing proven
HANG = 60.0
#: how long what the main thread waits for holds, waiting for the signal's handler to run
HELD = 10.0
#: set by the signal's handler (the signal tests)
_answered = threading.Event()


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


#: (test_work_in_flight_as_the_scope_closes_...) let go once the scope's runtime begins to close
_closing = threading.Event()


@vc.virtual_actor
class Late:
    """Its method, still running when the scope's runtime closes, calls another actor then."""

    def call_other(self) -> int:
        assert _closing.wait(HANG)
        return Counter.get_or_create("late-other").bump.run()


# -- own_runtime() after its scope ended -----------------------------------------------------------
def test_code_still_in_an_ended_scopes_context_starts_no_runtime_for_it(tmp_path: Path) -> None:
    """What carries the scope's context past its end (a thread started by ``carry_runtime``
    inside, a task on the IO loop created inside, a callback thread of a future made inside)
    and then calls ``get_runtime()``: that started a fresh runtime on the scope's store that
    nothing ever closed (the scope had closed its own already), a runtime leaked per such call
    and per ``main()``. It fails now with ``RuntimeShutdownError``, as a call the runtime's
    close refused does; ``init()`` there too."""
    vc.init(str(tmp_path / "a"))
    try:
        with own_runtime():
            vc.init(str(tmp_path / "b"))
            inside = get_runtime()
            later_get = carry_runtime(get_runtime)
            later_init = carry_runtime(vc.init)
        assert inside.closed
        with pytest.raises(vc.RuntimeShutdownError, match="own_runtime"):
            later_get()
        with pytest.raises(vc.RuntimeShutdownError, match="own_runtime"):
            later_init(str(tmp_path / "c"))
        assert not get_runtime().closed  # the process's runtime: untouched
    finally:
        vc.shutdown()


def test_work_in_flight_as_the_scope_closes_starts_no_runtime_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``run_async`` method still running as the scope ends (its close waits for it) calling
    another actor: the scope had let go of its runtime first, so that call started a fresh
    runtime on the scope's store, made the call there, and the runtime was never closed. It
    fails with ``RuntimeShutdownError`` now."""
    started: list[Runtime] = []
    closing = Runtime.close
    original_init = Runtime.__init__

    def close(self: Runtime, *args: Any, **kwargs: Any) -> None:
        _closing.set()
        closing(self, *args, **kwargs)

    def init(self: Runtime, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(Runtime, "close", close)
    monkeypatch.setattr(Runtime, "__init__", init)
    _closing.clear()
    vc.init(str(tmp_path / "a"))
    try:
        with own_runtime():
            vc.init(str(tmp_path / "b"))
            Counter.get_or_create("late-other")
            future = Late.get_or_create("late").call_other.run_async()
            before = len(started)
        assert isinstance(future.exception(HANG), vc.RuntimeShutdownError)
        assert len(started) == before  # no runtime started for the call
    finally:
        vc.shutdown()


# -- main-thread waits that still blocked in one long wait -----------------------------------------
#: the waits _main_waits_in looks through: (module, function)
_WAITS = {
    (threading.__file__, "wait"),
    (threading.__file__, "wait_for"),
    (threading.__file__, "join"),
    (threading.__file__, "_wait_for_tstate_lock"),
    (futures.__file__, "wait"),
    (futures.__file__, "result"),
    (futures.__file__, "exception"),
    (_sync.__file__, "interruptible_wait"),
    (selectors.__file__, "select"),
}


def _main_waits_in(function: str, unless: str | None = None) -> bool:
    """Whether the main thread blocks in a wait of ``threading``, ``concurrent.futures`` or
    ``selectors`` (an event's, a condition's, a thread's join, a future's result, a pipe's), a
    lock's ``acquire`` or ``time.sleep`` that ``function`` made (itself, or a helper up to five
    frames below it; through ``_sync.interruptible_wait`` or not), and not one that ``unless``
    made (a wait of another part of ``function``). Not a wait of ``threading`` itself
    (``Thread.start``'s)."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    if frame is None:
        return False
    # (a lock's acquire has no frame: interruptible_wait's is the top one, or the caller's;
    # nor has time.sleep: the top frame is the one that calls it)
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    sleeping = "time.sleep(" in line or ".acquire(" in line
    if (frame.f_code.co_filename, frame.f_code.co_name) not in _WAITS and not sleeping:
        return False
    while frame is not None and (frame.f_code.co_filename, frame.f_code.co_name) in _WAITS:
        frame = frame.f_back
    if frame is None or frame.f_code.co_filename == threading.__file__:
        return False
    callers = []
    while frame is not None and len(callers) < 6:
        callers.append(frame.f_code.co_name)
        frame = frame.f_back
    return function in callers and unless not in callers


def _handler_ran_while_waiting(
    function: str,
    call: Callable[[], Any],
    unless: str | None = None,
    when: Callable[[], bool] = lambda: True,
) -> tuple[Any, list[bool]]:
    """``call()`` on the main thread; once the main thread waits in ``function`` (not in
    ``unless``: ``_main_waits_in``) and ``when()``, SIGUSR2 goes to another thread (as the
    kernel may give a process's signal). What the main thread waits for holds until the
    handler ran (``_answered``, at most ``HELD``). The call's result, and per handler run
    whether it ran while the main thread still waited (``_main_waits_in``)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread")
    _answered.clear()
    seen: list[bool] = []

    def on_signal(_signum: int, _frame: Any) -> None:
        seen.append(True)
        _answered.set()

    returned = threading.Event()

    def poke() -> None:
        ends = time.monotonic() + HANG
        while not (when() and _main_waits_in(function, unless)):
            if returned.is_set() or time.monotonic() > ends:
                return  # (never waited there: no signal, and the test says so)
            time.sleep(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, on_signal)
    try:
        poker = threading.Thread(target=poke, daemon=True)
        poker.start()
        try:
            result = call()
        finally:
            returned.set()
        poker.join(HANG)
        return result, seen
    finally:
        signal.signal(signal.SIGUSR2, previous)
        _answered.set()


@vc.virtual_actor
class Awaiting:
    async def hold(self) -> bool:
        """Whether the handler ran while this method held its caller."""
        return await asyncio.to_thread(_answered.wait, HELD)


@vc.virtual_actor
class SlowBorn:
    def __init__(self) -> None:
        _born.set()
        self.answered = _answered.wait(HELD)

    @vc.virtual_actor.readonly
    def was_answered(self) -> bool:
        return self.answered


#: set as SlowBorn's __init__ begins
_born = threading.Event()

signals = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")


@signals
def test_a_signal_is_handled_while_the_main_thread_waits_for_an_async_method_on_its_helper(
    tmp_path: Path,
) -> None:
    """``run()`` of an async method from inside ``async def`` on the main thread: the method
    runs on a helper thread (``asyncio.run`` cannot nest) while the main thread waited for it in
    one ``Event.wait()``, with no end: a signal another thread took had its handler (and
    Ctrl-C's ``KeyboardInterrupt``) run only when the method returned."""
    vc.init(str(tmp_path))
    try:
        holder = Awaiting.get_or_create("awaiting")

        async def from_async() -> bool:
            return holder.hold.run()

        answered, seen = _handler_ran_while_waiting("_run_coroutine", lambda: asyncio.run(from_async()))
        assert seen == [True]
        assert answered
    finally:
        vc.shutdown()


@signals
def test_a_signal_is_handled_while_the_main_thread_waits_for_another_threads_creation(
    tmp_path: Path,
) -> None:
    """``get_or_create`` of an actor another thread is creating waits for that creation (its
    ``__init__`` may take long) in one ``Event.wait()``: a signal another thread took had its
    handler run only when the ``__init__`` ended."""
    vc.init(str(tmp_path))
    _born.clear()
    _answered.clear()
    try:
        first = threading.Thread(target=lambda: SlowBorn.get_or_create("slow"), daemon=True)
        first.start()
        assert _born.wait(HANG)
        handle, seen = _handler_ran_while_waiting("turn", lambda: SlowBorn.get_or_create("slow"))
        first.join(HANG)
        assert seen == [True]
        assert handle.was_answered.run()
    finally:
        vc.shutdown()


def _held_child(_item: int) -> bool:
    """A sub-task child: whether the handler ran while it held its caller."""
    return _answered.wait(HELD)


@signals
def test_a_signal_is_handled_while_the_main_thread_waits_for_subtask_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vc.subtask(fn).map(...)`` on the main thread, every child started on the pool (or on a
    process executor): the caller waited for the first to finish in one
    ``concurrent.futures.wait`` with no end, so a signal another thread took had its handler run
    only when a child ended."""
    # (as when the pool's threads took every child before the caller could run one itself)
    monkeypatch.setattr(Runner, "_run_one_here", staticmethod(lambda _fn, _pending: False))
    vc.init(str(tmp_path))
    try:
        with ThreadPoolExecutor(1) as pool:
            task = vc.subtask(_held_child, executor=pool)
            answered, seen = _handler_ran_while_waiting("_settled", lambda: task.map([1]))
        assert seen == [True]
        assert answered == [True]
    finally:
        vc.shutdown()


@vc.virtual_actor
class Holder:
    def __init__(self) -> None:
        self.answered = False

    def hold(self) -> bool:
        """Whether the handler ran while this method held its runtime's shutdown."""
        _born.set()
        self.answered = _answered.wait(HELD)
        return self.answered


@signals
def test_a_signal_is_handled_while_the_main_thread_shuts_down_a_runtime_with_work_in_flight(
    tmp_path: Path,
) -> None:
    """``vc.shutdown()`` (the exit hook too) on the main thread waits for the runtime's work in
    flight (a ``run_async`` method), up to the close's timeout, in one ``Condition.wait``: a
    signal another thread took had its handler run only when the work ended or the timeout
    passed."""
    vc.init(str(tmp_path))
    _born.clear()
    _answered.clear()
    try:
        future = Holder.get_or_create("holder").hold.run_async()
        assert _born.wait(HANG)
        _, seen = _handler_ran_while_waiting("wait_done", vc.shutdown)
        assert seen == [True]
        assert future.result(HANG) is True
    finally:
        vc.shutdown()


# -- pins of _sync.interruptible_wait --------------------------------------------------------------
def test_interruptible_wait_on_the_main_thread_keeps_its_timeout() -> None:
    """(Pin) Waited in slices, a wait still ends no sooner than its timeout, and a timeout of
    0 (or less) is one look that does not block."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("slices are the main thread's")
    never = threading.Event()
    started = time.monotonic()
    assert _sync.interruptible_wait(never.wait, 0.6, forever=None) is False
    assert time.monotonic() - started >= 0.6
    lock = threading.Lock()
    lock.acquire()
    assert _sync.interruptible_wait(lock.acquire, 0) is False
    assert _sync.interruptible_wait(lock.acquire, -1.0) is False
    lock.release()
    assert _sync.interruptible_wait(lock.acquire, 0) is True


@signals
def test_ctrl_c_taken_by_another_thread_stops_a_sync_bridge_call_on_the_main_thread() -> None:
    """(Pin) ``KeyboardInterrupt`` raised between the slices of the sync bridge's wait takes
    its ``except BaseException`` path: the coroutine on the IO loop is cancelled with it."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread")
    began, cancelled = threading.Event(), threading.Event()

    async def long_work() -> None:
        began.set()
        try:
            await asyncio.sleep(HANG)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    def poke() -> None:
        ends = time.monotonic() + HANG
        while not (began.is_set() and _main_waits_in("sync")) and time.monotonic() < ends:
            time.sleep(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, interrupt)
    try:
        threading.Thread(target=poke, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            _sync.sync(long_work(), settle=HANG)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert cancelled.is_set()


def test_a_scopes_shutdown_finishes_the_close_an_interrupt_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close of the scope's runtime cut short by Ctrl-C (or the bench's SIGTERM) is left for
    the next shutdown to finish, as the process's runtime's is. The scope's next shutdown
    finished only the runtime then in use: the cut-short one was finished by the exit hook,
    after the command went on, and its HEAD moves landed in the store ``vactor bench`` had
    just removed (test_bench_removes_its_prefix_on_sigterm, 1 in 16 under load)."""
    with own_runtime():
        vc.init(str(tmp_path / "store"))
        first = get_runtime()
        real_close = Runtime.close
        cut: list[Runtime] = []

        def close_cut_short_once(self: Runtime, *args: Any, **kwargs: Any) -> None:
            if self is first and not cut:
                cut.append(self)
                raise KeyboardInterrupt  # before anything of it closed
            real_close(self, *args, **kwargs)

        monkeypatch.setattr(Runtime, "close", close_cut_short_once)
        with pytest.raises(KeyboardInterrupt):
            vc.shutdown()
        assert cut == [first] and not first.finished_closing
        vc.shutdown()
        assert first.finished_closing
