"""A read-only call queued with ``run_async``: its task on the read pool, and the threads
waiting for its future, which may run it instead.

Reads run side by side, one pool task each (:class:`_PooledRead`); the first of that task and
the waiters (:func:`_read_waiting`, an ``ActorFuture``'s help) to start the read runs it, as
:class:`_ReadRun` decides, and the others leave it to that one.
:class:`~vactor_cloud.method_calls.MethodCalls` queues such calls; ``core.read`` applies them.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from typing import Any

from vactor_cloud import _sync
from vactor_cloud.batch import PendingCall
from vactor_cloud.core import ActorCore
from vactor_cloud.future import ActorFuture, Waker
from vactor_cloud.read_room import Read
from vactor_cloud.reentrancy import WaitingInsideWriter, refuse_wait_cycle, unblock, writers_on_this_thread


def _refuse(call: PendingCall, error: BaseException) -> None:
    """Settle a call that will never run (the runtime shut down before it started)."""
    if call.claim():
        call.future.set_exception(error)


class _ReadRun:
    """Who runs a read-only ``run_async`` call: the first of its pool task and the threads
    waiting for its future to start it (the others leave it to that one). To the wait-for graph
    (``reentrancy.refuse_wait_cycle``) it is what a writer waiting for the read waits for: the
    thread running it, which the read's own calls may make wait for that writer."""

    __slots__ = ("_drainer", "_starts", "actor_id")

    def __init__(self, actor_id: str) -> None:
        self.actor_id = actor_id
        #: the thread that runs the read (in the graph, as a core's thread applying its calls)
        self._drainer: int | None = None
        self._starts = itertools.count()

    def start(self) -> bool:
        """True for exactly one caller (``next`` on a count is atomic): who runs the read."""
        if next(self._starts) != 0:
            return False
        self._drainer = threading.get_ident()
        return True

    def _withdraw(self, future: concurrent.futures.Future[Any], error: BaseException) -> bool:
        return False  # (a read another thread started cannot be taken back)


class _PooledRead:
    """A read-only ``run_async`` call's task on the read pool (reads run side by side: one task
    each). It lets go of its call once the call's future is cancelled: behind a read pool that
    slow reads kept busy, each cancelled read's task waited in the pool's queue with its call,
    arguments and all."""

    __slots__ = ("call", "core", "inside", "run")

    def __init__(self, core: ActorCore, call: PendingCall, inside: Read | None, run: _ReadRun) -> None:
        self.core: ActorCore | None = core
        self.call: PendingCall | None = call
        self.inside = inside
        self.run = run

    def __call__(self) -> None:
        core, call = self.core, self.call
        if core is not None and call is not None and self.run.start():
            core.read(call, self.inside)  # (inside: the read it was made in, see read_room)

    def refuse(self, error: BaseException) -> None:
        """(The runtime shut down before the task started.)"""
        call = self.call
        if call is not None:
            _refuse(call, error)

    def let_go_if_cancelled(self, future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            self.core = self.call = None
            if isinstance(future, ActorFuture):
                future._help = None  # (it holds them too)


def _read_waiting(
    core: ActorCore, call: PendingCall, inside: Read | None, run: _ReadRun, timeout: float | None
) -> None:
    """A waiter on a read-only call's future runs it (a writer waiting stays on its thread's list),
    unless another thread started it. A writer method waiting here without a timeout for a read
    another thread runs is an edge of the wait-for graph, to that thread: a call the read makes
    to the writer's actor closes a cycle, refused at once (``reentrancy.refuse_wait_cycle``).

    As work of the runtime (``working``), as a read on the pool is: shutdown waits for it. On
    the thread of its own a bounded wait or an ``await`` starts, it ran on after shutdown."""
    if run.start():
        with WaitingInsideWriter(), core.env.working():
            core.read(call, inside)
        return
    future = call.future
    if timeout is not None or future.done() or not writers_on_this_thread():
        return
    wake = threading.Event()
    future.add_done_callback(Waker(lambda _: wake.set()))
    try:
        while not future.done():
            if not refuse_wait_cycle(run, future):
                _sync.interruptible_wait(wake.wait, None, forever=None)
    finally:
        unblock()
