"""Where sub-task children run: :class:`Runner` runs the children of one launch on one
executor (a shared thread or process pool, any ``concurrent.futures.Executor``, or a
``dask.distributed.Client``), retrying failures; a worker process runs each child by
``_run_child`` and reaches the parent's storage (``_RuntimeRecipe``).
:mod:`vactor_cloud.subtask` launches them and checkpoints their results
(:mod:`vactor_cloud.subtask_checkpoints`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import cloudpickle

from vactor_cloud import _sync
from vactor_cloud.batch import CallContext
from vactor_cloud.errors import StateSerializationError
from vactor_cloud.fork_guard import end_a_forked_child, forks_now
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.reentrancy import run_detached
from vactor_cloud.runtime import get_runtime, init
from vactor_cloud.runtime_scope import carry_runtime

__all__ = [
    "ExecutorSpec",
    "Failure",
    "Runner",
    "executor_spec",
    "function_name",
    "recipe_of",
    "resolve_executor",
]

logger = logging.getLogger("vactor_cloud.subtask")

#: ``"thread"``, ``"process"``, a ``concurrent.futures.Executor`` or a ``dask.distributed.Client``
ExecutorSpec = str | Executor | Any

#: threads of the default ``"thread"`` executor (children usually wait on I/O or release the GIL)
_DEFAULT_THREADS = 32


@dataclasses.dataclass(slots=True)
class Failure:
    error: BaseException


@dataclasses.dataclass(slots=True)
class _Success:
    value: Any


class Runner:
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
        #: by index, the pickle of each child's call as it was launched (``call_pickle``): a
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
                    f"cannot send {function_name(fn)} and its arguments to the executor: {exc}"
                )
            )
            return failed
        if _is_dask_client(self.executor):
            return _from_dask(self.executor.submit(_run_child, payload, pure=False))
        submitted: Future[Any] = self.executor.submit(_run_child, payload)
        return submitted

    def run(
        self, fn: Callable[..., Any], children: list[tuple[int, tuple[Any, ...], dict[str, Any]]]
    ) -> Iterable[tuple[int, _Success | Failure]]:
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
    ) -> _Success | Failure:
        if self.stopped:
            return Failure(concurrent.futures.CancelledError())
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
    ) -> Iterable[tuple[int, _Success | Failure]]:
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
                    outcome = Failure(exc)
                if isinstance(outcome, Failure) and not isinstance(outcome.error, Exception):
                    # An interrupt the child raised (SystemExit, KeyboardInterrupt): the caller's
                    # at once, never retried, as when the waiting thread ran the child itself
                    # (``_run_one_here``), and not dropped for a sibling's earlier failure.
                    raise outcome.error
                if isinstance(outcome, Failure) and attempts[index] <= self.max_retries:
                    logger.info(
                        "child %d of %s failed (attempt %d): %r; retrying",
                        index,
                        function_name(fn),
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


def _call_here(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Success | Failure:
    forks = forks_now()
    try:
        return _Success(fn(*args, **kwargs))
    except Exception as exc:
        return Failure(exc)
    finally:
        _end_a_forked_child(forks, fn)


def _end_a_forked_child(forks: int, fn: Callable[..., Any]) -> None:
    """In a child that ``fn`` forked and returned in (on a pool thread, the child's only one, it
    went back to the pool's wait for work for good), end it at once (``fork_guard``)."""
    if forks_now() == forks:
        return  # (the common case: nothing formatted)
    whose = "its result is the parent's, which checkpoints it for the call; this child"
    end_a_forked_child(forks, f"the sub-task {function_name(fn)}", whose)


def _unpack(raw: Any) -> _Success | Failure:
    if isinstance(raw, _Success | Failure):
        return raw
    ok, value = cloudpickle.loads(raw)
    return _Success(value) if ok else Failure(value)


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
            StateSerializationError(f"the result of {function_name(fn)} cannot be pickled: {exc}")
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
# (A forked child has none of the pools' threads or worker processes: it makes its own.)
renew_in_a_forked_child(globals(), "_pools_lock", _pools)


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


def executor_spec(spec: ExecutorSpec | None, context: CallContext | None) -> ExecutorSpec:
    """``spec``, or the runtime's ``Settings.subtask_executor`` (else ``"thread"``) if None."""
    if spec is None:
        runtime = context.runtime if context is not None else get_runtime()
        spec = runtime.settings.subtask_executor or "thread"
    return spec


def resolve_executor(spec: ExecutorSpec) -> Executor | Any:
    """The executor ``spec`` (``executor_spec``) names: a shared pool for a kind's name."""
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


def recipe_of(context: CallContext | None) -> _RuntimeRecipe | None:
    if context is None:
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


def function_name(fn: Callable[..., Any]) -> str:
    if isinstance(fn, functools.partial):
        return function_name(fn.func)
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"
