"""Large keyed outcomes stored once, as objects of their own the idempotency table names.

A keyed call's outcome is recorded in the idempotency table, and every checkpoint of the
table holds the whole table: a 1 MB result was written again in each checkpoint while its
key was in the window (N such results: N MB per checkpoint). One over
:data:`~vactor_cloud.dedup.OUTCOME_OBJECT_BYTES` (encoded) is written once, as
``dedup/outcomes/<N:020d>-<sha256>``, and the checkpoints name it.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, codec, dedup
from vactor_cloud.compaction import compact
from vactor_cloud.errors import FormatVersionError, IntegrityError
from vactor_cloud.log import ActorLog, StepRecord
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec

#: a result over the threshold, once encoded
_BIG = 100 * 1024
#: pads small results so that a few keyed calls outgrow a delta (a checkpoint each few)
_TAG = "t" * 600


class BigError(Exception):
    pass


@vc.virtual_actor
class Export:
    def __init__(self) -> None:
        self.runs = 0

    def export(self, fill: str) -> str:
        self.runs += 1
        return fill * _BIG

    def fail(self, fill: str) -> str:
        self.runs += 1
        raise ValueError(fill * _BIG)

    def small(self, i: int) -> str:
        self.runs += 1
        return f"{i}{_TAG}"

    @vc.virtual_actor.on_event("dump")
    def on_dump(self, fill: str) -> str:
        self.runs += 1
        return fill * _BIG

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.runs


def init(spec: StoreSpec, **settings: Any) -> Runtime:
    settings = {"fresh_window": 0.0, **settings}
    vc.init(spec.url, **spec.options, settings=Settings(storage=spec.url, **settings))
    return vc.get_runtime()


def restart(spec: StoreSpec, **settings: Any) -> Any:
    """A new runtime, nothing cached: the actor ``x`` as a new process sees it."""
    vc.shutdown()
    init(spec, **settings)
    return vc.get_actor("x")


def the_log() -> ActorLog:
    return vc.get_runtime().log("x")


def outcome_objects() -> list[str]:
    return _sync.sync(the_log().list_dedup_outcomes())


def newest() -> StepRecord:
    log = the_log()

    async def read() -> StepRecord:
        record = await log.load_latest(await log.read_head())
        assert record is not None
        return record

    return _sync.sync(read())


def checkpoint_sizes() -> dict[str, int]:
    log = the_log()
    return {
        name: len(_sync.sync(log.store.get(log.dedup_key(name))).data)
        for name in _sync.sync(log.list_dedup_checkpoints())
    }


def every_named_outcome_exists() -> None:
    """The invariant: no step names (through its checkpoint) an outcome object that is gone."""
    log = the_log()
    kept = set(outcome_objects())

    async def check() -> None:
        gc = (await log.read_watermark()).min_step
        steps = [int(k.rsplit("/", 1)[1]) for k in await log.store.list(log.steps_prefix)]
        for step in steps:
            if step < gc:
                continue
            record = await log.read_step(step)
            if record is None or record.dedup_base is None:
                continue
            named = await log.read_dedup_checkpoint_outcomes(record.dedup_base)
            assert named <= kept, (step, named - kept)

    _sync.sync(check())


def test_a_large_keyed_result_is_written_once_and_read_back_by_value_everywhere(spec: StoreSpec) -> None:
    init(spec)
    x = Export.get_or_create("x")
    big = x.export.options(idempotency_key="big").run("a")
    assert big == "a" * _BIG
    # Several checkpoints after it, the key still in the window: none carries the result.
    for i in range(30):
        x.small.options(idempotency_key=f"s{i}").run(i)
    assert len(outcome_objects()) == 1
    sizes = checkpoint_sizes()
    assert len(sizes) >= 3, sizes
    assert max(sizes.values()) < dedup.OUTCOME_OBJECT_BYTES, sizes
    # The decoded checkpoint this process keeps holds the name, not the result.
    assert dedup.cached_bytes(the_log()) < dedup.OUTCOME_OBJECT_BYTES
    assert x.export.options(idempotency_key="big").run("b") == big
    # A new process, nothing cached; then after a compaction: still once, still by value.
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("c") == big
    _sync.sync(compact(the_log(), keep_last=1, min_age=0.0, fresh_window=0.0))
    assert len(outcome_objects()) == 1
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("d") == big
    assert x.count.run() == 31
    every_named_outcome_exists()


def test_a_large_recorded_exception_comes_back_as_raised(spec: StoreSpec) -> None:
    init(spec)
    x = Export.get_or_create("x")
    with pytest.raises(ValueError) as first:
        x.fail.options(idempotency_key="f").run("e")
    assert len(outcome_objects()) == 1
    x = restart(spec)
    with pytest.raises(ValueError) as again:
        x.fail.options(idempotency_key="f").run("other")
    # The recorded exception ("e" repeated), not a new run's ("other" repeated).
    assert again.value.args == first.value.args


def test_two_keys_with_one_large_result_share_one_object(spec: StoreSpec) -> None:
    init(spec)
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="k1").run("z")
    x.small.options(idempotency_key="s").run(1)
    x.export.options(idempotency_key="k2").run("z")  # the same bytes, recorded later
    assert len(outcome_objects()) == 1
    x = restart(spec)
    assert x.export.options(idempotency_key="k1").run("q") == "z" * _BIG
    assert x.export.options(idempotency_key="k2").run("q") == "z" * _BIG
    assert x.count.run() == 3


def test_compaction_deletes_an_outcome_object_no_kept_checkpoint_names(spec: StoreSpec) -> None:
    init(spec, dedup_window=(3, 0.0))
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="old").run("o")
    for i in range(12):  # "old" leaves the window at a checkpoint
        x.small.options(idempotency_key=f"s{i}").run(i)
    x.export.options(idempotency_key="new").run("n")
    assert len(outcome_objects()) == 2
    _sync.sync(compact(the_log(), keep_last=1, min_age=0.0, fresh_window=0.0))
    left = outcome_objects()
    assert len(left) == 1
    assert left[0].endswith(hashlib.sha256(_encoded("n" * _BIG)).hexdigest())
    every_named_outcome_exists()
    x = restart(spec, dedup_window=(3, 0.0))
    assert x.export.options(idempotency_key="new").run("q") == "n" * _BIG


def _encoded(value: str) -> bytes:
    return dedup.outcome_bytes(dedup.Outcome(True, value), "pickle")


@pytest.mark.parametrize("same_key_window", [True, False], ids=["still-named", "named-no-more"])
def test_a_compaction_racing_a_commit_that_names_an_existing_outcome_never_deletes_it(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, same_key_window: bool
) -> None:
    """A compaction lists the outcome objects and checkpoints, decides which objects no kept
    checkpoint names, and deletes them; right after its listing a commit records a key whose
    result is one of those objects' byte for byte (the window still naming it, or not any
    more). The commit's step must not name a deleted object, and the key stays answered."""
    init(spec, dedup_window=(3, 0.0))
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="first").run("r")
    if not same_key_window:
        for i in range(12):
            x.small.options(idempotency_key=f"s{i}").run(i)
    store = vc.get_runtime().store
    real = store.list
    dedup_prefix = the_log().dedup_prefix
    raced: list[str] = []

    async def listing(prefix: str, **kwargs: Any) -> Any:
        listed = await real(prefix, **kwargs)
        if prefix == dedup_prefix and not raced:
            # The compaction listed the checkpoints and outcome objects: it decides next.
            raced.append(prefix)
            call = x.export.options(idempotency_key="second")
            assert await asyncio.to_thread(call.run, "r") == "r" * _BIG
        return listed

    monkeypatch.setattr(store, "list", listing)
    _sync.sync(compact(the_log(), keep_last=1, min_age=0.0, fresh_window=0.0))
    monkeypatch.setattr(store, "list", real)
    assert raced
    every_named_outcome_exists()
    x = restart(spec, dedup_window=(3, 0.0))
    assert x.export.options(idempotency_key="second").run("q") == "r" * _BIG
    runs = x.count.run()
    assert x.export.options(idempotency_key="second").run("q") == "r" * _BIG
    assert x.count.run() == runs


def test_a_forged_outcome_object_is_refused_not_returned(spec: StoreSpec) -> None:
    init(spec)
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="big").run("a")
    [name] = outcome_objects()
    log = the_log()
    key = log.dedup_outcome_key(name)
    # A well-formed object of the right kind, holding another result, under the name.
    forged = codec.encode(
        key,
        {"kind": "outcome", "serializer": "pickle"},
        {"outcome": _encoded("f" * _BIG)},
        signing_key=log.signing_key,
        version=3,
    )
    _sync.sync(log.store.delete(key))
    _sync.sync(log.store.put(key, forged, mode="create"))
    x = restart(spec)
    with pytest.raises(IntegrityError):
        x.export.options(idempotency_key="big").run("b")


def test_a_lost_answer_on_the_outcome_put_is_taken_for_the_object_written(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vactor_cloud.errors import StorageError

    init(spec)
    x = Export.get_or_create("x")
    store = vc.get_runtime().store
    real = store.put
    lost: list[str] = []

    async def losing(key: str, data: bytes, mode: Any = None) -> Any:
        version = await real(key, data, mode=mode)
        if "/dedup/outcomes/" in key and not lost:
            lost.append(key)
            raise StorageError(f"{key}: connection reset (the put landed)")
        return version

    monkeypatch.setattr(store, "put", losing)
    assert x.export.options(idempotency_key="big").run("a") == "a" * _BIG
    assert lost
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("b") == "a" * _BIG
    assert x.count.run() == 1


def test_a_reader_of_the_previous_format_refuses_a_checkpoint_naming_outcome_objects(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The previous release reads formats up to 2: a checkpoint naming outcome objects is
    format 3, which it refuses ("upgrade") rather than take a reference for the result."""
    init(spec)
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="big").run("a")
    base = newest().dedup_base
    assert base is not None
    monkeypatch.setattr(codec, "FORMAT_VERSION", 2)
    with pytest.raises(FormatVersionError):
        _sync.sync(the_log().read_dedup_checkpoint(base))


def test_a_checkpoint_of_the_previous_format_holding_a_large_result_is_read_and_converted(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written by value (as the previous release did, format 2): read as it is, and the next
    checkpoint names an outcome object instead."""
    monkeypatch.setattr(dedup, "OUTCOME_OBJECT_BYTES", 1 << 40)
    init(spec)
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="big").run("a")
    assert outcome_objects() == []
    monkeypatch.undo()
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("b") == "a" * _BIG
    for i in range(8):
        x.small.options(idempotency_key=f"s{i}").run(i)
    assert len(outcome_objects()) == 1
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("c") == "a" * _BIG
    assert x.count.run() == 9


def _requests(run: Any) -> list[tuple[str, str]]:
    from vactor_cloud.cli.request_trace import RequestTrace

    with RequestTrace(vc.get_runtime().store).installed() as t:
        run()
    return [(r.kind, r.key.split("/actors/x/", 1)[-1].split("x/", 1)[-1]) for r in t.requests]


def test_a_large_keyed_commit_puts_its_outcome_its_checkpoint_and_its_step(spec: StoreSpec) -> None:
    """One PUT more than a checkpoint commit: the outcome object, then the checkpoint naming
    it, then the step. A retry of its key reads the object (the checkpoint is cached)."""
    init(spec, head_interval=3600.0, fresh_window=600.0, inbox_interval=3600.0)
    x = Export.get_or_create("x")
    x.small.options(idempotency_key="warm").run(0)
    step = newest().step
    done = _requests(lambda: x.export.options(idempotency_key="big").run("a"))
    [name] = outcome_objects()
    base = newest().dedup_base
    assert done == [
        ("put", f"dedup/outcomes/{name}"),
        ("put", f"dedup/{base}"),
        ("put", f"steps/{step + 1:020d}"),
    ]
    assert name.startswith(f"{step + 1:020d}-")
    again = _requests(lambda: x.export.options(idempotency_key="big").run("b"))
    # (and probes the next step, as any call that commits nothing: answered from the newest)
    assert again == [("get", f"dedup/outcomes/{name}"), ("get", f"steps/{step + 2:020d}")]
    # A small keyed commit after it: one PUT, as ever.
    assert _requests(lambda: x.small.options(idempotency_key="s").run(1)) == [
        ("put", f"steps/{step + 2:020d}")
    ]


@vc.virtual_actor(serializer="json")
class JsonExport:
    def __init__(self) -> None:
        self.runs = 0

    def export(self, fill: str) -> list[str]:
        self.runs += 1
        return [fill * _BIG]

    def fail(self, fill: str) -> None:
        raise KeyError(fill * _BIG)


def test_a_json_actor_and_a_signed_store_keep_large_outcomes_by_value(spec: StoreSpec) -> None:
    vc.init(
        spec.url, **spec.options, signing_key=b"s" * 32, settings=Settings(storage=spec.url, fresh_window=0.0)
    )
    x = JsonExport.get_or_create("x")
    assert x.export.options(idempotency_key="a").run("j") == ["j" * _BIG]
    with pytest.raises(KeyError):
        x.fail.options(idempotency_key="f").run("k")
    assert len(outcome_objects()) == 2
    log = the_log()
    [name, _] = outcome_objects()
    key = log.dedup_outcome_key(name)
    assert _sync.sync(log.store.get(key)).data[6:8] == b"\x00\x01"  # signed (flag bit 0)
    vc.shutdown()
    vc.init(
        spec.url, **spec.options, signing_key=b"s" * 32, settings=Settings(storage=spec.url, fresh_window=0.0)
    )
    x = vc.get_actor("x")
    assert x.export.options(idempotency_key="a").run("q") == ["j" * _BIG]
    with pytest.raises(KeyError) as raised:
        x.fail.options(idempotency_key="f").run("q")
    assert raised.value.args == ("k" * _BIG,)
    # An unsigned object put under the name is refused by a signed reader.
    unsigned = codec.encode(key, {"kind": "outcome", "serializer": "json"}, {"outcome": b"[]"}, version=3)
    _sync.sync(log.store.delete(key))
    _sync.sync(log.store.put(key, unsigned, mode="create"))
    vc.shutdown()
    vc.init(
        spec.url, **spec.options, signing_key=b"s" * 32, settings=Settings(storage=spec.url, fresh_window=0.0)
    )
    with pytest.raises(IntegrityError):
        vc.get_actor("x").export.options(idempotency_key="a").run("q")


def test_a_large_event_outcome_is_waited_for_by_value_and_the_event_applied_once(spec: StoreSpec) -> None:
    from vactor_cloud.events import send_event

    init(spec)
    x = Export.get_or_create("x")
    send_event("x", "dump", "v", event_id="d1")
    x.process_events()
    assert len(outcome_objects()) == 1
    assert x.wait_for_event("dump", timeout=30, event_id="d1") == "v" * _BIG
    x = restart(spec)
    assert x.wait_for_event("dump", timeout=30) == "v" * _BIG  # the newest "dump", by its name
    send_event("x", "dump", "w", event_id="d1")  # sent again: applied once
    x.process_events()
    assert x.wait_for_event("dump", timeout=30, event_id="d1") == "v" * _BIG
    assert x.count.run() == 1


def test_a_large_keyed_result_is_weighed_once_in_the_actor_cache(spec: StoreSpec) -> None:
    """The actor's cache weight (``max_cache_bytes``) counts the result once: the bytes of the
    outcome object its step wrote. The decoded checkpoint the process keeps names it only
    (before: the new checkpoint's bytes and the decoded checkpoint each held it)."""
    init(spec)
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="big").run("a")
    weight = vc.get_runtime().core("x")._weight
    assert _BIG < weight < 1.5 * _BIG, weight


def test_a_checkpoint_this_release_wrote_is_not_looked_through_again_by_another_process(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its meta ``by_value_at_most`` says no row it holds by value is larger: the next
    checkpoint, written by a process that read it, encodes only the rows recorded since one
    by one (each row of a 10,000-key table: about 100 ms more per checkpoint written)."""
    init(spec)
    x = Export.get_or_create("x")
    for i in range(150):  # a table of about 100 KB, small rows only
        x.small.options(idempotency_key=f"s{i}").run(i)
    assert max(checkpoint_sizes().values()) > dedup.OUTCOME_OBJECT_BYTES
    x = restart(spec)
    encoded: list[int] = []
    real = dedup.outcome_bytes

    def counting(outcome: dedup.Outcome, serializer: str) -> bytes:
        encoded.append(1)
        return real(outcome, serializer)

    monkeypatch.setattr(dedup, "outcome_bytes", counting)
    before = len(checkpoint_sizes())
    for i in range(150, 160):
        x.small.options(idempotency_key=f"s{i}").run(i)
    assert len(checkpoint_sizes()) > before  # a checkpoint written on the one read
    assert 0 < len(encoded) < 40, len(encoded)  # (of 160 rows)
    assert outcome_objects() == []


def test_a_forged_object_under_the_name_a_commit_writes_fails_the_commit_and_applies_nothing(
    spec: StoreSpec,
) -> None:
    """Create-only meets "already exists": the object there is read back, and taken only if it
    holds what its name is the SHA-256 of. A forged one fails the commit (``IntegrityError``
    naming it), nothing applied; once it is deleted, the call goes through."""
    init(spec)
    x = Export.get_or_create("x")
    log = the_log()
    data = _encoded("a" * _BIG)
    name = f"{newest().step + 1:020d}-{hashlib.sha256(data).hexdigest()}"
    key = log.dedup_outcome_key(name)
    forged = codec.encode(
        key,
        {"kind": "outcome", "serializer": "pickle"},
        {"outcome": b"junk"},
        signing_key=log.signing_key,
        version=3,
    )
    _sync.sync(log.store.put(key, forged, mode="create"))
    with pytest.raises(IntegrityError, match=name):
        x.export.options(idempotency_key="big").run("a")
    assert x.count.run() == 0
    _sync.sync(log.store.delete(key))
    assert x.export.options(idempotency_key="big").run("a") == "a" * _BIG
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("b") == "a" * _BIG
    assert x.count.run() == 1


@pytest.mark.parametrize("where", ["/dedup/outcomes/", "/dedup/0"])
@pytest.mark.parametrize("how", ["fail_before", "timeout_before"])
def test_a_failed_put_before_the_step_is_retried_as_a_step_never_sent(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, where: str, how: str
) -> None:
    """The outcome object and the checkpoint are put before the step. One of those puts failing
    (nothing written, past that put's own retries) was taken for a failure of the step's own
    put: not retried, the call
    failed with the bare error (a timeout said the calls "may or may not have been applied")
    and counted as an outcome unknown, though no step was ever sent. It is now retried as a
    failure before the put, and the call applied once."""
    from vactor_cloud.errors import RetryableStorageError, StorageTimeoutError

    init(spec)
    x = Export.get_or_create("x")
    store = vc.get_runtime().store
    real = store.put
    failed: list[str] = []

    async def failing_once(key: str, data: bytes, mode: Any = None) -> Any:
        if where in key and len(failed) < 6:  # more than one attempt's own retries of that put
            failed.append(key)
            if how == "fail_before":
                raise RetryableStorageError(f"{key}: connection refused (nothing written)", key)
            raise StorageTimeoutError(f"{key}: no answer (nothing written)", key, write_in_flight=True)
        return await real(key, data, mode=mode)

    monkeypatch.setattr(store, "put", failing_once)
    assert x.export.options(idempotency_key="big").run("a") == "a" * _BIG
    assert failed
    assert x.count.run() == 1
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("b") == "a" * _BIG
    assert x.count.run() == 1
    every_named_outcome_exists()
