"""Creations of actors in one process: of one id one at a time (:class:`CreationTurns`), and
those started without waiting for them (:class:`Creation`)."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import threading
from collections.abc import Callable, Iterator

from vactor_cloud import _sync
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.errors import ReentrantCallError


class CreationTurns:
    """Creations of one actor id in one process, one at a time.

    Of the threads that call ``get_or_create`` on one new id, the first runs ``__init__`` and
    the others wait for its outcome, then look again (created: they get that actor; failed: the
    next one tries): one creation alone commits, and without turns 64 threads would run it 64
    times.
    Turns are per id: a creation inside another's ``__init__`` goes on. One that would wait for
    a creation waiting, through others, for its own thread (an ``__init__`` creating its own
    actor, directly or through another's ``__init__``) raises :class:`ReentrantCallError`, so
    that the inner creation cannot commit and the outer ``__init__``'s work be thrown away.
    """

    __slots__ = ("_ended", "_lock", "_running", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: actor id -> the thread creating it, and what it sets once done
        self._running: dict[str, tuple[int, threading.Event]] = {}
        #: thread -> the actor id whose creation it waits for
        self._waiting: dict[int, str] = {}
        #: how many creations (of any id) have ended: see ``turn``'s ``looked``
        self._ended = 0

    @property
    def ended(self) -> int:
        return self._ended

    @contextlib.contextmanager
    def turn(self, actor_id: str, looked: int) -> Iterator[bool]:
        """True: this thread creates ``actor_id`` (others wait until the block ends); False: it
        waited for another thread's creation, which has ended, or one ended since the caller
        looked for the actor (``looked``: ``ended`` then): look again."""
        me = threading.get_ident()
        with self._lock:
            running = self._running.get(actor_id)
            missed = running is None and self._ended != looked
            if missed:
                pass  # a creation ended since the caller looked: it may have been this one
            elif running is None:
                done = threading.Event()
                self._running[actor_id] = (me, done)
            else:
                if self._waits_for(running[0], me):
                    raise ReentrantCallError(
                        f"actor {actor_id!r} is being created inside its own __init__ (directly, or "
                        "through the __init__ of an actor it creates): it would wait for itself; it "
                        "was not created. Create it outside its __init__, or create the other actor "
                        "from a method"
                    )
                done = running[1]
                self._waiting[me] = actor_id
        if missed:
            yield False
            return
        if running is not None:
            try:
                _sync.interruptible_wait(done.wait, None, forever=None)  # (an __init__ may take long)
            finally:
                with self._lock:
                    del self._waiting[me]
            yield False
            return
        try:
            yield True
        finally:
            with self._lock:
                del self._running[actor_id]
                self._ended += 1
            done.set()

    def created_by_me(self, actor_id: str) -> bool:
        """Whether this thread creates ``actor_id`` now, or waits, through others' creations,
        for a thread that does (its ``__init__`` runs on this thread, maybe a few calls up)."""
        me = threading.get_ident()
        with self._lock:
            running = self._running.get(actor_id)
            return running is not None and self._waits_for(running[0], me)

    def _waits_for(self, thread: int, me: int) -> bool:
        """Whether ``thread`` is ``me`` or waits, through others' creations, for ``me``."""
        seen: set[int] = set()
        while thread != me:
            if thread in seen:
                return False
            seen.add(thread)
            waited = self._waiting.get(thread)
            running = self._running.get(waited) if waited is not None else None
            if running is None:
                return False
            thread = running[0]
        return True


class Creation:
    """A creation this process started without waiting for it (``Settings.wait_for_init=False``).

    Writer calls made while it is pending are queued here, in order, and
    submitted (or failed with the creation's exception) when it settles.
    """

    __slots__ = ("_claims", "deferred", "definition", "done", "error", "lock", "settled", "start", "store")

    def __init__(self, definition: ActorDefinition, store: str = "") -> None:
        self.definition = definition
        #: the store it creates the actor in (``describe()``): its failure speaks for that one alone
        self.store = store
        self.lock = threading.Lock()
        self.deferred: list[Callable[[BaseException | None], None]] = []
        self.settled = False
        self.error: BaseException | None = None
        self.done = threading.Event()
        #: runs the creation on the calling thread unless a thread has started it (or shutdown
        #: settled it): the pool's task, and any thread that waits for the creation, call it
        self.start: Callable[[], None] = lambda: None
        self._claims = itertools.count()

    def claim(self) -> bool:
        """True for exactly one caller (``next`` on a count is atomic): who runs (or fails) it."""
        return next(self._claims) == 0

    def defer(self, fn: Callable[[BaseException | None], None]) -> None:
        """Run ``fn(error)`` once the creation settled: now, if it has. (A caller that saw it
        pending and then found it settled went on as though none were pending: a writer call
        met no actor, ``ActorNotFoundError``, where it should have raised the failure.)"""
        with self.lock:
            if not self.settled:
                self.deferred.append(fn)
                return
        fn(self.error)

    def wait(self) -> BaseException | None:
        """Wait for the creation to settle (running it on this thread if no thread has started
        it); its exception, if it failed."""
        self.start()
        _sync.interruptible_wait(self.done.wait, None, forever=None)
        return self.error

    def settle(self, error: BaseException | None) -> None:
        """Run every deferred function (in order, under the lock: a ``defer`` after waits for
        them), then raise the first exception one raised (an interrupt taken in a hand-over
        stopped the rest, whose callers waited for good)."""
        if error is not None:
            _forget_locals(error)
        with self.lock:
            self.settled, self.error = True, error
            deferred, self.deferred = self.deferred, []
            raised = _run_each(deferred, error)
        if raised is not None:
            raise raised


#: the code flags of a frame that may be suspended, not finished (see ``_forget_locals``)
_SUSPENDABLE = (
    inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
)


def _forget_locals(error: BaseException) -> None:
    """Clear the locals of the finished frames ``error`` (and each exception chained to it, and
    each member of a group) passed through: a failed creation is kept (``ready()`` raises it
    for as long as its handle lives), and ``__init__``'s frame held the arguments it was given.
    The traceback still prints, line by line."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        tb = exc.__traceback__
        left = False  # whether the exception left the frame (the traceback's first one caught it)
        while tb is not None:
            frame = tb.tb_frame
            # A generator's or a coroutine's frame only if the exception left it (finished it):
            # clearing one still suspended (in the handler that caught it) would close it
            # (before Python 3.13). A frame still running is left as it is.
            if left or not frame.f_code.co_flags & _SUSPENDABLE:
                with contextlib.suppress(RuntimeError):
                    frame.clear()
            tb, left = tb.tb_next, True
        pending += (exc.__cause__, exc.__context__)
        if isinstance(exc, BaseExceptionGroup):  # (each member has a traceback of its own)
            pending += exc.exceptions


def _run_each(
    fns: list[Callable[[BaseException | None], None]], error: BaseException | None
) -> BaseException | None:
    """Call each of ``fns`` with ``error``, in order, whatever one raises; the first exception.

    The loop itself runs inside the ``try``: an interrupt (Ctrl-C) lands where Python code goes
    on, also as the loop goes back for the next function, and one taken there, outside the
    ``try``, stopped the rest. The iterator is shared by the passes: an interrupt taken between
    two calls neither skips the next function nor calls the last one again."""
    rest = iter(fns)
    raised: BaseException | None = None
    while True:
        try:
            for fn in rest:
                fn(error)
            return raised
        except BaseException as exc:
            raised = raised or exc
