"""Regressions of issue 12 (a hostile review): forged objects, odd ids, key collisions, repairs.

The compaction races (items 1, 2, 13) live in ``test_compaction.py`` with
the store gates they need; the CLI's ``min_age`` checks in ``test_cli.py``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from actors import Tally
from pickle_bomb import UNPICKLED, Bomb
from store_helpers import other_process

import vactor_cloud as vc
from vactor_cloud import _sync, codec, inbox
from vactor_cloud.batch import PendingCall
from vactor_cloud.compaction import DEFAULT_MIN_AGE, MIN_AGE_FLOOR, compact, validate_compaction_args
from vactor_cloud.errors import (
    AuthenticationError,
    IntegrityError,
    InvalidActorIdError,
    PermissionDeniedError,
    StorageError,
)
from vactor_cloud.events import process_events, send_event, wait_for_event
from vactor_cloud.future import ActorFuture
from vactor_cloud.handle import ActorHandle
from vactor_cloud.history import raw_state_at, state_at
from vactor_cloud.runtime import Runtime, Settings, validate_actor_id
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor(serializer="json")
class Books:
    def __init__(self) -> None:
        self.total = 0

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, payload: dict[str, int]) -> int:
        self.total += payload["amount"]
        return self.total

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.total

    def fan_out(self) -> list[int]:
        return list(vc.subtask(lambda x: x * 2).map([1, 2, 3]))


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    UNPICKLED.clear()
    vc.init(store_spec.url, **store_spec.options)
    yield store_spec
    vc.shutdown()


def reopen(spec: StoreSpec, **settings: Any) -> Runtime:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    loading = settings.pop("load_classes_from_storage", True)
    vc.init(
        spec.url,
        **spec.options,
        load_classes_from_storage=loading,
        settings=Settings(storage=spec.url, **settings),
    )
    return vc.get_runtime()


def call_on(runtime: Runtime, actor_id: str, method: str, *args: Any, key: str | None = None) -> Any:
    future: ActorFuture[Any] = ActorFuture()
    call = PendingCall(method, args, {}, False, future, uuid.uuid4().hex, idempotency_key=key)
    runtime.core(actor_id).submit(call)
    return future.result(30)


def forge_step(actor_id: str, step: int, **meta_changes: Any) -> None:
    """Rewrite step ``step`` unsigned, with ``meta_changes`` and pickle bombs for state and dedup."""
    log = vc.get_runtime().log(actor_id)
    key = log.step_key(step)
    env = codec.decode(key, _sync.sync(log.store.get(key)).data)
    meta = {**env.meta, **meta_changes}
    meta.pop("parts", None)
    parts = {"state": pickle.dumps(Bomb()), "dedup": pickle.dumps(Bomb())}
    _sync.sync(log.store.put(key, codec.encode(key, meta, parts)))


# -- item 4: the serializer comes from the class -------------------------------------------------
def test_forged_pickle_step_of_a_json_actor_is_refused_before_decoding(spec: StoreSpec) -> None:
    Books.get_or_create("b").add.run(1)
    forge_step("b", 1, serializer="pickle")
    reopen(spec, load_classes_from_storage=False)
    UNPICKLED.clear()
    with pytest.raises(IntegrityError, match=r"serializer 'pickle'.*uses 'json'"):
        vc.get_actor("b").get.run()
    with pytest.raises(IntegrityError, match="serializer 'pickle'"):
        vc.get_actor("b").add.run(1)
    with pytest.raises(IntegrityError, match="serializer 'pickle'"):
        state_at("b", 1)
    with pytest.raises(IntegrityError, match="serializer 'pickle'"):
        raw_state_at("b", 1)
    assert UNPICKLED == []


def test_forged_pickle_step_is_refused_by_the_inbox_and_event_waiters(spec: StoreSpec) -> None:
    Books.get_or_create("b").add.run(1)
    forge_step("b", 1, serializer="pickle")
    reopen(spec, load_classes_from_storage=False)
    send_event("b", "paid", {"amount": 5})
    UNPICKLED.clear()
    with pytest.raises(IntegrityError):
        process_events("b")
    with pytest.raises(IntegrityError):
        wait_for_event("b", "paid", timeout=5)
    assert UNPICKLED == []


def test_json_actor_checkpoints_sub_task_results_as_json(spec: StoreSpec) -> None:
    assert Books.get_or_create("b").fan_out.run() == [2, 4, 6]
    store = vc.get_runtime().store
    keys = _sync.sync(store.list("actors/b/tasks/"))
    assert keys, "the sub-tasks were checkpointed"
    for key in keys:
        env = codec.decode(key, _sync.sync(store.get(key)).data)
        assert env.meta["serializer"] == "json"
        assert json.loads(env.parts["result"]) in (2, 4, 6)


# -- item 5: a class name from storage is never imported ----------------------------------------
def test_a_class_name_read_from_storage_is_never_imported(
    spec: StoreSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"forged_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    Tally.get_or_create("c").incr.run()
    log = vc.get_runtime().log("c")
    key = log.step_key(1)
    env = codec.decode(key, _sync.sync(log.store.get(key)).data)
    meta = {**env.meta, "class": {"sha": env.meta["class"]["sha"], "name": f"{module}:X"}}
    meta.pop("parts", None)
    _sync.sync(log.store.put(key, codec.encode(key, meta, env.parts)))
    reopen(spec, load_classes_from_storage=False)
    with pytest.raises(vc.ActorDefinitionError):
        vc.get_actor("c").get.run()
    assert module not in sys.modules


# -- item 6: unauthenticated or denied is not "unreachable" --------------------------------------
def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response: Any = {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("code", "status", "expected", "hint"),
    [
        ("InvalidAccessKeyId", 403, AuthenticationError, "AWS_ACCESS_KEY_ID"),
        ("SignatureDoesNotMatch", 403, AuthenticationError, "AWS_SECRET_ACCESS_KEY"),
        ("ExpiredToken", 400, AuthenticationError, "expired"),
        ("AccessDenied", 403, PermissionDeniedError, "bucket policy"),
    ],
)
def test_s3_credentials_refused_or_denied_are_reported_as_such(
    code: str, status: int, expected: type[StorageError], hint: str
) -> None:
    pytest.importorskip("s3fs")
    from vactor_cloud.storage._s3 import S3Store

    store = S3Store("s3://bucket/prefix")
    error = store._translate(_client_error(code, status), "k", "put_object", "create")
    assert type(error) is expected and isinstance(error, PermissionError)
    assert hint in str(error) and "unreachable" not in str(error)
    missing = store._translate(botocore.exceptions.NoCredentialsError(), "k", "get_object", None)
    assert isinstance(missing, AuthenticationError) and "AWS_ACCESS_KEY_ID" in str(missing)


# -- item 7: a stale inbox cache does not apply an event twice -----------------------------------
def test_event_applied_elsewhere_is_not_applied_again_from_a_stale_inbox_cache(spec: StoreSpec) -> None:
    Books.get_or_create("b")
    send_event("b", "paid", {"amount": 100}, event_id="wh_1")
    reader = reopen(spec)
    assert vc.get_actor("b").get.run() == 0
    # This process lists the inbox (as a commit's background listing does): wh_1 is cached here.
    _sync.sync(reader.core("b").inbox._refresh())
    assert "actors/b/inbox/wh_1" in reader.core("b").inbox._known
    other = other_process(spec, dedup_window=(1, 0.0))
    try:
        drained: ActorFuture[Any] = ActorFuture()
        other.core("b").submit(PendingCall(inbox.PROCESS_EVENTS, (), {}, False, drained, uuid.uuid4().hex))
        assert drained.result(30) == 1
        _sync.sync(other.core("b").inbox.wait_deleted())
        # Two keyed calls push wh_1 out of the (tiny) dedup window.
        assert call_on(other, "b", "add", 1, key="k1") == 101
        assert call_on(other, "b", "add", 1, key="k2") == 102
    finally:
        other.close()
    assert vc.get_actor("b").add.run(1) == 103  # not 203


# -- item 8: idempotency keys cannot reach the events' namespace ---------------------------------
def test_an_idempotency_key_cannot_shadow_an_event(spec: StoreSpec) -> None:
    handle = Books.get_or_create("b")
    forged = inbox.event_dedup_key("paid", "wh_123")
    with pytest.raises(ValueError, match="NUL"):
        handle.add.options(idempotency_key=forged).run(0)
    send_event("b", "paid", {"amount": 7}, event_id="wh_123")
    assert process_events("b") == 1
    assert handle.get.run() == 7
    with pytest.raises(ValueError, match="control"):
        send_event("b", "paid\x00wh", {"amount": 1}, event_id="x")


# -- items 9 and 10: ids are refused the same way on every backend --------------------------------
@pytest.mark.parametrize("actor_id", [".hidden", ".", "..x", "\ud800", "a\udfffb"])
def test_dot_and_surrogate_actor_ids_are_refused_everywhere(spec: StoreSpec, actor_id: str) -> None:
    with pytest.raises(InvalidActorIdError):
        validate_actor_id(actor_id)
    with pytest.raises(InvalidActorIdError):
        Tally.get_or_create(actor_id)
    with pytest.raises(InvalidActorIdError):
        vc.get_actor(actor_id)


@pytest.mark.parametrize("event_id", [".evt-2", "\ud800"])
def test_dot_and_surrogate_event_ids_are_refused_before_writing(spec: StoreSpec, event_id: str) -> None:
    Books.get_or_create("b")
    with pytest.raises(ValueError, match="event_id"):
        send_event("b", "paid", {"amount": 1}, event_id=event_id)
    assert _sync.sync(vc.get_runtime().store.list("actors/b/inbox/")) == []


def test_surrogate_event_names_and_keys_are_value_errors(spec: StoreSpec) -> None:
    handle = Books.get_or_create("b")
    with pytest.raises(ValueError, match="not valid Unicode"):
        send_event("b", "paid\ud800", {"amount": 1})
    with pytest.raises(ValueError, match="not valid Unicode"):
        handle.add.options(idempotency_key="k\ud800").run(1)


# -- item 11: HEAD is advisory ------------------------------------------------------------------
def test_a_corrupt_head_is_ignored_by_readers_and_repaired_by_the_next_writer(
    spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    handle = Tally.get_or_create("c")
    handle.incr.run()
    handle.incr.run()
    reopen(spec, fresh_window=0.0)
    log = vc.get_runtime().log("c")
    _sync.sync(log.store.put(log.head_key, b"\x00garbage, not a HEAD"))
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        assert vc.get_actor("c").get.run() == 2
    assert "unreadable HEAD" in caplog.text
    assert vc.get_actor("c").incr.run() == 3
    _sync.sync(vc.get_runtime().heads.flush())
    head = _sync.sync(log.read_head())
    assert head is not None and head.step == 3
    _sync.sync(log.store.put(log.head_key, b"\x00garbage again"))
    report = _sync.sync(compact(log, keep_last=1, min_age=0, fresh_window=0.0))  # repairs it too
    assert (report.newest, report.watermark) == (3, 3)
    head = _sync.sync(log.read_head())
    assert head is not None and head.step == 3


# -- item 12: local temp files of killed writers are swept ----------------------------------------
@pytest.mark.parametrize("store_lane", ["local"], indirect=True)
def test_compaction_removes_stale_local_temp_files_only(spec: StoreSpec) -> None:
    Tally.get_or_create("c").incr.run()
    store = vc.get_runtime().store
    steps = store._path(vc.get_runtime().log("c").step_key(1)).parent  # type: ignore[attr-defined]
    stale, fresh = steps / ".tmp-killed0000000", steps / ".tmp-inflight00000"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y" * 100)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    _sync.sync(compact(vc.get_runtime().log("c"), keep_last=1, min_age=0, fresh_window=0.0))
    assert not stale.exists() and fresh.exists()
    assert vc.get_actor("c").get.run() == 1


# -- item 3 and the defaults: compaction arguments are checked, the default is generous ---------
@pytest.mark.parametrize("min_age", [math.nan, math.inf, -math.inf, -1.0, True, "600"])
def test_compaction_refuses_a_min_age_that_is_not_finite_and_deletes_nothing(
    spec: StoreSpec, min_age: Any
) -> None:
    handle = Tally.get_or_create("c")
    for _ in range(4):
        handle.incr.run()
    log = vc.get_runtime().log("c")
    with pytest.raises(ValueError, match="min_age"):
        _sync.sync(compact(log, keep_last=1, min_age=min_age, fresh_window=0.0))
    with pytest.raises(ValueError, match="min_age"):
        handle.compact(keep_last=1, min_age=min_age)
    assert _sync.sync(log.list_steps()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("keep_last", [0, -1, 1.5, True, math.nan])
def test_compaction_refuses_a_keep_last_that_is_not_a_positive_integer(keep_last: Any) -> None:
    with pytest.raises(ValueError, match="keep_last"):
        validate_compaction_args(keep_last, 3600.0)


def test_min_age_defaults_to_a_day_and_the_floor_is_an_hour(spec: StoreSpec) -> None:
    import inspect

    assert DEFAULT_MIN_AGE >= 24 * 3600 and MIN_AGE_FLOOR >= 3600
    assert inspect.signature(ActorHandle.compact).parameters["min_age"].default == DEFAULT_MIN_AGE
    assert inspect.signature(compact).parameters["min_age"].default == DEFAULT_MIN_AGE
    with pytest.raises(ValueError, match="floor"):
        validate_compaction_args(1, 600.0, floor=MIN_AGE_FLOOR)
    handle = Tally.get_or_create("c")
    for _ in range(3):
        handle.incr.run()
    report = handle.compact(keep_last=1)
    assert report.deleted_steps == 0 and report.held_by_min_age == 3
