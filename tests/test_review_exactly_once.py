"""A hostile review of the commit path and exactly-once (review-h46): each test failed on the
code it was written against, unless its docstring says it guards behaviour found sound.

What is attacked: a HEAD that names a compacted step number where an object still sits (a
stalled writer's late put, left by a crash), a class body missing from storage, and keyed
calls across an idempotency checkpoint rollover.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from actors import Shelf
from test_execution_model import RUNS, Box, _hold
from test_hostile_review import call_on

import vactor_cloud as vc
from vactor_cloud import _sync, codec, definition, keys
from vactor_cloud.compaction import compact
from vactor_cloud.errors import NotFoundError, StorageError
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.init(store_spec.url, **store_spec.options)
    yield store_spec
    vc.shutdown()


def reopen(spec: StoreSpec) -> None:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    vc.init(spec.url, **spec.options, settings=Settings(storage=spec.url))


def _raw(key: str) -> bytes:
    return _sync.sync(vc.get_runtime().store.get(key)).data


def _put(key: str, data: bytes) -> None:
    _sync.sync(vc.get_runtime().store.put(key, data))


# -- HEAD naming a compacted step ------------------------------------------------------------
def test_a_head_naming_a_compacted_step_where_a_leftover_sits_loads_the_newest_step(
    spec: StoreSpec,
) -> None:
    """A stalled writer's late put re-creates a freed step number below the watermark; a
    crash before it deletes that object again leaves it there (the watermark says it is no
    step of the history). A HEAD naming that number (restored from a backup, or replayed:
    a signed HEAD of this very actor passes its HMAC) made a cold load take the leftover
    for the newest step: a reader got the old state, and a writer committed on top of it,
    one number past it (free, compacted), within ``fresh_window`` so with no watermark
    check: the caller was told its call committed while no reader ever saw it."""
    handle = Shelf.get_or_create("leftover")
    for _ in range(10):
        handle.add.run()
    log = vc.get_runtime().log("leftover")
    old_step = _raw(log.step_key(3))
    _sync.sync(vc.get_runtime().heads.flush())
    current_head = _raw(log.head_key)
    report = _sync.sync(compact(log, keep_last=2, min_age=0.0, fresh_window=0.0))
    assert report.watermark == 9
    _put(log.step_key(3), old_step)  # the leftover of a crashed late put
    # HEAD as it was at step 3 (restored, or replayed: signed, it passes the same key's HMAC)
    head = codec.decode(log.head_key, current_head, signing_key=None)
    stale = codec.encode(log.head_key, {**head.meta, "step": 3}, signing_key=None)
    _put(log.head_key, stale)

    reopen(spec)
    assert vc.get_actor("leftover").value.run() == 10
    reopen(spec)
    assert vc.get_actor("leftover").add.run() == 11
    reopen(spec)
    assert vc.get_actor("leftover").value.run() == 11
    log = vc.get_runtime().log("leftover")
    # committed as the step after the newest, not on the freed number past the leftover
    assert _sync.sync(log.read_step(11)) is not None
    assert _sync.sync(log.read_step(4)) is None


# -- keyed calls in one group commit ---------------------------------------------------------
def test_keyed_calls_in_one_batch_with_raising_mates_apply_once_and_answer_by_value(
    spec: StoreSpec,
) -> None:
    """Guards behaviour found sound: queued behind a held writer, these are one step. A key
    used twice in the batch runs once (the second gets the first's result, its own copy); a
    keyed call that raises records the exception, and a later call with its key in the same
    batch re-raises it without running; the raising calls' mutations reach no one; results
    that alias the actor's list are each the list as it was after their own call."""
    RUNS.clear()
    box = Box.get_or_create("keyed-batch")
    held, gate = _hold("keyed-batch")
    futures = [
        box.add.options(idempotency_key="a").run_async("a"),
        box.fail.run_async("unkeyed-boom"),
        box.add.options(idempotency_key="a").run_async("a-again"),
        box.fail.options(idempotency_key="f").run_async("keyed-boom"),
        box.add.options(idempotency_key="f").run_async("never"),
        box.add.run_async("b"),
    ]
    gate.set()
    held.result(60)
    first, again = futures[0].result(60), futures[2].result(60)
    assert first == again == ["a"] and first is not again
    for index in (1, 3, 4):
        with pytest.raises(ValueError):
            futures[index].result(60)
    assert futures[5].result(60) == ["a", "b"]
    assert RUNS[("keyed-batch", "unkeyed-boom")] == RUNS[("keyed-batch", "keyed-boom")] == 1
    assert box.contents.run() == ["a", "b"]
    assert box.value.run() == 1  # hold() only: no "poison", no +1000
    reopen(spec)
    retry = vc.get_actor("keyed-batch")
    assert retry.add.options(idempotency_key="a").run("x") == ["a"]
    with pytest.raises(ValueError, match="keyed-boom"):
        retry.add.options(idempotency_key="f").run("x")
    assert retry.contents.run() == ["a", "b"]


# -- a class body missing from storage -------------------------------------------------------
def test_a_missing_class_body_is_reported_as_such_to_a_process_without_the_class(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step names its class by content hash; a process without the class loads the body
    from ``class/<sha>``. With that object gone (a lifecycle rule, a partial copy of the
    bucket) the load failed with the store's bare "no such object" on a key the user never
    wrote, as if storage were broken. It is still a ``NotFoundError`` (what storage callers
    catch), and now says whose class body is missing and what to do."""
    handle = Shelf.get_or_create("stranger")
    assert handle.add.run() == 1
    log = vc.get_runtime().log("stranger")
    sha = _sync.sync(log.read_step(1)).class_ref.sha  # type: ignore[union-attr]
    _sync.sync(vc.get_runtime().store.delete(log.class_key(sha)))
    reopen(spec)
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)  # this process lacks the class
    with pytest.raises(NotFoundError) as caught:
        vc.get_actor("stranger").add.run()
    message = str(caught.value)
    assert caught.value.key == log.class_key(sha)
    assert "actor 'stranger'" in message and Shelf.name in message
    assert "class body" in message and "import the class's module" in message
    monkeypatch.setitem(definition._REGISTRY, Shelf.name, Shelf.definition)
    reopen(spec)
    assert vc.get_actor("stranger").add.run() == 2  # a process with the class runs it


# -- keys across a checkpoint rollover, from a writer whose cache predates it ----------------
def test_a_writer_whose_cache_predates_checkpoint_rollovers_applies_keys_once(
    spec: StoreSpec,
) -> None:
    """Guards behaviour found sound: this process caches a step and the checkpoint it names
    (``fresh_window`` long: its cache counts as fresh, so it builds on it without a probe).
    Another process then records many keys (the table moves to new checkpoints several
    times). Retries of both processes' keys from here run nothing again (each attempt on
    the stale cache loses its create to the newer step and reloads), and a new key runs
    once. (No compaction here: one with ``min_age=0`` under a writer whose cache is fresh
    for 600 s breaks its documented precondition, ``min_age`` >= ``fresh_window``.)"""
    from test_dedup_checkpoints import _TAG, Wallet

    reopen_with = Settings(storage=spec.url, fresh_window=600.0)
    vc.shutdown()
    vc.init(spec.url, **spec.options, settings=reopen_with)
    wallet = Wallet.get_or_create("rollover")
    mine = {f"a{i}": wallet.pay.options(idempotency_key=f"a{i}").run(1, tag=f"{i}{_TAG}") for i in range(12)}
    here = vc.get_runtime().log("rollover")
    cached = here.dedup_cache
    assert cached is not None
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options))
    try:
        theirs = {f"b{i}": call_on(other, "rollover", "pay", 1, f"{i}{_TAG}", key=f"b{i}") for i in range(30)}
        newest = _sync.sync(other.log("rollover").load_latest(None))
    finally:
        other.close()
    assert newest is not None and newest.dedup_base != cached[0]  # the table moved on
    for key, result in {**theirs, **mine}.items():
        assert wallet.pay.options(idempotency_key=key).run(1, tag="retry") == result, key
    assert wallet.view.run() == (42, 42)
    assert wallet.pay.options(idempotency_key="new").run(5) == "47:"
    assert wallet.pay.options(idempotency_key="new").run(5) == "47:"
    assert wallet.view.run() == (47, 43)


# -- a lost put whose retry finds another writer's step with the same key --------------------
def test_a_keyed_put_that_failed_unlanded_while_another_process_committed_the_key_applies_once(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards behaviour found sound: this process's keyed commit sends its create, which
    fails without landing (a connection reset); meanwhile another process, retrying the same
    request, commits that key at the very number. The read-back finds the other writer's
    step: a race lost, not our commit; the call is applied again on that step, finds its key
    there and returns the recorded result. Applied once, one result for both callers."""
    handle = Shelf.get_or_create("lost-put")
    assert handle.add.run(1) == 1
    store = vc.get_runtime().store
    step_two = keys.step_key("lost-put", 2)
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options))
    seen: list[int] = []
    armed = [True]  # the first create of step 2 (ours) only: the other process's goes through

    def lost(key: str) -> StorageError | None:
        """For our create of step 2: the other process commits the key first, then ours fails."""
        if key != step_two or not armed:
            return None
        armed.clear()
        return StorageError(f"{key}: connection reset (the request never arrived)", key)

    def commit_elsewhere() -> None:
        seen.append(call_on(other, "lost-put", "add", 10, key="req-1"))

    real_put, real_put_now = store.put, store.put_now

    async def put(key: str, data: bytes, *, mode: Any = "overwrite") -> str:
        failure = lost(key)
        if failure is not None:  # (off this loop: the other runtime may share it)
            await asyncio.get_running_loop().run_in_executor(None, commit_elsewhere)
            raise failure
        return await real_put(key, data, mode=mode)

    def put_now(key: str, data: bytes, *, mode: Any = "overwrite") -> str:
        failure = lost(key)
        if failure is not None:
            commit_elsewhere()
            raise failure
        return real_put_now(key, data, mode=mode)

    monkeypatch.setattr(store, "put", put)
    monkeypatch.setattr(store, "put_now", put_now)
    try:
        assert handle.add.options(idempotency_key="req-1").run(10) == 11
    finally:
        other.close()
    assert seen == [11]
    assert handle.value.run() == 11
    reopen(spec)
    assert vc.get_actor("lost-put").value.run() == 11
