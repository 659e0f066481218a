"""Running one method body as a call of an actor, on this thread: the method looked up on the
instance, its arguments copied, ``current_call()`` set and the actor counted as applying
(:func:`~vactor_cloud.batch.applying`) while it runs; an async method run to completion
(on a helper thread when this thread already runs an event loop), a sub-workflow it returns
run too; a nested call's doubt it lets through translated (``NestedCallPendingError``); a
child the body forked ended at once.

:func:`invoke` runs a body; :func:`step_status` logs Ray's step status line. Both serve
:mod:`vactor_cloud.batch_apply`, which applies batches of calls (and runs read-only calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vactor_cloud._sync import interruptible_wait
from vactor_cloud.batch import NO_ARGUMENTS, CallContext, PendingCall, count_applying, this_thread
from vactor_cloud.dedup import (
    Outcome,
)
from vactor_cloud.definition import with_fresh_defaults
from vactor_cloud.errors import CommitOutcomeUnknownError, NestedCallPendingError
from vactor_cloud.fork_guard import end_a_forked_child, forks_now

__all__ = ["invoke", "step_status"]

logger = logging.getLogger("vactor_cloud")


def step_status(status: str, actor_id: str, call: PendingCall) -> None:
    """Ray's step log line, for a call given ``options(name=...)``: ``Step status [RUNNING]\t[id@name]``.

    Logged each time the body runs (a retry, or a batch applied again after a lost commit race,
    logs again); ``SUCCESSFUL`` means the body returned, the commit follows.
    """
    name = call.options.name
    if name is not None and logger.isEnabledFor(logging.INFO):
        logger.info("Step status [%s]\t[%s@%s]", status, actor_id, name)


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


def invoke(instance: Any, call: PendingCall, context: CallContext) -> Any:
    forks = forks_now()
    previous = getattr(this_thread, "call", None)
    this_thread.call = context
    if not context.readonly:
        count_applying(context, 1)
    try:
        frozen = call.frozen
        method = _method_of(instance, call.method)
        if frozen is not None and frozen.data is None and frozen.value == NO_ARGUMENTS:
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
        this_thread.call = previous
        if not context.readonly:
            count_applying(context, -1)


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
        this_thread.call = context
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


_SCALARS = frozenset({int, float, bool, str, bytes, type(None)})
