"""Hostile review of the caller's environment: how users actually call actors.

Threads and event loops sharing handles, handles and futures sent to other processes,
Ctrl-C at each moment of a call, awkward arguments and results, unusual method kinds.
Each test failed before its fix; waits are bounded, never timed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from actors import Total
from caller_workers import add_one, create_and_add
from interrupts import Interrupted
from test_review_workflow import Wallet, _step_failures_left

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: how long a test waits for what must finish at once before calling it a hang
HANG = 120.0


# -- handles and futures sent to other processes --------------------------------------------------


@pytest.mark.usefixtures("runtime_off")
def test_a_handle_sent_to_a_process_that_chose_no_store_says_to_call_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handle pickled into a spawned worker (a pool task's argument) that never called
    ``vc.init()``: the worker used its embedded default store, where the actor is not, and
    said only ``ActorNotFoundError`` (a ``get_or_create`` there made a second actor). It now
    says to call ``init`` with the sender's store, and works once the worker does."""
    monkeypatch.delenv("VACTOR_STORAGE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "worker-home"))
    vc.init(str(tmp_path / "store"))
    handle = Total.get_or_create("tally", 0)
    url = vc.get_runtime().store.describe()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        kind, message = pool.submit(add_one, handle).result(timeout=HANG)
    assert kind == "StorageNotChosenError", message
    assert f"vc.init({url!r})" in message
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=vc.init, initargs=(url,)) as pool:
        assert pool.submit(add_one, handle).result(timeout=HANG) == ("ok", 1)
    assert handle.add.run(1) == 2


def test_sending_an_actor_future_to_another_process_says_what_to_send_instead(
    actor_store: Any,
) -> None:
    """Pickling an ``ActorFuture`` (a pool task's argument) failed with "cannot pickle
    '_thread.RLock' object", naming nothing the user wrote."""
    future = Total.get_or_create("sent", 0).add.run_async(1)
    assert future.result(timeout=HANG) == 1
    with pytest.raises(TypeError, match=r"ActorFuture cannot be sent to another process.*fut\.result\(\)"):
        pickle.dumps(future)


@pytest.mark.usefixtures("runtime_off")
def test_a_decorated_class_is_a_pool_tasks_argument_like_any_class(tmp_path: Path) -> None:
    """``pool.submit(work, Counter, ...)``: pickle copied the wrapper ``@virtual_actor`` makes,
    whose decorated class it looked up by name and found to be the wrapper: "Can't pickle
    <class 'caller_workers.Tally'>: it's not the same object as caller_workers.Tally"."""
    assert pickle.loads(pickle.dumps(Total)) is Total
    vc.init(str(tmp_path / "store"))
    url = vc.get_runtime().store.describe()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=vc.init, initargs=(url,)) as pool:
        assert pool.submit(create_and_add, Total, "made-there").result(timeout=HANG) == 1
    assert vc.get_actor("made-there").add.run(1) == 2


@pytest.mark.usefixtures("runtime_off")
def test_an_actor_method_and_its_run_are_pool_task_arguments(tmp_path: Path) -> None:
    """``pool.map(handle.add.run, items)``: pickle took the method's function along by a name its
    module does not have ("Can't pickle <function Tally.add>: attribute lookup Tally.add on
    caller_workers failed"). The method is now looked up again where it runs, options kept."""
    vc.init(str(tmp_path / "store"))
    url = vc.get_runtime().store.describe()
    tally = Total.get_or_create("mapped", 0)
    keyed = tally.add.options(idempotency_key="once")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn, initializer=vc.init, initargs=(url,)) as pool:
        assert sorted(pool.map(tally.add.run, [1] * 6, timeout=HANG)) == [1, 2, 3, 4, 5, 6]
        assert list(pool.map(keyed.run, [100, 100], timeout=HANG)) == [106, 106]
    assert tally.add.run(1) == 107
    assert repr(pickle.loads(pickle.dumps(tally.add))) == "<actor method mapped.add>"


# -- unusual method kinds -----------------------------------------------------------------------


def test_a_generator_method_is_refused_when_the_class_is_decorated() -> None:
    """A writer method that ``yield``s: calling it ran none of its body, and the call failed
    only on its result ("cannot pickle 'generator' object"). Refused at decoration now."""
    with pytest.raises(vc.ActorDefinitionError, match=r"agen, gen are generators"):

        @vc.virtual_actor
        class Stream:
            def __init__(self) -> None:
                self.n = 0

            def gen(self) -> Any:
                self.n += 1
                yield self.n

            async def agen(self) -> Any:
                self.n += 1
                yield self.n


# -- arguments and results by value --------------------------------------------------------------


def _refuse_to_load() -> None:
    raise ValueError("this object cannot be read back")


class LoadsNever:
    """Pickles, but unpickling it raises (a class whose reduce names a constructor that fails)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


def test_an_argument_that_pickles_but_does_not_read_back_is_a_type_error_and_nothing_is_applied(
    actor_store: Any,
) -> None:
    """Such an argument failed the call with the argument's own ``ValueError``, as if the method
    had raised it (and ``max_retries`` ran the call into it again); a result alike already said
    ``TypeError: result cannot be passed by value``."""
    tally = Total.get_or_create("loads-never", 0)
    for method in (tally.add, tally.add.options(max_retries=2)):
        with pytest.raises(TypeError, match=r"argument cannot be passed by value: it pickles, but reading"):
            method.run(LoadsNever())
    assert [entry.step for entry in tally.history()] == [0]
    assert tally.add.run(1) == 1


# -- futures: callbacks --------------------------------------------------------------------------

#: what Gated.slow waits for before it returns
GATE = threading.Event()


@vc.virtual_actor
class Gated:
    def __init__(self) -> None:
        self.n = 0

    def slow(self) -> int:
        GATE.wait(HANG)
        self.n += 1
        return self.n

    def add(self) -> int:
        self.n += 1
        return self.n


def test_a_done_callback_calling_the_actor_it_waited_for_does_not_wait_for_itself(actor_store: Any) -> None:
    """``fut.add_done_callback(lambda f: h.add.run())``: the callback ran on the thread that
    applied the call, which still held the actor; its call waited for that thread, itself, and
    every later call of the actor waited behind it (about 100 s, then ``ActorBusyError``)."""
    gated = Gated.get_or_create("callback")
    GATE.clear()
    future = gated.slow.run_async()
    got: list[Any] = []
    called = threading.Event()

    def call_again(done: Any) -> None:
        try:
            got.append((done.result(), gated.add.run()))
        except BaseException as exc:  # the test looks at it
            got.append(exc)
        called.set()

    future.add_done_callback(call_again)
    GATE.set()
    assert called.wait(HANG / 4), "the callback's call waited for the thread that ran the callback"
    assert got == [(1, 2)]
    assert gated.add.run() == 3


def test_calling_a_private_method_through_a_handle_says_it_is_private(actor_store: Any) -> None:
    """``handle._helper.run()`` said only ``AttributeError: _helper``, as if the class had no such
    method."""

    @vc.virtual_actor
    class Helped:
        def __init__(self) -> None:
            self.n = 0

        def _helper(self) -> int:
            return 1

        def public(self) -> int:
            return self._helper()

    helped = Helped.get_or_create("helped")
    assert helped.public.run() == 1
    with pytest.raises(AttributeError, match=r"'_helper': a method whose name starts with '_' is private"):
        helped._helper.run()


# -- calls made by code that interrupts a call: signal handlers ----------------------------------


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_after_a_step_landed_says_the_call_may_be_applied_and_a_keyed_retry_applies_it_once(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """Ctrl-C while a call's step put was answered but the answer not yet read: the caller got a
    bare ``KeyboardInterrupt``, nothing saying the call had landed (it had), nor what to do."""
    store_spec.init()
    runtime = vc.get_runtime()
    # the step put lands; its answer is held (on its way back when Ctrl-C comes)
    store = HoldOne(runtime.store, "put", "/steps/", answer_first=True, timeout=HANG)
    runtime.store = store
    tally = Total.get_or_create("interrupted", 0)
    store.hold()
    ctrl_c(store.held)
    try:
        with pytest.raises(Interrupted) as interrupted:
            tally.add.options(idempotency_key="charge-17").run(10)
    finally:
        store.release.set()
    notes = " ".join(getattr(interrupted.value, "__notes__", []))
    assert "interrupted the commit of 1 call(s) to actor 'interrupted' (add)" in notes, notes
    assert "may or may not have been applied" in notes
    assert "a retry with the same idempotency key applies each at most once" in notes
    assert tally.add.options(idempotency_key="charge-17").run(10) == 10  # the first result
    assert tally.add.run(1) == 11  # applied once


@pytest.mark.usefixtures("runtime_off")
def test_a_signal_handler_calling_the_actor_its_thread_is_committing_is_refused_at_once(
    store_spec: StoreSpec,
) -> None:
    """A SIGTERM handler saving progress (``signal.signal(SIGTERM, lambda *_: h.save.run())``) ran
    while its thread waited for that actor's step put: its call waited for the thread it
    interrupted, itself, for max(deadline, commit_timeout) (120 s), then said ``ActorBusyError``
    "held by another thread"; the interrupted call waited as long. Now refused at once."""
    if not hasattr(signal, "pthread_kill") or threading.current_thread() is not threading.main_thread():
        pytest.skip("needs signals delivered to the main thread")
    store_spec.init(settings=vc.Settings(commit_timeout=10.0))  # before the fix: a 10 s wait, not 120
    runtime = vc.get_runtime()
    store = HoldOne(runtime.store, "put", "/steps/", timeout=HANG)
    runtime.store = store
    tally = Total.get_or_create("signalled", 0)
    got: list[Any] = []

    def on_signal(signum: int, frame: object) -> None:
        try:
            got.append(tally.add.run(100))
        except BaseException as exc:  # the test looks at it
            got.append(exc)
        store.release.set()

    def send_signal() -> None:
        if store.held.wait(HANG):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, on_signal)
    try:
        threading.Thread(target=send_signal, daemon=True).start()
        store.hold()
        assert tally.add.run(1) == 1
    finally:
        store.release.set()
        signal.signal(signal.SIGUSR2, previous)
    assert len(got) == 1 and isinstance(got[0], vc.ReentrantCallError), got
    assert "was made on the thread that is committing" in str(got[0])
    assert tally.add.run(1) == 2  # the refused call was not applied


@pytest.mark.usefixtures("runtime_off")
def test_a_done_callback_of_a_future_settled_on_the_io_loop_may_call_actors(store_spec: StoreSpec) -> None:
    """``workflow.resume``'s future is settled on vactor's IO loop (once the failure record is
    deleted): a done callback calling an actor there failed with "run() was called on
    vactor_cloud's IO loop; use await" (and any blocking callback stalled every request of
    the process). Such callbacks now run on a thread of their own."""
    store_spec.init()
    runtime = vc.get_runtime()
    # (the re-run deletes the record as it runs, then again once committed: that one is held)
    store = HoldOne(runtime.store, "delete", "/failed", skip=1, timeout=HANG)
    runtime.store = store
    _step_failures_left[:] = [1, 1, 1, 1]  # a first run and its three Ray-default retries: none
    wallet = Wallet.get_or_create("w")
    with pytest.raises(ConnectionError):
        wallet.deposit.run(5)
    _step_failures_left.clear()
    store.hold()
    got: list[Any] = []
    called = threading.Event()

    def read_balance(done: Any) -> None:
        try:
            got.append((done.result(), wallet.view.run()))
        except BaseException as exc:  # the test looks at it
            got.append(exc)
        called.set()

    try:
        resumed = workflow.resume("w")
        assert store.held.wait(HANG)  # the re-run committed; its record's delete waits
        # ... and the thread that applied it let the actor go (it asked for the delete's answer)
        core = runtime.core("w")
        for _ in range(int(HANG / 0.01)):
            if core._drainer is None:
                break
            time.sleep(0.01)
        resumed.add_done_callback(read_balance)
    finally:
        store.release.set()
    assert called.wait(HANG / 4)
    assert got == [([5], 5)]


# -- read-only calls never wait behind writes ------------------------------------------------------


@pytest.mark.usefixtures("runtime_off")
def test_an_awaited_or_bounded_read_only_call_does_not_wait_for_a_pool_filled_by_slow_writes(
    store_spec: StoreSpec,
) -> None:
    """``await reader.get.run_async()`` while ``run_async`` writes of other actors filled the
    pool (``Settings.max_workers``) with slow methods: the read waited for a pool thread, that is
    behind the writes (a blocking ``.result()`` runs it on its own thread; an ``await``, or a
    wait with a timeout, did not)."""
    store_spec.init(settings=vc.Settings(max_workers=2))
    writers = [Gated.get_or_create(f"busy-{n}") for n in range(2)]
    reader = Total.get_or_create("read-while-busy", 7)
    GATE.clear()
    try:
        busy = [writer.slow.run_async() for writer in writers]

        async def read() -> Any:
            return await asyncio.wait_for(reader.read_total.run_async(), HANG / 4)

        assert asyncio.run(read()) == 7
        # A bounded wait (fut.result(timeout), vc.get(..., timeout=)) did the same.
        assert reader.read_total.run_async().result(HANG / 4) == 7
        assert vc.get([reader.read_total.run_async()], timeout=HANG / 4) == [7]
        assert not any(future.done() for future in busy)  # the writes still held the pool
    finally:
        GATE.set()
    assert [future.result(HANG) for future in busy] == [1, 1]
