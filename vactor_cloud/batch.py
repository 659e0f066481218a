"""Applying a batch of queued writer calls to one base state (no I/O here).

A batch is applied in submission order to an instance restored from the base
step. A call that raises is excluded: the instance is rebuilt from the base
and the calls before it are replayed (writer methods must be deterministic
functions of state and arguments), so its partial mutations never reach the
committed state. The idempotency table is consulted and extended in the same
pass, which is what makes deduplication atomic with the commit (the caller
loads it first when a call carries a key: ``StepDedup.prepare``).
"""

from __future__ import annotations

import asyncio
import inspect
import reprlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from vactor_cloud.dedup import DedupFields, Outcome, StepDedup
from vactor_cloud.definition import ActorClass
from vactor_cloud.errors import StateSerializationError
from vactor_cloud.log import CallRecord, StepRecord
from vactor_cloud.state import capture_state, dumps_state, loads_state, restore_instance

__all__ = ["BatchResult", "CallContext", "PendingCall", "apply_batch", "current_call", "run_readonly"]

_summary = reprlib.Repr()
_summary.maxstring = 60
_summary.maxother = 60
_summary.maxlevel = 2


@dataclass(eq=False)
class PendingCall:
    """A call queued for an actor, with the future its caller waits on."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    readonly: bool
    future: Future[Any]
    call_id: str
    idempotency_key: str | None = None
    at_step: int | None = None
    submitted: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class CallContext:
    """What code running inside an actor method can learn about the call (``current_call()``)."""

    actor_id: str
    call_id: str
    method: str
    readonly: bool
    runtime: Any


_local = threading.local()


def current_call() -> CallContext | None:
    """The actor call running in this thread, or ``None`` outside actor methods."""
    return getattr(_local, "call", None)


def _invoke(definition: ActorClass, instance: Any, call: PendingCall, context: CallContext) -> Any:
    previous = getattr(_local, "call", None)
    _local.call = context
    try:
        result = getattr(instance, call.method)(*call.args, **call.kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return result
    finally:
        _local.call = previous


@dataclass
class BatchResult:
    """What applying a batch produced: per-call outcomes and, if anything changed, the new state."""

    outcomes: list[Outcome]
    instance: Any = None
    state: bytes | None = None
    dedup: DedupFields = field(default_factory=DedupFields)
    calls: list[CallRecord] = field(default_factory=list)


def apply_batch(
    definition: ActorClass,
    actor_id: str,
    base: StepRecord,
    live: Any,
    calls: list[PendingCall],
    runtime: Any,
    dedup_window: tuple[int, float],
    table: StepDedup | None = None,
) -> BatchResult:
    """Apply ``calls`` to ``base`` (or to ``live``, an instance already at ``base``).

    ``table`` is ``base``'s idempotency table, loaded if any call carries a
    key (``None``: only a format-1 base, whose step holds the whole table).
    """
    serializer = definition.serializer

    def fresh() -> Any:
        return restore_instance(definition.cls, loads_state(base.state, base.serializer))

    instance = live if live is not None else fresh()
    if table is None:
        table = StepDedup(None, base)
    mark = table.mark()
    outcomes: list[Outcome] = []
    succeeded: list[PendingCall] = []
    applied: list[tuple[PendingCall, Outcome]] = []
    now = time.time()
    for call in calls:
        if call.idempotency_key is not None:
            if not table.load_without_io():
                raise RuntimeError("the idempotency table needs I/O to load: prepare() it before apply_batch")
            recorded = table.get(call.idempotency_key, window=dedup_window, now=now)
            if recorded is not None:
                outcomes.append(recorded)
                continue
        context = CallContext(actor_id, call.call_id, call.method, False, runtime)
        try:
            outcome = Outcome(True, _invoke(definition, instance, call, context))
            succeeded.append(call)
        except Exception as exc:
            outcome = Outcome(False, exc)
            # Drop the failed call's partial mutations: rebuild and replay.
            instance = fresh()
            for done in succeeded:
                _invoke(
                    definition,
                    instance,
                    done,
                    CallContext(actor_id, done.call_id, done.method, False, runtime),
                )
        outcomes.append(outcome)
        # A raising call changes nothing, unless its key must remember the exception.
        if outcome.ok or call.idempotency_key is not None:
            applied.append((call, outcome))
        if call.idempotency_key is not None:
            table.record(call.idempotency_key, outcome, now)
    if not applied:
        return BatchResult(outcomes)
    try:
        state = dumps_state(capture_state(instance), serializer)
        dedup = table.fields(serializer, dedup_window, now, base.step + 1)
    except StateSerializationError as exc:
        table.rollback(mark)
        if len(calls) == 1:
            return BatchResult([Outcome(False, exc)])
        # Find the culprit(s): apply one call at a time, serializing after each.
        return _apply_one_by_one(definition, actor_id, base, calls, runtime, dedup_window, table)
    records = [
        CallRecord(
            method=call.method,
            call_id=call.call_id,
            ok=outcome.ok,
            time=now,
            args=_summarize_args(call),
            result=_summary.repr(outcome.value) if outcome.ok else f"raised {outcome.value!r}"[:120],
            key=call.idempotency_key,
        )
        for call, outcome in applied
    ]
    return BatchResult(outcomes, instance, state, dedup, records)


def _apply_one_by_one(
    definition: ActorClass,
    actor_id: str,
    base: StepRecord,
    calls: list[PendingCall],
    runtime: Any,
    dedup_window: tuple[int, float],
    table: StepDedup,
) -> BatchResult:
    current = base
    live = None
    outcomes: list[Outcome] = []
    records: list[CallRecord] = []
    result = BatchResult([])
    for call in calls:
        single = apply_batch(definition, actor_id, current, live, [call], runtime, dedup_window, table)
        outcomes.extend(single.outcomes)
        if single.state is not None:
            current = StepRecord(
                step=current.step,
                parent=current.parent,
                class_ref=current.class_ref,
                serializer=definition.serializer,
                state=single.state,
                writer=current.writer,
                time=current.time,
            )
            live = single.instance
            records.extend(single.calls)
            result = single
    if not records:
        return BatchResult(outcomes)
    return replace(result, outcomes=outcomes, calls=records)


def _summarize_args(call: PendingCall) -> str:
    parts = [_summary.repr(a) for a in call.args]
    parts += [f"{k}={_summary.repr(v)}" for k, v in call.kwargs.items()]
    return ", ".join(parts)[:200]


def run_readonly(
    definition: ActorClass, actor_id: str, record: StepRecord, call: PendingCall, runtime: Any
) -> Any:
    """Run a read-only method on a private copy of ``record``'s state; mutations are discarded."""
    instance = restore_instance(definition.cls, loads_state(record.state, record.serializer))
    return _invoke(
        definition, instance, call, CallContext(actor_id, call.call_id, call.method, True, runtime)
    )


def summarize(value: Any) -> str:
    return _summary.repr(value)


Restorer = Callable[[], Any]
