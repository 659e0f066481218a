"""The calls of a batch, as this process holds them, and the call running on each thread.

:class:`PendingCall` is a call made on an actor (its method, its arguments copied by value,
its :class:`CallOptions`, the future its caller waits on); :func:`fail_calls` and
:func:`deliver_all` settle calls. :class:`CallContext` is what a method body learns of its
call (``current_call()``), and :func:`applying` says which actors' writer methods run in this
process now. No I/O here.

A batch is applied by :mod:`vactor_cloud.batch_apply` (``apply_batch``, ``run_readonly``);
one method body runs as a call by :mod:`vactor_cloud.call_bodies`. (A pickled handle method
carries its options as ``vactor_cloud.batch.CallOptions``: that name stays here.)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from vactor_cloud.byvalue import Frozen, freeze_arguments, thaw_arguments
from vactor_cloud.call_runtime import CallRuntime
from vactor_cloud.dedup import (
    Outcome,
)
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.future import ActorFuture, install_method_probe
from vactor_cloud.timers import (
    Timer,
    TimerEdits,
)

__all__ = [
    "NO_ARGUMENTS",
    "CallContext",
    "CallOptions",
    "PendingCall",
    "applying",
    "count_applying",
    "current_call",
    "deliver_all",
    "fail_calls",
    "swap_current_call",
    "this_thread",
]


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


#: the actor call running on this thread (``.call``; see ``current_call``)
this_thread = threading.local()


def current_call() -> CallContext | None:
    """The actor call running in this thread, or ``None`` outside actor methods."""
    return getattr(this_thread, "call", None)


# ``await`` on a call's future inside an async actor method helps like a blocking wait there.
install_method_probe(lambda: current_call() is not None)


def swap_current_call(context: CallContext | None) -> CallContext | None:
    """Make ``context`` the call running in this thread; the one it replaces is returned (for
    ``reentrancy.run_detached``, which runs work on a thread as a fresh thread would)."""
    previous: CallContext | None = getattr(this_thread, "call", None)
    this_thread.call = context
    return previous


#: (actor id, incarnation) -> writer calls of that actor running in this process now (see
#: ``applying``); per incarnation, so that a method of an actor deleted since does not make
#: the next actor under the id look RUNNING
_applying: dict[tuple[str, int], int] = {}
_applying_lock = threading.Lock()
# (A forked child runs none of the parent's methods: its threads are not there.)
renew_in_a_forked_child(globals(), "_applying_lock", _applying)


def applying(actor_id: str) -> frozenset[int]:
    """The incarnations (``vactor_cloud.incarnation``) of ``actor_id`` a writer method of
    which is running in this process now (Ray's RUNNING); empty: none."""
    with _applying_lock:
        return frozenset(born for (actor, born) in _applying if actor == actor_id)


def count_applying(context: CallContext, delta: int) -> None:
    key = (context.actor_id, context.born)
    with _applying_lock:
        count = _applying.get(key, 0) + delta
        if count > 0:
            _applying[key] = count
        else:
            _applying.pop(key, None)


#: ``Frozen.value`` of a call without arguments
NO_ARGUMENTS: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})
