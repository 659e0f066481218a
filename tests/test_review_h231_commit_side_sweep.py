"""Review h231: a mutation sweep of the commit-side modules: ``holding.py`` (queueing, waiting,
draining, the lease holder's rounds of serving, the fold of a given-up post ``call_outcome``
queues), ``head_flusher.py``, ``reentrancy.py``, ``step_outcomes.py``, ``post_cursor.py`` and
``core.py``.

Ninety hand-made mutations, one at a time, each run on the memory and local lanes against the
modules that cover the function (a small set first; if it survived, a wider one). "killed"
names the module whose test failed; "h231" a test written here because the mutation survived;
"(outside its set)" a test of the suite that kills it, found after the sweep. No survivor was a
defect: each new test passes on the code as it is and fails with its mutation.

==== ========================================================== ======== =================================
id   mutation                                                   survived killed by / why
==== ========================================================== ======== =================================
H01  call(): an interrupted call not taken back                 no       pool
H02  submit once shutdown began: no drain spawned               yes      equivalent (below)
H03  submit interrupted: no drain spawned for the others        no       pool
H04  _take_back: a settled call noted anyway                    yes      h231 (settled, then Ctrl-C)
H05  _take_back: a never-queued call left unsettled             yes      h231 (Ctrl-C before queued)
H06  _take_back: the note added to an Exception too             yes      equivalent (below)
H07  _enqueue: a cancelled queued call stays in the queue       no       queues
H08  _enqueue: a serving holder not woken                       yes      equivalent: latency (below)
H09  help: a signal handler's call on the committing thread     no       callers
H10  help: a same-thread cycle not refused                      no       h138_execution_model
H11  help: the waiting writer not listed                        yes      h231 (cycle via a future)
H12  _help: an idle actor with an empty queue claimed           yes      equivalent (below)
H15  _help: a cross-thread cycle not refused                    no       user_edges
H16  _help: a Ctrl-C'd queued call not withdrawn                no       h138_execution_model
H19  _drain_claimed: interrupted, the actor kept held           no       pool
H20  _withdraw: the withdrawn call stays queued                 yes      h231 (withdrawn, listed)
H21  _drain_from_pool: the queued flag never cleared            no       pool
H23  _release: writes left not reported (queue dropped)         no       queues
H24  _release: waiters not woken                                no       user_edges
H27  _release: asks left to the holder never queued             no       h201_asked_while_held
H29  _claim_batch: one call past max_batch                      no       h138_execution_model
H30  _claim_batch: a cancelled call committed                   no       pool
H31  _fail_unsettled: never fails an unsettled call             no       execution_model
H32  _drain_batches: an interrupted batch left unsettled        no       pool
H33  _drain_batches: a caller drains every later call too       yes      h231 (run() stops at its call)
H35  _serve_round: serves while a drain holds                   no       h198_ask_fold_window
H36  _serve_round: an evicted holder serves on                  no       actor_cache
H40  _serve_round: a failed listing settles the asks            yes      h231 (failed listing)
H41  _serve_round: a fold committing nothing taken for progress no       h198_ask_fold_window
H42  _serve_round: a fold's asks never settled                  no       h201_asked_while_held
H43  _serve_round: an empty listing's asks not settled          no       h201_asked_while_held
H45  _serve_round: an error keeps the lease                     no       folding_round_errors
H48  _queue_asked_fold: folds though another process does       no       h179_given_up_fold
H50  _queue_asked_fold: exit hook not told to wait              no       h201_asked_while_held
H51  _queue_asked_fold: a queued round not counted as holding   yes      h231 (round queued)
H52  _queue_asked_fold: an ask while held not remembered        no       h201_asked_while_held
H54  _fold_asked_while_held: queued while held again            yes      equivalent (below)
H56  _asks_settled: later asks settled too                      yes      h231 (ask after a listing)
H58  _fold_given_up_posts: queued mark never cleared            no       h179_given_up_fold
H59  _fold_given_up_posts: folds while a drain holds            no       h201_asked_while_held
H62  _fold_unless_...: no revalidate when the inbox is empty    no       h182_ask_fold_costs
H65  _fold_unless_...: lease kept for serving rounds            no       h198_ask_fold_window
H66  _fold_unless_...: an error keeps the lease                 yes      h231 (fold task defect)
H67  _fold_unless_...: our post forgotten though not applied    yes      h231 (next call behind)
H68  _release_unless_posts_wait: gives up, posts waiting        no       h178_orphaned_post
H69  _left_if_cancelled: cancelled call stays queued            no       queues
F01  mark: a pending move not moved to a newer step             no       h160_runtime_sweep
F05  stop: periodic task not cancelled                          yes      h231 (flusher stopped; below)
F06  _run: running never cleared (no later periodic flush)      no       h160_runtime_sweep
F07  _due: a missing HEAD waits for the delay                   no       h160_runtime_sweep
F08  _due: lag one step more                                    no       h160_runtime_sweep
F10  _flush: a forced flush moves only the due                  yes      h231 (HEAD at shutdown)
F11  _flush: cancelled moves lost                               yes      queues (outside its set)
F12  _flush: the core's HEAD not updated                        yes      h231 (HEAD at shutdown)
F13  _flush: the core's HEAD may move backward                  yes      h231 (a move gave up)
C01  idle: a core with waiters counted idle                     yes      equivalent (below)
C03  _accept: the cache moves backward                          yes      h231 (older step offered)
C04  _accept: a stale live instance kept                        yes      h231 (instance let go)
C07  _invalidate: live instance kept                            yes      h231 (instance let go)
C09  ensure_loaded: a failure not passed to the next waiter     yes      class_bodies (outside its set)
C11  _load: a lagging HEAD not marked                           yes      h231 (cold load, HEAD behind)
C14  revalidate: watermark never read                           no       warm_after_delete
C15  create: a step skipped after a tombstone                   no       core_small_gaps
C17  create: another class's winner adopted                     yes      h231 (another class won)
C18  create: a newer tombstone not created after                yes      h231 (another tombstone)
C19  read: a cancelled read runs                                yes      h231 (read run once)
C21  read: a tombstone read as a state                          no       warm_after_delete
C22  flush_head: HEAD rewritten at its own step                 yes      equivalent (below)
C25  ensure_exists: a cached tombstone not probed past          no       core_small_gaps
R01  writers_on_this_thread: a read counted as a writer         no       h138_execution_model
R03  run_detached: current_call kept                            no       hangs
R05  run_detached: caller's context vars kept                   yes      h231 (sub-task context)
R06  holds_actor: thread not marked                             no       h138_execution_model
R07  WaitingInsideWriter: writer listed twice                   no       user_edges
R08  WaitingInsideWriter: a read listed as a writer             yes      h231 (read waits, no cycle)
R10  refuse_wait_cycle: never finds a cycle                     no       user_edges
R12  refuse_wait_cycle: True though nothing withdrawn           no       user_edges
R14  unblock: edges never removed                               no       hangs
S01  encode: an exception that will not load, recorded as is    yes      combining_edges (outside its set)
S02  encode: an unpicklable result's error recorded as ok       yes      h231 (result does not pickle)
S04  legacy: no size limit                                      no       posting
S08  decode: empty bytes malformed                              no       h185_outcome_edges
S09  parse: a repeated call id accepted                         no       outcomes
S10  parse: trailing bytes accepted                             no       outcomes
P01  applied: the cursor's own seq not applied                  no       posting
P02  advance: senders dropped at half the TTL                   yes      h231 (SENDER_TTL)
P04  advance: the cursor may move backward                      no       fold_mutations
P06  advance: the floor may move backward                       no       fold_mutations
P07  advance: an emptied cursor kept                            no       fold_mutations
P08  expired: after the whole TTL                               yes      h231 (half-TTL expiry)
==== ========================================================== ======== =================================

Equivalent, or not killed:

* H02: the "drain queued" flag is set only while a drain task is queued or runs; a drain the
  pool refused or shutdown cancelled is cleared with the queued calls failed
  (``Runtime._fail_queued``, at the refusal and twice in ``_close``), so a submit once shutdown
  began that finds it set has its call failed by that close all the same.
* H06: every ``Exception`` that ``help`` raises for a call another thread took already carries
  the note (``_help`` adds it to whatever ends its wait); its refusals raise only for a call they
  could not withdraw, which this thread's own hold of the actor keeps in the queue.
* H08: a round of serving waits between listings 10 ms at most (100 ms after a fold that
  committed nothing, ``damaged_pause``), then gives the actor up to our callers: latency only.
* H12: with the queue empty and no drainer, a future not done is of a call settled the instant
  after (a release follows its batch's outcomes): claiming drains nothing and releases.
* H54: ``_queue_asked_fold`` makes the same check under the lock and remembers the ask again
  (``_asked_held``); refused (another process folds), the asks are settled a release earlier.
* C01: with no drainer and an empty queue, a waiter is a thread a release just woke, its call
  settled: evicting the core then strands nobody.
* C22: ``advance_head`` returns at once, with no request, for a HEAD at or past the step.
  (``ActorCore.flush_head`` is called by tests only: left alone.)
* F05: ``stop()`` then waits for the periodic task, asleep for ``head_interval``, until
  shutdown's own timeout ends it (a shutdown took 30 s in one test, no test failed): the test
  of the flusher's stop bounds that wait at 20 s, with an interval of an hour.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import math
import threading
import time
import weakref
from typing import Any

import pytest
from actors import OrderLog
from combining_workers import commit_behind_its_back
from garbage import full_collection
from interrupts import Interrupted, InterruptOnce
from test_combining import foreign_box, init_switchable, post_adds, wait_for
from test_review_cancellation import HANG, Gate, _entered, _hold_actor, _opened
from test_review_h178_orphaned_post import _FOREIGN, ask_until_known
from test_review_h179_given_up_fold import asked_and_held
from test_review_h201_asked_while_held import _asked_while_held, _serving_paused_before_a_listing
from test_review_queues import Slow
from test_review_user_edges import Crossing

import vactor_cloud as vc
from vactor_cloud import _sync, holding
from vactor_cloud.call_queue import CallQueue
from vactor_cloud.commit_notes import started_elsewhere_note
from vactor_cloud.core import ActorCore
from vactor_cloud.dedup import Outcome
from vactor_cloud.definition import lookup_local_class
from vactor_cloud.errors import CallPendingError, StorageError
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import ClassRef, Head, StepRecord
from vactor_cloud.post_cursor import POST_CURSOR, SENDER_TTL, advance_cursor, expired
from vactor_cloud.post_objects import Post
from vactor_cloud.step_outcomes import decode_outcomes, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")


# -- holding: a run() interrupted (Ctrl-C) around its wait -------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_just_after_a_run_settled_adds_no_note_that_another_thread_has_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in ``run()`` once its call has its outcome (applied on this thread), before
    ``run()`` returns: the interrupt reaches the caller as it is, with no note that another
    thread took the call (none did: its outcome is known)."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    settled_then_interrupted = InterruptOnce(holding.Holder.help, after=True)
    monkeypatch.setattr(holding.Holder, "help", settled_then_interrupted)
    with pytest.raises(Interrupted) as info:
        gate.add.run("applied")
    assert settled_then_interrupted.fired
    assert started_elsewhere_note("g") not in getattr(info.value, "__notes__", []), info.value.__notes__
    assert gate.applied.run() == ["applied"]


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_before_a_run_was_queued_fails_it_with_no_note_that_another_thread_has_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in ``run()`` as its call is being queued, before it is in the queue: the call
    is failed with the interrupt (nobody will run it) and the interrupt says nothing of another
    thread; the actor's next call is applied, the interrupted one never."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    not_queued = InterruptOnce(CallQueue.append)
    monkeypatch.setattr(CallQueue, "append", not_queued)
    with pytest.raises(Interrupted) as info:
        gate.add.run("lost")
    assert not_queued.fired
    assert started_elsewhere_note("g") not in getattr(info.value, "__notes__", []), info.value.__notes__
    assert gate.add.run_async("after").result(HANG) == 1 and gate.applied.run() == ["after"]


@pytest.mark.usefixtures("runtime_off")
def test_a_call_withdrawn_behind_another_threads_writer_is_no_longer_listed_as_queued(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in a ``run()`` queued behind another thread's writer: the call is withdrawn
    (failed, never applied), so it leaves the queue at once: ``queued_calls()`` (what the exit
    says it abandons) does not list it while that writer still holds the actor."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    holder = _hold_actor(gate, "held")
    interrupted_wait = InterruptOnce(holding.interruptible_wait)
    monkeypatch.setattr(holding, "interruptible_wait", interrupted_wait)
    try:
        with pytest.raises(Interrupted):
            gate.add.run("lost")
        assert interrupted_wait.fired
        assert vc.get_runtime().queued_calls() == []
    finally:
        _opened["held"].set()
    holder.join(HANG)
    assert not holder.is_alive()
    assert gate.applied.run() == ["held"]


# -- reentrancy: a cycle through a future waited for inside a writer, run by the waiter -----------
@pytest.mark.usefixtures("runtime_off")
def test_a_cycle_through_a_future_the_writers_thread_runs_itself_is_named_as_on_one_thread(
    store_spec: StoreSpec,
) -> None:
    """A's writer waits (``result()``) for B's ``run_async`` call; the pool's one thread is busy,
    so the waiting thread runs B's call itself, and B calls A: a cycle on one thread, refused at
    once and named ``a -> b -> a`` (the wait lists A's writer as waiting on this thread)."""
    store_spec.init(settings=vc.Settings(storage="", max_workers=1))
    gate = Gate.get_or_create("busy")
    Crossing.get_or_create("x-a")
    Crossing.get_or_create("x-b")
    _entered["pool"], _opened["pool"] = threading.Event(), threading.Event()
    held = gate.hold.run_async("pool")
    try:
        assert _entered["pool"].wait(HANG), "the pool never ran the gate"
        with pytest.raises(vc.ReentrantCallError) as info:
            vc.get_actor("x-a").through_result.run("x-b")
    finally:
        _opened["pool"].set()
    assert held.result(HANG) == 1
    message = str(info.value)
    assert "(a call cycle x-a -> x-b -> x-a)" in message and "same thread" in message, message
    assert vc.get_actor("x-a").incr.run() == 1  # nothing of the cycle applied


# -- core: the cached step only moves forward ------------------------------------------------------
def test_an_older_step_offered_to_the_cache_leaves_it_at_the_newer_one(actor_store: StoreSpec) -> None:
    """A probe that answers late (begun before a commit of another thread) offers the cache an
    older step than the one it holds: it is not taken, and the next write builds on the newest."""
    gate = Gate.get_or_create("g")
    gate.add.run("one")
    gate.add.run("two")
    core = vc.get_runtime().core("g")
    assert core.record is not None and core.record.step == 2
    older = _sync.sync(core.log.find_step(1))
    core._accept(older, time.monotonic())
    assert core.record.step == 2
    assert gate.add.run("three") == 3 and core.record.step == 3


@pytest.mark.parametrize("how", ["committed_elsewhere", "forgotten"])
def test_the_instance_of_our_commit_is_let_go_once_the_cache_moves_past_it_or_drops_it(
    actor_store: StoreSpec, how: str
) -> None:
    """Our commit keeps its live instance for the next one; once the cache takes a newer step
    another writer committed, or drops its step (a compaction's ``forget``), that instance is of
    no use (a commit builds only on the instance of its base step) and is let go, not held until
    our next commit."""
    gate = Gate.get_or_create("g")
    gate.add.run("one")
    core = vc.get_runtime().core("g")
    assert core._live is not None and core._live[0] == 1
    ours = weakref.ref(core._live[1])
    if how == "forgotten":
        core.forget()
    else:
        commit_behind_its_back("g")
        assert _sync.sync(core.revalidate()).step == 2
    full_collection()
    assert ours() is None, "the instance of step 1 is still held"
    assert gate.add.run("two") == 2 and gate.applied.run() == ["one", "two"]


# -- holding: a caller that runs the actor's writes stops once its own call settled ---------------
@vc.virtual_actor
class Where(Gate):
    def where(self) -> str:
        return threading.current_thread().name


@pytest.mark.usefixtures("runtime_off")
def test_a_run_that_drains_the_actor_returns_once_its_own_call_settled(store_spec: StoreSpec) -> None:
    """A ``run()`` applies the actor's queued writes on its own thread until its call has its
    outcome, not every call queued behind it meanwhile: a ``run_async`` queued while its method
    ran is left to the pool (its future waited for without helping)."""
    store_spec.init()
    where = Where.get_or_create("w")
    _entered["first"], _opened["first"] = threading.Event(), threading.Event()
    later: list[vc.ActorFuture[str]] = []

    def queue_behind() -> None:
        assert _entered["first"].wait(HANG)
        later.append(where.where.run_async())
        _opened["first"].set()

    thread = threading.Thread(target=queue_behind, daemon=True)
    thread.start()
    assert where.hold.run("first") == 1
    thread.join(HANG)
    assert len(later) == 1
    assert not concurrent.futures.wait(later, HANG).not_done, "the pool never ran the later call"
    assert later[0].result() != threading.main_thread().name


# -- holding: asks that found the actor served are settled only by a listing that answered --------
@pytest.mark.usefixtures("runtime_off")
def test_a_serving_rounds_failed_listing_leaves_an_ask_waiting_for_the_next_round(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ask while this process serves the actor is settled by a round whose listing began after
    it; a listing that fails (a storage error) settles nothing: the exit hook still waits for
    the ask, and the round after folds the post and settles it."""
    serving, log = _serving_paused_before_a_listing(store_spec, monkeypatch)
    (theirs,) = post_adds(foreign_box("a"), ["f/0"])
    _asked_while_held(theirs)
    listing = ActorCore._keys_with_work
    failed = threading.Event()

    def fails_once(core: ActorCore) -> list[str]:
        if not failed.is_set():
            failed.set()
            raise StorageError("the listing failed")
        return listing(core)

    monkeypatch.setattr(ActorCore, "_keys_with_work", fails_once)
    serving.arm()  # (the round after the failed one: paused before it lists)
    serving.resumed.set()
    assert serving.paused.wait(HANG), "serving ended"
    assert failed.is_set()
    assert vc.get_runtime().asked_folds() == ["a"], "a failed listing settled the ask"
    serving.resumed.set()
    assert wait_for(lambda: log.applied.run() == ["me/0", "me/1", "f/0"]), log.applied.run()
    assert wait_for(lambda: vc.get_runtime().asked_folds() == []), "the fold left the ask waiting"


@pytest.mark.usefixtures("runtime_off")
def test_an_ask_made_after_a_serving_rounds_listing_is_not_settled_by_that_rounds_fold(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round's fold settles the asks made before its listing began, not one made after it (of
    a post that listing did not see): the exit hook waits for that one until the next round
    folded its post."""
    serving, log = _serving_paused_before_a_listing(store_spec, monkeypatch)
    (first,) = post_adds(foreign_box("a"), ["f/0"])
    _asked_while_held(first)
    listing = ActorCore._keys_with_work
    listed, go_on = threading.Event(), threading.Event()

    def pause_after_listing(core: ActorCore) -> list[str]:
        keys = listing(core)
        if not listed.is_set():
            listed.set()
            assert go_on.wait(HANG), "the test never let the round go on"
        return keys

    monkeypatch.setattr(ActorCore, "_keys_with_work", pause_after_listing)
    serving.resumed.set()
    assert listed.wait(HANG), "the round never listed"
    (second,) = post_adds(foreign_box("a"), ["f/1"])
    _asked_while_held(second)
    serving.arm()  # (the round after: paused before it lists)
    go_on.set()
    assert serving.paused.wait(HANG), "serving ended"
    assert log.applied.run() == ["me/0", "me/1", "f/0"]
    assert vc.get_runtime().asked_folds() == ["a"], "the fold of f/0 settled the ask of f/1"
    serving.resumed.set()
    assert wait_for(lambda: log.applied.run() == ["me/0", "me/1", "f/0", "f/1"]), log.applied.run()
    assert wait_for(lambda: vc.get_runtime().asked_folds() == []), "the fold of f/1 left its ask waiting"


@pytest.mark.usefixtures("runtime_off")
def test_an_ask_while_a_round_of_serving_is_queued_is_left_to_that_round(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ask made while this process's next round of serving is queued (not started) is left to
    that round, as one made while a round runs: no fold task of its own, which would give the
    lease up once it folded (the rounds of serving go on)."""
    serving, log = _serving_paused_before_a_listing(store_spec, monkeypatch)
    serve = ActorCore._serve
    queued, go_on = threading.Event(), threading.Event()

    def held_at_its_start(core: ActorCore) -> None:
        if not queued.is_set():
            queued.set()
            assert go_on.wait(HANG), "the test never let the round start"
        serve(core)

    monkeypatch.setattr(ActorCore, "_serve", held_at_its_start)
    serving.resumed.set()  # (that round ends; the next one is queued, held as it starts)
    assert queued.wait(HANG), "no round of serving was queued"
    (theirs,) = post_adds(foreign_box("a"), ["f/0"])
    _asked_while_held(theirs)
    core = vc.get_runtime().core("a")
    assert core._asked_held == 1, "the ask queued a fold task of its own"
    go_on.set()
    assert wait_for(lambda: log.applied.run() == ["me/0", "me/1", "f/0"]), log.applied.run()
    assert wait_for(lambda: vc.get_runtime().asked_folds() == []), "the fold left the ask waiting"
    assert core._held_until != -math.inf, "serving ended"


@pytest.mark.usefixtures("runtime_off")
def test_a_fold_task_that_folds_nothing_keeps_our_next_call_behind_our_given_up_post(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``me/1`` was posted and given up on; its ask's fold task finds another process's lease
    (which then lapses unrenewed) and folds nothing: our post is still pending, so our next call
    is posted behind it, never committed ahead of it (one process's calls apply in order)."""
    # (combine_window: by the time me/2 is made, neither our posts nor their lease, lapsed, make
    # the actor contended; only our pending post does)
    store = init_switchable(store_spec, combine_window=0.001)
    log, call_id, held = asked_and_held(monkeypatch)
    leases = LeaseStore(store.inner, "a", vc.get_runtime().settings.signing_key)
    assert _sync.sync(leases.write(_sync.sync(leases.read()), _FOREIGN, 1.0, 2)) is not None
    held.let_go()
    assert wait_for(lambda: not _sync.sync(leases.read()).valid()), "their lease never lapsed"
    assert log.add.run("me/2") == 3
    assert ask_until_known(call_id)[0] == 2
    assert log.applied.run() == ["me/0", "me/1", "me/2"]


@pytest.mark.usefixtures("runtime_off")
def test_a_fold_task_ended_by_a_defect_gives_the_folder_lease_it_took_up(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ask's fold task took the free folder lease, then its fold-only commit raised (a
    defect): the lease is given up at once, as a round of serving gives it up, not kept for
    other processes' posters to wait out (``lease_seconds``) nor served on."""
    store = init_switchable(store_spec, combine_window=3600.0, lease_seconds=600.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    (theirs,) = post_adds(foreign_box("a"), ["f/0"])
    commit = ActorCore._commit
    raised: list[bool] = []

    def fails_once(core: ActorCore, batch: Any, keys: Any = None) -> None:
        if not batch and not raised:
            raised.append(True)
            raise RuntimeError("a defect in the fold")
        commit(core, batch, keys)

    monkeypatch.setattr(ActorCore, "_commit", fails_once)
    with pytest.raises(CallPendingError):
        vc.get_actor("a").call_outcome(theirs)
    assert wait_for(lambda: vc.get_runtime().asked_folds() == []), "the fold task never ended"
    assert raised, "the fold task committed nothing"
    leases = LeaseStore(store.inner, "a", vc.get_runtime().settings.signing_key)
    assert wait_for(lambda: not _sync.sync(leases.read()).valid()), "the lease was kept"
    assert log.applied.run() == ["me/0"]


# -- HEAD: moved at shutdown however little it lags; the core's view of it never goes back --------
_HEAD_WAITS = vc.Settings(storage="", head_interval=3600.0, head_lag_steps=1000, head_max_delay=3600.0)


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_moves_a_head_that_is_not_due_yet_and_the_core_holds_what_a_flush_wrote(
    store_spec: StoreSpec,
) -> None:
    """HEAD lags by fewer steps, and for less time, than would move it: ``shutdown()`` moves it
    all the same. A flush leaves the core holding the HEAD it wrote (its next move builds on it)."""
    store_spec.init(settings=_HEAD_WAITS)
    gate = Gate.get_or_create("h")
    runtime = vc.get_runtime()
    _sync.sync(runtime.heads.flush())
    head = runtime.core("h").head
    assert head is not None and head.step == 0
    for token in ("one", "two", "three"):
        gate.add.run(token)
    vc.shutdown()
    store_spec.init(settings=_HEAD_WAITS)
    head = _sync.sync(vc.get_runtime().log("h").read_head())
    assert head is not None and head.step == 3


@pytest.mark.usefixtures("runtime_off")
def test_stopping_the_head_flusher_ends_its_periodic_flush_asleep_for_the_interval(
    store_spec: StoreSpec,
) -> None:
    """``HeadFlusher.stop`` (shutdown's) makes its last flush, then ends the periodic one, asleep
    for ``head_interval`` (here an hour): it cancels it, not waits it out. Bounded by 20 s, a
    stop that waited for the task fails here, not at shutdown's own timeout."""
    store_spec.init(settings=_HEAD_WAITS)
    gate = Gate.get_or_create("h")
    runtime = vc.get_runtime()
    gate.add.run("one")
    task = runtime.heads._task
    assert task is not None and not task.done(), "no periodic flush ran to be stopped"

    async def stopped_within_bound() -> bool:
        stopping = asyncio.ensure_future(runtime.heads.stop())
        done, _ = await asyncio.wait({stopping}, timeout=20.0)
        if not done:  # (cancelled here, so that the shutdown after the test is not held too)
            stopping.cancel()
            await asyncio.wait({stopping})
        return bool(done)

    assert _sync.sync(stopped_within_bound()), "stop waited for the periodic flush asleep for an hour"
    assert task.done() and runtime.heads._task is None
    head = _sync.sync(runtime.log("h").read_head())
    assert head is not None and head.step == 1


@pytest.mark.usefixtures("runtime_off")
def test_a_cold_load_that_finds_head_behind_the_newest_step_moves_it(store_spec: StoreSpec) -> None:
    """Another writer committed without moving HEAD: a process that loads the actor finds HEAD
    behind the newest step and moves it (at its next flush)."""
    store_spec.init(settings=_HEAD_WAITS)
    gate = Gate.get_or_create("h")
    _sync.sync(vc.get_runtime().heads.flush())
    commit_behind_its_back("h")  # (step 1, HEAD left at step 0)
    vc.shutdown()
    store_spec.init(settings=_HEAD_WAITS)
    assert gate.applied.run() == []
    runtime = vc.get_runtime()
    _sync.sync(runtime.heads.flush())
    head = _sync.sync(runtime.log("h").read_head())
    assert head is not None and head.step == 1


@pytest.mark.usefixtures("runtime_off")
def test_a_move_that_gave_up_leaves_the_cores_head_where_it_was(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HEAD move that gave up (its tries refused: ``Head(-1)``) does not take the core's view of
    HEAD back from the one it holds."""
    store_spec.init(settings=_HEAD_WAITS)
    gate = Gate.get_or_create("h")
    runtime = vc.get_runtime()
    _sync.sync(runtime.heads.flush())
    core = runtime.core("h")
    held = core.head
    assert held is not None and held.step == 0
    gate.add.run("one")

    async def gave_up(log: ActorLog, step: int, class_ref: ClassRef, known: Head | None) -> Head:
        return Head(-1, class_ref, "")

    monkeypatch.setattr(ActorLog, "advance_head", gave_up)
    _sync.sync(runtime.heads.flush())
    assert core.head == held


@vc.virtual_actor
class Reading(Crossing):
    @vc.virtual_actor.readonly
    def relay(self, other: str) -> int:
        here = vc.current_call().actor_id  # type: ignore[union-attr]
        return int(vc.get_actor(other).call_back.run(here))


def test_a_read_that_waits_for_a_call_back_into_its_own_actors_writer_is_no_cycle(
    actor_store: StoreSpec,
) -> None:
    """A read-only method of A calls B's writer, which calls A's writer: no cycle (a read holds
    nothing of its actor), the call back is applied."""
    Reading.get_or_create("r-a")
    Crossing.get_or_create("r-b")
    assert vc.get_actor("r-a").relay.run("r-b") == 1
    assert vc.get_actor("r-a").read.run() == 1


# -- reentrancy: a sub-task its waiting caller runs runs as on a pool thread ----------------------
_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("_TAG", default="none")
_SECOND_RAN = threading.Event()


def _tagged_child(i: int) -> str:
    """Child 0 holds the pool's only thread until child 1 ran (on the method's waiting thread)."""
    if i == 0:
        assert _SECOND_RAN.wait(HANG), "the waiting method never ran the queued child"
    else:
        _SECOND_RAN.set()
    return _TAG.get()


@vc.virtual_actor
class Tagging:
    def launch(self) -> list[str]:
        _TAG.set("the method's")
        return list(vc.subtask(_tagged_child).map(range(2)))


@pytest.mark.usefixtures("runtime_off")
def test_a_sub_task_run_by_its_waiting_method_does_not_see_the_methods_context(
    store_spec: StoreSpec,
) -> None:
    """A sub-task no pool thread started is run by the method waiting for it (caller runs), as a
    pool thread runs it: in a context of its own, not the method's (a context variable the
    method set is not seen by it, as it is not by the child on the pool)."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="h231-subtask")
    _SECOND_RAN.clear()
    store_spec.init(subtask_executor=pool)
    try:
        assert Tagging.get_or_create("t").launch.run() == ["none", "none"]
        assert _SECOND_RAN.is_set()
    finally:
        vc.shutdown()
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.usefixtures("runtime_off")
def test_a_creation_that_another_class_won_leaves_the_actor_to_its_own_class(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the id with another class just before our step 0: our creation is
    refused, and the core (shared with this process's other callers) keeps no trace of our class:
    the winner's class gets the actor and calls it."""
    store_spec.init()
    theirs = lookup_local_class(f"{Where.__module__}:{Where.__qualname__}")  # (Gate's state)
    assert theirs is not None
    put_step = ActorLog.put_step
    raced: list[bool] = []

    async def theirs_first(log: ActorLog, record: StepRecord) -> None:
        if record.step == 0 and not raced:
            raced.append(True)
            await put_step(log, dataclasses.replace(record, class_ref=theirs.body()[0], writer="them"))
        await put_step(log, record)

    monkeypatch.setattr(ActorLog, "put_step", theirs_first)
    with pytest.raises(vc.ActorDefinitionError, match="already exists as an instance of"):
        Gate.get_or_create("won")
    assert raced
    assert Where.get_or_create("won").add.run("theirs") == 1


@pytest.mark.usefixtures("runtime_off")
def test_a_creation_after_a_delete_that_meets_another_tombstone_creates_after_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id was deleted; our creation's step meets another tombstone written just before it (a
    fold on the deleted actor): the creation goes after that tombstone, the new actor made."""
    store_spec.init()
    Gate.get_or_create("again").add.run("old")
    assert vc.delete_actor("again") is True
    tombstone = _sync.sync(vc.get_runtime().core("again").revalidate())
    put_step = ActorLog.put_step
    raced: list[bool] = []

    async def another_tombstone_first(log: ActorLog, record: StepRecord) -> None:
        if record.step == tombstone.step + 1 and not raced:
            raced.append(True)
            step = tombstone.step + 1
            await put_step(log, dataclasses.replace(tombstone, step=step, parent=step - 1, writer="them"))
        await put_step(log, record)

    monkeypatch.setattr(ActorLog, "put_step", another_tombstone_first)
    gate = Gate.get_or_create("again")
    assert raced
    assert gate.add.run("new") == 1 and gate.applied.run() == ["new"]


# -- core: a read runs once, whoever reaches it first -----------------------------------------
_READS: dict[str, int] = {}


@vc.virtual_actor
class Counted(Slow):
    @vc.virtual_actor.readonly
    def counted(self, token: str) -> int:
        _READS[token] = _READS.get(token, 0) + 1
        return _READS[token]


@pytest.mark.usefixtures("runtime_off")
def test_a_read_its_waiter_ran_is_not_run_again_by_its_pool_task(store_spec: StoreSpec) -> None:
    """The read pool's one thread is busy: a ``run_async`` read waited for (``result()``) is run
    by its waiter; its pool task, reached later, finds it taken and does not run it again."""
    store_spec.init(settings=vc.Settings(storage="", max_workers=1))
    reader = Counted.get_or_create("c")
    _entered["pool"], _opened["pool"] = threading.Event(), threading.Event()
    _READS.clear()
    on_pool = reader.peek.run_async("pool")
    try:
        assert _entered["pool"].wait(HANG), "the read pool never ran the first read"
        assert reader.counted.run_async("once").result(HANG) == 1
        behind = reader.counted.run_async("behind")  # (queued after the first one's task)
    finally:
        _opened["pool"].set()
    assert on_pool.result(HANG) == "pool"
    assert not concurrent.futures.wait([behind], HANG).not_done, "the pool never ran the read behind"
    assert _READS == {"once": 1, "behind": 1}


# -- step outcomes: one result that does not pickle ----------------------------------------------
def test_a_result_that_does_not_pickle_is_recorded_as_the_calls_error_not_its_result() -> None:
    """A fold's outcomes are pickled one by one: a result that does not pickle is recorded as
    a ``RuntimeError`` saying so, failing that call (not returned as its result), and the
    other outcomes of the step are kept."""
    data = encode_outcomes({"a": Outcome(True, threading.Lock()), "b": Outcome(True, [5])})
    got = decode_outcomes(data)
    assert got["b"] == Outcome(True, [5])
    assert not got["a"].ok and isinstance(got["a"].value, RuntimeError), got["a"]
    assert "could not be recorded" in str(got["a"].value)


# -- the post cursor: the hour of SENDER_TTL, the half hour of expiry ---------------------------
def test_a_sender_silent_for_less_than_sender_ttl_stays_in_the_cursor() -> None:
    now = 10 * SENDER_TTL
    extra = {POST_CURSOR: {"quiet": [4, now - 0.75 * SENDER_TTL], "gone": [2, now - SENDER_TTL]}}
    cursor = advance_cursor(extra, [], now)[POST_CURSOR]
    assert cursor == {"quiet": [4, now - 0.75 * SENDER_TTL]}


def test_a_post_older_than_half_sender_ttl_is_expired_and_a_younger_one_is_not() -> None:
    now = 10 * SENDER_TTL

    def post(age: float) -> Post:
        return Post("k", "s", 1, now - age, ())

    assert expired(post(0.75 * SENDER_TTL), now)
    assert not expired(post(0.25 * SENDER_TTL), now)
