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

import functools
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_review_own_runtime_waits import (
    HANG,
    HELD,
    _answered,
    _handler_ran_while_waiting,
    _main_waits_in,
    signals,
)

import vactor_cloud as vc
from vactor_cloud import runtime as runtime_module
from vactor_cloud.runtime_shutdown import join_threads

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
        monkeypatch.setattr(runtime_module, "_exit_until", None)  # (the hook sets it: this process's)
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
            "run",
            lambda: vc.run_timers(poll=0.05, split="none", stop=_stop),
            unless="_dispatch",
            when=_stop.is_set,  # (set by the fire: the runner stops, then waits for it)
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


# -- sleeps ------------------------------------------------------------------------------------------
class _Stopped(Exception):
    """Raised by the signal's handler (``stop=True``), as Ctrl-C's ``KeyboardInterrupt`` is."""


def _handler_after_signal(
    function: str,
    call: Callable[[], Any],
    then: Callable[[], object] | None = None,
    stop: bool = False,
    unless: str | None = None,
) -> tuple[Any, float, set[str]]:
    """``call()`` on the main thread; once it waits in ``function`` (``_main_waits_in``: a
    sleep too; not in ``unless``), SIGUSR2 goes to another thread (which calls ``then()`` once
    the handler ran).
    The call's result (``stop``: the handler raises ``_Stopped``, which is the result), the
    seconds from the signal to its handler, and the names of the frames the handler
    interrupted (what the main thread was running then). For a sleep, which nothing holds:
    the handler ran within it or after."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread")
    sent: list[float] = []
    handled: list[float] = []
    interrupted: set[str] = set()

    ran = threading.Event()

    def on_signal(_signum: int, frame: Any) -> None:
        handled.append(time.monotonic())
        ran.set()
        while frame is not None:
            interrupted.add(frame.f_code.co_name)
            frame = frame.f_back
        if stop:
            raise _Stopped

    returned = threading.Event()

    def poke() -> None:
        ends = time.monotonic() + HANG
        while not _main_waits_in(function, unless):
            if returned.is_set() or time.monotonic() > ends:
                return
            time.sleep(0.001)
        sent.append(time.monotonic())
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
        if then is not None and ran.wait(HANG):
            then()

    previous = signal.signal(signal.SIGUSR2, on_signal)
    try:
        poker = threading.Thread(target=poke, daemon=True)
        poker.start()
        try:
            result = call()
        except _Stopped as stopped:
            result = stopped
        finally:
            returned.set()
        poker.join(HANG)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert len(sent) == len(handled) == 1, (sent, handled)
    return result, handled[0] - sent[0], interrupted


def test_vactor_compacts_wait_of_a_fresh_window_lets_a_signal_handler_run() -> None:
    """``vactor compact``'s second pass waits ``fresh_window`` (5 s by default) in one
    ``time.sleep`` on the main thread: Ctrl-C taken by another thread had its handler run (and
    the command stop, which it does at Ctrl-C) only once the sleep ended. (The generous bound:
    a sleep of ``HELD`` s, the handler within half of it; its exception ends the sleep.)"""
    from vactor_cloud.cli.compact import _compact_unproven_again
    from vactor_cloud.errors import VactorError

    def compact_one(_actor_id: str) -> Any:
        raise VactorError("not compacted again (the test's)")

    first = types.SimpleNamespace(actor_id="a", held_unproven=1)
    stopped, delay, _ = _handler_after_signal(
        "_compact_unproven_again", lambda: _compact_unproven_again([first], compact_one, HELD), stop=True
    )
    assert isinstance(stopped, _Stopped)
    assert delay < HELD / 2


@vc.virtual_actor
class Inbox:
    @vc.virtual_actor.on_event("ping")
    def ping(self, payload: Any) -> str:
        return f"pong {payload}"


def test_wait_for_event_on_the_main_thread_lets_a_signal_handler_run_between_its_polls(
    tmp_path: Path,
) -> None:
    """``wait_for_event`` polls with a backoff up to 1 s, in ``time.sleep`` on the main thread:
    a signal another thread took had its handler run only once a sleep ended, after it (the
    frames the handler interrupted held no wait). It runs within the sleep now."""
    vc.init(str(tmp_path))
    try:
        inbox = Inbox.get_or_create("inbox")
        answer, _, interrupted = _handler_after_signal(
            "_wait_here",
            lambda: inbox.wait_for_event("ping", timeout=HANG),
            then=lambda: vc.send_event("inbox", "ping", 1),
        )
        assert answer == "pong 1"
        assert "interruptible_wait" in interrupted, interrupted
    finally:
        vc.shutdown()


def test_a_sliced_sleep_lasts_as_long_as_asked() -> None:
    """(Pin) ``_sync.sleep`` on the main thread, in slices, sleeps no less than asked; 0 or
    less does not block."""
    from vactor_cloud import _sync

    started = time.monotonic()
    _sync.sleep(0.6)
    assert time.monotonic() - started >= 0.6
    _sync.sleep(0)
    _sync.sleep(-1.0)


def test_vc_get_of_a_plain_future_on_the_main_thread_lets_a_signal_handler_run() -> None:
    """``vc.get`` takes any ``concurrent.futures.Future`` (a list mixing ``run_async``'s with
    an executor's): it waited for one that is not an ``ActorFuture`` in the stdlib's one
    ``Condition.wait``, so a signal another thread took had its handler run only once the
    future settled. Both forms: one future, and a list."""
    import concurrent.futures

    for as_list in (False, True):
        plain: concurrent.futures.Future[bool] = concurrent.futures.Future()
        held: list[bool] = []
        _answered.clear()

        def settle(future: concurrent.futures.Future[bool] = plain, held: list[bool] = held) -> None:
            held.append(_answered.wait(HELD))
            future.set_result(held[-1])

        threading.Thread(target=settle, daemon=True).start()
        waited: Any = [plain] if as_list else plain
        got, seen = _handler_ran_while_waiting("get", functools.partial(vc.get, waited, timeout=HANG))
        assert seen == [True]
        assert held == [True]
        assert got == ([True] if as_list else True)


def _double(x: int) -> int:
    return 2 * x


@vc.virtual_actor
class Parent:
    def fan(self) -> list[int]:
        return vc.subtask(_double).map([1])


def test_a_subtasks_checkpoint_write_on_the_main_thread_lets_a_signal_handler_run(tmp_path: Path) -> None:
    """A method run on the main thread (``run()`` runs it there) launching sub-tasks waits for
    their checkpoints' writes in one ``Future.result()`` each, up to ``Settings.deadline``: on
    a store slow to answer, a signal another thread took had its handler run only once the
    write ended."""
    from vactor_cloud.testing.faults import HoldOne

    vc.init(str(tmp_path))
    try:
        runtime = vc.get_runtime()
        store = HoldOne(runtime.store, "put", "/tasks/", timeout=HANG)
        runtime.store = store
        parent = Parent.get_or_create("parent")
        store.hold()
        released: list[bool] = []

        def release_once_handled() -> None:
            released.append(_answered.wait(HELD))
            store.release.set()

        _answered.clear()
        threading.Thread(target=release_once_handled, daemon=True).start()
        result, seen = _handler_ran_while_waiting("_launch", parent.fan.run, when=store.held.is_set)
        assert seen == [True]
        assert released == [True]
        assert result == [2]
    finally:
        vc.shutdown()


def test_a_second_signal_while_an_interrupted_call_settles_has_its_handler_run() -> None:
    """A blocking call interrupted on the main thread (Ctrl-C) waits up to ``settle`` seconds
    for its cancelled coroutine to stop (``vc.delete_actor``'s: 5 s) in one lock acquire: a
    second signal another thread took (Ctrl-C again, SIGTERM) had its handler run only once
    the coroutine stopped or the 5 s passed."""
    import asyncio

    from vactor_cloud import _sync

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread")
    began, stopping = threading.Event(), threading.Event()
    held: list[bool] = []
    _answered.clear()

    async def work() -> None:
        began.set()
        try:
            await asyncio.sleep(HANG)
        except asyncio.CancelledError:
            stopping.set()
            held.append(await asyncio.to_thread(_answered.wait, HELD))  # (its finally's work)
            raise

    signals_seen: list[int] = []

    def on_signal(_signum: int, _frame: Any) -> None:
        signals_seen.append(1)
        if len(signals_seen) == 1:
            raise KeyboardInterrupt  # the first: Ctrl-C
        _answered.set()

    def poke() -> None:
        for ready in (began, stopping):
            ends = time.monotonic() + HANG
            while not (ready.is_set() and _main_waits_in("sync")) and time.monotonic() < ends:
                time.sleep(0.001)
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, on_signal)
    try:
        threading.Thread(target=poke, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            _sync.sync(work(), settle=HANG)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert len(signals_seen) == 2
    assert held == [True]


def test_a_signal_while_a_timed_out_call_stops_has_its_handler_run() -> None:
    """A blocking call past its timeout cancels its coroutine and waits up to 5 s for it to
    stop (its ``finally`` blocks), in one lock acquire: a signal another thread took had its
    handler run only once the coroutine stopped. (The coroutine holds 3 s at most here, under
    that bound, so that before the fix it ends by itself, unanswered.)"""
    import asyncio

    from vactor_cloud import _sync

    stopping = threading.Event()
    held: list[bool] = []

    async def work() -> None:
        try:
            await asyncio.sleep(HANG)
        except asyncio.CancelledError:
            stopping.set()
            held.append(await asyncio.to_thread(_answered.wait, 3.0))  # (its finally's work)
            raise

    def call() -> None:
        with pytest.raises(_sync.BridgeTimeout):
            _sync.sync(work(), timeout=0.05)

    _, seen = _handler_ran_while_waiting("sync", call, when=stopping.is_set)
    assert seen == [True]
    assert held == [True]


def test_call_outcome_on_the_main_thread_lets_a_signal_handler_run_between_its_retries(
    tmp_path: Path,
) -> None:
    """``handle.call_outcome`` retries reads that fail transiently until ``Settings.deadline``,
    sleeping up to 1.5 s between tries in ``time.sleep`` on the main thread: a signal another
    thread took had its handler run only once a sleep ended (the frames it interrupted held no
    wait). It runs within the sleep now. (Its store requests, sliced already, are not the wait
    looked at.)"""
    from vactor_cloud.errors import RetryableStorageError
    from vactor_cloud.testing.faults import HoldOne

    class Failing(HoldOne):
        """Every read fails transiently once ``failing`` is set."""

        failing = False

        async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
            if self.failing and operation in ("get", "head", "list"):
                raise RetryableStorageError(f"{key}: {operation} failed (injected)", key)
            return await super()._around(operation, key, run, **batch)

    vc.init(str(tmp_path))
    try:
        runtime = vc.get_runtime()
        store = Failing(runtime.store, "put", "(never held)")
        runtime.store = store
        handle = Inbox.get_or_create("outcomes")
        store.failing = True
        stopped, _, interrupted = _handler_after_signal(
            "call_outcome", lambda: handle.call_outcome("never-posted"), stop=True, unless="sync"
        )
        assert isinstance(stopped, _Stopped), stopped
        assert "interruptible_wait" in interrupted, interrupted
    finally:
        vc.shutdown()


def test_the_benchs_wait_for_its_cancelled_load_lets_a_second_signal_handler_run() -> None:
    """``vactor bench`` interrupted (SIGINT, or SIGTERM, which it maps to ``KeyboardInterrupt``)
    cancels the load running on the IO loop and waits for it to stop, up to 10 s, in one
    ``Event.wait`` on the main thread: a second signal another thread took had its handler run
    only once the load stopped."""
    import asyncio

    from vactor_cloud import _sync
    from vactor_cloud.cli.bench_harness import _cancel_and_wait

    began, stopping = threading.Event(), threading.Event()
    held: list[bool] = []

    async def load() -> None:
        began.set()
        try:
            await asyncio.sleep(HANG)
        except asyncio.CancelledError:
            stopping.set()
            held.append(await asyncio.to_thread(_answered.wait, HELD))  # (its finally's work)
            raise

    running = asyncio.run_coroutine_threadsafe(_started(load), _sync.get_loop()).result(HANG)
    assert began.wait(HANG)
    _, seen = _handler_ran_while_waiting(
        "_cancel_and_wait", lambda: _cancel_and_wait(running, HANG), when=stopping.is_set
    )
    assert seen == [True]
    assert held == [True]


async def _started(coro_fn: Callable[[], Any]) -> Any:
    """(On the IO loop) ``coro_fn()`` started as a task of that loop; the task."""
    import asyncio

    return asyncio.get_running_loop().create_task(coro_fn())


def test_the_benchs_wait_for_its_writer_processes_lets_a_signal_handler_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``vactor bench``'s processes rows wait for their writer processes' counts in one
    ``Queue.get`` (up to the row's duration plus 120 s), then for each process in one
    ``join`` (60 s): its SIGTERM, taken by another thread, had its handler (which stops the
    bench and cleans up) run only once the writers were done. (Writers on threads here, through
    a context of the test's: the waits are the bench's.)"""
    import multiprocessing
    import queue

    from vactor_cloud.cli import bench_harness

    started = threading.Event()
    held: list[bool] = []

    def writer(
        _target: Any, _actor_id: str, start: Any, _duration: float, results: Any, index: int, _ready: Any
    ) -> None:
        assert start.wait(HANG)
        started.set()
        held.append(_answered.wait(HELD))
        results.put((index, 1))

    class Context:
        Event = threading.Event
        Queue = queue.Queue

        @staticmethod
        def Process(target: Callable[..., None], args: tuple[Any, ...]) -> threading.Thread:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.exitcode = None  # type: ignore[attr-defined]  # (as a running process's)
            return thread

    monkeypatch.setattr(multiprocessing, "get_context", lambda _method: Context())
    monkeypatch.setattr(bench_harness, "_process_writer", writer)
    monkeypatch.setattr(bench_harness, "_wait_ready", lambda *_args: None)
    counts, seen = _handler_ran_while_waiting(
        "_processes",
        lambda: bench_harness._processes(None, "bench", 1, 0.1),  # type: ignore[arg-type]
        when=started.is_set,
    )
    assert seen == [True]
    assert held == [True]
    assert counts == [1]


def test_the_benchs_boto3_baseline_lets_a_signal_handler_run_while_it_joins_its_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``vactor bench``'s boto3 baseline row (S3 stores) joined its load threads on the main
    thread in one ``Thread.join`` each (up to the row's duration plus 60 s): its SIGTERM, taken
    by another thread, had its handler run only once they ended. (A client of the test's: the
    first conditional put holds until the handler ran.)"""
    import io
    import json

    import boto3

    from vactor_cloud.cli import bench_baselines, bench_harness

    putting = threading.Event()
    held: list[bool] = []

    class Client:
        def get_object(self, **_kwargs: Any) -> dict[str, Any]:
            return {"Body": io.BytesIO(json.dumps({"n": 0}).encode()), "ETag": '"e"'}

        def put_object(self, **kwargs: Any) -> None:
            if "IfMatch" in kwargs and not held:
                putting.set()
                held.append(_answered.wait(HELD))

        def delete_object(self, **_kwargs: Any) -> None:
            return None

    monkeypatch.setattr(boto3, "client", lambda *_args, **_kwargs: Client())
    target = bench_harness.Target("s3://bucket/prefix")
    _, seen = _handler_ran_while_waiting(
        "_boto3_cas_loop",
        lambda: bench_baselines._boto3_cas_loop(target, "raw", 1, 0.05),
        when=putting.is_set,
    )
    assert seen == [True]
    assert held == [True]


def test_the_benchs_timers_row_lets_a_signal_handler_run_while_its_child_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vactor bench``'s timers row runs ``python -m vactor_cloud.timer_bench`` and waited for
    it in ``subprocess.run``'s one ``select`` on its pipes (up to its lead, window and 900 s):
    its SIGTERM, taken by another thread, had its handler run only once the child ended. (A
    child of the test's in place of the interpreter: it says whether the handler ran while it
    held, at most about ``HELD`` s.)"""
    import json

    from vactor_cloud.cli import bench_harness

    flag = tmp_path / "answered"
    figures = {"lateness_p99_s": 0.1, "lateness_p50_s": 0.05, "requests_per_timer": 3, "doubled": 0}
    figures.update(unfired_when_runners_stopped=0, index_left=0, error_count=0, errors=[])
    # (its row: "fired" is 1 if the flag, made once the handler ran, came while it held)
    row_line = json.dumps({**figures, "fired": "FIRED"}).replace('"FIRED"', "$fired").replace('"', '\\"')
    child = tmp_path / "python"
    child.write_text(
        "#!/bin/sh\n"
        f"i=0; while [ ! -e '{flag}' ] && [ $i -lt {int(HELD * 100)} ]; do sleep 0.01; i=$((i+1)); done\n"
        f"if [ -e '{flag}' ]; then fired=1; else fired=0; fi\n"
        f'echo "{row_line}"\n'
    )
    child.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(child))

    def flag_once_handled() -> None:
        if _answered.wait(HANG):
            flag.touch()

    _answered.clear()
    threading.Thread(target=flag_once_handled, daemon=True).start()
    target = bench_harness.Target(f"file://{tmp_path / 'store'}")
    row, seen = _handler_ran_while_waiting(
        "_timers_row", lambda: bench_harness._timers_row(target, bench_harness.PROFILES["tiny"])
    )
    assert seen == [True]
    assert "1 fired" in row.note, row
