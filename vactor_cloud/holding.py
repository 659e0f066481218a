"""Holding an actor: who applies its queued writes, and when (DESIGN.md §10, "Who runs what").

A write is queued; a caller's thread that finds the actor idle takes it (caller runs) and
applies the queued writes batch by batch (``vactor_cloud.committer``), until its own call has
its outcome; a caller that finds it held waits, and takes over whatever is left when it is
released (a waiter never depends on a free pool thread); ``submit`` queues one pool task that
drains. While this process's callers are quiet, the folder lease holder folds other processes'
posts in rounds of pool tasks, and a post of ours given up on is folded by a pool task too.
A wait that would wait for itself is refused (``vactor_cloud.reentrancy``).

:class:`Holder` is a part of :class:`~vactor_cloud.core.ActorCore` (a mixin, over the commit
loop); it owns the fields in its ``__slots__``. What it needs of the core is declared at the
top of the class.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
import weakref
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from vactor_cloud._sync import interruptible_wait
from vactor_cloud.batch import PendingCall, current_call, fail_calls
from vactor_cloud.call_queue import CallQueue
from vactor_cloud.commit_notes import interrupted_note, noted_interrupted, started_elsewhere_note
from vactor_cloud.committer import CommitEnv, Committer
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import ActorBusyError, IntegrityError, ReentrantCallError, StorageError, VactorError
from vactor_cloud.folding import damaged_pause
from vactor_cloud.future import CallFuture, Waker
from vactor_cloud.post_cursor import applied
from vactor_cloud.reentrancy import (
    WaitingInsideWriter,
    call_cycle,
    held_here,
    holds_actor,
    lends_read_room,
    refuse_wait_cycle,
    unblock,
    waiting_writers,
)

__all__ = ["HoldEnv", "Holder"]

logger = logging.getLogger("vactor_cloud")


class HoldEnv(CommitEnv, Protocol):
    """What holding an actor needs from its runtime: what the commit loop needs
    (:class:`~vactor_cloud.committer.CommitEnv`), and the following."""

    def working(self) -> contextlib.AbstractContextManager[None]:
        """Around a thread's hold of the actor (shutdown waits for it to end)."""
        ...

    def in_cache(self, core: Any) -> bool:
        """Whether ``core`` (the actor core itself) is its actor's core in the cache."""
        ...


class Holder(Committer):
    """An actor core as its actor's holder: calls queued, waited for, and applied by the thread
    that holds the actor (``_drain``); the lease holder's rounds of folding for others
    (``_serve``), and the fold of a post of ours given up on (``_fold_given_up_posts``)."""

    __slots__ = (
        "_asked_held",
        "_drain_queued",
        "_drainer",
        "_orphans_queued",
        "_queue",
        "_serve_backoff",
        "_serve_queued",
        "_serving",
        "_waiters",
        "_wake",
        "asked_fold_idle",
    )

    if TYPE_CHECKING:
        # Of the actor core (vactor_cloud.core.ActorCore): its runtime.
        env: HoldEnv

    def __init__(self) -> None:
        super().__init__()
        #: writes waiting for the holder; None while the actor is idle (saves memory)
        self._queue: CallQueue | None = None
        #: ``threading.get_ident()`` of the thread applying the actor's writes (or folding for
        #: others), None while nobody is: an edge of the wait-for graph (``_blocked``)
        self._drainer: int | None = None
        #: a pool task that drains the queue is queued and has not started: ``submit`` queues no other
        self._drain_queued = False
        #: threads waiting for one of their calls: woken when the actor is released
        self._waiters: set[threading.Event] | None = None
        #: the lease holder folds others' posts from a pool thread while its callers are quiet,
        #: one round per pool task: whether a round runs, whether one is queued, and the
        #: backoff carried between rounds (listings that found nothing, folds that committed nothing)
        self._serving = False
        self._serve_queued = False
        self._serve_backoff = (0, 0)
        #: a pool task that folds a given-up post of ours nobody folds is queued (see
        #: ``_fold_given_up_posts_soon``): ``call_outcome`` queues no other
        self._orphans_queued = False
        #: asks (and tasks) that found the actor held here since it was last given up: the
        #: holder queues the task as it gives the actor up (``_fold_asked_while_held``); a
        #: round of serving whose listing began after them clears them
        self._asked_held = 0
        #: clear while such a task is queued or runs, or an ask waits for the actor to be given
        #: up (``_asked_held``): the exit hook waits for it (``Runtime.finish_queued_calls``)
        self.asked_fold_idle = threading.Event()
        self.asked_fold_idle.set()
        self._wake: threading.Event | None = None

    # -- submission -------------------------------------------------------------------
    def call(self, call: PendingCall) -> None:
        """Queue a write and apply it on this thread if the actor is idle; returns when it settled.

        Interrupted (Ctrl-C) before the call started, it is not applied (``_take_back``)."""
        try:
            self._enqueue(call)
            self.help(call.future, None)
        except BaseException as exc:
            self._take_back(call, exc)
            raise

    def submit(self, call: PendingCall) -> None:
        """Queue a write; a pool thread (or a waiter on its future) applies it.

        One pool task queued per actor serves every call queued behind it: a task per call
        piled up, one per ``run_async``, cancelled or not, behind a pool that slow methods kept
        busy. (Once shutdown began, always: the pool refuses it and the call fails at once.)

        Atomic with respect to an interrupt (Ctrl-C): raising, it leaves the call withdrawn
        (not applied: its caller got no future to see it by) and a drain queued for the calls
        of others that counted on the one it was handing to the pool."""
        try:
            self._enqueue(call)
            with self._mutex:
                queued, self._drain_queued = self._drain_queued, True
            if not queued or self.env.closed:
                self.env.spawn(self._drain_from_pool)
        except BaseException as exc:
            self._take_back(call, exc)
            # (The flag may say a drain is queued while none is: one more is harmless.)
            self.env.spawn(self._drain_from_pool)
            raise

    def _take_back(self, call: PendingCall, interrupt: BaseException) -> None:
        """(``submit``/``call`` interrupted, ``call`` perhaps queued) A call no thread started is
        withdrawn, failed with ``interrupt``: never applied behind its caller's back. One that
        another thread took into its batch goes on there, and ``interrupt`` says so."""
        if call.future.done():
            return
        if self._withdraw(call.future, interrupt):
            return
        if call.claim():  # never queued: nobody runs it
            call.deliver(Outcome(False, interrupt))
            return
        note = started_elsewhere_note(self.actor_id)
        if not isinstance(interrupt, Exception) and note not in getattr(interrupt, "__notes__", ()):
            interrupt.add_note(note)  # (an error, ``ReentrantCallError``, says what happened itself)

    def _enqueue(self, call: PendingCall) -> None:
        with self._mutex:
            queue = self._queue
            if queue is None:
                queue = self._queue = CallQueue()
            queue.append(call)
        if type(call.future) is not CallFuture:  # (a blocking run()'s: nobody can cancel it)
            # A call cancelled before it started leaves the queue at once (CallQueue); before,
            # only when a drainer reached it: behind a holder that runs long, a caller that kept
            # timing out and calling again piled them up, arguments and all.
            call.future.add_done_callback(Waker(functools.partial(_left_if_cancelled, weakref.ref(self))))
        wake = self._wake
        if wake is not None:
            wake.set()  # a serving lease holder takes it into its next fold

    @lends_read_room
    def help(self, future: Future[Any], timeout: float | None) -> None:
        """Wait until ``future`` is done, applying this actor's queued writes whenever nobody is.

        Returns early (future not done) only when ``timeout`` passed. Never waits for
        itself: if this actor's writer runs on this thread (an outer call of a cycle
        A -> B -> A), the call is withdrawn and fails with ``ReentrantCallError``; so is a call
        closing a cycle of such waits across threads (``refuse_wait_cycle``). A call
        still queued (not started) after ``max(Settings.deadline, Settings.commit_timeout)``
        seconds in which the actor made no progress (its holder stuck: a method running that
        long, or a cycle of calls across threads) is withdrawn and fails with ``ActorBusyError``:
        it was not applied. A call that started is waited for: its commit is bounded.
        """
        if future.done():
            return
        if current_call() is None and not getattr(waiting_writers, "stack", None):
            if self.actor_id in held_here():
                # This thread applies the actor's calls, and was interrupted to make this one: a
                # signal handler (SIGTERM's "save progress") run in the middle of a commit. It
                # waited for itself for max(deadline, commit_timeout), then was ActorBusyError.
                error = ReentrantCallError(
                    f"a call to actor {self.actor_id!r} was made on the thread that is committing "
                    "that actor's calls, which it interrupted (a signal handler, or code run inside "
                    "a commit): it would wait for itself; it was not applied. Make the call once "
                    "the interrupted one returned (a signal handler can set a flag the main code reads)"
                )
                if not self._withdraw(future, error):
                    raise error
                return
            self._help(future, timeout)  # no actor method runs on this thread: nothing to refuse
            return
        cycle = call_cycle(self.actor_id)
        if cycle is not None:
            error = ReentrantCallError(
                f"a call to actor {self.actor_id!r} waits for that actor while a writer method of it "
                f"runs on this same thread (a call cycle {cycle}): it would wait for itself; it was "
                "not applied. Let the outer method do that work itself, or call the actor after "
                "its method has returned"
            )
            if not self._withdraw(future, error):
                raise error
            return
        with WaitingInsideWriter():
            self._help(future, timeout)

    def _help(self, future: Future[Any], timeout: float | None) -> None:
        """``help``'s loop (see there)."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        #: (set once this call first waits: the common caller drains at once) how long a
        #: holder may make no progress, the step it was at, and when that wait ends
        bound = progress = stalled_at = -1.0
        wake: threading.Event | None = None
        try:
            while not future.done():
                with self._mutex:
                    claimed = self._drainer is None and bool(self._queue)
                    if claimed:
                        self._drainer = threading.get_ident()
                    elif wake is None:
                        wake = threading.Event()
                        if self._waiters is None:
                            self._waiters = set()
                        self._waiters.add(wake)
                        future.add_done_callback(Waker(lambda _, w=wake: w.set()))  # type: ignore[misc]
                if claimed:
                    self._drain_claimed(future)
                    continue
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    return
                step = -1 if self.record is None else self.record.step
                if bound < 0:
                    bound = max(self.env.settings.deadline, self.env.settings.commit_timeout)
                    progress, stalled_at = step, now + bound
                elif step != progress:
                    progress, stalled_at = step, now + bound
                elif now >= stalled_at:
                    busy = ActorBusyError(
                        f"actor {self.actor_id!r}: this call waited {bound:g} s "
                        "(max of Settings.deadline and commit_timeout) for the actor's writer, "
                        "held all that time by another thread without progress (a method "
                        "running that long, or a cycle of calls across threads: A -> B -> A); "
                        "it was withdrawn before it started: not applied, it can be retried"
                    )
                    if self._withdraw(future, busy):
                        return
                    stalled_at = now + bound  # it started: its batch settles it
                assert wake is not None
                if timeout is None and refuse_wait_cycle(self, future):
                    continue  # a call of the cycle was withdrawn: ours, or one that frees the holder
                try:
                    interruptible_wait(wake.wait, min(remaining, stalled_at - now))
                except BaseException as exc:
                    # Interrupted (Ctrl-C) while queued behind another thread: a call not started
                    # is withdrawn with it, never applied later behind its caller's back. One that
                    # thread already took into its batch goes on there: the interrupt says so.
                    if not self._withdraw(future, exc):
                        exc.add_note(started_elsewhere_note(self.actor_id))
                    raise
                finally:
                    if timeout is None:
                        unblock()
                wake.clear()
        finally:
            if wake is not None:
                with self._mutex:
                    if self._waiters is not None:
                        self._waiters.discard(wake)
                        if not self._waiters:
                            self._waiters = None

    def _drain_claimed(self, future: Future[Any]) -> None:
        """(``_help``, this thread just took the actor) Drain until ``future`` is done. An
        interrupt (Ctrl-C) landing before the drain began gives the actor up: it stayed held
        by a drain that never ran, and every later call waited for it."""
        try:
            self._drain(until=future)
        except BaseException as exc:
            if self._drainer == threading.get_ident():
                self._withdraw(future, exc)  # (not started: never applied behind its caller's back)
                if self._release():
                    self.env.spawn(self._drain_from_pool)
            raise

    def queued_futures(self) -> list[Future[Any]]:
        """The futures of this actor's writes queued here that no thread has started."""
        with self._mutex:
            return [call.future for call in self._queue or ()]

    def queued_methods(self) -> list[str]:
        """The methods of this actor's writes queued here that no thread has started."""
        with self._mutex:
            return [call.method for call in self._queue or ()]

    def _drop_cancelled(self) -> None:
        """(A queued call's future was cancelled) Let the queue drop it (see ``CallQueue``)."""
        with self._mutex:
            queue = self._queue
            if queue is not None:
                queue.drop_cancelled()
                if not queue:
                    self._queue = None

    def _withdraw(self, future: Future[Any], error: BaseException) -> bool:
        """(``help``'s helper) Take the queued, not yet started call of ``future`` out of the
        queue and fail it with ``error``: True. False when it is not queued (it runs or ran)."""
        with self._mutex:
            queue = self._queue
            found = next((c for c in queue if c.future is future), None) if queue else None
            if found is None or queue is None:
                return False
            queue.remove(found)
        if found.claim():
            found.deliver(Outcome(False, error))
        return True

    def _drain_from_pool(self) -> None:
        with self._mutex:
            self._drain_queued = False
            if self._drainer is not None or not self._queue:
                return
            self._drainer = threading.get_ident()
        self._drain(until=None)

    def _release(self, *, serve: bool = True) -> bool:
        """Give the actor up; wake the waiters. True if writes are left for someone else.
        If we hold the folder lease (and ``serve``), a pool task goes on folding others' posts;
        if its last quarter has begun (folds renew it), nothing folds with it: it is released."""
        with self._mutex:
            self._drainer = None
            left = bool(self._queue)
            if not left:
                self._queue = None
            waiters = list(self._waiters or ())
            serve = serve and not left and not self._serving and not self._serve_queued
        for wake in waiters:
            wake.set()
        if not left:
            # (Descheduled after a fold, this thread may get here past the lease's margin: no
            # round starts below, and a round's end was the only place that released it.)
            self._release_nearly_lapsed_lease()
        if serve and self._holding() and not self.env.closed:
            with self._mutex:
                if self._serve_queued:
                    return left
                self._serve_queued = True
            try:
                self.env.spawn(self._serve)
            except BaseException:
                # Interrupted (Ctrl-C) handing the round over: none is queued, and the flag
                # that said one was kept every later release from queueing one (for good).
                with self._mutex:
                    self._serve_queued = False
                raise
        if not left:
            self._fold_asked_while_held()
        return left

    def _claim_batch(self, max_batch: int, batch: list[PendingCall] | None = None) -> list[PendingCall]:
        """Take up to ``max_batch`` queued calls that no other thread has claimed, into ``batch``.

        ``batch`` is the caller's list: interrupted (Ctrl-C) half way, it holds every call taken
        out of the queue or claimed so far (each goes into it before its claim, and leaves the
        queue after), for the caller to fail; none is left claimed, or out of the queue, with
        nobody to settle it."""
        if batch is None:
            batch = []
        with self._mutex:
            queue = self._queue
            while queue and len(batch) < max_batch:
                call = queue[0]
                batch.append(call)
                if not call.claim():
                    batch.pop()  # (cancelled before it started: its caller has its outcome)
                queue.popleft()
        return batch

    def _fail_unsettled(self, batch: list[PendingCall]) -> None:
        """A call ``_commit`` returned without settling would leave its caller waiting
        forever: a defect, reported to the caller (and logged) rather than a hang."""
        left = [c for c in batch if not c.future.done()]
        if left:
            logger.error(
                "actor %r: %d call(s) left unsettled by a commit (a defect)", self.actor_id, len(left)
            )
            fail_calls(
                left,
                VactorError(
                    f"actor {self.actor_id!r}: the commit ended without settling this call (a defect in "
                    "vactor_cloud: please report it); the call may or may not have been applied"
                ),
            )

    @holds_actor
    def _drain(self, until: Future[Any] | None) -> None:
        """Apply queued writes batch by batch (this thread holds the actor).

        With ``until``, stop once that future is done: the caller gets its
        result without also serving every later call; what is left goes to a
        waiter or the pool.
        """
        with self.env.working():
            self._drain_batches(until)

    def _drain_batches(self, until: Future[Any] | None) -> None:
        max_batch = self.env.settings.max_batch
        while True:
            batch: list[PendingCall] = []
            try:
                # (In the try: an interrupt landing as the calls are claimed fails those claimed.)
                self._claim_batch(max_batch, batch)
                if batch:
                    self._commit(batch)
            except BaseException as exc:
                # Not from a method (those are caught per call): an interrupt
                # reaching this thread while it waited on I/O. Nothing may hang.
                if batch and not isinstance(exc, Exception) and not noted_interrupted(exc, self.actor_id):
                    # Ctrl-C, a signal handler's SystemExit (the commit's own note, when it has
                    # one, knows more: see _commit_attempts)
                    exc.add_note(interrupted_note(self.actor_id, batch))
                fail_calls(batch, exc)
                if self._release():
                    self.env.spawn(self._drain_from_pool)
                raise
            if not batch:
                if self._release():
                    self.env.spawn(self._drain_from_pool)
                return
            self._fail_unsettled(batch)
            if until is not None and until.done():
                if self._release():
                    self.env.spawn(self._drain_from_pool)
                return

    def wake(self) -> None:
        """Wake a lease holder waiting between folds (it looks at the runtime again: shutdown)."""
        wake = self._wake
        if wake is not None:
            wake.set()

    @holds_actor
    def _serve(self) -> None:
        """The lease holder, on a pool thread: fold others' posts while this process's callers
        are quiet (their calls join the next fold). One round (a fold, or a listing and a short
        wait) per pool task: the next round is queued behind whatever else waits for the pool.
        Serving a loop on one task kept the thread for as long as other processes posted, and
        with ``max_workers`` contended actors pool work (``run_async`` waited on with a timeout,
        or awaited) waited all that time. Ends when the lease is given up, or at shutdown;
        and at the first round after the cache evicted the core, which gives the lease up: a
        holder serving on kept its state out of the cache's count for as long as others posted."""
        with self._mutex:
            self._serve_queued = False
        with self.env.working():
            self._serve_round()

    def _serve_round(self) -> None:
        with self._mutex:
            if self._drainer is not None or self._serving:
                return
            self._drainer = threading.get_ident()
            self._serving = True
            if self._wake is None:
                self._wake = threading.Event()
            wake = self._wake
        #: listings in a row that found nothing (the next one waits longer, up to 10 ms), and
        #: fold-only commits in a row that committed nothing: kept from round to round
        empty, stuck = self._serve_backoff
        again = False
        try:
            if self._held_until != -math.inf and not self.env.in_cache(self):
                # Evicted between two rounds: serving on would keep the actor's state alive
                # outside the cache's bounds for as long as other processes post. Give the lease
                # up, as an idle holder does (their posters take it over), and let the core go.
                self._give_up_lease()
            if self._holding() and not self.env.closed:
                again = True
                batch = self._claim_batch(self.env.settings.max_batch)
                if batch:
                    self._commit(batch)
                    self._fail_unsettled(batch)
                    empty = 0
                    return
                wake.clear()
                self._gather_posts(wake)
                if wake.is_set():
                    return  # our callers have calls: they fold now
                #: asks that found the actor held before this listing began: settled by it
                asked = self._asked_held
                try:
                    keys = self._keys_with_work()
                except (StorageError, IntegrityError):
                    keys = []
                    asked = 0
                if keys:
                    # (no cached step, after a compaction's forget(): the commit loads it)
                    before = self.record.step if self.record is not None else None
                    self._commit([], keys)
                    if self.record is None or self.record.step != before:
                        # (Posts folded in post order: any left wait for the next rounds.)
                        self._asks_settled(asked)
                        empty = stuck = 0
                        return
                    # Nothing committed: the posts went meanwhile, or the first one waits
                    # behind a damaged read. Pause before listing and reading it again
                    # (not once the lease is given up: serving ends).
                    stuck += 1
                    if self._holding():
                        wake.wait(damaged_pause(stuck))
                    return
                self._asks_settled(asked)  # (no post waits: the asked-of ones were folded)
                stuck = 0
                # About a put's time after a fold; less often while nothing comes (a LIST each).
                wake.wait(min(0.01, max(0.001, self._put_seconds) * 1.5 ** min(empty, 8)))
                empty += 1
        except Exception as exc:  # a defect or a closed store: the next caller takes over
            again = False
            logger.debug("actor %r: folding for others stopped: %s", self.actor_id, exc)
            if not self.env.stopped and self._held_until != -math.inf:
                # Serving ends here: give the lease up, as an idle holder does. Kept, it was
                # read as held by the other processes' posters, who waited for it to expire
                # (``lease_seconds``) for a fold that no longer came. (Once stopped, the
                # shutdown releases it: a release started now would be refused.)
                self._give_up_lease()
        finally:
            self._serve_backoff = (empty, stuck) if again else (0, 0)
            with self._mutex:
                self._serving = False
            # (Acts only once the lease nears its end: when serving ends anyway.)
            self._release_nearly_lapsed_lease()
            if self._release(serve=again):
                self.env.spawn(self._drain_from_pool)

    def _fold_given_up_posts_soon(self) -> None:
        """(``call_outcome`` found a post of ours whose caller gave up still pending) Queue a
        pool task that folds the pending posts if nobody else holds the folder lease.

        A call that gave up (``CallPendingError``) before it tried the lease (its
        ``commit_timeout`` passed while its post was written), or whose lease holder died
        since, left a post nobody folds: without this, it waited for a call to the actor
        that lost a race (an uncontended commit does not look at the inbox), and
        ``call_outcome``, asked again and again, said pending all that time. Not on the
        caller's thread: ``call_outcome`` stays a read (ask again later). A queued fold is
        waited for by the exit hook and by ``shutdown()`` (``Runtime.finish_queued_calls``);
        a close past that wait cancels it. While this process holds the actor (a drain of its
        own calls, which commits without listing the inbox; a round of serving; the ask's
        fold task after its last listing) the ask is remembered (``_asked_held``) and the
        task queued when the actor is given up (``_fold_asked_while_held``), waited for by
        the exit hook all the same; a round of serving whose listing began after the ask
        settles it. Nothing is queued when another process is known to fold
        (``_other_folds``: a lease of theirs read lately), nor once shutdown began."""
        self._queue_asked_fold()

    def _queue_asked_fold(self) -> bool:
        """(``_fold_given_up_posts_soon``) False if refused: nothing queued nor remembered."""
        if self.env.closed or self._other_folds():
            return False
        marked = False
        try:
            # (The mark is set inside the ``try``: a Ctrl-C landing as the lock is left, before
            # the task was queued, kept it set with no task to clear it, and no later ask queued
            # a fold again: pending for good.)
            with self._mutex:
                if self._orphans_queued:
                    return True
                self.asked_fold_idle.clear()
                if self._drainer is not None or self._serving or self._serve_queued:
                    self._asked_held += 1  # (the holder queues it as it gives the actor up)
                    return True
                self._orphans_queued = marked = True
            self.env.spawn(self._fold_given_up_posts, on_shutdown=lambda _: self.asked_fold_idle.set())
            return True
        except BaseException:
            if marked:
                with self._mutex:  # (refused or interrupted: none is queued; the next ask queues one)
                    self._orphans_queued = False
                    self._asked_fold_settled()
            raise

    def _fold_asked_while_held(self) -> None:
        """(``_release``, the actor given up with no writes left) Queue the fold that asks
        (or a task that found the actor held) left to the holder (``_asked_held``), unless this
        process holds the actor again or serves it (that holder's release queues it). Refused
        (another process folds, shutdown began), the asks are settled: nothing is waited for.
        (Settled only then: a task queued here may have started, and holds the actor.)"""
        with self._mutex:
            if not self._asked_held or self._drainer is not None or self._serving or self._serve_queued:
                return
            self._asked_held = 0
        queued = False
        try:
            queued = self._queue_asked_fold()
        finally:
            if not queued:
                with self._mutex:
                    self._asked_fold_settled()

    def _asks_settled(self, asked: int) -> None:
        """(A round of serving, after a listing that found no post waiting, or a fold of what
        it found) The ``asked`` asks that found the actor held before that listing began are
        settled: the holder queues no fold for them. Later ones are kept."""
        if asked:
            with self._mutex:
                if self._asked_held == asked:
                    self._asked_held = 0
                    self._asked_fold_settled()

    def _asked_fold_settled(self) -> None:
        """(Under ``_mutex``; no asked fold task holds the actor) Say the asked fold idle unless
        a task is queued, or an ask waits for the actor to be given up."""
        if not (self._orphans_queued or self._asked_held):
            self.asked_fold_idle.set()

    @holds_actor
    def _fold_given_up_posts(self) -> None:
        """(A pool task: ``_fold_given_up_posts_soon``) Holding the actor, list the inbox; if a
        post waits there, take the folder lease if it is free and fold every pending post, then
        release the lease unless a listing finds more posts waiting (then the holder's rounds of
        serving go on, ``_release``, and give it up once idle, as after any fold)."""
        try:
            with self._mutex:
                self._orphans_queued = False
                if self._drainer is not None or self._serving:
                    # This process works on the actor: its holder queues the fold as it gives
                    # the actor up (a drain of our own calls does not list the inbox).
                    self._asked_held += 1
                    return
                self._drainer = threading.get_ident()
            try:
                with self.env.working():
                    self._fold_unless_another_does()
            finally:
                if self._release():
                    self.env.spawn(self._drain_from_pool)
        finally:
            with self._mutex:
                self._asked_fold_settled()  # (not if an ask queued the next one meanwhile)

    def _fold_unless_another_does(self) -> None:
        pending = self._outstanding
        try:
            if self.env.closed:
                return
            # The inbox first (one LIST, the fold's own): a post another process folded since
            # the ask is gone, and no lease is read or taken for nothing. (Any post is work
            # here, an expired one too: the fold deletes it, and the ask then says never.)
            keys = self._post_keys()
            if not keys:
                if pending is not None:
                    self.env.run(self.revalidate())  # (applied? then our next call races)
            elif self._deleted_as_applied(keys):
                pass  # left behind by a folder that died after its step: deleted, nothing to fold
            # (A lease another process holds: its folds apply our post; if it dies, its lease
            # expires and the next ask takes it.)
            elif self._lease_for_fold():
                # A post waits for this fold: not idle, however long the take took (taken after
                # combine_window, the fold-only commit gave the lease up before it folded).
                self._foreign_at = time.monotonic()
                # A fold-only commit: ours among the pending posts, in post order.
                self._commit([], keys)
                self._release_unless_posts_wait()
        except Exception as exc:  # a defect or a closed store: the next ask tries again
            logger.debug("actor %r: folding a given-up post stopped: %s", self.actor_id, exc)
            if not self.env.stopped and self._held_until != -math.inf:
                self._give_up_lease()  # (as serving gives it up: posters must not wait for it)
            return
        record = self.record
        if (
            pending is not None
            and self._outstanding is pending
            and record is not None
            and applied(record.extra, pending.post.sender, pending.post.seq)
        ):
            self._outstanding = None  # applied: our next batch need not post behind it

    def _release_unless_posts_wait(self) -> None:
        """(After the fold an ask queued) The lease is released at once, not after
        ``combine_window`` of rounds of serving (a LIST every 10 ms: about a hundred for a
        process that only asked), unless a listing finds posts waiting: then serving goes on
        as after any fold. A post written after this listing is folded by its poster, who
        reads the lease again when no step comes (docs/protocol.md)."""
        held_until = self._held_until
        if held_until != -math.inf and not self._keys_with_work():
            self._give_up_lease(held_until)


def _left_if_cancelled(core: weakref.ref[Holder], future: Future[Any]) -> None:
    """(Done-callback of a queued call's future; the core by weak reference: a future kept
    after its call keeps no core alive) A cancelled call leaves its core's queue."""
    if future.cancelled():
        alive = core()
        if alive is not None:
            alive._drop_cancelled()
