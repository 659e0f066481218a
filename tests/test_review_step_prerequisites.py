"""The puts a step makes before its own (review h129): a keyed call's idempotency checkpoint and
its large outcome objects (``dedup/outcomes/``), put by ``ActorLog.put_step_prerequisites``
before the step's create-only put counts as sent.

* An interrupt (``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``) raised by a store
  wrapper in one of those puts reaches the caller; the call is not applied, the actor stays
  usable, and the runtime shuts down.
* A process killed (SIGKILL) between those puts and the step's: the next process sees no call
  applied, the retry with the same key runs it once, and a compaction removes what the killed
  one left (a checkpoint and an outcome object no step names).
* A stalled endpoint on those puts: the call ends by ``Settings.deadline`` with an error that
  says the call was not applied.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from child_processes import run_to_end
from prerequisite_workers import BIG, Exporter, export_killed_after
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.compaction import compact
from vactor_cloud.errors import NotFoundError
from vactor_cloud.log import ActorLog
from vactor_cloud.testing.faults import FaultConfig, FaultyStore, HoldEvery
from vactor_cloud.testing.lanes import Lane, StoreSpec

#: the two kinds of object put before the step: an outcome object, then the checkpoint
#: (``dedup/<step:020d>-<token>``)
WHERE = {"outcome-object": "/dedup/outcomes/", "checkpoint": "/dedup/0"}


def init(spec: StoreSpec, **settings: Any) -> None:
    vc.init(spec.url, **spec.options, settings=vc.Settings(storage=spec.url, fresh_window=0.0, **settings))


def the_log() -> ActorLog:
    return vc.get_runtime().log("x")


def dedup_objects() -> list[str]:
    log = the_log()
    return sorted(k[len(log.dedup_prefix) :] for k in _sync.sync(log.store.list(log.dedup_prefix)))


class RaisesOnce(FaultyStore):
    """Once armed, the next put of a key containing ``fragment`` raises ``exc`` (``after``: once
    the wrapped store applied it)."""

    def __init__(self, inner: Any, exc: BaseException, fragment: str, after: bool) -> None:
        super().__init__(inner, FaultConfig())
        self.armed: BaseException | None = None
        self.exc = exc
        self.fragment = fragment
        self.after = after

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        exc = self.armed
        if exc is not None and operation == "put" and self.fragment in key:
            self.armed = None
            if self.after:
                await run()
            raise exc
        return await run()


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, GeneratorExit])
@pytest.mark.parametrize("after", [False, True], ids=["not-landed", "landed"])
@pytest.mark.parametrize("where", sorted(WHERE))
def test_an_interrupt_in_a_put_before_the_step_reaches_the_caller_and_applies_nothing(
    spec: StoreSpec, kind: type[BaseException], after: bool, where: str
) -> None:
    init(spec, deadline=5.0)
    runtime = vc.get_runtime()
    store = RaisesOnce(runtime.store, kind(), WHERE[where], after)
    runtime.store = store
    x = Exporter.get_or_create("x")
    store.armed = store.exc
    with pytest.raises(kind) as raised:
        x.export.options(idempotency_key="big").run("a")
    assert raised.value is store.exc
    # Before, its note said the call "may or may not have been applied (a step put already sent
    # may land)": no step put was sent. It says the call was not applied.
    notes = [n for n in getattr(raised.value, "__notes__", ()) if n.startswith("vactor_cloud:")]
    assert len(notes) == 1 and "before its step's write was sent: not applied" in notes[0], notes
    assert store.armed is None  # (the injected one, not another)
    assert x.count.run() == 0
    # The actor goes on: the retry with the same key runs the call (once), another call too.
    assert x.export.options(idempotency_key="big").run("b") == "b" * BIG
    assert x.export.options(idempotency_key="big").run("c") == "b" * BIG
    assert x.small.run(1).startswith("1")
    assert x.count.run() == 2
    vc.shutdown()  # (returns: nothing waits for the interrupted commit)
    init(spec)
    assert vc.get_actor("x").count.run() == 2


@pytest.mark.parametrize("where", sorted(WHERE))
def test_a_process_killed_between_its_prerequisite_puts_and_its_step_applied_nothing(
    spec: StoreSpec,
    store_lane: Lane,
    where: str,
    process_context: Any,
) -> None:
    """What the killed process put is there and no step names it; the next process sees no
    call applied, runs the retry once, and a compaction deletes the orphans."""
    if not store_lane.multiprocess:
        pytest.skip(f"{store_lane.name} stores live in one process: nothing to kill")
    init(spec, dedup_window=(3, 0.0))
    Exporter.get_or_create("x")
    vc.shutdown()
    child = process_context.Process(target=export_killed_after, args=(spec, WHERE[where]))
    assert run_to_end([child], 120) == [-signal.SIGKILL]
    init(spec, dedup_window=(3, 0.0))
    orphans = dedup_objects()
    assert any(name.startswith("outcomes/") for name in orphans), orphans
    assert any("/" not in name for name in orphans) == (where == "checkpoint"), orphans
    x = vc.get_actor("x")
    assert x.count.run() == 0
    assert x.export.options(idempotency_key="big").run("b") == "b" * BIG
    for i in range(12):  # the window moves on: "big" leaves it, at a later checkpoint
        x.small.options(idempotency_key=f"s{i}").run(i)
    # (Until a later checkpoint, an orphan at the same step as the kept one may be kept: which
    # of the two the kept steps name, compaction tells by name order only.)
    _sync.sync(compact(the_log(), keep_last=1, min_age=0.0, fresh_window=0.0))
    assert not set(orphans) & set(dedup_objects()), dedup_objects()
    assert x.count.run() == 13


class EveryPutTimesOut(FaultyStore):
    """Every put of a key containing ``fragment`` times out (its own request timeout): sent,
    no answer."""

    def __init__(self, inner: Any, fragment: str) -> None:
        super().__init__(inner, FaultConfig())
        self.fragment = fragment
        self.timed_out = 0

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if operation == "put" and self.fragment in key:
            self.timed_out += 1
            await asyncio.sleep(0.02)
            raise vc.StorageTimeoutError(
                f"put {key} got no answer (the write may or may not have been applied)",
                key,
                write_in_flight=True,
            )
        return await run()


def test_puts_before_the_step_timing_out_end_the_call_by_the_deadline_as_not_applied(spec: StoreSpec) -> None:
    """Before, the caller heard the last checkpoint put's own timeout, ``write_in_flight`` and
    "the write may or may not have been applied", of a write that was not the call's (a
    caller retried without a key; one with a key was fine). No step was sent: the error now says
    the call was not applied."""
    init(spec)
    runtime = vc.get_runtime()
    store = EveryPutTimesOut(runtime.store, "/dedup/")
    runtime.store = store
    x = Exporter.get_or_create("x")
    retune(deadline=0.5)  # (the call's: a loaded host's get_or_create ran past 0.5 s)
    with pytest.raises(vc.StorageTimeoutError) as raised:
        x.export.options(idempotency_key="big").run("a")
    assert store.timed_out
    assert not raised.value.write_in_flight
    assert "the calls were not applied" in str(raised.value), str(raised.value)
    assert isinstance(raised.value.__cause__, vc.StorageTimeoutError)
    vc.shutdown()
    init(spec)
    x = vc.get_actor("x")
    assert x.count.run() == 0
    assert x.export.options(idempotency_key="big").run("b") == "b" * BIG
    assert x.count.run() == 1


def test_a_stalled_put_before_the_step_ends_by_the_deadline_as_not_applied(spec: StoreSpec) -> None:
    """Before, the caller heard the bare deadline error ("the store is stalled or
    unreachable": applied or not, it did not say). No step was sent: the error says the call
    was not applied."""
    init(spec)
    runtime = vc.get_runtime()
    store = HoldEvery(runtime.store, "put", "/dedup/", timeout=30.0)
    runtime.store = store
    x = Exporter.get_or_create("x")
    retune(deadline=0.5)  # (the call's: a loaded host's get_or_create ran past 0.5 s)
    store.hold()
    try:
        with pytest.raises(vc.StorageTimeoutError) as raised:
            x.export.options(idempotency_key="big").run("a")
    finally:
        store.release.set()
    store.check()
    assert not raised.value.write_in_flight
    assert "the calls were not applied" in str(raised.value), str(raised.value)
    assert isinstance(raised.value.__cause__, vc.StorageTimeoutError)
    retune(deadline=vc.Settings.deadline)  # (the checks write 100 kB: not under the call's 0.5 s)
    assert x.count.run() == 0
    assert x.export.options(idempotency_key="big").run("b") == "b" * BIG
    assert x.count.run() == 1


def test_a_keyed_retry_whose_outcome_object_was_deleted_says_what_happened(spec: StoreSpec) -> None:
    """The large outcome object of an applied keyed call, deleted out of band (nothing of the
    library deletes one a kept checkpoint names): the retry fails, is not run again, and its
    error names the object and the call, says the call was applied once and its result is lost.
    Before, the bare ``NotFoundError`` of the object's key."""
    init(spec)
    x = Exporter.get_or_create("x")
    call = x.export.options(idempotency_key="big").run_async("a")
    assert call.result(60) == "a" * BIG
    log = the_log()
    (name,) = [n for n in dedup_objects() if n.startswith("outcomes/")]
    _sync.sync(log.store.delete(log.dedup_prefix + name))
    vc.shutdown()
    init(spec)
    x = vc.get_actor("x")
    with pytest.raises(NotFoundError) as raised:
        x.export.options(idempotency_key="big").run("b")
    message = str(raised.value)
    assert name.removeprefix("outcomes/") in message, message
    assert "big" in message, message
    assert "applied once" in message and "result is lost" in message, message
    assert "not run again" in message, message
    assert raised.value.key == log.dedup_prefix + name
    assert x.count.run() == 1
