"""A ``call_outcome`` ask remembered while this process holds the actor, and the holder dies
or its store stalls before it gives the actor up (review h209).

Another process's post waits (its poster gone). A process drains a call of its own (its step
put held: sent or not) and asks of that post: pending, and the ask is remembered for the
holder to queue its fold as it gives the actor up (``Holder._asked_held``,
``_fold_asked_while_held``). The holder never gives it up:

- SIGKILLed: the post waits for a later ask (or a contended call), as any post a dead process
  was to fold; the next process's ask folds it, its answer is pending then the outcome, never
  ``LookupError``; nothing is applied twice.
- its store stalled, every request past ``Settings.deadline``: the drain's call fails, the
  queued fold fails at the deadline too; the exit hook and ``shutdown()`` end within their
  bounds; the next runtime's ask folds the post once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import pytest
from actors import OrderLog
from store_helpers import retune
from test_combining import HANG, wait_for_no_posts
from test_posting import outcome_once_folded
from test_review_actor_cache import runtime_threads
from test_review_h181_one_shot_asks import run_in_a_process
from test_review_h181_stalled_ask_fold import closed_as
from test_review_h189_exit_budget import _store_with_a_post_nobody_folds

import vactor_cloud as vc
from vactor_cloud.errors import CallPendingError
from vactor_cloud.settings import Settings
from vactor_cloud.testing.faults import FaultConfig, FaultyStore, HoldOne
from vactor_cloud.testing.lanes import StoreSpec

#: A process holding ``a`` with the drain of ``add("me/1")`` (its step put held: argv[4]
#: "unsent", before it is sent; "landed", sent and its answer held), which asks of the call
#: argv[3] (another process's post), prints the answer and what its exit hook waits for, and
#: is SIGKILLed before the drain ends.
_HOLD_ASK_AND_DIE = """
import json, os, signal, sys
import vactor_cloud as vc
from actors import OrderLog
from vactor_cloud.errors import CallPendingError
from vactor_cloud.testing.faults import HoldOne
url, options, call_id, where = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
vc.init(url, **options)
runtime = vc.get_runtime()
store = HoldOne(runtime.store, "put", "/steps/", answer_first=where == "landed", timeout=120.0)
runtime.store = store
log = OrderLog.get_or_create("a")
store.hold()
future = log.add.run_async("me/1")
assert store.held.wait(60), "the drain never reached its step put"
try:
    print(repr(vc.get_actor("a").call_outcome(call_id)))
except CallPendingError:
    print("pending")
print(runtime.asked_folds())
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""

#: what the actor applied, by where the dead holder's step put was
_APPLIED = {"unsent": ["me/0", "other/1"], "landed": ["me/0", "me/1", "other/1"]}


@pytest.mark.vactor_lanes("local", "moto")
@pytest.mark.parametrize("where", sorted(_APPLIED))
def test_a_holder_killed_with_an_ask_remembered_leaves_the_post_to_the_next_ask(
    shared: StoreSpec, where: str
) -> None:
    call_id = _store_with_a_post_nobody_folds(shared)
    child = run_in_a_process(shared, _HOLD_ASK_AND_DIE, call_id, where)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr)
    assert child.stdout.splitlines() == ["pending", "['a']"], (child.stdout, child.stderr)
    shared.init()
    handle = OrderLog.get_or_create("a")
    # (pending until this ask's fold ran; never LookupError: the post waits)
    assert outcome_once_folded(handle, call_id) == len(_APPLIED[where])
    assert handle.applied.run() == _APPLIED[where]  # applied once
    assert handle.add.run("me/2") == len(_APPLIED[where]) + 1  # the next call proceeds
    assert handle.applied.run() == [*_APPLIED[where], "me/2"]
    assert wait_for_no_posts("a") == []


class StalledStore(FaultyStore):
    """Once ``stall`` is set, every request waits until ``release`` is set (``HANG`` at most)
    before it is sent; ``stalled`` is set as the first one waits."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, FaultConfig())
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.release = threading.Event()

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if self.stall.is_set():
            self.stalled.set()
            until = time.monotonic() + HANG
            while not self.release.is_set() and time.monotonic() < until:
                await asyncio.sleep(0.005)
        return await super()._around(operation, key, run, batch=batch)


@pytest.mark.vactor_lanes("memory", "local", "moto")
@pytest.mark.parametrize("closer", ["exit hook", "shutdown"])
@pytest.mark.usefixtures("runtime_off")
def test_a_holder_whose_store_stalls_with_an_ask_remembered_ends_within_its_bounds(
    store_spec: StoreSpec, closer: str
) -> None:
    before = runtime_threads()
    call_id = _store_with_a_post_nobody_folds(store_spec)
    store_spec.init(settings=Settings(storage=store_spec.url, fresh_window=300.0, combine_after=1))
    runtime = vc.get_runtime()
    stalled = StalledStore(runtime.store)
    held = HoldOne(stalled, "put", "/steps/", timeout=2 * HANG)
    runtime.store = held  # (before the actor's core exists: its log uses it)
    log = OrderLog.get_or_create("a")
    # The drain's step put and the fold's requests stall: bounded by a deadline short enough
    # for the test (a request takes it as it is sent); not the ask's, whose requests go through.
    retune(deadline=3.0)
    held.hold()
    future = log.add.run_async("me/1")
    assert held.held.wait(HANG), "the drain never reached its step put"
    retune(deadline=Settings.deadline)
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(call_id)
    assert runtime.asked_folds() == ["a"]
    retune(deadline=3.0)
    # From here every request stalls past the deadline: the drain's put, the fold's requests.
    stalled.stall.set()
    held.release.set()
    try:
        assert future.exception(HANG) is not None  # type: ignore[attr-defined]  # (in doubt: it may apply)
        assert closed_as(runtime, closer, 2.0), f"the {closer} did not end within {HANG} s (4 s in all)"
        assert runtime.asked_folds() == [], "the fold left to the holder was never queued"
        assert set(runtime_threads()) <= set(before), (before, runtime_threads())
    finally:
        stalled.release.set()
    vc.shutdown()
    store_spec.init(settings=Settings(storage=store_spec.url))
    handle = OrderLog.get_or_create("a")
    outcome = outcome_once_folded(handle, call_id)
    applied = handle.applied.run()
    assert applied in (["me/0", "other/1"], ["me/0", "me/1", "other/1"]), applied  # once each
    assert outcome == len(applied)
