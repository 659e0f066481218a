"""ReadRoom: how much state the read-only calls running at once may restore, in all.

A read-only call runs on a private copy of the state, restored for it alone (its result, and
what it does to ``self``, are its own). Unbounded, those copies add up: 32 ``run_async`` reads
(the read pool) of a 20 MB actor, or as many threads calling ``run()``, would hold 32 x 20 MB
at once. The rules, each with the tests that fail without it (W: ``tests/test_review_reads_beside_writes.py``,
C: ``tests/test_review_reads_beside_compaction.py``):

1. **Room.** A read (a read-only call, ``run(at_step=)``, ``state_at``) takes room for its
   state's stored size before it restores it, ``Settings.max_read_bytes`` in all per runtime,
   and gives it back when it ends. Past the room it waits for a read to end, never for a
   write. W ``test_reads_at_once_of_a_large_state_restore_at_most_about_the_cache_budget``,
   C ``test_a_past_view_takes_read_room_while_it_is_restored``. A read interrupted (Ctrl-C)
   once it took room gives it back, and is no longer its thread's current read:
   ``tests/test_review_h158_read_room.py``
   ``test_ctrl_c_as_a_read_begins_leaves_neither_its_room_taken_nor_it_current``.
2. **Alone.** A read runs when no other read holds room, however large its state.
   C ``test_a_read_of_a_state_larger_than_the_room_runs``.
3. **Nested.** A read made in the context of a running read, on its thread, takes no room and
   never waits: its caller's room covers it, and would otherwise keep it waiting for itself.
   W ``test_a_read_inside_a_read_of_a_large_state_does_not_wait_for_room_it_holds``; with its
   read's spare taken by a read it handed on, which waits for it:
   ``tests/test_review_h138_execution_model.py``
   ``test_a_nested_read_never_waits_for_the_spare_its_own_read_lent``.
4. **Spare.** A running read may wait for a read it cannot run in its own context on its
   thread: one made with ``run_async`` inside it, one made in its context on another thread
   (the helper thread of an ``async def`` method, ``asyncio.to_thread``), or one made inside a
   writer method of an actor it waits for a call of (``lent_while_waiting``). When there is no
   room, one such read at a time runs on the waiting read's *spare*, without room of its own;
   the read gives its room back once it and the read on its spare have both ended (a spare
   that outlived its read would let threads, each calling a read that hands a ``run_async``
   read on and returns, hold a copy each).
   C ``test_reads_a_read_only_method_fans_out_stay_within_the_read_room``,
   C ``test_a_read_waiting_for_a_writer_whose_method_reads_lends_its_room``,
   C ``test_a_read_already_waiting_for_room_takes_the_spare_lent_after_it_began_to_wait``,
   C ``test_reads_handed_on_by_reads_that_returned_stay_within_the_read_room``,
   C ``test_reads_made_on_threads_that_carry_a_reads_context_stay_within_the_read_room``,
   C ``test_a_read_inside_an_async_read_run_on_its_helper_thread_does_not_wait_for_room_it_holds``.
5. **Deadline.** A wait ends after ``Settings.deadline``; the read then runs anyway, with a
   warning (a read holding room that waits, on a thread of its own making, for a read waiting
   here: the bound gives way rather than the call).
   C ``test_a_read_waiting_for_room_its_caller_holds_on_another_thread_runs_at_the_deadline``.
6. **Let go** (the callers: ``ActorCore.read``, ``history.state_at``). A read of a past step
   fetched its own copy of the stored state: one that would wait (``would_wait``) lets go of it
   and fetches the step again once it has room (compacted meanwhile: ``StepNotFoundError``).
   C ``test_reads_of_a_past_step_waiting_for_room_hold_no_fetched_copy``,
   C ``test_past_views_waiting_for_room_hold_no_fetched_copy``,
   C ``test_a_read_of_a_past_step_compacted_while_it_waits_for_room_says_so``.

So the copies restored at once are within the room, plus one state past it (rule 2), plus one
per read that holds room or a spare (rule 4: a chain as long as reads hand reads on), plus
those of nested reads (rule 3: one per level of calls on one thread).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Collection, Iterator

from vactor_cloud._sync import interruptible_wait

__all__ = ["Read", "ReadRoom", "current_read", "lent_while_waiting"]

logger = logging.getLogger("vactor_cloud")


class Read:
    """A read that holds room, or runs on another read's spare (``lender``)."""

    __slots__ = ("borrower", "ended", "lender", "room", "size", "thread")

    def __init__(self, room: ReadRoom, size: int, lender: Read | None) -> None:
        self.room = room
        #: the thread it runs on (a read made on another, in its context, is not nested: rule 3)
        self.thread = threading.get_ident()
        #: the room it holds (0 on a spare)
        self.size = size
        self.lender = lender
        #: the read running on its spare now
        self.borrower: Read | None = None
        self.ended = False


#: the read running in this context (a read made here is nested in it: rule 3)
_current: contextvars.ContextVar[Read | None] = contextvars.ContextVar("vactor_read", default=None)


def current_read() -> Read | None:
    """The read running in this context: a read made now with ``run_async`` may use its spare."""
    return _current.get()


@contextlib.contextmanager
def within(read: Read | None) -> Iterator[None]:
    """Around code this thread runs in another context (a done callback, in the context of the
    code that registered it): the read running here, if any, is still the one it runs in."""
    token = _current.set(read)
    try:
        yield
    finally:
        _current.reset(token)


def _nested() -> Read | None:
    """The read a read made now is nested in (rule 3): this context's, on its own thread."""
    read = _current.get()
    return read if read is not None and read.thread == threading.get_ident() else None


@contextlib.contextmanager
def lent_while_waiting(actor_id: str) -> Iterator[None]:
    """Around a wait of this context for a call of ``actor_id``: the spare of the read running
    here (if any) is lent to reads made inside that actor's writer methods meanwhile (rule 4)."""
    read = _current.get()
    if read is None:
        yield
        return
    lent = read.room._lent
    with read.room._changed:
        lent.setdefault(actor_id, []).append(read)
        read.room._changed.notify_all()  # (a read of that actor's writer may wait already)
    try:
        yield
    finally:
        with read.room._changed:
            lenders = lent[actor_id]
            lenders.remove(read)
            if not lenders:
                del lent[actor_id]


class ReadRoom:
    """Room for the states the read-only calls of one runtime restore at once."""

    __slots__ = ("_changed", "_lent", "_running", "_size", "_used", "waiting")

    def __init__(self, size: int) -> None:
        self._size = size
        self._changed = threading.Condition(threading.Lock())
        self._used = 0
        #: reads holding room
        self._running = 0
        #: actor id -> reads waiting for a call of that actor, lending it their spares
        self._lent: dict[str, list[Read]] = {}
        #: reads waiting for room now (for tests and debugging)
        self.waiting = 0

    def _fits(self, size: int) -> bool:
        return self._running == 0 or self._used + size <= self._size

    def _spare(self, inside: Read | None, writers: Collection[str]) -> Read | None:
        """A running read with its spare free that may wait for this one (rule 4)."""
        lenders = [lender for actor_id in writers for lender in self._lent.get(actor_id, ())]
        if inside is not None:
            lenders.append(inside)
        return next((r for r in lenders if r.borrower is None and not r.ended and r.room is self), None)

    def would_wait(self, size: int, inside: Read | None = None, writers: Collection[str] = ()) -> bool:
        """Whether a read of ``size`` bytes would wait now (a hint: another read may take the
        room first)."""
        if _nested() is not None:
            return False
        with self._changed:
            return not self._fits(size) and self._spare(inside or _current.get(), writers) is None

    @contextlib.contextmanager
    def taken(
        self,
        size: int,
        wait: float,
        actor_id: str,
        method: str,
        inside: Read | None = None,
        writers: Collection[str] = (),
    ) -> Iterator[None]:
        """Around the run of read-only call ``method`` of ``actor_id``, whose state's stored size
        is ``size``: room for it, or a spare, waiting at most ``wait`` seconds for either.
        ``inside``: the read it was made in with ``run_async``; ``writers``: the actors whose
        writer methods run on this thread (rule 4)."""
        if _nested() is not None:  # rule 3
            yield
            return
        # (a read whose context another thread's read carried here: that read may wait for it)
        inside = inside or _current.get()
        changed = self._changed
        outer = _current.get()
        read: Read | None = None
        try:
            with changed:
                if not self._fits(size) and self._spare(inside, writers) is None:
                    self.waiting += 1
                    try:
                        if not interruptible_wait(  # (in slices on the main thread: up to the deadline)
                            lambda timeout: changed.wait_for(
                                lambda: self._fits(size) or self._spare(inside, writers) is not None, timeout
                            ),
                            wait,
                            forever=None,
                        ):
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
                lender = None if self._fits(size) else self._spare(inside, writers)
                read = Read(self, 0 if lender else size, lender)
                if lender is None:
                    self._used += size
                    self._running += 1
                else:
                    lender.borrower = read
            # (In the ``try``: Ctrl-C landing once the room is taken, as the read becomes the
            # current one, gives the room back and leaves the context as it was.)
            _current.set(read)
            yield
        finally:
            if _current.get() is read:
                _current.set(outer)
            if read is not None:
                with changed:
                    read.ended = True
                    self._give_back(read)
                    changed.notify_all()

    def _give_back(self, read: Read | None) -> None:
        """(Under the lock) Give back what ``read`` runs on (room, or its lender's spare) once it
        has ended and its own spare is free; then the same for that lender (rule 4)."""
        while read is not None and read.ended and read.borrower is None:
            lender = read.lender
            if lender is None:
                self._used -= read.size
                self._running -= 1
            else:
                lender.borrower = None
            read = lender
