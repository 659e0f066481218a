"""Review h243: a mutation sweep of the runtime's parts split out of ``runtime.py`` after h160's
sweep of it: ``worker_pool.py`` (P), ``runtime_work.py`` (W: the pieces of work a close waits
for; ``run``, ``bounded``, ``spawn``, ``background``), ``runtime_shutdown.py`` (S: ``close`` and
its waits), ``runtime_creation.py`` (C: ``get_or_create``'s creations) and ``actor_runtime.py``
(R: the runtime's fields and its cache of cores).

159 hand-made mutations, one at a time, each run on the memory lane against the modules that
test that code: P against h158_worker_pool, pool, queues, h166_runtime_bounds,
exit_queued_calls, h160_runtime_sweep, shutdown_async_work; W against h160_runtime_sweep, pool,
shutdown_async_work, own_runtime_waits, h149_deadline_reason, h166_runtime_bounds, queues,
h165_call_queue, shutdown_retry_message, h146_cancel_in_creation; S against h160_runtime_sweep,
h196_shutdown_folds, h213_cut_off_names, h209_shutdown_stalled_fold, h189_exit_budget,
own_runtime_waits, queues, shutdown_async_work, main_thread_waits, h181_stalled_ask_fold, pool,
h188_unpinned_guards; C against h160_runtime_sweep, h150_ready_after_failed_creation,
h153_creation_hand_over, wait_for_init, h146_cancel_in_creation, failed_creation_locals,
h144_fork_in_init, cancellation, h159_creation_locals, h151_failed_creation_memory; R against
h160_runtime_sweep, h166_runtime_bounds, actor_cache, runtime, h188_unpinned_guards,
execution_model, h179_given_up_fold, long_running. 85 were killed there. The survivors (all but
P03, P10, the R ones, and S37, S39, S42, C03b, C14, C24, run last) were then run against a wider
group (the lease, inbox, post-delete, Ctrl-C-at-exit, subtask, delete-key and input-edge
modules; C09, S06 and S14 on the local lane too): 12 killed there (named). Of the rest, 43 are
killed by the tests here (each test's docstring names its mutations; five of the wider group's
too), 14 are equivalent, 4 are not killed (notes e, p, q, r); C03 did not compile (C03b is it).
None showed a defect of the unmutated code. "killed by" names the module (``test_`` /
``test_review_`` left off) whose test failed first; "h243" a test here, by words of its name.

==== =================================================== ======== ============================================
id   mutation                                            survived killed by / why
==== =================================================== ======== ============================================
P01  max_workers 0 accepted                              yes      h243 (at least one)
P02  _Task.run: BaseException escapes the future         no       h158_worker_pool
P03  _Task.run: a cancelled task runs                    yes      h243 (cancelled while queued)
P04  submit after shutdown accepted                      no       pool
P05  submit: queued not set                              no       pool
P06  submit: new thread never started                    no       h158_worker_pool
P07  submit: withdrawn task still said queued            no       pool
P08  waiting: thread not counted as waiting              no       h158_worker_pool
P09  waiting: waiter kept after the wait                 no       h158_worker_pool
P10  waiting: no thread started beside a waiting task    yes      h243 (queued before a wait)
P11  waiting: a failed thread start raised in the task   yes      h243 (thread cannot start)
P12  shutdown: cancel_futures ignored                    no       pool
P13  shutdown: idle threads not woken                    no       h158_worker_pool
P14  shutdown(wait=True) joins nothing                   no       pool
P15  threads(): a thread on its way out not named        no       pool
P16  _room: waiters not counted                          no       h158_worker_pool
P17  _place_for_a_task: room 0 starts a thread           yes      equivalent (a)
P18  _place_for_a_task: startable not cut to room        yes      equivalent (b)
P19  _place_for_a_task: one thread too many started      yes      equivalent (h)
P20  _place_for_a_task: thread count not bounded         yes      h243 (between tasks)
P21  _place_for_a_task: idle thread not woken            no       h158_worker_pool
P22  _start: a thread that never started still counted   no       pool
P23  _work: a given-up thread runs anyway                no       h158_worker_pool
P24  _work: running not decremented                      no       h158_worker_pool
P25  _work: last task kept until the next                no       h158_worker_pool
P26  _next_task: room not checked                        no       pool
P27  _next_task: shut down, a thread ends, tasks queued  yes      equivalent (c)
P28  _next_task: surplus thread stays                    no       pool
P29  _next_task: idle thread never ends                  no       pool
P30  _work: thread kept counted at its end (finally)     yes      equivalent (d)
P31  _next_task: idle-ended thread still counted         yes      h243 (as an idle thread leaves)
W01  run: piece on no thread (close waits for itself)    yes      h243 (signal handler)
W02  spawn: task not said on its thread                  yes      h243 (pool that shuts down)
W03  end: waiter not woken                               no       h160_runtime_sweep
W04  _others counts own                                  no       h160_runtime_sweep
W05  wait_done: says nothing left at timeout             no       h160_runtime_sweep
W06  wait_done: not counted waiting                      no       h160_runtime_sweep
W07  runs_on: an ended piece begun again                 yes      equivalent (j)
W08  _Working: piece not ended on interrupt              no       pool
W09  run: stopped runtime runs                           no       h160_runtime_sweep
W10  run: cut off raises the bridge's own                yes      h243 (cut off by a close)
W11  run: deadline without hint                          yes      h243 (deadline's hint)
W12  run: shutdown's CancelledError raw                  yes      h243 (awaited work cut off)
W13  run: coro not closed when not handed                no       pool
W14  run: piece never ended                              no       h160_runtime_sweep
W15  run: OPERATION not reset                            yes      h243 (context as found)
W16  bounded: stopped runtime runs                       no       shutdown_async_work
W17  bounded: a request's timeout taken for the deadline yes      h243 (own request's timeout)
W18  bounded: cut off raises raw CancelledError          no       shutdown_async_work
W19  bounded: task not cancellable by close              no       shutdown_async_work
W20  bounded: piece never ended                          yes      h243 (bounded leaves nothing)
W21  bounded: task kept after it ended                   yes      h243 (bounded leaves nothing)
W22  keep: stopped runtime keeps task running            no       shutdown_async_work
W23  keep: not waited for                                no       shutdown_async_work
W24  _cancel_tasks: not marked cut                       no       shutdown_async_work
W25  _cancel_tasks: not cancelled                        no       shutdown_async_work
W26  _deadline_error: trouble not said                   no       h149_deadline_reason
W27  spawn: piece not ended when task done               no       h160_runtime_sweep
W28  spawn: cancelled task not settled                   yes      h243 (queued behind a method)
W29  spawn: refused task's piece not ended               no       pool
W30  spawn: refusal raised, not settled                  no       h160_runtime_sweep
W31  spawn: refused drain's calls not failed             no       h160_runtime_sweep
W32  spawn: read flag ignored                            yes      h243 (read, writers all taken)
W33  _fail_queued: claim skipped                         yes      equivalent (g)
W34  _fail_queued: drain flag kept                       no       queues
W35  _fail_queued: queue not cleared                     yes      h243 (queued behind a running one)
W36  background: stopped runtime runs                    yes      h243 (background, stopped)
W37  background: not cancelled past timeout              yes      post_deletes, h243 (background, timeout)
W38  background: interrupted coro not closed             no       pool
W39  waiting_for_others: nothing                         no       queues
W40  bounded: refused coro not closed                    no       shutdown_async_work
S01  aclose: leases not released                         yes      h184_lease_release_at_shutdown
S02  aclose: inboxes not finished                        yes      h147_inbox_sweep
S03  aclose: HEAD not flushed                            no       queues
S04  aclose: applied posts' deletes dropped              yes      post_deletes
S05  aclose: store not closed                            no       queues
S06  close: a forked child closes parent's               yes      h243 (forked child closing)
S07  close: interrupted fold wait leaves runtime open    no       h196_shutdown_folds
S08  close: asked folds not waited for                   no       h196_shutdown_folds
S09  close: second close returns before first ends       no       queues
S10  close: finished not recorded                        no       h196_shutdown_folds
S11  close: waiters not woken on interrupt               no       queues
S12  close: fold wait not taken off timeout              yes      h243 (timeout spent on folds)
S13  finish_queued_calls: waits once closed              yes      h243 (after an interrupted close)
S14  finish_queued_calls: forked child waits             yes      h243 (forked child waits)
S15  finish_queued_calls: calls waited for (calls=False) yes      h243 (queued behind a running one)
S16  finish_queued_calls: no deadline                    no       h213_cut_off_names
S17  finish_queued_calls: pool place kept                no       h196_shutdown_folds
S18  finish_queued_calls: folds not waited               no       h196_shutdown_folds
S19  queued_calls empty                                  yes      ctrl_c_at_exit, h243 (queued behind running)
S20  asked_folds negated                                 no       h196_shutdown_folds
S21  _close: queued pool tasks run                       yes      h243 (queued behind a method)
S22  _close: read pool not shut down                     yes      h243 (read pool's idle threads)
S23  _close: queued calls not failed first               yes      ctrl_c_at_exit, h243 (behind a method)
S24  _close: lease holder not woken                      yes      not killed (e)
S25  _close: never stopped                               no       h160_runtime_sweep
S26  _close: in-flight not cancelled                     no       h160_runtime_sweep
S27  _close: background not cancelled                    yes      post_deletes
S28  _close: loop tasks not cancelled                    no       shutdown_async_work
S29  _close: cut off not said                            no       h213_cut_off_names
S30  _close: aclose no minimum second                    yes      post_deletes, h243 (close out of time)
S31  _close: calls queued during close not failed        yes      equivalent (f)
S32  _close: threads not joined                          no       queues
S33  _close: joins its own thread                        no       h196_shutdown_folds
S34  _close: no second to join                           no       h181_stalled_ask_fold
S35  _close: folds not named                             no       h213_cut_off_names (then hung to the cap)
S36  _say_cut_off: empty waited still says               yes      ctrl_c_at_exit, h243 (background, timeout)
S37  _say_cut_off: 'and more' dropped                    yes      h243 (three folds and more)
S38  join_threads: unbounded joins                       yes      h243 (body runs on)
S39  join_threads: helper for nothing                    yes      equivalent (n)
S40  finished_closing: begun taken for finished          no       h196_shutdown_folds
S41  _close: waits on IO loop                            yes      h243 (close on the IO loop)
S42  join_threads: helper unbounded                      yes      equivalent (o)
C01  _create: after close begun                          no       h160_runtime_sweep
C02  _create: not waited for by shutdown                 yes      h243 (init runs)
C03  _create_now: looked after the look                  -        not run (k)
C03b _create_now: ended count read after the look        yes      h243 (look missed, created meanwhile)
C04  _create_now: existing of another class              yes      h243 (id of another class)
C05  _create_here: mutable default shared                yes      input_edges
C06  _create_here: init args not cut                     yes      h243 (init args cut short)
C07  _create_here: delete key kept                       yes      delete_keys
C08  _create_here: lost race other class accepted        yes      equivalent (l)
C09  _create_here: fork in getstate unchecked            yes      h150_fork_in_state_hooks (local)
C10  create_nowait: existing class not checked           yes      h243 (id of another class)
C11  create_nowait: pending class not checked            no       h160_runtime_sweep
C12  create_nowait: second creation of a pending id      no       h160_runtime_sweep
C13  finish: creation kept listed                        no       h150_ready_after_failed_creation
C14  finish: arguments kept                              yes      not killed (p)
C15  finish: done never set                              no       h160_runtime_sweep
C16  start: runs though claimed                          no       h160_runtime_sweep
C17  start: failure not logged                           no       h146_cancel_in_creation
C18  start: shutdown logged as failure                   yes      h243 (creation fails: said)
C19  shut_down: without claim                            yes      h243 (waiter runs it)
C20  creating: settled returned                          yes      equivalent (m)
C21  wait_created: given creation ignored                no       h160_runtime_sweep
C22  wait_created: waits for itself                      no       h146_cancel_in_creation
C23  _check_class: by qualname                           yes      h243 (id of another class)
C24  _say_creation_failed: error kept in record          yes      not killed (q)
C25  start: failed creation never settled                no       h160_runtime_sweep
R01  _check_key_room off by one                          yes      h243 (key room)
R02  one pool for reads and writes                       yes      h243 (read, writers all taken)
R03  head_moved once stopped                             yes      equivalent (i)
R04  weigh: uncached counted                             no       actor_cache
R05  weigh: byte bound off by one                        no       h166_runtime_bounds
R06  _evict: one actor too few                           no       h160_runtime_sweep
R07  _evict: busy evicted                                no       h160_runtime_sweep
R08  _evict: evicted not kept                            no       h160_runtime_sweep
R09  _evict: bytes kept                                  no       h160_runtime_sweep
R10  core: LRU not moved                                 no       h160_runtime_sweep
R11  core: second look dropped                           yes      h243 (one core at once)
R12  core: id not validated                              yes      h243 (id refused)
R13  core: take-back bytes not counted                   no       h160_runtime_sweep
R14  core: count bound off by one                        no       h160_runtime_sweep
R15  load: a deleted actor's cached core                 no       h160_runtime_sweep
R16  _all_cores: evicted left out                        yes      h243 (evicted, referenced)
R17  known_step 0 for unknown                            yes      not killed (r)
R18  load_async: not loaded                              yes      h243 (get_actor_async)
R19  memory store with timeouts                          yes      equivalent (s)
R20  _evict: one looked at                               no       h160_runtime_sweep
==== =================================================== ======== ============================================

(a) P17: a thread woken without room finds none in ``_next_task`` and waits again (h158's P7).
(b) P18: a start is refused by the thread count all the same: with room at most the idle and
    starting threads, the pool's threads (running, idle, starting) are ``max_workers`` plus
    the waiters already.
(c) P27: a thread that finds no room ends; the queued tasks wait for the threads still running,
    each of which looks at the queue before it ends (and the runtime's close cancels them).
(d) P30: ``_next_task`` takes the thread out under the lock on each of its returns of None, and
    ``_Task.run`` raises nothing: that ``finally`` is for an exception no line in between raises.
(e) S24, not killed: a lease holder between rounds waits 10 ms (100 ms on a damaged post) and
    then sees ``closed``: the wake spares the close that much.
(f) S31: a call queued once the close began is failed by ``spawn``'s refusal (the pool shut
    down) or by the actor's holder, which looks at ``closed`` before the next call (tried: a call
    queued on a busy actor while the close waited failed the same; h160's M35).
(g) W33: a queued call is claimed by nobody (a cancelled one leaves the queue at once), and
    ``Outcome.settle`` skips a done future (h160's M12).
(h) P19: h158's P16: a thread more may start, within the bound; it takes the next task or ends.
(i) R03: every path to ``head_moved`` goes through ``run``/``bounded``, refused once stopped
    (h160's M13).
(j) W07: a piece ended before its task ran is one whose ``submit`` withdrew the task
    (``queued`` False): that task never runs, and ``runs_on`` never meets an ended token.
(k) C03: the patch did not compile (not run); C03b is what it meant.
(l) C08: ``_check_class`` just after compares the stored class too: ``core.definition`` is set
    from the step ``ensure_exists`` loaded (h160's M30).
(m) C20: h160's M27: a settled creation is still listed only between its settle and its
    unlisting, and a caller that takes it for pending defers to it, which runs at once.
(n) S39: a helper thread that joins nothing: cost only.
(o) S42: the helper's own joins end by ``until``: the margin bounds a wait that ends anyway.
(p) C14, not killed (memory only): a settled creation keeps its ``start`` and the frozen
    arguments it closes over while a handle keeps the creation; a weak reference cannot see
    them (a copy is held, not the caller's object).
(q) C24, not killed: the warning's record holds the error, not its text; ``settle`` clears the
    frames' locals just after, so what a handler keeping records holds is the exception and
    emptied frames (memory only).
(r) R17, not killed: the inbox reads the core's step after a listing, and lists only in a fold,
    which has loaded the actor's record: -1 is for a core whose record was dropped meanwhile.
(s) R19: the in-process memory store with request timeouts (not run eagerly): its requests run
    in a task of their own, bounded by the deadline all the same; cost only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import actors
import pytest
from forking import read_until_closed, reaped
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import actor_runtime, keys
from vactor_cloud import runtime as runtime_module
from vactor_cloud.core import ActorCore
from vactor_cloud.runtime_shutdown import Closer
from vactor_cloud.storage import MemoryStore
from vactor_cloud.storage._base import OPERATION
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.worker_pool import WorkerPool

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: the longest a wait for what must happen lasts before it is called a hang
HANG = 20.0


def _wait_until(condition: Callable[[], bool], seconds: float = HANG) -> bool:
    """Whether ``condition`` came to hold within ``seconds`` (looked at every 10 ms)."""
    pause = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        pause.wait(0.01)
    return condition()


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.n

    def close_runtime(self, timeout: float) -> int:
        """Close this process's runtime from inside the call (``shutdown()`` in a method)."""
        runtime_module.get_runtime().close(timeout=timeout)
        self.n += 1
        return self.n


#: (``Held.hold``) set once a call holds the actor; the call returns once ``RELEASE`` is set
HOLDING = threading.Event()
RELEASE = threading.Event()


@vc.virtual_actor
class Held:
    def __init__(self) -> None:
        self.n = 0

    def hold(self) -> int:
        HOLDING.set()
        assert RELEASE.wait(HANG), "the test never released the call"
        self.n += 1
        return self.n


@vc.virtual_actor
class Refuses:
    def __init__(self) -> None:
        raise ValueError("no good")


@vc.virtual_actor
class Named:
    def __init__(self, *names: str) -> None:
        self.names = names


#: (``SlowInit``) set once its ``__init__`` runs; it returns once ``INIT_GO`` is set
IN_INIT = threading.Event()
INIT_GO = threading.Event()
#: one item per run of ``SlowInit.__init__``
SLOW_INITS: list[int] = []


@vc.virtual_actor
class SlowInit:
    def __init__(self) -> None:
        SLOW_INITS.append(1)
        IN_INIT.set()
        assert INIT_GO.wait(HANG), "the test never let __init__ return"
        self.n = 0


# -- the worker pool -------------------------------------------------------------------------------
def test_a_pool_task_cancelled_while_queued_never_runs() -> None:
    """P03: ``_Task.run`` no longer asked its future whether it was cancelled: a ``run_async``
    call cancelled while it waited for a thread ran all the same (its body applied, though its
    caller had been told it was cancelled), and setting the outcome of the cancelled future
    then raised on the pool's thread."""
    pool = WorkerPool(1, "h243-pool", idle=HANG)
    release = threading.Event()
    ran: list[str] = []
    try:
        busy = pool.submit(lambda: release.wait(HANG))
        queued = pool.submit(lambda: ran.append("cancelled one"))
        assert queued.cancel()
        release.set()
        assert busy.result(HANG) is True
        assert pool.submit(lambda: "next").result(HANG) == "next"
        assert ran == [], "a task cancelled while queued ran"
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_a_pool_thread_idle_past_its_time_ends_and_the_next_task_starts_another() -> None:
    """P29: a thread with nothing to run never ended (the idle timeout not taken): every thread
    a burst of ``run_async`` calls started stayed for the process's life. P31: one that ended so
    still counted among the pool's threads: with ``max_workers`` of them gone, the next task
    found the pool full and waited for good."""
    pool = WorkerPool(1, "h243-pool", idle=0.05)
    try:
        assert pool.submit(lambda: 1).result(HANG) == 1
        assert _wait_until(lambda: not pool.threads()), "an idle thread stayed past its idle time"
        assert pool.submit(lambda: 2).result(HANG) == 2, "no thread ran the task after the idle one ended"
    finally:
        pool.shutdown(wait=True)


def test_a_task_submitted_as_an_idle_thread_leaves_gets_a_thread_of_its_own() -> None:
    """P31: a thread whose idle time ran out left the pool's count only at its very end (in
    ``_work``'s ``finally``), not as it decided to end: a task submitted in between found the
    pool full of that leaving thread, started none, and waited for good (until another submit).
    The leaving thread is held between its decision and its end."""
    pool = WorkerPool(1, "h243-pool", idle=0.05)
    leaving = threading.Event()
    go_on = threading.Event()
    real_next_task = pool._next_task

    def next_task(me: threading.Thread) -> object:
        task = real_next_task(me)
        if task is None:
            leaving.set()
            go_on.wait(HANG)
        return task

    pool._next_task = next_task  # type: ignore[method-assign]
    try:
        assert pool.submit(lambda: 1).result(HANG) == 1
        assert leaving.wait(HANG), "the idle thread never ended"
        late = pool.submit(lambda: 2)
        assert late.result(HANG) == 2, "the task submitted as the idle thread left never ran"
    finally:
        go_on.set()
        pool.shutdown(wait=True)


def test_a_task_queued_before_a_wait_began_runs_during_that_wait() -> None:
    """P10: ``waiting()`` made a place for the task queued behind (a thread counted as starting)
    but no longer started that thread: the queued task waited for the waiting one's end (a
    poster's ``commit_timeout``), and every later task too, the pool counting a thread that
    never ran. The task behind is queued before the wait begins (one queued after starts a
    thread in ``submit``)."""
    pool = WorkerPool(1, "h243-pool", idle=HANG)
    queued_behind = threading.Event()
    behind_ran = threading.Event()

    def waits() -> bool:
        assert queued_behind.wait(HANG)
        with pool.waiting():
            return behind_ran.wait(HANG)

    try:
        first = pool.submit(waits)
        behind = pool.submit(behind_ran.set)
        queued_behind.set()
        assert first.result(HANG + 5) is True, "the task queued behind the waiting one never ran"
        behind.result(HANG)
    finally:
        queued_behind.set()
        behind_ran.set()
        pool.shutdown(wait=True)


def test_a_task_submitted_while_the_only_thread_is_between_tasks_starts_no_second_thread() -> None:
    """P20: ``_place_for_a_task`` no longer bounded the pool's threads: a task submitted while
    the pool's one thread was between two tasks (its last one done, not yet looking for the
    next) started a thread more than ``max_workers``. That thread is held there."""
    pool = WorkerPool(1, "h243-pool", idle=HANG)
    between = threading.Event()
    go_on = threading.Event()
    real_next_task = pool._next_task
    looks = [0]
    counted = threading.Event()

    def next_task(me: threading.Thread) -> object:
        looks[0] += 1
        if looks[0] == 2:  # (after its first task)
            between.set()
            go_on.wait(HANG)
        return real_next_task(me)

    pool._next_task = next_task  # type: ignore[method-assign]
    try:
        assert pool.submit(lambda: 1).result(HANG) == 1
        assert between.wait(HANG)
        second = pool.submit(lambda: counted.wait(HANG))  # (holds a thread started for it)
        threads = len(pool.threads())
        counted.set()
        go_on.set()
        assert second.result(HANG) is True
        assert threads == 1, f"{threads} threads for a pool of one"
    finally:
        counted.set()
        go_on.set()
        pool.shutdown(wait=True)


def test_a_pool_runs_at_least_one_task_at_once() -> None:
    """P01: a pool of no threads (``max_workers=0``) was accepted: every task submitted to it
    waited for good."""
    with pytest.raises(ValueError, match="at least one"):
        WorkerPool(0, "h243-pool")


def test_a_wait_whose_thread_beside_it_cannot_start_goes_on_waiting() -> None:
    """P11: ``waiting()`` let out the error of a thread it could not start beside the waiting
    task (no thread to be had): the task's wait for another process failed (its call with it)
    where the work behind it only has to wait for a place."""
    pool = WorkerPool(1, "h243-pool", idle=HANG)
    queued_behind = threading.Event()
    real_start = pool._start

    def no_thread(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    def waits() -> str:
        assert queued_behind.wait(HANG)
        pool._start = no_thread  # type: ignore[method-assign]
        try:
            with pool.waiting():
                return "waited"
        finally:
            pool._start = real_start  # type: ignore[method-assign]

    try:
        first = pool.submit(waits)
        behind = pool.submit(lambda: "behind")
        queued_behind.set()
        assert first.result(HANG) == "waited"
        assert behind.result(HANG) == "behind"
    finally:
        queued_behind.set()
        pool.shutdown(wait=True)


# -- close -----------------------------------------------------------------------------------------
def test_a_forked_child_closing_its_copy_of_the_parents_runtime_closes_nothing(
    actor_store: StoreSpec,
) -> None:
    """S06: ``close`` no longer returned at once in a forked child: a child holding the parent's
    runtime (a reference kept across the fork) and closing it marked it closed and went on to
    release the parent's leases, flush its HEAD moves and close its store's connections, from a
    copy whose threads and IO loop it does not have."""
    actor = Tally.get_or_create("forked-close")
    actor.add.run(1)
    runtime = runtime_module.get_runtime()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            runtime.close(timeout=5.0)
            os.write(write, b"closed" if runtime.closed or runtime.stopped else b"untouched")
        finally:
            os._exit(0)
    os.close(write)
    try:
        said = read_until_closed(read)
    finally:
        os.close(read)
        reaped(pid)  # (bounded: a hung child is killed)
    assert said == b"untouched", f"the forked child's close left the parent's runtime {said.decode()}"
    assert actor.add.run(1) == 2 and not runtime.closed


class CountedCloses(MemoryStore):
    """A memory store that counts its ``close`` calls."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1
        await super().close()


@pytest.mark.usefixtures("runtime_off")
def test_a_shutdown_releases_its_stores_connections() -> None:
    """S05: ``aclose`` no longer closed the store (its ``finally`` dropped): every runtime a
    process shut down (``init()`` again, ``own_runtime()`` scopes, tests) left its store's
    connection pool and threads behind."""
    store = CountedCloses("h243-closes")
    vc.init(store)
    Tally.get_or_create("closes").add.run(1)
    vc.shutdown()
    assert store.closes == 1


@pytest.mark.usefixtures("runtime_off")
def test_a_close_that_spent_its_timeout_waiting_for_asked_folds_waits_no_longer_for_the_rest(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S12: ``close(asked_folds=True)`` (``shutdown()``) gave the rest of the close its whole
    ``timeout`` again after the wait for the asked folds had used it up: a fold stalled until
    the timeout, then a method still running, held ``shutdown(timeout)`` twice as long as it
    says. The fold wait is stood in for by one that lasts the whole timeout."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    given: list[float] = []
    real_close = Closer._close

    def folds_until_the_end(until: float, *, calls: bool = True) -> None:
        pause = threading.Event()
        while (left := until - time.monotonic()) > 0:
            pause.wait(left)

    def close_given(self: Closer, timeout: float, waited: str) -> None:
        given.append(timeout)
        real_close(self, timeout, waited)

    monkeypatch.setattr(runtime, "finish_queued_calls", folds_until_the_end)
    monkeypatch.setattr(Closer, "_close", close_given)
    runtime.close(timeout=0.3, asked_folds=True)
    assert given == [0.0], f"the rest of the close was given {given} s after the folds took the timeout"


@pytest.mark.usefixtures("runtime_off")
def test_a_close_after_one_interrupted_in_its_fold_wait_waits_for_no_fold_again(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S13: ``finish_queued_calls`` no longer stopped once the runtime was closed: the close that
    finishes one a Ctrl-C cut short in its wait for the asked folds (the runtime closed to new
    work, a fold left stalled) waited for that fold again, its whole timeout, and gave nothing of
    it to the work still running. The stalled fold is stood in for by its core's idle flag."""
    store_spec.init()
    Tally.get_or_create("fold-left").add.run(1)
    runtime = runtime_module.get_runtime()
    core = runtime.core("fold-left")
    given: list[float] = []
    real_close = Closer._close

    def close_given(self: Closer, timeout: float, waited: str) -> None:
        given.append(timeout)
        real_close(self, timeout, waited)

    monkeypatch.setattr(Closer, "_close", close_given)
    core.asked_fold_idle.clear()  # (a fold running, as the interrupted close left it)
    runtime.closed = True  # (as a Ctrl-C in the fold wait leaves it: see ``close``)
    try:
        runtime.close(timeout=HANG, asked_folds=True)
    finally:
        core.asked_fold_idle.set()
    assert len(given) == 1 and given[0] > HANG / 2, f"the close waited for the fold again ({given})"


@pytest.mark.usefixtures("runtime_off")
def test_a_shutdown_waits_for_no_call_queued_behind_a_running_one(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S15: ``finish_queued_calls(calls=False)`` (``shutdown()``'s wait for the asked folds)
    waited for the queued calls too: a shutdown with a call queued behind a method still running
    (the pool full) waited its whole timeout for a call that could not start, then gave the
    method nothing of it. The rest of the close gets the timeout; the method is released as that
    rest begins. S19: ``queued_calls`` named no call (what the exit's Ctrl-C line says it
    abandons). W35: ``_fail_queued`` failed the queued calls but left them in the queue: named
    as abandoned still, their arguments held as long as the core."""
    HOLDING.clear()
    RELEASE.clear()
    store_spec.init(settings=vc.Settings(max_workers=1))
    Held.get_or_create("holds")
    queued_actor = Tally.get_or_create("queued")
    runtime = runtime_module.get_runtime()
    given: list[float] = []
    real_close = Closer._close

    def close_given(self: Closer, timeout: float, waited: str) -> None:
        given.append(timeout)
        RELEASE.set()
        real_close(self, timeout, waited)

    monkeypatch.setattr(Closer, "_close", close_given)
    try:
        running = vc.get_actor("holds").hold.run_async()
        assert HOLDING.wait(HANG)
        queued = queued_actor.add.run_async(1)  # (behind it: the pool's one thread is taken)
        assert runtime.queued_calls() == [("queued", "add")]
        runtime.close(timeout=HANG, asked_folds=True)
    finally:
        RELEASE.set()
    assert running.result(HANG) == 1
    with pytest.raises(vc.RuntimeShutdownError):
        queued.result(HANG)
    assert len(given) == 1 and given[0] > HANG / 2, f"the shutdown waited for the queued call ({given})"
    assert runtime.queued_calls() == [], "the failed call is still queued (its arguments held)"


def test_a_forked_child_waits_for_nothing_queued_in_its_copy_of_the_parents_runtime(
    actor_store: StoreSpec,
) -> None:
    """S14: ``finish_queued_calls`` no longer returned at once in a forked child: a child asking
    its copy of the parent's runtime to finish what is queued there (the exit's wait, a scope's)
    waited, up to its whole budget, for folds and calls that only the parent's threads run. A
    fold in progress in the copy is stood in for by its core's idle flag, and a wait in the
    child is refused (``waiting_for_others`` raises)."""
    Tally.get_or_create("forked-queue").add.run(1)
    runtime = runtime_module.get_runtime()
    core = runtime.core("forked-queue")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            core.asked_fold_idle.clear()

            def no_wait() -> None:
                raise AssertionError("waited")

            runtime.waiting_for_others = no_wait  # type: ignore[method-assign,assignment]
            try:
                runtime.finish_queued_calls(time.monotonic() + 5.0, calls=False)
                os.write(write, b"returned")
            except AssertionError:
                os.write(write, b"waited")
        finally:
            os._exit(0)
    os.close(write)
    try:
        said = read_until_closed(read)
    finally:
        os.close(read)
        reaped(pid)  # (bounded: a hung child is killed)
    assert said == b"returned", "the forked child waited for what its copy of the runtime had queued"
    assert core.asked_fold_idle.is_set()


def test_a_method_run_on_the_pool_that_shuts_down_waits_not_for_itself(
    actor_store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """W02: ``spawn``'s task no longer said which thread it ran on (``runs_on`` dropped): a
    method called with ``run_async`` that shut the runtime down waited its whole timeout for
    its own pool task, then logged itself as work cut off. (h160 pins the same for a call run
    on its caller's thread.) The close returns at once; the call is refused, not applied."""
    actor = Tally.get_or_create("pool-inside")
    actor.add.run(5)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        future = actor.close_runtime.run_async(HANG / 4)
        with pytest.raises(vc.RuntimeShutdownError, match="was not applied"):
            future.result(HANG)
    assert not [r for r in caplog.records if "shutdown waited" in r.getMessage()]
    vc.shutdown()  # (the closed runtime is the process's until then)
    assert vc.get_actor("pool-inside").get.run() == 5


@pytest.mark.usefixtures("runtime_off")
def test_a_creation_and_a_call_queued_behind_a_running_method_are_refused_as_the_close_begins(
    store_spec: StoreSpec,
) -> None:
    """S21: ``_close`` shut the writers' pool down without cancelling its queued tasks: a
    background creation (``wait_for_init=False``) queued behind a method still running (the
    pool full) stayed pending through the close's whole wait for that method, and ran then (to
    be refused), where a task not started is settled as the close begins. S23: the calls queued
    were failed only after that wait (``_fail_queued`` before it dropped): their callers waited
    for the running method and the whole close to hear that theirs never ran. W28: ``spawn``
    no longer settled a task the close cancelled (``on_shutdown`` not called): the creation's
    waiters waited for good."""
    HOLDING.clear()
    RELEASE.clear()
    store_spec.init(settings=vc.Settings(max_workers=1, wait_for_init=False))
    Held.get_or_create("holds")
    queued_actor = Tally.get_or_create("queued")
    runtime = runtime_module.get_runtime()
    assert runtime.wait_created("holds") is None and runtime.wait_created("queued") is None
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": HANG}, daemon=True)
    try:
        running = vc.get_actor("holds").hold.run_async()
        assert HOLDING.wait(HANG)
        queued = queued_actor.add.run_async(1)
        Tally.get_or_create("queued-creation")
        creation = runtime.creating("queued-creation")
        assert creation is not None and not creation.done.is_set()
        closer.start()
        assert creation.done.wait(HANG), "the queued creation stayed pending while the close waited"
        assert isinstance(creation.error, vc.RuntimeShutdownError)
        assert isinstance(queued.exception(HANG), vc.RuntimeShutdownError)
    finally:
        RELEASE.set()
    assert running.result(HANG) == 1
    closer.join(HANG)
    assert not closer.is_alive()


class StallingPuts(MemoryStore):
    """Puts of step objects wait, once ``armed``, until ``released`` (or cancelled)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.armed = threading.Event()
        self.stalled = threading.Event()
        self.released = threading.Event()

    async def _put(self, key: str, data: bytes, mode: object) -> str:
        if self.armed.is_set() and "/steps/" in key:
            self.stalled.set()
            while not self.released.is_set():
                await asyncio.sleep(0.01)
        return await super()._put(key, data, mode)  # type: ignore[arg-type]


@pytest.mark.usefixtures("runtime_off")
def test_a_signal_handler_closing_the_runtime_waits_not_for_the_call_it_interrupted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """W01: ``run`` began its piece of work with no thread (``begin(None)``): a close from a
    signal handler on the main thread (a SIGTERM handler that shuts down) took the main thread's
    own call, stalled in its step put under the handler, for another thread's work, waited its
    whole timeout for it (which cannot end before the handler returns) and said so."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
        pytest.skip("needs signals delivered to the main thread")
    store = StallingPuts("h243-signal")
    vc.init(store)
    actor = Tally.get_or_create("signalled")
    actor.add.run(1)
    runtime = runtime_module.get_runtime()
    handled = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        try:
            runtime.close(timeout=2.0)
        finally:
            handled.set()

    def interrupt() -> None:
        if store.stalled.wait(HANG):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)  # type: ignore[arg-type]
            handled.wait(HANG)
        store.released.set()

    previous = signal.signal(signal.SIGUSR1, on_signal)
    sender = threading.Thread(target=interrupt, daemon=True)
    try:
        store.armed.set()
        sender.start()
        with (
            caplog.at_level(logging.WARNING, logger="vactor_cloud"),
            contextlib.suppress(vc.RuntimeShutdownError, vc.CommitOutcomeUnknownError),
        ):
            actor.add.run(1)
    finally:
        store.released.set()
        signal.signal(signal.SIGUSR1, previous)
        sender.join(HANG)
    assert handled.is_set(), "the signal's handler never ran"
    assert not [r for r in caplog.records if "shutdown waited" in r.getMessage()]


# -- creations -------------------------------------------------------------------------------------
CREATION_FAILED = "with wait_for_init=False) failed"


@pytest.mark.usefixtures("runtime_off")
def test_a_background_creation_that_fails_says_so_and_one_refused_by_a_shutdown_does_not(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """C17: a background creation (``wait_for_init=False``) whose ``__init__`` raised was logged
    no more: a creation failed before any call was made to it was said nowhere, every later call
    finding no actor. C18: one refused because the runtime shut down was logged as a failure of
    the class (a warning per pending creation at every shutdown). The second is started by a
    waiter (``wait_created``: caller runs) as the close begins (the pool full)."""
    HOLDING.clear()
    RELEASE.clear()
    store_spec.init(settings=vc.Settings(max_workers=1, wait_for_init=False))
    runtime = runtime_module.get_runtime()
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        refused = Refuses.get_or_create("refuses")
        # (ready(), not wait_created: a creation that failed before the look is forgotten, and
        # wait_created then answers None; a handle it gave keeps its exception)
        with pytest.raises(ValueError, match="no good"):
            refused.ready().result(HANG)
        said = [r.getMessage() for r in caplog.records if CREATION_FAILED in r.getMessage()]
        assert len(said) == 1 and "'refuses'" in said[0] and "ValueError: no good" in said[0], said
        caplog.clear()
        Held.get_or_create("holds")
        assert runtime.wait_created("holds") is None
        try:
            running = vc.get_actor("holds").hold.run_async()
            assert HOLDING.wait(HANG)
            Tally.get_or_create("late")  # (queued behind the held call: the pool is full)
            runtime.closed = True  # (as a close begins)
            assert isinstance(runtime.wait_created("late"), vc.RuntimeShutdownError)
        finally:
            RELEASE.set()
        assert running.result(HANG) == 1
    assert not [r for r in caplog.records if CREATION_FAILED in r.getMessage()]


# -- the runtime's work ----------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_an_operation_cut_off_by_a_close_past_its_timeout_says_the_runtime_shut_down(
    store_spec: StoreSpec,
) -> None:
    """W10: ``run`` let the bridge's own ``BridgeCancelled`` out where a close past its timeout
    cancelled the operation: its caller met a private exception that says nothing of a
    shutdown, not ``RuntimeShutdownError`` (retry it on the next runtime)."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    began = threading.Event()
    raised: list[BaseException] = []

    async def stalls() -> None:
        began.set()
        for _ in range(int(HANG / 0.01)):
            await asyncio.sleep(0.01)

    def operation() -> None:
        try:
            runtime.run(stalls())
        except BaseException as exc:
            raised.append(exc)

    caller = threading.Thread(target=operation, daemon=True)
    caller.start()
    assert began.wait(HANG)
    runtime.close(timeout=0.2, waited="")
    caller.join(HANG)
    assert len(raised) == 1 and isinstance(raised[0], vc.RuntimeShutdownError), raised
    assert "while this operation ran" in str(raised[0])


@pytest.mark.usefixtures("runtime_off")
def test_a_close_ends_the_read_pools_idle_threads(store_spec: StoreSpec) -> None:
    """S22: ``_close`` no longer shut the read-only calls' pool down: its idle threads were never
    told to end, so the close's join waited out its whole timeout for them (every shutdown of a
    process that had made a ``run_async`` read) and returned with them still there."""
    store_spec.init()
    actor = Tally.get_or_create("read-pool")
    actor.add.run(1)
    assert actor.get.run_async().result(HANG) == 1
    runtime = runtime_module.get_runtime()
    assert runtime.read_executor.threads()
    runtime.close(timeout=2.0)
    assert runtime.read_executor.threads() == [], "the close left the read pool's threads running"


@pytest.mark.usefixtures("runtime_off")
def test_an_operation_whose_awaited_work_a_close_cut_off_says_the_runtime_shut_down(
    store_spec: StoreSpec,
) -> None:
    """W12: ``run`` let out the ``CancelledError`` of an operation that awaited work of the
    runtime a close cut off (a ``keep`` task: ``_cancel_tasks``), where it says
    ``RuntimeShutdownError``, as for an operation cancelled itself. The close is stood in for by
    its two steps: the runtime stopped, its tasks cancelled."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    began = threading.Event()
    raised: list[BaseException] = []

    async def awaits_kept_work() -> None:
        async def stalls() -> None:
            for _ in range(int(HANG / 0.01)):
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(stalls())
        runtime.keep(task)
        began.set()
        await task

    def operation() -> None:
        try:
            runtime.run(awaits_kept_work())
        except BaseException as exc:
            raised.append(exc)

    caller = threading.Thread(target=operation, daemon=True)
    caller.start()
    assert began.wait(HANG)
    runtime.stopped = True
    runtime.loop.call_soon_threadsafe(runtime._cancel_tasks)
    caller.join(HANG)
    assert len(raised) == 1 and isinstance(raised[0], vc.RuntimeShutdownError), raised


@pytest.mark.usefixtures("runtime_off")
def test_a_bounded_operation_lets_its_own_requests_timeout_through_unchanged(store_spec: StoreSpec) -> None:
    """W17: ``bounded`` took any ``TimeoutError`` for its own deadline (``scope.expired()`` not
    asked): a request's own ``StorageTimeoutError`` (``Settings.timeout``, one request) was
    reworded as the whole operation's ``Settings.deadline`` running out, long before it had."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    own = vc.StorageTimeoutError("the request of h243 timed out (Settings.timeout)")

    async def request_times_out() -> None:
        raise own

    async def in_a_task() -> None:  # (``bounded`` runs in a task, as an async twin's caller's)
        await asyncio.create_task(runtime.bounded(request_times_out()))

    with pytest.raises(vc.StorageTimeoutError) as raised:
        runtime.run(in_a_task())
    assert raised.value is own, f"the request's own timeout was reworded: {raised.value}"


@pytest.mark.usefixtures("runtime_off")
def test_a_bounded_operation_that_ended_leaves_nothing_for_the_close(store_spec: StoreSpec) -> None:
    """W20: ``bounded`` no longer ended its piece of work: every async twin left one behind, and
    each later close waited its whole timeout for them. W21: nor did it let go of its task: the
    runtime held every task that had ever run an async twin (and what its frames refer to)."""
    store_spec.init()
    runtime = runtime_module.get_runtime()

    async def answers() -> int:
        return 7

    async def in_a_task() -> int:
        return await asyncio.create_task(runtime.bounded(answers()))

    assert runtime.run(in_a_task()) == 7
    assert runtime.run(_tasks_of(runtime)) == 0, "the runtime holds the task of an ended operation"
    assert runtime._work.wait_done(time.monotonic()) == 0, "an ended operation left its piece of work"


async def _tasks_of(runtime: runtime_module.Runtime) -> int:
    """(On the IO loop, where the runtime's tasks change) how many it holds."""
    return len(runtime._tasks)


def test_the_arguments_of_init_recorded_in_step_0_are_cut_short(actor_store: StoreSpec) -> None:
    """C06: the ``__init__`` arguments recorded in step 0 (``history``'s text of the creation) were
    no longer cut to 200 characters: a creation with many arguments (each shown short) wrote
    them all into its step, beside the state that holds them already, and every history
    listing read them back."""
    Named.get_or_create("long-name", *(f"name-{i}" for i in range(300)))
    (creation,) = vc.get_actor("long-name").history()
    assert creation.calls[0].method == "__init__"
    assert 0 < len(creation.calls[0].args) <= 200, len(creation.calls[0].args)


@pytest.mark.usefixtures("runtime_off")
def test_a_close_out_of_time_still_releases_its_stores_connections() -> None:
    """S30: a close with no time left (``close(timeout=0)``, or one whose wait for the work
    running used it all) gave ``aclose`` none either (its one second dropped): the lease
    release, the HEAD flush and the store's close were cut off before they began, leaving the
    store's connections behind."""
    store = CountedCloses("h243-closes-late")
    vc.init(store)
    Tally.get_or_create("late-close").add.run(1)
    runtime = runtime_module.get_runtime()
    runtime.close(timeout=0.0)
    assert store.closes == 1


@pytest.mark.usefixtures("runtime_off")
def test_a_read_runs_while_every_writer_thread_is_taken(store_spec: StoreSpec) -> None:
    """W32: ``spawn`` put every task on the writers' pool (``read`` ignored): a read-only call
    made with ``run_async`` and not waited for by its caller (a callback, ``vc.wait``) waited
    behind whatever filled that pool (a slow method here). R02: the runtime made one pool for
    both (``read_executor`` the writers' ``executor``): the same wait."""
    HOLDING.clear()
    RELEASE.clear()
    store_spec.init(settings=vc.Settings(max_workers=1))
    Held.get_or_create("writer")
    reader = Tally.get_or_create("reader")
    reader.add.run(3)
    try:
        running = vc.get_actor("writer").hold.run_async()
        assert HOLDING.wait(HANG)
        read = reader.get.run_async()
        # (Not ``result()``: a waiter runs a read no thread has started itself.)
        assert _wait_until(read.done), "the read waited for the writers' pool"
        assert read.result(HANG) == 3
    finally:
        RELEASE.set()
    assert running.result(HANG) == 1


@pytest.mark.usefixtures("runtime_off")
def test_a_shutdown_waits_for_a_creation_whose_init_runs(store_spec: StoreSpec) -> None:
    """C02: a creation no longer counted as work of the runtime (``_create`` not inside
    ``working()``): a shutdown on another thread went on while ``__init__`` ran, closed the
    store under it, and the creation's step 0 then failed (or was put by a closed runtime)."""
    IN_INIT.clear()
    INIT_GO.clear()
    store_spec.init()
    runtime = runtime_module.get_runtime()
    made: list[object] = []

    def create() -> None:
        try:
            made.append(SlowInit.get_or_create("slow-init"))
        except BaseException as exc:
            made.append(exc)

    creator = threading.Thread(target=create, daemon=True)
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": HANG}, daemon=True)
    creator.start()
    try:
        assert IN_INIT.wait(HANG)
        closer.start()
        # (A bounded look: a close that does not wait returns at once; one that waits is still
        # there, whatever the host's load.)
        closer.join(0.5)
        assert closer.is_alive(), "the shutdown returned while __init__ ran"
    finally:
        INIT_GO.set()
    creator.join(HANG)
    closer.join(HANG)
    assert len(made) == 1 and not isinstance(made[0], BaseException), made


# -- the runtime's cache of cores ------------------------------------------------------------------
def test_the_async_twin_of_get_actor_refuses_an_id_that_holds_no_actor(actor_store: StoreSpec) -> None:
    """R18: ``load_async`` no longer loaded the actor (``ensure_exists`` dropped): ``await
    vc.get_actor_async(id)`` gave a handle to an actor that does not exist, where
    ``get_actor`` raises ``ActorNotFoundError``."""
    Tally.get_or_create("there").add.run(1)
    assert asyncio.run(vc.get_actor_async("there")).actor_id == "there"
    with pytest.raises(vc.ActorNotFoundError):
        asyncio.run(vc.get_actor_async("never-made"))


def test_an_actor_id_that_cannot_name_objects_is_refused_before_any_is_written(
    actor_store: StoreSpec,
) -> None:
    """R12: ``core()`` no longer validated the id (the one gate every call, creation and load
    goes through): an id with a ``/`` made an actor whose keys nest inside another id's, and one
    of ``..`` escaped its folder on a local store."""
    for bad in ("a/b", "..", ""):
        with pytest.raises(vc.InvalidActorIdError):
            Tally.get_or_create(bad)
        with pytest.raises(vc.InvalidActorIdError):
            vc.get_actor(bad)
    assert runtime_module.get_runtime().cached() == (0, 0)


@pytest.mark.usefixtures("runtime_off")
def test_background_work_handed_to_a_stopped_runtime_never_runs(store_spec: StoreSpec) -> None:
    """W36: ``background`` no longer refused once the runtime had stopped: work handed to it by
    code still holding it (a fold's follow-up, a delete's clean-up) ran on the IO loop, making
    requests to a store the shutdown had closed, with nobody waiting for it."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    runtime.close()
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    future = runtime.background(work())
    assert isinstance(future.exception(HANG), vc.RuntimeShutdownError)
    assert not ran, "background work ran on a stopped runtime"


@pytest.mark.usefixtures("runtime_off")
def test_background_work_past_a_closes_timeout_is_cancelled_and_said_only_when_asked(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """W37: ``background`` no longer listed its future among the runtime's background work: a
    close past its timeout did not cancel it, and it went on (its requests made to a closed
    store) after the shutdown returned. S36: a close told to say nothing of the work it cut off
    (``waited=""``: the exit after a Ctrl-C, whose line said it) logged it all the same."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    began = threading.Event()
    finished: list[int] = []

    async def stalls() -> None:
        began.set()
        for _ in range(int(HANG / 0.01)):
            await asyncio.sleep(0.01)
        finished.append(1)

    future = runtime.background(stalls())
    assert began.wait(HANG)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        runtime.close(timeout=0.2, waited="")
    assert _wait_until(future.done, HANG / 2), "the background work went on after the close"
    assert not finished
    assert not [r for r in caplog.records if "still running" in r.getMessage()]


@pytest.mark.usefixtures("runtime_off")
def test_a_close_off_the_main_thread_returns_though_a_method_body_runs_on(store_spec: StoreSpec) -> None:
    """S38: ``join_threads`` joined without a bound: a close off the main thread (where the
    joins are not waited for in slices) with a method body still running past its timeout
    waited for that body for good, where it logs it and returns."""
    HOLDING.clear()
    RELEASE.clear()
    store_spec.init()
    runtime = runtime_module.get_runtime()
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": 0.2, "waited": ""}, daemon=True)
    try:
        running = Held.get_or_create("runs-on").hold.run_async()
        assert HOLDING.wait(HANG)
        closer.start()
        closer.join(HANG / 2)  # (the body holds for HANG: a close that waits for it is still there)
        assert not closer.is_alive(), "hang: the close waited for a method body past its timeout"
    finally:
        RELEASE.set()
    assert running.exception(HANG) is not None  # (cut off: not applied, or in doubt)


@pytest.mark.usefixtures("runtime_off")
def test_a_close_called_on_the_io_loop_waits_not_for_work_that_needs_the_loop(store_spec: StoreSpec) -> None:
    """S41: ``_close`` waited for the work running even when called on the IO loop's own thread
    (where what it waits for runs): the loop stood still for the close's whole timeout, every
    operation of every runtime with it. There it cancels at once."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    began = threading.Event()
    closed = threading.Event()
    raised: list[BaseException] = []

    async def needs_the_loop() -> None:
        began.set()
        for _ in range(int(HANG / 0.01)):
            await asyncio.sleep(0.01)

    def operation() -> None:
        try:
            runtime.run(needs_the_loop())
        except BaseException as exc:
            raised.append(exc)

    def close_on_the_loop() -> None:
        try:
            runtime.close(timeout=HANG, waited="")
        finally:
            closed.set()

    caller = threading.Thread(target=operation, daemon=True)
    caller.start()
    assert began.wait(HANG)
    runtime.loop.call_soon_threadsafe(close_on_the_loop)
    assert closed.wait(HANG / 2), "the close on the IO loop waited for work that needs the loop"
    caller.join(HANG)
    assert len(raised) == 1 and isinstance(raised[0], vc.RuntimeShutdownError), raised


def test_get_or_create_of_an_id_held_by_another_class_is_refused(actor_store: StoreSpec) -> None:
    """C04: ``_create_now`` no longer compared the existing actor's class with the one asked for:
    ``get_or_create`` of an id already held by an actor of another class gave a handle whose
    calls then ran methods the stored class does not have (or another class's of that name).
    C10: nor did ``create_nowait`` (``wait_for_init=False``). C23: classes compared by their
    bare name (``__qualname__``): a ``Tally`` of another module was taken for this one's."""
    Tally.get_or_create("taken").add.run(1)
    with pytest.raises(vc.ActorDefinitionError, match="already exists as an instance of"):
        Named.get_or_create("taken", "a name")
    with pytest.raises(vc.ActorDefinitionError, match="already exists as an instance of"):
        actors.Tally.get_or_create("taken")  # (C23: a class of the same name in another module)
    retune(wait_for_init=False)  # (C10: the same through a background creation)
    with pytest.raises(vc.ActorDefinitionError, match="already exists as an instance of"):
        Named.get_or_create("taken", "a name")
    assert vc.get_actor("taken").get.run() == 1


@pytest.mark.usefixtures("runtime_off")
def test_an_operation_past_its_deadline_says_what_to_do_about_it(store_spec: StoreSpec) -> None:
    """W11: ``run``'s ``StorageTimeoutError`` past ``Settings.deadline`` no longer ended with the
    caller's ``hint`` (what to do about it: which call may have applied, what to retry)."""
    store_spec.init()
    runtime = runtime_module.get_runtime()

    async def stalls() -> None:
        for _ in range(int(HANG / 0.01)):
            await asyncio.sleep(0.01)

    retune(deadline=0.2)
    with pytest.raises(vc.StorageTimeoutError) as raised:
        runtime.run(stalls(), hint="the h243 hint: retry it")
    retune(deadline=HANG)
    assert str(raised.value).endswith("; the h243 hint: retry it"), str(raised.value)


@pytest.mark.usefixtures("runtime_off")
def test_an_operation_leaves_its_threads_context_as_it_found_it(store_spec: StoreSpec) -> None:
    """W15: ``run`` no longer reset the operation it set in the calling thread's context: after
    it, that thread's work outside ``run`` (background work it hands to the loop, which copies
    its context) had its requests' failures counted as the ended operation's, whose deadline
    message then blamed them."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    before = OPERATION.get(None)

    async def inside() -> bool:
        return OPERATION.get(None) is not None

    assert runtime.run(inside()) is True
    assert OPERATION.get(None) is before, "the ended operation is still this thread's"


@pytest.mark.usefixtures("runtime_off")
def test_threads_asking_for_one_actors_core_at_once_get_the_same_core(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R11: ``core()`` no longer looked again under its lock before making a core: two threads
    whose first look both missed made a core each, the second replacing the first in the cache
    while the first thread's calls went on through it: one process with two cores of one actor
    racing each other (bodies run twice, calls out of submission order). The window is forced:
    both threads pass their first look before either makes its core."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    both_looked = threading.Barrier(2)
    real_validate = actor_runtime.validate_actor_id

    def validate_once_both_looked(actor_id: object) -> None:
        both_looked.wait(HANG)
        real_validate(actor_id)

    monkeypatch.setattr(actor_runtime, "validate_actor_id", validate_once_both_looked)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(runtime.core("raced-core"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
    assert len(got) == 2 and got[0] is got[1], "two cores of one actor in one process"


@pytest.mark.usefixtures("runtime_off")
def test_a_creation_a_waiter_runs_is_not_settled_by_the_close_cancelling_its_pool_task(
    store_spec: StoreSpec,
) -> None:
    """C19: a background creation's ``on_shutdown`` no longer claimed it first: one that a waiter
    had started itself (caller runs, its pool task still queued behind a full pool) was settled
    as refused by the shutdown when the close cancelled that pool task, while its ``__init__``
    still ran and then committed: its waiters told "not applied" of an actor that exists."""
    IN_INIT.clear()
    INIT_GO.clear()
    HOLDING.clear()
    RELEASE.clear()
    store_spec.init(settings=vc.Settings(max_workers=1, wait_for_init=False))
    Held.get_or_create("holds")
    runtime = runtime_module.get_runtime()
    assert runtime.wait_created("holds") is None
    waited: list[object] = []
    closer = threading.Thread(target=runtime.close, kwargs={"timeout": HANG}, daemon=True)
    try:
        running = vc.get_actor("holds").hold.run_async()
        assert HOLDING.wait(HANG)
        SlowInit.get_or_create("slow-waited")  # (its pool task queued behind the held call)
        creation = runtime.creating("slow-waited")
        assert creation is not None
        waiter = threading.Thread(target=lambda: waited.append(runtime.wait_created("slow-waited")))
        waiter.start()
        assert IN_INIT.wait(HANG)  # (the waiter runs it)
        closer.start()
        assert _wait_until(lambda: runtime.executor.queued() == 0)  # (its pool task cancelled)
        assert not creation.done.is_set(), "the close settled a creation whose __init__ still ran"
    finally:
        INIT_GO.set()
        RELEASE.set()
    waiter.join(HANG)
    closer.join(HANG)
    assert waited == [None]
    assert running.result(HANG) == 1


@pytest.mark.usefixtures("runtime_off")
def test_the_cut_off_warning_names_three_folds_and_says_there_are_more(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """S37: the warning of a close past its timeout named the first three actors whose asked fold
    still ran and no longer said that others did too ("and more"): four or forty read the same."""
    store_spec.init()
    runtime = runtime_module.get_runtime()
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        runtime._say_cut_off(4, "the h243 close waited 1 s", ["a", "b", "c", "d"])
        runtime._say_cut_off(3, "the h243 close waited 1 s", ["a", "b", "c"])
    many, three = (r.getMessage() for r in caplog.records)
    assert "for 'a', 'b', 'c' and more:" in many, many
    assert "for 'a', 'b', 'c':" in three, three


@pytest.mark.usefixtures("runtime_off")
def test_the_close_sees_the_cores_evicted_while_still_referenced(store_spec: StoreSpec) -> None:
    """R16: ``_all_cores`` left out the cores evicted from the cache but still referenced (a
    future's, a fold's): the close no longer waited for their asked folds, nor named them, nor
    failed their queued calls, released their leases or finished their inboxes. A fold of the
    evicted core is stood in for by its idle flag."""
    store_spec.init(settings=vc.Settings(max_cached_actors=1))
    runtime = runtime_module.get_runtime()
    evicted = runtime.core("evicted-a")
    runtime.core("newer-b")  # (one actor at most: the idle "evicted-a" goes, still referenced)
    assert not runtime.in_cache(evicted)
    evicted.asked_fold_idle.clear()
    try:
        assert runtime.asked_folds() == ["evicted-a"]
    finally:
        evicted.asked_fold_idle.set()


@pytest.mark.usefixtures("runtime_off")
def test_a_thread_whose_look_missed_an_actor_created_meanwhile_runs_not_init_again(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C03b: ``_create_now`` read the count of ended creations after its look for the actor, not
    before: a creation that ended between the two went unnoticed, and the thread took a turn of
    its own and ran ``__init__`` a second time (h160 forces the window after that read; this
    one, between the look and the read). The second thread's miss is held until the first
    creation has ended."""
    IN_INIT.clear()
    INIT_GO.clear()
    SLOW_INITS.clear()
    store_spec.init()
    runtime = runtime_module.get_runtime()
    real_ensure = ActorCore.ensure_exists
    misses = [0]

    async def late_miss(core: ActorCore) -> Any:
        try:
            return await real_ensure(core)
        except vc.ActorNotFoundError:
            misses[0] += 1
            if core.actor_id == "looked-late" and misses[0] == 2:  # (the second thread's)
                ended = runtime._turns.ended
                for _ in range(int(HANG / 0.005)):
                    if runtime._turns.ended != ended:
                        break
                    await asyncio.sleep(0.005)
            raise

    monkeypatch.setattr(ActorCore, "ensure_exists", late_miss)
    errors: list[BaseException] = []

    def create() -> None:
        try:
            SlowInit.get_or_create("looked-late")
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=create)
    second = threading.Thread(target=create)
    first.start()
    try:
        assert IN_INIT.wait(HANG)
        second.start()
        assert _wait_until(lambda: misses[0] == 2)
    finally:
        INIT_GO.set()
    first.join(HANG)
    second.join(HANG)
    assert not errors, errors
    assert len(SLOW_INITS) == 1, f"__init__ ran {len(SLOW_INITS)} times"


def test_a_store_whose_keys_are_one_byte_short_is_refused_and_one_of_exactly_enough_taken() -> None:
    """R01: the key-room check off by one (``room < LONGEST_KEY - 1``): a prefix leaving one byte
    less than vactor_cloud's longest key was accepted, and the first event sent to an actor with
    a long id failed at its put. Exactly enough room is enough."""
    short = MemoryStore("h243-room-short")
    short.max_key_bytes = keys.LONGEST_KEY - 1
    with pytest.raises(ValueError, match="shorten the prefix by 1 bytes"):
        runtime_module.Runtime(vc.Settings(storage=short))
    enough = MemoryStore("h243-room-enough")
    enough.max_key_bytes = keys.LONGEST_KEY
    runtime_module.Runtime(vc.Settings(storage=enough)).close()
