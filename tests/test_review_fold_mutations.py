"""Guarantees of the posting and folding path that no test held, from a mutation sweep
(review-h122): each test here was written against a small change to the library (named in its
docstring) that the rest of the suite let pass, and fails with that change applied."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import pickle
import threading
import time
import uuid
from typing import Any

import pytest
from actors import OrderLog
from store_helpers import retune
from test_combining import (
    HANG,
    PagedListing,
    a_fold_of,
    commit_behind_its_back,
    foreign_box,
    init_switchable,
    pending_posts,
    post_adds,
    wait_for,
)
from test_review_clocks import _a_post_applied_and_left_behind
from test_review_posting import _hold_lease_elsewhere

import vactor_cloud as vc
from vactor_cloud import _sync, events, posting
from vactor_cloud import inbox as inbox_module
from vactor_cloud.batch import PendingCall
from vactor_cloud.core import ActorCore
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import CallPendingError, FormatVersionError, IntegrityError, RetryableStorageError
from vactor_cloud.future import ActorFuture
from vactor_cloud.inbox import ActorInbox
from vactor_cloud.inbox_events import encode_event, put_event, serialize_payload
from vactor_cloud.keys import inbox_prefix
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import OUTCOMES_MAGIC, ActorLog
from vactor_cloud.post_cursor import POST_CURSOR, POST_FLOOR, SENDER_TTL
from vactor_cloud.poster import Posted
from vactor_cloud.posting import (
    Post,
    PostBox,
    PostedCall,
    PostInDoubtError,
    PostSender,
    advance_cursor,
    encode_outcomes,
)
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def test_the_post_cursor_never_moves_a_sender_back() -> None:
    """The cursor holds the newest seq applied per sender: a post with a lower seq folded
    later (a copy, a refactor that folds out of order) must not make the sender's applied posts
    look pending again. (Mutation: ``advance_cursor`` taking ``post.seq`` without ``max``.)"""
    now = time.time()
    extra = {POST_CURSOR: {"a" * 16: [5, now - 1.0]}}
    out = advance_cursor(extra, [Post("actors/x/mail/k", "a" * 16, 3, now, ())], now)
    assert out[POST_CURSOR]["a" * 16][0] == 5
    assert posting.applied(out, "a" * 16, 5)


def test_the_post_floor_never_goes_down() -> None:
    """A sender dropped from the cursor raises the floor to its entry's time; a later drop of
    an entry older than the floor must not lower it, or a post left behind between the two
    times (applied under the sender dropped first) is applied again.
    (Mutation: ``out[POST_FLOOR] = max(dropped)``, the step's own floor left out.)"""
    now = time.time()
    floor = now - SENDER_TTL - 10.0
    extra = {POST_FLOOR: floor, POST_CURSOR: {"b" * 16: [1, now - SENDER_TTL - 100.0]}}
    out = advance_cursor(extra, [], now)
    assert POST_CURSOR not in out
    assert posting.floor_of(out) == floor


def _box(sender: PostSender | None = None) -> PostBox:
    return PostBox(MemoryStore(f"mutations-{uuid.uuid4().hex}"), "a", None, sender=sender)


def test_a_new_postbox_of_our_sender_names_its_post_after_our_pending_one() -> None:
    """A core evicted with a post pending (dated ahead of this clock: it observed a step writer
    whose clock runs ahead) is followed by a new core whose PostBox starts from this clock: its
    first post must still sort after the pending one, or a folder, applying posts in key order,
    applies the later post first and then deletes the pending one unapplied (its seq is below
    the cursor). (Mutation: ``PostBox.follow`` doing nothing.)"""
    sender = PostSender()
    old = _box(sender)
    old.observe(time.time() + 60.0, 0.0)  # a writer's clock a minute ahead: our posts dated by it
    pending = old.prepare(())
    new = _box(sender)
    new.follow(pending)
    later = new.prepare(())
    assert later.seq > pending.seq
    assert later.key > pending.key


def test_a_post_read_damaged_stops_the_fold_until_both_count_and_time_ran_out() -> None:
    """A post whose reads fail stops the fold (its sender's later posts must not pass it) until
    its reads failed ``DAMAGED_READS`` times in a row *and* over ``DAMAGED_SECONDS``: many quick
    failures (a burst of damage in transit) or a few slow ones are not enough to skip it.
    (Mutation: ``or`` for ``and`` in ``PostBox.waits_for``.)"""
    box = _box()
    now = time.monotonic()
    key = "actors/a/mail/k"
    box.unreadable[key] = (posting.DAMAGED_READS, now, now)  # many failures, just now
    assert box.waits_for(key)
    box.unreadable[key] = (2, now - 10 * posting.DAMAGED_SECONDS, now)  # few, over a long time
    assert box.waits_for(key)
    box.unreadable[key] = (posting.DAMAGED_READS, now - 10 * posting.DAMAGED_SECONDS, now)
    assert not box.waits_for(key)


@pytest.mark.usefixtures("runtime_off")
def test_a_post_left_behind_dated_exactly_at_the_post_floor_is_not_applied_again(
    store_spec: StoreSpec,
) -> None:
    """The floor is "dated at *or before*": a cursor entry's time is the post's own time when
    the folder's clock ran behind the poster's (``advance_cursor`` takes the later), so once the
    entry is dropped the floor equals the applied post's time to the millisecond, and a copy
    left behind (its folder died before deleting it) is dated exactly at the floor.
    (Mutation: ``written < floor`` for ``written <= floor`` in ``Folder._fold_posts``.)"""
    log, key = _a_post_applied_and_left_behind(store_spec)
    core = vc.get_runtime().core("a")
    three = core.record
    assert three is not None and three.step == 3
    ours = vc.get_runtime().post_sender.id
    cursor = {s: e for s, e in three.extra[POST_CURSOR].items() if s == ours}
    written = posting.identity(key)
    assert written is not None
    extra = {**three.extra, POST_CURSOR: cursor, POST_FLOOR: written}
    four = dataclasses.replace(
        three, step=4, parent=3, writer="dropped-the-entry", extra=extra, posted=b"", carried=b""
    )
    _sync.sync(core.log.put_step(four))
    assert pending_posts("a") == [key]  # still there, young by this process's clock
    log.add.run("me/2")  # loses to step 4, posts, folds what is pending
    applied = log.applied.run()
    assert applied.count("early/0") == 1, applied
    assert applied.count("me/2") == 1, applied


@pytest.mark.usefixtures("runtime_off")
def test_a_holder_whose_renewal_finds_the_lease_taken_over_folds_no_more(store_spec: StoreSpec) -> None:
    """The lease is advisory (exactly-once never depends on it), but it is what keeps two
    processes from folding at once, each losing half its puts to the other: a renewal that
    finds the lease written by another process since (its if-match fails) ends our folding.
    (Mutation: ``Folder._renew_lease`` keeping on after ``write`` answered None.)"""
    # long, and never idle: no renewal, release or lapse of its own while the test looks (a
    # holder that kept folding gives the lease up as its last quarter begins: 450 s, past HANG)
    seconds = 600.0
    store_spec.init(
        settings=vc.Settings(storage="", combine_after=1, combine_window=3600.0, lease_seconds=seconds)
    )
    runtime = vc.get_runtime()
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # lost, posted, took the lease
    core = runtime.core("a")
    assert core._held_until > time.monotonic(), "me/1 did not take the folder lease"
    leases = LeaseStore(runtime.store, "a", runtime.settings.signing_key)
    taken = _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, seconds, 2))
    assert taken is not None  # another process took the lease over (its clock says ours ran out)
    record = core.record
    assert record is not None
    core._held_until = time.monotonic() + 0.4 * seconds  # past half-life: renew now
    core._renew_lease(record.step)
    assert wait_for(lambda: core._held_until == -math.inf), "the holder kept folding"
    assert not core._holding()
    assert _sync.sync(leases.read()).holder == "f" * 16


@pytest.mark.usefixtures("runtime_off")
def test_each_call_of_a_posted_batch_gets_its_own_outcome_from_another_process_fold(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of two calls posted together and folded by another process: each caller gets the
    outcome the step records under its own call id, never its neighbour's. (Mutation: the
    poster's ``_deliver_posted`` looking every call up by the batch's first id: every posting
    test posts one call per batch, or folds its own post.)"""
    store_spec.init(
        settings=vc.Settings(storage="", combine_after=1, combine_window=60.0, commit_timeout=20.0)
    )
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    _hold_lease_elsewhere("a")
    commit_behind_its_back("a")  # step 2: our next put loses, we post and wait
    real_poll = ActorCore._poll_steps
    folded = threading.Event()

    def poll(self: ActorCore, *args: Any, **kwargs: Any) -> bool:
        if not folded.is_set():  # the holder folds our post in step 3, a result per call
            folded.set()
            runtime = vc.get_runtime()
            log_ = ActorLog(runtime.store, "a", signing_key=runtime.settings.signing_key)
            box = PostBox(runtime.store, "a", runtime.settings.signing_key)
            (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
            two = _sync.sync(log_.read_step(2))
            assert two is not None
            outcomes = {c.call_id: Outcome(True, f"result of {c.call_id}") for c in post.calls}
            three = a_fold_of(two, [post], encode_outcomes(outcomes))
            _sync.sync(log_.put_step(three))
        return real_poll(self, *args, **kwargs)

    monkeypatch.setattr(ActorCore, "_poll_steps", poll)
    core = vc.get_runtime().core("a")
    calls = [
        PendingCall.by_value(
            "add", (f"me/{i}",), {}, readonly=False, future=ActorFuture(), call_id=f"{i}" * 32
        )
        for i in (1, 2)
    ]
    core._enqueue(calls[0])  # queued together: one batch, one post
    core.call(calls[1])
    assert folded.is_set(), "the batch was not posted"
    assert [c.future.result(HANG) for c in calls] == [f"result of {c.call_id}" for c in calls]


@pytest.mark.usefixtures("runtime_off")
def test_a_pending_post_is_never_applied_only_when_no_write_may_land_and_it_is_gone(
    store_spec: StoreSpec,
) -> None:
    """After our own fold did not apply our pending post (it stopped at a damaged post before
    it, say), the batch behind it may pass it only if the post will never apply: not while its
    object is still in the mail (a later fold applies it, after the batch that passed it: out
    of order), nor while a write of it in doubt may still land. (Mutations: either check
    dropped from ``Poster._never_applied``; every posting test passed.)"""
    store_spec.init(settings=vc.Settings(storage="", combine_after=1, combine_window=60.0))
    OrderLog.get_or_create("a").add.run("me/0")
    runtime = vc.get_runtime()
    core = runtime.core("a")
    box = PostBox(runtime.store, "a", runtime.settings.signing_key, sender=runtime.post_sender)
    call = PostedCall("add", pickle.dumps((("me/1",), {})), uuid.uuid4().hex)
    there = _sync.sync(box.send(box.prepare((call,))))
    assert not core._never_applied(Posted(there, 1))  # in the mail: a fold applies it yet
    gone = box.prepare((call,))  # never written...
    assert core._never_applied(Posted(gone, 1))
    in_doubt = Posted(gone, 1, doubt=True, may_land_until=time.monotonic() + 60.0)
    assert not core._never_applied(in_doubt)  # ...unless a write of it may still land


@pytest.mark.usefixtures("runtime_off")
def test_a_post_in_doubt_is_remembered_under_the_name_it_may_exist_by(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``send`` found the post's name taken by another's post, wrote it again under a new name,
    and could not tell whether that landed: ``PostInDoubtError.post`` is the post under the new
    name. The poster must keep that one as its pending post (what ``call_outcome`` asks the
    store about, and its next batch follows), not the one it asked ``send`` to write, whose
    key holds another sender's post or nothing. (Mutation: ``Poster._post`` ignoring
    ``exc.post``; every posting test passed.)"""
    store_spec.init(settings=vc.Settings(storage="", combine_after=1, combine_window=60.0))
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    _hold_lease_elsewhere("a")  # nobody folds while the test looks
    commit_behind_its_back("a")  # step 2: our next put loses, we post
    retune(commit_timeout=0.5)  # (after the setup: a loaded host's may pass 0.5 s)
    asked: list[Post] = []
    moved: list[Post] = []

    async def send_in_doubt(self: PostBox, post: Post) -> Post:
        asked.append(post)
        again = self.prepare(post.calls)  # a new name (its seq is not the point here)
        again = dataclasses.replace(again, seq=post.seq)
        moved.append(again)
        raise PostInDoubtError(f"{again.key}: in doubt (injected)", again.key, again)

    monkeypatch.setattr(PostBox, "send_now", lambda self, post: False)
    monkeypatch.setattr(PostBox, "send", send_in_doubt)
    with pytest.raises(CallPendingError):
        log.add.run("me/1")
    assert asked and moved and asked[0].key != moved[0].key
    pending = vc.get_runtime().pending_posts["a"]
    assert pending.doubt
    assert pending.post.key == moved[0].key


@vc.virtual_actor
class EventOrder:
    """Appends each call's token and each ``token`` event's payload, in commit order."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    @vc.virtual_actor.on_event("token")
    def on_token(self, payload: str) -> None:
        self.tokens.append(payload)

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


@pytest.mark.usefixtures("runtime_off")
def test_internal_calls_wait_for_a_pending_post_their_own_fold_did_not_reach(store_spec: StoreSpec) -> None:
    """Our call was posted and given up on (``CallPendingError``); internal calls (here the
    inbox's ``process_events`` marker) cannot be posted and must not pass it: they wait until
    it is applied, folding themselves once the lease is free. A fold that stops at a post read
    damaged (in transit) before ours applies nothing of ours: the internal calls must wait for
    a later fold to apply it, not commit first. (Mutation: ``_wait_behind_our_post`` taking
    every fold of its own for one that settled our post, ``_never_applied`` or not. Events are
    no calls of this process: the inbox's fold applies ``event/2`` in whichever step comes
    first, before our post here, with or without the mutation. Posts read by GET here:
    ``post_names=False``.)"""
    store = init_switchable(store_spec, combine_window=60.0, commit_timeout=5.0, post_names=False)
    actor = EventOrder.get_or_create("a")
    actor.add.run("me/0")  # step 1
    _hold_lease_elsewhere("a")  # nobody folds until it is given up
    post_adds(foreign_box("a"), ["other/0"])  # before ours in the mail
    commit_behind_its_back("a")  # step 2: our next put loses, we post and wait
    retune(commit_timeout=1.5)  # (the wait for a fold nobody makes: 1.5 s, not the 5 s below)
    with pytest.raises(CallPendingError):
        actor.add.run("me/1")
    retune(commit_timeout=5.0)
    vc.send_event("a", "token", "event/2")
    damaged: list[str] = []

    def damage_the_first_read(operation: str, key: str) -> Exception | None:
        if operation == "get" and "/mail/" in key and not damaged:
            damaged.append(key)
            return IntegrityError(key, "injected: damaged in transit")
        return None

    store.fail = damage_the_first_read
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, "a", runtime.settings.signing_key)
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 0.0, 2)) is not None  # given up
    actor.process_events()  # its marker waits behind me/1, folding itself
    assert damaged, "no post was read damaged: the test did not exercise a stopped fold"
    applied = actor.applied.run()
    assert sorted(applied) == ["event/2", "me/0", "me/1", "other/0"], applied  # me/1 first, then the marker


@pytest.mark.usefixtures("runtime_off")
def test_an_event_whose_put_failed_before_landing_is_put_again_not_taken_for_stored(
    store_spec: StoreSpec,
) -> None:
    """``put_event``: an attempt that failed (the answer lost, or the request never sent) is
    resolved by reading the key back; found absent, the event never landed and is put again.
    Taken for stored, ``send_event`` returned an id for an event that is nowhere. (Mutation:
    ``put_event`` returning when the read-back finds nothing; every event test passed.)"""
    store = init_switchable(store_spec)
    actor = EventOrder.get_or_create("a")
    actor.add.run("me/0")
    failed: list[str] = []

    def fail_the_first_inbox_put(operation: str, key: str) -> Exception | None:
        if operation == "put" and "/inbox/" in key and not failed:
            failed.append(key)
            return RetryableStorageError("injected: the put failed before it landed", key)
        return None

    store.fail = fail_the_first_inbox_put
    vc.send_event("a", "token", "event/1", event_id="e1")
    assert failed, "no inbox put failed: the test did not exercise the read-back"
    assert _sync.sync(store.inner.list(inbox_prefix("a"))) == [failed[0]]
    assert actor.process_events() == 1
    assert actor.applied.run() == ["me/0", "event/1"]


class _NotAStorageError(Exception):
    """What no wait may poll through: neither a storage error nor a damaged read."""


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_wait_for_an_event_raises_what_is_no_storage_error_at_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str
) -> None:
    """A wait polls through transient storage errors and reads damaged in transit; anything
    else (a defect, a class that does not load) reaches its caller at once, not a
    ``TimeoutError`` after ``timeout`` (nor no answer, with no timeout), nor after more looks.
    (Mutation: ``_Blips.absorb`` taking every exception for a damaged read: raised at the
    third look; every event test passed.)"""
    store_spec.init()
    EventOrder.get_or_create("a").add.run("me/0")

    looks: list[int] = []

    async def broken(*args: Any, **kwargs: Any) -> Any:
        looks.append(1)
        raise _NotAStorageError("injected")

    monkeypatch.setattr(events, "applied_event", broken)
    with pytest.raises(_NotAStorageError):
        if twin == "sync":
            events.wait_for_event("a", "token", timeout=HANG)
        else:
            asyncio.run(events.wait_for_event_async("a", "token", timeout=HANG))
    assert len(looks) == 1  # not polled again (as a damaged read is, twice)


@pytest.mark.usefixtures("runtime_off")
def test_events_one_process_sends_apply_in_send_order_when_its_clock_steps_back(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inbox order is (sender time, sender, seq): a process's clock stepped back between two
    sends (NTP) must not put its second event first. The sender's time is made monotonic per
    process. (Mutation: ``_SenderClock.stamp`` taking ``time.time()`` as it reads; every
    event test passed.)"""
    store_spec.init()
    actor = EventOrder.get_or_create("a")
    actor.add.run("me/0")
    vc.send_event("a", "token", "event/1")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 120.0)  # stepped back two minutes
    vc.send_event("a", "token", "event/2")
    monkeypatch.setattr(time, "time", real)
    assert actor.process_events() == 2
    assert actor.applied.run() == ["me/0", "event/1", "event/2"]


@pytest.mark.usefixtures("runtime_off")
def test_an_event_first_seen_by_a_paged_listing_waits_for_its_senders_earlier_one(
    store_spec: StoreSpec,
) -> None:
    """A sender's two events, the second sent after the first was stored; an inbox listing of
    several pages saw the second but not the first. The second must not apply in the next
    commit (the first would apply after it): an event first seen by a listing that was no
    single moment waits until a later listing confirms it, and its sender's later events
    wait behind it. (Mutation: ``ActorInbox.fold`` not checking ``_unconfirmed``; the
    fold's own double listing hides it on the ``process_events`` path, and every event test
    passed.)"""
    store_spec.init()
    runtime = vc.get_runtime()
    paged = PagedListing(runtime.store, "/inbox/")
    runtime.store = paged
    actor = EventOrder.get_or_create("a")
    actor.add.run("me/0")
    signing_key = runtime.settings.signing_key
    keys = []
    for i in (1, 2):  # stored as another process would (its sends signal nothing here)
        key, data = encode_event(
            "a", f"e{i}", "token", serialize_payload(f"event/{i}", "json"), "json", signing_key
        )
        _sync.sync(put_event(paged.inner, key, data, name="token", signing_key=signing_key))
        keys.append(key)
    paged.hidden = keys[0]
    inbox = runtime.core("a").inbox
    assert isinstance(inbox, ActorInbox)
    _sync.sync(inbox._refresh())  # one listing (as the background one of a commit): e2 alone
    assert paged.hidden is None, "the listing did not miss e1"
    actor.add.run("me/1")  # folds what the inbox holds
    actor.process_events()
    applied = actor.applied.run()
    assert sorted(applied) == ["event/1", "event/2", "me/0", "me/1"], applied
    assert applied.index("event/1") < applied.index("event/2"), applied


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_whose_first_look_lands_past_the_applying_step_walks_back_to_its_outcome(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poster's first look skips the step being built when it posted: it reads the one
    after. When that step shows our post applied (the cursor is cumulative) but records no
    outcome of ours and carries none (step 3 applied it; step 4 folded something else), the
    outcome is found by walking back, not taken for compacted (``CommitOutcomeUnknownError``).
    (Mutation: ``_poll_steps`` delivering from the step it read whatever it records; killed
    before only by the multi-process hammer test, now and then.)"""
    store_spec.init(
        settings=vc.Settings(storage="", combine_after=1, combine_window=60.0, commit_timeout=20.0)
    )
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    _hold_lease_elsewhere("a")
    commit_behind_its_back("a")  # step 2: our next put loses, we post and wait
    real_poll = ActorCore._poll_steps
    folded = threading.Event()

    def poll(self: ActorCore, *args: Any, **kwargs: Any) -> bool:
        if not folded.is_set():  # the holder folds our post in step 3, then commits step 4
            folded.set()
            runtime = vc.get_runtime()
            log_ = ActorLog(runtime.store, "a", signing_key=runtime.settings.signing_key)
            box = PostBox(runtime.store, "a", runtime.settings.signing_key)
            (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
            two = _sync.sync(log_.read_step(2))
            assert two is not None
            outcomes = {c.call_id: Outcome(True, "from step 3") for c in post.calls}
            three = a_fold_of(two, [post], encode_outcomes(outcomes))
            _sync.sync(log_.put_step(three))
            other = {uuid.uuid4().hex: Outcome(True, "theirs")}
            four = dataclasses.replace(
                three, step=4, parent=3, writer="folder", posted=encode_outcomes(other), carried=b""
            )
            _sync.sync(log_.put_step(four))
        return real_poll(self, *args, **kwargs)

    monkeypatch.setattr(ActorCore, "_poll_steps", poll)
    assert log.add.run("me/1") == "from step 3"
    assert folded.is_set(), "the call was not posted"


def test_a_steps_outcomes_naming_one_call_twice_are_malformed() -> None:
    """A step's outcomes part holds one outcome per call id. One naming a call twice (damaged,
    or written by a defect) is refused whole (``IntegrityError``), not read with one of the
    two taken for the call's outcome. (Mutation: ``_parse_outcomes`` without its duplicate
    check; every test passed.)"""
    one = posting.encode_outcomes({"c" * 32: Outcome(True, "first")})
    two = posting.encode_outcomes({"c" * 32: Outcome(False, ValueError("second"))})
    header = len(OUTCOMES_MAGIC) + 4  # the magic, then the count
    both = one[: len(OUTCOMES_MAGIC)] + (2).to_bytes(4, "big") + one[header:] + two[header:]
    with pytest.raises(IntegrityError):
        posting.decode_outcomes(both, "actors/a/steps/3")
    assert posting.decode_outcomes(one)["c" * 32] == Outcome(True, "first")  # (the layout above)


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_process_events_applies_a_backlog_longer_than_one_commit(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str
) -> None:
    """``process_events`` applies every pending event, in order, however many commits that
    takes (``MAX_EVENTS_PER_COMMIT`` each), and says how many. (Mutation: the async twin's
    ``_process`` folding one round only; every event test passed.)"""
    monkeypatch.setattr(inbox_module, "MAX_EVENTS_PER_COMMIT", 3)
    store_spec.init()
    actor = EventOrder.get_or_create("a")
    actor.add.run("me/0")
    for i in range(8):
        vc.send_event("a", "token", f"event/{i}")
    if twin == "sync":
        assert events.process_events("a") == 8
    else:
        assert asyncio.run(events.process_events_async("a")) == 8
    assert actor.applied.run() == ["me/0", *(f"event/{i}" for i in range(8))]


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_raises_a_newer_format_at_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``call_outcome`` retries reads damaged in transit; a step of a newer format
    (``FormatVersionError``, an ``IntegrityError``) reads the same however often it is read:
    raised at the first try, not read twice more with pauses. (Mutation: ``call_outcome``
    without its own ``except FormatVersionError``: it took the damaged path, raised at the
    third try; every test passed.)"""
    store_spec.init()
    OrderLog.get_or_create("a").add.run("me/0")
    tries: list[int] = []

    def newer(self: ActorCore, call_id: str, scan: int, read: object) -> Outcome:
        tries.append(1)
        raise FormatVersionError("actors/a/steps/1", "upgrade vactor_cloud")

    monkeypatch.setattr(ActorCore, "_look_up_outcome", newer)
    with pytest.raises(FormatVersionError):
        vc.get_actor("a").call_outcome("c" * 32)
    assert len(tries) == 1
