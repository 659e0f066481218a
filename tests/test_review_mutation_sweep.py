"""Guarantees of the commit path that no test held (review h121: a mutation sweep).

Each test here kills a mutation of ``log.py``, ``dedup.py``, ``compaction.py``,
``deletion.py`` or ``incarnation.py`` that the rest of the suite let through: it fails with
the mutation applied and passes without. The mutation each one holds is named in its
docstring. Stores are driven directly through :class:`ActorLog` where the premise (a put
answered late, a watermark at an exact number) cannot be produced on cue by a runtime.

Survivors of the sweep left without a test, each judged so (65 mutations in all; the report of
review h121 has the table):

* equivalent: a step's ``kind`` check (every other kind lacks a step's fields, and a key is
  bound by the digest); ``StepDedup.record`` without its pop and a table written in another
  serializer than its checkpoint (unreachable: one ``now`` per batch, one serializer per
  class); ``StepDedup.mark``/``rollback`` (no callers: since removed); ``_recorded_before`` with ``<=``
  (no record is born at a tombstone's number); the same post twice in a delete's fold (failed
  twice alike); ``find_step``'s ``step < watermark`` (``oldest`` is at least the watermark);
* tuning: ``_pull_back_head`` by overwrite (HEAD is a hint, and the probe after it moves HEAD
  on); ``compact_actor`` keeping a cache below the watermark (defence in depth: a cache that
  old is re-validated, ``min_age >= fresh_window``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import pickle
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from actors import Tally
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.compaction import compact, raise_watermark
from vactor_cloud.dedup import DedupTable, Outcome, StepDedup
from vactor_cloud.deletion import _pending_posts, is_deleted
from vactor_cloud.errors import (
    ActorDeletedError,
    FormatVersionError,
    IntegrityError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.incarnation import BORN, born_in, born_of
from vactor_cloud.log import ActorLog, StepCompactedError
from vactor_cloud.log_records import ClassRef, GcWatermark, Head, StepRecord, encode_gc
from vactor_cloud.post_cursor import POST_FLOOR
from vactor_cloud.posting import PostBox, PostedCall
from vactor_cloud.storage import IfMatch, ObjectStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

T = TypeVar("T")


def _record(step: int, writer: str) -> StepRecord:
    return StepRecord(
        step=step,
        parent=None if step == 0 else step - 1,
        class_ref=ClassRef("0" * 64, "tests.Sweep"),
        serializer="json",
        state=b"{}",
        writer=writer,
        time=time.time(),
    )


def _on_a_log(store_spec: StoreSpec, body: Callable[[ActorLog], Awaitable[T]]) -> T:
    async def run() -> T:
        store = store_spec.open()
        try:
            return await body(ActorLog(store, "sweep"))
        finally:
            await store.close()

    return asyncio.run(run())


async def _commit(log: ActorLog, steps: range) -> None:
    for step in steps:
        await log.put_step(_record(step, f"w{step}"))


def test_a_late_put_of_the_step_the_watermark_names_is_a_commit(store_spec: StoreSpec) -> None:
    """A writer whose put answered late (past ``fresh_window``) asks the watermark; a compaction
    that ran meanwhile may have raised it to exactly the writer's step, the oldest step kept.
    That step is committed history. (Mutation: ``step >= min_step`` read ``step > min_step`` in
    ``resolve_late_commit``, and the committed call failed with a ``ValueError``.)"""

    async def body(log: ActorLog) -> bool:
        await _commit(log, range(3))
        mine = _record(3, "late-writer")
        await log.put_step(mine)
        assert await raise_watermark(log, 3) == 3
        return await log.resolve_late_commit(mine)

    assert _on_a_log(store_spec, body) is True


class _LoseOneStepPut:
    """Fails the next create of ``key`` before it lands (a connection reset before sending)."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store, self.key, self.armed = store, key, True
        self.original = store.put

    async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if self.armed and key == self.key:
            self.armed = False
            raise StorageError(f"{key}: simulated reset before sending", key)
        return await self.original(key, data, **kwargs)


def test_a_failed_put_at_the_watermark_number_is_retried(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create whose request failed (it may have landed) and whose step is not there when read
    back, at a number the watermark has reached but not passed: no compaction took it, so the
    create is sent again and commits. (Mutation: ``step >= min_step`` read ``step > min_step``
    in ``_compacted_step_was_ours``, and the commit failed with a ``ValueError``.) The premise
    needs a watermark at a number not written yet, which a compaction never makes (it raises the
    watermark only to a step that exists): a gc object written for the test."""

    async def body(log: ActorLog) -> bool:
        await _commit(log, range(3))
        await raise_watermark(log, 2)
        # The gc object as a compaction of another copy of the log wrote it: min_step 3.
        gc = await log.read_watermark()
        data = encode_gc(log.gc_key, GcWatermark(3, recorded_from=3), time.time(), log.signing_key)
        await log.store.put(log.gc_key, data, mode=IfMatch(gc.version or ""))
        lose = _LoseOneStepPut(log.store, log.step_key(3))
        monkeypatch.setattr(log.store, "put", lose.put)
        mine = _record(3, "retrying-writer")
        await log.put_step(mine)
        stored = await log.read_step(3)
        return stored is not None and stored.writer == "retrying-writer"

    assert _on_a_log(store_spec, body) is True


def test_head_is_not_moved_back_by_a_writer_that_knows_it_is_ahead(store_spec: StoreSpec) -> None:
    """``advance_head`` to a step behind the HEAD it knows leaves HEAD where it is (forward
    only: a reader starting at HEAD never starts before a step it could have started after).
    (Mutation: the ``current.step >= step`` check dropped; HEAD went back to 2.)"""

    async def body(log: ActorLog) -> tuple[int, int]:
        await _commit(log, range(6))
        ref = _record(5, "w5").class_ref
        at_five = await log.advance_head(5, ref, None)
        answered = await log.advance_head(2, ref, at_five)
        stored = await log.read_head()
        assert stored is not None
        return answered.step, stored.step

    assert _on_a_log(store_spec, body) == (5, 5)


def test_head_is_not_moved_back_by_a_writer_whose_view_of_it_is_stale(store_spec: StoreSpec) -> None:
    """Two writers move HEAD: one to 9 while the other, which read HEAD at 3, moves it to 6. The
    second's put is conditional on the version it read, so it fails, it reads HEAD again, finds
    9 and leaves it. (Mutation: the if-match replaced by an overwrite; HEAD went back to 6.)"""

    async def body(log: ActorLog) -> tuple[int, int]:
        await _commit(log, range(10))
        ref = _record(9, "w9").class_ref
        stale = await log.advance_head(3, ref, None)
        await log.advance_head(9, ref, stale)
        answered = await log.advance_head(6, ref, stale)
        stored = await log.read_head()
        assert stored is not None
        return answered.step, stored.step

    assert _on_a_log(store_spec, body) == (9, 9)


class _FailReads:
    """Fails the next ``times`` reads of ``key`` in transit (a reset connection)."""

    def __init__(self, store: ObjectStore, key: str, times: int) -> None:
        self.key, self.times = key, times
        self.original = store.get

    async def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        if key == self.key and self.times > 0:
            self.times -= 1
            raise RetryableStorageError(f"{key}: simulated reset", key)
        return await self.original(key, *args, **kwargs)


def test_a_late_commit_survives_a_failed_read_of_the_watermark(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a late put, the watermark is read to learn whether the step is history; one read
    of it failing in transit is retried, not reported: the step is written, and an error here
    tells its caller the call may not have happened (a retry without a key applies it twice).
    (Mutation: no retry in ``_read_watermark_after_commit``; the committed call ended in
    ``CommitOutcomeUnknownError``.)"""

    async def body(log: ActorLog) -> bool:
        await _commit(log, range(3))
        mine = _record(3, "late-writer")
        await log.put_step(mine)
        monkeypatch.setattr(log.store, "get", _FailReads(log.store, log.gc_key, 1).get)
        return await log.resolve_late_commit(mine)

    assert _on_a_log(store_spec, body) is True


def _step_with_table(step: int, table: bytes) -> StepRecord:
    return dataclasses.replace(_record(step, f"w{step}"), dedup=table)


def test_a_key_recorded_again_after_it_left_the_window_counts_as_the_newest() -> None:
    """A key past the window runs again and is recorded again: it is then the newest entry,
    so the next commits keep it among the newest ``max_keys``. (Mutation: ``_merge`` kept a key
    found in an earlier layer at its old place with the new value; the next step's table held
    it as the oldest, and a retry a moment later, inside the window by count, ran the call a
    second time.)"""
    window = (2, 0.0)
    old = {key: (0.0, Outcome(True, f"first {key}")) for key in ("a", "b", "c")}
    base = _step_with_table(1, DedupTable(old).dump("json", (10, 0.0), now=0.0))  # a wider window then
    table = StepDedup(None, base)
    assert table.load_without_io()
    assert table.get("a", window=window, now=10.0) is None  # two newer keys, and old: runs again
    table.record("a", Outcome(True, "second a"), 10.0)
    fields = table.fields("json", window, 10.0, 2)
    assert fields.base is None  # (small: the whole table, in the step)
    after = StepDedup(None, _step_with_table(2, fields.data))
    assert after.load_without_io()
    recorded = after.get("a", window=window, now=11.0)
    assert recorded is not None and recorded.value == "second a"


@pytest.mark.parametrize("value", [True, False, -1, 2.0, "3", None])
def test_an_incarnation_that_is_no_step_number_is_refused_or_taken_for_none(value: object) -> None:
    """A record beside the steps naming an incarnation that is no step number (a bool, a
    negative number, a float, a string: damaged, or written by hand) is not judged by it: the
    readers of records (compaction ageing a sub-task checkpoint, a delete clearing failed-call
    records) are told ``ValueError`` and treat it as no actor's; a step's ``extra`` holding one
    is the id's first actor. (Mutations: ``born_in`` and ``born_of`` without the bool and sign
    checks; ``True`` passed for incarnation 1 and ``-1`` for one before every actor.)"""
    with pytest.raises(ValueError, match="no step number"):
        born_in({BORN: value})
    assert born_of({BORN: value}) == 0
    assert born_in({BORN: 7}) == born_of({BORN: 7}) == 7


def test_a_load_that_raced_a_compaction_to_the_newest_step_finds_that_step(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load whose listing answered from before a compaction (``keep_last=1``: the watermark
    raised to the newest step, every step below it deleted) finds its newest step below the
    watermark, and looks again: the step at the watermark is there, and is the newest. (Mutation:
    the second look listed from after the watermark step, ``after=watermark`` for
    ``after=watermark - 1``, found nothing, and the load said ``StepsMissingError``: the actor's
    steps were deleted out of band.)"""

    async def body(log: ActorLog) -> int | None:
        await _commit(log, range(5))
        stale = await log.read_step(2)
        assert await raise_watermark(log, 4) == 4
        await log.store.delete_many([log.step_key(n) for n in range(4)])
        looks: list[int] = []
        original = ActorLog._list_latest

        async def list_latest(self: ActorLog) -> StepRecord | None:
            looks.append(1)
            return stale if len(looks) == 1 else await original(self)

        monkeypatch.setattr(ActorLog, "_list_latest", list_latest)
        newest, _ = await log.load_latest_and_head(None)
        assert len(looks) == 2, "the load did not look again"
        return None if newest is None else newest.step

    assert _on_a_log(store_spec, body) == 4


def test_a_delete_folds_no_post_behind_a_damaged_one(store_spec: StoreSpec) -> None:
    """The posts a tombstone fails (and moves the cursor past) end at the first one that cannot
    be read: its sender is unknown, and a later post of that sender folded past it would move
    the sender's cursor past the damaged one's seq, so that, readable again, it counted as
    applied with no outcome recorded. (Mutation: ``_pending_posts`` passed over the damaged post
    and folded the next.)"""

    async def body(log: ActorLog) -> tuple[list[int], list[str]]:
        await _commit(log, range(1))
        base = await log.read_step(0)
        assert base is not None
        sender = PostBox(log.store, log.actor_id, log.signing_key)
        posts = []
        for n in range(2):
            call = PostedCall("add", pickle.dumps(((n,), {})), uuid.uuid4().hex)
            posts.append(await sender.send(sender.prepare((call,))))
        # The first post damaged at rest (its bytes replaced): it fails its decode.
        await log.store.put(posts[0].key, b"damaged", mode="overwrite")
        box = PostBox(log.store, log.actor_id, log.signing_key)
        pending, done = await _pending_posts(box, base, time.time())
        return [post.seq for post in pending], done

    assert _on_a_log(store_spec, body) == ([], [])


def _in_the_next_format(key: str, data: bytes) -> bytes:
    """``data`` (an object at ``key``) as a newer release would write it: verifying, its header
    naming the next format."""
    found = codec.decode(key, data)
    out = bytearray(codec.encode(key, dict(found.meta), dict(found.parts)))
    struct.pack_into(">H", out, 4, codec.FORMAT_VERSION + 1)
    body = bytes(out[: -hashlib.sha256().digest_size])
    return body + codec.digest(key, body, None)


def test_a_head_in_a_newer_format_is_refused_not_replaced(store_spec: StoreSpec) -> None:
    """HEAD written by a newer release says "upgrade" (``FormatVersionError``) to a reader and
    to a writer moving it, and stays as it was: it is not a damaged HEAD, which the next move
    would replace. (Mutation: ``FormatVersionError`` caught with the damaged-HEAD errors; the
    older release ignored the newer HEAD and overwrote it.)"""

    async def body(log: ActorLog) -> None:
        await _commit(log, range(3))
        head = await log.advance_head(2, _record(2, "w2").class_ref, None)
        newer = _in_the_next_format(log.head_key, (await log.store.get(log.head_key)).data)
        await log.store.put(log.head_key, newer, mode=IfMatch(head.version))
        with pytest.raises(FormatVersionError, match="upgrade"):
            await log.read_head()
        with pytest.raises(FormatVersionError, match="upgrade"):
            await log.advance_head(3, head.class_ref, None)
        assert (await log.store.get(log.head_key)).data == newer

    _on_a_log(store_spec, body)


def test_a_class_object_holding_another_body_than_its_hash_names_is_refused(store_spec: StoreSpec) -> None:
    """A class object is content-addressed: one whose body is not the one its name hashes (a
    body written under another class's hash, on a store without a signing key anyone could
    write so) is refused, never loaded for that class. (Mutation: the hash check in
    ``_class_body`` dropped; ``read_class`` returned the other body.)"""
    mine, theirs = b"class body one", b"class body two"
    sha = hashlib.sha256(mine).hexdigest()

    async def body(log: ActorLog) -> None:
        key = log.class_key(sha)
        await log.store.put(key, log._class_object(key, theirs, "tests.Sweep", None), mode="create")
        with pytest.raises(IntegrityError, match="content hash"):
            await log.read_class(sha)
        assert await log.restore_class(sha, mine, "tests.Sweep", None) is not None  # repaired
        assert (await log.read_class(sha))[0] == mine

    _on_a_log(store_spec, body)


def _newest_is_a_tombstone(actor_id: str) -> bool:
    log = vc.get_runtime().log(actor_id)
    newest = _sync.sync(log.load_latest(None))
    return newest is not None and is_deleted(newest)


@pytest.mark.usefixtures("runtime_off")
def test_a_delete_whose_tombstone_lost_to_a_step_compacted_since_tries_again(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tombstone put told ``StepCompactedError`` (another writer's step held the number, and a
    compaction deleted it since) was not committed: the delete reads the newest step and puts
    its tombstone after it. (Mutation: ``StepCompactedError`` taken for a commit; the delete said
    True, and the actor went on taking calls.)"""
    init(store_spec)
    handle = Tally.get_or_create("t")
    handle.incr.run()
    original = ActorLog.put_step
    refused: list[int] = []

    async def put_step(self: ActorLog, record: StepRecord, data: bytes | None = None) -> bool:
        if is_deleted(record) and not refused:
            refused.append(record.step)
            raise StepCompactedError(record.step)
        return await original(self, record, data)

    monkeypatch.setattr(ActorLog, "put_step", put_step)
    assert vc.delete_actor("t") is True
    assert refused, "the premise did not happen"
    assert _newest_is_a_tombstone("t")
    with pytest.raises(ActorDeletedError):
        handle.incr.run()


@pytest.mark.usefixtures("runtime_off")
def test_a_delete_built_on_a_step_compacted_meanwhile_is_not_taken_for_a_delete(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete that read the log (step 2), then stalled while the actor committed on and a
    compaction (``keep_last=1``) freed every number below the newest, creates its tombstone at
    a freed number: the put succeeds, and is no commit. Its put ended past ``fresh_window``
    after it read the log, so it asks the watermark, learns another writer's step was there,
    and puts its tombstone after the newest step. (Mutation: that check skipped; the delete said
    True, its tombstone a stray below the watermark, and the actor went on taking calls.)"""
    init(store_spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    for _ in range(5):
        handle.incr.run()
    log = vc.get_runtime().log("t")
    stale = _sync.sync(log.read_step(2))
    report = _sync.sync(compact(log, keep_last=1, min_age=0.0, fresh_window=0.0))
    assert report.watermark == 5
    original = ActorLog.load_latest_and_head
    served: list[int] = []

    async def load_latest_and_head(
        self: ActorLog, head: Head | None
    ) -> tuple[StepRecord | None, Head | None]:
        if not served:
            served.append(2)
            return stale, None
        return await original(self, head)

    monkeypatch.setattr(ActorLog, "load_latest_and_head", load_latest_and_head)
    assert vc.delete_actor("t") is True
    assert served, "the premise did not happen"
    assert _newest_is_a_tombstone("t")
    with pytest.raises(ActorDeletedError):
        handle.incr.run()


def test_a_load_from_a_head_left_far_behind_answers_the_newest_step(store_spec: StoreSpec) -> None:
    """HEAD left many steps behind (its writers' moves failed, or a crash): the load probes past
    it, and after two hits lists to jump to the end, answering the newest step listed. (Mutation:
    the probe answered the step it had reached, not the newest of the listing; a read started
    after step 9 was acknowledged saw step 2's state.)"""

    async def body(log: ActorLog) -> int | None:
        await _commit(log, range(10))
        head = await log.advance_head(0, _record(0, "w0").class_ref, None)
        newest = await log.load_latest(head)
        return None if newest is None else newest.step

    assert _on_a_log(store_spec, body) == 9


def test_a_key_with_max_keys_newer_entries_and_past_the_age_is_outside_the_window() -> None:
    """The window keeps a key while it is among the newest ``max_keys`` or younger than
    ``max_age``: one with ``max_keys`` entries recorded after it, and older, is past it, and a
    retry with it runs the call again. (Mutation: ``newer >= max_keys`` read ``newer >
    max_keys``; the table answered for ``max_keys + 1`` keys.)"""
    entries = {key: (0.0, Outcome(True, key)) for key in ("a", "b", "c")}
    table = StepDedup(None, _step_with_table(1, DedupTable(entries).dump("json", (10, 0.0), now=0.0)))
    assert table.load_without_io()
    window = (2, 0.0)
    assert table.get("a", window=window, now=10.0) is None
    kept = table.get("b", window=window, now=10.0)
    assert kept is not None and kept.value == "b"


@vc.virtual_actor
class Shelf:
    def __init__(self) -> None:
        self.items: list[str] = []

    def put(self, item: str) -> list[str]:
        self.items.append(item)
        return list(self.items)


@pytest.mark.usefixtures("runtime_off")
def test_each_retry_answered_from_the_table_gets_its_own_copy(store_spec: StoreSpec) -> None:
    """Retries of a keyed call are answered from the idempotency table, each with its own copy
    of the recorded result: one caller changing what it got changes neither the table nor what
    the next retry gets. (The result is large: the table lives in a checkpoint this process
    keeps decoded, shared by every commit on the actor.) (Mutation: ``delivered`` returned the
    recorded outcome itself; the second retry got the list the first retry's caller had changed.)"""
    init(store_spec)
    shelf = Shelf.get_or_create("s")
    item = "x" * 3000  # past DELTA_MAX_BYTES: the table goes to a checkpoint
    first = shelf.put.options(idempotency_key="k").run(item)
    assert vc.get_runtime().log("s").dedup_cache is not None, "the premise did not happen"
    again = shelf.put.options(idempotency_key="k").run(item)
    assert first == again == [item]
    again.append("changed by a caller")
    third = shelf.put.options(idempotency_key="k").run(item)
    assert third == [item]


def test_a_delete_folds_no_post_dated_at_the_post_floor(store_spec: StoreSpec) -> None:
    """The post floor is the time of a dropped sender's entry, and every post of that sender
    the cursor recorded applied is dated at or before it: a post dated exactly at the floor may
    be a copy of an applied one. A delete's tombstone does not fail it again (nor move the
    cursor for it): it is stale, deleted. (Mutation: ``post.time <= floor`` read ``<``.)"""

    async def body(log: ActorLog) -> tuple[list[str], list[str], str]:
        await _commit(log, range(1))
        sender = PostBox(log.store, log.actor_id, log.signing_key)
        call = PostedCall("add", pickle.dumps(((0,), {})), uuid.uuid4().hex)
        post = await sender.send(sender.prepare((call,)))
        base = dataclasses.replace(_record(1, "w1"), extra={POST_FLOOR: post.time})
        box = PostBox(log.store, log.actor_id, log.signing_key)
        pending, done = await _pending_posts(box, base, post.time + 1.0)
        return [p.key for p in pending], done, post.key

    pending, done, key = _on_a_log(store_spec, body)
    assert (pending, done) == ([], [key])


def test_compaction_raises_the_watermark_before_it_deletes_a_step(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction writes the raised ``gc`` before it deletes any step (docs/protocol.md): a
    reader that misses a step, deleted, then reads ``gc`` sees the watermark past it, and a
    writer stalled across the compaction learns from it that its number was taken. (Mutation:
    the steps deleted first, then the watermark raised; only a test of sub-task clean-up failed,
    by the way: the calls of steps deleted before they were read.)"""

    async def body(log: ActorLog) -> list[str]:
        await _commit(log, range(6))
        order: list[str] = []
        put, delete_many = log.store.put, log.store.delete_many

        async def recording_put(key: str, data: bytes, **kwargs: Any) -> str:
            if key == log.gc_key:
                order.append("gc")
            return await put(key, data, **kwargs)

        async def recording_delete_many(keys: list[str]) -> Any:
            order.extend("step" for key in keys if key.startswith(log.steps_prefix))
            return await delete_many(keys)

        monkeypatch.setattr(log.store, "put", recording_put)
        monkeypatch.setattr(log.store, "delete_many", recording_delete_many)
        report = await compact(log, keep_last=2, min_age=0.0, fresh_window=0.0)
        assert report.deleted_steps == 4
        return order

    order = _on_a_log(store_spec, body)
    assert order[0] == "gc" and order.count("step") == 4, order


def test_the_window_counts_this_commits_keys_above_a_delta_entry(store_spec: StoreSpec) -> None:
    """In a table kept as a checkpoint and a delta, a key in the delta has above it the delta's
    later entries and the keys this commit recorded: with ``max_keys`` of those, and older than
    the age, it is past the window. (Mutation: ``_newer_than`` left this commit's keys out for a
    delta entry; the key stayed in the window one place per key recorded before it in the batch.)"""
    window = (2, 0.0)

    async def body(log: ActorLog) -> tuple[bool, bool]:
        name = f"{1:020d}-sweep"
        await log.put_dedup_checkpoint(name, DedupTable().dump("json", window, 0.0), "json")
        entries = {key: (0.0, Outcome(True, key)) for key in ("a", "b")}
        delta = DedupTable(entries).dump("json", (10, 0.0), now=0.0)
        base = dataclasses.replace(_record(2, "w2"), dedup=delta, dedup_base=name)
        table = await StepDedup(log, base, "json").load()
        table.record("c", Outcome(True, "c"), 10.0)
        forgotten = [table.get(key, window=window, now=10.0) is None for key in ("a", "b")]
        return forgotten[0], forgotten[1]

    assert _on_a_log(store_spec, body) == (True, False)


def test_the_watermark_is_never_lowered_by_a_compaction_that_chose_a_lower_one(store_spec: StoreSpec) -> None:
    """Two compactions race: one raised the watermark to 8 after the other chose 5. The second
    leaves 8 and answers it: lowered, steps 5 to 7, deleted by the first, would lie above the
    watermark, missing, and a stalled writer's late put at one of those numbers would pass for
    history. (Mutation: the forward-only check in ``raise_watermark`` dropped; the watermark went
    back to 5 and the record of the writers the first compaction passed was cut.)"""

    async def body(log: ActorLog) -> tuple[int, int, str | None]:
        await _commit(log, range(10))
        assert await raise_watermark(log, 8) == 8
        answered = await raise_watermark(log, 5)
        after = await log.read_watermark()
        return answered, after.min_step, after.compacted.get(7)

    assert _on_a_log(store_spec, body) == (8, 8, "w7")


def test_a_watermark_raised_meanwhile_is_not_overwritten_by_a_stale_raise(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction that read the watermark (3), then lost the race to another that raised it
    to 8, writes its 5 conditionally on the version it read: refused, it reads 8 again and
    leaves it. (Mutation: the if-match replaced by an overwrite; the watermark went back to 5.)"""

    async def body(log: ActorLog) -> tuple[int, int]:
        await _commit(log, range(10))
        await raise_watermark(log, 3)
        stale = await log.read_watermark()
        await raise_watermark(log, 8)  # the other compaction, after ours read
        first_watermark_read_answers(monkeypatch, stale)
        answered = await raise_watermark(log, 5)
        return answered, (await log.read_watermark()).min_step

    assert _on_a_log(store_spec, body) == (8, 8)


def first_watermark_read_answers(monkeypatch: pytest.MonkeyPatch, seen: GcWatermark) -> None:
    """The next ``read_watermark`` answers ``seen`` (what a compaction read before another raised
    the watermark); the reads after it read the store."""
    original = ActorLog.read_watermark
    served: list[int] = []

    async def read_watermark(self: ActorLog) -> GcWatermark:
        if not served:
            served.append(seen.min_step)
            return seen
        return await original(self)

    monkeypatch.setattr(ActorLog, "read_watermark", read_watermark)
