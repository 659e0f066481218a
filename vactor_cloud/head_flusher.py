"""HEAD pointers moved in the background, off the commit path (:class:`HeadFlusher`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vactor_cloud import _sync
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import ClassRef, Head

if TYPE_CHECKING:
    from vactor_cloud.core import ActorCore

logger = logging.getLogger("vactor_cloud")


@dataclass(slots=True)
class _HeadMove:
    core: weakref.ref[ActorCore]
    log: ActorLog
    step: int
    class_ref: ClassRef
    head: Head | None
    since: float
    #: only timer firings moved the actor since HEAD fell behind: wait longer (see ``mark``)
    lazy: bool = False


#: a HEAD behind by timer firings alone waits this many times ``max_delay`` (or ``lag_steps``)
_LAZY_DELAY = 6


class HeadFlusher:
    """Moves HEAD pointers in the background, off the commit path.

    HEAD is only a hint (readers probe past it), so moving it after every
    commit would double the PUTs of a busy store for little gain. An actor's
    HEAD is written when it is missing, when it lags ``lag_steps`` steps behind
    what this process committed, or ``max_delay`` seconds after it first fell
    behind; never more than once per ``interval`` per actor; and always on
    ``shutdown()`` / interpreter exit. It holds only what a move needs (not
    the actor's state), so an evicted actor's HEAD still moves.
    """

    def __init__(self, interval: float, lag_steps: int, max_delay: float) -> None:
        self.interval = interval
        self.lag_steps = lag_steps
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._pending: dict[str, _HeadMove] = {}
        self._running = False
        #: one flush at a time (made on the IO loop): the last one at shutdown waits for a
        #: periodic one in flight, whose moves would otherwise outlive the runtime's executor
        self._flushing: asyncio.Lock | None = None
        #: the periodic flush, while it runs (cancelled by ``stop``)
        self._task: asyncio.Task[None] | None = None

    def mark(self, core: ActorCore, *, lazy: bool = False) -> None:
        """Ask for ``core``'s HEAD to be moved to its newest known step (any thread).

        ``lazy``: the step only fired timers (a runner's commit). Such steps
        come every few seconds for an actor with many timers and nobody
        reads from a runner: HEAD then moves after ``lag_steps`` steps or
        ``_LAZY_DELAY`` times ``max_delay`` (readers probe past a lagging HEAD).
        """
        record = core.record
        if record is None:
            return
        start = False
        try:
            with self._lock:
                move = self._pending.get(core.actor_id)
                if move is None:
                    self._pending[core.actor_id] = _HeadMove(
                        weakref.ref(core),
                        # A log of its own: the core's keeps the idempotency checkpoint it decoded,
                        # which an evicted actor's pending move would hold until it is flushed
                        ActorLog(core.log.store, core.actor_id, signing_key=core.log.signing_key),
                        record.step,
                        record.class_ref,
                        core.head,
                        time.monotonic(),
                        lazy,
                    )
                else:
                    move.lazy = move.lazy and lazy
                    if record.step > move.step:
                        move.step, move.class_ref = record.step, record.class_ref
                start = not self._running
                self._running = True
            if start:
                _sync.get_loop().call_soon_threadsafe(self._start)
        except BaseException:
            if start:
                # Interrupted (Ctrl-C) or refused (the loop closed), the start queued or not:
                # not running, the next mark queues a start (``_start`` makes one task at
                # most). Left running with no task, no HEAD moved until shutdown's flush.
                with self._lock:
                    self._running = False
            raise

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """The last flush (every pending move), then no more: the periodic one ends, also when
        this is cancelled (shutdown ran out of time waiting for a move whose answer is late)."""
        try:
            await self.flush()
        finally:
            task, self._task = self._task, None
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush(force=False)
            with self._lock:
                if not self._pending:
                    self._running = False
                    return

    def _due(self, move: _HeadMove, now: float) -> bool:
        if move.head is None:
            return True
        delay = self.max_delay * (_LAZY_DELAY if move.lazy else 1)
        return move.step - move.head.step >= self.lag_steps or now - move.since >= delay

    async def flush(self, *, force: bool = True) -> None:
        if self._flushing is None:
            self._flushing = asyncio.Lock()
        async with self._flushing:
            await self._flush(force)

    async def _flush(self, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            due = [m for m in self._pending.values() if force or self._due(m, now)]
            for move in due:
                del self._pending[move.log.actor_id]
        if not due:
            return
        try:
            results = await asyncio.gather(
                *(m.log.advance_head(m.step, m.class_ref, m.head) for m in due), return_exceptions=True
            )
        except asyncio.CancelledError:
            # (Ctrl-C in shutdown, or shutdown out of time) The moves go back to the pending
            # ones, for the next flush (a shutdown finishing this one); taken out, they were
            # lost. A move sent already is harmless to send again: HEAD only moves forward.
            with self._lock:
                for move in due:
                    self._pending.setdefault(move.log.actor_id, move)
            raise
        for move, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("could not move HEAD of %r: %s", move.log.actor_id, result)
                continue
            core = move.core()
            if core is not None and (core.head is None or core.head.step < result.step):
                core.head = result
