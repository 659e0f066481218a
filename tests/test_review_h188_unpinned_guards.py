"""Guards of this morning's changes that no test noticed removed (review h188's mutation sweep).

1. ``call_outcome`` that gives up at ``Settings.deadline`` (its reads kept failing) is an
   operation that did not finish within ``Settings.deadline``: it counts ``deadline_timeouts``
   and logs it at WARNING, as docs/observability.md says of that counter (it counted nothing).
2. The ask's fold deletes posts without the folder lease only when the newest step applied
   them (``Folder._deleted_as_applied``): a post expired by this process's clock alone is the
   lease holder's to judge (``gives_fold_work``). Held: no test failed with that guard removed.
3. Asked of a call it did not post, after the id was deleted and made again, ``call_outcome``
   walks the newest actor's steps down to its creation (``born_of``), not into the earlier
   actor's tombstone. Held: no test failed with that bound removed (the tombstone below ends
   the walk too, one GET later).
4. The posts this process gave up on are remembered per process (``poster._GAVE_UP``), not per
   actor core: after the core was evicted, a call never applied is still told a sure "never"
   (``never`` true). Held: keyed per core, every test passed (the clock-stepped-back test of
   test_review_actor_cache pins the runtime's ``pending_posts``, not this).
5. A post that landed after the actor's delete (its tombstone's cursor does not name it) is
   told pending to a process that did not post it, and no fold is queued for it: a deleted
   actor has no fold. Held: no test failed with that ``is_deleted`` guard removed. (Reversed
   by review h194: nothing then folded the post, so it was pending for good, until an actor
   was made again; a fold on a tombstone fails it with ``ActorDeletedError``, and the ask now
   queues it, as procedure A's does.)
6. An earlier actor's post still listed after the id was made again is not the new actor's
   call, also when its name carries it (read from the listing, no GET: ``_to_this_actor`` on
   the posts known from names). Held: test_review_h185's test of it posts bare names only.
7. On an id made again whose creation step is gone (compacted), a post still listed that the
   newest cursor applied is kept (``_to_this_actor``): "applied, its outcome compacted", never
   "not found" (on which a caller retries and applies the call twice). Held: dropping such
   posts passed every test.
8. Our keyed call to an actor deleted since, the id made again and another process's call of
   the key applied there: with the new actor's creation step compacted, the later call's
   outcome is not taken for ours (``_not_ours``: a creation step gone counts as not ours).
   Held: counting it ours passed every test.
9. Our call failed by the delete (the tombstone right above the step our post was made on):
   the tombstone's outcome is ours with no read of the step below, which a compaction may
   have removed (``_not_ours``: ``below <= base_step``). Held: ``<`` passed every test.
10. After the ask's fold, the lease is kept for rounds of serving only if a post there gives
   a fold work (``Folder._keys_with_work``): one expired (by its name's time) does not, one
   beside it that is live does. Held: with that filter removed, or made "every post", every
   test passed.
11. A fold task the ask queued that starts once a close began requests nothing (its
   ``env.closed`` check): not even the inbox LIST. Held: without the check every test passed
   (the lease take refuses later).
12. Once the fold the ask queued has run, the core says so (``asked_fold_idle`` set): the exit
   hook's wait for queued folds (``Runtime.finish_queued_calls``) ends then, not at its bound.
   Held: with the task never setting it, every test passed (a one-shot process exited late).
   So too when Ctrl-C stops the ask before it queued the task: nothing is queued, nothing to
   wait for (held: with the interrupted ask leaving it clear, every test passed; pinned in
   test_review_h179's test_ctrl_c_as_call_outcome_queues_the_fold_leaves_a_later_ask_free_to_queue_one).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import uuid
from typing import Any

import pytest
from actors import OrderLog
from store_helpers import retune
from test_combining import (
    HANG,
    a_fold_of,
    foreign_box,
    init_switchable,
    pending_posts,
    post_adds,
    wait_for_no_posts,
)
from test_posting import Tally, _give_up_on_c, spec
from test_review_actor_cache import _SteppedBack, cores_of, wait_until
from test_review_h178_orphaned_post import (
    ask_until_known,
    give_up_at_the_first_lost_race,
    give_up_on_me_1,
)
from test_review_h179_given_up_fold import (
    after_the_first_step_put,
    ask_once,
    asked_and_held,
    closing_in_the_background,
    steps_of_a,
)
from test_review_h182_ask_fold_costs import kinds, wait_until_quiet
from test_review_h183_outcome_not_found import _a_new_process, _is_not_found
from test_review_h185_outcome_edges import _folded_by_another_process, an_ask_whose_inbox_listings_fail
from test_stats import moved, records

import vactor_cloud as vc
from vactor_cloud import _sync, folding, posting
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.compaction import raise_watermark
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import (
    CallPendingError,
    CommitOutcomeUnknownError,
    StorageTimeoutError,
)
from vactor_cloud.incarnation import born_of
from vactor_cloud.keys import posts_prefix, step_of, steps_prefix
from vactor_cloud.post_cursor import SENDER_TTL
from vactor_cloud.posting import PostBox, PostedCall, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


# -- 1. call_outcome's own deadline -------------------------------------------------------------
def test_a_call_outcome_that_gives_up_at_its_deadline_counts_a_deadline_timeout(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every LIST of the inbox fails (transiently): the ask reads again until
    ``Settings.deadline``, then says "not known yet" (``StorageTimeoutError``), counted once in
    ``deadline_timeouts`` and logged at WARNING; no commit retry is counted (it is a read)."""
    handle, failed = an_ask_whose_inbox_listings_fail(store_spec, monkeypatch, times=None)
    before = vc.stats()
    retune(deadline=0.5)  # (the ask's bound alone)
    with (
        caplog.at_level(logging.WARNING, logger="vactor_cloud"),
        pytest.raises(StorageTimeoutError) as raised,
    ):
        handle.call_outcome(uuid.uuid4().hex)
    retune(deadline=30.0)
    assert "ask call_outcome again later" in str(raised.value)
    assert failed, "the ask never listed the inbox"
    assert moved(before) == {"deadline_timeouts": 1}
    assert records(caplog, logging.WARNING, "Settings.deadline")


# -- 2. the ask fold's lease-less delete: a case of test_review_h179's
# test_a_lease_another_process_took_after_the_ask_is_left_to_it (its clock stepped ahead) ------


# -- 3. the walk of a made-again actor's steps ends at its creation ------------------------------
def test_an_ask_about_an_actor_made_again_reads_no_step_of_the_earlier_actor(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held. "a" is deleted (its tombstone the newest step) and made again; a process that did
    not post the call asks: not found, and no step at or below the tombstone is read."""
    init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("first/0")
    assert vc.delete_actor("a") is True
    store = _a_new_process(store_spec, monkeypatch)
    tombstone = max(n for k in steps_of_a(store) if (n := step_of(k)) is not None)
    handle = OrderLog.get_or_create("a")
    handle.add.run("second/0")
    read: list[int] = []
    inner_around = store._around

    async def note_step_reads(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if key.startswith(steps_prefix("a")) and (n := step_of(key)) is not None:
            read.append(n)
        return await inner_around(operation, key, run, **kw)

    store._around = note_step_reads
    with pytest.raises(vc.CallNotFoundError):
        handle.call_outcome(uuid.uuid4().hex)
    assert read, "the ask read no step"
    assert [n for n in read if n <= tombstone] == []


# -- 4. what this process gave up on outlives the actor's core --------------------------------------
def test_a_call_given_up_on_is_told_never_applied_after_its_core_was_evicted(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held. ``me/1`` is given up on; "a" is evicted (the cache holds one actor); the post
    expires (every post, to the folders' clock) and the ask's fold deletes it unapplied: the
    ask says "never" (``never`` true: retrying applies it once), as it did with the core kept."""
    init_switchable(store_spec, max_cached_actors=1)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    runtime = vc.get_runtime()
    OrderLog.get_or_create("b").add.run("b/0")  # "a" is evicted
    wait_until(lambda: not [c for c in cores_of(runtime) if c.actor_id == "a"], "the core of 'a' stayed")
    monkeypatch.setattr(folding, "SENDER_TTL", -1.0)  # (the folder's view: every post expired)
    with pytest.raises(LookupError) as raised:
        ask_until_known(call_id)
    _is_not_found(raised.value, never=True)
    assert wait_for_no_posts("a") == []
    assert log.applied.run() == ["me/0"]


# -- 5. (reversed by review h194: the ask queues the fold on a tombstone too, which fails the
# post with ActorDeletedError; tests/test_review_h194_outcome_after_delete.py) ---------------------


# -- 6. an earlier actor's post carried by its name: a case of test_review_h185's
# test_an_old_actors_post_still_listed_is_not_the_new_actors_call_and_never_applied_to_it --------


# -- 7. an actor made again, its creation compacted -----------------------------------------------
def test_a_post_still_listed_on_an_actor_made_again_whose_creation_is_compacted_is_applied(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "a" is deleted and made again; another process's post is applied by a fold of the new
    actor and left listed (its delete not done); the next step carries nothing of it, and the
    steps from the creation to the fold are compacted. A new process asking of the call hears
    "applied, its outcome compacted" (``CommitOutcomeUnknownError``), not "not found"."""
    store = init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("first/0")
    assert vc.delete_actor("a") is True
    OrderLog.get_or_create("a").add.run("second/0")
    (call_id,) = post_adds(foreign_box("a"), ["other/1"])
    core = vc.get_runtime().core("a")
    log_ = core.log
    newest = core.env.run(core.revalidate())
    born = born_of(newest.extra)
    assert born > 0
    box = PostBox(store.inner, "a", vc.get_runtime().settings.signing_key)
    (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
    fold = a_fold_of(newest, [post], encode_outcomes({call_id: Outcome(True, "folded")}))
    _sync.sync(log_.put_step(fold))
    after = dataclasses.replace(fold, step=fold.step + 1, parent=fold.step, posted=b"", carried=b"")
    _sync.sync(log_.put_step(after))
    _sync.sync(raise_watermark(log_, after.step))  # a compaction: the watermark first, then the deletes
    for step in range(born, after.step):
        _sync.sync(store.inner.delete(log_.step_key(step)))
    _a_new_process(store_spec, monkeypatch)
    with pytest.raises(CommitOutcomeUnknownError, match="was applied") as raised:
        vc.ActorHandle("a").call_outcome(call_id)
    assert not isinstance(raised.value, CallPendingError)
    assert len(pending_posts("a")) == 1


# -- 8. a later actor's keyed call, its creation compacted ----------------------------------------
@pytest.mark.usefixtures(spec.__name__)
def test_our_keyed_call_is_not_answered_by_a_later_actors_call_whose_creation_is_compacted(
    store_spec: StoreSpec,
) -> None:
    """Our keyed call is given up on and failed by the actor's delete; the id is made again and
    another process's call with the key (the same call id) is applied by the new actor (its
    outcome ``["z"]``); the new actor's steps below that fold, its creation among them, are
    compacted. Our ``call_outcome`` is not the later call's: not known (the steps between are
    gone), never ``["z"]``."""
    handle, call_id = _give_up_on_c(store_spec, key="k")
    assert vc.delete_actor("slow")
    Tally.get_or_create("slow")
    later = (PostedCall("add", pickle.dumps((("z",), {})), call_id, "k"),)
    _folded_by_another_process("slow", later, {call_id: ["z"]})
    core = vc.get_runtime().core("slow")
    newest = core.env.run(core.revalidate())
    born = born_of(newest.extra)
    assert 0 < born < newest.step
    _sync.sync(raise_watermark(core.log, newest.step))  # a compaction: the watermark first, then the deletes
    for step in range(born, newest.step):
        _sync.sync(vc.get_runtime().store.delete(core.log.step_key(step)))
    with pytest.raises(CommitOutcomeUnknownError) as raised:
        handle.call_outcome(call_id)
    assert not isinstance(raised.value, CallPendingError)


# -- 9. failed by the delete, the steps below compacted -------------------------------------------
@pytest.mark.usefixtures(spec.__name__)
def test_our_call_failed_by_the_delete_is_told_deleted_with_the_steps_below_compacted(
    store_spec: StoreSpec,
) -> None:
    """Our call is given up on, its post made on step 2; the delete's tombstone (step 3) fails
    it. The steps below the tombstone are compacted. Our ``call_outcome`` is the tombstone's
    outcome for it (``ActorDeletedError``), not "not known"."""
    handle, call_id = _give_up_on_c(store_spec)
    assert vc.delete_actor("slow")
    core = vc.get_runtime().core("slow")
    tombstone = core.env.run(core.revalidate()).step
    assert tombstone == 3
    _sync.sync(raise_watermark(core.log, tombstone))  # a compaction: the watermark first, then the deletes
    for step in range(tombstone):
        _sync.sync(vc.get_runtime().store.delete(core.log.step_key(step)))
    with pytest.raises(vc.ActorDeletedError) as raised:
        handle.call_outcome(call_id)
    assert raised.value.step == tombstone


# -- 10. an expired post does not keep the ask fold's lease -----------------------------------------
@pytest.mark.parametrize("live_beside", [False, True], ids=["alone", "a-live-post-beside"])
def test_an_expired_post_landing_during_the_ask_fold_does_not_keep_its_lease(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, live_beside: bool
) -> None:
    """While the ask's fold puts its step, another process's post lands, named a whole
    ``SENDER_TTL`` ago (its clock behind): expired, no fold's work. The lease is released at
    once after the fold, as with nothing there: two LISTs of the inbox in all, not rounds of
    serving over ``combine_window``. With a live post of theirs landing beside it, the rounds
    of serving go on and fold that one."""
    store = init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    box = foreign_box("a")
    with monkeypatch.context() as behind:
        behind.setattr(posting, "time", _SteppedBack(SENDER_TTL))
        (expired,) = [box.prepare((PostedCall("add", pickle.dumps((("old/1",), {})), uuid.uuid4().hex),))]

    async def land_at_the_step_put(_: str) -> None:
        await box.send(expired)
        if live_beside:
            await box.send(
                box.prepare((PostedCall("add", pickle.dumps((("other/1",), {})), uuid.uuid4().hex),))
            )

    landed = after_the_first_step_put(store, land_at_the_step_put)
    with RequestTrace(store).installed() as trace:
        ask_once(call_id)
        wait_until_quiet(store)
    assert landed, "the ask's fold put no step"
    if live_beside:
        assert log.applied.run() == ["me/0", "me/1", "other/1"]
    else:
        counted = kinds(trace.requests)
        assert counted[("list", "mail")] == 2, counted
        assert log.applied.run() == ["me/0", "me/1"]


# -- 11. a fold task started after a close began ---------------------------------------------------
def test_a_fold_task_let_go_after_a_close_began_lists_nothing(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask's fold task is held at its start; a close begins (runtime closed), then the
    task runs: it requests nothing of the actor's inbox or lease, and the close ends."""
    store = init_switchable(store_spec)
    *_, held = asked_and_held(monkeypatch)
    stopping = closing_in_the_background(vc.get_runtime())
    requested: list[tuple[str, str]] = []
    inner_around = store._around

    async def note_requests(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if key.startswith(posts_prefix("a")) or key.endswith("/lease"):  # (shutdown writes HEAD)
            requested.append((operation, key))
        return await inner_around(operation, key, run, **kw)

    store._around = note_requests
    held.let_go()
    stopping.join(HANG)
    assert not stopping.is_alive(), "the close did not end"
    assert requested == []


# -- 12. the exit hook's wait ends with the fold ------------------------------------------------------
def test_the_core_says_its_ask_fold_ended_once_it_ran(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask queues the fold task; once it ran (the post folded), ``asked_fold_idle`` is set
    (what ``finish_queued_calls`` waits for), and the call's outcome is known."""
    init_switchable(store_spec)
    log, call_id, held = asked_and_held(monkeypatch)
    core = vc.get_runtime().core("a")
    assert not core.asked_fold_idle.is_set()  # (queued: the exit hook waits for it)
    held.let_go()
    assert core.asked_fold_idle.wait(HANG), "the fold task ended without saying so"
    assert ask_until_known(call_id)[0] == 2
    assert log.applied.run() == ["me/0", "me/1"]
