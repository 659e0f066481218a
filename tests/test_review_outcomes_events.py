"""Events, timers, call outcomes and batches, from a hostile review (review-h26): each test
failed on the code it was written against."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from typing import Any

import pytest
from actors import OrderLog
from store_helpers import retune
from test_combining import (
    HANG,
    Switchable,
    a_fold_of,
    add_while_another_process_folds,
    commit_behind_its_back,
    give_up_on_a_post,
    heal_and_fold,
    init_switchable,
)
from test_review_events import Till

import vactor_cloud as vc
from vactor_cloud import _sync, codec, workflow
from vactor_cloud.batch import PendingCall
from vactor_cloud.compaction import compact
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.future import ActorFuture
from vactor_cloud.keys import task_key
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import ActorLog
from vactor_cloud.posting import PostBox, advance_cursor, encode_outcomes
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import CANCEL, TIMERS, Timer, encode_arguments, list_index
from vactor_cloud.workflow_steps import list_failures

pytestmark = pytest.mark.vactor_lanes("memory", "local")

_PUT = frozenset({"put"})
_GET = frozenset({"get"})


def _faults(*rules: FaultRule) -> Any:
    return install(FaultConfig(rules=rules))


# -- send_event ---------------------------------------------------------------------------------
@pytest.mark.parametrize("event_id", [None, "wh-1"], ids=["generated-id", "given-id"])
def test_a_send_whose_put_answer_was_lost_is_one_event_applied_once(
    actor_store: StoreSpec, event_id: str | None
) -> None:
    """The inbox put landed and its answer was lost: ``send_event`` raised the storage error
    (nothing retried it, and the generated id it had chosen was gone with the error), so the
    caller's retry, without an id, was a second event and the handler ran twice. The send
    resolves it itself now: the same object is created again, found there, and is ours."""
    till = Till.get_or_create("till")
    store = _faults(FaultRule("lost_response", operations=_PUT, key_contains="/inbox/", at=(1,)))
    sent = vc.send_event("till", "paid", 30, event_id=event_id)
    assert store.injected["lost_response"] == 1
    assert event_id is None or sent == event_id
    till.process_events()
    assert [tuple(e) for e in till.view.run()] == [("paid", 30)]


def test_a_send_whose_put_keeps_failing_names_the_event_id_to_retry_with(actor_store: StoreSpec) -> None:
    """Every attempt failed (the first landed, its answer lost; no read back got through): the
    storage error was raised as it came, without the generated id. The error names the id the
    send chose (it may have landed): the caller's retry with it is deduplicated, not a second
    event."""
    till = Till.get_or_create("till")
    _faults(
        FaultRule("lost_response", operations=_PUT, key_contains="/inbox/", at=(1,)),
        FaultRule("fail_before", operations=_PUT | _GET, key_contains="/inbox/", probability=1.0),
    )
    with pytest.raises(vc.errors.RetryableStorageError) as raised:
        vc.send_event("till", "paid", 30)
    event_id = getattr(raised.value, "event_id", None)
    assert event_id and event_id in str(raised.value)
    vc.get_runtime().store = vc.get_runtime().store.inner  # type: ignore[attr-defined]
    assert vc.send_event("till", "paid", 30, event_id=event_id) == event_id
    till.process_events()
    assert len(till.view.run()) == 1


def test_an_event_id_pending_under_another_name_is_refused_not_dropped(actor_store: StoreSpec) -> None:
    """``paid`` and ``refunded`` under one event id: the second send met the pending first's
    object, took "already exists" for its own retry and returned the id; the refund was never
    stored, and nobody was told. It is refused with a ValueError naming both."""
    till = Till.get_or_create("till")
    vc.send_event("till", "paid", 30, event_id="evt-7")
    with pytest.raises(ValueError, match=r"evt-7.*paid"):
        vc.send_event("till", "refunded", 30, event_id="evt-7")
    assert vc.send_event("till", "paid", 30, event_id="evt-7") == "evt-7"  # a resend is still fine
    till.process_events()
    assert [tuple(e) for e in till.view.run()] == [("paid", 30)]
    # Once applied and gone from the inbox, the id under the other name is another event.
    assert vc.send_event("till", "refunded", 5, event_id="evt-7") == "evt-7"
    till.process_events()
    assert [tuple(e) for e in till.view.run()] == [("paid", 30), ("refunded", 5)]


@pytest.mark.usefixtures("runtime_off")
def test_a_sender_that_may_write_the_inbox_but_not_read_it_still_resends_a_pending_event(
    store_spec: StoreSpec,
) -> None:
    """A webhook sender with put-only credentials on the inbox: a resend of a pending event meets
    it, cannot read it back to check its name, and is taken for it (one event), as before."""
    store = init_switchable(store_spec)
    till = Till.get_or_create("till")
    denied = vc.errors.PermissionDeniedError("injected: AccessDenied", "k")
    store.fail = lambda op, key: denied if op == "get" and "/inbox/" in key else None
    assert vc.send_event("till", "paid", 30, event_id="e1") == "e1"
    assert vc.send_event("till", "paid", 30, event_id="e1") == "e1"
    store.fail = lambda op, key: None
    till.process_events()
    assert [tuple(e) for e in till.view.run()] == [("paid", 30)]


# -- call_outcome -------------------------------------------------------------------------------
def _applied_after_giving_up(store_spec: StoreSpec, **settings: Any) -> tuple[Switchable, str]:
    """``me/1`` was posted, its caller gave up (CallPendingError), and ``me/2``'s fold applied it
    (result 2): the store, and me/1's call id."""
    store = init_switchable(store_spec, combine_window=60.0)
    log, raised = give_up_on_a_post(store, commit_timeout=0.3, **settings)
    assert heal_and_fold(store, log) == 3
    return store, raised.call_ids[0]


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_retries_a_transient_read_error(store_spec: StoreSpec) -> None:
    """A step read failing once (a 503, a timeout) made ``call_outcome`` raise it raw: the
    caller could not tell a blip from an answer. It is retried, as the commit path's reads are."""
    store, call_id = _applied_after_giving_up(store_spec)
    failures = [RetryableStorageError("injected: 503", "k")] * 2
    store.fail = lambda op, key: failures.pop() if op == "get" and "/steps/" in key and failures else None
    assert vc.get_actor("a").call_outcome(call_id) == 2
    assert not failures


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_that_cannot_read_the_store_says_it_does_not_know_yet(store_spec: StoreSpec) -> None:
    """Reads failing until the deadline: the error says the outcome is not known yet and to
    ask again, not a bare storage error for one key."""
    store, call_id = _applied_after_giving_up(store_spec)
    # (the 1 s deadline is the call_outcome's under test, not the fold's before it nor the
    # read after it: h168 noticed them run under it, which a loaded emulator could outlast)
    retune(deadline=1.0)
    store.fail = lambda op, key: RetryableStorageError(f"{key}: injected 503", key) if op == "get" else None
    with pytest.raises(vc.errors.StorageTimeoutError, match=r"call_outcome.*again later") as raised:
        vc.get_actor("a").call_outcome(call_id)
    assert isinstance(raised.value.__cause__, RetryableStorageError)
    store.fail = lambda op, key: None
    retune(deadline=vc.Settings.deadline)
    assert vc.get_actor("a").call_outcome(call_id) == 2


# -- timers armed by posted calls ---------------------------------------------------------------
def _fold_the_pending_post_by_hand(store: Switchable, result: Any, *, arm: str | None = None) -> None:
    """Another process's fold: the next step applies the one pending post (each call's outcome
    ``result``; with ``arm``, the calls armed a timer of that key, due now, that the folder
    died before indexing), and the post is deleted."""
    runtime = vc.get_runtime()
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    box = PostBox(store.inner, "a", runtime.settings.signing_key)
    (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
    newest = _sync.sync(log_.read_step(_sync.sync(log_.list_steps())[-1]))
    assert newest is not None
    extra = advance_cursor(newest.extra, [post], time.time())
    if arm is not None:
        timer = Timer(
            arm, time.time(), "add", encode_arguments(("timer",), {}, "pickle"), gen=newest.step + 1
        )
        extra[TIMERS] = {timer.key: timer.to_json()}
    folded = a_fold_of(
        newest, [post], encode_outcomes({c.call_id: Outcome(True, result) for c in post.calls}), extra=extra
    )
    _sync.sync(log_.put_step(folded))
    _sync.sync(box.delete([post.key]))


@pytest.mark.usefixtures("runtime_off")
def test_a_timer_armed_by_a_posted_call_whose_folder_died_before_indexing_it_fires_without_repair(
    store_spec: StoreSpec,
) -> None:
    """Our call lost a race and was posted; another process's fold ran it (it armed a timer,
    step 3) and died between its step put and its index write. Only the folder indexed, so the
    timer had no entry and never fired until someone ran ``vactor timers repair``. The poster,
    told of its outcome by step 3, indexes the timers that steps since its post armed, as a
    commit of its own does."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, "a", runtime.settings.signing_key)
    # Another process holds the folder lease: our next call posts and waits for its fold.
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 60.0, 1)) is not None
    commit_behind_its_back("a")  # step 2: our put of step 2 loses, we post
    posted = threading.Event()
    folded = threading.Event()
    inner_around = store._around

    async def note_the_post(operation: str, key: str, run: Any, **kw: Any) -> Any:
        result = await inner_around(operation, key, run, **kw)
        if operation == "put" and "/mail/" in key:
            posted.set()
        return result

    store._around = note_the_post  # type: ignore[method-assign]
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    due = time.time()

    def fold_and_die_before_indexing() -> None:
        box = PostBox(store.inner, "a", runtime.settings.signing_key)
        (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
        (call,) = post.calls
        two = _sync.sync(log_.read_step(2))
        assert two is not None
        # The posted call ran and armed a timer (the method's schedule(), step 3's generation).
        armed = Timer("later", due, "add", encode_arguments(("timer",), {}, "pickle"), gen=3)
        extra = advance_cursor(two.extra, [post], time.time())
        extra[TIMERS] = {armed.key: armed.to_json()}
        three = a_fold_of(two, [post], encode_outcomes({call.call_id: Outcome(True, 3)}), extra=extra)
        _sync.sync(log_.put_step(three))  # ... and the folder dies here: no index entry

    assert add_while_another_process_folds(log, posted, folded, fold_and_die_before_indexing) == 3
    store._around = inner_around  # type: ignore[method-assign]
    assert [e.key for e in _sync.sync(list_index(store.inner))] == ["later"]
    assert vc.fire_due_timers().fired == 1
    assert log.applied.run() == ["me/0", "timer"]  # (the hand-made step 3 kept step 2's state)


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_of_a_posted_call_that_armed_a_timer_indexes_it(store_spec: StoreSpec) -> None:
    """The caller gave up (CallPendingError); a fold applied the call, which armed a timer, and
    died before indexing it. ``call_outcome`` told the result, and the timer stayed unindexed:
    it indexes it, as the poster's wait does."""
    store = init_switchable(store_spec, combine_window=60.0)
    _, raised = give_up_on_a_post(store, commit_timeout=0.3)
    # (Our step puts stay refused: this process, the lease holder, would fold the post itself.)
    _fold_the_pending_post_by_hand(store, "folded", arm="later")
    retune(commit_timeout=HANG)  # (0.3 s was the given-up call's alone)
    assert _sync.sync(list_index(store.inner)) == []
    assert vc.get_actor("a").call_outcome(raised.call_ids[0]) == "folded"
    assert [e.key for e in _sync.sync(list_index(store.inner))] == ["later"]


# -- batches mixing internal calls with user calls ---------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_user_call_batched_with_an_internal_call_under_contention_is_posted_not_raced(
    store_spec: StoreSpec,
) -> None:
    """Calls queued together form one batch. One internal call in it (a timer's cancel or
    firing, an inbox marker: they cannot be posted) made the whole batch race for the step
    while another process folded: the user calls beside it lost race after race and failed
    with CommitConflictError, where alone they would have been posted and applied. The
    batch is split where postable and internal calls meet, in order: the user call is posted
    (and applied by the fold), the internal call races after it."""
    store = init_switchable(store_spec, combine_window=60.0, commit_timeout=2.0, max_commit_attempts=20)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, "a", runtime.settings.signing_key)
    # Another process holds the folder lease and folds: our calls post and wait for it.
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 60.0, 1)) is not None
    commit_behind_its_back("a")
    posted = threading.Event()
    folded = threading.Event()
    inner_around = store._around
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)

    async def others_commit_first(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and "/steps/" in key:
            # A writer of another process commits just before each of our step puts: we lose.
            newest = await log_.read_step((await log_.list_steps())[-1])
            assert newest is not None
            await log_.put_step(dataclasses.replace(newest, step=newest.step + 1, parent=newest.step))
        result = await inner_around(operation, key, run, **kw)
        if operation == "put" and "/mail/" in key:
            posted.set()
        return result

    store._around = others_commit_first  # type: ignore[method-assign]
    fold = lambda: _fold_the_pending_post_by_hand(store, "folded")  # noqa: E731
    assert add_while_another_process_folds(log, posted, folded, fold) == "folded"
    posted.clear()
    folded.clear()
    core = runtime.core("a")
    user = PendingCall.by_value(
        "add", ("me/2",), {}, readonly=False, future=ActorFuture(), call_id=uuid.uuid4().hex
    )
    internal = PendingCall(CANCEL, ("no-such-timer",), {}, False, ActorFuture(), uuid.uuid4().hex)
    finished = threading.Event()
    folder = threading.Thread(target=lambda: posted.wait(30) and not finished.is_set() and fold())
    folder.start()
    try:
        assert user.claim() and internal.claim()  # as the actor's queue hands them out
        core._commit([user, internal])  # one batch, as a drain claims queued calls
    finally:
        finished.set()
        posted.set()
        folder.join(60)
        assert not folder.is_alive(), "the other process's fold never ended"
    assert user.future.result(0) == "folded"
    assert internal.future.done()  # it raced after the user call (and lost every race here)


# -- failed calls and compaction ----------------------------------------------------------------
_second_fails: list[bool] = []


@workflow.step(max_retries=0)
def _priced(amount: int) -> int:
    return amount


@workflow.step(max_retries=0)
def _taxed(amount: int) -> int:
    if _second_fails:
        raise ConnectionError("the tax service blinked")
    return amount


@workflow.virtual_actor
class Purse:
    def __init__(self) -> None:
        self.balance = 0

    def pay(self, amount: int) -> Any:
        return self.credit.step(_taxed.step(_priced.step(amount)))

    def credit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def touch(self) -> None:
        pass


def _a_failed_pay() -> str:
    """``pay(5)`` failed in its second step (the first is checkpointed): its call id."""
    purse = Purse.get_or_create("purse")
    _second_fails[:] = [True]
    with pytest.raises(ConnectionError):
        purse.pay.run(5)
    _second_fails.clear()
    (failed,) = _sync.sync(list_failures(vc.get_runtime().store, "purse", None))
    purse.touch.run()
    purse.touch.run()
    return failed.call_id


@pytest.mark.usefixtures("actor_store")
def test_compaction_keeps_a_fresh_failure_record_whose_first_checkpoint_is_old() -> None:
    """A call whose first step was checkpointed long ago (a long-running call, or one resumed
    today that failed again) and whose failure was recorded just now: compaction aged the
    whole group by its first checkpoint and deleted the fresh failure record with it, so the
    call could not be resumed at once, not ``min_age`` after it failed as documented."""
    call_id = _a_failed_pay()
    store = vc.get_runtime().store
    first = task_key("purse", call_id, 0)
    envelope = codec.decode(first, _sync.sync(store.get(first)).data, signing_key=None)
    meta = dict(envelope.meta, time=time.time() - 7200)  # written two hours ago
    meta.pop("parts", None)
    _sync.sync(store.put(first, codec.encode(first, meta, envelope.parts, signing_key=None)))
    _sync.sync(compact(vc.get_runtime().core("purse").log, 1, min_age=3600.0))
    assert workflow.get_status("purse") == workflow.FAILED
    assert vc.get(workflow.resume("purse"), timeout=60) == [5]


@pytest.mark.usefixtures("actor_store")
def test_compaction_that_removes_a_failure_record_says_the_call_can_no_longer_be_resumed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure record older than ``min_age`` goes with compaction (documented): the status
    turned from FAILED to SUCCESSFUL and ``resume`` found nothing, and nothing anywhere said
    that a failed call had been given up. The report lists such calls and a warning names
    each, its method and why."""
    call_id = _a_failed_pay()
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        report = _sync.sync(compact(vc.get_runtime().core("purse").log, 1, min_age=0.0, fresh_window=0.0))
    assert report.unresumable == (call_id,)
    (warning,) = [r.getMessage() for r in caplog.records if call_id in r.getMessage()]
    assert "pay" in warning and "min_age" in warning and "no longer be resumed" in warning
    assert vc.get(workflow.resume("purse"), timeout=60) == []


# -- wait_for_event -----------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_wait_for_event_rides_out_a_transient_read_error_within_its_timeout(store_spec: StoreSpec) -> None:
    """``wait_for_event(timeout=30)`` polls until the event is applied or the timeout passes, but
    one step read failing on the way (a 503) ended the wait at once with that storage error:
    the event was applied, the caller was told the wait failed. It is read again."""
    store = init_switchable(store_spec)
    till = Till.get_or_create("till")
    vc.send_event("till", "paid", 30, event_id="e1")
    failures = [RetryableStorageError("injected: 503", "k")] * 3
    store.fail = lambda op, key: failures.pop() if op == "get" and "/steps/" in key and failures else None
    assert till.wait_for_event("paid", timeout=30, event_id="e1") == 1
    assert not failures
