"""Retention, history and timers at their edges, from a hostile review: each test failed on
the code it was written against."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from actors import Tally
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import StepNotFoundError
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.parametrize("store_lane", ["memory", "local"], indirect=True)


def _plant_stray(actor_id: str, number: int, value: int) -> None:
    """What docs/retention.md "Residual risks" describes: a writer that held step
    ``number - 1``, stalled while a compaction deleted ``number``, re-created it, and
    crashed before deleting it again. The object is the writer's own, well-formed and
    signed step: just no part of the history (the watermark is above it)."""
    log = vc.get_runtime().log(actor_id)
    newest = _sync.sync(log.read_step(_sync.sync(log.list_steps())[-1]))
    assert newest is not None
    gc = _sync.sync(log.read_gc())
    assert number < gc
    template = dataclasses.replace(newest, step=number, parent=number - 1, writer="stray-writer")
    # the stray's state: the class's own encoding of {"value": value}
    from vactor_cloud.state import dumps_state

    stray = dataclasses.replace(template, state=dumps_state({"value": value}, newest.serializer))
    key = log.step_key(number)
    _sync.sync(log.store.put(key, stray.encode(key, log.signing_key), mode="create"))


def test_state_at_of_a_compacted_step_ignores_a_stray_below_the_watermark(spec: StoreSpec) -> None:
    init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    for _ in range(6):
        handle.incr.run()
    report = handle.compact(keep_last=2, min_age=0)
    assert report.watermark == 5
    _plant_stray("t", 2, 999)
    # docs/history.md: a compacted step raises StepNotFoundError; retention.md: readers ignore a stray.
    with pytest.raises(StepNotFoundError):
        handle.state_at(2)


def test_run_at_step_of_a_compacted_step_ignores_a_stray(spec: StoreSpec) -> None:
    init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    for _ in range(6):
        handle.incr.run()
    handle.compact(keep_last=2, min_age=0)
    _plant_stray("t", 2, 999)
    with pytest.raises(StepNotFoundError):
        handle.get.run(at_step=2)


def test_history_does_not_list_a_stray_below_the_watermark(spec: StoreSpec) -> None:
    init(spec, fresh_window=0.0)
    handle = Tally.get_or_create("t")
    for _ in range(6):
        handle.incr.run()
    handle.compact(keep_last=2, min_age=0)
    _plant_stray("t", 4, 999)
    steps = [e.step for e in handle.history()]
    assert steps == [6, 5], steps


# -- timers x retention ---------------------------------------------------------------------------


@vc.virtual_actor
class RvPinger:
    def __init__(self) -> None:
        self.pings = 0
        self.ticks = 0

    def ping(self) -> int:
        self.pings += 1
        return self.pings

    def tick(self) -> int:
        self.ticks += 1
        return self.ticks

    @vc.virtual_actor.readonly
    def counts(self) -> tuple[int, int]:
        return self.pings, self.ticks


def _call_on(runtime: Runtime, actor_id: str, method: str, *args: Any) -> Any:
    import uuid

    from vactor_cloud.batch import PendingCall
    from vactor_cloud.future import ActorFuture

    future: ActorFuture[Any] = ActorFuture()
    runtime.core(actor_id).submit(PendingCall(method, args, {}, False, future, uuid.uuid4().hex))
    return future.result(30)


def test_timer_fired_on_a_cache_older_than_a_big_compaction_fires_without_error(spec: StoreSpec) -> None:
    """docs/timers.md: a batch of fire calls skips the probe because "the create-only put
    tells whether the cache was the newest step". After a compaction freed the number
    it does not: the put re-creates a compacted step, and past the 512 recorded writers
    the runner gets CommitOutcomeUnknownError for a fire that certainly did not commit
    (its base was provably stale: the watermark is far above it)."""
    import time

    from vactor_cloud.compaction import compact
    from vactor_cloud.log_records import GC_RECORDED_STEPS

    runner_rt = init(spec, fresh_window=0.05)
    handle = RvPinger.get_or_create("p")
    handle.tick.options(delay=0.5, timer_key="k").run()  # the runner's cache holds the timer
    due_at = time.time() + 0.5
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options, fresh_window=0.0))
    try:
        for _ in range(GC_RECORDED_STEPS + 8):
            _call_on(other, "p", "ping")
        _sync.sync(compact(other.log("p"), keep_last=1, min_age=0, fresh_window=0.0))
        time.sleep(max(0.0, due_at - time.time()) + 0.1)
        report = vc.fire_due_timers(runtime=runner_rt, split="none")
        assert report.errors == [], report.errors
        assert report.fired == 1
        assert _call_on(other, "p", "tick") == 2  # fired exactly once before this call
    finally:
        other.close()


def test_timer_scheduled_at_a_negative_epoch_fires(spec: StoreSpec) -> None:
    """``at=`` accepts any finite time ("a timer set in the past" fires at once), but a
    negative epoch gives a due-index key ``timers/-000...`` that ``parse_entry`` rejects
    (not all digits): no runner ever fires it, ``timers ls`` does not show it, and the
    caller was told it is scheduled."""
    init(spec, fresh_window=0.0)
    handle = RvPinger.get_or_create("neg")
    assert handle.tick.options(at=-1.0, timer_key="past").run() == "past"
    assert [t["key"] for t in handle.timers()] == ["past"]
    report = vc.fire_due_timers(split="none")
    assert report.fired == 1, report
    assert handle.counts.run() == (0, 1)
