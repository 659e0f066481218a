"""Hostile review of compaction, history and the CLI's view of them (review-h5)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from actors import Tally

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.cli import EXIT_ERROR, EXIT_OK, main
from vactor_cloud.compaction import compact
from vactor_cloud.errors import IntegrityError, StepNotFoundError
from vactor_cloud.log import ActorLog
from vactor_cloud.runtime import Settings
from vactor_cloud.storage import ObjectStore, PutMode
from vactor_cloud.storage._base import Blob
from vactor_cloud.testing.lanes import StoreSpec


class StrayAfterGcRead(ObjectStore):
    """Delegates to ``inner``. Armed, the GET of ``steps/<target>`` waits (up to a second)
    for a GET of ``gc`` in flight to be answered, then a compaction passes the step and a
    stalled writer's late put re-creates it (a stray) before the step GET is answered."""

    def __init__(self, inner: ObjectStore, actor_id: str, target: int, stray: bytes) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.actor_id = actor_id
        self.target = ActorLog(inner, actor_id).step_key(target)
        self.stray = stray
        self.gc_answered = asyncio.Event()
        self.armed = True

    async def _get(self, key: str) -> Blob:
        if key.endswith("/gc"):
            try:
                return await self.inner.get(key)
            finally:
                self.gc_answered.set()
        if self.armed and key == self.target:
            self.armed = False
            # (a reader that reads gc only after the step never gets here with it answered)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gc_answered.wait(), 1)
            await compact(ActorLog(self.inner, self.actor_id), keep_last=2, min_age=0, fresh_window=0.0)
            await self.inner.put(key, self.stray, mode="create")
        return await self.inner.get(key)

    async def _head(self, key: str) -> str | None:
        return await self.inner.head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await self.inner.put(key, data, mode=mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return await self.inner.list(prefix, start_after=start_after, limit=limit)

    async def _delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("store_lane", ["memory", "local"], indirect=True)
def test_find_step_never_returns_a_stray_below_a_watermark_raised_while_it_read(spec: StoreSpec) -> None:
    # find_step read the step and the watermark concurrently: a gc answer from before a
    # compaction paired with a step answer from after it let a stalled writer's late put
    # (never a commit) pass for step 1 in state_at/history. The step must be read first.
    vc.init(spec.url, **spec.options, settings=Settings(storage=spec.url, fresh_window=0.0))
    handle = Tally.get_or_create("c")
    for _ in range(3):
        handle.incr.run()
    store = vc.get_runtime().store
    log = ActorLog(store, "c")
    one = _sync.sync(log.read_step(1))
    assert one is not None
    stray = dataclasses.replace(one, writer="stalled-writer").encode(log.step_key(1), None)
    racing = ActorLog(StrayAfterGcRead(store, "c", 1, stray), "c")
    with pytest.raises(StepNotFoundError) as caught:
        _sync.sync(racing.find_step(1))
    assert caught.value.compacted


@pytest.fixture
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = str(tmp_path / "store")
    os.makedirs(url)
    monkeypatch.setenv("VACTOR_STORAGE", url)
    try:
        yield url
    finally:
        vc.shutdown()


def test_compact_all_skips_an_actor_whose_creation_never_committed(
    local_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `vactor ls` skips an id with objects but no step (a creation that crashed after
    # writing its class body); `vactor compact --all` stopped at it with "not found",
    # leaving every actor after it uncompacted.
    vc.init(local_store)
    _sync.sync(ActorLog(vc.get_runtime().store, "a-ghost").put_class("0" * 64, b"body", "m:C", None))
    handle = Tally.get_or_create("b-real")
    handle.incr.run()
    handle.incr.run()
    vc.shutdown()
    code = main(["compact", "--all", "--keep-last", "1", "--min-age", "0", "--force", "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert {r["actor_id"]: r["deleted_steps"] for r in json.loads(out)} == {"b-real": 2}


@pytest.mark.parametrize("store_lane", ["memory", "local"], indirect=True)
def test_history_never_lists_a_stray_below_a_watermark_raised_while_it_read(spec: StoreSpec) -> None:
    # history() read the watermark once, before walking the steps: a compaction and a
    # stalled writer's late put in between listed the stray (and a deleted step) as history.
    from vactor_cloud.history import _history

    vc.init(spec.url, **spec.options, settings=Settings(storage=spec.url, fresh_window=0.0))
    handle = Tally.get_or_create("c")
    for _ in range(3):
        handle.incr.run()
    store = vc.get_runtime().store
    log = ActorLog(store, "c")
    one = _sync.sync(log.read_step(1))
    assert one is not None
    stray = dataclasses.replace(one, writer="stalled-writer").encode(log.step_key(1), None)
    racing = ActorLog(StrayAfterGcRead(store, "c", 1, stray), "c")
    entries = _sync.sync(_history(racing, None))
    assert [(e.step, e.writer == "stalled-writer") for e in entries] == [(3, False), (2, False)]


@pytest.mark.parametrize("meta", [b'"a string"', b"[" * 100_000 + b"]" * 100_000])
def test_a_well_checksummed_object_with_unusable_metadata_is_an_integrity_error(meta: bytes) -> None:
    # Metadata that is JSON but not an object ("a string") raised AttributeError from
    # meta.pop, and nesting deep enough raised RecursionError: a reader of an unsigned store
    # met a crash, not the IntegrityError naming the object that security.md promises for
    # a corrupt or foreign one.
    key = "actors/a/steps/00000000000000000001"
    body = struct.pack(">4sHHI", b"VACT", 1, 0, len(meta)) + meta
    data = body + hashlib.sha256(body).digest()
    with pytest.raises(IntegrityError, match="unreadable metadata"):
        codec.decode(key, data)


def test_compact_all_goes_on_past_an_actor_it_cannot_compact_and_says_which(
    local_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # One actor with a damaged newest step stopped `vactor compact --all` there: every actor
    # after it was left uncompacted, and nothing said they were. The others are compacted,
    # the failure is named, and the exit code is not 0.
    vc.init(local_store)
    for actor_id in ("a-damaged", "b-real"):
        handle = Tally.get_or_create(actor_id)
        handle.incr.run()
        handle.incr.run()
    store = vc.get_runtime().store
    key = ActorLog(store, "a-damaged").step_key(2)
    data = _sync.sync(store.get(key)).data
    _sync.sync(store.put(key, data[:-1] + bytes([data[-1] ^ 1]), mode="overwrite"))
    vc.shutdown()
    code = main(["compact", "--all", "--keep-last", "1", "--min-age", "0", "--force", "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_ERROR, err
    assert {r["actor_id"]: r["deleted_steps"] for r in json.loads(out)} == {"b-real": 2}
    assert "a-damaged" in err and "checksum mismatch" in err and "1 of 2 actors" in err
