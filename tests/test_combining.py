"""Contention combining (issue 13, ``vactor_cloud.posting``), attacked.

Several OS processes (``shared`` lanes) hammer one actor whose method appends
``"<who>/<seq>"``; afterwards every acknowledged call is applied exactly once,
nothing is applied twice, and each process's calls are applied in the order
it submitted them: with lost responses on post and step puts, a folder
SIGKILLed at each point of a fold, a compaction running beside the posters,
and posters that give up. Single-process tests (every lane) play the other
process with a :class:`~vactor_cloud.posting.PostBox` of their own and check
the details: a foreign post folded once, its outcome in the applying step's
``posted`` part, a stale post deleted unapplied, ``CallPendingError`` and the
later application of the pending call, and the uncontended request count.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import multiprocessing.context
import pickle
import threading
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from actors import OrderLog
from chaos_workers import read_chain
from child_processes import join_all, start_together
from combining_workers import (
    POSTING,
    ChildLog,
    check_once_and_in_order,
    commit_behind_its_back,
    hammer,
)
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import (
    _sync,
    after_commit,
    attempt_stops,
    committer,
    compaction,
    folding,
    holding,
    post_cursor,
    post_objects,
    poster,
    posting,
    step_attempt,
)
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.core import ActorCore
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import (
    CallPendingError,
    CommitOutcomeUnknownError,
    IntegrityError,
    RetryableStorageError,
    StorageTimeoutError,
)
from vactor_cloud.keys import posts_prefix
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.log import ActorLog, StepRecord
from vactor_cloud.post_cursor import POST_CURSOR
from vactor_cloud.poster import Posted
from vactor_cloud.posting import Post, PostBox, PostedCall, advance_cursor, decode_outcomes, encode_outcomes
from vactor_cloud.storage import Blob, ObjectStore
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore, HoldOne
from vactor_cloud.testing.lanes import Lane, StoreSpec

#: These tests exercise behaviour above the storage contract: memory and local, and moto for
#: S3; the shipped conformance suite covers every backend.
pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


_PUT = frozenset({"put"})
_DELETE = frozenset({"delete"})


# -- helpers ------------------------------------------------------------------------------------
class Switchable(FaultyStore):
    """Forwards everything; ``fail(operation, key)`` may return an error to raise instead."""

    def __init__(self, inner: ObjectStore, config: FaultConfig | None = None) -> None:
        super().__init__(inner, config or FaultConfig())
        self.fail: Callable[[str, str], Exception | None] = lambda operation, key: None

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        error = self.fail(operation, key)
        if error is not None:
            raise error
        return await super()._around(operation, key, run, **batch)


def init_switchable(spec: StoreSpec, config: FaultConfig | None = None, **settings: Any) -> Switchable:
    """``vc.init`` on ``spec`` with ``settings``, its store wrapped before any actor is touched.

    ``combine_after`` defaults to 1 here: these tests lose one race on purpose to reach the
    posting path."""
    settings.setdefault("combine_after", 1)
    spec.init(settings=vc.Settings(storage="", **settings))
    runtime = vc.get_runtime()
    store = Switchable(runtime.store, config)
    runtime.store = store
    return store


def foreign_box(actor_id: str) -> PostBox:
    """The posting side of another process (its own sender id) on the same store."""
    runtime = vc.get_runtime()
    return PostBox(runtime.store, actor_id, runtime.settings.signing_key)


def post_adds(box: PostBox, tokens: list[str]) -> list[str]:
    """Post one batch of ``add(token)`` calls from ``box``; their call ids."""
    calls = tuple(PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex) for token in tokens)
    _sync.sync(box.send(box.prepare(calls)))
    time.sleep(0.003)  # the next post gets a later millisecond: post order is key order
    return [c.call_id for c in calls]


def pending_posts(actor_id: str) -> list[str]:
    return _sync.sync(vc.get_runtime().store.list(posts_prefix(actor_id)))


#: how long a wait for what must happen lasts before it is called a hang (it ends as soon as
#: it happened: 10 s was a speed on a loaded host's emulator, not a hang)
HANG = 60.0


def wait_for_no_posts(actor_id: str, seconds: float = HANG, *, leaving: int = 0) -> list[str]:
    """Post deletes run in the background after a commit: wait for them (bounded), until at
    most ``leaving`` posts are left (those no fold deletes yet: skipped ones, say)."""
    deadline = time.monotonic() + seconds
    left = pending_posts(actor_id)
    while len(left) > leaving and time.monotonic() < deadline:
        time.sleep(0.05)
        left = pending_posts(actor_id)
    return left


def a_fold_of(parent: StepRecord, posts: list[Post], posted: bytes, **changes: Any) -> StepRecord:
    """Another process's fold on top of ``parent``: the next step, applying ``posts`` (the post
    cursor advanced past them) with the outcomes ``posted``; ``changes`` set further fields."""
    changes.setdefault("extra", advance_cursor(parent.extra, posts, time.time()))
    return dataclasses.replace(
        parent, step=parent.step + 1, parent=parent.step, writer="folder", posted=posted, **changes
    )


def fold_the_post_at_step_3(store: Switchable, log_: ActorLog) -> StepRecord:
    """Another process's fold: step 3 applies the one pending post (outcome "from step 3")."""
    box = PostBox(store.inner, "a", vc.get_runtime().settings.signing_key)
    (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
    (call,) = post.calls
    two = _sync.sync(log_.read_step(2))
    assert two is not None
    three = a_fold_of(two, [post], encode_outcomes({call.call_id: Outcome(True, "from step 3")}))
    _sync.sync(log_.put_step(three))
    return three


def posting_behind_anothers_lease(
    store_spec: StoreSpec, **settings: Any
) -> tuple[Switchable, Any, Any, LeaseStore]:
    """Actor "a" at step 1 on a wrapped (remote-like) store; another process holds the folder
    lease, and step 2 is committed behind our back: our next call loses its put, posts
    (knowing step 2) and waits for a fold. The store, the handle, the runtime, the leases.
    ``settings``: more of the runtime's."""
    store = init_switchable(store_spec, combine_window=60.0, **settings)
    assert not store.inline
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, "a", runtime.settings.signing_key)
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 60.0, 1)) is not None
    commit_behind_its_back("a")  # step 2
    return store, log, runtime, leases


def hold_step_reads_until_folded(store: Switchable) -> tuple[threading.Event, threading.Event]:
    """Once our post is written (``posted`` set), our step reads wait until the other
    process's fold is done (``folded``): the two events, for ``add_while_another_process_folds``."""
    posted = threading.Event()
    folded = threading.Event()
    inner_around = store._around

    async def hold(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and "/mail/" in key:
            try:
                return await inner_around(operation, key, run, **kw)
            finally:
                posted.set()  # (also when the put's answer is lost: it may have landed)
        if operation == "get" and "/steps/" in key and posted.is_set() and not folded.is_set():
            await asyncio.get_running_loop().run_in_executor(None, folded.wait, 30)
        return await inner_around(operation, key, run, **kw)

    store._around = hold  # type: ignore[method-assign]
    return posted, folded


def fold_at_3_and_forget_at_4(store: Switchable, log_: ActorLog, leases: LeaseStore) -> None:
    """Another process's fold: step 3 applies our pending post (outcome "from step 3") and
    the post is deleted; step 4, by a writer whose clock runs hours ahead, drops our sender
    from the cursor, raising the post floor to the entry's time (and carries nothing); then
    the lease is given up. Only the steps above the one we posted on tell our outcome."""
    three = fold_the_post_at_step_3(store, log_)
    box = PostBox(store.inner, "a", vc.get_runtime().settings.signing_key)
    _sync.sync(box.delete(_sync.sync(box.keys())))  # applied: its folder deleted it
    cursor = dict(three.extra[POST_CURSOR])
    (sender,) = cursor
    forgotten = {k: v for k, v in three.extra.items() if k != POST_CURSOR}
    forgotten[post_cursor.POST_FLOOR] = float(cursor[sender][1])
    four = dataclasses.replace(three, step=4, parent=3, posted=b"", carried=b"", extra=forgotten)
    _sync.sync(log_.put_step(four))
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 0.0, 4)) is not None


def add_while_another_process_folds(
    log: Any, posted: threading.Event, folded: threading.Event, fold: Callable[[], None]
) -> Any:
    """``log.add.run("me/1")`` while a thread, once our post is written, runs ``fold``
    (another process's fold) and then sets ``folded``; the call's result."""

    def fold_as_another_process() -> None:
        try:
            assert posted.wait(30)
            fold()
        finally:
            folded.set()

    folder = threading.Thread(target=fold_as_another_process)
    folder.start()
    try:
        return log.add.run("me/1")
    finally:
        folded.set()
        folder.join(HANG)
        assert not folder.is_alive(), "the other process's fold never ended"


# -- one process, every lane ------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_foreign_post_is_folded_once_and_its_outcome_travels_in_the_applying_step(
    store_spec: StoreSpec,
) -> None:
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    ids = post_adds(foreign_box("a"), ["other/0", "other/1"])
    commit_behind_its_back("a")  # our next commit loses the race, posts, and folds
    assert log.add.run("me/1") == 4  # step 2 (theirs) has our state: other/0, other/1, then ours
    assert log.applied.run() == ["me/0", "other/0", "other/1", "me/1"]
    newest = read_chain("a")[-1]
    outcomes = decode_outcomes(newest.posted)
    assert {k: (o.ok, o.value) for k, o in outcomes.items() if k in ids} == {
        ids[0]: (True, 2),
        ids[1]: (True, 3),
    }
    assert len(outcomes) == 3  # ours too, and nothing copied from earlier steps
    assert any(entry[0] == 0 for entry in newest.extra[POST_CURSOR].values())
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize(
    ("losses", "pause", "lease_pause"),
    [(40, 0.025, 0.0), (4, 0.4, 0.0), (1, 0.025, 0.4)],
    ids=["many-quick", "few-slow", "slow-to-take"],
)
def test_a_folder_whose_puts_keep_losing_keeps_the_lease_while_others_posts_wait(
    store_spec: StoreSpec, losses: int, pause: float, lease_pause: float
) -> None:
    """A racer commits each step number just before our fold's put: our puts lose for a
    while, with another process's post pending. The lease must not be given up as idle
    (no other process's post folded within ``combine_window``): a released lease tells a
    racer that reads it that nobody folds, and it keeps racing. "few-slow": each lost put
    and reload takes longer than ``combine_window`` itself (a loaded store; CI once
    released the lease so on moto). "slow-to-take": taking the lease takes longer than
    ``combine_window`` (a loaded CI run on moto: the holder gave the lease up as idle
    before its first fold, and took it again)."""
    store = init_switchable(store_spec, combine_window=0.3)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    post_adds(foreign_box("a"), ["other/0"])
    commit_behind_its_back("a")  # step 2: our next commit loses, posts, takes the lease, folds
    runtime = vc.get_runtime()
    racer_log = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    started = time.monotonic()
    raced: list[int] = []
    leases_written: list[float] = []
    inner_around = store._around

    async def race_each_fold(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and "/steps/" in key and len(raced) < losses:
            step = int(key.rsplit("/", 1)[1])
            parent = await racer_log.read_step(step - 1)
            assert parent is not None
            await racer_log.put_step(dataclasses.replace(parent, step=step, parent=step - 1, writer="racer"))
            raced.append(step)
            await asyncio.sleep(pause)  # a second or more of lost puts: past combine_window
        if operation == "put" and key.endswith("/lease") and not leases_written:
            await asyncio.sleep(lease_pause)
        result = await inner_around(operation, key, run, **kw)
        if operation == "put" and key.endswith("/lease"):
            leases_written.append((await LeaseStore(store.inner, "a", None).read()).expires)
        return result

    store._around = race_each_fold  # type: ignore[method-assign]
    assert log.add.run("me/1") > 0
    # (taken at once: combine_window after this fold the lease is rightly released as idle)
    written = list(leases_written)
    assert len(raced) == losses and time.monotonic() - started > pause * losses + lease_pause, raced
    assert log.applied.run()[-2:] == ["other/0", "me/1"]
    while written and written[-1] == 0.0:
        written.pop()  # released after the fold, on a loaded host: rightly, as idle
    assert 0.0 not in written, written


class HeldDeletes(HoldOne):
    """Records each delete request's keys; holds the first one until ``release`` is set."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, "delete", "", timeout=30.0)
        self.hold()
        self.sent: list[tuple[str, ...]] = []
        self.in_flight = 0
        #: set when a delete request was sent while another was in flight
        self.overlapped = threading.Event()

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        if operation != "delete":
            return await super()._around(operation, key, run, **batch)
        self.sent.append(batch.get("batch", (key,)))
        if self.in_flight:
            self.overlapped.set()
        self.in_flight += 1
        try:
            return await super()._around(operation, key, run, **batch)
        finally:
            self.in_flight -= 1


@pytest.mark.usefixtures("runtime_off")
def test_where_one_request_deletes_many_a_folds_posts_go_at_once_and_later_folds_share_the_next(
    store_spec: StoreSpec,
) -> None:
    """On a store that deletes many keys per request (S3), a fold's applied posts are deleted at
    once (every listing of the mailbox returns those still there: the folder's critical path);
    the folds that end while that request is in flight wait for it and share the next one, so
    that one request at most is in flight. (It waited 0.25 s to share one with later folds: a
    second request was sent while the first was held.)"""
    spec_store = init_switchable(store_spec, combine_window=60.0)
    runtime = vc.get_runtime()
    store = HeldDeletes(spec_store.inner)
    runtime.store = store
    store.delete_batch = 1000  # as S3's DeleteObjects
    store.inner.delete_batch = 1000
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    post_adds(foreign_box("a"), ["other/0"])
    commit_behind_its_back("a")  # our next commit loses the race, posts, and folds
    log.add.run("me/1")
    assert store.held.wait(60.0), "the first fold's posts were not deleted"
    first = set(store.sent[0])
    post_adds(foreign_box("a"), ["other/1"])
    log.add.run("me/2")  # folds other/1 (our lease): its delete waits for the one in flight
    post_adds(foreign_box("a"), ["other/2"])
    log.add.run("me/3")
    assert not store.overlapped.wait(1.0), f"a second delete went while the first was in flight: {store.sent}"
    store.release.set()
    assert wait_for_no_posts("a") == []
    assert log.applied.run() == ["me/0", "other/0", "me/1", "other/1", "me/2", "other/2", "me/3"]
    assert len(store.sent) == 2, store.sent  # the later folds' posts in one request
    assert first.isdisjoint(store.sent[1])
    assert not store.overlapped.is_set()
    vc.shutdown()


@pytest.mark.parametrize("damage", ["in transit", "in transit, three reads in a row", "at rest"])
@pytest.mark.usefixtures("runtime_off")
def test_a_folder_whose_own_post_waits_behind_a_damaged_read_retries_and_never_hangs(
    store_spec: StoreSpec, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged read of another sender's post ends the fold before it; when our own post
    comes after it, the fold had no calls and returned without settling our call: the caller
    waited forever (a chaos worker hung in the corrupt_read phase). Damaged in transit, the
    next read folds it, also after three damaged reads in a row (at 30 % damaged reads that
    is one post in 37: it used to be skipped for good, and its caller waited out
    ``commit_timeout``); damaged at rest (forged), it is skipped after a few reads over
    ``DAMAGED_SECONDS``, never applied, and our call goes through. (Posts read by GET here:
    ``post_names=False``, none carries itself in its name; forged names: test_posting.py.)"""
    # (1 s, not 2: the skip then waits for DAMAGED_READS reads, about 1.5 s at the 100 ms pauses)
    monkeypatch.setattr(posting, "DAMAGED_SECONDS", 1.0)
    reads = frozenset({"get"})
    if damage == "at rest":
        rule = FaultRule("corrupt_read", operations=reads, key_contains="/mail/", probability=1.0)
    else:
        times = (1,) if damage == "in transit" else (1, 2, 3)
        rule = FaultRule("corrupt_read", operations=reads, key_contains="/mail/", at=times)
    # lease_seconds: the holder's background folds must outlast DAMAGED_SECONDS (below)
    store = init_switchable(
        store_spec,
        FaultConfig((rule,), name="damaged_post_read"),
        combine_window=60.0,
        lease_seconds=30.0,
        post_names=False,
    )
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    post_adds(foreign_box("a"), ["other/0"])  # listed before our own post
    commit_behind_its_back("a")  # our next commit loses the race, posts, and folds
    future = log.add.run_async("me/1")
    if damage != "at rest":
        assert vc.get(future, timeout=20) == 3
        assert store.injected["corrupt_read"] == len(rule.at)
        assert log.applied.run() == ["me/0", "other/0", "me/1"]
    else:
        assert vc.get(future, timeout=20) == 2
        # Read again about twenty times over DAMAGED_SECONDS, with pauses: not a LIST and a
        # GET every few ms (it was hundreds of each).
        assert posting.DAMAGED_READS <= store.injected["corrupt_read"] <= 40, store.injected["corrupt_read"]
        assert log.applied.run() == ["me/0", "me/1"]
        # The lease holder, folding for others while its own callers are quiet, meets a
        # forged post: it too reads it with pauses, then skips it, reading it again only
        # DAMAGED_SECONDS after its last failed read.
        got: list[tuple[float, str]] = []
        inner_around = store._around

        async def count_reads(operation: str, key: str, run: Any, **kw: Any) -> Any:
            if operation == "get":
                got.append((time.monotonic(), key))
            return await inner_around(operation, key, run, **kw)

        store._around = count_reads  # type: ignore[method-assign]
        old = set(pending_posts("a"))  # the first forged post (skipped), maybe ours
        post_adds(foreign_box("a"), ["other/1"])
        [new] = [k for k in pending_posts("a") if k not in old]
        box = vc.get_runtime().core("a")._posts()
        assert wait_for(lambda: box.skipped(new), 30)
        reads = sum(k == new for _, k in got)
        assert posting.DAMAGED_READS <= reads <= 40, reads
        # Skipped: not read again for DAMAGED_SECONDS (it was, with every listing), then once.
        # Timed from its last failed read's start (the skip counts from that read's end, later;
        # not from when this test saw the skip, which a loaded host may see late).
        assert wait_for(lambda: sum(k == new for _, k in got) > reads, 30)
        times = [t for t, k in got if k == new]
        last_failed, again = times[reads - 1], times[reads]
        assert again - last_failed >= posting.DAMAGED_SECONDS, again - last_failed
        assert log.applied.run() == ["me/0", "me/1"]


@pytest.mark.usefixtures("runtime_off")
def test_a_post_damaged_in_transit_until_it_was_skipped_is_applied_by_a_later_clean_read(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of another process's post arrives damaged for longer than the skip rule
    (``DAMAGED_READS`` over ``DAMAGED_SECONDS``): the holder skips it. Skipped is not
    forgotten: its next read, ``DAMAGED_SECONDS`` later, is clean, and the post applies
    once (it used to stay skipped while listed). (Posts read by GET here: ``post_names=False``.)"""
    monkeypatch.setattr(posting, "DAMAGED_SECONDS", 1.0)  # (the skip's wait: 2 s of the suite's time)
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0, post_names=False)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # lost, posted, took the lease: it folds others' posts from now on
    box = vc.get_runtime().core("a")._posts()
    damaged: list[str] = []
    clean = threading.Event()
    inner_around = store._around

    async def damage_until_clean(operation: str, key: str, run: Any, **kw: Any) -> Any:
        result = await inner_around(operation, key, run, **kw)
        if operation == "get" and "/mail/" in key and not clean.is_set():
            damaged.append(key)
            return Blob(result.data[:-1] + bytes([result.data[-1] ^ 1]), result.version)  # a bit flipped
        return result

    store._around = damage_until_clean  # type: ignore[method-assign]
    old = set(pending_posts("a"))  # (our own post, if its delete is still waiting)
    post_adds(foreign_box("a"), ["other/0"])
    [key] = [k for k in pending_posts("a") if k not in old]
    assert wait_for(lambda: box.skipped(key), 30), "the post was never skipped"
    clean.set()  # from now on its reads arrive whole
    assert wait_for(lambda: "other/0" in log.applied.run(), 30), "the skipped post never applied"
    assert log.applied.run() == ["me/0", "me/1", "other/0"]
    assert len(damaged) >= posting.DAMAGED_READS


class _RenamedThenLost(Switchable):
    """Posts under any name but ``taken`` land, and their answers are lost; reading them back fails."""

    def __init__(self, inner: ObjectStore, taken: str) -> None:
        super().__init__(inner)
        self.taken = taken

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        if "/mail/" not in key or key == self.taken or operation not in ("put", "get"):
            return await super()._around(operation, key, run, **batch)
        if operation == "put":
            with contextlib.suppress(Exception):
                await run()
            raise RetryableStorageError(f"{key}: the answer was lost (test)", key)
        raise RetryableStorageError(f"{key}: reading it back failed (test)", key)


@pytest.mark.usefixtures("runtime_off")
def test_a_post_whose_write_ends_in_doubt_after_a_rename_reports_the_name_it_tried_last() -> None:
    """A post's first name was taken by another's post, so the sender wrote it under a new name;
    that write's answer was lost and nothing could be read back. The error must name the post
    as it may exist now (the new name): the sender keeps that one as its post, and asks about
    it later (``call_outcome``). It kept the first name, another sender's post."""
    vc.init("memory://", settings=vc.Settings(storage=""))
    runtime = vc.get_runtime()
    box = foreign_box("a")
    theirs = box.prepare((PostedCall("add", pickle.dumps((("other/0",), {})), uuid.uuid4().hex),))
    _sync.sync(box.send(theirs))
    store = _RenamedThenLost(runtime.store, theirs.key)
    mine = PostBox(store, "a", runtime.settings.signing_key)
    post = dataclasses.replace(
        mine.prepare((PostedCall("add", pickle.dumps((("me/0",), {})), uuid.uuid4().hex),)),
        key=theirs.key,  # the same name as theirs (same millisecond, same random part)
    )
    with pytest.raises(posting.PostInDoubtError) as caught:
        _sync.sync(mine.send(post))
    assert caught.value.post.key != theirs.key
    blob = _sync.sync(runtime.store.get(caught.value.post.key))
    found = post_objects.decode_post(caught.value.post.key, blob.data, runtime.settings.signing_key)
    assert (found.sender, found.seq) == (mine.sender, post.seq)


@pytest.mark.usefixtures("runtime_off")
def test_two_copies_of_one_post_in_one_listing_apply_once(store_spec: StoreSpec) -> None:
    """A sender may leave two copies of one post (same sender and seq) under two names: its
    put's answer was lost and the read-back arrived damaged, so it wrote the post again under
    a new name. A fold that lists both must apply the calls once (the chaos suite's mixed
    profile applied one call twice)."""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = foreign_box("a")
    post = box.prepare((PostedCall("add", pickle.dumps((("other/0",), {})), uuid.uuid4().hex),))
    _sync.sync(box.send(post))
    again = dataclasses.replace(post, key=box._named(post.seq, post.calls).key)
    _sync.sync(box.send(again))
    assert len(pending_posts("a")) == 2
    commit_behind_its_back("a")
    log.add.run("me/1")  # loses, posts, folds both copies and its own post
    wait_for(lambda: "other/0" in log.applied.run())
    # Once each. (Their order is not promised across processes: under load our cache may have
    # gone stale first, and me/1 raced and won before a later fold took the posts.)
    assert sorted(log.applied.run()) == ["me/0", "me/1", "other/0"]
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_a_copy_of_the_folders_own_post_applies_its_calls_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our own post landed twice (its first write's answer was lost, and the sender wrote it
    again under a new, later name): the fold that takes our calls meets the first copy
    before our post. Our calls go in once, and both copies are deleted."""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    send = PostBox.send

    async def send_twice(self: PostBox, post: Post) -> Post:
        await send(self, post)  # the first copy, taken for lost
        return await send(self, dataclasses.replace(post, key=self._named(post.seq, post.calls).key))

    monkeypatch.setattr(PostBox, "send", send_twice)
    monkeypatch.setattr(PostBox, "send_now", lambda self, post: False)
    commit_behind_its_back("a")
    assert log.add.run("me/1") == 2  # loses, posts (two copies), folds
    monkeypatch.undo()
    assert log.applied.run() == ["me/0", "me/1"]
    assert wait_for_no_posts("a") == []


@pytest.mark.parametrize("stop", ["damaged", "full"])
def test_a_fold_that_stops_early_does_not_pass_an_earlier_post_of_ours(stop: str) -> None:
    """The folder's earlier post (seq 4) is still pending (its caller got CallPendingError);
    its next post (seq 5) was never written (every attempt failed). The fold stops before
    seq 4, at a damaged post or a full batch: it must not apply seq 5 directly, which would
    pass seq 4 (out of order) and leave it stale, never applied."""
    now = int(time.time() * 1000)
    me, other = "f" * 16, "a" * 16

    def post(ms: int, sender: str, seq: int, call: str) -> Post:
        return Post(
            posts_prefix("a") + posting.post_name(ms, 1),
            sender,
            seq,
            ms / 1000,
            (PostedCall("add", b"", call),),
        )

    first = post(now, other, 0, "x0")
    second = post(now + 1, other, 1, "x1")
    mine_4 = post(now + 2, me, 4, "f4")
    mine_5 = post(now + 5, me, 5, "f5")  # ours now: never written
    readable = (second, mine_4) if stop == "damaged" else (first, second, mine_4)
    box = types.SimpleNamespace(
        waits_for=lambda key: key == first.key, cached=lambda key: None, unsure=lambda key: False
    )
    fake = types.SimpleNamespace(
        env=types.SimpleNamespace(settings=types.SimpleNamespace(max_batch=1)),
        _read_posts=lambda keys: [p for p in readable if p.key in keys],
        _posts=lambda: box,
    )
    base = types.SimpleNamespace(extra=advance_cursor({}, [dataclasses.replace(mine_4, seq=3)], time.time()))
    batch = ["<the batch of seq 5>"]
    keys = [first.key, second.key, mine_4.key]
    calls, folded, _ = ActorCore._fold_posts(fake, Posted(mine_5, 0), batch, base, keys)  # type: ignore[arg-type]
    assert mine_5 not in folded and batch[0] not in calls, (calls, folded)


@pytest.mark.usefixtures("runtime_off")
def test_a_lost_post_answer_with_damaged_read_backs_leaves_one_copy(store_spec: StoreSpec) -> None:
    """The post's put lands but its answer is lost; every read-back then arrives damaged for a
    while. The sender must not take its own post for another's and write a second copy. (A
    read-back is a GET of the post, whatever its name; this box writes bare names.)"""
    faults = FaultConfig(
        (
            FaultRule("lost_response", operations=_PUT, key_contains="/mail/", at=(1,), retryable=False),
            FaultRule("corrupt_read", operations=frozenset({"get"}), key_contains="/mail/", at=(1, 2, 3)),
        ),
        name="lost_then_damaged",
    )
    store = init_switchable(store_spec, faults)
    box = PostBox(store, "a", None)
    post = box.prepare((PostedCall("add", pickle.dumps((("other/0",), {})), uuid.uuid4().hex),))
    assert _sync.sync(box.send(post)) == post
    assert store.injected["corrupt_read"] >= 1
    assert pending_posts("a") == [post.key]


@pytest.mark.usefixtures("runtime_off")
def test_a_post_left_behind_after_its_fold_is_deleted_unapplied(store_spec: StoreSpec) -> None:
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = foreign_box("a")
    post_adds(box, ["other/0"])
    [key] = pending_posts("a")
    data = _sync.sync(store.inner.get(key)).data
    commit_behind_its_back("a")
    log.add.run("me/1")  # folds other/0
    assert wait_for_no_posts("a") == []
    # A folder that died between its step put and the delete leaves the post behind:
    _sync.sync(store.inner.put(key, data, mode="create"))
    log.add.run("me/2")  # still within combine_window: posts, and finds the stale post
    assert log.applied.run().count("other/0") == 1
    assert wait_for_no_posts("a") == []


def wait_for(condition: Callable[[], bool], seconds: float = HANG) -> bool:
    """Whether ``condition()`` held at some call within ``seconds`` (polled; True at once then).

    Not asked again once it held: a condition that can stop holding (a lease the holder then
    released) was true, and a second call answered False (a loaded moto run failed so)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.usefixtures("runtime_off")
def test_a_fold_whose_post_deletes_fail_leaves_the_posts_to_a_later_fold_which_deletes_them_unapplied(
    store_spec: StoreSpec,
) -> None:
    # lease_seconds: the deletes are left to the holder's background folds, which stop once
    # its lease (never renewed while it folds nothing) nears its end: 1.5 s by default,
    # too short for these steps on a loaded emulator.
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = foreign_box("a")
    post_adds(box, ["other/0"])
    post_adds(box, ["other/1"])
    refused: list[str] = []

    def refuse_post_deletes(operation: str, key: str) -> Exception | None:
        if operation == "delete" and "/mail/" in key:
            refused.append(key)
            return RetryableStorageError("injected: the post delete failed", key)
        return None

    store.fail = refuse_post_deletes
    commit_behind_its_back("a")
    assert log.add.run("me/1") == 4  # folds other/0, other/1 and its own post
    assert wait_for(lambda: bool(refused))
    assert len(pending_posts("a")) == 3  # every delete failed: all left behind
    store.fail = lambda operation, key: None
    assert wait_for_no_posts("a") == []  # a later fold found them stale and deleted them
    assert log.add.run("me/2") == 5
    assert log.applied.run() == ["me/0", "other/0", "other/1", "me/1", "me/2"]


@pytest.mark.usefixtures("runtime_off")
def test_a_post_delete_failing_in_the_middle_leaves_only_its_posts_and_nothing_applies_twice(
    store_spec: StoreSpec,
) -> None:
    # Two keys a delete request: the fold's four posts take two requests, the second fails.
    faults = FaultConfig(
        (FaultRule("fail_before", operations=_DELETE, key_contains="/mail/", at=(2,)),), name="middle"
    )
    store = init_switchable(store_spec, faults, combine_window=60.0, lease_seconds=30.0)  # as above
    store.delete_batch = 2
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = foreign_box("a")
    for n in range(3):
        post_adds(box, [f"other/{n}"])
    commit_behind_its_back("a")
    assert log.add.run("me/1") == 5
    assert wait_for_no_posts("a") == []
    assert dict(store.injected) == {"fail_before": 1}
    assert store.seen["delete"] >= 3  # the failed request's posts were deleted by a later fold
    assert log.add.run("me/2") == 6
    assert log.applied.run() == ["me/0", "other/0", "other/1", "other/2", "me/1", "me/2"]


@pytest.mark.usefixtures("runtime_off")
def test_a_lost_response_on_a_batch_post_delete_deletes_them_and_applies_nothing_twice(
    store_spec: StoreSpec,
) -> None:
    faults = FaultConfig(
        (FaultRule("lost_response", operations=_DELETE, key_contains="/mail/", at=(1,)),), name="lost"
    )
    store = init_switchable(store_spec, faults, combine_window=60.0)
    store.delete_batch = 10  # one request for the fold's posts, whatever the backend
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = foreign_box("a")
    post_adds(box, ["other/0"])
    post_adds(box, ["other/1"])
    commit_behind_its_back("a")
    assert log.add.run("me/1") == 4
    assert wait_for(lambda: store.injected["lost_response"] == 1)
    assert wait_for_no_posts("a") == []
    assert log.add.run("me/2") == 5
    assert log.applied.run() == ["me/0", "other/0", "other/1", "me/1", "me/2"]


@pytest.mark.usefixtures("runtime_off")
def test_posts_whose_delete_failed_are_listed_again_once_it_finished_and_deleted_ones_never(
    store_spec: StoreSpec,
) -> None:
    store = init_switchable(store_spec)
    store.delete_batch = 2
    box = foreign_box("a")
    for n in range(3):
        post_adds(box, [f"other/{n}"])
    keys = _sync.sync(box.keys())
    assert len(keys) == 3
    # The second request (the third post) fails; the first deletes two posts.
    store.fail = lambda operation, key: (
        RetryableStorageError("injected", key) if operation == "delete" and key == keys[2] else None
    )
    before = time.monotonic()
    _sync.sync(box.delete(keys))  # a failure is not raised: the posts wait for the next fold
    assert pending_posts("a") == [keys[2]]
    # A listing that began before the delete finished may predate it: all three hidden.
    assert box._listed(list(keys), before) == []
    # One that began after: the post left behind is there again, for the next fold.
    assert _sync.sync(box.keys()) == [keys[2]]


@pytest.mark.usefixtures("runtime_off")
def test_lost_responses_on_the_post_put_and_on_the_folding_step_put_apply_once(
    store_spec: StoreSpec,
) -> None:
    faults = FaultConfig(
        (
            FaultRule("lost_response", operations=_PUT, key_contains="/mail/", at=(1,), retryable=False),
            # the folding commit's put of step 3 lands, its answer is lost
            FaultRule("lost_response", operations=_PUT, key_contains=f"steps/{3:020d}", at=(1,)),
        ),
        name="lost",
    )
    store = init_switchable(store_spec, faults, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    commit_behind_its_back("a")  # step 2
    assert log.add.run("me/1") == 2
    assert dict(store.injected) == {"lost_response": 2}
    assert log.applied.run() == ["me/0", "me/1"]
    assert [r.step for r in read_chain("a")] == [0, 1, 2, 3]
    assert wait_for_no_posts("a") == []


def give_up_on_a_post(
    store: Switchable, call: Callable[[Any], Any] = lambda log: log.add.run("me/1"), **bounds: Any
) -> tuple[Any, CallPendingError]:
    """``me/0`` commits; ``call(log)`` (``me/1``) loses a race and posts, and every step put is
    refused until ``commit_timeout``: its caller gets CallPendingError with the post still there.
    ``bounds``: settings (``deadline=0.5``, ...) set after ``me/0``, not to bound the setup."""
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    if bounds:
        retune(**bounds)
    commit_behind_its_back("a")
    refused = RetryableStorageError("injected: step puts refused", "k")
    store.fail = lambda op, key: refused if op == "put" and "/steps/" in key else None
    with pytest.raises(CallPendingError) as raised:
        call(log)
    return log, raised.value


def give_up_when_the_fold_is_refused(monkeypatch: pytest.MonkeyPatch, refusals: int = 1) -> None:
    """For a posted call under a long ``commit_timeout`` (:func:`give_up_on_a_post`): its
    deadline passes the moment the store fails the step put of its own fold for the
    ``refusals``-th time (it took the free folder lease: this process holds it when its caller
    gets CallPendingError, and its rounds of serving fold the post once the store heals, with
    no other call). Once: later commits are left alone.

    Under a short ``commit_timeout`` (0.3 s, 1 s) that held only while requests were quick: with
    0.1 s per request the deadline passed while the call's post was written, it gave up
    before trying the lease, nobody held it, and the post waited for the next call."""
    storage_failed = ActorCore._storage_failed
    failed: list[bool] = []

    def deadline_passes_at_the_refusal(core: ActorCore, c: Any, exc: Exception) -> Any:
        if c.fold and c.posted is not None and len(failed) < refusals:
            failed.append(True)
            if len(failed) == refusals:
                c.give_up_at = -math.inf
        return storage_failed(core, c, exc)

    monkeypatch.setattr(ActorCore, "_storage_failed", deadline_passes_at_the_refusal)


def heal_and_fold(store: Switchable, log: Any) -> Any:
    """The outage of :func:`give_up_on_a_post` is over: ``me/2`` posts behind the pending post
    and folds both; its result. Not under the outage's short ``commit_timeout``: on a loaded
    emulator that fold took longer, and me/2 was given up on too (CallPendingError, in 1 of 3
    full runs on moto in test_review_actor_cache's twin)."""
    store.fail = lambda op, key: None
    retune(commit_timeout=HANG)
    return log.add.run("me/2")


def gave_up_then_folded(
    store: Switchable, call: Callable[[Any], Any] | None = None, **bounds: Any
) -> tuple[Any, CallPendingError]:
    """:func:`give_up_on_a_post` (with ``call`` and ``bounds``, if given); then the store heals
    and ``me/2`` folds both, its post deleted. (The log, the CallPendingError.)"""
    if call is None:
        log, raised = give_up_on_a_post(store, **bounds)
    else:
        log, raised = give_up_on_a_post(store, call, **bounds)
    assert heal_and_fold(store, log) == 3  # folds both
    assert wait_for_no_posts("a") == []
    return log, raised


def gave_up_then_left_the_cursor(
    store: Switchable, call: Callable[[Any], Any] | None = None, **bounds: Any
) -> tuple[Any, CallPendingError, StepRecord]:
    """:func:`gave_up_then_folded`; then another writer commits a step whose cursor no longer
    names our sender (as after ``SENDER_TTL`` without a post), dated now. (The log, the
    CallPendingError, that step.)"""
    log, raised = gave_up_then_folded(store, call, **bounds)
    core = vc.get_runtime().core("a")
    mine = core.record
    assert mine is not None and POST_CURSOR in mine.extra
    later = dataclasses.replace(
        mine,
        step=mine.step + 1,
        parent=mine.step,
        writer="someone-else",
        extra={k: v for k, v in mine.extra.items() if k != POST_CURSOR},
        posted=b"",
        carried=b"",
        time=time.time(),
    )
    _sync.sync(core.log.put_step(later))
    return log, raised, later


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_that_gives_up_gets_call_pending_and_its_call_applies_once_in_order_later(
    store_spec: StoreSpec,
) -> None:
    store = init_switchable(store_spec, combine_window=60.0)
    log, raised = give_up_on_a_post(store, commit_timeout=0.3)
    assert isinstance(raised, vc.errors.CommitOutcomeUnknownError)
    assert len(raised.call_ids) == 1
    assert len(pending_posts("a")) == 1  # the post waits for a fold
    assert heal_and_fold(store, log) == 3  # posts after its pending post, folds both in post order
    assert log.applied.run() == ["me/0", "me/1", "me/2"]
    assert wait_for_no_posts("a") == []
    if hasattr(vc.get_actor("a"), "call_outcome"):
        outcome = vc.get_actor("a").call_outcome(raised.call_ids[0])  # type: ignore[attr-defined]
        assert outcome == 2


@pytest.mark.usefixtures("runtime_off")
def test_a_call_given_up_on_is_remembered_without_its_arguments(store_spec: StoreSpec) -> None:
    """``call_outcome`` keeps up to 10,000 posts whose callers gave up: by count, so each must
    be small, whatever the call's arguments (a megabyte each would be 10 GB). What it needs
    is the post's key, sender and seq; the arguments are in the stored post."""
    store = init_switchable(store_spec, combine_window=60.0)
    big = "me/1" + "x" * 1_000_000
    log, raised = give_up_on_a_post(store, lambda log: log.add.run(big), commit_timeout=0.3)
    (call_id,) = raised.call_ids
    remembered = poster._GAVE_UP[(store.url, "a", call_id)]
    assert sum(len(call.arguments) for call in remembered.post.calls) < 1000
    assert heal_and_fold(store, log) == 3  # the pending post applies first, from the stored post
    assert log.applied.run() == ["me/0", big, "me/2"]
    assert vc.get_actor("a").call_outcome(call_id) == 2  # type: ignore[attr-defined]


@pytest.mark.usefixtures("runtime_off")
def test_a_keyed_call_given_up_on_in_one_store_says_nothing_of_another_store(store_spec: StoreSpec) -> None:
    """A keyed call's id derives from the actor id and its key, so the same call in another
    store (a process that works on staging, then on production) has the same id. What this
    process remembers of giving up on it in the first store must not answer for the second:
    there the call committed, and "not applied (and never will be)" would be false."""
    store = init_switchable(store_spec, combine_window=60.0)
    _, raised = give_up_on_a_post(
        store, lambda log: log.add.options(idempotency_key="k").run("me/1"), commit_timeout=0.3
    )
    (call_id,) = raised.call_ids
    vc.shutdown()
    vc.init(settings=vc.Settings(storage=f"memory://other-{uuid.uuid4().hex}", combine_window=60.0))
    other = OrderLog.get_or_create("a")
    assert other.add.options(idempotency_key="k").run("me/1") == 1  # applied here, not posted
    with pytest.raises(LookupError, match="no posted call"):
        vc.get_actor("a").call_outcome(call_id)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("runtime_off")
def test_a_call_given_up_on_is_remembered_without_the_steps_its_wait_walked(store_spec: StoreSpec) -> None:
    """The other part of an entry that grows: the steps its wait read that did not apply it
    (one per step committed meanwhile, up to ``commit_timeout`` of them). Nothing reads them
    once the caller gave up (``call_outcome`` walks from the newest step)."""
    store_spec.init()
    core = vc.get_runtime().core("walked")
    posted = Posted(Post("k", "sender", 1, 0.0, ()), base_step=0, passed=set(range(5000)))
    core._remember_given_up(posted, [types.SimpleNamespace(call_id="c1")])  # type: ignore[list-item]
    assert poster._GAVE_UP[(core.env.store.url, "walked", "c1")].passed == set()


@pytest.mark.usefixtures("runtime_off")
def test_a_fold_that_fails_unexpectedly_tells_its_poster_pending_not_failed(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our batch was posted, and our own fold of it then fails on something unexpected (here
    a defect in applying the batch). The post stays, and a later fold may apply it: the
    caller must hear CallPendingError (with the failure as its cause), not a definite error
    it might retry; the call then applies once, in order."""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    real = step_attempt.apply_batch
    applies: list[int] = []

    runtime = vc.get_runtime()

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        if args[5] is not runtime:
            # Another runtime's (a fold an earlier test's runtime still finishes after its
            # shutdown, on this worker): not ours to count (a CI run failed so on moto)
            return real(*args, **kwargs)
        applies.append(1)
        if len(applies) == 2:  # the first is the lost race's, the second our fold's
            raise RuntimeError("a defect while applying the batch (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(step_attempt, "apply_batch", fails_once)
    commit_behind_its_back("a")
    with pytest.raises(CallPendingError) as raised:
        log.add.run("me/1")  # loses, posts, takes the lease, folds: the apply fails
    assert isinstance(raised.value.__cause__, RuntimeError)
    # The post stayed: our next call folds it before its own (or the lease's background
    # fold already did: this process still holds the lease), never drops it.
    assert log.add.run("me/2") == 3
    assert log.applied.run() == ["me/0", "me/1", "me/2"]
    assert vc.get_actor("a").call_outcome(raised.value.call_ids[0]) == 2


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_finds_a_call_applied_before_its_sender_left_the_cursor(store_spec: StoreSpec) -> None:
    """A poster gave up (CallPendingError); its call was applied later; then its sender left
    the cursor (silent for SENDER_TTL; here a later step without the entry). call_outcome
    must find the outcome in the step that applied it, not answer "not applied (and never
    will be)", which invites a retry that applies the call twice."""
    store = init_switchable(store_spec, combine_window=60.0)
    _, raised, _ = gave_up_then_left_the_cursor(store, commit_timeout=0.3)
    assert vc.get_actor("a").call_outcome(raised.call_ids[0]) == 2


@pytest.mark.usefixtures("runtime_off")
def test_a_post_skipped_for_max_batch_is_not_overtaken_by_a_later_post_of_its_sender(
    store_spec: StoreSpec,
) -> None:
    init_switchable(store_spec, combine_window=60.0, max_batch=3)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    post_adds(foreign_box("a"), ["c/0"])  # sender c, seq 0: fills one slot of the batch
    # Sender a's first batch gave up waiting (CallPendingError) and its next batch was
    # posted: two posts of one sender pending, the first as large as max_batch.
    a = foreign_box("a")
    post_adds(a, ["a/0", "a/1", "a/2"])
    post_adds(a, ["a/3"])
    for i in range(1, 6):  # enough posting commits to fold every pending post
        commit_behind_its_back("a")
        log.add.run(f"me/{i}")
    applied = [t for t in log.applied.run() if not t.startswith("me/")]
    assert applied == ["c/0", "a/0", "a/1", "a/2", "a/3"]


@pytest.mark.usefixtures("runtime_off")
def test_a_post_whose_put_landed_unseen_is_not_applied_again_after_the_batch_raced(
    store_spec: StoreSpec,
) -> None:
    posts = "/mail/"
    faults = FaultConfig(
        (
            # the post lands, its answer is lost; then the store is unreachable for a moment
            FaultRule("lost_response", operations=_PUT, key_contains=posts, at=(1,), retryable=False),
            FaultRule("fail_before", operations=_PUT, key_contains=posts, at=(2, 3, 4, 5)),
            FaultRule("fail_before", operations=frozenset({"get"}), key_contains=posts, at=(1, 2, 3, 4, 5)),
        ),
        name="post_landed_unseen",
    )
    store = init_switchable(store_spec, faults, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # loses the race, cannot tell whether its post landed: stays posted
    assert store.injected["lost_response"] == 1
    log.add.run("me/2")  # still contended: posts, and folds every pending post
    assert log.applied.run() == ["me/0", "me/1", "me/2"]


@pytest.mark.usefixtures("runtime_off")
def test_a_post_that_may_have_landed_is_folded_by_its_poster_once_not_reported_as_retryable(
    store_spec: StoreSpec,
) -> None:
    posts = "/mail/"
    faults = FaultConfig(
        (
            FaultRule("lost_response", operations=_PUT, key_contains=posts, at=(2,), retryable=False),
            FaultRule("fail_before", operations=_PUT, key_contains=posts, at=(3, 4, 5, 6)),
            FaultRule("fail_before", operations=frozenset({"get"}), key_contains=posts, at=(1, 2, 3, 4, 5)),
        ),
        name="post_landed_unseen",
    )
    init_switchable(store_spec, faults, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # lost the race: posted (post 1) and folded; contended from now on
    # Posts at once (post 2): it lands, nothing tells. Neither an error that invites a retry
    # nor a second copy: the batch stays that post, and its poster folds it.
    log.add.run("me/2")
    log.add.run("me/3")
    assert log.applied.run() == ["me/0", "me/1", "me/2", "me/3"]


class LeaseGate(Switchable):
    """Holds every write of the folder lease while ``held`` is set (at most 20 s each);
    ``first_only``: only the first write while it is set; ``passes``: so many writes while
    it is set go through before that (a take, say, whose release is the write to hold)."""

    def __init__(self, inner: ObjectStore, *, first_only: bool = False, passes: int = 0) -> None:
        super().__init__(inner)
        self.held = threading.Event()
        self.waiting = 0
        self.first_only = first_only
        self.gated = 0
        self.passes = passes

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        if operation == "put" and key.endswith("/lease") and self.held.is_set() and self.passes:
            self.passes -= 1
        elif (
            operation == "put"
            and key.endswith("/lease")
            and self.held.is_set()
            and not (self.first_only and self.gated)
        ):
            self.gated += 1
            self.waiting += 1
            deadline = time.monotonic() + 20.0
            while self.held.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            self.waiting -= 1
        return await super()._around(operation, key, run, **batch)


@pytest.mark.usefixtures("runtime_off")
def test_a_writer_that_keeps_winning_with_a_pause_now_and_then_still_reads_the_lease(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that commits back to back never loses a race: it learns that others post and
    wait for a folder (whose puts lose to it) only by reading the lease, once it counts as a
    hot writer. It had to commit 8 times in a row each within 4 puts' time of the one before:
    one longer pause between two calls (a loaded host descheduling it) started the count over,
    and a CI run on the local lane starved the posters for the writer's whole run. Here every
    fourth pause is longer than that; the commits still come at under 4 puts' time apart on
    average.

    The streak's clock is the test's (``folding.time.monotonic`` and the commit times): 30 ms
    per step put, 150 ms per long pause. On the host's clock a loaded host's own pauses
    between commits decided the streak, and the test failed under heavy load."""
    store = init_switchable(store_spec)
    log = OrderLog.get_or_create("a")
    reads: list[str] = []
    clock = [1000.0]
    inner_around = store._around

    async def slow_steps(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "get" and key.endswith("/lease"):
            reads.append(key)
        if operation == "put" and "/steps/" in key:
            clock[0] += 0.03  # puts of 30 ms: back to back means within 0.12 s
        return await inner_around(operation, key, run, **kw)

    store._around = slow_steps  # type: ignore[method-assign]
    count_commit = ActorCore._count_commit
    monkeypatch.setattr(ActorCore, "_count_commit", lambda self, now: count_commit(self, clock[0]))
    test_time = types.SimpleNamespace(monotonic=lambda: clock[0], time=time.time, sleep=time.sleep)
    monkeypatch.setattr(folding, "time", test_time)
    for i in range(40):
        log.add.run(f"me/{i}")
        if i % 4 == 3:
            clock[0] += 0.15  # longer than 4 puts' time (and than 0.1 s)
    assert wait_for(lambda: bool(reads), 10), "the hot writer never read the lease"
    assert log.applied.run() == [f"me/{i}" for i in range(40)]


@pytest.mark.usefixtures("runtime_off")
def test_a_holder_whose_lease_nears_its_end_with_nothing_to_fold_releases_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder folds in the background only while its lease has a quarter left; a lease is
    renewed by folds. Idle for longer than that (but not for ``combine_window``), its folding
    stops: it must release the lease then, not leave it to lapse while posters read it as
    held and wait for it to expire.

    The lease's writes are recorded as they land: the test once read the stored lease after
    ``me/1`` returned and asserted it was held, which on a loaded host (six workers) came
    after the 0.75 s the holder keeps it, and failed though it was taken and released."""
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=1.0)
    landed: list[float] = []  # each lease write that landed: its seconds (0: a release)
    write = LeaseStore.write

    async def recorded(self: LeaseStore, seen: Lease, holder: str, seconds: float, step: int) -> Lease | None:
        mine = await write(self, seen, holder, seconds, step)
        if mine is not None:
            landed.append(seconds)
        return mine

    monkeypatch.setattr(LeaseStore, "write", recorded)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    post_adds(foreign_box("a"), ["other/0"])
    commit_behind_its_back("a")
    log.add.run("me/1")  # lost, posted, took the lease, folded other/0 and its own post
    leases = LeaseStore(store.inner, "a", vc.get_runtime().settings.signing_key)
    # Released once the holder stops folding (after 0.75 s), long before combine_window. (Waited
    # for in ``landed``: the stored lease reads released a moment before the write returns.)
    assert wait_for(lambda: 0.0 in landed, 30), (landed, _sync.sync(leases.read()))
    # taken (then renewed, on a host slow enough for a fold to come in the lease's second half)
    assert landed[0] == 1.0 and landed[-1] == 0.0 and set(landed) == {1.0, 0.0}, landed
    assert _sync.sync(leases.read()).expires == 0.0
    assert log.add.run("me/2") == 4  # and the next call goes through
    assert log.applied.run() == ["me/0", "other/0", "me/1", "me/2"]


@pytest.mark.usefixtures("runtime_off")
def test_a_holder_whose_margin_ran_out_when_its_callers_went_quiet_releases_the_lease(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder's fold ends, and its thread gives the actor up only once the lease's last
    quarter has begun (a loaded host descheduled it; no renewal: the fold came in the first
    half). No round of folding for others starts then, and that round's end was the only place
    that released a lease nearing its end: it was left to lapse, read as held by posters.
    (Injected: the margin runs out just as the actor is given up.)"""
    seconds = 120.0  # never renewed nor lapsed while the test looks
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=seconds)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    core = vc.get_runtime().core("a")
    given_up_late: list[float] = []
    release = ActorCore._release

    def release_late(self: ActorCore, *, serve: bool = True) -> bool:
        if self is core and not given_up_late and self._held_until != -math.inf:
            self._held_until = time.monotonic() + 0.2 * seconds  # in its last quarter now
            given_up_late.append(self._held_until)
        return release(self, serve=serve)

    monkeypatch.setattr(ActorCore, "_release", release_late)
    log.add.run("me/1")  # lost, posted, took the lease, folded its post; then gives the actor up
    assert given_up_late, "the holder did not give the actor up holding the lease"
    leases = LeaseStore(store.inner, "a", vc.get_runtime().settings.signing_key)
    assert wait_for(lambda: _sync.sync(leases.read()).expires == 0.0, 20), _sync.sync(leases.read())
    assert log.add.run("me/2") == 3
    assert log.applied.run() == ["me/0", "me/1", "me/2"]


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("given_up", ["idle", "nearly lapsed"])
def test_a_renewal_landing_after_the_holder_gave_the_lease_up_is_released(
    store_spec: StoreSpec, given_up: str
) -> None:
    """The holder's renewal is in flight when it gives the lease up (idle, or its folding
    stopped as the lease neared its end). The renewal lands and extends a lease nobody folds
    with: it must be released then, not left valid for posters to wait on."""
    # Neither comes before the test says so: a 0.3 s window (idle) and a 1 s lease (nearly
    # lapsed) ran out during me/1 on a slow store (0.1 s per request), and the holder's serving
    # had ended before the renewal below began. Idle is made below (no foreign post ever).
    seconds = 30.0
    store_spec.init(
        settings=vc.Settings(storage="", combine_after=1, combine_window=60.0, lease_seconds=seconds)
    )
    runtime = vc.get_runtime()
    store = runtime.store = LeaseGate(runtime.store)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # lost, posted, took the lease; its loop folds others' posts now
    core = runtime.core("a")
    record = core.record
    assert record is not None
    store.held.set()
    try:
        # past half-life: renew now (its write waits); idle, 4.5 s before the last quarter
        # begins; else 0.3 s before (nearly lapsed)
        left = 0.4 if given_up == "idle" else 0.26
        core._held_until = time.monotonic() + left * seconds
        core._renew_lease(record.step)
        if given_up == "idle":
            core._foreign_at = -math.inf  # no other process's post for combine_window: idle
        assert wait_for(lambda: store.waiting == 1), "the renewal did not start"
        # ...and meanwhile the holder gives the lease up (idle at its next round, or once the
        # lease's last quarter begins)
        assert wait_for(lambda: core._held_until == -math.inf), "the holder kept the lease"
    finally:
        store.held.clear()  # the renewal lands
    leases = LeaseStore(store.inner, "a", runtime.settings.signing_key)
    assert wait_for(lambda: _sync.sync(leases.read()).expires == 0.0), _sync.sync(leases.read())


@pytest.mark.usefixtures("runtime_off")
def test_a_release_that_fails_after_the_lease_was_taken_again_keeps_the_new_lease(
    store_spec: StoreSpec,
) -> None:
    """The idle release is in flight when the process posts again and takes the lease again.
    The release then fails (the lease changed): the process must keep knowing the lease it
    holds (it forgot it, and so never renewed it)."""
    # A lease long enough never to be renewed here: on a loaded host me/1's fold came a
    # half-life (1 s) after the take, and the renewal, not the release, was the write gated.
    settings = vc.Settings(storage="", combine_after=1, combine_window=0.3, lease_seconds=60.0)
    store_spec.init(settings=settings)
    runtime = vc.get_runtime()
    store = runtime.store = LeaseGate(runtime.store, first_only=True, passes=1)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    # Held from before me/1: its idle release comes combine_window after the take, and on a
    # loaded host me/1 returned later than that (the release landed ungated).
    store.held.set()
    try:
        log.add.run("me/1")  # lost, posted, took the lease (the one write let through)
        core = runtime.core("a")
        # (_releasing is assigned once the release began: its write may be held before that)
        released = wait_for(lambda: store.waiting == 1 and core._releasing is not None)
        assert released, "the idle lease was not released"
        stale = core._releasing
        assert stale is not None
        # From here the lease taken again must stay held while the test looks: with the 0.3 s
        # window, me/2's own fold and commit on a loaded moto outlasted it, the holder gave the
        # new lease up as idle before the check below (a repeated run failed so). A window this
        # long also makes me/2 post at once (this process posted lately), not race first.
        runtime.settings = dataclasses.replace(runtime.settings, combine_window=60.0)
        commit_behind_its_back("a")
        log.add.run("me/2")  # posts, and takes the lease again (not held: first only)
        taken = core._lease
        assert taken is not None and taken.valid() and core._holding()
    finally:
        store.held.clear()  # the release lands on a lease that changed: it fails
    stale.result(HANG)  # failed, and the process has taken note (not: 0.1 s later)
    # The failed release changed nothing: stored is the lease taken again, and the process
    # still holds it (it forgot it: None, or the stale release's).
    stored = _sync.sync(LeaseStore(store.inner, "a", runtime.settings.signing_key).read())
    assert stored == core._lease == taken and stored.valid(), (stored, core._lease, taken)


@pytest.mark.usefixtures("runtime_off")
def test_a_release_that_starts_after_the_lease_was_taken_again_leaves_the_new_lease(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle holder gives the lease up; its release runs in the background, and on a loaded
    host (or an eager store) the process takes the lease again before the release has begun.
    The release must be of the lease given up (if-match on it: it fails), not of whatever the
    process holds when it begins: it released the lease just taken and forgot it.
    (Injected: the release begins only once the lease was taken again.)"""
    settings = vc.Settings(storage="", combine_after=1, combine_window=0.3, lease_seconds=60.0)
    store_spec.init(settings=settings)
    runtime = vc.get_runtime()
    begin = threading.Event()
    waiting = threading.Event()
    release = ActorCore._release_lease

    async def late_release(self: ActorCore, *args: Any) -> None:
        waiting.set()
        deadline = time.monotonic() + 20.0
        while not begin.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await release(self, *args)

    monkeypatch.setattr(ActorCore, "_release_lease", late_release)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    try:
        log.add.run("me/1")  # lost, posted, took the lease; given up as idle 0.3 s on
        core = runtime.core("a")
        assert wait_for(waiting.is_set), "the idle lease was not given up"
        runtime.settings = dataclasses.replace(runtime.settings, combine_window=60.0)
        commit_behind_its_back("a")
        log.add.run("me/2")  # posts, and takes the lease again
        taken = core._lease
        assert taken is not None and taken.valid() and core._holding()
    finally:
        begin.set()  # the release begins now
    releasing = core._releasing
    assert releasing is not None
    releasing.result(HANG)
    stored = _sync.sync(LeaseStore(runtime.store, "a", runtime.settings.signing_key).read())
    assert stored == core._lease == taken and stored.valid() and core._holding(), (stored, core._lease, taken)


@pytest.mark.usefixtures("runtime_off")
def test_a_holder_whose_cached_step_was_dropped_still_folds_others_posts(store_spec: StoreSpec) -> None:
    """A compaction drops the holder's cached step (``forget``) while its loop folds for
    others: a post that comes next must still be folded (the loop looked for work only with
    a cached step, so it folded nothing until the lease was given up)."""
    init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # lost, posted, took the lease: it folds others' posts from now on
    core = vc.get_runtime().core("a")
    assert core._serving or wait_for(lambda: core._serving)
    core.forget()
    post_adds(foreign_box("a"), ["other/0"])
    assert wait_for_no_posts("a", 20) == [], "the post was not folded"
    assert log.applied.run() == ["me/0", "me/1", "other/0"]


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_waits_for_the_idle_lease_release_in_flight(store_spec: StoreSpec) -> None:
    """The lease was given up as idle and its release is still in flight when the process
    shuts down: shutdown waits for it (it closed the store under it, and the lease stayed
    valid for posters to wait on)."""
    # (lease_seconds: idle, not nearly lapsed, is what gives it up: see the next test but one)
    store_spec.init(settings=vc.Settings(storage="", combine_after=1, combine_window=0.3, lease_seconds=30.0))
    runtime = vc.get_runtime()
    store = runtime.store = LeaseGate(runtime.store, passes=1)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    # The take passes, the next lease write (the release) waits: gated before the call, as a
    # fold on a slow store (0.1 s per request) outlasts combine_window, and the holder gave the
    # lease up as idle the moment its call ended, before a gate set after the call.
    store.held.set()
    try:
        log.add.run("me/1")  # lost, posted, took the lease
        assert wait_for(lambda: store.waiting == 1), "the idle lease was not released"
        stopping = threading.Thread(target=vc.shutdown)
        stopping.start()
        time.sleep(0.3)
        assert stopping.is_alive(), "shutdown did not wait for the release in flight"
    finally:
        store.held.clear()
    stopping.join(60)
    assert not stopping.is_alive()
    fresh = store_spec.open()
    try:
        lease = _sync.sync(LeaseStore(fresh, "a", None).read())
    finally:
        _sync.sync(fresh.close())
    assert lease.expires == 0.0, lease


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_with_the_lease_release_stalled_ends_within_the_request_deadline(
    store_spec: StoreSpec,
) -> None:
    """The release of the folder lease never gets an answer (a stalled endpoint): shutdown
    waits for it no longer than the request's deadline (``Settings.timeout``), and the
    lease is left to expire (posters take it over once it has)."""
    # (The setup's requests get the default deadline: 0.5 s from the start failed the creation's
    # GET of HEAD on a loaded moto in a clean-clone CI run, before anything stalled.)
    store_spec.init(settings=vc.Settings(storage="", combine_after=1, combine_window=0.3))
    runtime = vc.get_runtime()
    if runtime.store.request_timeout is None:
        vc.shutdown()
        pytest.skip("the in-process memory store's requests have no deadline: nothing to stall")
    inner = runtime.store
    store = runtime.store = LeaseGate(inner)
    store.request_timeout = inner.request_timeout  # as the runtime set it on the store this wraps
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # lost, posted, took the lease
    store.request_timeout = inner.request_timeout = 0.5  # Settings(timeout=0.5) from here on
    store.held.set()  # every lease write stalls (20 s) from now on
    try:
        stopping = threading.Thread(target=vc.shutdown)
        began = time.monotonic()
        stopping.start()
        stopping.join(15)
        assert not stopping.is_alive(), "shutdown hung on the stalled release"
        assert time.monotonic() - began < 10
    finally:
        store.held.clear()
        stopping.join(30)


@pytest.mark.usefixtures("runtime_off")
def test_a_commit_while_the_idle_lease_release_is_in_flight_races_and_pays_one_put(
    store_spec: StoreSpec,
) -> None:
    """Once the folder lease is given up as idle, the next commit races for its step (one PUT)
    even while the release's write has not landed: it does not read and rewrite its own lease
    on its path (it did: the lease it remembered was still its own and valid)."""
    # lease_seconds: idle is combine_window, before the lease nears its end (or the holder's
    # loop stops without a release); the rest keeps probes and listings off the counted path
    quiet = {"fresh_window": 600.0, "head_interval": 3600.0, "inbox_interval": 3600.0}
    store_spec.init(
        settings=vc.Settings(storage="", combine_after=1, combine_window=0.3, lease_seconds=30.0, **quiet)
    )
    runtime = vc.get_runtime()
    store = runtime.store = LeaseGate(runtime.store, passes=1)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    core = runtime.core("a")
    # From now on the lease's writes after the take (the idle release) wait: gated before the
    # call, which on a slow store outlasts combine_window and gives the lease up as it ends.
    store.held.set()
    try:
        log.add.run("me/1")  # lost, posted, folded: this process took the lease
        assert wait_for(lambda: store.waiting == 1), "the idle lease was not released"
        time.sleep(0.4)  # the combine window passed too
        for _ in range(3):
            record = core.record
            assert record is not None
            with RequestTrace(store).installed() as trace:
                log.add.run("me/x")
            assert [(r.kind, r.key.rsplit("/", 1)[-1]) for r in trace.on_path()] == [
                ("put", f"{record.step + 1:020d}")
            ]
        assert store.waiting == 1  # the release was in flight throughout
    finally:
        store.held.clear()
    leases = LeaseStore(store, "a", runtime.settings.signing_key)
    assert wait_for(lambda: _sync.sync(leases.read()).expires == 0.0)
    assert log.applied.run() == ["me/0", "me/1", "me/x", "me/x", "me/x"]


@pytest.mark.usefixtures("runtime_off")
def test_an_uncontended_warm_commit_is_one_put_and_no_list_also_after_a_contended_spell(
    store_spec: StoreSpec,
) -> None:
    init_switchable(
        store_spec,
        combine_window=0.3,
        lease_seconds=30.0,  # idle (combine_window) comes before the lease nears its end
        head_interval=3600.0,
        fresh_window=600.0,
        inbox_interval=3600.0,
    )
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")

    def assert_one_put_of_the_next_step() -> None:
        record = vc.get_runtime().core("a").record
        assert record is not None
        with RequestTrace(vc.get_runtime().store).installed() as trace:
            log.add.run("me/x")
        assert [(r.kind, r.key.rsplit("/", 1)[-1]) for r in trace.on_path()] == [
            ("put", f"{record.step + 1:020d}")
        ]

    for _ in range(3):
        assert_one_put_of_the_next_step()
    commit_behind_its_back("a")
    before = vc.stats()
    log.add.run("me/1")  # lost, posted, folded: the contended path
    assert vc.stats()["posted_calls"] == before["posted_calls"] + 1
    assert wait_for_no_posts("a") == []
    time.sleep(0.4)  # the combine window passed: race for the next step again
    # The idle lease is released in the background: wait until that write landed (on a
    # loaded moto it once had not, and the next commit wrote the lease on its path).
    leases = LeaseStore(vc.get_runtime().store, "a", vc.get_runtime().settings.signing_key)
    assert wait_for(lambda: _sync.sync(leases.read()).expires == 0.0)
    releasing = vc.get_runtime().core("a")._releasing
    assert releasing is not None
    releasing.result(HANG)  # and the process recorded it (not: 0.05 s later)
    for _ in range(3):
        assert_one_put_of_the_next_step()


@pytest.mark.usefixtures("runtime_off")
def test_a_lease_holder_whose_lease_expired_mid_fold_loses_its_step_and_its_call_applies_once(
    store_spec: StoreSpec,
) -> None:
    """The holder's fold put stalls past its lease; another process takes the lease over and
    commits that step number first. The stalled put loses; the old holder does not fold on a
    lease it lost: it waits as a poster, takes the lease once the other's expired, and its
    call (posted when it lost its first race) applies once."""
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=0.3)
    stalled: list[str] = []
    stalling = threading.Event()
    resume = threading.Event()
    inner_around = store._around

    async def stall_first_put_of_step_3(operation: str, key: str, run: Any, **batch: Any) -> Any:
        if operation == "put" and key.endswith(f"steps/{3:020d}") and not stalled:
            stalled.append(key)
            stalling.set()
            await asyncio.get_running_loop().run_in_executor(None, resume.wait, 30)
        return await inner_around(operation, key, run, **batch)

    store._around = stall_first_put_of_step_3  # type: ignore[method-assign]
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    commit_behind_its_back("a")  # step 2: our next put (of step 2) loses, we post and take the lease
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, "a", runtime.settings.signing_key)
    took_over: list[Lease | None] = []

    def take_over() -> None:
        try:
            assert stalling.wait(30)
            time.sleep(0.35)  # our lease (0.3 s, taken before the put) expired while the put stalls
            seen = _sync.sync(leases.read())
            took_over.append(_sync.sync(leases.write(seen, "0" * 16, 0.3, 2)))
            commit_behind_its_back("a")  # step 3, before the stalled put lands
        finally:
            resume.set()

    other = threading.Thread(target=take_over)
    other.start()
    before = vc.stats().get("leases_taken", 0)
    assert log.add.run("me/1") == 2
    other.join(HANG)
    assert not other.is_alive(), "the other process never took the lease over"
    assert took_over and took_over[0] is not None, "the other process could not take the lease"
    assert log.applied.run() == ["me/0", "me/1"]
    assert stalled, "the fold's put was not stalled"
    assert vc.stats()["leases_taken"] >= before + 2  # taken, lost to the other, taken again
    chain = read_chain("a")
    assert [r.writer for r in chain[2:4]] == ["someone-else", "someone-else"]
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_walking_back_to_its_step_through_damaged_reads_keeps_its_progress(
    store_spec: StoreSpec,
) -> None:
    """Another process's fold applied our post at step 3 and wrote 17 steps after it that do not
    carry its outcomes; every fourth step we read arrives damaged. The walk back from the newest
    step to step 3 must go on past the steps already read after a damaged read, not start
    over: it used to, and a poster never got through 17 reads in a row and waited out
    ``commit_timeout`` (the long chaos profile, 30 % damaged reads, found it)."""
    # commit_timeout: far above the ~60 requests in a row this takes on a loaded emulator; the
    # walk that starts over never ends, so the defect still fails it
    store = init_switchable(store_spec, combine_window=60.0, fresh_window=0.0, commit_timeout=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, "a", runtime.settings.signing_key)
    # Another process holds the folder lease: our next call posts and waits for its fold.
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 60.0, 1)) is not None
    posted = threading.Event()
    folded = threading.Event()
    step_reads = 0
    inner_around = store._around
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)

    async def damage_every_fourth_step_read(operation: str, key: str, run: Any, **kw: Any) -> Any:
        nonlocal step_reads
        if operation == "put" and key.endswith("/steps/" + "0" * 19 + "2") and not posted.is_set():
            # Another writer commits step 2 just before ours (fresh_window 0: every commit
            # probes first, so the race is lost here): we post, knowing step 2.
            one = await log_.read_step(1)
            assert one is not None
            await log_.put_step(dataclasses.replace(one, step=2, parent=1, writer="someone-else"))
        if operation == "put" and "/mail/" in key:
            try:
                return await inner_around(operation, key, run, **kw)
            finally:
                posted.set()  # (also when the put's answer is lost: it may have landed)
        if operation == "get" and "/steps/" in key and posted.is_set():
            if not folded.is_set():
                await asyncio.get_running_loop().run_in_executor(None, folded.wait, 30)
            step_reads += 1
            if step_reads % 4 == 0:
                raise IntegrityError(key, "checksum mismatch (damaged in transit, by the test)")
        return await inner_around(operation, key, run, **kw)

    store._around = damage_every_fourth_step_read  # type: ignore[method-assign]

    def fold() -> None:
        record = fold_the_post_at_step_3(store, log_)
        for step in range(4, 21):  # later steps of that folder, carrying nothing of ours
            record = dataclasses.replace(record, step=step, parent=step - 1, posted=b"", carried=b"")
            _sync.sync(log_.put_step(record))

    assert add_while_another_process_folds(log, posted, folded, fold) == "from step 3"
    assert step_reads >= 20, step_reads  # it did meet damaged reads on its way


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_waiting_on_a_stalled_store_gets_call_pending_in_time_and_its_call_applies_later(
    store_spec: StoreSpec,
) -> None:
    """Another process holds the folder lease; our call posts, and from then on every read
    (GET, LIST) the poster sends hangs, as on a black-holed endpoint. Its wait must end
    with ``CallPendingError`` about ``commit_timeout`` later (each read fails at the
    deadline), not hang; once the store answers again its call applies once, in order,
    before our next one, and its outcome can be asked for."""
    store = init_switchable(store_spec, combine_window=60.0, commit_timeout=3.0, timeout=2.0, deadline=3.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    runtime = vc.get_runtime()
    leases = LeaseStore(store.inner, "a", runtime.settings.signing_key)
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 60.0, 1)) is not None
    commit_behind_its_back("a")  # step 2: our put loses, we post
    posted = threading.Event()
    stalled = threading.Event()
    hung: list[str] = []
    inner_around = store._around

    async def stall_reads_once_posted(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and "/mail/" in key and not posted.is_set():
            try:
                return await inner_around(operation, key, run, **kw)
            finally:
                posted.set()  # (also when the put's answer is lost: it may have landed)
                stalled.set()
        if operation in ("get", "list", "head") and stalled.is_set():
            hung.append(f"{operation} {key.rsplit('/', 2)[-2]}")
            while stalled.is_set():
                await asyncio.sleep(0.05)  # cancelled at the deadline
        return await inner_around(operation, key, run, **kw)

    store._around = stall_reads_once_posted  # type: ignore[method-assign]
    started = time.monotonic()
    try:
        with pytest.raises(CallPendingError) as raised:
            log.add.run("me/1")
        waited = time.monotonic() - started
    finally:
        stalled.clear()
    assert posted.is_set() and hung, "the poster did not wait on the stalled store"
    assert waited < 30, f"the poster's wait took {waited:.1f} s (commit_timeout 3 s, deadline 3 s)"
    assert len(pending_posts("a")) == 1  # its post waits for a fold
    # The store answers again and the lease is given up: our next call posts after the pending
    # one, takes the lease and folds both, in post order.
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 0.0, 2)) is not None
    assert log.add.run("me/2") == 3
    assert log.applied.run() == ["me/0", "me/1", "me/2"]
    assert vc.get_actor("a").call_outcome(raised.value.call_ids[0]) == 2
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_whose_applied_post_a_later_step_forgot_gets_its_outcome_and_does_not_apply_it_again(
    store_spec: StoreSpec,
) -> None:
    """Another process's fold applies our post in step 3 and deletes it; step 4, by a writer
    whose clock runs hours ahead, drops our sender from the cursor (its entry "older" than
    ``SENDER_TTL``), raising the post floor to the entry's time; then the lease is given up.
    Our first look skips step 3 (it reads step 4: no entry of ours), the lease is free, and
    we fold: the cursor does not say our post was applied, and our post is gone, so our calls
    went in "anyway", applied twice (what the five-clock test saw once under load). Our post
    is dated at or before step 4's floor: the steps above the one we posted on tell."""
    store, log, runtime, leases = posting_behind_anothers_lease(store_spec)
    posted, folded = hold_step_reads_until_folded(store)
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)

    def fold() -> None:
        fold_at_3_and_forget_at_4(store, log_, leases)

    assert add_while_another_process_folds(log, posted, folded, fold) == "from step 3"
    assert "me/1" not in log.applied.run(), "our call was applied again, by our own fold"
    assert read_chain("a")[-1].step == 4


def walking_back(
    monkeypatch: pytest.MonkeyPatch, before: Callable[[StepRecord], None] | None = None
) -> threading.Event:
    """Set while a poster walks back over the steps above the one it posted on
    (``Poster._settle_if_folded``); ``before(base)`` runs just before each walk back."""
    walking = threading.Event()
    real = poster.Poster._settle_if_folded

    def settle(self: Any, posted: Posted, batch: Any, base: StepRecord) -> bool:
        if before is not None:
            before(base)
        walking.set()
        try:
            return real(self, posted, batch, base)
        finally:
            walking.clear()

    monkeypatch.setattr(poster.Poster, "_settle_if_folded", settle)
    return walking


def tight_deadline(base: StepRecord) -> None:
    """``Settings.deadline`` 1 s from the walk back on (a ``walking_back`` ``before``): a
    stalled read of it ends within a second. Set from the start of the call, it also bound the
    post's put, which on a loaded moto lane took longer: the post failed unseen, no fold came,
    and the call waited out the other process's lease (CI, 2026-12-07)."""
    retune(deadline=1.0)


class JumpingClock:
    """The ``time`` module as a module under test sees it: ``monotonic()`` runs an hour ahead
    once ``up`` is set."""

    def __init__(self, up: threading.Event) -> None:
        self.up = up

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def monotonic(self) -> float:
        return time.monotonic() + (3600.0 if self.up.is_set() else 0.0)


def commit_timeout_runs_out(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set it, and ``commit_timeout`` has passed for the commit loop and a poster's wait (their
    clock jumps an hour ahead): a caller gives up exactly then, whatever the setup before took
    (a short ``commit_timeout`` raced it, and on a loaded moto lane won: the caller gave up
    before the walk back under test had begun)."""
    up = threading.Event()
    clock = JumpingClock(up)
    monkeypatch.setattr(committer, "time", clock)
    monkeypatch.setattr(step_attempt, "time", clock)
    monkeypatch.setattr(attempt_stops, "time", clock)
    monkeypatch.setattr(after_commit, "time", clock)
    monkeypatch.setattr(holding, "time", clock)
    monkeypatch.setattr(poster, "time", clock)
    return up


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("left", ["nothing", "stray-applying", "stray-not-applying"])
def test_a_forgotten_post_whose_applying_step_is_compacted_before_the_walk_back_gets_outcome_unknown(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, left: str
) -> None:
    """As above, but a compaction (``min_age`` 0) deletes step 3, the one that applied our
    post, just before our walk back reads it: nothing left tells whether our post was applied
    or expired. The caller must get ``CommitOutcomeUnknownError`` saying the outcome "cannot
    be told" (not ``CallPendingError``, not a result), and our own fold must not apply the
    call again. Where step 3 was, a stalled writer's late put may have re-created the number
    since (a stray, below the retention watermark): one that applied our post too
    (``stray-applying``) or not (``stray-not-applying``) is no step of the history, and says
    nothing either way. (A stray was taken for "no step since our post applied it": our fold
    applied the call a second time.)"""
    store, log, runtime, leases = posting_behind_anothers_lease(store_spec)
    posted, folded = hold_step_reads_until_folded(store)
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    step_3 = log_.step_key(3)
    compacted: list[int] = []

    def compact_step_3(base: StepRecord) -> None:
        if folded.is_set() and base.step == 4 and not compacted:
            three = _sync.sync(log_.read_step(3))
            assert three is not None
            report = _sync.sync(compaction.compact(log_, 1, min_age=0.0, fresh_window=0.0))
            compacted.append(report.watermark)
            if left != "nothing":
                stray = dataclasses.replace(three, writer="stalled")
                if left == "stray-not-applying":
                    stray = dataclasses.replace(stray, posted=b"")
                _sync.sync(store.inner.put(step_3, stray.encode(step_3, log_.signing_key), mode="create"))

    walking_back(monkeypatch, compact_step_3)

    def fold() -> None:
        fold_at_3_and_forget_at_4(store, log_, leases)

    with pytest.raises(CommitOutcomeUnknownError) as raised:
        add_while_another_process_folds(log, posted, folded, fold)
    assert compacted == [4], "the compaction did not run before the walk back"
    error = raised.value
    assert type(error) is CommitOutcomeUnknownError, repr(error)
    assert error.actor_id == "a"
    assert error.step == 4
    assert error.reason is not None and "cannot be told" in error.reason
    assert "cannot be told" in str(error)
    assert error.idempotency_key is None
    assert (_sync.sync(log_.read_step(3)) is None) == (left == "nothing")
    # Not applied by our fold, then or later: the next call finds only its own.
    assert log.applied.run() == ["me/0"]
    assert log.add.run("me/2") == 2
    assert log.applied.run() == ["me/0", "me/2"]


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("left", ["nothing", "stray-applying", "stray-not-applying"])
def test_call_outcome_of_a_forgotten_post_whose_applying_step_was_compacted_says_it_cannot_be_told(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, left: str
) -> None:
    """Our caller gave up (``CallPendingError``) while another process held the lease; its
    fold then applied our post in step 3, and step 4 dropped our sender from the cursor (a
    writer an hour ahead). A compaction deletes step 3; a stalled writer's late put may
    re-create it (a stray, with our outcome or without). (``fresh_window`` 0: a compaction
    may delete at once.) ``call_outcome`` walks back from
    step 4: nothing of the history tells whether the call was applied or expired. It must
    raise ``CommitOutcomeUnknownError`` saying so: not ``LookupError`` (never applied: the
    stray without our outcome was taken for a step of the history), nor that the call "was
    applied" (what it said of a compacted step, sure or not)."""
    store, log, runtime, leases = posting_behind_anothers_lease(store_spec)
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    times_up = commit_timeout_runs_out(monkeypatch)
    posting_around = store._around

    async def give_up_once_posted(operation: str, key: str, run: Any, **kw: Any) -> Any:
        result = await posting_around(operation, key, run, **kw)
        if operation == "put" and "/mail/" in key:
            times_up.set()
        return result

    store._around = give_up_once_posted  # type: ignore[method-assign]
    with pytest.raises(CallPendingError) as raised:
        log.add.run("me/1")
    (call_id,) = raised.value.call_ids
    fold_at_3_and_forget_at_4(store, log_, leases)
    three = _sync.sync(log_.read_step(3))
    assert three is not None
    # (min_age 0 is allowed where no writer trusts a cache without reading the watermark)
    retune(fresh_window=0.0)
    assert vc.get_actor("a").compact(1, min_age=0.0).watermark == 4
    if left != "nothing":
        stray = dataclasses.replace(three, writer="stalled")
        if left == "stray-not-applying":
            stray = dataclasses.replace(stray, posted=b"")
        step_3 = log_.step_key(3)
        _sync.sync(store.inner.put(step_3, stray.encode(step_3, log_.signing_key), mode="create"))
    with pytest.raises(CommitOutcomeUnknownError) as unknown:
        vc.get_actor("a").call_outcome(call_id)
    error = unknown.value
    assert type(error) is CommitOutcomeUnknownError, repr(error)
    assert error.reason is not None and "cannot be told" in error.reason, error.reason
    assert log.applied.run() == ["me/0"]


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("fault", ["lost", "stalled-once", "stalled-always"])
def test_a_walk_back_whose_step_read_is_lost_or_stalls_ends_in_time_and_applies_nothing_twice(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The walk back's read of step 3 (which applied our forgotten post) loses its answer
    (``lost``), or gets none within ``Settings.deadline`` (``stalled-once``: that read alone;
    ``stalled-always``: every walk back's, and ``commit_timeout`` runs out meanwhile). The
    call must end, with its outcome (read again) or ``CallPendingError`` naming the timeout,
    and never be applied by our own fold; ``call_outcome`` then tells the outcome once the
    store answers again."""
    store, log, runtime, leases = posting_behind_anothers_lease(store_spec)
    posted, folded = hold_step_reads_until_folded(store)
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    walking = walking_back(monkeypatch, before=tight_deadline)
    times_up = commit_timeout_runs_out(monkeypatch)
    step_3 = log_.step_key(3)
    faulted: list[str] = []
    answering = threading.Event()  # the store answers step 3's reads again
    held_around = store._around

    async def fault_the_walk_back(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "get" and key == step_3 and walking.is_set() and not answering.is_set():
            if fault == "lost" and not faulted:
                faulted.append(fault)
                await held_around(operation, key, run, **kw)
                raise RetryableStorageError("the answer was lost (injected)", key)
            if fault == "stalled-always" or not faulted:
                faulted.append(fault)
                if fault == "stalled-always":
                    times_up.set()
                await asyncio.sleep(HANG)  # (cancelled at the deadline)
        return await held_around(operation, key, run, **kw)

    store._around = fault_the_walk_back  # type: ignore[method-assign]

    def fold() -> None:
        fold_at_3_and_forget_at_4(store, log_, leases)

    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append(add_while_another_process_folds(log, posted, folded, fold))
        except Exception as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    caller.join(HANG)
    answering.set()
    assert not caller.is_alive(), "the call hung on the walk back's read"
    retune(deadline=30.0)
    assert faulted, "no walk back read step 3"
    (result,) = outcome
    if fault == "stalled-always":
        assert isinstance(result, CallPendingError), repr(result)
        assert isinstance(result.__cause__, StorageTimeoutError), repr(result.__cause__)
        assert vc.get_actor("a").call_outcome(result.call_ids[0]) == "from step 3"
    else:
        assert result == "from step 3"
    assert log.applied.run() == ["me/0"], "our call was applied again, by our own fold"
    assert log.add.run("me/2") == 2
    assert log.applied.run() == ["me/0", "me/2"]


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("damage", ["corrupt", "moved", "unsigned"])
def test_a_damaged_or_forged_step_met_on_the_walk_back_is_refused_not_taken_for_the_outcome(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """Step 3, which applied our forgotten post, is damaged at rest when our walk back reads
    it: a byte flipped (``corrupt``), step 2's object put under its key (``moved``), or, where
    objects are signed, rewritten unsigned with a forged outcome (``unsigned``). It must be
    refused as any damaged object is: the caller gets ``CallPendingError`` (whether the call
    was applied cannot be read) with the ``IntegrityError`` naming step 3 as its cause, never
    the forged outcome, and our own fold does not apply the call; ``call_outcome`` raises
    the ``IntegrityError``. (Which read meets it first depends on the timing: most often the
    walk back's, sometimes, on a loaded machine, the poster's probe forward from step 2, which
    must refuse it alike: the test asserted the walk back's and failed so once.)"""
    signing_key = b"walk-back-key" if damage == "unsigned" else None
    store, log, _, leases = posting_behind_anothers_lease(store_spec, signing_key=signing_key)
    posted, folded = hold_step_reads_until_folded(store)
    log_ = ActorLog(store.inner, "a", signing_key=signing_key)
    walking = walking_back(monkeypatch)
    times_up = commit_timeout_runs_out(monkeypatch)
    step_3 = log_.step_key(3)
    refused: list[bool] = []  # (each read of the damaged step 3: on the walk back or not)
    damaged = threading.Event()
    held_around = store._around

    async def count_damaged_reads(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "get" and key == step_3 and damaged.is_set():
            refused.append(walking.is_set())
            times_up.set()  # (its refusal retried until commit_timeout: that is now)
        return await held_around(operation, key, run, **kw)

    store._around = count_damaged_reads  # type: ignore[method-assign]

    def fold() -> None:
        fold_at_3_and_forget_at_4(store, log_, leases)
        three = _sync.sync(log_.read_step(3))
        assert three is not None
        if damage == "corrupt":
            data = bytearray(_sync.sync(store.inner.get(step_3)).data)
            data[len(data) // 2] ^= 0x01
        elif damage == "moved":
            data = bytearray(_sync.sync(store.inner.get(log_.step_key(2))).data)
        else:
            (call_id,) = decode_outcomes(three.posted)
            forged = dataclasses.replace(three, posted=encode_outcomes({call_id: Outcome(True, "forged")}))
            data = bytearray(forged.encode(step_3, None))
        _sync.sync(store.inner.put(step_3, bytes(data)))
        damaged.set()

    with pytest.raises(CallPendingError) as raised:
        add_while_another_process_folds(log, posted, folded, fold)
    assert refused, "nothing read the damaged step 3"
    cause = raised.value.__cause__
    assert isinstance(cause, IntegrityError), repr(cause)
    assert step_3 in str(cause)
    with pytest.raises(IntegrityError, match="/steps/"):
        vc.get_actor("a").call_outcome(raised.value.call_ids[0])
    # No step after the other process's 3 and 4: our own fold did not apply the call again.
    # (Listed, not read: after the probe forward's refusal the cache is still step 2, and a
    # read probes from it into the damaged step 3, refused again.)
    assert _sync.sync(log_.list_steps()) == [0, 1, 2, 3, 4], "our call was applied again, by our own fold"


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("damage", ["stalled", "corrupt"])
def test_a_poster_whose_walk_back_fails_while_another_process_holds_the_lease_hears_why(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """Step 3 applies our post, step 4 shows it applied without our outcomes (a writer that
    does not carry), and the other process keeps the lease: our wait walks back from step 4
    to step 3, whose every read stalls past ``Settings.deadline`` (``stalled``) or is damaged
    at rest (``corrupt``), until ``commit_timeout``. The caller gets ``CallPendingError``, the
    failed read as its cause (it had none: nothing told why the outcome could not be read),
    and ``call_outcome`` tells the outcome once the store answers (or raises the damage)."""
    store, log, runtime, _ = posting_behind_anothers_lease(store_spec)
    posted, folded = hold_step_reads_until_folded(store)
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    walking = walking_back(monkeypatch, before=tight_deadline)
    times_up = commit_timeout_runs_out(monkeypatch)
    step_3 = log_.step_key(3)
    answering = threading.Event()
    held_around = store._around

    async def stall_the_walk_back(operation: str, key: str, run: Any, **kw: Any) -> Any:
        walk_back_read = operation == "get" and key == step_3 and walking.is_set()
        if walk_back_read:
            times_up.set()  # (the failed read retried until commit_timeout: that is now)
        if damage == "stalled" and walk_back_read and not answering.is_set():
            await asyncio.sleep(HANG)  # (cancelled at the deadline)
        return await held_around(operation, key, run, **kw)

    store._around = stall_the_walk_back  # type: ignore[method-assign]

    def fold() -> None:
        three = fold_the_post_at_step_3(store, log_)
        _sync.sync(log_.put_step(dataclasses.replace(three, step=4, parent=3, posted=b"", carried=b"")))
        if damage == "corrupt":
            data = bytearray(_sync.sync(store.inner.get(step_3)).data)
            data[len(data) // 2] ^= 0x01
            _sync.sync(store.inner.put(step_3, bytes(data)))

    try:
        with pytest.raises(CallPendingError) as raised:
            add_while_another_process_folds(log, posted, folded, fold)
    finally:
        answering.set()
        retune(deadline=30.0)
    cause = raised.value.__cause__
    if damage == "stalled":
        assert isinstance(cause, StorageTimeoutError), repr(cause)
        assert vc.get_actor("a").call_outcome(raised.value.call_ids[0]) == "from step 3"
    else:
        assert isinstance(cause, IntegrityError), repr(cause)
        assert step_3 in str(cause)
        with pytest.raises(IntegrityError, match="/steps/"):
            vc.get_actor("a").call_outcome(raised.value.call_ids[0])
    assert log.applied.run() == ["me/0"]


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("later", ["carries", "there", "not-yet"])
def test_a_poster_whose_post_the_skipped_step_applied_gets_the_outcome_recorded_there(
    store_spec: StoreSpec, later: str
) -> None:
    """A poster's first look skips the step after the one it knew when it posted (usually
    built without its post) and reads the one after. (The store is wrapped here, so the
    runtime treats it as remote: each look reads the one step it aims at.) Here the skipped
    step (3) is the one that applied the post: the poster must still get the outcome recorded
    there, never another step's nor an unknown outcome. Step 4 there and carrying step 3's
    outcomes (``carries``): it finds them in step 4, without reading step 3; step 4 there
    without them (``there``, a writer that does not carry): it walks back to step 3; step 4
    not there yet (``not-yet``): it reads step 3."""
    store, log, runtime, _ = posting_behind_anothers_lease(store_spec)
    posted = threading.Event()
    folded = threading.Event()
    reads: list[int] = []
    inner_around = store._around

    async def hold_step_reads_until_folded(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and "/mail/" in key:
            try:
                return await inner_around(operation, key, run, **kw)
            finally:
                posted.set()  # (also when the put's answer is lost: it may have landed)
        if operation == "get" and "/steps/" in key and posted.is_set():
            if not folded.is_set():
                await asyncio.get_running_loop().run_in_executor(None, folded.wait, 30)
            reads.append(int(key.rsplit("/", 1)[1]))
        return await inner_around(operation, key, run, **kw)

    store._around = hold_step_reads_until_folded  # type: ignore[method-assign]
    # The other process reads and writes around the hold (the inner store).
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    before = vc.stats()["posted_calls"]

    def fold() -> None:
        three = fold_the_post_at_step_3(store, log_)
        if later != "not-yet":
            carried = three.posted if later == "carries" else b""
            four = dataclasses.replace(three, step=4, parent=3, posted=b"", carried=carried)
            _sync.sync(log_.put_step(four))

    assert add_while_another_process_folds(log, posted, folded, fold) == "from step 3"
    assert vc.stats()["posted_calls"] == before + 1
    assert (3 in reads) == (later != "carries"), reads
    if later != "not-yet":
        assert 4 in reads, reads


@pytest.mark.usefixtures("runtime_off")
def test_with_combine_after_2_a_single_lost_race_is_raced_again_and_a_second_in_a_row_posts(
    store_spec: StoreSpec,
) -> None:
    """``combine_after=2``: a batch that loses one race catches up and races again (light
    contention: cheaper than posting); one that loses twice in a row posts, and its caller
    still gets its own result, the call applied once."""
    store = init_switchable(store_spec, combine_window=60.0, combine_after=2)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    runtime = vc.get_runtime()
    other = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    beaten = [0]  # how many of our next step puts another writer beats
    inner_around = store._around

    async def another_writer_first(operation: str, key: str, run: Any, **batch: Any) -> Any:
        if operation == "put" and "/steps/" in key and beaten[0] > 0:
            beaten[0] -= 1
            step = int(key.rsplit("/", 1)[-1])
            previous = await other.read_step(step - 1)
            assert previous is not None
            await other.put_step(dataclasses.replace(previous, step=step, parent=step - 1, writer="else"))
        return await inner_around(operation, key, run, **batch)

    store._around = another_writer_first  # type: ignore[method-assign]
    before = vc.stats()
    beaten[0] = 1
    assert log.add.run("me/1") == 2  # lost once, raced again and won
    after = vc.stats()
    assert after["commit_conflicts"] == before["commit_conflicts"] + 1
    assert after["posted_calls"] == before["posted_calls"]
    beaten[0] = 2
    assert log.add.run("me/2") == 3  # lost twice in a row: posted, folded (the lease was free)
    assert vc.stats()["commit_conflicts"] == after["commit_conflicts"] + 2
    assert vc.stats()["posted_calls"] == after["posted_calls"] + 1
    assert log.applied.run() == ["me/0", "me/1", "me/2"]
    assert wait_for_no_posts("a") == []


# -- several OS processes ----------------------------------------------------------------------------
def _run_hammers(
    ctx: multiprocessing.context.ForkServerContext,
    spec: StoreSpec,
    tmp_path: Path,
    actor_id: str,
    workers: dict[str, tuple[int, str | None, int | None]],
    settings: dict[str, Any],
    beside: Callable[[Callable[[], bool]], None] | None = None,
    delays: dict[str, float] | None = None,
    fake_lease: bool = False,
) -> tuple[dict[str, ChildLog], dict[str, int | None]]:
    """Start one ``hammer`` child per worker (name -> (calls, faults JSON, kill_after_fold)).

    A worker named ``victim`` loses its first race on purpose (``lose_first``). ``delays``:
    a worker starts its calls this many seconds after the others."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    # The calls start once every child is imported, loaded and set up (on a busy machine that
    # can take longer than any fixed head start, and a victim set up late is no victim).
    ready = ctx.Queue()
    start = ctx.Value("d", 0.0)
    outs = {who: tmp_path / f"{who}.log" for who in workers}
    procs = {
        who: ctx.Process(
            target=hammer,
            args=(
                spec,
                actor_id,
                who,
                calls,
                str(outs[who]),
                settings,
                faults,
                kill,
                start,
                (delays or {}).get(who, 0.0),
                ready,
                who == "victim" or fake_lease,  # pretending holders: each loses a race first
                fake_lease,
            ),
        )
        for who, (calls, faults, kill) in workers.items()
    }
    start_together(procs.values(), ready, workers, start)
    if beside is None:
        codes = join_all(procs.values())
    else:
        beside(lambda: any(p.is_alive() for p in procs.values()))
        for p in procs.values():
            p.join(240)
        codes = []
        for p in procs.values():
            if p.is_alive():
                p.kill()
                p.join(10)
            codes.append(p.exitcode)
    return (
        {who: ChildLog.read(path) for who, path in outs.items()},
        dict(zip(workers, codes, strict=True)),
    )


def _applied(spec: StoreSpec, actor_id: str) -> list[str]:
    spec.init()
    return vc.get_actor(actor_id).applied.run()


def _posted_calls(logs: dict[str, ChildLog]) -> int:
    """Calls the children posted (their ``vc.stats()["posted_calls"]`` at the end)."""
    total = 0
    for log in logs.values():
        for word in (log.done or "").split():
            if word.startswith("posted="):
                total += int(word.removeprefix("posted="))
    return total


def _posted_steps(actor_id: str) -> int:
    return sum(1 for r in read_chain(actor_id) if r.posted)


@pytest.mark.usefixtures("runtime_off")
def test_processes_hammering_one_actor_apply_each_acknowledged_call_once_in_process_order(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    OrderLog.get_or_create("hot")
    vc.shutdown()
    # 20 calls each (40 until h162): a cursor check off by one (a post whose seq the cursor
    # holds applied again) fails it on local and moto, as at 40
    workers = {f"p{i}": (20, None, None) for i in range(4)}
    logs, codes = _run_hammers(process_context, shared, tmp_path, "hot", workers, POSTING)
    assert set(codes.values()) == {0}, codes
    applied = _applied(shared, "hot")
    assert check_once_and_in_order(logs.values(), applied) == []
    assert sorted(applied) == sorted(t for log in logs.values() for t in log.acked)  # no errors at all
    assert not any(log.errors for log in logs.values()), {w: log.errors for w, log in logs.items()}
    assert _posted_steps("hot") > 0, "no step folded a post: the test did not exercise posting"
    assert wait_for_no_posts("hot") == []


@pytest.mark.usefixtures("runtime_off")
def test_on_a_slow_store_a_writer_that_keeps_winning_does_not_starve_a_poster(
    shared: StoreSpec,
    store_lane: Lane,
    process_context: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
) -> None:
    """Every request takes 120 ms (a far bucket). Six processes start together; one of them
    commits back to back and never loses a race, the others lose and post. The poster's calls must be applied
    while the racer runs, not after it stops. (It used to starve: the racer's commits, a
    put's time apart, never counted as back to back, so it never read the lease and kept
    racing; the folder's probe chased the racer's steps without end; and a folder whose
    puts kept losing gave the lease up as idle.)"""
    if store_lane.name != "local":
        # The regime checked is a store answering every request in 120 ms (injected). On an
        # emulator shared with the rest of the suite, its own queueing adds 10-200 ms per
        # request: there the racer starved the posters in 2 of 4 full-suite runs on moto
        # (never in 7 runs alone or beside CPU hogs). Left open: see docs/performance.md.
        pytest.skip("the 120 ms store is simulated: run on the local lane, whose own time is ~0")
    OrderLog.get_or_create("far")
    vc.shutdown()
    # The racer goes on until every poster is done: starved, the posters are done only once
    # it made all its calls (racer_calls). (It made 60 calls, the last of which had to come
    # after the posters' calls: a loaded host, slowing the posters more than the racer,
    # came close to failing it.)
    racer_calls = 300
    workers: dict[str, tuple[int, str | None, int | None]] = {"racer": (racer_calls, None, None)}
    workers |= {f"p{i}": (3, None, None) for i in range(5)}
    posters_done = tmp_path / "posters-done"
    settings = {**POSTING, "latency": "120", "stop_when": str(posters_done)}
    delays = {f"p{i}": 1.0 for i in range(5)}  # the racer commits alone for a while first

    def stop_the_racer_once_the_posters_are_done(alive: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 600.0  # a hang bound: the racer stops by its count anyway
        while alive() and time.monotonic() < deadline:
            logs = [ChildLog.read(tmp_path / f"p{i}.log") for i in range(5)]
            if all(log.done is not None for log in logs):
                break
            time.sleep(0.05)
        posters_done.touch()

    logs, codes = _run_hammers(
        process_context,
        shared,
        tmp_path,
        "far",
        workers,
        settings,
        beside=stop_the_racer_once_the_posters_are_done,
        delays=delays,
    )
    assert set(codes.values()) == {0}, codes
    applied = _applied(shared, "far")
    assert check_once_and_in_order(logs.values(), applied) == []
    assert sorted(applied) == sorted(t for log in logs.values() for t in log.acked)  # no errors
    assert all(f"p{i}/2" in applied for i in range(5)), applied
    racer = [t for t in applied if t.startswith("racer/")]
    # Every other process's calls applied while the racer still ran (starved, they waited
    # for it to stop: the racer made all its calls).
    assert len(racer) < racer_calls, f"the posters were done only after the racer's {len(racer)} calls"


@pytest.mark.usefixtures("runtime_off")
def test_lost_responses_on_post_and_step_puts_lose_and_duplicate_nothing_across_processes(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    OrderLog.get_or_create("lossy")
    vc.shutdown()
    faults = FaultConfig(
        (
            FaultRule(
                "lost_response", operations=_PUT, key_contains="/mail/", probability=0.3, retryable=False
            ),
            FaultRule(
                "lost_response", operations=_PUT, key_contains="/steps/", probability=0.2, retryable=False
            ),
        ),
        seed=int(time.time()),
        name="lost_posting",
    ).to_json()
    workers = {f"p{i}": (30, faults, None) for i in range(4)}
    logs, codes = _run_hammers(process_context, shared, tmp_path, "lossy", workers, POSTING)
    assert set(codes.values()) == {0}, codes
    applied = _applied(shared, "lossy")
    assert check_once_and_in_order(logs.values(), applied) == [], faults
    assert sum(len(log.acked) for log in logs.values()) > 0
    injected = " ".join(log.done or "" for log in logs.values())
    assert "lost_response" in injected, injected
    assert _posted_steps("lossy") > 0


@pytest.mark.parametrize(
    "point",
    ["after_the_folding_step_put", "after_posting", "before_folding"],
)
@pytest.mark.usefixtures("runtime_off")
def test_a_process_killed_at_each_point_of_posting_and_folding_loses_and_duplicates_nothing(
    shared: StoreSpec,
    process_context: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
    point: str,
) -> None:
    faults: str | None = None
    kill: int | None = None
    if point == "after_the_folding_step_put":
        kill = 1  # the step that folded posts is stored; the posts are not deleted yet
    elif point == "after_posting":
        faults = FaultConfig(
            (FaultRule("crash_after", operations=_PUT, key_contains="/mail/", at=(1,)),), name=point
        ).to_json()
    else:  # the LIST that starts a fold
        faults = FaultConfig(
            (FaultRule("crash_before", operations=frozenset({"list"}), key_contains="/mail/", at=(1,)),),
            name=point,
        ).to_json()
    # The victim starts first: it loses its first race, posts, and takes the folder lease
    # (nobody holds it); the survivors then post for it to fold. Killed, it leaves the lease
    # held: the survivors wait for it to expire, take it over, and fold what it left behind.
    # (Enough calls that the victim is still calling when the survivors start.) On a loaded
    # machine the children may not overlap as planned and the victim never reaches the
    # point: every attempt is checked for loss and duplication, and the scenario is tried
    # again (on a new actor) until the kill lands, three times at most.
    workers = {"victim": (4000, faults, kill), "s0": (100, None, None), "s1": (100, None, None)}

    def survivors_finished(
        actor_id: str, logs: dict[str, ChildLog], codes: dict[str, int | None], applied: list[str]
    ) -> None:
        assert codes["s0"] == 0 and codes["s1"] == 0, codes

    actor_id, logs, codes, applied = _hammer_until(
        "victim",
        lambda logs, codes: codes["victim"] == -9,
        survivors_finished,
        process_context,
        shared,
        tmp_path,
        workers,
        delays={"s0": 1.0, "s1": 1.0},
    )
    done = {who: log.done for who, log in logs.items()}
    assert codes == {"victim": -9, "s0": 0, "s1": 0}, f"{point}: the kill did not land: {codes} {done}"
    victim = logs["victim"]
    in_flight = [t for t in victim.tried if t not in set(victim.acked) and t not in victim.errors]
    assert len(in_flight) == 1, victim.tried[-3:]
    assert applied.count(in_flight[0]) <= 1
    # The survivors' later folds find the victim's posts: applied ones deleted, pending ones folded.
    assert wait_for_no_posts(actor_id) == [], point


def _hammer_until(
    prefix: str,
    happened: Callable[[dict[str, ChildLog], dict[str, int | None]], bool],
    check: Callable[[str, dict[str, ChildLog], dict[str, int | None], list[str]], None],
    process_context: multiprocessing.context.ForkServerContext,
    shared: StoreSpec,
    tmp_path: Path,
    workers: dict[str, tuple[int, str | None, int | None]],
    **hammers: Any,
) -> tuple[str, dict[str, ChildLog], dict[str, int | None], list[str]]:
    """Hammer a new actor (``<prefix>-<attempt>``) with ``workers`` until ``happened(logs,
    codes)``, three times at most; the last actor id, logs, exit codes and applied tokens.

    On a loaded machine child processes may not overlap as a test planned, and the scenario
    it meant to build does not occur. Every attempt is checked all the same: each call
    applied once and in its process's order, then ``check(actor_id, logs, codes, applied)``.
    """
    for attempt in range(3):
        actor_id = f"{prefix}-{attempt}"
        OrderLog.get_or_create(actor_id)
        vc.shutdown()
        logs, codes = _run_hammers(
            process_context, shared, tmp_path / actor_id, actor_id, workers, POSTING, **hammers
        )
        applied = _applied(shared, actor_id)
        assert check_once_and_in_order(logs.values(), applied) == []
        check(actor_id, logs, codes, applied)
        if happened(logs, codes):
            break
    return actor_id, logs, codes, applied


def _leases_taken(logs: dict[str, ChildLog]) -> dict[str, int]:
    """Folder leases each child took (its ``vc.stats()["leases_taken"]`` at the end)."""
    taken = {}
    for who, log in logs.items():
        for word in (log.done or "").split():
            if word.startswith("leases="):
                taken[who] = int(word.removeprefix("leases="))
    return taken


@pytest.mark.usefixtures("runtime_off")
def test_processes_that_all_believe_they_hold_the_lease_apply_each_call_once_in_order(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    """The lease is a hint: with every process folding at once (each finds it free and
    takes it), the create-only step puts and the post cursor still apply each call once."""
    workers = {f"p{i}": (50, None, None) for i in range(3)}

    def holders(logs: dict[str, ChildLog]) -> list[str]:
        return [who for who, n in _leases_taken(logs).items() if n > 0]

    def all_acked_and_cleaned(
        actor_id: str, logs: dict[str, ChildLog], codes: dict[str, int | None], applied: list[str]
    ) -> None:
        assert set(codes.values()) == {0}, codes
        assert sorted(applied) == sorted(t for log in logs.values() for t in log.acked)
        assert not any(log.errors for log in logs.values()), {w: log.errors for w, log in logs.items()}
        assert wait_for_no_posts(actor_id) == []

    # The scenario is two processes or more folding as holders at once.
    _, logs, _, _ = _hammer_until(
        "all-hold",
        lambda logs, codes: len(holders(logs)) >= 2,
        all_acked_and_cleaned,
        process_context,
        shared,
        tmp_path,
        workers,
        delays={"p0": 0.0},
        fake_lease=True,
    )
    found = holders(logs)
    assert len(found) >= 2, f"fewer than two processes believed they held the lease: {found}"


@pytest.mark.usefixtures("runtime_off")
def test_compaction_beside_posters_loses_and_duplicates_nothing(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    """Three posting processes beside a loop that compacts to the newest 2 steps: no call is
    lost or applied twice, and a caller's only error is CommitOutcomeUnknownError.

    A soak of posting and folding under compaction. It does not reach a late commit (a step
    put that ends more than fresh_window after its writer validated its cache): on a host
    that answers puts within fresh_window, ``resolve_late_commit`` is never called here, so a
    defect there passes this test. The held-put tests pin that path: in tests/test_compaction.py
    test_writer_stalled_across_a_compaction_does_not_report_a_deleted_step,
    test_retried_put_landing_below_the_watermark_is_resolved_from_the_compaction_record,
    test_late_put_whose_number_is_no_longer_recorded_reports_an_unknown_outcome and
    test_put_answered_after_its_step_was_compacted_is_not_applied_twice; for delete_actor,
    tests/test_review_mutation_sweep.py::test_a_delete_built_on_a_step_compacted_meanwhile_is_not_taken_for_a_delete.
    """
    settings = dict(POSTING, fresh_window=0.2)
    shared.init(settings=vc.Settings(storage="", **settings))
    handle = OrderLog.get_or_create("compacted")

    deleted = 0

    def compact_meanwhile(running: Callable[[], bool]) -> None:
        nonlocal deleted
        deadline = time.monotonic() + 120
        while running() and time.monotonic() < deadline:
            deleted += handle.compact(2, min_age=0.2).deleted_steps
            time.sleep(0.02)

    # 100 calls each (150 took 44 s on moto, the suite's longest test; 100 still see
    # compactions delete steps while posts are pending: asserted below)
    workers = {f"p{i}": (100, None, None) for i in range(3)}
    logs, codes = _run_hammers(
        process_context, shared, tmp_path, "compacted", workers, settings, beside=compact_meanwhile
    )
    assert set(codes.values()) == {0}, codes
    applied = handle.applied.run()
    vc.shutdown()
    assert check_once_and_in_order(logs.values(), applied) == []
    # A poster slower than min_age (0.2 s) to read the step that applied its call finds that
    # step compacted, and its caller is told so: CommitOutcomeUnknownError ("applied, but the
    # step holding its outcome has been compacted", docs/protocol.md), never a loss or a double
    # (checked above). How often depends on the host's speed: none on a quiet one, some in each
    # of 3 of 3 runs beside two busy loops with 0.1 s per request. Any other error is a defect.
    errors = {token: kind for log in logs.values() for token, kind in log.errors.items()}
    assert set(errors.values()) <= {"CommitOutcomeUnknownError"}, errors
    assert deleted > 0, "no compaction deleted anything while the posters ran"
    assert _posted_calls(logs) > 0, "nothing was posted: the test did not exercise posting"


@pytest.mark.usefixtures("runtime_off")
def test_posters_that_give_up_get_call_pending_and_their_calls_apply_at_most_once(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    OrderLog.get_or_create("impatient")
    vc.shutdown()
    # Slow step puts make folds slower than the posters' patience.
    faults = FaultConfig(
        (FaultRule("delay", operations=_PUT, key_contains="/steps/", probability=1.0, delay=0.15),),
        seed=1,
        name="slow_steps",
    ).to_json()
    settings = dict(POSTING, commit_timeout=0.1)
    workers = {f"p{i}": (25, faults, None) for i in range(4)}
    logs, codes = _run_hammers(process_context, shared, tmp_path, "impatient", workers, settings)
    assert set(codes.values()) == {0}, codes
    applied = _applied(shared, "impatient")
    assert check_once_and_in_order(logs.values(), applied) == []
    kinds = {k for log in logs.values() for k in log.errors.values()}
    assert "CallPendingError" in kinds, kinds
    assert _posted_calls(logs) > 0
    assert kinds <= {"CallPendingError", "CommitConflictError"}, kinds


def _bench_contention_row(tmp_path: Path, *extra: str) -> str:
    """Run ``scripts/bench_contention.py`` with 2 processes for 0.5 s and ``extra``; its table row."""
    import os
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    argv = [str(tmp_path / "store"), "--processes", "2", "--duration", "0.5", "--repeats", "1", *extra]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "bench_contention.py"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = done.stdout.strip().splitlines()[-1]
    assert row.startswith("| 2 |") and row.endswith("| [0] |"), row
    return row


def test_bench_contention_script_runs_without_combining(tmp_path: Path) -> None:
    """``scripts/bench_contention.py --no-combine --latency 1``: the 'before' column of issue 13's rows."""
    _bench_contention_row(tmp_path, "--latency", "1", "--no-combine")  # every request 1 ms later


def test_bench_contention_script_takes_settings_and_think_time(tmp_path: Path) -> None:
    """``-o combine_after=2 --think 20``: a Settings field goes to Settings (not to the store,
    which refuses it), and each call is preceded by 20 ms of work (the light-contention row)."""
    row = _bench_contention_row(tmp_path, "-o", "combine_after=2", "--think", "20")
    calls_per_second = float(row.split("|")[2])
    assert calls_per_second <= 2 * 1000 / 20, row  # two processes, at most one call per 20 ms each


class PagedListing(Switchable):
    """Listings of several pages of one kind of folder (``/mail/``, ``/inbox/``): the first
    listing that could see ``hidden`` misses it (the object landed behind the page cursor
    while the listing ran) and sees what landed ahead of it."""

    def __init__(self, inner: ObjectStore, folder: str = "/mail/") -> None:
        super().__init__(inner)
        self.folder = folder
        self.hidden: str | None = None

    def listed_at_one_moment(self, prefix: str, keys: list[str]) -> bool:
        return not keys  # every listing that found anything took pages

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        result = await super()._around(operation, key, run, **batch)
        if operation == "list" and key.endswith(self.folder) and self.hidden is not None:
            kept = [k for k in result if k != self.hidden]
            if len(kept) < len(result):
                self.hidden = None  # once
            result = kept
        return result


@pytest.mark.usefixtures("runtime_off")
def test_a_paged_mail_listing_that_missed_a_senders_first_post_applies_both_in_order(
    store_spec: StoreSpec,
) -> None:
    """Another process has two posts pending, the second written after the first returned. A
    listing of several pages saw the second but not the first (it landed behind the cursor):
    the fold applied the second, the cursor passed the first's seq, and the first was then
    deleted unapplied as stale: its call lost. A post first seen by such a listing now waits
    for the next one, and its sender's later posts behind it."""
    spec_store = init_switchable(store_spec, combine_window=60.0)
    runtime = vc.get_runtime()
    paged = PagedListing(spec_store.inner)
    runtime.store = paged
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = foreign_box("a")
    first = box.prepare((PostedCall("add", pickle.dumps((("other/0",), {})), uuid.uuid4().hex),))
    _sync.sync(box.send(first))
    time.sleep(0.003)
    post_adds(box, ["other/1"])
    paged.hidden = first.key
    commit_behind_its_back("a")
    log.add.run("me/1")  # loses, posts, takes the lease, folds
    wait_for(lambda: {"other/0", "other/1"} <= set(log.applied.run()))
    applied = log.applied.run()
    assert sorted(applied) == ["me/0", "me/1", "other/0", "other/1"], applied
    assert applied.index("other/0") < applied.index("other/1")
    assert paged.hidden is None  # the listing that missed it happened
    assert wait_for_no_posts("a") == []
