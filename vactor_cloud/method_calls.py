"""How an :class:`~vactor_cloud.handle.ActorMethod` makes its call and hands it over: the
call checked and made (:meth:`MethodCalls._make_call`), then applied on the caller's thread
(:meth:`MethodCalls._run`, for ``run``) or queued (:meth:`MethodCalls._queue`, for
``run_async``): on the actor, behind this process's pending creation of it, or, a read-only
call, on the read pool (:mod:`vactor_cloud.pooled_reads`).

:class:`MethodCalls` is the part of :class:`~vactor_cloud.handle.ActorMethod` (a mixin) that
holds this path; ``run``, ``run_async`` and ``options`` are ActorMethod's own, in
:mod:`vactor_cloud.handle`. The fields it uses are the method's (set by
``ActorMethod.__init__``), declared at the top of the class.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import sys
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from vactor_cloud.batch import CallContext, CallOptions, PendingCall, current_call
from vactor_cloud.commit_notes import started_elsewhere_note
from vactor_cloud.core import ActorCore
from vactor_cloud.creation import Creation
from vactor_cloud.definition import MethodInfo
from vactor_cloud.errors import ReentrantCallError, VirtualActorNotInitializedError
from vactor_cloud.future import ActorFuture, Waker
from vactor_cloud.handle_timers import scheduling_call
from vactor_cloud.history import check_at_step
from vactor_cloud.pooled_reads import _PooledRead, _read_waiting, _ReadRun
from vactor_cloud.read_room import current_read
from vactor_cloud.reentrancy import writers_on_this_thread
from vactor_cloud.runtime import Runtime, get_runtime
from vactor_cloud.stand_ins import _is_stand_in

P = ParamSpec("P")
R = TypeVar("R")

#: frames a call keeps free below the recursion limit for the runtime's own work: a call chain
#: meeting the limit inside the runtime (settling a batch, giving an actor up) left that actor
#: held by nobody for the rest of the process
_FRAMES_KEPT = 100


def _too_deep() -> bool:
    """Whether this thread's stack is within ``_FRAMES_KEPT`` frames of the recursion limit
    (one walk in C: ``sys._getframe(n)`` fails when the stack is shallower than ``n``)."""
    try:
        sys._getframe(sys.getrecursionlimit() - _FRAMES_KEPT)
    except ValueError:
        return False
    return True


def _help_after_creation(
    runtime: Runtime, core: ActorCore, future: concurrent.futures.Future[Any], timeout: float | None
) -> None:
    """A waiter on a call queued behind this process's pending creation of the actor runs that
    creation if no thread has started it (caller runs), then applies the call as any waiter.
    Interrupted (Ctrl-C) meanwhile, the call is withdrawn with its wait, as ``core.help``
    withdraws one queued behind another thread: never applied once the creation commits."""
    try:
        runtime.wait_created(core.actor_id)
    except BaseException:
        future.cancel()
        raise
    core.help(future, timeout)


class MethodCalls(Generic[P, R]):
    """An actor method as the maker of its calls: each checked, made by value, and applied or
    queued."""

    __slots__ = ()

    if TYPE_CHECKING:
        # Of the method (vactor_cloud.handle.ActorMethod, set by its __init__).
        _actor_id: str
        _info: MethodInfo
        _options: CallOptions
        _timer: dict[str, Any] | None

        def _as_its_class(self) -> MethodCalls[P, R]: ...

    def _run(self, runtime: Runtime, core: ActorCore, call: PendingCall, creating: Creation | None) -> R:
        if creating is not None:
            try:
                if self._after_creation(runtime, call, creating):
                    if isinstance(call.future, ActorFuture):
                        call.future._help = functools.partial(
                            _help_after_creation, runtime, core, call.future
                        )
                    return call.future.result()  # type: ignore[no-any-return]
            except BaseException as exc:
                # Interrupted (Ctrl-C) while queued behind this process's pending creation of the
                # actor: withdrawn with it, as a call queued behind another thread is, never
                # applied once the creation commits, behind its caller's back.
                if not call.future.done() and not call.future.cancel():
                    exc.add_note(started_elsewhere_note(self._actor_id))
                raise
        if call.readonly:
            core.read(call)
        else:
            core.call(call)
        return call.future.result()  # type: ignore[no-any-return]

    def _queue(self, call: PendingCall, future: ActorFuture[R]) -> ActorFuture[R]:
        """(``run_async``) Queue ``call``: on the actor, behind its pending creation, or on the
        read pool; ``future``, its future."""
        runtime = get_runtime()
        core = runtime.core(self._actor_id)
        if self._after_creation(runtime, call):
            future._help = functools.partial(_help_after_creation, runtime, core, future)
        elif call.readonly:
            inside = current_read()
            run = _ReadRun(self._actor_id)
            future._help = functools.partial(_read_waiting, core, call, inside, run)
            future._read_only = True
            task = _PooledRead(core, call, inside, run)
            future.add_done_callback(Waker(task.let_go_if_cancelled))
            runtime.spawn(task, on_shutdown=task.refuse, read=True)
        else:
            future._help = functools.partial(core.help, future)
            core.submit(call)
        return future

    def _after_creation(self, runtime: Runtime, call: PendingCall, creation: Creation | None = None) -> bool:
        """While this process creates the actor without waiting: a writer is queued behind the
        creation (and fails with its exception, or is submitted, if it has settled since the
        look), a read-only call fails (Ray's behaviour). False when no such creation is
        pending: the caller goes on as usual. ``creation``: the one the caller found pending.

        A writer also goes behind a creation that has settled but is still listed: it may still
        be handing the calls queued behind it over to the actor, and a call made now, sent to
        the actor at once, went ahead of them (one thread's calls applied out of order); its
        ``defer`` waits for the hand-over. A read goes on as usual then."""
        if creation is None:
            creation = runtime.creation_listed(self._actor_id)
            if creation is None or (creation.settled and call.readonly):
                return False
        if call.readonly:
            if call.claim():
                call.future.set_exception(
                    VirtualActorNotInitializedError(self._actor_id, runtime.store.describe())
                )
            return True

        handing = [False]  # (set as the call is given to the actor: ``core.submit`` answers for it then)

        def submit(error: BaseException | None) -> None:
            # Interrupted (Ctrl-C) before the call reached the actor, as the core was looked up,
            # the call was left with no outcome: its caller waited for good. It is withdrawn,
            # failed with the interrupt (never applied behind its caller's back).
            try:
                if error is None:
                    core = runtime.core(self._actor_id)
                    handing[0] = True
                    core.submit(call)
                elif call.claim():
                    call.future.set_exception(error)
            except BaseException as exc:
                if not handing[0] and call.claim():
                    call.future.set_exception(exc)
                raise

        creation.defer(submit)
        return True

    def _make_call(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: concurrent.futures.Future[Any],
        *,
        waits: bool,
    ) -> PendingCall:
        if _too_deep():
            raise RecursionError(
                f"{self._info.name}() of actor {self._actor_id!r} was called with fewer than "
                f"{_FRAMES_KEPT} frames left below the recursion limit ({sys.getrecursionlimit()}): "
                "actor calls nested that deep (a chain of methods calling other actors, or deep "
                "recursion around a call) would leave the runtime no room to settle them; the call "
                "was not made"
            )
        options = self._options
        if (
            _is_stand_in(self._info)
            and self._timer is None
            and ("at_step" in kwargs or options.at_step is not None)
        ):
            return self._as_its_class()._make_call(args, kwargs, future, waits=waits)
        if "at_step" in kwargs and self._info.at_step_is_an_option():
            at_step = kwargs.pop("at_step")
            check_at_step(self._info, at_step)
            options = replace(options, at_step=at_step)
        self._info.check_arguments(args, kwargs)
        if self._timer is not None:
            running = current_call()
            if running is not None and running.actor_id == self._actor_id and not running.readonly:
                raise ReentrantCallError(
                    f"{running.method}() of actor {self._actor_id!r} scheduled {self._info.name}() of "
                    "the same actor through a handle (a commit on the actor its own method holds: it "
                    "would wait for itself); schedule it with the call instead: "
                    f"vc.current_call().schedule({self._info.name!r}, after=...)"
                )
            return scheduling_call(
                self._info.name,
                args,
                kwargs,
                idempotency_key=options.idempotency_key,
                for_class=self._info.owner or None,
                **self._timer,
            )
        running = current_call()
        if running is not None and options.at_step is None:  # (a committed step waits for no writer)
            self._refuse_reentry(running, waits)
        key = options.idempotency_key
        call_id = (
            uuid.uuid5(uuid.NAMESPACE_URL, f"{self._actor_id}/{key}").hex if key else os.urandom(16).hex()
        )
        return PendingCall.by_value(
            self._info.name,
            args,
            kwargs,
            readonly=self._info.readonly or options.at_step is not None,
            future=future,
            call_id=call_id,
            options=options,
            for_class=self._info.owner or None,
        )

    def _refuse_reentry(self, running: CallContext, waits: bool) -> None:
        """``ReentrantCallError`` if a writer of this actor runs on this thread: the call would
        wait for itself (directly, or through other actors: A -> B -> A). Not asked of a read
        of a given step (``run(at_step=N)``): an immutable committed step, read without the
        actor's queue, which neither waits for a writer nor sees a writer's uncommitted change.

        A call through other actors that is not waited for here (``run_async``) is queued: it
        waits for nothing. Refused, it failed a call that another thread's writer, waiting for
        this thread's actor, happened to apply (its batch-mates run on the waiter's thread).
        Waiting for it later is refused then (``ActorCore.help``)."""
        held = writers_on_this_thread()
        if self._actor_id not in held:
            return
        if running.actor_id == self._actor_id and not running.readonly and self._info.readonly:
            # (Such a read waits for nothing: let through, it answered from the last commit.)
            raise ReentrantCallError(
                f"{running.method}() of actor {self._actor_id!r} called the read-only "
                f"{self._info.name}() of the same actor through a handle: a read through a handle "
                "answers from the actor's last committed step, without the changes "
                f"{running.method}() has made and not yet committed; call self.{self._info.name}() "
                f"directly instead ({self._info.name}.run(at_step=N) reads a committed step N)"
            )
        if running.actor_id == self._actor_id and not running.readonly:
            raise ReentrantCallError(
                f"{running.method}() of actor {self._actor_id!r} called {self._info.name}() of the same "
                "actor: a writer cannot call its own actor through a handle (it would wait for itself); "
                "call the method directly on self instead"
            )
        if not waits:
            return
        chain = held[held.index(self._actor_id) :] + ([running.actor_id] if running.readonly else [])
        cycle = " -> ".join([*chain, self._actor_id])
        if self._info.readonly:  # (a read waits for no writer: what it would miss is the reason)
            raise ReentrantCallError(
                f"{running.method}() of actor {running.actor_id!r} called the read-only "
                f"{self._info.name}() of actor {self._actor_id!r}, whose writer method runs further "
                f"up this thread (a call cycle {cycle}): a read through a handle answers from the "
                "actor's last committed step, without the changes that method has made and not yet "
                f"committed. Pass what is needed as an argument, or read a committed step N with "
                f"{self._info.name}.run(at_step=N)"
            )
        raise ReentrantCallError(
            f"{running.method}() of actor {running.actor_id!r} called {self._info.name}() of actor "
            f"{self._actor_id!r}, whose writer method is waiting for it on this same thread (a call "
            f"cycle {cycle}): it would wait for itself, so nothing was queued. Break the cycle: let "
            f"{running.actor_id!r} return what {self._actor_id!r} needs and apply it in "
            f"{self._actor_id!r}'s own method, or make this call after that method has returned"
        )
