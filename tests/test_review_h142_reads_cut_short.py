"""Reads cut short on the way (review-h142): an S3-compatible endpoint or a proxy that sends
neither ``Content-Length`` nor a checksum and closes early hands over a part of an object as
the whole. The envelope's digest refuses the part; that refusal was raised at once as
``IntegrityError`` ("checksum mismatch: the object is corrupt"), telling the user their data
was corrupt when a read was. Such a read is now made again (a fresh GET, three in all) before
the object is called damaged, and the error then says how often it was read.

Stores here cut reads short by hand (:class:`CutsFirstReads`) or through the fault store; no
timing assertions."""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import cloudpickle
import pytest
from actors import Shelf
from loopback_s3 import s3_answering
from subtask_workers import Trainer, events

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.checked_read import READS
from vactor_cloud.class_bodies import _read_class_body
from vactor_cloud.compaction import _checkpoint_meta
from vactor_cloud.deletion import forget_failed_calls
from vactor_cloud.errors import DamagedObjectError, IntegrityError
from vactor_cloud.incarnation import BORN
from vactor_cloud.keys import failure_key, task_key
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import ClassRef, GcWatermark, StepRecord, encode_gc
from vactor_cloud.mailkey import MailKeys
from vactor_cloud.storage import Blob, MemoryStore, ObjectStore, PutMode
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.workflow_steps import has_failures

_GET = frozenset({"get"})


class CutsFirstReads(ObjectStore):
    """Forwards to ``inner``; the first ``cuts`` reads of each key (``get`` and ``get_now``;
    of keys containing ``only``) return the object's first half, as a body cut short where
    nothing in HTTP said so would."""

    def __init__(self, inner: ObjectStore, cuts: int = 1, only: str = "") -> None:
        super().__init__(inner.url)
        self.take_capabilities_of(inner)
        self.inner = inner
        self.cuts = cuts
        self.only = only
        self.reads: dict[str, int] = {}

    def _cut(self, key: str, blob: Blob) -> Blob:
        if self.only not in key:
            return blob
        self.reads[key] = self.reads.get(key, 0) + 1
        if self.reads[key] <= self.cuts:
            return Blob(blob.data[: len(blob.data) // 2], blob.version)
        return blob

    @property
    def inline(self) -> bool:
        return self.inner.inline

    def get_now(self, key: str) -> Blob:
        self.requests.add("get")
        return self._cut(key, self.inner.get_now(key))

    async def _get(self, key: str) -> Blob:
        return self._cut(key, await self.inner.get(key))

    async def _head(self, key: str) -> str | None:
        return await self.inner.head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await self.inner.put(key, data, mode=mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> builtins.list[str]:
        return await self.inner.list(prefix, start_after=start_after, limit=limit)

    async def _delete(self, key: str) -> None:
        await self.inner.delete(key)


def _shelf_with_history(spec: StoreSpec, actor_id: str, adds: int) -> None:
    """Actor ``actor_id`` (a ``Shelf``) with ``adds`` adds committed, compacted to its newest two
    steps (so that it has a ``gc`` watermark); the runtime shut down after."""
    spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    shelf = Shelf.get_or_create(actor_id)
    for _ in range(adds):
        shelf.add.run()
    shelf.compact(keep_last=2, min_age=0)
    vc.shutdown()


# -- (1) through the runtime -------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_step_read_cut_short_once_is_read_again_and_the_call_sees_every_commit(
    store_spec: StoreSpec,
) -> None:
    """A fresh process whose first read of every step arrives cut short: its calls see the
    committed state and commit on it. Before: the first call raised ``IntegrityError``
    ("checksum mismatch: the object is corrupt") of an object that was whole."""
    _shelf_with_history(store_spec, "shelf", 3)
    store_spec.init()
    faulty = install(
        FaultConfig((FaultRule("truncate_read", operations=_GET, key_contains="/steps/", at=(1,)),))
    )
    shelf = vc.get_actor("shelf")
    assert shelf.value.run() == 3
    assert shelf.add.run() == 4
    assert faulty.injected["truncate_read"] == 1


@pytest.mark.usefixtures("runtime_off")
def test_a_step_damaged_at_rest_is_refused_after_three_reads_and_says_so(store_spec: StoreSpec) -> None:
    """Every read of the newest step arrives damaged (as it is stored so): refused as damaged,
    after three GETs of it, and the error says it was read three times with the same failure."""
    _shelf_with_history(store_spec, "shelf", 3)
    store_spec.init()
    newest = "/steps/00000000000000000003"
    faulty = install(
        FaultConfig((FaultRule("corrupt_read", operations=_GET, key_contains=newest, probability=1.0),))
    )
    with pytest.raises(IntegrityError) as info:
        vc.get_actor("shelf").value.run()
    assert isinstance(info.value, DamagedObjectError), info.value
    assert info.value.key.endswith(newest), info.value.key
    assert f"read {READS} times, failing the same each time" in str(info.value), info.value
    assert faulty.injected["corrupt_read"] % READS == 0, faulty.injected


# -- (2) each reader of the log -----------------------------------------------------------------
def _in_loop(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return _sync.sync(make())


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("reader", ["step", "step on the calling thread", "watermark", "class"])
def test_each_log_reader_reads_an_object_cut_short_once_again_with_one_more_get(
    store_spec: StoreSpec, reader: str
) -> None:
    """Each of the log's readers, over a store cutting the first read of every key short:
    what it returns is what a whole read returns, for exactly one more GET."""
    _shelf_with_history(store_spec, "shelf", 3)
    store_spec.init()
    runtime = vc.get_runtime()
    whole = ActorLog(runtime.store, "shelf", signing_key=runtime.settings.signing_key)
    cutting = CutsFirstReads(runtime.store)
    log = ActorLog(cutting, "shelf", signing_key=runtime.settings.signing_key)
    newest = _in_loop(lambda: whole.read_step(3))
    assert newest is not None
    reads: dict[str, Callable[[ActorLog], Any]] = {
        "step": lambda it: _in_loop(lambda: it.read_step(3)),
        "step on the calling thread": lambda it: it.read_step_now(3) if it.store.inline else None,
        "watermark": lambda it: _in_loop(it.read_watermark),
        # (read again by the runtime's loader: ActorLog.read_class is one GET, as before)
        "class": lambda it: _in_loop(lambda: _read_class_body(it, newest.class_ref)),
    }
    if reader == "step on the calling thread" and not runtime.store.inline:
        pytest.skip("the lane's store answers on its IO loop only")
    expected = reads[reader](whole)
    assert reads[reader](log) == expected
    assert cutting.requests["get"] == 2, cutting.requests.snapshot()


def test_an_object_whose_reads_are_cut_short_every_time_is_refused_after_three_reads() -> None:
    """Cut short on every read: after :data:`READS` GETs, a ``DamagedObjectError`` saying so
    (cut at other lengths each time, it names the first failure too)."""

    async def scenario() -> tuple[IntegrityError, int]:
        inner = MemoryStore(name="h142-every-read-cut")
        store = CutsFirstReads(inner, cuts=READS)
        log = ActorLog(store, "a")
        # (any reader: the watermark's is the plainest)
        await inner.put(log.gc_key, encode_gc(log.gc_key, GcWatermark(1), 0.0, None))
        with pytest.raises(IntegrityError) as info:
            await log.read_watermark()
        return info.value, store.requests["get"]

    error, gets = asyncio.run(scenario())
    assert gets == READS
    assert f"read {READS} times" in str(error), error


# -- (3) the other readers whose answer decides what is kept, deleted or taken ---------------------
#: a failed-call record of the actor born at step 5 (after a delete whose tombstone was step 3)
_FAILED_KEY = failure_key("a", "c1")


def _failed_record(born: int) -> bytes:
    return codec.encode(_FAILED_KEY, {"kind": "failed-call", BORN: born}, {"call": b"x"})


def _tombstone(step: int) -> StepRecord:
    """A stand-in for a tombstone record: only its number is read."""
    return cast(StepRecord, SimpleNamespace(step=step))


async def _forget_keeps_the_next_actors_record(store: ObjectStore, inner: ObjectStore) -> object:
    await inner.put(_FAILED_KEY, _failed_record(born=5))
    forgotten = await forget_failed_calls(store, "a", deleted=_tombstone(3))
    return forgotten, await inner.head(_FAILED_KEY) is not None


async def _failures_of_this_actor(store: ObjectStore, inner: ObjectStore) -> object:
    await inner.put(_FAILED_KEY, _failed_record(born=3))  # an earlier actor's
    return await has_failures(store, "a", born=5)


async def _checkpoint_meta_read(store: ObjectStore, inner: ObjectStore) -> object:
    await inner.put(_FAILED_KEY, _failed_record(born=5))
    meta = await _checkpoint_meta(ActorLog(store, "a"), _FAILED_KEY)
    return None if meta is None else meta[BORN]


async def _lease_read(store: ObjectStore, inner: ObjectStore) -> object:
    held = await LeaseStore(inner, "a", None).write(Lease("", 0.0, -1, "", None), "holder", 60.0, 7)
    assert held is not None
    seen = await LeaseStore(store, "a", None).read()
    return seen.holder, seen.step, seen.version == held.version


async def _mail_key_read(store: ObjectStore, inner: ObjectStore) -> object:
    made = await MailKeys(inner, None).load(create=True)
    return await MailKeys(store, None).load(create=False) == made


CUT_ONCE_READERS: dict[
    str, tuple[Callable[[ObjectStore, ObjectStore], Coroutine[Any, Any, object]], object]
] = {
    # (what each returned of a read cut short before: the record deleted, the earlier
    # actor's record counted as FAILED, the checkpoint taken for unreadable, the held lease
    # taken for free, no mail key)
    "forget_failed_calls keeps the next actor's record": (_forget_keeps_the_next_actors_record, (0, True)),
    "has_failures passes over an earlier actor's record": (_failures_of_this_actor, False),
    "compaction reads a checkpoint's incarnation": (_checkpoint_meta_read, 5),
    "a held lease is seen held": (_lease_read, ("holder", 7, True)),
    "the mail key is read": (_mail_key_read, True),
}


@pytest.mark.parametrize("reader", list(CUT_ONCE_READERS))
def test_a_reader_whose_answer_decides_what_is_kept_reads_an_object_cut_short_again(reader: str) -> None:
    """Each of these took a read cut short for an object damaged at rest and acted on it:
    ``forget_failed_calls`` deleted the record of the actor now under the id, ``has_failures``
    reported it FAILED for an earlier actor's record, compaction took a later actor's sub-task
    checkpoint for unreadable (and deleted it with a committed call's), a held lease was taken
    for free, and posts went without the mail key. Now what a whole read gives, for one GET more."""
    scenario, expected = CUT_ONCE_READERS[reader]

    async def run() -> tuple[object, int]:
        inner = MemoryStore(name=f"h142-{uuid.uuid4().hex}")
        store = CutsFirstReads(inner)
        outcome = await scenario(store, inner)
        return outcome, store.requests["get"]

    outcome, gets = asyncio.run(run())
    assert outcome == expected
    assert gets == 2


@pytest.mark.usefixtures("runtime_off")
def test_a_sub_task_checkpoint_read_cut_short_once_is_still_used(
    store_spec: StoreSpec, tmp_path: Path
) -> None:
    """A call re-run finds its first child's checkpoint (a result only the checkpoint holds,
    777), whose first read arrives cut short: the checkpoint is used, the child not run again.
    Before: "cannot be used", the child ran again and its result went unmemoized."""
    store_spec.init()
    log = str(tmp_path / "events")
    trainer = Trainer.get_or_create("t")
    assert trainer.fan_out.options(idempotency_key="k1").run(2, log) == [0, 1]
    runtime = vc.get_runtime()
    done = task_key("t", uuid.uuid5(uuid.NAMESPACE_URL, "t/k1").hex, 0)
    meta = codec.decode(done, _sync.sync(runtime.store.get(done)).data).meta
    key = task_key("t", uuid.uuid5(uuid.NAMESPACE_URL, "t/k2").hex, 0)
    _sync.sync(
        runtime.store.put(key, codec.encode(key, meta, {"result": cloudpickle.dumps(777)}), mode="create")
    )
    runtime.store = cutting = CutsFirstReads(runtime.store, only="/tasks/")
    assert trainer.fan_out.options(idempotency_key="k2").run(2, log) == [777, 1]
    assert cutting.reads == {key: 2}
    assert sorted(e["index"] for e in events(log, "start")) == [
        0,
        1,
        1,
    ]  # (the second call: its child 1 only)


# -- (4) over HTTP: an S3-compatible endpoint that sends neither a length nor a checksum -------
def _s3_object_answer(body: bytes) -> bytes:
    """A 200 answer to a GetObject with ``body``, delimited by the connection's close: no
    ``Content-Length``, no ``x-amz-checksum-*`` (what an endpoint or a proxy that dropped them
    sends); botocore has nothing to tell a body cut short from a whole one."""
    return (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nETag: "e1"\r\n'
        b"Connection: close\r\n\r\n" + body
    )


@pytest.mark.parametrize("transport", ["botocore", "s3fs"])
def test_a_step_read_over_http_cut_short_once_by_an_endpoint_sending_no_length_nor_checksum_is_read_again(
    transport: str,
) -> None:
    """The first GET of a step answers its first half and closes the connection; the second
    answers it whole. ``read_step`` returns the step, after two GETs. Before: "checksum
    mismatch: the object is corrupt"."""
    pytest.importorskip("s3fs" if transport == "s3fs" else "botocore")
    source = MemoryStore(name=f"h142-{uuid.uuid4().hex}")

    async def scenario() -> tuple[object, int]:
        log = ActorLog(source, "a")
        step = StepRecord(0, None, ClassRef("0" * 64, "tests.H"), "json", b"{}", "w", 0.0)
        stored = b"t" * 16 + log.encode_step(step)  # (16 bytes: the S3 store's write token)
        answers = [_s3_object_answer(stored[: len(stored) // 2]), _s3_object_answer(stored)]

        def answer(n: int) -> bytes:
            return answers[min(n, len(answers)) - 1]

        async with s3_answering(answer, transport=transport, retries=1, timeout=60.0) as (store, requests):
            try:
                async with asyncio.timeout(60.0):
                    record = await ActorLog(store, "a").read_step(0)
                    outcome: object = None if record is None else record.step
            except IntegrityError as exc:
                outcome = exc
        return outcome, len(requests)

    assert asyncio.run(scenario()) == (0, 2)
