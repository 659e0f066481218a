"""The idempotency table outside the steps: deltas on checkpoints, read only when a call needs them."""

from __future__ import annotations

import time
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, dedup
from vactor_cloud.compaction import compact
from vactor_cloud.dedup import DELTA_MAX_BYTES, DedupTable, Outcome
from vactor_cloud.log import StepRecord
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

#: a result big enough that a handful of keyed calls outgrow a delta
_TAG = "t" * 200


@vc.virtual_actor
class Wallet:
    def __init__(self) -> None:
        self.balance = 0
        self.runs = 0

    def pay(self, amount: int, tag: str = "") -> str:
        self.balance += amount
        self.runs += 1
        return f"{self.balance}:{tag}"

    def touch(self) -> int:
        self.runs += 1
        return self.runs

    @vc.virtual_actor.readonly
    def view(self) -> tuple[int, int]:
        return self.balance, self.runs


def init(spec: StoreSpec, **settings: Any) -> Runtime:
    vc.init(spec.url, **spec.options, settings=Settings(storage=spec.url, fresh_window=0.0, **settings))
    return vc.get_runtime()


def newest(actor_id: str) -> StepRecord:
    log = vc.get_runtime().log(actor_id)

    async def read() -> StepRecord:
        record = await log.load_latest(await log.read_head())
        assert record is not None
        return record

    return _sync.sync(read())


def log_key(name: str) -> str:
    return vc.get_runtime().log("w").dedup_key(name)


def step_size(actor_id: str, step: int) -> int:
    log = vc.get_runtime().log(actor_id)
    return len(_sync.sync(log.store.get(log.step_key(step))).data)


def test_keys_stay_exactly_once_across_checkpoints_and_a_compaction(spec: StoreSpec) -> None:
    init(spec)
    wallet = Wallet.get_or_create("w")
    first = {
        f"pay-{i}": wallet.pay.options(idempotency_key=f"pay-{i}").run(1, tag=f"{i}{_TAG}") for i in range(40)
    }
    assert wallet.view.run() == (40, 40)
    record = newest("w")
    # The table outgrew a step long ago: the step names a checkpoint and carries a small delta.
    assert record.dedup_base is not None
    assert len(record.dedup) <= DELTA_MAX_BYTES
    log = vc.get_runtime().log("w")
    checkpoints = _sync.sync(log.list_dedup_checkpoints())
    assert len(checkpoints) >= 3  # several boundaries crossed
    for _ in range(3):
        wallet.touch.run()
    report = _sync.sync(compact(log, keep_last=2, min_age=0.0, fresh_window=0.0))
    assert report.deleted_steps > 40
    left = _sync.sync(log.list_dedup_checkpoints())
    assert left == [newest("w").dedup_base]  # older checkpoints went with the steps naming them

    # A new process (a fresh runtime, nothing cached) retries every key: none runs again.
    vc.shutdown()
    init(spec)
    wallet = vc.get_actor("w")
    for key, result in first.items():
        assert wallet.pay.options(idempotency_key=key).run(1, tag="retry") == result
    assert wallet.view.run() == (40, 43)
    # And a new key after all that still runs once.
    assert wallet.pay.options(idempotency_key="pay-new").run(5) == "45:"
    assert wallet.pay.options(idempotency_key="pay-new").run(5) == "45:"
    assert wallet.view.run() == (45, 44)


def test_an_unkeyed_commit_neither_reads_nor_decodes_the_table(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    init(spec)
    wallet = Wallet.get_or_create("w")
    for i in range(30):
        wallet.pay.options(idempotency_key=f"k{i}").run(1, tag=_TAG)
    before = newest("w")
    assert before.dedup_base is not None
    vc.shutdown()
    init(spec)
    wallet = vc.get_actor("w")
    wallet.view.run()
    store = vc.get_runtime().store
    read: list[str] = []
    real_get = store.get

    async def recording_get(key: str) -> Any:
        read.append(key)
        return await real_get(key)

    monkeypatch.setattr(store, "get", recording_get)
    loads: list[bytes] = []
    real_load = DedupTable.load.__func__  # type: ignore[attr-defined]

    def counting_load(cls: type[DedupTable], data: bytes, serializer: str) -> DedupTable:
        loads.append(data)
        return real_load(cls, data, serializer)  # type: ignore[no-any-return]

    monkeypatch.setattr(dedup.DedupTable, "load", classmethod(counting_load))
    for _ in range(5):
        wallet.touch.run()
    assert loads == []
    assert [key for key in read if "/dedup/" in key] == []
    after = newest("w")
    # The delta and the checkpoint name are carried over, byte for byte, and the step stays small.
    assert (after.dedup, after.dedup_base) == (before.dedup, before.dedup_base)
    assert step_size("w", after.step) < len(after.state) + DELTA_MAX_BYTES + 1024
    # A keyed call loads it (one checkpoint read), and answers from it.
    assert wallet.pay.options(idempotency_key="k3").run(1) == f"4:{_TAG}"
    assert loads
    assert [key for key in read if "/dedup/" in key] == [log_key(before.dedup_base)]


def test_a_step_of_an_older_writer_holding_the_whole_table_is_read_and_converted(spec: StoreSpec) -> None:
    init(spec)
    wallet = Wallet.get_or_create("w")
    wallet.touch.run()
    base = newest("w")
    # What a writer before checkpoints left: the whole table inside the step (format 1).
    table = DedupTable()
    now = time.time()
    for i in range(50):
        table.record(f"old-{i}", Outcome(True, f"old result {i} {_TAG}"), now)
    legacy = StepRecord(
        step=base.step + 1,
        parent=base.step,
        class_ref=base.class_ref,
        serializer=base.serializer,
        state=base.state,
        writer="an-older-writer",
        time=now,
        dedup=table.dump(base.serializer, (10_000, 86_400.0), now),
    )
    log = vc.get_runtime().log("w")
    _sync.sync(log.put_step(legacy))
    assert len(legacy.dedup) > DELTA_MAX_BYTES
    vc.shutdown()
    init(spec)
    wallet = vc.get_actor("w")
    assert wallet.pay.options(idempotency_key="old-7").run(1) == f"old result 7 {_TAG}"
    assert wallet.view.run() == (0, 1)
    wallet.touch.run()  # the first commit on it moves the whole table into a checkpoint
    record = newest("w")
    assert record.dedup_base is not None and record.dedup == b""
    assert wallet.pay.options(idempotency_key="old-49").run(1) == f"old result 49 {_TAG}"
    assert wallet.view.run() == (0, 2)


def test_the_window_still_bounds_the_table_by_count_and_age(spec: StoreSpec) -> None:
    init(spec, dedup_window=(5, 0.0))
    wallet = Wallet.get_or_create("w")
    big = "b" * 600  # five of these outgrow a step: the table lives in checkpoints
    for i in range(30):
        wallet.pay.options(idempotency_key=f"k{i}").run(1, tag=big)
    # Past the window (older than the 5 newest, and older than 0 s) a key runs again...
    assert wallet.pay.options(idempotency_key="k0").run(1) == "31:"
    # ...inside it, it does not.
    assert wallet.pay.options(idempotency_key="k29").run(1) == f"30:{big}"
    # Checkpoints hold only the window.
    log = vc.get_runtime().log("w")
    name = newest("w").dedup_base
    assert name is not None
    data, serializer = _sync.sync(log.read_dedup_checkpoint(name))
    assert len(DedupTable.load(data, serializer).entries) <= 5
