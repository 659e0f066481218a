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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import itertools
import logging
import reprlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from vactor_cloud._sync import interruptible_wait
from vactor_cloud.byvalue import Frozen, freeze, freeze_arguments, thaw, thaw_arguments
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
from vactor_cloud.definition import ActorDefinition, MethodInfo, check_at_step, with_fresh_defaults
from vactor_cloud.errors import ActorClassChangedError, CommitOutcomeUnknownError, NestedCallPendingError
from vactor_cloud.fork_guard import end_a_forked_child, forks_now
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.future import ActorFuture, install_method_probe
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

__all__ = [
    "BatchResult",
    "CallContext",
    "CallOptions",
    "PendingCall",
    "apply_batch",
    "applying",
    "current_call",
    "deliver_all",
    "fail_calls",
    "run_readonly",
    "summarize",
    "swap_current_call",
]


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


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call options (``ActorMethod.options``); the defaults cost nothing."""

    idempotency_key: str | None = None
    at_step: int | None = None
    #: shown in history (Ray's step ``name`` and ``metadata``)
    name: str | None = None
    metadata: dict[str, Any] | None = None
    #: a raising body is run again up to this many times within the same attempt
    max_retries: int = 0
    #: deliver ``(result, None)`` or ``(None, exception)`` instead of raising (Ray's option)
    catch_exceptions: bool = False


_NO_OPTIONS = CallOptions()


@dataclass(eq=False)
class PendingCall:
    """A call made on an actor, with the future its caller waits on."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    readonly: bool
    future: Future[Any]
    call_id: str
    idempotency_key: str | None = None
    at_step: int | None = None
    submitted: float = field(default_factory=time.monotonic)
    #: the arguments as serialized at the call site (``args``/``kwargs`` are then empty)
    frozen: Frozen | None = None
    options: CallOptions = _NO_OPTIONS
    #: ``(key, sender, seq)`` of the post it was written in: any process's fold may run it, so
    #: a run elsewhere may have left what a successful run must undo (a failed sub-workflow's
    #: record for resume), and resume must not run it while that post may still be applied
    posted: tuple[str, str, int] | None = None
    #: the class whose method the caller named (``MethodInfo.owner``; None: any, as for calls
    #: internal to vactor_cloud): it runs on no actor of another class (``ActorClassChangedError``)
    for_class: str | None = None
    _claims: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def claim(self) -> bool:
        """True for exactly one caller (``next`` on a count is atomic): who runs this call.

        False also when the caller's future was cancelled before it started.
        """
        return next(self._claims) == 0 and self.future.set_running_or_notify_cancel()

    @classmethod
    def by_value(
        cls,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        readonly: bool,
        future: Future[Any],
        call_id: str,
        options: CallOptions = _NO_OPTIONS,
        for_class: str | None = None,
    ) -> PendingCall:
        """A call whose arguments are copied now: ``TypeError`` here if they cannot be."""
        return cls(
            method,
            (),
            {},
            readonly,
            future,
            call_id,
            idempotency_key=options.idempotency_key,
            at_step=options.at_step,
            frozen=freeze_arguments(args, kwargs),
            options=options,
            for_class=for_class,
        )

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A fresh copy of the arguments for one run of the body."""
        if self.frozen is not None:
            return thaw_arguments(self.frozen)
        return self.args, dict(self.kwargs)

    def deliver(self, outcome: Outcome) -> None:
        """Complete the caller's future with ``outcome`` (shaped by ``catch_exceptions``, which
        hands back an ``Exception``, not an interrupt: Ctrl-C in the body still stops the caller)."""
        if self.options.catch_exceptions and (outcome.ok or isinstance(outcome.value, Exception)):
            if not outcome.ok and isinstance(self.future, ActorFuture):
                self.future._caught = True  # (before it settles: a done callback reads it)
            outcome = Outcome(True, (outcome.value, None) if outcome.ok else (None, outcome.value))
        outcome.settle(self.future)
        if isinstance(self.future, ActorFuture):
            self.future._help = None  # it refers to the actor's core: let an evicted one go


def fail_calls(calls: list[PendingCall], exc: BaseException) -> None:
    """Complete every call of ``calls`` with the exception ``exc``."""
    deliver_all([(call, Outcome(False, exc)) for call in calls])


def deliver_all(settled: Iterable[tuple[PendingCall, Outcome]]) -> None:
    """Deliver each call its outcome. A done-callback of a caller's future that raises a
    ``BaseException`` (futures catch ``Exception`` only) is raised again once every call has
    its own outcome, never instead of settling the calls after it."""
    raised: BaseException | None = None
    for call, outcome in settled:
        try:
            call.deliver(outcome)
        except BaseException as exc:
            raised = raised or exc
    if raised is not None:
        raise raised


@dataclass(frozen=True, slots=True, weakref_slot=True)
class CallContext:
    """What code running inside an actor method can learn about the call (``current_call()``)."""

    actor_id: str
    call_id: str
    method: str
    readonly: bool
    #: the runtime the call runs in (its ``store`` and ``settings``)
    runtime: CallRuntime
    #: this call's timer changes (writer calls only), committed with it or not at all
    timers: TimerEdits | None = None
    #: the incarnation of the actor it runs on (``vactor_cloud.incarnation``; 0: the id's first)
    born: int = 0

    # -- durable timers (vactor_cloud.timers) ------------------------------------------------
    def schedule(
        self,
        method: str | Callable[..., Any],
        *,
        after: float | None = None,
        at: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        key: str | None = None,
        every: float | None = None,
    ) -> str:
        """Call ``method(*args, **kwargs)`` on this actor ``after`` seconds from now (or ``at``
        an epoch time), then every ``every`` seconds if given; returns the timer's key.

        Atomic with this call: the timer exists if and only if this call commits.
        Scheduling an existing ``key`` replaces that timer. Fired exactly once
        by whatever timer runner runs next (``vactor timers run|tick``,
        ``vc.fire_due_timers()``), never before it is due. See docs/timers.md.
        """
        edits = self._edits()
        name = method if isinstance(method, str) else getattr(method, "__name__", repr(method))
        return edits.schedule(name, args=args, kwargs=kwargs, after=after, at=at, key=key, every=every)

    def cancel_timer(self, key: str) -> bool:
        """Cancel this actor's pending timer ``key`` (with this call's commit); False if none."""
        return self._edits().cancel(key)

    def pending_timers(self) -> dict[str, Timer]:
        """This actor's pending timers as this call sees them (its own changes included)."""
        return self._edits().view()

    def _edits(self) -> TimerEdits:
        if self.timers is None:
            raise RuntimeError(f"{self.method}() is read-only: only writer methods can schedule timers")
        return self.timers


_local = threading.local()


def current_call() -> CallContext | None:
    """The actor call running in this thread, or ``None`` outside actor methods."""
    return getattr(_local, "call", None)


# ``await`` on a call's future inside an async actor method helps like a blocking wait there.
install_method_probe(lambda: current_call() is not None)


def swap_current_call(context: CallContext | None) -> CallContext | None:
    """Make ``context`` the call running in this thread; the one it replaces is returned (for
    ``reentrancy.run_detached``, which runs work on a thread as a fresh thread would)."""
    previous: CallContext | None = getattr(_local, "call", None)
    _local.call = context
    return previous


#: (actor id, incarnation) -> writer calls of that actor running in this process now (see
#: ``applying``); per incarnation, so that a method of an actor deleted since does not make
#: the next actor under the id look RUNNING
_applying: dict[tuple[str, int], int] = {}
_applying_lock = threading.Lock()
# (A forked child runs none of the parent's methods: its threads are not there.)
renew_in_a_forked_child(globals(), "_applying_lock", _applying)


def _end_a_forked_child(forks: int, context: CallContext) -> None:
    """In a child that the body of a call forked (``os.fork()`` in a method, writer or read-only,
    then returned or raised in the child too), end the child at once (``fork_guard``): the call
    is the parent's, which applies and commits it (or answers the read). Let the child commit
    the batch as well and the call was applied twice, the child's commit racing the parent's
    (the loser ran the body again on the winner's step)."""
    if forks_now() == forks:
        return  # (the common case: nothing formatted)
    if context.readonly:
        whose = "the read-only call is the parent's, which answers it; this child"
    else:
        whose = "the call is the parent's, which applies it; this child committed nothing and"
    end_a_forked_child(forks, f"{context.method}() of actor {context.actor_id!r}", whose)


def applying(actor_id: str) -> frozenset[int]:
    """The incarnations (``vactor_cloud.incarnation``) of ``actor_id`` a writer method of
    which is running in this process now (Ray's RUNNING); empty: none."""
    with _applying_lock:
        return frozenset(born for (actor, born) in _applying if actor == actor_id)


def _count_applying(context: CallContext, delta: int) -> None:
    key = (context.actor_id, context.born)
    with _applying_lock:
        count = _applying.get(key, 0) + delta
        if count > 0:
            _applying[key] = count
        else:
            _applying.pop(key, None)


logger = logging.getLogger("vactor_cloud")


def _step_status(status: str, actor_id: str, call: PendingCall) -> None:
    """Ray's step log line, for a call given ``options(name=...)``: ``Step status [RUNNING]\t[id@name]``.

    Logged each time the body runs (a retry, or a batch applied again after a lost commit race,
    logs again); ``SUCCESSFUL`` means the body returned, the commit follows.
    """
    name = call.options.name
    if name is not None and logger.isEnabledFor(logging.INFO):
        logger.info("Step status [%s]\t[%s@%s]", status, actor_id, name)


def _method_of(instance: Any, name: str) -> Any:
    """``instance.name``, the method a handle calls; ``TypeError`` if an instance attribute of that
    name hides it (``self.items = []`` beside ``def items(self)``), which said only ``'list'
    object is not callable``."""
    attributes = getattr(instance, "__dict__", None)
    if attributes is not None and name in attributes:
        raise TypeError(
            f"{type(instance).__qualname__}.{name}() is hidden by the instance attribute {name!r} "
            f"(a {type(attributes[name]).__qualname__}, set by self.{name} = ...): a handle calls the "
            "method, which the instance no longer reaches; rename the attribute or the method"
        )
    return getattr(instance, name)


def _invoke(instance: Any, call: PendingCall, context: CallContext) -> Any:
    forks = forks_now()
    previous = getattr(_local, "call", None)
    _local.call = context
    if not context.readonly:
        _count_applying(context, 1)
    try:
        frozen = call.frozen
        method = _method_of(instance, call.method)
        if frozen is not None and frozen.data is None and frozen.value == _NO_ARGUMENTS:
            args, kwargs = with_fresh_defaults(method, (), {})
        else:
            args, kwargs = with_fresh_defaults(method, *call.arguments())
        result = method(*args, **kwargs)
        if type(result) in _SCALARS:
            return result  # neither a coroutine nor a sub-workflow
        if inspect.iscoroutine(result):
            result = _run_coroutine(result, context)
        _end_a_forked_child(forks, context)  # (before a sub-workflow it returned runs in the child)
        # A result that is a sub-workflow (workflow_steps.StepNode) is run now; its result is the call's.
        resolve = getattr(type(result), "__vactor_continue__", None)
        if resolve is not None:
            result = resolve(result, instance, call, context)
        return result
    except AttributeError as exc:
        _note_self_call(exc, instance)
        raise
    except _DOUBT as exc:
        raise _nested_in_doubt([exc], context) from exc
    except ExceptionGroup as group:  # (a TaskGroup of nested calls): a doubt in it is the call's
        doubts = _doubts(group)
        if not doubts:
            raise
        raise _nested_in_doubt(doubts, context) from group
    finally:
        _end_a_forked_child(forks, context)  # (first: a forked child runs nothing more)
        _local.call = previous
        if not context.readonly:
            _count_applying(context, -1)


#: a nested call's doubt, that a body lets through (see ``_nested_in_doubt``)
_DOUBT = (CommitOutcomeUnknownError, NestedCallPendingError)


def _doubts(group: BaseExceptionGroup[Any]) -> list[CommitOutcomeUnknownError | NestedCallPendingError]:
    """Every nested call's doubt in ``group`` (in groups within it too), in order."""
    found: list[CommitOutcomeUnknownError | NestedCallPendingError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_doubts(exc))
        elif isinstance(exc, _DOUBT):
            found.append(exc)
    return found


def _nested_in_doubt(
    doubts: list[CommitOutcomeUnknownError | NestedCallPendingError], context: CallContext
) -> NestedCallPendingError:
    """What the caller of a method that let nested calls' doubts through hears: its own call,
    not applied, and every call in doubt (as it was, the inner error named the inner actor and
    call id, and told the caller its own call might still apply). Through several actors
    (A calls B, which calls C), the call in doubt stays C's."""
    nested: list[tuple[str, list[str], str]] = []
    for exc in doubts:
        if isinstance(exc, NestedCallPendingError):
            nested.extend(exc.nested)
        else:
            nested.append((exc.actor_id, list(getattr(exc, "call_ids", [])), str(exc)))
    (first_actor, first_ids, first_detail), *more = nested
    return NestedCallPendingError(
        context.actor_id, context.call_id, first_actor, first_ids, first_detail, more
    )


#: what a handle's method has and a method of the instance (``self.m``) has not
_HANDLE_ONLY = frozenset({"step", "run", "run_async", "options", "remote"})


def _note_self_call(exc: AttributeError, instance: Any) -> None:
    """``self.m.step()`` / ``self.m.run()`` inside a method: say what to write instead.

    ``self.m`` is the method itself, not a handle's method: the bare AttributeError
    (``'function' object has no attribute 'step'``) did not say so."""
    target = getattr(exc, "obj", None)
    name = getattr(target, "__name__", None)
    if exc.name not in _HANDLE_ONLY or not callable(target) or not isinstance(name, str):
        return
    if getattr(type(instance), name, None) is None:
        return
    if exc.name == "step":
        note = (
            f"self.{name}.step(...) builds a sub-workflow step: decorate the class with "
            "vactor_cloud.workflow.virtual_actor for that (docs/subworkflows.md); to apply the "
            f"method now, in this call's step, call self.{name}(...)"
        )
    else:
        note = (
            f"inside a method of the actor, call self.{name}(...): it applies in the same step as "
            f"this call (.{exc.name} is a handle's, for callers outside the actor)"
        )
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


def _run_coroutine(coro: Any, context: CallContext) -> Any:
    """Run an async method's coroutine to completion, its result the call's.

    On this thread, unless it already runs an event loop (the call was made from inside
    ``async def``): ``asyncio.run`` cannot nest, so then on a helper thread, with this
    thread's context variables and ``current_call()``, while this one waits.
    """
    if asyncio._get_running_loop() is None:
        return asyncio.run(_on_a_guarded_executor(coro, context))
    outcome: list[Outcome] = []
    copied = contextvars.copy_context()
    #: the helper's loop and the task running the method, once it runs
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []

    async def method() -> Any:
        task = asyncio.current_task()
        assert task is not None
        running.append((asyncio.get_running_loop(), task))
        return await _on_a_guarded_executor(coro, context)

    #: set as the helper ends (waited for rather than joined: a ``join`` interrupted by a
    #: signal handler's exception takes a running thread for stopped, on CPython 3.11)
    finished = threading.Event()

    def run() -> None:
        _local.call = context
        try:
            outcome.append(Outcome(True, copied.run(asyncio.run, method())))
        except BaseException as exc:
            outcome.append(Outcome(False, exc))
        finally:
            finished.set()

    helper = threading.Thread(target=run, name=f"vactor-async {context.method}", daemon=True)
    try:
        helper.start()
        interruptible_wait(finished.wait, None, forever=None)  # (in slices on the main thread)
    except BaseException:
        # Interrupted (Ctrl-C) while the method runs on the helper: the call fails with the
        # interrupt, so the method stops too (as asyncio.run cancels its task at Ctrl-C),
        # rather than run on, unseen, after its caller was told. Waited for, up to a bound:
        # a coroutine that ignores its cancellation keeps its thread (logged).
        _stop_helper(finished, running, context)
        raise
    helper.join()
    return outcome[0].unwrap()


async def _on_a_guarded_executor(coro: Any, context: CallContext) -> Any:
    """Await an async method's coroutine, on a loop (its own, made by ``asyncio.run``) whose
    default executor ends a child forked in a function it runs in a thread, as a child that
    came back inside the method is ended (``guarded_executor.GuardedExecutor``). A child forked by
    the coroutine itself ends as it returns: on a helper thread (``_run_coroutine``), the
    child's only one, it went on to end that thread, the child with it (status 0, unsaid)."""
    unhook = _guard_the_default_executor(asyncio.get_running_loop(), context)
    forks = forks_now()
    try:
        return await coro
    finally:
        _end_a_forked_child(forks, context)
        unhook()  # (if unused: the hooks and the loop would hold each other until a collection)


def _guard_the_default_executor(loop: asyncio.AbstractEventLoop, context: CallContext) -> Callable[[], None]:
    """Make ``loop``'s default executor a ``GuardedExecutor`` when the method first uses it
    (``run_in_executor(None, ...)``, which ``asyncio.to_thread`` calls), unless the method set
    one of its own first. Set up front, every async call paid for it: ``asyncio.run`` shuts a
    default executor down on a thread of its own, started even for one never used (some
    0.4 ms a call). ``loop`` is the call's own (``asyncio.run``'s): its methods are hooked on
    the instance, and unhooked at the first use, or by the function returned."""
    run_in_executor = loop.run_in_executor
    set_default_executor = loop.set_default_executor
    hooked = [True]  # (the loop's thread alone reads and clears it)

    def unhook() -> None:
        if hooked:
            hooked.clear()
            delattr(loop, "run_in_executor")  # (back to the class's methods)
            delattr(loop, "set_default_executor")

    def first_run_in_executor(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        if executor is None:
            # (imported only now, when asyncio would import ThreadPoolExecutor: see why in
            # ``guarded_executor``'s docstring)
            from vactor_cloud.guarded_executor import GuardedExecutor  # noqa: PLC0415

            unhook()
            ending = functools.partial(_end_a_forked_child, context=context)
            set_default_executor(GuardedExecutor(ending, f"vactor-async {context.method}"))
        return run_in_executor(executor, func, *args)

    def set_the_methods_own(executor: Any) -> None:
        unhook()
        set_default_executor(executor)

    setattr(loop, "run_in_executor", first_run_in_executor)  # noqa: B010
    setattr(loop, "set_default_executor", set_the_methods_own)  # noqa: B010
    return unhook


#: how long an interrupted async method's helper thread is waited for once its task is cancelled
_HELPER_STOP_WAIT = 30.0


def _stop_helper(
    finished: threading.Event,
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]],
    context: CallContext,
) -> None:
    """(``_run_coroutine``'s) Cancel the method's task on the helper's loop and wait for it."""
    deadline = time.monotonic() + _HELPER_STOP_WAIT
    while not finished.is_set() and time.monotonic() < deadline:
        if running:
            loop, task = running[0]
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it ended
                loop.call_soon_threadsafe(task.cancel)
        finished.wait(0.05)  # (again: a task not started yet, or one that caught a cancellation)
    if not finished.is_set():
        logging.getLogger("vactor_cloud").warning(
            "%s() of actor %r: an async method interrupted (Ctrl-C) did not stop within %g s of "
            "its cancellation; its thread goes on",
            context.method,
            context.actor_id,
            _HELPER_STOP_WAIT,
        )


#: ``Frozen.value`` of a call without arguments
_NO_ARGUMENTS: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})
_SCALARS = frozenset({int, float, bool, str, bytes, type(None)})


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
                _step_status("RUNNING", actor_id, call)
            returned = False  # (a body that returned is not run again: it raised nothing)
            try:
                value = _invoke(instance, body, context)  # (a child it forked ends there)
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
                _step_status("FAILED", actor_id, call)
                # Only a raising body is run again (max_retries): one whose result or state
                # could not be kept returns the same again, and did what it did once more.
                if not returned and isinstance(exc, Exception) and attempt < call.options.max_retries:
                    continue
                break
            good = state
            outcome = Outcome(True, result)
            if call.options.name is not None:
                _step_status("SUCCESSFUL", actor_id, call)
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
    defined where it was made (``handle._stand_in``), which could not tell. As a handle of the
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
    a method of a class not defined where it was made (``handle._stand_in``, a writer taking any
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
        return Outcome(True, _read_result(_invoke(instance, call, context), call))
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
    if frozen is not None and frozen.data is None and frozen.value == _NO_ARGUMENTS:
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
    _step_status("RUNNING", actor_id, call)
    try:
        result = _invoke(instance, call, CallContext(actor_id, call.call_id, call.method, True, runtime))
    except BaseException:
        _step_status("FAILED", actor_id, call)
        raise
    _step_status("SUCCESSFUL", actor_id, call)
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
