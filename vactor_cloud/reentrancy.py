"""Calls that would wait for themselves: which actors' calls this thread is inside, and the
process's wait-for graph between threads.

A call made inside a writer method of its own actor (a cycle ``a -> b -> a`` on one thread),
on the thread that is committing its actor's calls (a signal handler), or closing a cycle of
waits across threads, would wait for itself: :class:`~vactor_cloud.core.ActorCore` refuses it
(``ReentrantCallError``) with what this module tells. What it needs of the core is the small
protocol :class:`WaitedCore`.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from vactor_cloud.batch import current_call, swap_current_call
from vactor_cloud.errors import ReentrantCallError
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.future import install_actor_held_probe
from vactor_cloud.read_room import lent_while_waiting

__all__ = [
    "WaitedCore",
    "WaitingInsideWriter",
    "call_cycle",
    "held_here",
    "holds_actor",
    "lends_read_room",
    "refuse_wait_cycle",
    "run_detached",
    "unblock",
    "waiting_writers",
    "writers_on_this_thread",
]

T = TypeVar("T")
R = TypeVar("R")


class WaitedCore(Protocol):
    """What the wait-for graph needs of an actor's core (:class:`~vactor_cloud.core.ActorCore`)."""

    actor_id: str
    #: the thread applying the actor's writes, None while nobody is
    _drainer: int | None

    def _withdraw(self, future: Future[Any], error: BaseException) -> bool:
        """Fail the queued, not yet started call of ``future`` with ``error``: True; False when
        it is not queued (it runs or ran)."""
        ...


#: an actor's core, as the decorators below see it
C = TypeVar("C", bound=WaitedCore)


#: per thread: actor ids whose writer method runs on this thread while it waits for (or
#: runs) another call, outermost first (the innermost running writer is ``current_call()``)
waiting_writers = threading.local()


def writers_on_this_thread() -> list[str]:
    """(``ActorCore.help``'s helper) Actors whose writer method runs on this thread now, outermost
    first: a call that would wait for one of them would wait for itself."""
    held = list(getattr(waiting_writers, "stack", ()))
    running = current_call()
    if running is not None and not running.readonly:
        held.append(running.actor_id)
    return held


def call_cycle(actor_id: str) -> str | None:
    """``"a -> b -> a"`` when a writer method of ``actor_id`` runs on this thread (a call that
    would wait for that actor would wait for itself), else None."""
    held = writers_on_this_thread()
    if actor_id not in held:
        return None
    return " -> ".join([*held[held.index(actor_id) :], actor_id])


def run_detached(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on this thread as a fresh pool thread would run it: no actor call runs here
    (``current_call()`` is None), no writer waits here, in an empty ``contextvars`` context.

    For work a thread takes from a pool's queue while it waits for that work (caller runs):
    it must not pass for part of the actor call the waiting thread is in.
    """
    previous = swap_current_call(None)
    stack = getattr(waiting_writers, "stack", None)
    waiting_writers.stack = []
    try:
        return contextvars.Context().run(fn, *args)
    finally:
        swap_current_call(previous)
        if stack is None:
            del waiting_writers.stack
        else:
            waiting_writers.stack = stack


#: ``actors``: the actors this thread holds (drains or serves) now
_holding = threading.local()

P = ParamSpec("P")


def holds_actor(method: Callable[Concatenate[C, P], R]) -> Callable[Concatenate[C, P], R]:
    """Mark this thread as holding the core's actor while ``method`` runs: a done callback of
    an ``ActorFuture`` it settles meanwhile runs on a thread of its own (see ``future.py``), and
    a call to that actor made on this thread meanwhile (a signal handler) is refused (``help``)."""

    @functools.wraps(method)
    def run(core: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        held = _holding.__dict__.setdefault("actors", [])
        held.append(core.actor_id)
        try:
            return method(core, *args, **kwargs)
        finally:
            held.pop()

    return run


def lends_read_room(
    method: Callable[Concatenate[C, P], R],
) -> Callable[Concatenate[C, P], R]:
    """While ``method`` waits for a call of the core's actor, the read-only call running in this
    context (if any) lends its spare to reads made inside that actor's writer methods: one of
    them may be what the wait waits for (``read_room``)."""

    @functools.wraps(method)
    def run(core: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with lent_while_waiting(core.actor_id):
            return method(core, *args, **kwargs)

    return run


def held_here() -> list[str]:
    return getattr(_holding, "actors", None) or []


install_actor_held_probe(lambda: bool(getattr(_holding, "actors", None)))


class WaitingInsideWriter:
    """(``ActorCore.help``'s helper) ``with WaitingInsideWriter():`` while this thread waits for
    (or runs) another call from inside a writer method, that writer stays on this thread's list
    (``writers_on_this_thread``)."""

    __slots__ = ("pushed",)

    def __enter__(self) -> None:
        running = current_call()
        self.pushed = False
        if running is None or running.readonly:
            return
        stack = waiting_writers.__dict__.setdefault("stack", [])
        # Nested: ``run()`` enters, then the wait it makes (``help``) enters for the same
        # writer. Listed twice, a cycle A -> B -> A was reported as "A -> A -> B -> A".
        if stack and stack[-1] == running.actor_id:
            return
        stack.append(running.actor_id)
        self.pushed = True

    def __exit__(self, *exc: object) -> None:
        if self.pushed:
            waiting_writers.stack.pop()


#: threads waiting in ``ActorCore.help`` without a timeout, for a call of another thread's
#: actor: thread ident -> (that actor's core, the call's future). With each core's
#: ``_drainer`` this is the wait-for graph of the process's threads: A's writer waiting for
#: B's call, which a pool thread runs (``run_async(...).result()``, ``await``, ``vc.get``),
#: while that call waits for A, is a cycle in it. Found when its last edge is added, the cycle
#: is broken at once by refusing a call not started yet (``ReentrantCallError``); else each
#: call waited ``max(deadline, commit_timeout)`` for ``ActorBusyError``.
_blocked: dict[int, tuple[WaitedCore, Future[Any]]] = {}
_blocked_lock = threading.Lock()


def refuse_wait_cycle(core: WaitedCore, future: Future[Any]) -> bool:
    """Record that this thread waits for ``future``, a call of ``core``; if that wait closes a
    cycle of waits, withdraw a call of the cycle that has not started (the one this thread
    waits for first) with ``ReentrantCallError`` and return True (this thread does not wait)."""
    me = threading.get_ident()
    with _blocked_lock:
        _blocked[me] = (core, future)
        cycle: list[tuple[WaitedCore, Future[Any]]] = []
        thread: int | None = me
        for _ in range(len(_blocked)):
            edge = _blocked.get(thread) if thread is not None else None
            if edge is None or edge[1].done():
                return False
            cycle.append(edge)
            thread = edge[0]._drainer
            if thread == me:
                break
        else:
            return False  # a cycle of other threads: the last of them to wait breaks it
        del _blocked[me]
    # Each waiting thread holds the actor of the edge before its own: the calls went
    # cycle[-1] -> cycle[0] -> ... -> cycle[-1]. Named from the actor whose call is refused
    # (its writer is the outer one, waiting): "a -> b -> a", as on one thread.
    actors = [c.actor_id for c, _ in cycle]
    for index, (waited, call) in enumerate(cycle):
        names = " -> ".join([*actors[index:], *actors[: index + 1]])
        error = ReentrantCallError(
            f"a call to actor {waited.actor_id!r} waits for that actor, whose writer method waits, "
            f"on another thread, for a call that waits for this one (a call cycle {names} across "
            "threads: a call made with run_async and then waited for ran on a pool thread, or two "
            "threads' writer methods each called the other's actor): no thread could go on, so it "
            "was not applied. Let the outer method do that work itself, or call the actor after "
            "its method has returned"
        )
        if waited._withdraw(call, error):
            return True
    return False  # every call of the cycle started: the busy bound ends the wait


def unblock() -> None:
    with _blocked_lock:
        _blocked.pop(threading.get_ident(), None)


# (A forked child has one thread: no other waits.)
renew_in_a_forked_child(globals(), "_blocked_lock", _blocked)
