"""WorkerPool: a bounded pool of threads, where a task about to wait for another process hands
its place to the work queued behind it.

The runtime runs calls made with ``run_async`` on two of these (writes, and read-only calls),
each bounded by ``Settings.max_workers``. What ``concurrent.futures.ThreadPoolExecutor`` has no
public way to do: a task that is about to wait a long time for another process (a poster
waiting for the lease holder's fold, up to ``commit_timeout``) says so, ``with
pool.waiting():``, and stops counting against the bound meanwhile, so that an idle thread, or a
new one, runs the work queued behind it. (With as many contended actors as threads, and a
holder elsewhere that did not fold, a ``run_async`` call nobody ran itself waited until a
poster's ``commit_timeout``.)

So at most ``max_workers`` tasks run at once, plus one per task waiting so (and per task back
from such a wait that has not ended yet), and the pool has no more threads than that: a thread
with no task to take ends at once when the pool has more threads than it may run tasks,
and after ``idle`` seconds otherwise. No thread per call: tasks wait in the pool's queue.

Daemon threads: ``Runtime.close`` (and the exit hook that calls it) waits for what runs, then
ends the pool and joins its threads within its deadline; a method body still running past it
(which nothing can stop) does not hold the interpreter's exit, as the executor's threads did.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

__all__ = ["WorkerPool"]

logger = logging.getLogger("vactor_cloud")

#: seconds a thread with nothing to run waits for a task before it ends
IDLE_SECONDS = 30.0


class _Task:
    """A function and the future of its outcome."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return  # cancelled while queued
        try:
            result = self.fn()
        except BaseException as exc:  # handed to whoever waits on the future, whatever it is
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class WorkerPool:
    """At most ``max_workers`` tasks at once, plus one per task inside :meth:`waiting`."""

    def __init__(self, max_workers: int, name: str, *, idle: float = IDLE_SECONDS) -> None:
        if max_workers < 1:
            raise ValueError(f"a pool runs at least one task at once, got max_workers={max_workers}")
        self.max_workers = max_workers
        self._name = name
        self._idle_seconds = idle
        self._lock = threading.Lock()
        #: notified when a task is queued, a place frees up, or the pool shuts down
        self._wakeup = threading.Condition(self._lock)
        self._tasks: deque[_Task] = deque()
        #: threads started (or being started) and not ended: the ones the bound counts
        self._threads: set[threading.Thread] = set()
        #: every thread of the pool that may still run: one leaves ``_threads`` as it leaves its
        #: loop, a few lines before it ends (``threads()``, what a close joins, names it until then)
        self._all: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        #: threads being started that have not reached their loop yet (they will take a task)
        self._starting: set[threading.Thread] = set()
        #: threads waiting for a task; threads running one; those of them inside ``waiting()``
        self._idle = 0
        self._running = 0
        self._waiters: set[threading.Thread] = set()
        self._shut_down = False
        self._numbers = itertools.count()

    # -- what callers use -----------------------------------------------------------------
    def submit(
        self,
        fn: Callable[[], Any],
        *,
        when_done: Callable[[Future[Any]], object] | None = None,
        queued: list[bool] | None = None,
    ) -> Future[Any]:
        """Queue ``fn``; its future. ``when_done``: a done-callback of that future, registered
        before the task is queued (one registered once ``submit`` returned is lost to an
        interrupt in between, the task queued all the same). ``RuntimeError`` once the pool is
        shut down, or when no thread can be started for it (at interpreter exit). Raising
        (Ctrl-C too), it leaves ``fn`` out of the queue: it never runs (unless a thread had
        already taken it), and ``when_done`` is not called for it.

        ``queued``: a one-item list whose item is set True as the task is queued, False again if
        it is withdrawn: whether it runs (and ``when_done`` is called), for a caller that takes
        an interrupt around this call (as it began, or just after it returned: either way
        ``submit`` seems to have raised)."""
        task = _Task(fn)
        if when_done is not None:
            task.future.add_done_callback(when_done)
        try:
            with self._lock:
                if self._shut_down:
                    raise RuntimeError(f"cannot schedule new futures after shutdown ({self._name} pool)")
                if queued is not None:
                    queued[0] = True  # (before the append: an interrupt lands only as a call returns)
                self._tasks.append(task)
                thread = self._place_for_a_task()
            if thread is not None:
                self._start(thread)
        except BaseException:
            with self._lock:
                try:
                    self._tasks.remove(task)
                except ValueError:
                    pass  # never queued, or a thread took it (it runs)
                else:
                    if queued is not None:
                        queued[0] = False
            raise
        return task.future

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a task's long wait for something outside the pool: meanwhile its thread does
        not count against ``max_workers`` (an idle thread, or a new one, runs the work queued
        behind it). On a thread that is not this pool's (or already waiting): nothing."""
        me = threading.current_thread()
        with self._lock:
            ours = me in self._threads and me not in self._waiters
            if ours:
                self._waiters.add(me)
                thread = self._place_for_a_task()
        if not ours:
            yield
            return
        try:
            if thread is not None:
                try:
                    self._start(thread)
                except Exception as exc:  # (no thread to be had: the work waits for a place)
                    logger.debug("%s pool: no thread started beside a waiting task: %s", self._name, exc)
            yield
        finally:
            with self._lock:
                self._waiters.discard(me)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No task is taken any more (``cancel_futures``: the queued ones are cancelled, else
        they run first); idle threads end. ``wait``: join the threads (no deadline: see
        ``runtime_shutdown.join_threads`` for one)."""
        with self._lock:
            self._shut_down = True
            cancelled = list(self._tasks) if cancel_futures else []
            if cancel_futures:
                self._tasks.clear()
            self._wakeup.notify_all()
        for task in cancelled:
            task.future.cancel()
        if wait:
            for thread in self.threads():
                if thread is not threading.current_thread():
                    thread.join()

    def threads(self) -> list[threading.Thread]:
        """The pool's threads that are running now (a thread on its way out included)."""
        with self._lock:
            threads = list(self._all)
        return [thread for thread in threads if thread.is_alive()]

    def queued(self) -> int:
        """Tasks waiting for a thread."""
        return len(self._tasks)

    def running(self) -> int:
        """Tasks a thread has taken and not yet let go of: one counts until its thread dropped
        its function (and what that refers to), a little after its future is done."""
        return self._running

    # -- the threads ----------------------------------------------------------------------
    def _room(self) -> int:
        """(Lock held) Tasks that may start now."""
        return self.max_workers + len(self._waiters) - self._running

    def _place_for_a_task(self) -> threading.Thread | None:
        """(Lock held) A queued task may start: wake an idle thread for it, or return a new
        thread (not started: the caller starts it, outside the lock)."""
        room = self._room()
        if room <= 0 or not self._tasks:
            return None
        startable = min(len(self._tasks), room)
        if self._idle + len(self._starting) >= startable or len(self._threads) >= (
            self.max_workers + len(self._waiters)
        ):
            self._wakeup.notify()  # (threads between two tasks take one too)
            return None
        thread = threading.Thread(target=self._work, name=f"{self._name}_{next(self._numbers)}", daemon=True)
        self._threads.add(thread)
        self._all.add(thread)
        self._starting.add(thread)
        return thread

    def _start(self, thread: threading.Thread) -> None:
        try:
            thread.start()
        except BaseException:
            # Not started (no thread to be had), or interrupted (Ctrl-C) while starting: if it
            # has not reached its loop, it never counts (and returns at once if it starts).
            with self._lock:
                if thread in self._starting:
                    self._starting.discard(thread)
                    self._threads.discard(thread)
            raise

    def _work(self) -> None:
        me = threading.current_thread()
        with self._lock:
            if me not in self._starting:
                return  # its start was given up (see _start)
            self._starting.discard(me)
        try:
            while True:
                task = self._next_task(me)
                if task is None:
                    return
                try:
                    task.run()
                finally:
                    del task  # (its function and arguments go now, not at the next task)
                    with self._lock:
                        self._running -= 1  # (this thread looks for a task first: no wakeup)
        finally:
            with self._lock:
                self._threads.discard(me)

    def _next_task(self, me: threading.Thread) -> _Task | None:
        """The next task for thread ``me``; None: ``me`` ends (removed from the threads)."""
        with self._lock:
            while True:
                if self._tasks and self._room() > 0:
                    self._running += 1
                    return self._tasks.popleft()
                if (self._shut_down and not self._tasks) or len(self._threads) > (
                    self.max_workers + len(self._waiters)
                ):
                    self._threads.discard(me)  # (under the lock: the next count sees it gone)
                    return None
                self._idle += 1
                try:
                    woken = self._wakeup.wait(self._idle_seconds)
                finally:
                    self._idle -= 1
                if not woken and not (self._tasks and self._room() > 0):
                    self._threads.discard(me)
                    return None
