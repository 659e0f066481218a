"""Loose ends of the h51 review: a handle pickled after shutdown, waiting for an event of an
actor not created yet, the S3 transport's threads after shutdown, cancelling a timer that is
not there, and a class body gone from storage. Each test failed on the code it was written
against; waits are bounded, never timed."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from actors import Shelf, Total
from caller_workers import add_one

import vactor_cloud as vc
from vactor_cloud import _sync, definition, events, runtime
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.core import ActorCore
from vactor_cloud.step_attempt import CLASS_BODY_RECHECK
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import CANCEL

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: how long a test waits for what must finish at once before calling it a hang
HANG = 120.0
#: no background HEAD move or inbox listing inside a window whose requests are counted, and
#: caches that stay fresh however slow the machine
_QUIET = vc.Settings(storage="", head_interval=3600.0, fresh_window=600.0, inbox_interval=3600.0)


def _init_quiet(spec: StoreSpec) -> None:
    spec.init(settings=replace(_QUIET, storage=spec.url))


@pytest.fixture
def quiet(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    """``actor_store`` whose request counts are exact (see ``_QUIET``)."""
    _init_quiet(store_spec)
    try:
        yield store_spec
    finally:
        vc.shutdown()


# -- 1. a handle pickled after shutdown -----------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_handle_pickled_after_shutdown_still_names_its_store_to_a_process_that_chose_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handle pickled while no runtime ran (``vc.shutdown()`` done, the next call not made
    yet) carried no store: a spawned worker that never called ``vc.init()`` looked for its
    actor in its embedded default store and said ``ActorNotFoundError``. It carries the store
    the process uses again on its next call, so the worker says to call ``init`` with it."""
    monkeypatch.delenv("VACTOR_STORAGE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "worker-home"))
    vc.init(str(tmp_path / "store"))
    handle = Total.get_or_create("after-shutdown", 0)
    url = vc.get_runtime().store.describe()
    vc.shutdown()
    assert runtime.current_runtime() is None  # (no runtime until the next call)
    assert pickle.loads(pickle.dumps(handle))._origin == url
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        kind, message = pool.submit(add_one, handle).result(timeout=HANG)
    assert kind == "StorageNotChosenError", message
    assert f"vc.init({url!r})" in message
    assert handle.add.run(1) == 1  # this process goes on with the same store


# -- 2. waiting for an event of an actor not created yet -------------------------------------------
@vc.virtual_actor
class Order:
    def __init__(self) -> None:
        self.paid = 0

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, payload: dict[str, int]) -> int:
        self.paid += payload["amount"]
        return self.paid


@pytest.mark.parametrize("twin", ["sync", "async"])
def test_wait_for_event_on_an_actor_not_created_yet_waits_for_its_creation(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str
) -> None:
    """An event may be sent to an actor that does not exist yet (``create=True``: applied at
    its first commit), but ``wait_for_event`` on it raised ``ActorNotFoundError`` at once, so
    a waiter started before the creation had to poll for the actor itself. It now waits, as
    for an event not applied yet, until the creation applies the event."""
    actor_id = f"order-{twin}"
    vc.send_event(actor_id, "paid", {"amount": 30}, event_id="evt-1", create=True)
    looked = threading.Event()  # the waiter found no actor at least once
    polls = {"_process_here": events._process_here, "_process": events._process}

    def found_none_here(*args: Any) -> Any:
        try:
            return polls["_process_here"](*args)
        except vc.ActorNotFoundError:
            looked.set()
            raise

    async def found_none(*args: Any) -> Any:
        try:
            return await polls["_process"](*args)
        except vc.ActorNotFoundError:
            looked.set()
            raise

    monkeypatch.setattr(events, "_process_here", found_none_here)
    monkeypatch.setattr(events, "_process", found_none)
    results: list[Any] = []

    def wait() -> None:
        try:
            if twin == "sync":
                results.append(events.wait_for_event(actor_id, "paid", HANG, event_id="evt-1"))
            else:
                coro = events.wait_for_event_async(actor_id, "paid", HANG, event_id="evt-1")
                results.append(asyncio.run(coro))
        except BaseException as exc:  # reported to the test thread
            results.append(exc)
        finally:
            looked.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert looked.wait(HANG)
    assert not results, results  # (before: ActorNotFoundError, at once)
    Order.get_or_create(actor_id)
    waiter.join(HANG)
    assert not waiter.is_alive()
    assert results == [30]


def test_wait_for_event_on_a_missing_actor_times_out_saying_the_actor_does_not_exist(
    actor_store: StoreSpec,
) -> None:
    """Its timeout says why nothing came: no such actor (yet), and what creates it."""
    with pytest.raises(TimeoutError, match=r"the actor does not exist \(yet\).*create=True.*get_or_create"):
        events.wait_for_event("nobody", "paid", 0.05)


# -- 3. the S3 store's request threads after shutdown ----------------------------------------------
def _s3_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("vactor-s3-")}


@pytest.mark.vactor_lanes("moto")
def test_after_shutdown_returns_no_request_thread_of_the_s3_store_runs(store_spec: StoreSpec) -> None:
    """``vc.shutdown()`` promises that none of the runtime's threads runs once it returns, but
    the S3 store's request threads were only told to end (``close()`` queued their stop and
    returned): they ended just after. ``close()`` now waits for them (bounded)."""
    before = _s3_threads()
    store_spec.init()
    try:
        tallies = [Total.get_or_create(f"threads-{i}", 0) for i in range(6)]
        assert vc.get([t.add.run_async(1) for t in tallies for _ in range(3)], timeout=HANG) is not None
        assert _s3_threads() - before, "the calls ran on no request thread of the store"
    finally:
        vc.shutdown()
    assert not _s3_threads() - before  # counted at once: no wait for them to end


# -- 4. cancelling a timer that is not there ---------------------------------------------------------
_gate = threading.Event()
_entered = threading.Event()


@vc.virtual_actor
class Planner:
    def __init__(self) -> None:
        self.n = 0

    def bump(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def hold(self) -> str:
        here = sys.modules[__name__]  # (the class body is pickled by value; events are not)
        here._entered.set()
        here._gate.wait(HANG)
        return "held"


def test_cancelling_a_timer_that_is_not_there_reads_and_commits_nothing(quiet: StoreSpec) -> None:
    """``cancel_timer`` of a key with no pending timer wrote a step (recording a cancel that
    did nothing): a PUT, and a step in the history, for nothing. It is now one GET of the next
    step (the read that finds the newest step, as a warm read's), and no commit."""
    planner = Planner.get_or_create("no-such-timer")
    planner.bump.options(at=time.time() + 3600, timer_key="real").run()
    step = vc.get_runtime().core("no-such-timer").record.step  # type: ignore[union-attr]
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        assert planner.cancel_timer("imaginary") is False
    assert [(r.kind, r.key.rsplit("/", 1)[-1]) for r in trace.requests] == [("get", f"{step + 1:020d}")]
    assert [t["key"] for t in planner.timers()] == ["real"]
    assert planner.cancel_timer("real") is True  # a pending one is cancelled by a commit, as before
    assert planner.timers() == []
    assert len(planner.history()) == step + 2


def test_a_cancel_made_after_a_schedule_still_queued_in_this_process_applies_after_it(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin of the read-only check's limit (it fails with that check not skipped when this
    process has calls of the actor queued): a thread schedules a timer with ``run_async`` (queued
    behind a running method) and then cancels it. The schedule is not in the newest step yet,
    but it applies first (calls of one thread apply in order): the cancel must commit after it
    and find it, not read that no such timer exists."""
    planner = Planner.get_or_create("queued-schedule")
    _gate.clear()
    _entered.clear()
    held = planner.hold.run_async()
    assert _entered.wait(HANG), "the holding call never started"
    reached = threading.Event()  # the cancel was queued (or, wrongly, returned without a commit)
    enqueue = ActorCore._enqueue

    def noting_cancels(core: ActorCore, call: Any) -> None:
        enqueue(core, call)
        if call.method == CANCEL:
            reached.set()

    monkeypatch.setattr(ActorCore, "_enqueue", noting_cancels)
    outcome: list[Any] = []

    def schedule_then_cancel() -> None:
        try:
            planner.bump.options(at=time.time() + 3600, timer_key="queued").run_async()
            outcome.append(planner.cancel_timer("queued"))
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)
        finally:
            reached.set()

    thread = threading.Thread(target=schedule_then_cancel, daemon=True)
    thread.start()
    try:
        assert reached.wait(HANG)
    finally:
        _gate.set()
    assert held.result(HANG) == "held"
    thread.join(HANG)
    assert outcome == [True]
    assert planner.timers() == []


# -- 5. a class body gone from storage --------------------------------------------------------------
def _reopen(spec: StoreSpec) -> None:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    _init_quiet(spec)


def test_a_class_body_gone_from_storage_is_stored_again_by_a_process_that_has_the_class(
    quiet: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step names its class body (``class/<sha>``), which a process without the class loads.
    Once that object was gone (a lifecycle rule, a copy of the steps alone), processes with the
    class went on committing steps that name it and never stored it again: the actor stayed
    unloadable elsewhere for good. A process's first commit to an actor now checks that the body
    it names is there (one HEAD, off the commit's path) and stores it again if not, and so does
    a commit an hour after its last check; its warm commits stay one PUT."""
    keeper = Shelf.get_or_create("keeper")
    assert keeper.add.run() == 1
    log = vc.get_runtime().log("keeper")
    sha = _sync.sync(log.read_step(1)).class_ref.sha  # type: ignore[union-attr]
    key = log.class_key(sha)
    _sync.sync(vc.get_runtime().store.delete(key))
    _reopen(quiet)
    assert keeper.add.run() == 2  # this process's first commit to the actor
    for work in list(vc.get_runtime()._background):  # (the check, off the commit's path)
        work.result(HANG)
    assert _sync.sync(vc.get_runtime().store.head(key)) is not None
    step = vc.get_runtime().core("keeper").record.step  # type: ignore[union-attr]
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        assert keeper.add.run() == 3
    assert [(r.kind, r.key.rsplit("/", 1)[-1]) for r in trace.requests] == [("put", f"{step + 1:020d}")]
    # Deleted again under a writer that runs on (a lifecycle rule): an hour on, it checks again.
    _sync.sync(vc.get_runtime().store.delete(key))
    checked = vc.get_runtime().core("keeper")._stored_classes
    checked[sha] -= CLASS_BODY_RECHECK + 1
    assert keeper.add.run() == 4
    for work in list(vc.get_runtime()._background):
        work.result(HANG)
    assert _sync.sync(vc.get_runtime().store.head(key)) is not None
    _reopen(quiet)
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)  # a process without the class
    assert vc.get_actor("keeper").add.run() == 5


def test_a_handle_passed_on_unused_names_the_store_it_came_with(actor_store: StoreSpec) -> None:
    """A handle received from another process and sent on before its first use here (a task
    that hands it to a pool of its own) named this process's store, not the one its actor is
    in: the next process's ``StorageNotChosenError`` pointed at the wrong store."""
    handle = pickle.loads(pickle.dumps(Total.get_or_create("passed-on", 0)))
    handle._origin = "file:///where/the/actor/is"  # as unpickled from a process with that store
    assert pickle.loads(pickle.dumps(handle))._origin == "file:///where/the/actor/is"
    handle._origin = None  # (used here: it is this process's store's actor)
    assert pickle.loads(pickle.dumps(handle))._origin == vc.get_runtime().store.describe()


def test_a_cancel_while_a_post_of_this_process_is_pending_goes_through_a_commit(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin of the read-only check's other limit (it fails with the pending-post check removed):
    a call of this process posted under contention whose caller gave up (``CallPendingError``)
    may still apply, and before this process's later calls; it may schedule the timer. The
    newest step has none yet, but the cancel must apply after that post (the commit path
    waits for it), not answer False from the step."""
    planner = Planner.get_or_create("pending-post")
    runtime = vc.get_runtime()
    monkeypatch.setitem(runtime.pending_posts, "pending-post", object())  # (what is in it: not read)
    sent: list[str] = []

    def commit(actor_id: str, call: Any) -> None:  # the commit path, stubbed: it says "cancelled"
        sent.append(call.method)
        call.future.set_result(True)

    monkeypatch.setattr(runtime, "call", commit)
    assert planner.cancel_timer("maybe-scheduled") is True
    assert sent == [CANCEL]
