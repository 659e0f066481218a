"""Compaction beside damaged steps (the h55 review). Each test failed on the code it was
written against; no timing is asserted (a pause only makes steps older than ``min_age``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.compaction import compact
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: a pause longer than ``_MIN_AGE``: the steps written before it are older than that
_PAUSE = 0.05
_MIN_AGE = 0.01


@pytest.fixture
def actors(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init(settings=vc.Settings(storage=store_spec.url, fresh_window=0.0, head_interval=3600.0))
    try:
        yield store_spec
    finally:
        vc.shutdown()


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n


@pytest.mark.parametrize("damaged", [3, 4])
def test_a_step_damaged_at_rest_does_not_stop_compaction_from_deleting_it(
    actors: StoreSpec, damaged: int
) -> None:
    """Compaction reads the recorded time of steps it may delete (``min_age``); one that did
    not verify (truncated at rest) failed every compaction of the actor with a bare
    ``IntegrityError`` of that step's key: the history could never be compacted, not even
    the damaged step itself. A step that does not verify is now judged by its successor's
    time (the chain is causal: it was written before it), and deleted with the others."""
    ledger = Ledger.get_or_create("ledger")
    for _ in range(5):
        ledger.add.run()
    time.sleep(_PAUSE)
    assert ledger.add.run() == 6  # the newest step, _PAUSE younger than the others
    runtime = vc.get_runtime()
    log = runtime.log("ledger")
    key = log.step_key(damaged)
    data = _sync.sync(runtime.store.get(key)).data
    _sync.sync(runtime.store.put(key, data[: len(data) // 2]))
    report = runtime.run(compact(log, 1, min_age=_MIN_AGE, fresh_window=0.0))
    # (step 5 stays: its successor, the newest, is younger than min_age)
    assert report.watermark == 5 and report.deleted_steps == 5, report
    assert _sync.sync(log.list_steps()) == [5, 6]
    assert ledger.add.run() == 7


def test_a_damaged_step_at_the_new_watermark_does_not_fail_a_compaction_that_deleted_steps(
    actors: StoreSpec,
) -> None:
    """After deleting the steps below the watermark, compaction reads the watermark step (the
    oldest kept) for the idempotency checkpoint it names; that step damaged at rest failed the
    compaction with a bare ``IntegrityError`` once its steps were already deleted (no report),
    and every compaction after it the same way. The old checkpoints are now kept then (they
    are what a damaged step might name), with a warning, and the compaction reports."""
    ledger = Ledger.get_or_create("ledger-watermark")
    for _ in range(6):
        ledger.add.run()
    runtime = vc.get_runtime()
    log = runtime.log("ledger-watermark")
    key = log.step_key(5)
    data = _sync.sync(runtime.store.get(key)).data
    _sync.sync(runtime.store.put(key, data[: len(data) // 2]))
    report = runtime.run(compact(log, 2, min_age=0, fresh_window=0.0))
    assert report.watermark == 5 and report.deleted_steps == 5, report
    assert _sync.sync(log.list_steps()) == [5, 6]
