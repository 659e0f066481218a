"""Review h148 (mutation sweep of compaction, deletion and the idempotency table): keyed
calls' outcomes kept across compaction. See ``test_review_h148_compaction_sweep`` for the
sweep's table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_dedup_outcome_objects import Export, outcome_objects, restart, the_log
from test_dedup_outcome_objects import init as init_outcomes

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.compaction import compact
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

_BIG = 100 * 1024


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    yield store_spec
    vc.shutdown()


def test_outcome_objects_stay_while_the_checkpoint_naming_them_cannot_be_read(spec: StoreSpec) -> None:
    """A keyed call's large outcome is an object of step 1, named by the checkpoint the newest
    step names. A compaction past step 1 while that checkpoint does not verify (damaged at
    rest) cannot tell what it names: it keeps every outcome object, and once the checkpoint
    is whole again the retry is answered from the table. (Mutation: the unreadable checkpoint
    taken for one naming nothing; the outcome object was deleted, and the retry was told its
    result was lost.)"""
    init_outcomes(spec)
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="k").run("z")
    for i in range(3):
        x.small.run(i)
    (kept,) = outcome_objects()
    log = the_log()
    record = _sync.sync(log.load_latest(None))
    assert record is not None and record.dedup_base is not None
    key = log.dedup_key(record.dedup_base)
    whole = _sync.sync(log.store.get(key)).data
    _sync.sync(log.store.put(key, whole[: len(whole) // 2]))
    report = _sync.sync(compact(log, keep_last=1, min_age=0.0, fresh_window=0.0))
    assert report.watermark == record.step
    assert outcome_objects() == [kept]
    _sync.sync(log.store.put(key, whole))
    x = restart(spec)
    assert x.export.options(idempotency_key="k").run("q") == "z" * _BIG
    assert x.count.run() == 4
