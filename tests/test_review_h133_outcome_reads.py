"""Review h133: what a compaction reads to decide which outcome objects no kept checkpoint names.

An outcome object ``dedup/outcomes/<N>-<sha256>`` of a step below the watermark M goes once no
checkpoint the compaction keeps names it. The compaction read every kept checkpoint for that
(one GET each), whenever such an object existed: with a large result recorded long ago and a
window of keys that keeps checkpoints coming, every compaction read them all.

A checkpoint names only objects its base checkpoint names or new ones of its own step number
(docs/protocol.md, Outcome objects); every checkpoint a kept step names, or a commit from now on
will name, descends from the floor (the one the oldest kept step, M, names), and the objects of
steps below M that it names are named by the floor. So the floor alone is read.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_dedup_outcome_objects import _BIG, Export, every_named_outcome_exists, init, restart, the_log

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.compaction import compact
from vactor_cloud.testing.lanes import StoreSpec


def checkpoint_reads(run: Any) -> list[str]:
    """The checkpoints (not outcome objects) ``run`` reads, by name."""
    log = the_log()
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        run()
    names = [
        r.key[len(log.dedup_prefix) :]
        for r in trace.requests
        if r.kind == "get" and r.key.startswith(log.dedup_prefix)
    ]
    return [name for name in names if "/" not in name]


@pytest.mark.parametrize("window", [(1000, 0.0), (3, 0.0)], ids=["still-named", "named-no-more"])
def test_a_compaction_reads_only_the_floor_checkpoint_for_the_outcome_objects_below_the_watermark(
    spec: StoreSpec, window: tuple[int, float]
) -> None:
    init(spec, dedup_window=window)
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="old").run("o")  # step 1: dedup/outcomes/<1>-<sha>
    for i in range(24):
        x.small.options(idempotency_key=f"s{i}").run(i)
    log = the_log()
    checkpoints = _sync.sync(log.list_dedup_checkpoints())
    assert len(checkpoints) >= 6, checkpoints
    # The watermark: the step after the fourth newest checkpoint's (it names that one).
    floor = checkpoints[-4]
    watermark = int(floor[:20]) + 1
    newest = _sync.sync(log.load_latest(_sync.sync(log.read_head())))
    assert newest is not None
    # What the kept checkpoints name, all of them read (outside the count): what must stay.
    kept = checkpoints[-4:]
    named = set().union(*(_sync.sync(log.read_dedup_checkpoint_outcomes(name)) for name in kept))
    objects = _sync.sync(log.list_dedup_outcomes())
    assert len(objects) == 1 and int(objects[0][:20]) < watermark
    assert (objects[0] in named) == (window == (1000, 0.0))
    report: list[Any] = []
    reads = checkpoint_reads(
        lambda: report.append(
            _sync.sync(compact(log, keep_last=newest.step - watermark + 1, min_age=0.0, fresh_window=0.0))
        )
    )
    assert report[0].watermark == watermark
    oldest_kept = _sync.sync(log.read_step(watermark))
    assert oldest_kept is not None and oldest_kept.dedup_base == floor
    # The floor, read once; none of the kept checkpoints after it (before: all four).
    assert reads == [floor]
    assert _sync.sync(log.list_dedup_outcomes()) == sorted(named & set(objects))
    every_named_outcome_exists()
    if named:
        x = restart(spec, dedup_window=window)
        assert x.export.options(idempotency_key="old").run("q") == "o" * _BIG
