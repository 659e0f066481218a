"""Shutting a runtime down: ``close`` (``vc.shutdown()``, ``init()`` again, the exit hook), the
waits before it for the calls and folds still queued, and what it says of the work it cut off.

:class:`Closer` is the part of :class:`~vactor_cloud.actor_runtime.Runtime` (a mixin, over
:class:`~vactor_cloud.runtime_work.WorkRunner`, whose pieces of work it waits for and cancels
past its timeout); what it needs of the runtime (its cores, its HEAD flusher, its close
state) is declared at the top of the class. :func:`join_threads` joins threads so that an
interrupt of the wait leaves them as they are (the pools' threads here, a timer runner's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Any

from vactor_cloud import _sync
from vactor_cloud.core import ActorCore
from vactor_cloud.runtime_work import WorkRunner

if TYPE_CHECKING:
    from vactor_cloud.head_flusher import HeadFlusher

__all__ = ["Closer", "join_threads"]

logger = logging.getLogger("vactor_cloud")


class Closer(WorkRunner):
    """A runtime as the one that shuts itself down: what has not started fails, what runs is
    waited for (cut off past the timeout), then leases, inboxes, HEAD pointers and threads."""

    if TYPE_CHECKING:
        # Of the runtime (vactor_cloud.actor_runtime.Runtime, set by its __init__): its cores,
        # its HEAD flusher, and the state of its close.
        heads: HeadFlusher
        closed: bool
        _pid: int
        _lock: threading.Lock
        _closed: threading.Event
        _closer: threading.Event | None

        def _all_cores(self) -> list[ActorCore]: ...

    async def aclose(self) -> None:
        """Release folder leases, finish the inboxes' background work, flush pending HEAD
        moves and release connections (``close`` calls it once nothing else runs)."""
        cores = self._all_cores()
        try:
            with contextlib.suppress(Exception):
                await asyncio.gather(*(core.shutdown_lease() for core in cores if core.leased))
            with contextlib.suppress(Exception):
                await asyncio.gather(*(core.inbox.finish() for core in cores))
            await self.heads.stop()
            # Last, being cleanup only: deletes of applied posts still queued (a post left is
            # stale for the next folder). A stalled endpoint holds them until close runs out
            # of time; they were sent first, and cancelled so they cost the HEAD flush too,
            # and the store's close (its connections and threads stayed).
            with contextlib.suppress(Exception):
                await asyncio.gather(*(core.flush_deletes() for core in cores if core.leased))
        finally:  # (cancelled: close ran out of time) the connections are released all the same
            await self.store.close()

    def close(self, timeout: float = 30.0, *, waited: str | None = None, asked_folds: bool = False) -> None:
        """Shut down; once this returns, the runtime makes no storage request and none of its
        threads runs (within ``timeout``: see below), and every call made to it has its outcome.

        Calls that have not started fail with ``RuntimeShutdownError`` (not applied), and so
        do commit attempts that would start from now on (a retry after a lost race); a
        poster stops waiting for the lease holder's fold (``CallPendingError``: it may
        still be applied); a lease holder stops folding. What is running (a method and its
        commit attempt, a fold, a background delete or listing) is waited for, up to
        ``timeout`` seconds; past that, its storage requests in flight are cancelled and no
        new one is made (its call fails with ``RuntimeShutdownError``, or with
        ``CommitOutcomeUnknownError`` if its step's put may have landed), and a method body
        still running (which cannot be stopped) is logged. Then leases are released, HEAD
        pointers flushed (``aclose``) and the pool's threads joined, within what is left of
        ``timeout`` (at least a second each). A close interrupted half way (Ctrl-C) is
        finished by the next one (``shutdown()``, ``init()``, the exit hook). ``waited``: who
        waited how long, as the warning logged past ``timeout`` says it (None: "shutdown waited
        ``timeout`` s"; "": no warning, as after a Ctrl-C at exit, whose line said it).

        ``asked_folds`` (``shutdown()``, ``init()`` again; the exit hook waits for them before
        its close): first the folds that ``call_outcome`` queued run
        (:meth:`finish_queued_calls`), within ``timeout`` too, before the runtime refuses new
        work: a function that asks, then shuts down and is frozen has folded the post, not
        left it pending for the next ask. A Ctrl-C during that wait reaches the caller, the
        runtime closed to new work (the next close does the rest)."""
        if os.getpid() != self._pid:
            return
        until = time.monotonic() + timeout
        if asked_folds:
            try:
                self.finish_queued_calls(until, calls=False)
            except BaseException:
                with self._lock:
                    self.closed = True
                raise
        while True:
            with self._lock:
                self.closed = True
                if self._closed.is_set():
                    return
                closer = self._closer
                if closer is None:
                    mine = self._closer = threading.Event()
            if closer is None:
                break
            # Another thread closes it: returns once that close has. One that was interrupted
            # (Ctrl-C) left the runtime half closed: this close does what it left.
            if not _sync.interruptible_wait(closer.wait, max(until - time.monotonic(), 0.0), forever=None):
                return
        try:
            waited = f"shutdown waited {timeout:g} s (close(timeout))" if waited is None else waited
            self._close(max(until - time.monotonic(), 0.0), waited)
            self._closed.set()
        finally:
            with self._lock:
                self._closer = None
            mine.set()

    def finish_queued_calls(self, until: float, *, calls: bool = True) -> None:
        """Wait until no call made to this runtime is left queued (not started), at most until
        ``until`` (monotonic). The exit hook's: a script that ends with ``run_async`` calls it
        never waited for has them applied, not failed by the shutdown with nobody to hear it.
        (A call a method makes meanwhile is queued in turn, and waited for too.) So too the
        folds ``call_outcome`` queued (``ActorCore._fold_given_up_posts_soon``; one an ask left
        to the holder of the actor here is queued as it gives the actor up): a process
        that asks once and exits (a script, a function's invocation) had its fold cancelled
        before it ran, every time, and its asks said pending for good. ``calls`` False: the
        folds alone (``close(asked_folds=True)``). In a forked child, whose copy of the
        parent's runtime runs nothing, returns at once."""
        while not self.closed and os.getpid() == self._pid:
            cores = self._all_cores()
            pending = [future for core in cores for future in core.queued_futures()] if calls else []
            folding = [core.asked_fold_idle for core in cores if not core.asked_fold_idle.is_set()]
            left = until - time.monotonic()
            if not (pending or folding) or left <= 0:
                return

            def all_done(timeout: float | None, pending: list[Future[Any]] = pending) -> bool:
                return not wait(pending, timeout).not_done

            # (A pool thread waiting so, as a method that shuts down: the pool runs the fold.)
            with self.waiting_for_others():
                _sync.interruptible_wait(all_done if pending else folding[0].wait, left, forever=None)

    def queued_calls(self) -> list[tuple[str, str]]:
        """(actor id, method) of each call made to this runtime that no thread has started."""
        return [(core.actor_id, method) for core in self._all_cores() for method in core.queued_methods()]

    def asked_folds(self) -> list[str]:
        """The actors whose fold a ``call_outcome`` queued (``ActorCore._fold_given_up_posts_soon``)
        has not ended: queued, running, or left to this process's holder of the actor (an ask
        that found it held: queued as the holder gives the actor up)."""
        return [core.actor_id for core in self._all_cores() if not core.asked_fold_idle.is_set()]

    @property
    def finished_closing(self) -> bool:
        """Whether a ``close`` has run to its end (not interrupted half way by Ctrl-C)."""
        return self._closed.is_set()

    def _close(self, timeout: float, waited: str) -> None:
        until = time.monotonic() + timeout
        error = self._shutdown_error()
        # What has not started never starts: pool tasks are cancelled (each settles what it
        # would have: see ``spawn``), queued calls failed.
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.read_executor.shutdown(wait=False, cancel_futures=True)
        cores = self._all_cores()
        for core in cores:
            self._fail_queued(core, error)
            core.wake()  # a lease holder between folds sees ``closed`` now
        # (Not on the IO loop, which what it would wait for needs: a call from there only cancels.)
        left = self._work.wait_done(until if not _sync.in_loop_thread() else 0.0)
        self.stopped = True
        if left:
            # (Named before the cancel: a fold whose request is cancelled ends at once.)
            folds = self.asked_folds()
            # Past the timeout: what still runs makes no request from now on.
            _sync.cancel(self._in_flight)
            for future in list(self._background):
                future.cancel()
            with contextlib.suppress(RuntimeError):  # (the loop closed: nothing runs on it)
                _sync.get_loop().call_soon_threadsafe(self._cancel_tasks)
            self._say_cut_off(left, waited, folds)
        with contextlib.suppress(Exception):
            _sync.sync(self.aclose(), timeout=max(until - time.monotonic(), 1.0))
        for core in cores:
            self._fail_queued(core, error)
        # The pool's idle threads end at once (the shutdown told them), a thread whose request
        # was cancelled soon after: a second at least; a method body still running keeps its
        # thread (logged above).
        joined_by = max(until, time.monotonic() + 1.0)
        threads = [*self.executor.threads(), *self.read_executor.threads()]
        join_threads([t for t in threads if t is not threading.current_thread()], joined_by)

    def _say_cut_off(self, left: int, waited: str, folds: list[str]) -> None:
        """(``_close`` past its timeout) Log the work cut off (naming ``folds``, the actors whose
        fold ``call_outcome`` queued still ran), and who waited for it how long."""
        if not waited:
            return
        named = ", ".join(repr(actor_id) for actor_id in folds[:3]) + (" and more" if len(folds) > 3 else "")
        logger.warning(
            "vactor_cloud: %s for %d piece(s) of work of the runtime on %s still running (a "
            "method body, a stalled request): their storage requests are cancelled and no new "
            "one is made%s",
            waited,
            left,
            self.store.describe(),
            f"; among them the fold call_outcome queued for {named}: the posts it would fold stay "
            "in the inbox, for call_outcome(call_id) asked again later (or a write to the actor "
            "that meets contention)"
            if folds
            else "",
        )


def join_threads(threads: list[threading.Thread], until: float | None) -> None:
    """Join ``threads``, waiting until ``until`` (monotonic; None: until they end) at most, so
    that an interrupt of the wait leaves them as they are: on the main thread (where Ctrl-C
    lands), from a helper thread, waited for in slices (``_sync.wait_aside``: a signal another
    thread took has its handler run meanwhile). CPython 3.11's ``Thread.join`` interrupted while
    the thread still runs releases that thread's state lock and marks it ended (bpo-45274's
    handling): ``is_alive()`` then said False, and a second shutdown's join returned at once, of
    a thread still running."""
    if not threads:
        return

    def join_all() -> None:
        for thread in threads:
            thread.join(None if until is None else max(until - time.monotonic(), 0.0))

    # (the helper's own joins end by ``until``; a second more for it to return)
    margin = None if until is None else max(until - time.monotonic(), 0.0) + 1.0
    _sync.wait_aside(join_all, margin, name="vactor-close-join")
