"""Review h148: a mutation sweep of compaction, deletion and the idempotency table
(``compaction.py``, ``deletion.py``, ``dedup.py``).

110 hand-made mutations, one at a time, each run against the tests of its module (memory lane;
those judged equivalent again on memory and local, the three subsets together). 75 were killed by the
suite as it stood. Of the 35 survivors, 25 are killed by a test of this review (here, or in
``test_review_h148_incarnations``, ``test_review_h148_outcomes``, ``test_review_h148_dedup_table``;
each names its mutation in its docstring) and 10 are equivalent. None revealed a defect of the code.

Killed by the suite (mutation: killing module): compaction: HEAD not advanced first, keep_last
off by one, min_age ignored, the writers' cutoff or the proven step dropped or widened, a
tombstone's clean-up skipped or its kept step ignored or deleted anyway, a storage error in it
swallowed, the stray check of ``_calls_in`` dropped, the watermark step deleted (``<=``), the
watermark returned lowered, the record read from below the watermark or started empty, the
if-match dropped, a checkpoint judged by a later incarnation taken for committed, the aging
against our clock, the stray-watermark check of the checkpoint clean-up dropped, the floor or
``_tells_of``/``_named_by_none`` widened, outcome objects of kept steps deleted, the newest
step's name not passed, uncommitted calls' checkpoints deleted, the probe skipped for the
same incarnation, ``unresumable`` not reported, the min_age floor refused no more, committed
calls' checkpoints never deleted
(test_compaction, test_retention_edges, test_review_retention, test_review_delete_races,
test_review_mutation_sweep, test_review_incarnation_keys, test_review_h133_orphan_checkpoints,
test_review_outcome_objects_attacks, test_review_outcomes_events); deletion: delete keys not
checked, carried or windowed, ``born`` off by one, the cursor not advanced, the post floor
``<``, a damaged post passed, a late tombstone taken for committed, the clean-up skipped or
deleting the next actor's records or reading the wrong tombstone, one tombstone walked back
only, the applied events or timers not forgotten, the lease not given back, a compacted number
taken for a commit, everything of a tombstone carried, a storage error raised raw, the key
not kept, the failed posts left (test_delete_actor, test_delete_faults, test_review_delete_keys,
test_review_delete_races, test_review_mutation_sweep); dedup: the window by count off by one,
``>`` for ``>=``, ``or`` for ``and``, exception groups of faults or interrupts recorded, the
merge not moving a key, the cached checkpoint used by any name, a delta's newer count,
the delta dropped at a rollover, a digest not shared, an older writer's table not converted,
an outcome object gone read as none, no fetch, a shared copy delivered, a large row of an
older checkpoint left by value (test_idempotency,
test_dedup_checkpoints, test_dedup_outcome_objects, test_review_exactly_once,
test_review_infra_outcomes, test_review_outcome_objects_attacks, test_review_mutation_sweep).

Survivors killed by a test of this review: ``raise_watermark`` keeping the oldest 512 writers,
creating the first ``gc`` by overwrite, not retrying a lost answer; a damaged step taken for
old; ``_born_after_listing`` without its watermark answer; ``_later_than`` taking an undatable
incarnation for committed; a checkpoint without a time deleted; ``_aged_by`` passing over the
failure record; ``_seen_long_enough`` proving at once, or from the last sighting; outcome
objects deleted when the floor checkpoint cannot be read; temp files swept by an hour alone;
a damaged step at a shared number taken to name none; a delete failing a post its base
applied, keeping undatable failure records, releasing another holder's lease, swallowing an
interrupt of its clean-up, skipping the clean-up when another delete won; ``kept_for``
without its skew margin; ``_entry`` reading the table before this commit's entries;
``_newer_than`` not counting this commit's keys; the window's age test ``>=`` for ``>``; a
whole table held in the step not cut to the window; a checkpoint or outcome object decoded by
the serializer it names.

Equivalent (no behaviour a user can see changes):

* ``_written_before`` taking a missing step for young: steps at or above the watermark read
  exist but for a concurrent compaction's deletes, whose higher watermark wins either way;
* ``_calls_in`` keeping the last incarnation rather than the greatest: steps are read in
  ascending order and the incarnation never decreases along the chain;
* ``_tells_of`` with ``first = 0`` for a step naming none: a step naming none is preceded only
  by steps naming none (once a step names a checkpoint every later one does), so no checkpoint
  of a number up to it is named by any step;
* ``_names_at_shared_numbers`` reading the watermark and newest numbers too: both are settled
  by ``known`` already; ``held_by_min_age`` against ``target`` alone: ``target < current`` only
  when ``by_count <= current``, where both give 0;
* ``compact_actor`` keeping a cache below the watermark (as h121 judged: re-validated, since
  ``min_age >= fresh_window``);
* ``_newer_than`` off by one for this commit's keys: one ``now`` per batch, so such a key is
  0 s old and inside any window; a delta kept across a serializer change (one serializer per
  class: unreachable); ``outcome_from_bytes`` accepting other rows (the bytes are bound by the
  SHA-256 in the object's name, which only ``outcome_bytes`` ever produced);
* a delete's ``_pending_posts`` without its ``expired`` test: such a post is not applied either
  way (a copy of an applied one is stale by the post floor first), and failing it as deleted
  answers a poster that stopped waiting long ago.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from test_review_mutation_sweep import first_watermark_read_answers

from vactor_cloud import codec, deletion
from vactor_cloud.compaction import compact, raise_watermark
from vactor_cloud.deletion import _DeleterLease, _pending_posts, delete, forget_failed_calls
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.incarnation import BORN
from vactor_cloud.keys import failure_key, tasks_prefix
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import GC_RECORDED_STEPS, CallRecord, ClassRef, StepRecord
from vactor_cloud.posting import PostBox, PostedCall, advance_cursor
from vactor_cloud.settings import Settings
from vactor_cloud.storage import open_store
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

T = TypeVar("T")


def _record(step: int, writer: str, when: float | None = None) -> StepRecord:
    return StepRecord(
        step=step,
        parent=None if step == 0 else step - 1,
        class_ref=ClassRef("0" * 64, "tests.Sweep"),
        serializer="json",
        state=b"{}",
        writer=writer,
        time=time.time() if when is None else when,
    )


def _on_a_log(store_spec: StoreSpec, body: Callable[[ActorLog], Awaitable[T]]) -> T:
    async def run() -> T:
        store = store_spec.open()
        try:
            # (an id of its own: compaction remembers, per process, the newest step it saw)
            return await body(ActorLog(store, f"sweep-{uuid.uuid4().hex[:8]}"))
        finally:
            await store.close()

    return asyncio.run(run())


async def _commit(log: ActorLog, steps: range) -> None:
    for step in steps:
        await log.put_step(_record(step, f"w{step}"))


def test_the_watermark_record_keeps_the_newest_writers_not_the_oldest(store_spec: StoreSpec) -> None:
    """Two compactions pass 600 steps, more than ``GC_RECORDED_STEPS`` (512): the record keeps
    the writers of the newest 512, so a writer whose put of step 590 answered only after the
    second compaction learns its call committed. (Mutation: ``sorted(recorded)[:512]``, the
    oldest kept; the late writer's number was not recorded and its committed call was told
    ``CommitOutcomeUnknownError``.)"""

    async def body(log: ActorLog) -> tuple[bool, int, bool]:
        await _commit(log, range(601))
        await raise_watermark(log, 300)
        await raise_watermark(log, 600)
        gc = await log.read_watermark()
        late = _record(590, "w590")
        return await log.resolve_late_commit(late), len(gc.compacted), 599 in gc.compacted

    assert _on_a_log(store_spec, body) == (True, GC_RECORDED_STEPS, True)


def test_a_first_watermark_is_created_not_overwritten_over_one_raised_meanwhile(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction that read no ``gc`` object (none yet), then lost the race to another that
    created it at 8, creates its 5 create-only: refused, it reads 8 again and leaves it.
    (Mutation: the create replaced by an overwrite; the watermark went back to 5, and a writer
    stalled at 6 could re-create a deleted step and be told it committed.)"""

    async def body(log: ActorLog) -> tuple[int, int]:
        await _commit(log, range(10))
        absent = await log.read_watermark()
        assert absent.version is None
        await raise_watermark(log, 8)  # the other compaction, after ours read
        first_watermark_read_answers(monkeypatch, absent)
        answered = await raise_watermark(log, 5)
        return answered, (await log.read_watermark()).min_step

    assert _on_a_log(store_spec, body) == (8, 8)


def test_a_watermark_put_whose_answer_was_lost_is_read_again_not_raised(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The put raising the watermark lands and its answer is lost (a transient error: it may
    have landed). The compaction reads the watermark again, finds its own value, and goes on.
    (Mutation: ``RetryableStorageError`` not among the errors retried; a transient fault of one
    request failed the compaction.)"""

    async def body(log: ActorLog) -> tuple[int, int]:
        await _commit(log, range(10))
        original = log.store.put
        lost: list[str] = []

        async def put(key: str, data: bytes, **kwargs: Any) -> str:
            version = await original(key, data, **kwargs)
            if key == log.gc_key and not lost:
                lost.append(key)
                raise RetryableStorageError(f"{key}: simulated answer lost", key)
            return version

        monkeypatch.setattr(log.store, "put", put)
        answered = await raise_watermark(log, 6)
        assert lost == [log.gc_key]
        return answered, (await log.read_watermark()).min_step

    assert _on_a_log(store_spec, body) == (6, 6)


def test_a_damaged_step_is_judged_by_its_successor_not_taken_for_old(store_spec: StoreSpec) -> None:
    """Steps 0-3 are an hour old, 4 (damaged at rest: it does not verify) and 5-9 were written
    now. With ``min_age`` 100 s, step 3 must stay: its successor, step 4, is young, as step 5
    written after it tells. (Mutation: a step that does not verify taken for old; the watermark
    went to 4 and step 3 was deleted, its successor seconds old.)"""

    async def body(log: ActorLog) -> tuple[int, list[int]]:
        now = time.time()
        for step in range(10):
            await log.put_step(_record(step, f"w{step}", now - 3600 if step < 4 else now))
        key = log.step_key(4)
        data = (await log.store.get(key)).data
        await log.store.put(key, data[: len(data) // 2])
        report = await compact(log, 1, min_age=100.0, fresh_window=0.0)
        return report.watermark, await log.list_steps()

    assert _on_a_log(store_spec, body) == (3, list(range(3, 10)))


def test_checkpoints_without_a_readable_time_or_incarnation_are_kept(store_spec: StoreSpec) -> None:
    """Steps 0-8 are an hour old, 9 new; step 1 committed call ``c1`` as the actor born at 0,
    and from step 3 on the actor is a later one (born 3). ``min_age`` 100 s. Left beside them:
    a checkpoint of ``c1`` naming an incarnation that is no step number (a later actor's, maybe:
    it is aged, and it is new), one of call ``c2`` (never committed) naming no time, one of
    ``c3`` (never committed) an hour old, and one of ``c4`` as old beside the record of its
    failure a moment ago (it may be resumed: it is aged by that record). Only ``c3``'s goes.
    (Mutations: ``_later_than`` taking an unreadable incarnation for the committing actor's,
    ``_delete_tasks`` deleting a checkpoint without a time as aged, ``_aged_by`` passing over
    the failure record: each deleted a checkpoint a running or resumable call needs.)"""

    async def body(log: ActorLog) -> tuple[int, list[str]]:
        now = time.time()
        for step in range(10):
            record = _record(step, f"w{step}", now - 3600 if step < 9 else now)
            calls = (CallRecord("place", "c1", True, record.time),) if step == 1 else ()
            extra = {BORN: 3} if step >= 3 else {}
            await log.put_step(dataclasses.replace(record, calls=calls, extra=extra))
        checkpoints = {
            "c1": {"time": now, BORN: "three"},
            "c2": {BORN: 3},
            "c3": {"time": now - 3600, BORN: 3},
            "c4": {"time": now - 3600, BORN: 3},
        }
        for call_id, meta in checkpoints.items():
            key = f"{tasks_prefix(log.actor_id, call_id)}0"
            await log.store.put(key, codec.encode(key, meta, {"result": b"x"}))
        failed = failure_key(log.actor_id, "c4")
        await log.store.put(failed, codec.encode(failed, {"time": now, BORN: 3}, {"error": b"x"}))
        report = await compact(log, 1, min_age=100.0, fresh_window=0.0)
        left = await log.store.list(tasks_prefix(log.actor_id))
        return report.watermark, sorted(key.rsplit("/", 2)[1] for key in left)

    assert _on_a_log(store_spec, body) == (8, ["c1", "c2", "c4", "c4"])


def test_a_compaction_repeated_at_once_does_not_take_the_newest_step_for_seen_long_ago(
    store_spec: StoreSpec,
) -> None:
    """An idle actor's steps, two hours old by our clock, were written two hours before the newest
    step too, not ``fresh_window`` (an hour) before it: nothing the writers recorded shows that a
    writer that validated an hour ago has ended its put. A compaction keeps them; repeated at
    once in the same process it keeps them too: this process has not yet seen the newest step
    exist ``fresh_window`` long. (Mutation: ``_seen_long_enough`` taking any newest step seen
    before for proven, whenever seen; the second compaction deleted them a moment after the
    first.)"""

    async def body(log: ActorLog) -> list[tuple[int, int]]:
        old = time.time() - 7200
        for step in range(6):
            await log.put_step(_record(step, f"w{step}", old))
        reports = [await compact(log, 1, min_age=3600.0, fresh_window=3600.0) for _ in range(2)]
        return [(report.watermark, report.held_unproven) for report in reports]

    assert _on_a_log(store_spec, body) == [(0, 5), (0, 5)]


def test_the_newest_step_is_proven_from_when_it_was_first_seen_not_last(store_spec: StoreSpec) -> None:
    """An idle actor compacted three times by one process, ``fresh_window`` (0.2 s) apart in
    all but less than that between the second and the third: the third has seen the newest
    step exist ``fresh_window`` long (since the first) and deletes the steps below it.
    (Mutation: ``_seen_long_enough`` noting the time again at each compaction; the steps stayed
    for as long as compactions came less than ``fresh_window`` apart. A slow machine only
    widens the gaps: the third compaction is proven whatever they are.)"""

    async def body(log: ActorLog) -> list[int]:
        old = time.time() - 7200
        for step in range(6):
            await log.put_step(_record(step, f"w{step}", old))
        watermarks = [(await compact(log, 1, min_age=0.2, fresh_window=0.2)).watermark]
        for _ in range(2):
            await asyncio.sleep(0.12)
            watermarks.append((await compact(log, 1, min_age=0.2, fresh_window=0.2)).watermark)
        return watermarks

    assert _on_a_log(store_spec, body)[::2] == [0, 5]


def test_a_temp_file_younger_than_min_age_is_left_to_its_stalled_writer(tmp_path: Path) -> None:
    """A local store: a writer stalled two hours inside its put holds its temp file (``.tmp-*``)
    in the steps' directory. A compaction with ``min_age`` three hours (past any stall it
    allows for) leaves it: that writer may yet link it into place; a temp file four hours old
    goes. (Mutation: temp files swept by ``STALE_TEMP_AGE``, an hour, alone; the stalled
    writer's file was removed from under it.)"""

    async def body() -> list[str]:
        store = open_store(str(tmp_path / "store"))
        try:
            log = ActorLog(store, "temp-files")
            await _commit(log, range(3))
            directory = os.path.dirname(store._fspath(log.step_key(2)))  # type: ignore[attr-defined]
            for name, age in ((".tmp-stalled", 7200), (".tmp-killed", 4 * 3600)):
                path = os.path.join(directory, name)
                with open(path, "wb") as f:
                    f.write(b"half")
                os.utime(path, (time.time() - age, time.time() - age))
            await compact(log, 1, min_age=3 * 3600.0, fresh_window=0.0)
            return sorted(name for name in os.listdir(directory) if name.startswith(".tmp-"))
        finally:
            await store.close()

    assert asyncio.run(body()) == [".tmp-stalled"]


def test_a_delete_fails_no_post_its_base_step_applied(store_spec: StoreSpec) -> None:
    """A post the newest step applied (its sender's cursor past it) whose object is not deleted
    yet (the fold's clean-up runs after its commit): a delete's tombstone leaves it applied, and
    deletes it as stale; failed again with ``ActorDeletedError``, its poster was told "deleted"
    of a call applied. (Mutation: the ``applied`` check dropped from ``_pending_posts``.)"""

    async def body(log: ActorLog) -> tuple[list[str], list[str], str]:
        await _commit(log, range(1))
        sender = PostBox(log.store, log.actor_id, log.signing_key)
        call = PostedCall("add", pickle.dumps(((0,), {})), uuid.uuid4().hex)
        post = await sender.send(sender.prepare((call,)))
        base = dataclasses.replace(_record(1, "w1"), extra=advance_cursor({}, [post], post.time))
        box = PostBox(log.store, log.actor_id, log.signing_key)
        pending, done = await _pending_posts(box, base, post.time + 1.0)
        return [p.key for p in pending], done, post.key

    pending, done, key = _on_a_log(store_spec, body)
    assert (pending, done) == ([], [key])


def test_a_delete_clean_up_deletes_failed_call_records_it_cannot_date(store_spec: StoreSpec) -> None:
    """After the tombstone at step 5, the failed-call records of the actors it ended go: one born
    at 0, one naming an incarnation that is no step number, one damaged at rest (no actor's
    record, whatever it was); the next actor's (born 6) stays. (Mutation: ``_recorded_before``
    keeping a record it cannot date; it was left beside the next actor under the id for ever.)"""

    async def body(log: ActorLog) -> list[str]:
        records = {"old": {BORN: 0}, "bogus": {BORN: "five"}, "damaged": {BORN: 0}, "next": {BORN: 6}}
        for call_id, meta in records.items():
            key = failure_key(log.actor_id, call_id)
            data = codec.encode(key, {"time": time.time(), **meta}, {"error": b"x"})
            await log.store.put(key, data[: len(data) // 2] if call_id == "damaged" else data)
        tombstone = _record(5, "deleter")
        assert await forget_failed_calls(log.store, log.actor_id, deleted=tombstone) == 3
        return [key.rsplit("/", 2)[1] for key in await log.store.list(tasks_prefix(log.actor_id))]

    assert _on_a_log(store_spec, body) == ["next"]


def test_a_delete_gives_back_no_lease_another_holder_took(store_spec: StoreSpec) -> None:
    """A delete whose take of the folder lease ended unknown (its answer lost) reads the lease
    back before releasing it: held by another folder, it is left to it. (Mutation: the holder
    check dropped from ``_DeleterLease.release``; the delete released, in its own name, a lease
    another folder held, for any poster to take while that folder still folds.)"""

    async def body(log: ActorLog) -> tuple[str | None, bool]:
        leases = LeaseStore(log.store, log.actor_id, None)
        assert await leases.write(await leases.read(), "other-folder", 60.0, 0) is not None
        lease = _DeleterLease(leases, "the-delete", Settings())
        lease.maybe = True
        await lease.release(0)
        found = await leases.read()
        return found.holder, found.valid()

    assert _on_a_log(store_spec, body) == ("other-folder", True)


class _Halt(BaseException):
    """An interrupt of the kind the event loop does not stop for (not ``SystemExit``)."""


def test_an_interrupt_in_a_delete_clean_up_reaches_the_delete_caller(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tombstone commits; the clean-up after it, run on its own and awaited, raises an
    interrupt (no error: an exit). The delete raises it to its caller, as documented.
    (Mutation: ``_clean_up`` never re-raising; the interrupt vanished with the task.)"""

    async def interrupted(*args: Any) -> None:
        raise _Halt

    async def body(log: ActorLog) -> list[int]:
        await _commit(log, range(2))
        monkeypatch.setattr(deletion, "_forget_leftovers", interrupted)
        kept: list[asyncio.Future[None]] = []
        with pytest.raises(_Halt):
            await delete(log, Settings(), keep=kept.append)
        assert kept and kept[0].done()
        return await log.list_steps()

    assert _on_a_log(store_spec, body) == [0, 1, 2]


def test_a_delete_that_lost_to_another_delete_still_cleans_up(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deletes race for step 2; the other's tombstone lands first, and its process dies before
    its clean-up. Ours, told the step is taken by a tombstone, says "deleted already" (None) and
    does the clean-up that delete may not have: the deleted actor's failed-call record goes.
    (Mutation: the lost race answered None at once, without the clean-up a delete finding the
    actor deleted does; the record was left for the next actor under the id.)"""

    async def body(log: ActorLog) -> tuple[StepRecord | None, list[str], list[int]]:
        await _commit(log, range(2))
        record_key = failure_key(log.actor_id, "c")
        await log.store.put(record_key, codec.encode(record_key, {"time": time.time(), BORN: 0}, {}))
        put_step = ActorLog.put_step

        async def lose_to_another_delete(self: ActorLog, record: StepRecord) -> Any:
            if deletion.is_deleted(record) and record.writer != "other":
                base = await self.read_step(record.step - 1)
                assert base is not None
                other = deletion._tombstone(self, base, [], time.time(), "other-key")
                await put_step(self, dataclasses.replace(other, writer="other"))
            return await put_step(self, record)

        monkeypatch.setattr(ActorLog, "put_step", lose_to_another_delete)
        answered = await delete(log, Settings(), keep=lambda task: None)
        left = await log.store.list(tasks_prefix(log.actor_id))
        return answered, left, await log.list_steps()

    assert _on_a_log(store_spec, body) == (None, [], [0, 1, 2])


@pytest.mark.parametrize("damaged", [False, True], ids=["step-read", "step-damaged"])
def test_a_damaged_step_at_a_shared_number_settles_nothing(store_spec: StoreSpec, damaged: bool) -> None:
    """Steps 4-6 name checkpoint ``4-a`` (step 4 wrote it), 7-9 name ``7-b``; a commit of step 4
    that lost its race left ``4-z``. A compaction to watermark 2 reads step 4 (two checkpoints
    of its number): ``4-z`` is a lost race's and goes, ``4-a`` stays. Step 4 damaged at rest
    tells nothing: both stay. (Mutation: a step that does not verify taken for one naming no
    checkpoint; ``4-a``, which kept steps 5 and 6 name, was deleted: a kept step whose table
    is gone.)"""
    names = {4: f"{4:020d}-aaaaaaaaaaaaaaaa", 7: f"{7:020d}-bbbbbbbbbbbbbbbb"}
    lost = f"{4:020d}-zzzzzzzzzzzzzzzz"

    async def body(log: ActorLog) -> list[str]:
        for step in range(10):
            base = names[7] if step >= 7 else names[4] if step >= 4 else None
            await log.put_step(dataclasses.replace(_record(step, f"w{step}"), dedup_base=base))
        for name in (*names.values(), lost):
            await log.store.put(log.dedup_key(name), b"a checkpoint (never read here)")
        if damaged:
            key = log.step_key(4)
            data = (await log.store.get(key)).data
            await log.store.put(key, data[: len(data) // 2])
        report = await compact(log, 8, min_age=0.0, fresh_window=0.0)
        assert report.watermark == 2
        return sorted(await log.list_dedup_checkpoints())

    kept = [names[4], lost, names[7]] if damaged else [names[4], names[7]]
    assert _on_a_log(store_spec, body) == kept
