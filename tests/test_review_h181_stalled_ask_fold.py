"""A stalled store request under ``call_outcome``'s background fold (review h181).

A call posted by another sender waits in the inbox, nobody folding it; a new process asks
(``Poster._pending_elsewhere``), which queues the background fold
(``ActorCore._fold_given_up_posts_soon``). That fold's lease take or step put gets no answer
(``HoldOne``: held before it is sent, or sent and its answer held). Meanwhile the asks must
still answer (pending, or the outcome once the step landed), not wait for the stalled request,
nor does a read-only call of the actor (the seed's "read-only calls never wait behind
writes"); once the store answers the post applies once. A shutdown while it stalls ends (its timeout
cancels the request), leaves no thread of the runtime running and no "Task exception was never
retrieved", and the next runtime's asks fold the post once. So does the exit hook's wait
for it (``Runtime.finish_queued_calls``), at its bound, and ``shutdown()``'s
(``close(asked_folds=True)``), within the close's one timeout.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from actors import OrderLog
from garbage import full_collection
from test_combining import HANG, foreign_box, post_adds
from test_posting import outcome_once_folded
from test_review_actor_cache import runtime_threads
from test_review_h180_outcome_elsewhere import _as_a_new_process

import vactor_cloud as vc
from vactor_cloud.actor_runtime import Runtime
from vactor_cloud.errors import CallPendingError
from vactor_cloud.settings import Settings
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: the fold's request that stalls: its lease take (a PUT held before it is sent), its step put
#: (held before it is sent; or sent and landed, its answer held)
_STALLS = {"lease_take": ("/lease", False), "step_put": ("/steps/", False), "step_answer": ("/steps/", True)}


def _a_post_nobody_folds(spec: StoreSpec, stall: str) -> tuple[HoldOne, vc.ActorHandle[OrderLog], str]:
    """Actor ``a`` (one step of ours), and another sender's post waiting; the store armed to
    stall the next request ``stall`` names. The store, our handle, the post's call id."""
    # (A deadline past the tests' hang bound: the stalled request ends by a close or a release
    # only, and a close that waited for it unbounded hangs, not ends at the deadline.)
    spec.init(settings=Settings(storage=spec.url, fresh_window=300.0, combine_after=1, deadline=3 * HANG))
    runtime = vc.get_runtime()
    fragment, answer_first = _STALLS[stall]
    store = HoldOne(runtime.store, "put", fragment, answer_first=answer_first, timeout=2 * HANG)
    runtime.store = store
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    (call_id,) = post_adds(foreign_box("a"), ["other/1"])
    store.hold()
    return store, handle, call_id


def _asks_answer_while_it_stalls(store: HoldOne, handle: vc.ActorHandle[OrderLog], call_id: str) -> None:
    """The first ask queues the fold, whose request stalls; asks made while it stalls answer
    (pending, or the outcome of the step that landed), none waits for it."""
    with pytest.raises(CallPendingError):
        handle.call_outcome(call_id)
    assert store.held.wait(HANG), "the ask's fold never sent the request held"
    for _ in range(3):
        with contextlib.suppress(CallPendingError):
            assert handle.call_outcome(call_id) == 2  # (its step landed: step_answer)
    assert not store.ended.is_set(), "an ask waited for the stalled request"


def closed_as(runtime: Runtime, closer: str, seconds: float) -> bool:
    """Close ``runtime`` on a thread as ``closer`` says: as the exit hook does ("exit hook":
    wait for the queued work, a fold among it, ``seconds`` at most, then close within
    ``seconds``), or as ``shutdown()`` does ("shutdown": a close that waits for the queued
    folds first, ``2 * seconds`` in all). Whether it ended within ``HANG``."""
    closed = threading.Event()

    def close() -> None:
        if closer == "exit hook":
            runtime.finish_queued_calls(time.monotonic() + seconds)
            runtime.close(seconds)
        else:
            runtime.close(2 * seconds, asked_folds=True)
        closed.set()

    closing = threading.Thread(target=close)
    closing.start()
    closing.join(HANG)
    return closed.is_set()


@pytest.mark.parametrize("stall", sorted(_STALLS))
def test_asks_answer_while_the_ask_fold_stalls_and_the_post_applies_once_after(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, stall: str
) -> None:
    store, handle, call_id = _a_post_nobody_folds(store_spec, stall)
    _as_a_new_process(monkeypatch)
    _asks_answer_while_it_stalls(store, handle, call_id)
    try:  # a read-only call does not wait behind the stalled fold, which holds the actor
        applied = handle.applied.run_async().result(timeout=HANG / 2)
    finally:
        stalled = not store.ended.is_set()
        store.release.set()  # the store answers again
    assert stalled, "the read-only call waited for the stalled request"
    assert applied[0] == "me/0"
    assert outcome_once_folded(handle, call_id) == 2
    assert handle.applied.run() == ["me/0", "other/1"]  # applied once


@pytest.mark.parametrize("closer", ["exit hook", "shutdown"])
@pytest.mark.parametrize("stall", sorted(_STALLS))
def test_a_shutdown_while_the_ask_fold_stalls_ends_and_the_next_runtime_folds_once(
    store_spec: StoreSpec,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stall: str,
    closer: str,
) -> None:
    before = runtime_threads()
    store, handle, call_id = _a_post_nobody_folds(store_spec, stall)
    _as_a_new_process(monkeypatch)
    _asks_answer_while_it_stalls(store, handle, call_id)
    began = time.monotonic()
    assert closed_as(vc.get_runtime(), closer, 1.0), f"the {closer} did not end within {HANG} s (2 s in all)"
    print(f"{closer}'s wait and close (2 s in all), the fold stalled, took {time.monotonic() - began:.2f} s")
    assert store.ended.is_set()  # (the stalled request was cancelled, not left waiting)
    assert set(runtime_threads()) <= set(before), (before, runtime_threads())
    store.release.set()
    vc.shutdown()
    _as_a_new_process(monkeypatch)  # (the next process: a new runtime)
    store_spec.init(settings=Settings(storage=store_spec.url))
    handle = OrderLog.get_or_create("a")
    assert outcome_once_folded(handle, call_id) == 2
    assert handle.applied.run() == ["me/0", "other/1"]  # applied once
    full_collection()  # (a cancelled task's exception is logged when the task is freed)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
