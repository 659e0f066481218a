"""``call_outcome`` asked by a process that did not post the call: the edges h180 left (review h183).

1. More posts in the inbox than one ask read (``_ELSEWHERE_READS``), none naming the call:
   the answer was "pending", also for a call id never posted: its caller waited and asked
   for good.
2. A post folded between the ask's walk of the steps and its LIST of the inbox (deleted, or
   still listed with the newest cursor applying it): the outcome, never "not found" (a
   caller retrying on that applies the call twice).
3. Every "not found" of ``call_outcome`` is a ``CallNotFoundError`` (a ``LookupError``) whose
   message says what to do.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
import uuid
from typing import Any

import pytest
from actors import OrderLog
from combining_workers import commit_behind_its_back
from test_combining import (
    Switchable,
    fold_the_post_at_step_3,
    foreign_box,
    init_switchable,
    pending_posts,
    post_adds,
)
from test_posting import _give_up_on_c, outcome_once_folded, spec
from test_review_h179_given_up_fold import JsonLog
from test_review_h180_outcome_elsewhere import _as_a_new_process

import vactor_cloud as vc
from vactor_cloud import _sync, poster
from vactor_cloud.compaction import raise_watermark
from vactor_cloud.errors import (
    CallPendingError,
    CommitOutcomeUnknownError,
    DamagedObjectError,
    StorageTimeoutError,
)
from vactor_cloud.keys import posts_prefix
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


def _three_foreign_posts(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str]]:
    """Actor "a" with one call of ours applied and three posts of another process pending
    (bare names: each read costs a GET); asked from here as a new process whose ask reads one
    post per round. The handle and the posted call ids."""
    init_switchable(store_spec, fresh_window=300.0)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    box = foreign_box("a")
    call_ids = [call_id for token in ("other/1", "other/2", "other/3") for call_id in post_adds(box, [token])]
    _a_new_process(store_spec, monkeypatch)
    monkeypatch.setattr(poster, "_ELSEWHERE_READS", 1)
    return handle, call_ids


def _a_new_process(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> Switchable:
    """A runtime as a new process has it (no post given up on known, nothing cached) on the
    same store, wrapped: the wrapper."""
    vc.shutdown()
    _as_a_new_process(monkeypatch)
    return init_switchable(store_spec)


def _count_inbox_requests(store: Any) -> dict[str, int]:
    """Counts of the requests to "a"'s inbox (``list``, ``get``) from here on."""
    counts = {"list": 0, "get": 0}
    inner_around = store._around

    async def count(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation in counts and key.startswith(posts_prefix("a")):
            counts[operation] += 1
        return await inner_around(operation, key, run, **kw)

    store._around = count
    return counts


# -- 1. more posts than one round reads ----------------------------------------------------------
def test_a_call_never_posted_behind_more_posts_than_a_round_reads_is_not_found(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three posts, one read per round, none naming the call: every post is read (a round
    each, one GET per post, one LIST) and the answer is "not found", not pending."""
    handle, _ = _three_foreign_posts(store_spec, monkeypatch)
    counts = _count_inbox_requests(vc.get_runtime().store)
    with pytest.raises(vc.CallNotFoundError) as raised:
        handle.call_outcome(uuid.uuid4().hex)
    assert not raised.value.never
    assert counts == {"list": 1, "get": 3}
    assert len(pending_posts("a")) == 3  # (nothing folded: no fold is queued for "not found")


def test_a_call_in_the_last_round_is_pending_then_its_outcome(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call is in the third post, read in the third round: pending, then (the fold the
    ask queues) its outcome; each call applied once."""
    handle, call_ids = _three_foreign_posts(store_spec, monkeypatch)
    with pytest.raises(CallPendingError):
        handle.call_outcome(call_ids[2])
    assert outcome_once_folded(handle, call_ids[2]) == 4
    assert handle.applied.run() == ["me/0", "other/1", "other/2", "other/3"]


class _ClockPastTheDeadlineAtTheFirstPostRead:
    """``poster``'s ``time``, whose ``monotonic`` jumps past ``Settings.deadline`` once the
    first post body is read (a GET of the inbox): the ask's rounds then stop, whatever the
    host's speed."""

    def __init__(self, store: Any) -> None:
        self.ahead = 0.0
        inner_around = store._around

        async def jump(operation: str, key: str, run: Any, **kw: Any) -> Any:
            if operation == "get" and key.startswith(posts_prefix("a")):
                self.ahead = vc.get_runtime().settings.deadline + 1.0
            return await inner_around(operation, key, run, **kw)

        store._around = jump

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_posts_left_unread_at_the_deadline_are_not_known_yet_not_pending(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rounds stop at ``Settings.deadline``: posts still unread then, none of those read
    naming the call, say "not known yet, ask again later" (``StorageTimeoutError``, as for a
    store that did not answer in time), not "pending" (which a call never posted is not)."""
    handle, _ = _three_foreign_posts(store_spec, monkeypatch)
    counts = _count_inbox_requests(vc.get_runtime().store)
    monkeypatch.setattr(poster, "time", _ClockPastTheDeadlineAtTheFirstPostRead(vc.get_runtime().store))
    with pytest.raises(StorageTimeoutError, match="ask call_outcome again later") as raised:
        handle.call_outcome(uuid.uuid4().hex)
    assert not isinstance(raised.value, CallPendingError)
    assert "2 of the 3 posts in its inbox unread" in str(raised.value)
    assert counts == {"list": 1, "get": 1}
    monkeypatch.setattr(poster, "time", time)
    with pytest.raises(vc.CallNotFoundError):  # (time enough: every post read)
        handle.call_outcome(uuid.uuid4().hex)


def test_a_post_read_damaged_is_read_again_not_taken_for_absent(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one post, which names the call, reads damaged the first time (in transit): the
    ask must not say "not found" (a caller retrying on it applies the call twice once the
    post is folded); read again, it says pending, and then the outcome."""
    handle, call_ids = _three_foreign_posts(store_spec, monkeypatch)
    store = vc.get_runtime().store
    inner_around = store._around
    damaged: list[str] = []

    async def damage_once(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "get" and key.startswith(posts_prefix("a")) and not damaged:
            damaged.append(key)
            raise DamagedObjectError(key, "checksum mismatch (damaged in transit, by the test)")
        return await inner_around(operation, key, run, **kw)

    store._around = damage_once
    with pytest.raises(CallPendingError):
        handle.call_outcome(call_ids[0])
    assert damaged, "no post was read"
    assert outcome_once_folded(handle, call_ids[0]) == 2


# -- 2. folded between the walk and the inbox's LIST ----------------------------------------------
def _fold_at_the_inbox_listing(
    store: Switchable, monkeypatch: pytest.MonkeyPatch, *, delete: bool
) -> list[str]:
    """When the ask is about to list the inbox (once, on the ask's own thread: see
    ``_at_the_inbox_listing``), another process's fold first commits step 3, which applies
    the one pending post (outcome "from step 3"), and deletes the post if ``delete``. The keys
    the fold saw (one)."""
    # (Imported here: that module imports this one.)
    from test_review_h194_outcome_after_delete import _at_the_inbox_listing

    folded: list[str] = []

    def fold() -> None:
        fold_the_post_at_step_3(store, vc.get_runtime().core("a").log)
        folded.extend(_sync.sync(store.inner.list(posts_prefix("a"))))
        if delete:
            _sync.sync(store.inner.delete(folded[0]))

    _at_the_inbox_listing(monkeypatch, fold)
    return folded


def _one_foreign_post_at_step_2(store_spec: StoreSpec) -> tuple[Switchable, str]:
    """Actor "a" at step 2 and one post of another process pending. The store and the post's
    call id."""
    store = init_switchable(store_spec, fresh_window=300.0)
    OrderLog.get_or_create("a").add.run("me/0")  # step 1
    commit_behind_its_back("a")  # step 2
    (call_id,) = post_adds(foreign_box("a"), ["other/1"])
    return store, call_id


@pytest.mark.parametrize("delete", [True, False], ids=["deleted", "still-listed"])
def test_a_post_folded_between_the_walk_and_the_listing_gives_its_outcome(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, delete: bool
) -> None:
    """The walk of the steps sees step 2 (the post pending); before the LIST, step 3 applies
    the post, which is then deleted (or not yet: listed, with the newest cursor applying it).
    The answer is step 3's outcome, from the walk of the steps committed since the first."""
    _, call_id = _one_foreign_post_at_step_2(store_spec)
    folded = _fold_at_the_inbox_listing(_a_new_process(store_spec, monkeypatch), monkeypatch, delete=delete)
    assert vc.get_actor("a").call_outcome(call_id) == "from step 3"
    assert len(folded) == 1, "the ask never listed the inbox"


def test_a_post_still_listed_whose_applying_step_is_compacted_is_applied_not_not_found(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 3 applied the post, whose delete has not happened (still listed); step 4 carries
    nothing of it, and step 3 is gone (compacted). The newest cursor says the post was
    applied: the answer is "applied, its outcome compacted" (``CommitOutcomeUnknownError``),
    not "not found", on which a caller would retry and apply the call twice."""
    store, call_id = _one_foreign_post_at_step_2(store_spec)
    log_ = vc.get_runtime().core("a").log
    three = fold_the_post_at_step_3(store, log_)
    _sync.sync(log_.put_step(dataclasses.replace(three, step=4, parent=3, posted=b"", carried=b"")))
    _sync.sync(raise_watermark(log_, 4))  # a compaction: the watermark first, then the deletes
    _sync.sync(store.inner.delete(log_.step_key(3)))
    _a_new_process(store_spec, monkeypatch)
    with pytest.raises(CommitOutcomeUnknownError, match="was applied") as raised:
        vc.get_actor("a").call_outcome(call_id)
    assert not isinstance(raised.value, CallPendingError)
    assert len(pending_posts("a")) == 1


# -- 3. CallNotFoundError ------------------------------------------------------------------------
def _is_not_found(error: BaseException, *, never: bool) -> None:
    assert isinstance(error, vc.CallNotFoundError) and isinstance(error, LookupError), repr(error)
    assert error.never is never
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.call_id, again.never) == (
        type(error),
        str(error),
        error.call_id,
        never,
    )


def test_a_call_posted_nowhere_is_call_not_found_saying_what_to_do(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle, _ = _three_foreign_posts(store_spec, monkeypatch)
    unknown = uuid.uuid4().hex
    with pytest.raises(LookupError) as raised:
        handle.call_outcome(unknown)
    _is_not_found(raised.value, never=False)
    message = str(raised.value)
    assert unknown in message and "nor pending" in message
    assert "ask again after that" in message and "idempotency key" in message


@pytest.mark.usefixtures("runtime_off")
def test_a_json_actors_call_is_call_not_found(store_spec: StoreSpec) -> None:
    """A json actor's calls are never posted: any call id is not found."""
    store_spec.init()
    JsonLog.get_or_create("j").add.run("x")
    with pytest.raises(vc.CallNotFoundError, match="never posted") as raised:
        vc.get_actor("j").call_outcome(uuid.uuid4().hex)
    _is_not_found(raised.value, never=False)


@pytest.mark.usefixtures(spec.__name__)
def test_our_post_deleted_unapplied_is_call_not_found_never(store_spec: StoreSpec) -> None:
    """Our post given up on, then deleted unapplied (as a folder deletes an expired post):
    the poster's own process is sure: ``CallNotFoundError`` with ``never`` true, saying a
    retry applies it once."""
    handle, call_id = _give_up_on_c(store_spec)
    (key,) = pending_posts("slow")
    _sync.sync(vc.get_runtime().store.delete(key))
    with pytest.raises(vc.CallNotFoundError, match=r"never will be\); retrying it applies it once") as raised:
        handle.call_outcome(call_id)
    _is_not_found(raised.value, never=True)
