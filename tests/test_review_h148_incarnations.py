"""Review h148 (mutation sweep of compaction, deletion and the idempotency table): keyed calls
across incarnations, beside a compaction. See ``test_review_h148_compaction_sweep`` for the
sweep's table."""

from __future__ import annotations

import asyncio

import pytest
from actors import Orders, order_children
from test_review_incarnation_keys import spec

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.compaction import compact
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


__all__ = ["spec"]  # (a fixture, used by name)


def test_a_compaction_whose_probe_meets_a_later_actors_watermark_reads_the_checkpoints(
    spec: StoreSpec,
) -> None:
    """A compaction reads the old actor's newest step, then lists ``tasks/``. Meanwhile the id is
    deleted and made again and the new actor's call with the key the old actor committed writes
    its checkpoint; then, as the first compaction deletes the old steps (it read the keyed call
    in them), a compaction of the new actor deletes everything up to its creation: the
    tombstone right after the step the first compaction read is gone. Its probe finds nothing
    past that step, but the watermark past it: the newest step is of a later actor, and every
    checkpoint of the committed call id is read (it is the new actor's) rather than deleted
    unread. (Mutation: the ``watermark.min_step > latest.step`` answer dropped from
    ``_born_after_listing``; the old actor's incarnation was taken for the newest, the new
    actor's checkpoint deleted, and its call's retry ran the child again.)"""
    order_children.reset()
    old = Orders.get_or_create("ord-h148")
    assert old.place.options(idempotency_key="k").run("o") == "o#1"
    old.touch.run()
    compactor = Runtime(Settings(storage=spec.url, storage_options=spec.options, fresh_window=0.0))
    calls: list[vc.ActorFuture[str]] = []
    watermarks: list[int] = []

    def recreate_and_checkpoint() -> None:
        assert vc.delete_actor("ord-h148") is True
        new = Orders.get_or_create("ord-h148")
        calls.append(new.place_slowly.options(idempotency_key="k", max_retries=1).run_async("o"))
        assert order_children.checkpointed.wait(60), "the new actor's call never checkpointed its child"

    def compact_the_new_actor() -> None:
        log = vc.get_runtime().log("ord-h148")
        watermarks.append(_sync.sync(compact(log, keep_last=1, min_age=0.0, fresh_window=0.0)).watermark)

    listed, deleted = compactor.store.list, compactor.store.delete_many

    async def race_before_the_listing(prefix: str, *args: object, **kwargs: object) -> list[str]:
        if "/tasks/" in prefix and not calls:
            await asyncio.to_thread(recreate_and_checkpoint)
        return await listed(prefix, *args, **kwargs)  # type: ignore[arg-type]

    async def race_before_the_step_deletes(keys: list[str]) -> None:
        if calls and not watermarks and any("/steps/" in key for key in keys):
            await asyncio.to_thread(compact_the_new_actor)
        await deleted(keys)

    compactor.store.list = race_before_the_listing  # type: ignore[method-assign]
    compactor.store.delete_many = race_before_the_step_deletes  # type: ignore[method-assign]
    try:
        report = _sync.sync(compact(compactor.log("ord-h148"), keep_last=1, min_age=0.0, fresh_window=0.0))
        assert calls, "the compaction never listed the checkpoints: the race was not reproduced"
        # (the other compaction passed the tombstone that followed the step this one read)
        assert watermarks and watermarks[0] > report.newest + 1, (watermarks, report)
    finally:
        order_children.compacted.set()
        compactor.close()
    assert calls[0].result(timeout=60) == "o#2"
    assert order_children.run == ["o", "o"]
