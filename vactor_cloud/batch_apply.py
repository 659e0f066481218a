"""Applying a batch of writer calls to one base state, and running read-only calls (no I/O here).

Guarantees:

* **Run once.** Each method body in a batch runs once per commit attempt.
  After every call that returns, the state is captured (``__getstate__``
  and serialized); a call that raises is excluded by restoring the instance
  from the snapshot taken before it, never by replaying its batch-mates. Only
  a lost race or a fault runs a body again (on a new attempt).
* **By value.** Each attempt gets a fresh copy of the call's arguments; a
  result is copied as the method returns (before a batch-mate can change
  it), so the caller never holds a reference into the live instance. A
  result that cannot be copied (or read back) fails its own call only.
  What the idempotency table records is its own copy, read back from its
  encoding, and each caller a recorded outcome is delivered to gets a fresh
  copy of it: no two callers share a result object.
* **Atomic dedup.** The idempotency table is consulted and extended in the
  same pass, which is what makes deduplication atomic with the commit. It
  is loaded only when a call carries a key.
* **Every exception reaches its caller**, ``BaseException`` included
  (``SystemExit``, ``KeyboardInterrupt``, ``CancelledError``); such a call
  is excluded and, having no result, not recorded under its key. So is a
  call that raised a fault of the store, the runtime or the process
  (``dedup.is_outcome``): a retry with its key runs it again. The
  original exception reaches its caller even when the table can record only
  a stand-in for it (``dedup.recorded_exception``).
  One exception is translated: a nested call's doubt (``CommitOutcomeUnknownError``,
  ``CallPendingError``) that a body lets through, bare or in an ``ExceptionGroup`` (a
  ``TaskGroup`` of nested calls), reaches its caller as ``NestedCallPendingError`` naming
  the caller's own call (not applied), the nested error (or the group) its ``__cause__``.
* **Async methods** run to completion in the call: on this thread, or on a
  helper thread when this thread already runs an event loop.

The calls are :mod:`vactor_cloud.batch`'s (:class:`~vactor_cloud.batch.PendingCall`,
:class:`~vactor_cloud.batch.CallContext`); each body runs through
:func:`~vactor_cloud.call_bodies.invoke` (the translation of nested doubts, async methods,
forked children). This module holds :func:`apply_batch` (what a batch produced:
:class:`BatchResult`), :func:`run_readonly`, and the summaries of calls that history shows
(:func:`summarize`).
"""

from __future__ import annotations

import contextlib
import reprlib
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from vactor_cloud.batch import NO_ARGUMENTS, CallContext, PendingCall
from vactor_cloud.byvalue import freeze, thaw
from vactor_cloud.call_bodies import invoke, step_status
from vactor_cloud.call_runtime import CallRuntime
from vactor_cloud.class_tag import made_for
from vactor_cloud.dedup import (
    DedupFields,
    Outcome,
    StepDedup,
    delivered,
    is_outcome,
    recorded_exception,
    recorded_outcome,
    safe_repr,
)
from vactor_cloud.definition import ActorDefinition, MethodInfo, check_at_step
from vactor_cloud.errors import ActorClassChangedError
from vactor_cloud.fork_guard import end_a_forked_child, forks_now
from vactor_cloud.future import ActorFuture
from vactor_cloud.ids import is_resume_key
from vactor_cloud.incarnation import born_of
from vactor_cloud.log_records import CallRecord, StepRecord
from vactor_cloud.state import dumps_instance_state, expect_serializer, loads_state, restore_instance
from vactor_cloud.timers import (
    FIRE,
    MARKERS,
    SCHEDULE,
    FireReport,
    Timer,
    TimerEdits,
    TimerTable,
    timer_dedup_key,
)

__all__ = ["BatchResult", "apply_batch", "run_readonly", "summarize"]


class _Summary(reprlib.Repr):
    """``reprlib.Repr`` for history's summaries, which never raises on a value (a summary that
    raised failed the commit of a call its method had applied, and of its batch-mates): an
    ``int`` too long for ``str()`` (``sys.get_int_max_str_digits()``) is told by its size, and
    a ``__repr__`` that raises (reprlib catches it only for types it has no method for: not
    for one named ``int`` or ``list``) by its type."""

    def repr1(self, x: Any, level: int) -> str:
        try:
            return super().repr1(x, level)
        except Exception:
            return f"<{type(x).__name__} (repr failed)>"

    def repr_int(self, x: int, level: int) -> str:
        if isinstance(x, int) and x.bit_length() > _LONGEST_INT_WITHOUT_A_LOOK:
            with contextlib.suppress(ValueError):
                return super().repr_int(x, level)
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


#: bits of an ``int`` surely within any ``str()`` limit (at least 640 digits: CPython's floor)
_LONGEST_INT_WITHOUT_A_LOOK = 2000

_summary = _Summary()
_summary.maxstring = 60
_summary.maxother = 60
_summary.maxlevel = 2


@dataclass
class BatchResult:
    """What applying a batch produced: per-call outcomes and, if anything changed, the new state."""

    outcomes: list[Outcome]
    instance: Any = None
    state: bytes | None = None
    dedup: DedupFields = field(default_factory=DedupFields)
    calls: list[CallRecord] = field(default_factory=list)
    #: ``StepRecord.extra`` of the step to commit (the base's, with timer changes)
    extra: dict[str, Any] = field(default_factory=dict)


def apply_batch(
    definition: ActorDefinition,
    actor_id: str,
    base: StepRecord,
    live: Any,
    calls: list[PendingCall],
    runtime: CallRuntime,
    dedup_window: tuple[int, float],
    table: StepDedup | None = None,
) -> BatchResult:
    """Apply ``calls`` in order to ``base`` (or to ``live``, an instance already at ``base``).

    ``table`` is ``base``'s idempotency table, loaded (``StepDedup.prepare``)
    when a call carries a key; None: only a table that needs no I/O to read.
    """
    forks = forks_now()
    try:
        return _apply_batch(definition, actor_id, base, live, calls, runtime, dedup_window, table)
    finally:
        _end_a_child_forked_by_the_class(
            forks, actor_id, "calls", "the calls are the parent's, which applies them"
        )


def _end_a_child_forked_by_the_class(forks: int, actor_id: str, what: str, whose: str) -> None:
    """In a child forked by the actor's class's code that runs for its calls outside their
    bodies (``__setstate__`` rebuilding the state, ``__getstate__`` and the pickling of the
    state or a result after), end it at once, as one the body forked (``_end_a_forked_child``):
    it went on and committed the calls a second time, then returned to the caller."""
    if forks_now() == forks:
        return
    end_a_forked_child(
        forks,
        f"the class of actor {actor_id!r}, running for its {what} (__getstate__, __setstate__ "
        "or the pickling of its state or a result),",
        f"{whose}; this child committed nothing and",
    )


def _apply_batch(
    definition: ActorDefinition,
    actor_id: str,
    base: StepRecord,
    live: Any,
    calls: list[PendingCall],
    runtime: CallRuntime,
    dedup_window: tuple[int, float],
    table: StepDedup | None,
) -> BatchResult:
    """(``apply_batch``'s work.)"""
    # The class decides the encoding: a stored "pickle" on a json actor is refused before decoding.
    serializer = expect_serializer(
        base.serializer, definition.serializer, f"actor {actor_id!r} step {base.step}"
    )
    good = base.state  # the state after the last call that succeeded
    instance = live
    if table is None:
        table = StepDedup(None, base, serializer)
    outcomes: list[Outcome] = []
    applied: list[tuple[PendingCall, Outcome]] = []
    now = time.time()
    timers = TimerTable(base.extra, serializer, definition.writer_names, step=base.step + 1)
    born = born_of(base.extra)
    for call in calls:
        if call.for_class is not None and not made_for(call.for_class, definition.name):
            # (before its key: the table is the new actor's, and records nothing of it)
            was = call.for_class if ":" in call.for_class else ""
            refused = ActorClassChangedError(actor_id, call.method, was, definition.name)
            outcomes.append(Outcome(False, refused))
            continue
        if call.for_class is not None and call.method not in MARKERS:
            info = definition.methods.get(call.method)
            refused_step = None if info is None else _at_step_of_a_stand_in(info, call)
            if refused_step is not None:
                outcomes.append(Outcome(False, refused_step))
                continue
            if info is None or info.readonly:  # (a stand-in's call: see _no_writer_of_the_class)
                outcomes.append(
                    _no_writer_of_the_class(definition, actor_id, call, good, serializer, runtime)
                )
                continue
        key = call.idempotency_key
        if key is not None:
            if not table.load_without_io():
                raise RuntimeError("the idempotency table needs I/O to load: prepare() it before apply_batch")
            recorded = table.get(key, window=dedup_window, now=now)
            if recorded is not None:
                outcomes.append(delivered(recorded))  # each caller its own copy
                continue
        edits = timers.edits(now)
        body, fired = call, None
        if call.method in MARKERS:
            done, body, fired = _timer_marker(call, timers, edits, now)
            if done is not None:  # scheduled or cancelled from outside, or a timer already gone
                outcomes.append(done)
                if done.ok and edits.ops:
                    timers.apply(edits)
                    applied.append((call, done))
                    if key is not None:  # scheduling retried with the same key: one timer
                        table.record(key, done, now)
                continue
        consumed = len(edits.ops)
        kept: Outcome | None = None  # what the table records of a keyed call's result
        for attempt in range(call.options.max_retries + 1):
            # A context per run of the body: a run's sub-task positions start at 0 (subtask_checkpoints.py
            # tells runs apart by it), so a retry finds the children an earlier run finished.
            context = CallContext(actor_id, body.call_id, body.method, False, runtime, edits, born)
            if instance is None:
                instance = restore_instance(definition.cls, loads_state(good, serializer))
            del edits.ops[consumed:]  # a retried or raising body leaves no timer behind
            if call.options.name is not None:
                step_status("RUNNING", actor_id, call)
            returned = False  # (a body that returned is not run again: it raised nothing)
            try:
                value = invoke(instance, body, context)  # (a child it forked ends there)
                returned = True
                where = f"{body.method}() of actor {actor_id!r}"
                frozen = freeze(value, where=where)
                state, instance = dumps_instance_state(instance, serializer, definition.restores, actor_id)
                # The caller's copy, read back now: a result that cannot be fails this call alone.
                result = thaw(frozen, where=where)
                if isinstance(call.future, ActorFuture):
                    call.future.copies_from(result, frozen)  # (its later reads: no pickle more)
                if key is not None:  # the table's own copy, read back from its encoding
                    kept = recorded_outcome(Outcome(True, value), serializer)
            except BaseException as exc:
                # Drop the call's partial mutations: restore the snapshot taken before it.
                instance = None
                del edits.ops[consumed:]
                outcome = Outcome(False, exc)
                step_status("FAILED", actor_id, call)
                # Only a raising body is run again (max_retries): one whose result or state
                # could not be kept returns the same again, and did what it did once more.
                if not returned and isinstance(exc, Exception) and attempt < call.options.max_retries:
                    continue
                break
            good = state
            outcome = Outcome(True, result)
            if call.options.name is not None:
                step_status("SUCCESSFUL", actor_id, call)
            break
        recordable = outcome.ok or is_outcome(outcome.value)
        if fired is not None:
            # A fired timer is consumed even when its method raised (recorded, not retried forever).
            if recordable:
                timers.apply(edits)
                applied.append((body, outcome))
                outcomes.append(_fire_report(outcome))
            else:  # excluded like any call (SystemExit, a StorageError): the timer stays, so does its entry
                error = safe_repr(outcome.value)[:200]
                report = FireReport(fired=False, ok=False, error=error, pending_due_ms=fired.due_ms)
                outcomes.append(Outcome(True, report))
            continue
        outcomes.append(outcome)
        # A raising call changes nothing, unless its key must remember the exception. (A resumed
        # call's key records only a success: one that failed again stays for the next resume.)
        kept_by_key = key is not None and recordable and (outcome.ok or not is_resume_key(key))
        if outcome.ok or kept_by_key:
            applied.append((call, outcome))
            if outcome.ok:
                timers.apply(edits)
        if kept_by_key and key is not None:
            if not outcome.ok:  # the caller gets the original; the table what it can hold of it
                kept = Outcome(False, recorded_exception(outcome.value, serializer))
            assert kept is not None
            table.record(key, kept, now)
    if not applied:
        return BatchResult(outcomes)
    dedup = table.fields(serializer, dedup_window, now, base.step + 1)
    records = [
        CallRecord(
            method=call.method,
            call_id=call.call_id,
            ok=outcome.ok,
            time=now,
            args=_utf8(_summarize_args(call)),
            result=_utf8(
                _summarize(outcome.value) if outcome.ok else f"raised {safe_repr(outcome.value)}"[:120]
            ),
            key=call.idempotency_key,
            name=call.options.name,
            metadata=call.options.metadata,
        )
        for call, outcome in applied
    ]
    if instance is None:
        instance = restore_instance(definition.cls, loads_state(good, serializer))
    return BatchResult(outcomes, instance, good, dedup, records, timers.extra(base.extra))


def _at_step_of_a_stand_in(info: MethodInfo, call: PendingCall) -> ValueError | None:
    """The error of a call that passes ``at_step`` to ``info``, a method that a handle of its
    class gives ``run(at_step=N)`` as an option: a call made through a method of a class not
    defined where it was made (``stand_ins._stand_in``), which could not tell. As a handle of the
    class: a writer's is refused so; a read of a past step, which the call (made as a writer's)
    cannot be, is refused saying how to make it. None for any other call (cheaply: at_step
    named in its arguments' pickle, if pickled). (A stand-in given ``at_step`` looks its
    method up before the call is made, ``ActorMethod._as_its_class``: such a call comes from a
    process of an earlier release, posted.)"""
    frozen = call.frozen
    if frozen is not None and frozen.data is not None and b"at_step" not in frozen.data:
        return None
    kwargs = call.kwargs if frozen is None else frozen.value[1] if frozen.data is None else None
    if kwargs is None:
        kwargs = call.arguments()[1]
    if "at_step" not in kwargs or not info.at_step_is_an_option():
        return None
    at_step = kwargs["at_step"]
    try:
        check_at_step(info, at_step)
    except ValueError as exc:
        return exc
    return ValueError(
        f"{info.name}() was called with at_step={at_step} through a handle unpickled where its "
        f"class was not defined: that call could not read a past step. Read it with a handle "
        f"made where the class is defined ({info.name}.run(at_step={at_step})), or read the "
        f"state itself with handle.state_at({at_step})"
    )


def _no_writer_of_the_class(
    definition: ActorDefinition,
    actor_id: str,
    call: PendingCall,
    good: bytes,
    serializer: str,
    runtime: CallRuntime,
) -> Outcome:
    """The outcome of a call that names no writer method of the actor's class: one made through
    a method of a class not defined where it was made (``stand_ins._stand_in``, a writer taking any
    arguments there). Held to what a handle of the class allows: a name that is no method of it
    fails as there (``AttributeError``); a read-only method runs as a read, on a private copy
    of the state ``good``. Either way nothing of it is committed."""
    info = definition.methods.get(call.method)
    if info is None:
        methods = ", ".join(sorted(definition.methods)) or "none"
        error = AttributeError(
            f"{definition.cls.__qualname__} (actor {actor_id!r}) has no method {call.method!r} "
            f"a handle can call; its methods: {methods}"
        )
        return Outcome(False, error)
    try:
        instance = restore_instance(definition.cls, loads_state(good, serializer))
        context = CallContext(actor_id, call.call_id, call.method, True, runtime)
        return Outcome(True, _read_result(invoke(instance, call, context), call))
    except BaseException as exc:
        return Outcome(False, exc)


def _timer_marker(
    call: PendingCall, timers: TimerTable, edits: TimerEdits, now: float
) -> tuple[Outcome | None, PendingCall, Timer | None]:
    """An internal timer call: its outcome now (schedule, cancel, a timer gone), or the call
    a due timer makes (its consumption already in ``edits``) and that timer."""
    args, kwargs = call.arguments()
    try:
        if call.method == SCHEDULE:
            return Outcome(True, edits.schedule(*args, **kwargs)), call, None
        if call.method != FIRE:
            return Outcome(True, edits.cancel(*args)), call, None
    except Exception as exc:
        return Outcome(False, exc), call, None
    timer = timers.due(args[0], now)
    if timer is None:
        pending = timers.pending(args[0])
        return (
            Outcome(
                True, FireReport(fired=False, pending_due_ms=None if pending is None else pending.due_ms)
            ),
            call,
            None,
        )
    if timers.writers is not None and timer.method not in timers.writers:
        # A later version of the class renamed or removed the method: firing would consume the
        # timer as raising AttributeError (lost with a log line). It stays, as an event without
        # a handler does; the runner says what to do.
        report = FireReport(fired=False, ok=False, pending_due_ms=timer.due_ms, missing_method=timer.method)
        return Outcome(True, report), call, None
    timers.consume(timer, edits, now)
    targs, tkwargs = timer.arguments(timers.serializer)
    body = replace(
        call,
        method=timer.method,
        args=targs,
        kwargs=tkwargs,
        frozen=None,
        idempotency_key=timer_dedup_key(timer.key, timer.due),
        # One id for every firing of this occurrence (runner retries, a runner that died):
        # its sub-tasks' checkpoints (tasks/<call_id>/) are found again, as a keyed call's are.
        call_id=uuid.uuid5(
            uuid.NAMESPACE_URL, f"{timer_dedup_key(timer.key, timer.due)}\x00{timer.created!r}"
        ).hex,
        options=replace(call.options, name=call.options.name or f"timer {timer.key}"),
    )
    return None, body, timer


def _fire_report(outcome: Outcome) -> Outcome:
    if outcome.ok:
        return Outcome(True, FireReport(fired=True))
    return Outcome(True, FireReport(fired=True, ok=False, error=safe_repr(outcome.value)[:200]))


#: scalars whose ``repr`` the summary keeps as it is when it fits (reprlib's own result, sooner)
_PLAIN_REPR = frozenset({int, float, bool, type(None)})


def _summarize(value: Any) -> str:
    """``_summary.repr(value)``; the common short scalars without reprlib's dispatch."""
    kind = type(value)
    if kind in _PLAIN_REPR:
        if kind is int and value.bit_length() > _LONGEST_INT_WITHOUT_A_LOOK:
            return _summary.repr(value)  # (too long to keep, maybe too long for ``str()``)
        text = repr(value)
        if len(text) <= _summary.maxlong and len(text) <= _summary.maxother:
            return text
    elif kind is str and len(value) <= _summary.maxstring:
        text = repr(value)
        if len(text) <= _summary.maxstring:
            return text
    return _summary.repr(value)


def _utf8(text: str) -> str:
    """``text`` as a step's UTF-8 JSON meta can hold it: a lone surrogate (a custom ``__repr__``
    showing a name decoded with ``surrogateescape``) escaped, not failing the whole commit."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _summarize_args(call: PendingCall) -> str:
    frozen = call.frozen
    if frozen is not None and frozen.data is None and frozen.value == NO_ARGUMENTS:
        return ""
    try:
        args, kwargs = call.arguments()
    except Exception as exc:  # the call failed with it already; its history line must not fail
        return f"<arguments not readable: {safe_repr(exc)}>"[:200]
    if call.method == SCHEDULE:
        return _schedule_summary(args, kwargs)[:200]
    parts = [_summarize(a) for a in args]
    parts += [f"{k}={_summarize(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)[:200]


def _schedule_summary(args: tuple[Any, ...], spec: dict[str, Any]) -> str:
    """A SCHEDULE call's summary, ``'bump', args=(5,), kwargs={'by': 2}, at=..., key=...,
    every=...`` (``timers.describe_call`` reads it): the scheduled call's own arguments each
    summarised as a call's are (not the tuple and dict as one value, which reprlib cuts at 6
    elements, 4 keys and a level less), so that history shows them alike."""
    parts = [_summarize(a) for a in args]
    for name, value in spec.items():
        if name == "args" and isinstance(value, tuple):
            inner = [_summarize(a) for a in value]
            text = f"({inner[0]},)" if len(inner) == 1 else f"({', '.join(inner)})"
        elif name == "kwargs" and isinstance(value, dict):
            text = "{" + ", ".join(f"{k!r}: {_summarize(v)}" for k, v in value.items()) + "}"
        else:
            text = _summarize(value)
        parts.append(f"{name}={text}")
    return ", ".join(parts)


def run_readonly(
    definition: ActorDefinition, actor_id: str, record: StepRecord, call: PendingCall, runtime: CallRuntime
) -> Any:
    """Run a read-only method on a private copy of ``record``'s state; mutations are discarded.

    The instance is built for this call alone and dropped after it, but what the method
    returns need not be its own (a class attribute, a module's object, shared with every
    later call in the process): the result is copied (``_read_result``) as a writer's is.
    """
    serializer = expect_serializer(
        record.serializer, definition.serializer, f"actor {actor_id!r} step {record.step}"
    )
    forks = forks_now()
    try:
        instance = restore_instance(definition.cls, loads_state(record.state, serializer))
    finally:
        whose = "the read-only call is the parent's, which answers it"
        _end_a_child_forked_by_the_class(forks, actor_id, "read", whose)
    step_status("RUNNING", actor_id, call)
    try:
        result = invoke(instance, call, CallContext(actor_id, call.call_id, call.method, True, runtime))
    except BaseException:
        step_status("FAILED", actor_id, call)
        raise
    step_status("SUCCESSFUL", actor_id, call)
    return _read_result(result, call)


def _read_result(result: Any, call: PendingCall) -> Any:
    """A read-only call's ``result`` by value: a copy read back from its pickle, which the
    caller's future holds (``ActorFuture.copies_from``: each read of it unpickles its own).
    A result that cannot be copied or read back is handed over as it is (a read-only method
    may return what does not pickle: it commits nothing)."""
    try:
        frozen = freeze(result)
        copy = thaw(frozen)
    except TypeError:
        return result
    if isinstance(call.future, ActorFuture):
        call.future.copies_from(copy, frozen, read_only=True)
    return copy


def summarize(value: Any) -> str:
    return _summary.repr(value)
