"""Sub-workflows: durable, memoized child tasks launched from actor methods.

Inside a writer method, ``vactor_cloud.subtask(fn).map(items)`` runs
``fn(item)`` for every item in parallel on an executor (a thread pool by
default, a process pool, or a ``dask.distributed.Client``) and returns the
results in order. ``.run(*args)`` runs one child.

Guarantees:

* Every finished child's result is checkpointed as a create-only object
  before the method returns, so before the parent call can commit::

      actors/<id>/tasks/<call_id>/<position:06d>

  ``call_id`` is the parent call's id (stable across commit-conflict retries
  in one process; derived from the idempotency key, so stable across
  processes, when the call has one). ``position`` counts the children that
  one run of the method launched, in launch order, starting at 0.
* A re-run of the same call (a conflict retry, a retry after a storage
  fault, a run of the body again by ``options(max_retries=...)``, or the
  same idempotency key in a new process after a crash) finds
  the finished children and returns their stored results without running
  them again. Only children without a checkpoint run.
* When two runs of one call race, the first checkpoint written for a
  position wins and every run returns that result, so all runs agree.
* A failing child is retried ``max_retries`` times; then its exception is
  raised in the method (after the other children of the batch finished and
  were checkpointed). Failures are not memoized: a re-run tries again. A child
  raising an interrupt (``SystemExit``, ``KeyboardInterrupt``: not an ``Exception``) is not
  retried: it is raised in the method at once.

What may run twice: a child whose run was cut off before its checkpoint was
written (crash, kill, lost response), and children of two runs of one call
racing each other. Children must therefore be safe to repeat (idempotent
side effects). Memoization is by position: a method must launch the same
children in the same order on every run. A checkpoint whose function or
arguments differ from the child now launched at its position is not used;
that child runs again and its result is not memoized (a warning is logged).

Outside writer methods (read-only methods, plain code) children run in
parallel without checkpoints: there is no call to memoize them for.

The layout above is what compaction (``vactor_cloud.compaction``) removes:
``tasks/<call_id>/`` of calls already committed, or older than its minimum
age.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import logging
import multiprocessing
import os
import random
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Generic, ParamSpec, TypeVar

import cloudpickle

from vactor_cloud import _sync, codec
from vactor_cloud.batch import CallContext, current_call
from vactor_cloud.checked_read import read_checked
from vactor_cloud.errors import (
    AlreadyExistsError,
    DamagedObjectError,
    FormatVersionError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    RetryableStorageError,
    RuntimeShutdownError,
    StateSerializationError,
)
from vactor_cloud.fork_guard import end_a_forked_child, forks_now
from vactor_cloud.incarnation import BORN, born_in
from vactor_cloud.keys import task_key, tasks_prefix
from vactor_cloud.reentrancy import run_detached
from vactor_cloud.runtime import get_runtime, init
from vactor_cloud.runtime_scope import carry_runtime
from vactor_cloud.state import dumps_state, expect_serializer, loads_state
from vactor_cloud.storage import Blob, IfMatch, ObjectStore, PutMode

__all__ = ["ExecutorSpec", "Subtask", "actor_serializer", "subtask", "task_key", "tasks_prefix"]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("vactor_cloud.subtask")

#: ``"thread"``, ``"process"``, a ``concurrent.futures.Executor`` or a ``dask.distributed.Client``
ExecutorSpec = str | Executor | Any

#: attempts to write one checkpoint through transient storage errors
_WRITE_ATTEMPTS = 5
#: threads of the default ``"thread"`` executor (children usually wait on I/O or release the GIL)
_DEFAULT_THREADS = 32


def subtask(
    fn: Callable[P, R], *, executor: ExecutorSpec | None = None, max_retries: int = 0
) -> Subtask[P, R]:
    """Wrap ``fn`` so that calls to it run as durable children of the running actor call.

    ``executor``: ``"thread"`` (default, a shared pool of 32 threads),
    ``"process"`` (a shared pool of spawned processes, one per CPU), any
    ``concurrent.futures.Executor``, or a ``dask.distributed.Client``. When
    omitted, ``init(subtask_executor=...)`` decides. ``max_retries``: how
    many times a failing child is run again before its exception is raised.
    """
    return Subtask(fn, executor=executor, max_retries=max_retries)


class Subtask(Generic[P, R]):
    """A function whose calls run as children of the actor call that launches them (see module doc)."""

    def __init__(
        self, fn: Callable[P, R], *, executor: ExecutorSpec | None = None, max_retries: int = 0
    ) -> None:
        if not callable(fn):
            raise TypeError(f"subtask() needs a callable, got {type(fn).__name__}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries must be an int >= 0")
        self.fn = fn
        self.executor = executor
        self.max_retries = max_retries

    def options(
        self, *, executor: ExecutorSpec | None = None, max_retries: int | None = None
    ) -> Subtask[P, R]:
        """This subtask with another executor and/or retry count."""
        return Subtask(
            self.fn,
            executor=self.executor if executor is None else executor,
            max_retries=self.max_retries if max_retries is None else max_retries,
        )

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one child ``fn(*args, **kwargs)`` and return its (possibly memoized) result."""
        return self._launch([(args, kwargs)])[0]

    def map(self, *iterables: Iterable[Any]) -> list[R]:
        """Run ``fn`` on every item (several iterables are zipped, like ``map``); results in order.

        All children run in parallel. If some fail (after their retries), the
        others still finish and are checkpointed; then the exception of the
        first failing child, by position, is raised.
        """
        return self._launch([(args, {}) for args in zip(*iterables, strict=False)])

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<subtask {_function_name(self.fn)}>"

    # -- running -----------------------------------------------------------------------
    def _launch(self, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[R]:
        if _sync.in_loop_thread():
            raise RuntimeError(
                "subtask children were launched on vactor_cloud's IO loop; launch them from a method"
            )
        context = current_call()
        memo = _Memo.start(context, len(calls)) if context is not None and not context.readonly else None
        pickles = [_call_pickle(self.fn, args, kwargs) for args, kwargs in calls]
        fingerprints = [
            _fingerprint(self.fn, *call, pickled) for call, pickled in zip(calls, pickles, strict=True)
        ]
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        unmemoized: set[int] = set()
        if memo is not None:
            for index, found in memo.load().items():
                if found is None:  # does not verify (a warning said so): not used
                    unmemoized.add(index)
                    continue
                fingerprint, value = found
                if fingerprint == fingerprints[index]:
                    results[index] = value
                    todo.remove(index)
                else:
                    logger.warning(
                        "%s: checkpoint %s was written for another child (%s, not %s); running the child "
                        "again without memoizing it: launch the same children in the same order on every run",
                        self,
                        memo.key(index),
                        fingerprint,
                        fingerprints[index],
                    )
                    unmemoized.add(index)
        checkpoints = _Checkpoints(memo, fingerprints, unmemoized) if memo is not None else None
        spec = _executor_spec(self.executor, context)
        runner = _Runner(
            _resolve_executor(spec),
            spec if isinstance(spec, str) else None,
            self.max_retries,
            _recipe(context),
            on_success=checkpoints.start if checkpoints is not None else None,
            # (kept for retries only: a child retried runs on the arguments it was launched with)
            launched=pickles if self.max_retries else None,
        )
        failures: dict[int, BaseException] = {}
        for index, outcome in runner.run(self.fn, [(i, *calls[i]) for i in todo]):
            if isinstance(outcome, _Failure):
                failures[index] = outcome.error
                continue
            results[index] = outcome.value
            if checkpoints is not None:
                checkpoints.start(index, outcome.value)  # (started already, by a pool's thread)
        writes = checkpoints.writes if checkpoints is not None else {}
        if checkpoints is not None:
            failures.update(checkpoints.errors)
        _sync.wait_futures(writes.values())  # (each up to Settings.deadline: in slices on the main thread)
        for index, write in writes.items():
            stored = _written(write, memo, index)
            if stored is not None and memo is not None:
                # Another run of this call checkpointed this position first: its result counts,
                # if it was written for this child (as for a checkpoint found before running).
                found = memo.decode(index, stored)
                if found is None:  # does not verify (a warning said so): this child's result counts
                    continue
                fingerprint, value = found
                if fingerprint == fingerprints[index]:
                    results[index] = value
                else:
                    logger.warning(
                        "%s: checkpoint %s was written first by another run, for another child (%s, "
                        "not %s); this child's result is used, not memoized: launch the same children "
                        "in the same order on every run",
                        self,
                        memo.key(index),
                        fingerprint,
                        fingerprints[index],
                    )
        if failures:
            raise failures[min(failures)]
        return results


@dataclasses.dataclass(slots=True)
class _Failure:
    error: BaseException


@dataclasses.dataclass(slots=True)
class _Success:
    value: Any


class _Runner:
    """Runs children on one executor, retrying failures; yields ``(index, outcome)`` as they finish."""

    def __init__(
        self,
        executor: Executor | Any,
        shared: str | None,
        max_retries: int,
        recipe: _RuntimeRecipe | None,
        on_success: Callable[[int, Any], None] | None = None,
        launched: list[bytes | None] | None = None,
    ) -> None:
        self.executor: Any = executor
        #: by index, the pickle of each child's call as it was launched (``_call_pickle``): a
        #: child retried gets a copy of its arguments read back from it. (The thread executor
        #: passes arguments as they are: a failed attempt that changed one, a list it popped
        #: from, left the retry another child.)
        self.launched = launched
        #: the kind of the shared pool ``executor`` is (``_shared_pool``), if it is one: made
        #: again for the children submitted after it broke (a worker died)
        self.shared = shared
        self.max_retries = max_retries
        self.recipe = recipe
        self.in_process = isinstance(executor, ThreadPoolExecutor)
        #: (thread pools) told of each child's success by the pool thread that ran it, at once:
        #: the waiting thread may be running a child itself (``_run_one_here``) and take the
        #: outcomes only when that child ends
        self.on_success = on_success
        #: (thread pools) set once ``run`` stopped: a child queued then never starts, also one
        #: whose future ``run`` never noted (Ctrl-C as ``submit`` returned), which it cannot cancel
        self.stopped = False

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        if self.shared is not None and _broken(self.executor):
            # A worker died (os._exit, a crash, the OOM killer): the pool refuses all work for
            # good. A child retried after it (``max_retries``) runs on the pool made again.
            self.executor = _shared_pool(self.shared)
        if self.in_process:
            future: Future[Any] = self.executor.submit(
                carry_runtime(self._call_unless_stopped), fn, args, kwargs
            )
            return future
        try:
            payload = cloudpickle.dumps((self.recipe, fn, args, kwargs))
        except Exception as exc:
            failed: Future[Any] = Future()
            failed.set_exception(
                StateSerializationError(
                    f"cannot send {_function_name(fn)} and its arguments to the executor: {exc}"
                )
            )
            return failed
        if _is_dask_client(self.executor):
            return _from_dask(self.executor.submit(_run_child, payload, pure=False))
        submitted: Future[Any] = self.executor.submit(_run_child, payload)
        return submitted

    def run(
        self, fn: Callable[..., Any], children: list[tuple[int, tuple[Any, ...], dict[str, Any]]]
    ) -> Iterable[tuple[int, _Success | _Failure]]:
        attempts: dict[int, int] = {}
        pending: dict[Future[Any], tuple[int, tuple[Any, ...], dict[str, Any]]] = {}
        try:
            for child in children:
                attempts[child[0]] = 1
                self._start(fn, child, pending)
            yield from self._settled(fn, attempts, pending)
        finally:
            # Stopped early (Ctrl-C on the waiting thread): the call fails, so its children not
            # started yet never start (they ran later, after their caller was told, and again
            # when the call was retried: nothing checkpointed them). Started ones cannot be stopped.
            self.stopped = True
            for future in pending:
                future.cancel()

    def _as_launched(
        self, child: tuple[int, tuple[Any, ...], dict[str, Any]]
    ) -> tuple[int, tuple[Any, ...], dict[str, Any]]:
        """``child`` with a copy of its arguments as it was launched, if they were pickled then
        (and read back: else as they are, as before the retry)."""
        pickled = self.launched[child[0]] if self.launched is not None else None
        if pickled is None:
            return child
        try:
            _, args, kwargs = cloudpickle.loads(pickled)
        except Exception:
            return child
        return child[0], args, kwargs

    def _call_unless_stopped(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _Success | _Failure:
        if self.stopped:
            return _Failure(concurrent.futures.CancelledError())
        return _call_here(fn, args, kwargs)

    def _start(
        self,
        fn: Callable[..., Any],
        child: tuple[int, tuple[Any, ...], dict[str, Any]],
        pending: dict[Future[Any], tuple[int, tuple[Any, ...], dict[str, Any]]],
    ) -> None:
        future = self.submit(fn, child[1], child[2])
        if self.in_process and self.on_success is not None:
            future.add_done_callback(functools.partial(_report_success, self.on_success, child[0]))
        pending[future] = child

    def _settled(
        self,
        fn: Callable[..., Any],
        attempts: dict[int, int],
        pending: dict[Future[Any], tuple[int, tuple[Any, ...], dict[str, Any]]],
    ) -> Iterable[tuple[int, _Success | _Failure]]:
        """``run``'s loop: wait for the children, retry failures, yield outcomes as they come."""
        while pending:
            done = _first_done(pending, 0 if self.in_process else None)
            if not done:
                if self._run_one_here(fn, pending):
                    continue
                done = _first_done(pending, None)
            for future in done:
                child = pending.pop(future)
                index = child[0]
                try:
                    outcome = _unpack(future.result())
                except BaseException as exc:  # the executor itself failed (worker lost, unpicklable, ...)
                    outcome = _Failure(exc)
                if isinstance(outcome, _Failure) and not isinstance(outcome.error, Exception):
                    # An interrupt the child raised (SystemExit, KeyboardInterrupt): the caller's
                    # at once, never retried, as when the waiting thread ran the child itself
                    # (``_run_one_here``), and not dropped for a sibling's earlier failure.
                    raise outcome.error
                if isinstance(outcome, _Failure) and attempts[index] <= self.max_retries:
                    logger.info(
                        "child %d of %s failed (attempt %d): %r; retrying",
                        index,
                        _function_name(fn),
                        attempts[index],
                        outcome.error,
                    )
                    attempts[index] += 1
                    self._start(fn, self._as_launched(child), pending)
                    continue
                yield index, outcome

    @staticmethod
    def _run_one_here(
        fn: Callable[..., Any], pending: dict[Future[Any], tuple[int, tuple[Any, ...], dict[str, Any]]]
    ) -> bool:
        """(Thread pools) Run on this waiting thread a child no pool thread has started: True.

        Caller runs, as for actor calls: every pool thread may be a child waiting for children
        of its own (a child calling an actor whose method launches sub-tasks on the same pool),
        and the children they wait for would wait in the pool's queue forever. Run as a pool
        thread runs it (``run_detached``: outside the actor call this thread is in), its outcome
        in a future of its own. False when every child has started: the caller waits for them.
        """
        for future in reversed(list(pending)):  # the newest first: the pool's threads take the oldest
            if not future.cancel():  # started (or done): a pool thread has it
                continue
            child = pending.pop(future)
            ran: Future[Any] = Future()
            ran.set_running_or_notify_cancel()
            try:
                ran.set_result(run_detached(_call_here, fn, child[1], child[2]))
            except Exception as exc:  # as a pool's worker does: the child's outcome, not ours
                ran.set_exception(exc)
            except BaseException as exc:
                # Ctrl-C (or a signal handler's exception) reaching this waiting thread while it
                # ran the child: the caller's, not the child's. Taken for the child's failure,
                # it was retried (max_retries) and the method went on waiting for the others.
                ran.set_exception(exc)
                raise
            pending[ran] = child
            return True
        return False


def _report_success(on_success: Callable[[int, Any], None], index: int, future: Future[Any]) -> None:
    """(Done callback, on the pool thread that ran the child) pass a success on at once."""
    if future.cancelled():  # (taken back by the waiting thread, which runs it itself)
        return
    try:
        outcome = future.result()
    except BaseException:  # (Ctrl-C in the child: the waiting thread takes it)
        return
    if isinstance(outcome, _Success):
        on_success(index, outcome.value)


class _Checkpoints:
    """The checkpoint writes of one launch, each started once, as soon as its child succeeded:
    by the pool thread that ran it (thread pools), or by the waiting thread taking its outcome.

    Started by the waiting thread only, the checkpoints of children that finished on the pool
    while that thread ran a child itself waited for that child: a process killed meanwhile lost
    them, and a run of the call again ran them again.
    """

    def __init__(self, memo: _Memo, fingerprints: list[str], unmemoized: set[int]) -> None:
        self.memo = memo
        self.fingerprints = fingerprints
        self.unmemoized = unmemoized
        self.lock = threading.Lock()
        self.writes: dict[int, concurrent.futures.Future[bytes | None]] = {}
        #: a result that could not be checkpointed fails its child
        self.errors: dict[int, BaseException] = {}

    def start(self, index: int, value: Any) -> None:
        if index in self.unmemoized:
            return
        # Held while serializing: the waiting thread, told of the same child after a pool
        # thread, must find the write once its ``start`` returns.
        with self.lock:
            if index in self.writes or index in self.errors:
                return
            try:
                self.writes[index] = self.memo.store(index, self.fingerprints[index], value)
            except Exception as exc:  # StateSerializationError; or a runtime shut down meanwhile
                self.errors[index] = exc


def _written(write: concurrent.futures.Future[bytes | None], memo: _Memo | None, index: int) -> bytes | None:
    """A checkpoint write's outcome (see ``_Memo.store``). Cancelled, it was cut off by its
    runtime's shutdown (``Runtime.close`` cancels the work still running past its timeout):
    ``RuntimeShutdownError``, not the bare ``CancelledError`` the method could not tell from
    its own."""
    try:
        return write.result()
    except concurrent.futures.CancelledError:
        key = memo.key(index) if memo is not None else "a sub-task checkpoint"
        raise RuntimeShutdownError(
            f"{key}: the vactor_cloud runtime was shut down while this child's checkpoint was "
            "written; it may not have landed: a run of this call again (after init) runs the "
            "child again if it did not"
        ) from None


def _first_done(futures: Iterable[Future[Any]], timeout: float | None) -> set[Future[Any]]:
    """The futures done once one is, or ``timeout`` passed (on the main thread, waited for in
    slices: ``_sync.interruptible_wait``; a child may run long)."""
    done: set[Future[Any]] = set()
    waited = list(futures)

    def wait(timeout: float | None) -> bool:
        done.update(concurrent.futures.wait(waited, timeout, return_when=FIRST_COMPLETED).done)
        return bool(done)

    _sync.interruptible_wait(wait, timeout, forever=None)
    return done


def _call_here(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Success | _Failure:
    forks = forks_now()
    try:
        return _Success(fn(*args, **kwargs))
    except Exception as exc:
        return _Failure(exc)
    finally:
        _end_a_forked_child(forks, fn)


def _end_a_forked_child(forks: int, fn: Callable[..., Any]) -> None:
    """In a child that ``fn`` forked and returned in (on a pool thread, the child's only one, it
    went back to the pool's wait for work for good), end it at once (``fork_guard``)."""
    if forks_now() == forks:
        return  # (the common case: nothing formatted)
    whose = "its result is the parent's, which checkpoints it for the call; this child"
    end_a_forked_child(forks, f"the sub-task {_function_name(fn)}", whose)


def _unpack(raw: Any) -> _Success | _Failure:
    if isinstance(raw, _Success | _Failure):
        return raw
    ok, value = cloudpickle.loads(raw)
    return _Success(value) if ok else _Failure(value)


def _run_child(payload: bytes) -> bytes:
    """Entry point in a worker process: run one child, return ``(ok, value)`` pickled.

    Pickling both ways with cloudpickle lets lambdas, closures and functions
    of ``__main__`` run on process pools and Dask workers.
    """
    recipe, fn, args, kwargs = cloudpickle.loads(payload)
    _adopt_runtime(recipe)
    forks = forks_now()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        return _pack_failure(exc)
    finally:
        # (a child forked here went back to the worker's loop, taking the worker's work)
        _end_a_forked_child(forks, fn)
    try:
        return bytes(cloudpickle.dumps((True, value)))
    except Exception as exc:
        return _pack_failure(
            StateSerializationError(f"the result of {_function_name(fn)} cannot be pickled: {exc}")
        )


def _pack_failure(exc: Exception) -> bytes:
    remote = "".join(traceback.format_exception(exc))
    try:
        exc.add_note(f"raised in child process {os.getpid()}:\n{remote}")
        return bytes(cloudpickle.dumps((False, exc)))
    except Exception:
        return bytes(
            cloudpickle.dumps((False, RuntimeError(f"child raised {exc!r} (not picklable):\n{remote}")))
        )


# -- executors ------------------------------------------------------------------------------
_pools: dict[str, Executor] = {}
_pools_lock = threading.Lock()


def _reset_pools_after_fork() -> None:
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_pools_after_fork)


def _shared_pool(kind: str) -> Executor:
    """The shared pool of ``kind`` (``"thread"``, ``"process"``); made again once broken (a
    process pool's worker died: it refused all work for good, every later launch on it failed)."""
    with _pools_lock:
        pool = _pools.get(kind)
        if pool is not None and _broken(pool):
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
        if pool is None:
            if kind == "thread":
                pool = ThreadPoolExecutor(_DEFAULT_THREADS, thread_name_prefix="vactor-subtask")
            else:
                # spawn: the parent holds the IO-loop thread and worker threads, which fork would not carry.
                pool = ProcessPoolExecutor(
                    os.cpu_count() or 2, mp_context=multiprocessing.get_context("spawn")
                )
            _pools[kind] = pool
        return pool


def _broken(executor: Any) -> bool:
    """Whether ``executor`` (a ``concurrent.futures`` pool) refuses all work for good."""
    return bool(getattr(executor, "_broken", False))


def _executor_spec(spec: ExecutorSpec | None, context: CallContext | None) -> ExecutorSpec:
    """``spec``, or the runtime's ``Settings.subtask_executor`` (else ``"thread"``) if None."""
    if spec is None:
        runtime = context.runtime if context is not None else None
        if runtime is None:
            runtime = get_runtime()
        spec = getattr(runtime.settings, "subtask_executor", None) or "thread"
    return spec


def _resolve_executor(spec: ExecutorSpec) -> Executor | Any:
    """The executor ``spec`` (``_executor_spec``) names: a shared pool for a kind's name."""
    if isinstance(spec, str):
        if spec not in ("thread", "process"):
            raise ValueError(
                f"unknown subtask executor {spec!r}: use 'thread', 'process', a concurrent.futures.Executor "
                "or a dask.distributed.Client"
            )
        return _shared_pool(spec)
    if isinstance(spec, Executor) or _is_dask_client(spec):
        return spec
    raise TypeError(
        f"subtask executor {spec!r} is not 'thread', 'process', a concurrent.futures.Executor "
        "or a dask.distributed.Client"
    )


def _is_dask_client(executor: object) -> bool:
    # Only a process that imported distributed can hold a Client: never import dask here.
    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(executor, distributed.Client)


def _from_dask(dask_future: Any) -> Future[Any]:
    """A ``concurrent.futures.Future`` settled when the Dask future is (which it keeps alive)."""
    future: Future[Any] = Future()
    future.dask_future = dask_future  # type: ignore[attr-defined]

    def settle(done: Any) -> None:
        # (Cancelled once its call stopped waiting, Ctrl-C: nobody reads it, and settling it
        # would raise InvalidStateError into Dask's callback.)
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            try:
                value = done.result()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(value)

    dask_future.add_done_callback(settle)
    return future


# -- worker processes reach the same storage ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _RuntimeRecipe:
    """What a worker process needs to open the parent's storage (children may call actors).

    It carries the signing key: executors run the code the parent sends, so
    they are as trusted as the parent already.
    """

    pid: int
    storage: str
    storage_options: dict[str, Any]
    signing_key: bytes | None
    load_classes_from_storage: bool


_adopted: _RuntimeRecipe | None = None


def _recipe(context: CallContext | None) -> _RuntimeRecipe | None:
    if context is None or context.runtime is None:
        return None
    settings = context.runtime.settings
    storage = (
        settings.storage if isinstance(settings.storage, str) else getattr(settings.storage, "url", None)
    )
    if not isinstance(storage, str):
        return None
    return _RuntimeRecipe(
        os.getpid(),
        storage,
        dict(settings.storage_options),
        settings.signing_key,
        settings.load_classes_from_storage,
    )


def _adopt_runtime(recipe: _RuntimeRecipe | None) -> None:
    """In a worker process, point vactor_cloud at the parent's storage (once per recipe)."""
    global _adopted
    if recipe is None or recipe.pid == os.getpid() or recipe == _adopted:
        return
    init(
        recipe.storage,
        signing_key=recipe.signing_key,
        load_classes_from_storage=recipe.load_classes_from_storage,
        **recipe.storage_options,
    )
    _adopted = recipe


# -- checkpoints --------------------------------------------------------------------------------------
_cursor = threading.local()


def actor_serializer(context: CallContext) -> str:
    """The serializer of the actor whose method runs in ``context`` (its class's, never storage's)."""
    core = context.runtime.core(context.actor_id)
    definition = getattr(core, "definition", None)
    return str(getattr(definition, "serializer", "pickle"))


class _Memo:
    """The checkpoints of one launch (a contiguous range of positions) within one run of a call."""

    def __init__(self, context: CallContext, first: int, count: int) -> None:
        self.context = context
        self.first = first
        self.count = count
        runtime = context.runtime
        self.objects: ObjectStore = runtime.store
        self.signing_key: bytes | None = runtime.settings.signing_key
        #: how results are checkpointed: the actor class's serializer (a json actor never unpickles)
        self.serializer = actor_serializer(context)

    @classmethod
    def start(cls, context: CallContext, count: int) -> _Memo:
        # Positions restart at 0 on every run of the method: batch.py gives each run (first
        # run, conflict retry, max_retries retry, replay) its own CallContext object. The
        # cursor holds it weakly (a strong reference kept the thread's last call, its runtime
        # and that runtime's cache alive after shutdown()); a dead reference is no context,
        # so the ``is`` test cannot be fooled by id reuse either.
        #
        # Per context, not one per thread: a method calling another actor runs that actor's
        # method on this same thread (the caller runs), and its launches must not restart the
        # caller's count (the caller's next launch took position 0 again: another child's).
        held: dict[int, tuple[weakref.ref[CallContext], int]] = getattr(_cursor, "state", None) or {}
        for key in [k for k, (ref, _) in held.items() if ref() is None]:
            del held[key]
        entry = held.get(id(context))
        first = entry[1] if entry is not None and entry[0]() is context else 0
        held[id(context)] = (weakref.ref(context), first + count)
        _cursor.state = held
        return cls(context, first, count)

    def key(self, index: int) -> str:
        return task_key(self.context.actor_id, self.context.call_id, self.first + index)

    def load(self) -> dict[int, tuple[str, Any] | None]:
        """Checkpoints already written for this launch, by index: ``(fingerprint, value)``. One
        an earlier actor under the id wrote (a keyed call's id is the same on the next actor
        after a delete) is not this call's: left out, and replaced when this run stores its own."""
        # Unpickling user objects may be slow: done here, in the method's thread, not on the IO loop.
        found = self.context.runtime.run(
            self._load(), hint="the sub-task checkpoints could not be read; no child was run: call again"
        )
        return {
            index: self.decode(index, data)
            for index, data in found.items()
            if not self._earlier_actors(self.key(index), data)
        }

    def _earlier_actors(self, key: str, data: bytes) -> bool:
        """Whether the checkpoint ``data`` was written by an earlier actor under the id (an
        earlier incarnation: ``vactor_cloud.incarnation``). A damaged one is not: it is
        refused as it was (``decode``)."""
        if not self.context.born:
            return False  # (the id's first actor: nothing came before it)
        try:
            return born_in(codec.decode(key, data, signing_key=self.signing_key).meta) < self.context.born
        except (IntegrityError, ValueError):
            return False

    async def _load(self) -> dict[int, bytes]:
        prefix = tasks_prefix(self.context.actor_id, self.context.call_id)
        start_after = self.key(-1) if self.first > 0 else None
        keys = await self.objects.list(prefix, start_after=start_after, limit=self.count)
        wanted = {self.key(i): i for i in range(self.count)}
        found = [(wanted[k], k) for k in keys if k in wanted]

        async def read(index: int, key: str) -> tuple[int, bytes | None]:
            try:
                return index, (await self._read(key)).data
            except NotFoundError:  # compacted meanwhile: run the child again
                return index, None

        blobs = await asyncio.gather(*(read(i, k) for i, k in found))
        return {index: data for index, data in blobs if data is not None}

    async def _read(self, key: str) -> Blob:
        """The checkpoint at ``key`` as read, to be decoded by ``decode``: bytes that do not
        verify are read again first (``read_checked``: one read cut short is not a damaged
        checkpoint, whose child would run again, its result unmemoized); so every time, the
        last read (``decode`` says so). ``NotFoundError`` if it is gone."""
        seen: list[Blob] = []

        def verified(blob: Blob) -> Blob:
            seen.append(blob)
            try:
                codec.decode(key, blob.data, signing_key=self.signing_key)
            except DamagedObjectError:
                raise
            except IntegrityError:
                pass  # (whatever else is wrong, ``decode`` says)
            return blob

        try:
            return await read_checked(self.objects, key, verified)
        except DamagedObjectError:
            return seen[-1]

    def decode(self, index: int, data: bytes) -> tuple[str, Any] | None:
        """(fingerprint, result) of the checkpoint ``data``; ``None`` (with a warning) for one
        that does not verify: damaged, or not signed with the store's key (a forger's, who can
        write the bucket). It is not used, as one written for another child: the child runs
        again and its result is not memoized. Refused (``IntegrityError``), it failed every
        run of the call for good (a keyed call's or a timer's id, so its checkpoints' keys,
        is known beforehand); unused, it costs a run of the child, as a deleted one would."""
        key = self.key(index)
        try:
            envelope = codec.decode(key, data, signing_key=self.signing_key)
        except FormatVersionError:
            raise  # (a newer release's checkpoint: "upgrade")
        except IntegrityError as exc:
            logger.warning(
                "sub-task checkpoint %s cannot be used (%s); running the child again without memoizing it",
                key,
                exc.reason,
            )
            return None
        meta = envelope.meta
        if (
            meta.get("kind") != "task"
            or meta.get("position") != self.first + index
            or "result" not in envelope.parts
        ):
            raise IntegrityError(key, "not a sub-task checkpoint of this position")
        serializer = expect_serializer(str(meta.get("serializer", "pickle")), self.serializer, key)
        try:
            value = loads_state(envelope.parts["result"], serializer)
        except Exception as exc:
            raise IntegrityError(key, f"the checkpointed result cannot be decoded here: {exc}") from exc
        return str(meta.get("fingerprint", "")), value

    def store(self, index: int, fingerprint: str, value: Any) -> concurrent.futures.Future[bytes | None]:
        """Start writing the checkpoint; the future gives ``None``, or the bytes another run wrote first."""
        key = self.key(index)
        try:
            pickled = dumps_state(value, self.serializer, what="sub-task result")
        except Exception as exc:
            raise StateSerializationError(
                f"{key}: the result of this sub-task cannot be serialized ({self.serializer}), "
                f"so it cannot be checkpointed: {exc}"
            ) from exc
        meta = {
            "kind": "task",
            "actor": self.context.actor_id,
            "call_id": self.context.call_id,
            "method": self.context.method,
            "position": self.first + index,
            "fingerprint": fingerprint,
            "serializer": self.serializer,
            "time": time.time(),
        }
        if self.context.born:  # (the id's first actor names none: checkpoints as before)
            meta[BORN] = self.context.born
        data = codec.encode(key, meta, {"result": pickled}, signing_key=self.signing_key)
        return self.context.runtime.background(self._bounded_put(key, data))  # type: ignore[no-any-return]

    async def _bounded_put(self, key: str, data: bytes) -> bytes | None:
        """``_put`` within ``Settings.deadline``. Its coroutines are made here, once the write
        runs: a runtime stopped already refuses the write and closes this one unstarted, where
        a ``_put`` made beforehand was left never awaited (a RuntimeWarning)."""
        hint = "this child's result was not checkpointed: a run of this call again runs the child again"
        return await self.context.runtime.bounded(self._put(key, data), hint=hint)  # type: ignore[no-any-return]

    async def _put(self, key: str, data: bytes) -> bytes | None:
        mode: PutMode = "create"
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                await self.objects.put(key, data, mode=mode)
                return None
            except (AlreadyExistsError, PreconditionFailedError, NotFoundError):
                # Another run won this position, or our own earlier attempt landed
                # and its response was lost; either way the stored bytes count. But for an
                # earlier actor's under the id: replaced, by the version read (a run of this
                # call racing us replaces it first, and then its checkpoint counts).
                try:
                    # (read again if it does not verify: the winner's result, read cut short,
                    # was taken for none written, and this run went on with its own)
                    found = await self._read(key)
                except NotFoundError:  # (the one replaced gone meanwhile, compacted: create it)
                    if attempt == _WRITE_ATTEMPTS - 1:
                        raise
                    mode = "create"
                    continue
                if not self._earlier_actors(key, found.data) or attempt == _WRITE_ATTEMPTS - 1:
                    return found.data
                mode = IfMatch(found.version)
            except RetryableStorageError:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")


def _function_name(fn: Callable[..., Any]) -> str:
    if isinstance(fn, functools.partial):
        return _function_name(fn.func)
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


def _call_pickle(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
    """The cloudpickle of a child's call, ``(bound, args, kwargs)`` (``bound``: a
    ``functools.partial``'s own arguments, else None); None if it does not pickle."""
    bound = (fn.args, fn.keywords) if isinstance(fn, functools.partial) else None
    try:
        return bytes(cloudpickle.dumps((bound, args, kwargs)))
    except Exception:
        return None


_UNSET: Any = object()


def _fingerprint(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], pickled: bytes | None = _UNSET
) -> str:
    """Function name and a digest of the arguments, to notice a checkpoint written for another
    child. Arguments that cannot be pickled (the thread executor passes them as they are: a
    lock, an open file) are digested as their shape (``_shape``): each part that cannot be
    pickled by its type, the others as they pickle, so that ``f(lock, 1)`` and ``f(lock, 2)``
    still differ (one digest for all such children used a checkpoint of the one for the other)."""
    if pickled is _UNSET:  # (``pickled``: ``_call_pickle``'s, if made already)
        pickled = _call_pickle(fn, args, kwargs)
    if pickled is None:
        bound = (fn.args, fn.keywords) if isinstance(fn, functools.partial) else None
        pickled = cloudpickle.dumps(_shape((bound, args, kwargs), _SHAPE_DEPTH))
    return f"{_function_name(fn)}:{hashlib.sha256(pickled).hexdigest()[:16]}"


#: how deep ``_shape`` looks into lists, tuples and dicts for the parts that cannot be pickled
_SHAPE_DEPTH = 8


def _shape(value: Any, depth: int) -> Any:
    """``value`` as ``_fingerprint`` digests it when it cannot be pickled: a list, tuple or dict
    (to ``depth`` levels) part by part, any other part as its pickle, or its type's name if
    it has none."""
    kind = type(value)
    if depth > 0 and kind in (list, tuple):
        return (kind.__name__, [_shape(item, depth - 1) for item in value])
    if depth > 0 and kind is dict:
        return ("dict", [(_shape(k, depth - 1), _shape(v, depth - 1)) for k, v in value.items()])
    try:
        return bytes(cloudpickle.dumps(value))
    except Exception:
        return f"<unpicklable {kind.__module__}.{kind.__qualname__}>"
