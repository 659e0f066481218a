"""Review h148 (mutation sweep of compaction, deletion and the idempotency table): the table's
window and layers, driven directly. See ``test_review_h148_compaction_sweep`` for the sweep's
table."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from vactor_cloud import bytecode, dedup
from vactor_cloud.dedup import DedupTable, Outcome, StepDedup
from vactor_cloud.errors import IntegrityError
from vactor_cloud.lease import CLOCK_SKEW
from vactor_cloud.log import ActorLog, ClassRef, StepRecord
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

T = TypeVar("T")


def _step_with_table(step: int, table: bytes) -> StepRecord:
    record = StepRecord(
        step=step,
        parent=None if step == 0 else step - 1,
        class_ref=ClassRef("0" * 64, "tests.Sweep"),
        serializer="json",
        state=b"{}",
        writer=f"w{step}",
        time=time.time(),
    )
    return dataclasses.replace(record, dedup=table)


def test_an_entry_past_max_age_by_less_than_the_clock_skew_stays_in_the_window() -> None:
    """A key recorded ``max_age`` + 60 s ago by the recorder's clock, with a newer key beside it
    (``max_keys`` 1): the committer's clock may run up to ``CLOCK_SKEW`` ahead of the
    recorder's, so the key is kept and a retry is answered from the table. (Mutation:
    ``kept_for`` without its skew margin; the key was dropped when the table was written, and
    the retry ran the call a second time inside the window.)"""
    max_age = 2 * CLOCK_SKEW
    now = 10_000.0
    table = DedupTable(
        {
            "old": (now - max_age - 60.0, Outcome(True, "old")),
            "new": (now, Outcome(True, "new")),
        }
    )
    assert set(table.trimmed((1, max_age), now)) == {"old", "new"}
    step = StepDedup(None, _step_with_table(1, table.dump("json", (1, max_age), now)))
    assert step.load_without_io()
    found = step.get("old", window=(1, max_age), now=now)
    assert found is not None and found.value == "old"


def test_a_key_recorded_again_is_answered_with_its_newest_outcome() -> None:
    """A key past the window (two newer keys, old) runs again and is recorded again in this
    commit while the table read still holds its first entry: asked again (a retry in the same
    batch), it is answered with the second outcome. (Mutation: ``_entry`` looking in the table
    read before the entries of this commit; the retry got the first run's outcome.)"""
    window = (2, 0.0)
    old = {key: (0.0, Outcome(True, f"first {key}")) for key in ("a", "b", "c")}
    table = StepDedup(None, _step_with_table(1, DedupTable(old).dump("json", (10, 0.0), now=0.0)))
    assert table.load_without_io()
    assert table.get("a", window=window, now=10.0) is None
    table.record("a", Outcome(True, "second a"), 10.0)
    found = table.get("a", window=window, now=10.0)
    assert found is not None and found.value == "second a"


def test_keys_recorded_in_this_commit_count_as_newer_than_the_table_read() -> None:
    """The table read holds ``a`` (old); this commit records two keys. With a window of two keys
    and no age, ``a`` has two newer keys and is past the window: a call with it runs again, as
    the window promises. (Mutation: ``_newer_than`` counting for a key of the table read only
    the keys after it there; ``a`` was answered from the table past its window, while the table
    this commit writes drops it.)"""
    old = {"a": (0.0, Outcome(True, "first a"))}
    table = StepDedup(None, _step_with_table(1, DedupTable(old).dump("json", (10, 0.0), now=0.0)))
    assert table.load_without_io()
    table.record("b", Outcome(True, "b"), 10.0)
    table.record("c", Outcome(True, "c"), 10.0)
    assert table.get("a", window=(2, 0.0), now=10.0) is None


def _on_a_log(store_spec: StoreSpec, body: Callable[[ActorLog], Awaitable[T]]) -> T:
    async def run() -> T:
        store = store_spec.open()
        try:
            return await body(ActorLog(store, f"table-{uuid.uuid4().hex[:8]}"))
        finally:
            await store.close()

    return asyncio.run(run())


def test_a_checkpoint_stored_under_another_serializer_is_refused_undecoded(store_spec: StoreSpec) -> None:
    """A json actor's step names a checkpoint whose metadata says ``pickle`` (forged, or another
    class's): the table is refused (``IntegrityError``) before a byte of it is decoded: a json
    actor never unpickles. (Mutation: ``StepDedup.load`` decoding by the serializer the
    checkpoint names; the pickled table was loaded.)"""

    async def body(log: ActorLog) -> None:
        name = f"{1:020d}-{uuid.uuid4().hex[:16]}"
        await log.put_dedup_checkpoint(name, bytecode.dumps([("k", 0.0, True, "unpickled")]), "pickle")
        step = dataclasses.replace(_step_with_table(2, b""), dedup_base=name)
        with pytest.raises(IntegrityError, match="serializer"):
            await StepDedup(log, step, "json").load()

    _on_a_log(store_spec, body)


def test_an_outcome_object_stored_under_another_serializer_is_refused_undecoded(
    store_spec: StoreSpec,
) -> None:
    """A json actor's checkpoint names an outcome object whose metadata says ``pickle`` (its name
    the SHA-256 of its bytes, as any): a retry with the key is refused (``IntegrityError``)
    before the object is decoded. (Mutation: ``StepDedup.fetch`` decoding by the serializer the
    object names; the pickled outcome was returned.)"""

    async def body(log: ActorLog) -> None:
        outcome = dedup.outcome_bytes(Outcome(True, "unpickled"), "pickle")
        target = f"{1:020d}-{hashlib.sha256(outcome).hexdigest()}"
        await log.put_dedup_outcome(target, outcome, "pickle")
        table = json.dumps([["k", 0.0, True, None, target]]).encode()
        name = f"{1:020d}-{uuid.uuid4().hex[:16]}"
        await log.put_dedup_checkpoint(name, table, "json", outcomes=(target,))
        step = dataclasses.replace(_step_with_table(2, b""), dedup_base=name)
        with pytest.raises(IntegrityError, match="serializer"):
            await StepDedup(log, step, "json").prepare(["k"])

    _on_a_log(store_spec, body)


def test_keys_of_one_batch_are_inside_a_window_without_age() -> None:
    """A window of one key and no age (``(1, 0.0)``): one batch records ``k1`` then ``k2`` (one
    ``now``); a second call with ``k1`` in that batch is answered from the table: an entry 0 s
    old is not past an age of 0. (Mutation: the age test ``>=`` for ``>``; the second call with
    ``k1`` ran the method again in the same batch.)"""
    table = StepDedup(None, _step_with_table(1, b""))
    assert table.load_without_io()
    table.record("k1", Outcome(True, "one"), 10.0)
    table.record("k2", Outcome(True, "two"), 10.0)
    found = table.get("k1", window=(1, 0.0), now=10.0)
    assert found is not None and found.value == "one"


def test_a_table_held_in_the_step_is_cut_to_the_window() -> None:
    """A step holding the whole table (small, no checkpoint) with three old keys; this commit
    records a fourth with a window of two keys and no age: the next step holds the newest two
    only. (Mutation: the merged table not cut to the window; it grew with every key until its
    first checkpoint, which held them all.)"""
    old = {key: (0.0, Outcome(True, key)) for key in ("a", "b", "c")}
    table = StepDedup(None, _step_with_table(1, DedupTable(old).dump("json", (10, 0.0), now=0.0)))
    assert table.load_without_io()
    table.record("d", Outcome(True, "d"), 10.0)
    fields = table.fields("json", (2, 0.0), 10.0, 2)
    assert fields.base is None
    assert list(DedupTable.load(fields.data, "json").entries) == ["c", "d"]
