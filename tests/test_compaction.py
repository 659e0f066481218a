"""Retention: compaction behind the gc low-watermark, and writers stalled across it."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from typing import Any

import pytest
from actors import Tally
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.batch import PendingCall
from vactor_cloud.compaction import CompactionReport, compact
from vactor_cloud.errors import CommitOutcomeUnknownError, StorageError
from vactor_cloud.future import ActorFuture
from vactor_cloud.log import ActorLog
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.storage import IfMatch, ObjectStore
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.parametrize("store_lane", ["memory", "local"], indirect=True)


class PausingStore(HoldOne):
    """Holds the next step put once armed (:meth:`hold`). ``fail_first``: the next step put
    first fails *before sending* (a connection error), so the held put is the writer's retry."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, "put", "/steps/", timeout=30.0)
        self.fail_first = False

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        if self.fail_first and operation == "put" and "/steps/" in key:
            self.fail_first = False
            raise StorageError(f"{key}: simulated connection reset before sending", key)
        return await super()._around(operation, key, run, **batch)


def steps(actor_id: str) -> list[int]:
    return _sync.sync(vc.get_runtime().log(actor_id).list_steps())


def call_on(runtime: Runtime, actor_id: str, method: str, *args: Any) -> Any:
    """Run a writer call through another runtime (another "process" on the same store)."""
    future: ActorFuture[Any] = ActorFuture()
    runtime.core(actor_id).submit(PendingCall(method, args, {}, False, future, uuid.uuid4().hex))
    return future.result(30)


def test_compaction_keeps_the_newest_steps_and_raises_the_watermark(spec: StoreSpec) -> None:
    init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    for _ in range(9):
        handle.incr.run()
    report = handle.compact(keep_last=3, min_age=0)
    assert isinstance(report, CompactionReport)
    assert (report.newest, report.watermark, report.deleted_steps, report.kept_steps) == (9, 7, 7, 3)
    assert steps("t") == [7, 8, 9]
    assert _sync.sync(vc.get_runtime().log("t").read_gc()) == 7
    # HEAD was moved to the newest step before anything was deleted.
    head = _sync.sync(vc.get_runtime().log("t").read_head())
    assert head is not None and head.step == 9
    # The actor lives on, from this runtime and from a fresh one.
    assert handle.incr.run() == 10
    vc.shutdown()
    init(spec)
    assert vc.get_actor("t").get.run() == 10


def test_compaction_never_deletes_the_newest_step_and_is_idempotent(spec: StoreSpec) -> None:
    init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    handle.incr.run()
    first = handle.compact(keep_last=1, min_age=0)
    second = handle.compact(keep_last=1, min_age=0)
    assert steps("t") == [1]
    assert (first.deleted_steps, second.deleted_steps, second.watermark) == (1, 0, 1)
    assert handle.get.run() == 1
    with pytest.raises(ValueError, match="keep_last"):
        handle.compact(keep_last=0, min_age=0)


def test_min_age_holds_steps_whose_successor_is_young(spec: StoreSpec) -> None:
    init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    for _ in range(5):
        handle.incr.run()
    report = handle.compact(keep_last=1, min_age=3600)
    assert (report.deleted_steps, report.watermark, report.held_by_min_age) == (0, 0, 5)
    assert steps("t") == [0, 1, 2, 3, 4, 5]


def test_min_age_binary_search_stops_at_the_first_young_step(spec: StoreSpec) -> None:
    runtime = init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    for _ in range(6):
        handle.incr.run()
    log = runtime.log("t")
    _age_steps(log, range(4), seconds=7200)
    report = _sync.sync(compact(log, keep_last=1, min_age=3600))
    # Step 3 is old, step 4 young: steps 0..2 go (their successors are old), 3 stays.
    assert (report.watermark, report.deleted_steps, report.held_by_min_age) == (3, 3, 3)
    assert steps("t") == [3, 4, 5, 6]


def test_handle_refuses_min_age_below_fresh_window(spec: StoreSpec) -> None:
    init(spec, fresh_window=5.0)
    handle = Tally.get_or_create("t")
    handle.incr.run()
    with pytest.raises(ValueError, match="fresh_window"):
        handle.compact(keep_last=1, min_age=1.0)
    assert steps("t") == [0, 1]


def test_compact_async_twin(spec: StoreSpec) -> None:
    init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    handle.incr.run()
    handle.incr.run()
    report = asyncio.run(_compact_async(handle))
    assert report.watermark == 2 and steps("t") == [2]


async def _compact_async(handle: vc.ActorHandle) -> CompactionReport:
    return await handle.compact_async(keep_last=1, min_age=0)


def test_task_checkpoints_of_compacted_calls_and_old_ones_are_deleted(spec: StoreSpec) -> None:
    runtime = init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    for _ in range(3):
        handle.incr.run()
    log = runtime.log("t")
    step1 = _sync.sync(log.read_step(1))
    assert step1 is not None
    now = time.time()
    layout = {
        step1.calls[0].call_id: now,  # committed in step 1, which goes
        # min_age older than the newest step (aged two hours below): checkpoints of calls not
        # committed are aged by the newest step's time, not by the compactor's clock
        "abandoned": now - 7200 - 3660,
        "inflight": now,  # young and not committed: must stay
    }
    for call_id, written in layout.items():
        for position in range(2):
            key = f"{log.prefix}tasks/{call_id}/{position:06d}"
            data = codec.encode(key, {"kind": "task", "time": written}, {"result": b"x"})
            _sync.sync(log.store.put(key, data, mode="create"))
    # steps 1 and 2 written long before the newest (and kept otherwise: see _writers_cutoff)
    _age_steps(log, range(3), seconds=7600)
    _age_steps(log, range(3, 4), seconds=7200)
    report = _sync.sync(compact(log, keep_last=1, min_age=3600))
    assert (report.watermark, report.deleted_steps, report.deleted_tasks) == (2, 2, 4)
    left = _sync.sync(log.store.list(f"{log.prefix}tasks/"))
    assert left == [f"{log.prefix}tasks/inflight/{p:06d}" for p in range(2)]


def _age_steps(log: ActorLog, numbers: range, *, seconds: float) -> None:
    for step in numbers:
        record = _sync.sync(log.read_step(step))
        if record is None:
            continue
        old = dataclasses.replace(record, time=record.time - seconds)
        _sync.sync(log.store.put(log.step_key(step), old.encode(log.step_key(step), log.signing_key)))


def _stall_a_writer_across_a_compaction(
    spec: StoreSpec, *, fail_first: bool, forget: bool = False
) -> tuple[ActorFuture[Any], Runtime, float]:
    """Steps 0..2 exist; a writer's put of step 3 is held while another runtime commits 3..7
    and a compaction (min_age=0) deletes steps 0..5; returns the held call, the other runtime
    and the fresh_window of the stalled one."""
    fresh_window = 0.3
    runtime = init(spec, fresh_window=fresh_window)
    pausing = PausingStore(runtime.store)
    runtime.store = pausing  # before any core exists: every ActorLog of this runtime uses it
    handle = Tally.get_or_create("t")
    handle.incr.run()
    handle.incr.run()
    pausing.fail_first = fail_first
    pausing.hold()
    armed_at = time.monotonic()
    held = handle.incr.run_async(1)
    assert pausing.held.wait(60), "the writer never reached its put"
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options, fresh_window=0.0))
    for expected in range(3, 8):
        assert call_on(other, "t", "incr", 1) == expected
    report = _sync.sync(compact(other.log("t"), keep_last=2, min_age=0, fresh_window=0.0))
    assert (report.newest, report.watermark) == (7, 6)
    assert 3 not in _sync.sync(other.log("t").list_steps())
    # The held writer validated its cache before `armed_at`; let more than its
    # fresh_window pass so that only the watermark check can save it.
    time.sleep(max(0.0, armed_at + 2 * fresh_window - time.monotonic()))
    if forget:
        _forget_compacted_writers(other.log("t"))
    pausing.release.set()
    return held, other, fresh_window


def test_writer_stalled_across_a_compaction_does_not_report_a_deleted_step(spec: StoreSpec) -> None:
    held, other, _ = _stall_a_writer_across_a_compaction(spec, fail_first=False)
    try:
        # Had it believed its re-created step 3 committed, it would answer 3.
        assert held.result(30) == 8
        log = other.log("t")
        remaining = _sync.sync(log.list_steps())
        assert remaining == [6, 7, 8]  # its stray step 3 was deleted again
        records = [_sync.sync(log.read_step(n)) for n in remaining]
        assert [r.parent for r in records if r is not None] == [5, 6, 7]
        assert call_on(other, "t", "incr", 0) == 8
        assert vc.get_actor("t").get.run() == 8
    finally:
        other.close()


def test_retried_put_landing_below_the_watermark_is_resolved_from_the_compaction_record(
    spec: StoreSpec,
) -> None:
    held, other, _ = _stall_a_writer_across_a_compaction(spec, fail_first=True)
    try:
        # Its first attempt failed before sending. The compaction recorded that step 3
        # was another writer's, so the retried put's object came later: not a commit.
        assert held.result(30) == 8
        assert _sync.sync(other.log("t").list_steps()) == [6, 7, 8]
        assert vc.get_actor("t").get.run() == 8
    finally:
        other.close()


def _forget_compacted_writers(log: ActorLog) -> None:
    """Rewrite ``gc`` without its record of deleted writers (as when the number is too old)."""
    from vactor_cloud.log_records import GcWatermark, encode_gc

    gc = _sync.sync(log.read_watermark())
    data = encode_gc(log.gc_key, GcWatermark(gc.min_step, recorded_from=gc.min_step), 0.0, log.signing_key)
    _sync.sync(log.store.put(log.gc_key, data, mode=IfMatch(gc.version or "")))


def test_late_put_whose_number_is_no_longer_recorded_reports_an_unknown_outcome(spec: StoreSpec) -> None:
    held, other, _ = _stall_a_writer_across_a_compaction(spec, fail_first=True, forget=True)
    try:
        with pytest.raises(CommitOutcomeUnknownError):
            held.result(30)
        assert _sync.sync(other.log("t").list_steps()) == [6, 7]  # its stray step 3 was removed
        assert call_on(other, "t", "incr", 0) == 7
    finally:
        other.close()


def test_put_answered_after_its_step_was_compacted_is_not_applied_twice(spec: StoreSpec) -> None:
    """Issue 12 item 2: the put landed at once, its response came after a compaction deleted it."""
    runtime = init(spec, fresh_window=0.3)
    pausing = PausingStore(runtime.store)
    runtime.store = pausing
    handle = Tally.get_or_create("t")
    handle.incr.run()
    handle.incr.run()
    pausing.answer_first = True  # the put lands at once; its answer is held
    pausing.hold()
    armed_at = time.monotonic()
    held = handle.incr.run_async(1)
    assert pausing.held.wait(60), "the writer never reached its put"
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options, fresh_window=0.0))
    try:
        # Step 3 is the held writer's commit: the others build on it.
        for expected in range(4, 9):
            assert call_on(other, "t", "incr", 1) == expected
        report = _sync.sync(compact(other.log("t"), keep_last=2, min_age=0, fresh_window=0.0))
        assert (report.newest, report.watermark) == (8, 7)
        # Only the response is late; the gate, not this wait, orders the race.
        time.sleep(max(0.0, armed_at + 2 * 0.3 - time.monotonic()))
        pausing.release.set()
        assert held.result(30) == 3  # its own commit, answered late: not re-run
        assert _sync.sync(other.log("t").list_steps()) == [7, 8]
        assert call_on(other, "t", "incr", 0) == 8  # applied once, not twice
    finally:
        other.close()


def test_watermark_is_read_after_the_probe_of_a_stale_cache(spec: StoreSpec) -> None:
    """Issue 12 item 1: the gc read must not be answered before the probe's deletion."""
    runtime = init(spec, fresh_window=60.0)
    pausing = PausingStore(runtime.store)
    runtime.store = pausing
    handle = Tally.get_or_create("t")
    handle.incr.run()
    handle.incr.run()
    core = runtime.core("t")
    core.validated_at = -math.inf  # the cache is stale: the next commit revalidates
    pausing.hold("get", "/steps/00000000000000000003")
    held = handle.incr.run_async(1)
    assert pausing.held.wait(60), "the writer never probed"
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options, fresh_window=0.0))
    try:
        for expected in range(3, 8):
            assert call_on(other, "t", "incr", 1) == expected
        report = _sync.sync(compact(other.log("t"), keep_last=2, min_age=0, fresh_window=0.0))
        assert report.watermark == 6
        pausing.release.set()
        # Had it trusted its stale cache, it would re-create step 3 and answer 3.
        assert held.result(30) == 8
        assert _sync.sync(other.log("t").list_steps()) == [6, 7, 8]
        assert call_on(other, "t", "incr", 0) == 8
    finally:
        other.close()


def _lose_a_create_to_a_compaction(spec: StoreSpec, *, forget: bool) -> tuple[ActorFuture[Any], Runtime]:
    """A fresh writer's create of step 3 meets another writer's step 3, which a compaction
    deletes before the writer reads it back."""
    runtime = init(spec, fresh_window=60.0)
    pausing = PausingStore(runtime.store)
    runtime.store = pausing
    handle = Tally.get_or_create("t")
    handle.incr.run()
    handle.incr.run()
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options, fresh_window=0.0))
    for expected in range(3, 8):
        assert call_on(other, "t", "incr", 1) == expected
    pausing.hold("get", "/steps/00000000000000000003")  # the read-back after "already exists"
    held = handle.incr.run_async(1)
    assert pausing.held.wait(60), "the writer never read its step back"
    report = _sync.sync(compact(other.log("t"), keep_last=2, min_age=0, fresh_window=0.0))
    assert report.watermark == 6
    if forget:
        _forget_compacted_writers(other.log("t"))
    pausing.release.set()
    return held, other


def test_create_refused_then_compacted_is_retried_not_reported_unknown(spec: StoreSpec) -> None:
    """Issue 12 item 13, decided by the compaction's record (every backend)."""
    held, other = _lose_a_create_to_a_compaction(spec, forget=False)
    try:
        assert held.result(30) == 8
        assert call_on(other, "t", "incr", 0) == 8
    finally:
        other.close()


def test_definite_already_exists_then_compaction_is_retried(spec: StoreSpec) -> None:
    """Issue 12 item 13 without the record: a local/memory "already exists" wrote nothing."""
    held, other = _lose_a_create_to_a_compaction(spec, forget=True)
    try:
        if getattr(other.store, "definite_create_conflicts", False):
            assert held.result(30) == 8
            assert call_on(other, "t", "incr", 0) == 8
        else:  # an HTTP client may have retried and met its own object: undecidable
            with pytest.raises(CommitOutcomeUnknownError):
                held.result(30)
    finally:
        other.close()
