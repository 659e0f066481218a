"""ReadRoom: how much state the read-only calls running at once may restore, in all.

A read-only call runs on a private copy of the state, restored for it alone
(its result, and what it does to ``self``, are its own). Nothing bounded
those copies: 32 ``run_async`` reads (the pool) of a 20 MB actor, or as many
threads calling ``run()``, held 32 x 20 MB at once, whatever
``max_cache_bytes`` said. A read now takes room for its state's stored size
(``Settings.max_read_bytes`` in all, per runtime) before it restores it, and
gives it back when its method returns; past the room it waits for a read to
end. Reads only ever wait here for other reads, never for a write.

* One read alone always runs, however large its state.
* A read inside a read (a read-only method calling one, directly or through
  other actors, on its thread or on the helper thread of an ``async def``
  method: the same ``contextvars`` context) takes no room and never waits: the
  room its caller holds would otherwise keep it waiting for itself.
* A read made with ``run_async`` inside a read, run on another thread, takes
  room when there is some; when there is none it runs on its outer read's
  *spare*: one such read at a time per outer read runs without room (the outer
  read may be waiting for it, however it waits), the others wait for room or
  for the spare. Each ran without room before: a read-only method fanning out
  ``run_async`` reads of large actors restored as many copies at once as the
  read pool has threads, and more once it returned without waiting for them.
* A read that waits for a writer call of another actor (a read-only method calling
  a writer, which another thread's writer method holds) lends its room to that
  actor meanwhile: a read made inside a writer method of that actor, which the
  lender may be waiting for, takes the lent room rather than wait for it (it
  waited until ``Settings.deadline`` so). One such read at a time per lender: the
  memory of the lender's copy and the borrower's is about the lender's room twice.
* A past view (``state_at``) takes room while its state is restored; the view it
  returns is the caller's memory, as any result.
* A read of a past step (``at_step``, ``state_at``) fetches its own copy of the
  stored state: one that would wait for room lets go of it first and reads the
  step again once it has room (a step compacted meanwhile: ``StepNotFoundError``),
  so that waiting reads hold no copies.
* Every wait has an end: a read that waited ``Settings.deadline`` runs anyway
  (a read holding room while it waits, on a thread of its own making, for a read
  waiting for room here: the bound gives way rather than the call).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Collection, Iterator

__all__ = ["OuterRead", "ReadRoom", "as_nested_read", "in_a_read", "lent_while_waiting", "outer_read"]

logger = logging.getLogger("vactor_cloud")

#: read-only calls running in this context, one inside the other (a nested read takes no room)
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("vactor_read_depth", default=0)


#: the room this context's (outermost) read holds, while it is not lent
_held: contextvars.ContextVar[ReadRoom | None] = contextvars.ContextVar("vactor_read_held", default=None)


@contextlib.contextmanager
def lent_while_waiting(actor_id: str) -> Iterator[None]:
    """Around a wait of this context for a call of ``actor_id``: the room its read holds (if
    any) is lent to reads made inside that actor's writer methods meanwhile."""
    room = _held.get()
    if room is None:
        yield
        return
    token = _held.set(None)  # (a wait inside the wait lends nothing more)
    room._lend(actor_id, 1)
    try:
        yield
    finally:
        room._lend(actor_id, -1)
        _held.reset(token)


class OuterRead:
    """A read that holds room (or runs without), as the reads made with ``run_async`` inside
    it see it: its spare runs one of them at a time without room."""

    __slots__ = ("spare_taken",)

    def __init__(self) -> None:
        #: a read made inside this one runs on the spare now (guarded by its room's lock)
        self.spare_taken = False


#: the outermost read running in this context
_outer: contextvars.ContextVar[OuterRead | None] = contextvars.ContextVar("vactor_read_outer", default=None)
#: (on a thread running a read made with ``run_async`` inside a read) that outer read
_inner_of: contextvars.ContextVar[OuterRead | None] = contextvars.ContextVar(
    "vactor_read_inner_of", default=None
)


def outer_read() -> OuterRead | None:
    """The read running in this context (a read made now with ``run_async`` is inside it)."""
    return _outer.get() if _depth.get() > 0 else None


def in_a_read() -> bool:
    """Whether a read-only call runs in this context (a read made now is nested in it)."""
    return _depth.get() > 0


def as_nested_read(fn: Callable[[], None], outer: OuterRead | None = None) -> None:
    """Run ``fn`` (a read made inside a read, run on another thread: ``run_async``) as a read
    inside that one (``outer``): it takes room if there is some, else runs on the outer read's
    spare (see the module's docstring). Without ``outer``: it takes no room at all."""
    if outer is None:
        token = _depth.set(_depth.get() + 1)
        try:
            fn()
        finally:
            _depth.reset(token)
        return
    inner = _inner_of.set(outer)
    try:
        fn()
    finally:
        _inner_of.reset(inner)


class ReadRoom:
    """Room for the states the read-only calls of one runtime restore at once."""

    __slots__ = ("_changed", "_lent", "_running", "_size", "_used", "waiting")

    def __init__(self, size: int) -> None:
        self._size = size
        self._changed = threading.Condition(threading.Lock())
        self._used = 0
        self._running = 0
        #: actor id -> reads waiting for a call of that actor, lending it their room
        self._lent: dict[str, int] = {}
        #: reads waiting for room now (for tests and debugging)
        self.waiting = 0

    def _fits(self, size: int, writers: Collection[str]) -> bool:
        if self._running == 0 or self._used + size <= self._size:
            return True
        return any(self._lent.get(actor_id, 0) > 0 for actor_id in writers)

    @staticmethod
    def _spare(outer: OuterRead | None) -> bool:
        return outer is not None and not outer.spare_taken

    def has_room(self, size: int, writers: Collection[str] = ()) -> bool:
        """Whether a read of ``size`` bytes would run now without waiting (a hint: another read
        may take the room before this one does)."""
        if _depth.get():
            return True
        with self._changed:
            return self._fits(size, writers)

    def _lend(self, actor_id: str, change: int) -> None:
        with self._changed:
            count = self._lent.get(actor_id, 0) + change
            if count > 0:
                self._lent[actor_id] = count
            else:
                self._lent.pop(actor_id, None)
            self._changed.notify_all()

    @contextlib.contextmanager
    def taken(
        self, size: int, wait: float, actor_id: str, method: str, writers: Collection[str] = ()
    ) -> Iterator[None]:
        """Hold room for ``size`` bytes of restored state around the run of read-only call
        ``method`` of ``actor_id`` (waiting at most ``wait`` seconds for it). ``writers``: the
        actors whose writer methods run on this thread (room lent to one of them is taken)."""
        depth = _depth.get()
        if depth:  # a read inside a read: the outer one's room covers it
            nested = _depth.set(depth + 1)
            try:
                yield
            finally:
                _depth.reset(nested)
            return
        changed = self._changed
        outer = _inner_of.get()
        spare = False
        with changed:
            if not self._fits(size, writers) and not self._spare(outer):
                self.waiting += 1
                try:
                    ready = changed.wait_for(
                        lambda: self._fits(size, writers) or self._spare(outer), timeout=wait
                    )
                    if not ready:
                        logger.warning(
                            "read-only call %s() of actor %r waited %g s for room to restore its "
                            "state (Settings.max_read_bytes, %d bytes, taken by %d other read(s)): "
                            "it runs anyway",
                            method,
                            actor_id,
                            wait,
                            self._size,
                            self._running,
                        )
                finally:
                    self.waiting -= 1
            if outer is not None and not self._fits(size, writers) and self._spare(outer):
                outer.spare_taken = spare = True
            else:
                self._used += size
                self._running += 1
        running = _depth.set(1)
        held = _held.set(self)
        itself = _outer.set(OuterRead())
        try:
            yield
        finally:
            _outer.reset(itself)
            _held.reset(held)
            _depth.reset(running)
            with changed:
                if spare and outer is not None:
                    outer.spare_taken = False
                else:
                    self._used -= size
                    self._running -= 1
                changed.notify_all()
