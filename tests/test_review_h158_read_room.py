"""Review h158: a mutation sweep of ``read_room.py`` (room for the states read-only calls
restore at once), driven directly: a ``ReadRoom`` and threads standing for the reads.

The reads-beside-writes/compaction tests (W, C) and h138 hold the rules through actors; these
hold the room's bookkeeping where those passed with the mutation applied. Table (mutation:
survived the W/C/h138 tests?, killed by):

* R1 ``_fits`` without "no read holds room" (rule 2): killed, C larger-than-the-room
* R2 ``<`` for ``<=`` in ``_fits``: survived; ``..._fills_the_room_exactly_does_not_wait``
* R3 ``_spare`` taking a spare already lent: killed, C fans-out
* R4 ``_spare`` taking an ended read's spare: survived; ``..._that_ended_lends_no_spare``
* R5 ``_spare`` taking another room's read: survived; ``..._of_another_runtime_lends_no_spare``
* R6 ``would_wait`` without rule 3: survived; ``..._nested_read_would_not_wait_...``
* R7 ``taken`` without rule 3: killed, h138 nested read
* R8 ``inside`` not taken from the context: killed, C threads-carry-a-read's-context
* R9 ``waiting`` not counted down: survived; ``..._waited_and_ended_leave_no_count_behind``
* R10 ``_give_back`` while a borrower still runs: killed, C fans-out
* R11 ``_running`` not counted down: killed, C larger-than-the-room (and here)
* R12 no ``notify_all`` as a spare is lent: killed, C spare-lent-after-it-began (and here)
* R13 ``_nested`` without its thread check: killed, C threads-carry (and here)
* R14 no ``notify_all`` as a read ends: killed, W cache budget
* R15 a read that fits taking a spare: survived; ``..._fits_takes_room_rather_than_...``
* R16 the wait's deadline dropped: killed, C runs-at-the-deadline
* R17 lenders tried in the other order: survived, equivalent (any free spare of a read that
  waits for this one keeps the bound of one per lender; which one is taken is not visible)
* R18 an actor's lender list kept once empty: survived; ``..._leaves_no_lender_list``

And one defect (not a mutation): Ctrl-C landing as a read became the current one (its room
taken) left the room taken for good and the read current on its thread, every later read
there "nested" in it and taking no room:
``test_ctrl_c_as_a_read_begins_leaves_neither_its_room_taken_nor_it_current`` (fixed).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from interrupts import Interrupted

from vactor_cloud import read_room
from vactor_cloud.read_room import ReadRoom, current_read, lent_while_waiting

#: a wait long enough never to end in a passing test
LONG = 60.0


def _in_thread(fn: object) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        outcome.append(fn())  # type: ignore[operator]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until(condition: object, seconds: float = 10.0) -> None:
    event = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if condition():  # type: ignore[operator]
            return
        event.wait(0.01)
    raise AssertionError("the condition never held")


def test_a_read_that_fills_the_room_exactly_does_not_wait() -> None:
    """Mutation: ``_fits`` with ``<`` for ``<=``: a read whose size is just the room left waited
    for another read to end."""
    room = ReadRoom(10)
    with room.taken(4, LONG, "a", "m"):
        assert not room.would_wait(6)
        thread, outcome = _in_thread(lambda: _take(room, 6))
        thread.join(10)
        assert outcome == ["ran"]


def _take(room: ReadRoom, size: int, wait: float = LONG, **kwargs: object) -> str:
    with room.taken(size, wait, "a", "m", **kwargs):  # type: ignore[arg-type]
        return "ran"


def test_reads_that_waited_and_ended_leave_no_count_behind() -> None:
    """Mutations: ``waiting`` not counted down after a wait; ``_running`` not counted down as a
    read gives its room back (the next read larger than the room, alone, waited: rule 2)."""
    room = ReadRoom(10)
    first = threading.Event()
    held = threading.Event()

    def holder() -> str:
        with room.taken(8, LONG, "a", "m"):
            held.set()
            first.wait(LONG)
        return "ran"

    holding, _ = _in_thread(holder)
    assert held.wait(10)
    waiter, outcome = _in_thread(lambda: _take(room, 8))
    _wait_until(lambda: room.waiting == 1)
    first.set()
    holding.join(10)
    waiter.join(10)
    assert outcome == ["ran"]
    assert room.waiting == 0
    assert not room.would_wait(1000), "a read larger than the room, alone, waits"


def test_a_lent_spare_wakes_a_read_already_waiting_for_room() -> None:
    """Mutation: ``lent_while_waiting`` without its ``notify_all``: a read of an actor's writer
    method already waiting for room when a read began to wait for that actor's call waited on
    (until another read ended, or its deadline)."""
    room = ReadRoom(10)
    go = threading.Event()
    lending = threading.Event()
    outcome: list[object] = []

    def lender() -> None:
        with room.taken(10, LONG, "reader", "m"):
            go.wait(LONG)
            with lent_while_waiting("writer"):
                lending.set()
                # The read waits for the writer's call, whose method makes the read below.
                borrower.join(10)
                outcome.append(not borrower.is_alive())

    borrower = threading.Thread(
        target=lambda: outcome.append(_take(room, 5, writers=("writer",))), daemon=True
    )
    holder = threading.Thread(target=lender, daemon=True)
    holder.start()
    _wait_until(lambda: room.would_wait(5, writers=("writer",)))
    borrower.start()
    _wait_until(lambda: room.waiting == 1)
    go.set()
    holder.join(15)
    assert outcome == ["ran", True]


def test_an_actor_no_read_waits_for_any_more_leaves_no_lender_list() -> None:
    """Mutation: the actor's entry in ``_lent`` kept once its last lender stopped waiting: one
    empty list per actor ever waited for, for the runtime's life."""
    room = ReadRoom(10)
    with room.taken(1, LONG, "a", "m"):
        for n in range(3):
            with lent_while_waiting(f"writer-{n}"):
                pass
    assert room._lent == {}


def test_a_read_made_on_another_thread_in_a_reads_context_is_not_nested() -> None:
    """Mutation: ``_nested`` without its thread check: a read made in a read's context on another
    thread (``asyncio.to_thread``) took no room, as if nested: reads fanned out so were
    unbounded."""
    room = ReadRoom(10)
    import contextvars

    with room.taken(10, LONG, "a", "m"):
        outer = current_read()
        context = contextvars.copy_context()
        seen: list[Any] = []

        def other_thread() -> None:
            with room.taken(10, LONG, "a", "m"):
                seen.append(current_read())

        thread = threading.Thread(target=lambda: context.run(other_thread), daemon=True)
        thread.start()
        thread.join(10)
        assert len(seen) == 1 and seen[0] is not outer
        assert seen[0].lender is outer


def test_a_read_that_ended_lends_no_spare() -> None:
    """Mutation: ``_spare`` without ``not r.ended``: a read handed on (``run_async``) by a read
    that had returned ran on that read's spare, whose room was already given back: each read
    returning so left one more state restored beyond the room."""
    room = ReadRoom(10)
    with room.taken(10, LONG, "a", "m"):
        ended = current_read()
    assert ended is not None and ended.ended
    thread, _ = _in_thread(lambda: _hold(room, 10))
    try:
        _wait_until(lambda: room.would_wait(10))
        assert room.would_wait(10, inside=ended)
    finally:
        RELEASE.set()
        thread.join(10)


def test_a_read_of_another_runtime_lends_no_spare() -> None:
    """Mutation: ``_spare`` without ``r.room is self``: a read of one runtime's actor, made inside
    a read of another runtime's, ran on that read's spare, outside its own runtime's room."""
    ours, theirs = ReadRoom(10), ReadRoom(10)
    reads: list[object] = []

    def hold_theirs() -> str:
        with theirs.taken(1, LONG, "b", "m"):
            reads.append(current_read())
            RELEASE.wait(LONG)
        return "ran"

    holders = [_in_thread(lambda: _hold(ours, 10))[0], _in_thread(hold_theirs)[0]]
    try:
        _wait_until(lambda: ours.would_wait(10) and bool(reads))
        assert ours.would_wait(10, inside=reads[0])  # type: ignore[arg-type]
    finally:
        RELEASE.set()
        for thread in holders:
            thread.join(10)


RELEASE = threading.Event()


def _hold(room: ReadRoom, size: int) -> str:
    with room.taken(size, LONG, "holder", "m"):
        RELEASE.wait(LONG)
    return "ran"


@pytest.fixture(autouse=True)
def _released() -> object:
    RELEASE.clear()
    yield
    RELEASE.set()


def test_a_nested_read_would_not_wait_even_with_its_reads_spare_lent() -> None:
    """Mutation: ``would_wait`` without rule 3's shortcut: a read nested in a read whose spare
    was lent (to a ``run_async`` read waiting for it) said it would wait, and its caller let go
    of the step it had fetched and fetched it again (it never waits: ``taken`` lets it in)."""
    room = ReadRoom(10)
    with room.taken(10, LONG, "a", "m"):
        outer = current_read()
        borrower, _ = _in_thread(lambda: _hold_on_spare(room, outer))
        _wait_until(lambda: outer is not None and outer.borrower is not None)
        try:
            assert not room.would_wait(10)
            with room.taken(10, 0.01, "a", "nested"):
                assert current_read() is outer
        finally:
            RELEASE.set()
            borrower.join(10)


def _hold_on_spare(room: ReadRoom, inside: object, size: int = 10) -> str:
    with room.taken(size, LONG, "b", "m", inside=inside):  # type: ignore[arg-type]
        RELEASE.wait(LONG)
    return "ran"


class _InterruptedAsSet:
    """Stands for ``read_room._current``: its first ``set`` on the main thread sets, then raises
    :class:`Interrupted` (Ctrl-C handled just as the call returned)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.fired = False

    def get(self) -> Any:
        return self.real.get()

    def set(self, value: Any) -> Any:
        token = self.real.set(value)
        if not self.fired and threading.current_thread() is threading.main_thread():
            self.fired = True
            raise Interrupted
        return token

    def reset(self, token: Any) -> None:
        self.real.reset(token)


def test_ctrl_c_as_a_read_begins_leaves_neither_its_room_taken_nor_it_current(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C lands as ``taken`` makes its read the current one, after it took room: the read
    gave back nothing (its room held for the runtime's life: every later read that did not fit
    beside it waited ``Settings.deadline``), and stayed this thread's current read (every later
    read on the thread was "nested" in it, and took no room at all)."""
    interrupted = _InterruptedAsSet(read_room._current)
    monkeypatch.setattr(read_room, "_current", interrupted)
    room = ReadRoom(10)
    with pytest.raises(Interrupted), room.taken(10, LONG, "a", "m"):
        raise AssertionError("the read ran")  # pragma: no cover
    assert interrupted.fired
    assert current_read() is None
    assert not room.would_wait(10), "the interrupted read still holds its room"


def test_a_read_that_fits_takes_room_rather_than_its_reads_spare() -> None:
    """Mutation: a read taking its read's spare whenever free, though it fitted in the room: it
    ran unaccounted, and the room took one more read than it had room for (the spare is for a
    read that would otherwise wait)."""
    room = ReadRoom(10)
    reads: list[Any] = []

    def outer() -> str:
        with room.taken(5, LONG, "a", "m"):
            reads.append(current_read())
            RELEASE.wait(LONG)
        return "ran"

    holders = [_in_thread(outer)[0]]
    _wait_until(lambda: bool(reads))
    holders.append(_in_thread(lambda: _hold_on_spare(room, reads[0], size=5))[0])
    try:
        _wait_until(lambda: room.would_wait(5) or reads[0].borrower is not None)
        assert reads[0].borrower is None, "a read that fitted ran on its read's spare"
        assert room.would_wait(5)
    finally:
        RELEASE.set()
        for thread in holders:
            thread.join(10)
