"""Keyed calls across incarnations (``vc.delete_actor`` then ``get_or_create`` under the same
id): a keyed call's id is derived from the actor id and the key, so it is the same on the old
actor and the new one. Attacked here: compaction's clean-up of sub-task checkpoints
(``tasks/<call id>/``), and ``call_outcome``. Each test failed on the code before its fix,
but those whose docstring begins "Pin (held)" (they failed when the check they pin was
broken on purpose)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from actors import Orders, order_children

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.compaction import compact
from vactor_cloud.dedup import Outcome
from vactor_cloud.posting import encode_outcomes
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    yield store_spec
    vc.shutdown()


def test_compaction_keeps_the_next_actors_checkpoints_of_a_key_the_old_actor_committed(
    spec: StoreSpec,
) -> None:
    """The old actor committed a keyed call; the actor is deleted and made again, and the new
    actor runs a call with the same key (same call id, so the same ``tasks/<call id>/``). A
    compaction passing the old actor's step took the call for committed and deleted the new
    actor's checkpoints of its still-running call: its retry ran the child again. Compaction
    now judges a checkpoint by the incarnation it names."""
    order_children.reset()
    old = Orders.get_or_create("ord-c1")
    assert old.place.options(idempotency_key="k").run("o") == "o#1"
    assert vc.delete_actor("ord-c1") is True
    new = Orders.get_or_create("ord-c1")
    new.touch.run()
    new.touch.run()
    log = vc.get_runtime().log("ord-c1")
    call = new.place_slowly.options(idempotency_key="k", max_retries=1).run_async("o")
    try:
        assert order_children.checkpointed.wait(60), "the new actor's call never checkpointed its child"
        report = _sync.sync(compact(log, keep_last=1, min_age=0.0, fresh_window=0.0))
        assert report.watermark > 1, report  # (the old actor's keyed step went)
    finally:
        order_children.compacted.set()
    assert call.result(timeout=60) == "o#2"
    assert order_children.run == ["o", "o"]


def test_call_outcome_does_not_answer_with_the_old_actors_outcome_of_the_call_id(
    spec: StoreSpec,
) -> None:
    """The old actor's step holds the outcome of a posted call (a keyed call's id is the same
    on the next actor under the id). After the delete and the new actor's creation, a process
    that did not post the call asked ``call_outcome`` for it: the walk back from the newest
    step went past the new actor's creation into the old actor's steps and answered with the
    old actor's result, for a call the new actor never applied. The walk now stops at the
    newest step's incarnation (its creation step, ``born``): no request added."""
    old = Orders.get_or_create("ord-o1")
    old.touch.run()
    runtime = vc.get_runtime()
    core = runtime.core("ord-o1")
    mine = core.record
    assert mine is not None
    posted = dataclasses.replace(
        mine,
        step=mine.step + 1,
        parent=mine.step,
        posted=encode_outcomes({"keyed-call": Outcome(True, "old actor's result")}),
        carried=b"",
    )
    _sync.sync(core.log.put_step(posted))
    assert vc.get_actor("ord-o1").call_outcome("keyed-call") == "old actor's result"
    assert vc.delete_actor("ord-o1") is True
    new = Orders.get_or_create("ord-o1")
    new.touch.run()
    with pytest.raises(LookupError):
        vc.get_actor("ord-o1").call_outcome("keyed-call")


def test_compaction_that_read_the_old_actor_keeps_checkpoints_the_next_actor_wrote_meanwhile(
    spec: StoreSpec,
) -> None:
    """A compaction reads the newest step (the old actor's), then lists ``tasks/``. In between,
    another process deleted the actor, made it again, and the new actor's call with the key
    the old actor committed wrote its checkpoint. The compaction took the listed checkpoint
    for the newest actor's committed call (its shortcut: no read) and deleted it: the new
    call's retry ran its child again. The shortcut is now taken only if the newest step,
    probed again after the listing, is still of the incarnation read first."""
    order_children.reset()
    old = Orders.get_or_create("ord-c2")
    assert old.place.options(idempotency_key="k").run("o") == "o#1"
    old.touch.run()
    old.touch.run()
    compactor = Runtime(Settings(storage=spec.url, storage_options=spec.options, fresh_window=0.0))
    calls: list[vc.ActorFuture[str]] = []

    def recreate_and_checkpoint() -> None:
        assert vc.delete_actor("ord-c2") is True
        new = Orders.get_or_create("ord-c2")
        calls.append(new.place_slowly.options(idempotency_key="k", max_retries=1).run_async("o"))
        assert order_children.checkpointed.wait(60), "the new actor's call never checkpointed its child"

    listed = compactor.store.list

    async def race_before_the_listing(prefix: str, *args: object, **kwargs: object) -> list[str]:
        if "/tasks/" in prefix and not calls:
            await asyncio.to_thread(recreate_and_checkpoint)
        return await listed(prefix, *args, **kwargs)  # type: ignore[arg-type]

    compactor.store.list = race_before_the_listing  # type: ignore[method-assign]
    try:
        report = _sync.sync(compact(compactor.log("ord-c2"), keep_last=1, min_age=0.0, fresh_window=0.0))
        assert calls, "the compaction never listed the checkpoints: the race was not reproduced"
        assert report.watermark > 1, report  # (the old actor's keyed step went)
    finally:
        order_children.compacted.set()
        compactor.close()
    assert calls[0].result(timeout=60) == "o#2"
    assert order_children.run == ["o", "o"]
