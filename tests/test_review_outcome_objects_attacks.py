"""A hostile review of large keyed outcomes stored as objects, and of the puts a step's
prerequisites make before the step's own put (h126).

Each test attacks one guarantee: an outcome object of a deleted incarnation is never taken
for the new one's; a prerequisite put that landed though its answer was lost, or a race lost
after the prerequisites landed, applies the call once and leaves no step naming a missing
object; the threshold is "over 64 KB" exactly; many large results in one batch are one step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pytest
from test_dedup_outcome_objects import (
    _BIG,
    Export,
    every_named_outcome_exists,
    init,
    outcome_objects,
    restart,
    the_log,
)

import vactor_cloud as vc
from vactor_cloud import _sync, dedup
from vactor_cloud.batch import CallOptions, PendingCall
from vactor_cloud.compaction import compact
from vactor_cloud.errors import StorageTimeoutError
from vactor_cloud.future import ActorFuture
from vactor_cloud.log import ActorLog
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec


def _compact() -> None:
    _sync.sync(compact(the_log(), keep_last=1, min_age=0.0, fresh_window=0.0))


def test_a_new_incarnation_never_answers_a_key_from_the_deleted_ones_outcome_object(spec: StoreSpec) -> None:
    """A keyed call recorded a large result in an object; the actor is deleted and made anew
    under its id. The same key on the new incarnation runs the method (the old table is gone
    with the old incarnation), and compaction then deletes the old incarnation's object."""
    init(spec)
    x = Export.get_or_create("x")
    assert x.export.options(idempotency_key="big").run("a") == "a" * _BIG
    old = outcome_objects()
    assert len(old) == 1
    assert vc.delete_actor("x") is True
    x = Export.get_or_create("x")
    assert x.export.options(idempotency_key="big").run("b") == "b" * _BIG
    assert x.count.run() == 1
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("c") == "b" * _BIG
    assert x.count.run() == 1
    every_named_outcome_exists()
    for _ in range(3):
        x.small.options(idempotency_key=None).run(0)
    _compact()
    assert old[0] not in outcome_objects()
    every_named_outcome_exists()
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("d") == "b" * _BIG


@pytest.mark.parametrize("where", ["/dedup/outcomes/", "/dedup/0"])
def test_a_prerequisite_put_that_landed_but_timed_out_applies_the_call_once(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The outcome object's (or the checkpoint's) put lands but its answer is lost, past that
    put's own retries: the next attempt (same step number) meets the object already there,
    and the call is applied once, answered by value, and nothing named is missing."""
    init(spec)
    x = Export.get_or_create("x")
    store = vc.get_runtime().store
    real = store.put
    lost: list[str] = []

    async def landing_unanswered(key: str, data: bytes, mode: Any = None) -> Any:
        version = await real(key, data, mode=mode)
        if where in key and len(lost) < 6:
            lost.append(key)
            raise StorageTimeoutError(f"{key}: no answer (it landed)", key, write_in_flight=True)
        return version

    monkeypatch.setattr(store, "put", landing_unanswered)
    assert x.export.options(idempotency_key="big").run("a") == "a" * _BIG
    assert lost
    monkeypatch.setattr(store, "put", real)
    assert x.count.run() == 1
    every_named_outcome_exists()
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("b") == "a" * _BIG
    assert x.count.run() == 1


def test_a_race_lost_after_the_prerequisites_landed_applies_once_and_names_nothing_missing(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the prerequisites' puts and the step's put, another process commits the step
    number: the commit retries on the next number with a new object name; the first object is
    named by no step, and a compaction deletes it once below the watermark."""
    init(spec)
    x = Export.get_or_create("x")
    x.small.run(0)
    real = ActorLog.put_step_prerequisites
    raced: list[int] = []

    async def then_lose(self: ActorLog, record: Any) -> None:
        await real(self, record)
        if not raced:
            raced.append(record.step)
            mine = vc.get_runtime().core("x").record
            assert mine is not None and mine.step + 1 == record.step
            theirs = dataclasses.replace(mine, step=record.step, parent=mine.step, writer="someone-else")
            await self.put_step(theirs)

    monkeypatch.setattr(ActorLog, "put_step_prerequisites", then_lose)
    assert x.export.options(idempotency_key="big").run("a") == "a" * _BIG
    monkeypatch.setattr(ActorLog, "put_step_prerequisites", real)
    assert raced
    # The loser's object (named for the number it lost) is there, named by no step.
    names = outcome_objects()
    assert any(name.startswith(f"{raced[0]:020d}-") for name in names), names
    every_named_outcome_exists()
    for i in range(3):
        x.small.run(i)
    _compact()
    assert not any(name.startswith(f"{raced[0]:020d}-") for name in outcome_objects())
    every_named_outcome_exists()
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("b") == "a" * _BIG
    assert x.count.run() == 5


def _fill_encoded_to(size: int) -> str:
    """A string whose keyed outcome encodes to exactly ``size`` bytes."""
    length = size
    for _ in range(8):
        got = len(dedup.outcome_bytes(dedup.Outcome(True, "q" * length), "pickle"))
        if got == size:
            return "q" * length
        length += size - got
    raise AssertionError(f"no string encodes to {size} bytes")


@vc.virtual_actor
class Sized:
    def __init__(self) -> None:
        self.runs = 0

    def put(self, value: str) -> str:
        self.runs += 1
        return value


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_an_outcome_at_the_threshold_is_held_by_value_and_one_byte_over_as_an_object(
    spec: StoreSpec, delta: int
) -> None:
    """Over 64 KB encoded goes to an object; 64 KB exactly, or one byte under, stays by value."""
    init(spec)
    value = _fill_encoded_to(dedup.OUTCOME_OBJECT_BYTES + delta)
    a = Sized.get_or_create("x")
    assert a.put.options(idempotency_key="k").run(value) == value
    assert len(outcome_objects()) == (1 if delta > 0 else 0)
    a = restart(spec)
    assert a.put.options(idempotency_key="k").run("other") == value
    every_named_outcome_exists()


@vc.virtual_actor
class Many:
    def __init__(self) -> None:
        self.runs = 0

    def hold(self, seconds: float) -> None:
        time.sleep(seconds)

    def big(self, fill: str) -> str:
        self.runs += 1
        return fill * _BIG

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.runs


def test_many_large_results_in_one_batch_are_one_object_per_content_each_key_answered_once(
    spec: StoreSpec,
) -> None:
    """Twelve keyed calls queued behind a slow one commit together: six contents, so six
    objects (keys of one content share one, within the step as across steps); every key is
    answered by value, in this process and a new one, and no method runs twice."""
    init(spec)
    m = Many.get_or_create("x")
    held = m.hold.run_async(0.3)
    futures = [m.big.options(idempotency_key=f"k{i}").run_async(str(i % 6)) for i in range(12)]
    held.result(30)
    assert [f.result(30) for f in futures] == [str(i % 6) * _BIG for i in range(12)]
    assert len(outcome_objects()) == 6
    every_named_outcome_exists()
    m = restart(spec)
    assert [m.big.options(idempotency_key=f"k{i}").run("z") for i in range(12)] == [
        str(i % 6) * _BIG for i in range(12)
    ]
    assert m.count.run() == 12  # none ran twice
    # (the batch path: some step applied several of the large results at once)
    assert max(len(entry.calls) for entry in m.history()) >= 2


def test_two_compactions_at_once_racing_a_commit_leave_every_named_outcome(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two compactions run at once (each lists dedup/ and decides), while keyed commits go on
    recording large results, one of a content an older object holds: no kept step names a
    deleted object, and every key still in the window is answered by value."""
    init(spec, dedup_window=(3, 0.0))
    x = Export.get_or_create("x")
    x.export.options(idempotency_key="first").run("r")
    for i in range(6):
        x.small.options(idempotency_key=f"s{i}").run(i)
    store = vc.get_runtime().store
    real = store.list
    dedup_prefix = the_log().dedup_prefix
    listed: list[int] = []

    async def listing(prefix: str, **kwargs: Any) -> Any:
        got = await real(prefix, **kwargs)
        if prefix == dedup_prefix and len(listed) < 2:
            listed.append(1)
            which = len(listed)
            tokens = ["r", "n"] if which == 1 else ["r", "m"]
            for n, fill in enumerate(tokens):
                call = x.export.options(idempotency_key=f"race{which}-{n}")
                assert await asyncio.to_thread(call.run, fill) == fill * _BIG
        return got

    monkeypatch.setattr(store, "list", listing)

    async def both() -> None:
        log = the_log()
        await asyncio.gather(
            compact(log, keep_last=1, min_age=0.0, fresh_window=0.0),
            compact(log, keep_last=1, min_age=0.0, fresh_window=0.0),
        )

    _sync.sync(both())
    monkeypatch.setattr(store, "list", real)
    assert len(listed) == 2
    every_named_outcome_exists()
    _compact()
    every_named_outcome_exists()
    x = restart(spec, dedup_window=(3, 0.0))
    runs = x.count.run()
    for key, fill in [("race2-0", "r"), ("race2-1", "m")]:
        assert x.export.options(idempotency_key=key).run("q") == fill * _BIG
    assert x.count.run() == runs


def test_a_shutdown_that_begins_while_the_prerequisites_are_put_lets_the_step_commit(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime begins to shut down while a step's prerequisites (its outcome object and
    checkpoint) are put: shutdown waits for the running commit attempt, whose step's put then
    goes (it is refused only once the runtime stopped, and then as not sent): the call commits,
    once, and the key answers by value in the next runtime."""
    init(spec)
    x = Export.get_or_create("x")
    runtime = vc.get_runtime()
    real = ActorLog.put_step_prerequisites
    stopping: list[threading.Thread] = []

    async def then_stop(self: ActorLog, record: Any) -> None:
        await real(self, record)
        if not stopping:
            stopping.append(threading.Thread(target=vc.shutdown))
            stopping[0].start()
            while not runtime.closed:
                await asyncio.sleep(0.001)

    monkeypatch.setattr(ActorLog, "put_step_prerequisites", then_stop)
    assert x.export.options(idempotency_key="big").run("a") == "a" * _BIG
    stopping[0].join(60)
    assert runtime.stopped
    monkeypatch.setattr(ActorLog, "put_step_prerequisites", real)
    x = restart(spec)
    assert x.export.options(idempotency_key="big").run("b") == "a" * _BIG
    assert x.count.run() == 1
    every_named_outcome_exists()


def test_a_deleted_actors_applied_event_with_a_large_outcome_is_not_applied_again_by_the_next(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event whose outcome went to an object (its checkpoint format 3) was applied, and its
    inbox object left (the writer died before deleting it). The actor is deleted: the clean-up
    reads the last live step's table (naming the object) to know the event applied, and
    deletes the inbox object; the actor made anew under the id does not apply it again."""
    from vactor_cloud.events import send_event
    from vactor_cloud.keys import inbox_prefix

    init(spec)
    x = Export.get_or_create("x")
    store = vc.get_runtime().store
    real = store.delete_many
    real_unchanged = store.delete_unchanged
    prefix = inbox_prefix("x")

    async def keeping_the_inbox(keys: list[str]) -> Any:
        return await real([k for k in keys if not k.startswith(prefix)])

    async def keeping_the_inbox_unchanged(versions: dict[str, str]) -> Any:  # (the inbox's deletes)
        return await real_unchanged({k: v for k, v in versions.items() if not k.startswith(prefix)})

    monkeypatch.setattr(store, "delete_many", keeping_the_inbox)
    monkeypatch.setattr(store, "delete_unchanged", keeping_the_inbox_unchanged)
    send_event("x", "dump", "v", event_id="d1")
    x.process_events()
    assert x.wait_for_event("dump", timeout=30, event_id="d1") == "v" * _BIG
    assert len(outcome_objects()) == 1
    monkeypatch.setattr(store, "delete_many", real)
    monkeypatch.setattr(store, "delete_unchanged", real_unchanged)
    assert _sync.sync(store.list(prefix)), "the inbox object was deleted: the test sets nothing up"
    assert vc.delete_actor("x") is True
    x = Export.get_or_create("x")
    x.process_events()
    assert x.count.run() == 0


def test_a_stale_process_whose_cached_table_names_an_object_another_compacted_catches_up(
    spec: StoreSpec,
) -> None:
    """This process (fresh_window: it trusts its cache a while) holds the actor's table naming
    a large outcome's object. Another process records more keys, the large one leaves the
    window, and compacts: the object goes. This process's keyed call on that key reads the
    object its stale table names (gone): it must catch up and answer as the newest state
    says (the key out of the window: the method runs), not fail with NotFoundError."""
    init(spec, dedup_window=(3, 0.0), fresh_window=60.0)
    x = Export.get_or_create("x")
    assert x.export.options(idempotency_key="old").run("o") == "o" * _BIG
    other = Runtime(Settings(storage=spec.url, storage_options=spec.options, dedup_window=(3, 0.0)))
    try:
        for i in range(12):
            pending = PendingCall.by_value(
                "small",
                (i,),
                {},
                readonly=False,
                future=ActorFuture(),
                call_id="",
                options=CallOptions(idempotency_key=f"s{i}"),
            )
            other.core("x").call(pending)
            pending.future.result(60)
        _sync.sync(compact(other.log("x"), keep_last=1, min_age=0.0, fresh_window=0.0))
        assert outcome_objects() == [], "the object was not compacted: the test sets nothing up"
    finally:
        other.close()
    assert x.export.options(idempotency_key="old").run("p") == "p" * _BIG
    assert x.count.run() == 14


def test_a_compaction_between_a_commits_outcome_object_and_its_checkpoint_keeps_the_object(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit put its new outcome object (named for its own step, N+1) and not yet the
    checkpoint naming it, when a compaction lists dedup/: no kept checkpoint names the object
    yet, but it is of a step at or above the watermark, so it stays (deleted, the step would
    name a missing object and the key's retry fail with NotFoundError)."""
    init(spec, dedup_window=(3, 0.0))
    x = Export.get_or_create("x")
    for i in range(4):
        x.small.options(idempotency_key=f"s{i}").run(i)
    real = ActorLog.put_dedup_checkpoint
    compacted: list[int] = []

    async def compact_first(self: ActorLog, *args: Any, **kwargs: Any) -> Any:
        if not compacted and await self.list_dedup_outcomes():
            compacted.append(1)
            await compact(self, keep_last=1, min_age=0.0, fresh_window=0.0)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(ActorLog, "put_dedup_checkpoint", compact_first)
    assert x.export.options(idempotency_key="big").run("a") == "a" * _BIG
    monkeypatch.setattr(ActorLog, "put_dedup_checkpoint", real)
    assert compacted
    every_named_outcome_exists()
    x = restart(spec, dedup_window=(3, 0.0))
    assert x.export.options(idempotency_key="big").run("b") == "a" * _BIG
    assert x.count.run() == 5


def test_a_runtime_stopped_once_the_prerequisites_landed_refuses_the_step_as_not_applied(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime stops (a shutdown whose wait ran out) just as a step's prerequisites landed:
    the step's put is refused, never sent. The call was told CommitOutcomeUnknownError ("the
    write of step N was sent ... may or may not have been applied") since the put counted as
    sent before the refusal: it is told it was not applied (RuntimeShutdownError), as a put
    refused at the attempt's start is, and a retry with its key applies it once."""
    from vactor_cloud.errors import CommitOutcomeUnknownError, RuntimeShutdownError

    init(spec)
    x = Export.get_or_create("x")
    runtime = vc.get_runtime()
    real = ActorLog.put_step_prerequisites

    async def then_stopped(self: ActorLog, record: Any) -> None:
        await real(self, record)
        runtime.stopped = True  # (as close() sets it once its wait for running work ran out)

    monkeypatch.setattr(ActorLog, "put_step_prerequisites", then_stopped)
    with pytest.raises(RuntimeShutdownError) as raised:
        x.export.options(idempotency_key="big").run("a")
    assert not isinstance(raised.value, CommitOutcomeUnknownError), raised.value
    assert "not applied" in str(raised.value)
    monkeypatch.setattr(ActorLog, "put_step_prerequisites", real)
    x = restart(spec)
    assert x.count.run() == 0
    assert x.export.options(idempotency_key="big").run("b") == "b" * _BIG
    assert x.count.run() == 1
