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
  one run of the method launched, in launch order, starting at 0 (at most
  ``keys.TASK_POSITIONS`` per run: a launch past it raises ``ValueError``).
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

import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from vactor_cloud import _sync
from vactor_cloud.batch import current_call
from vactor_cloud.keys import task_key, tasks_prefix
from vactor_cloud.subtask_checkpoints import (
    Checkpoints,
    Memo,
    actor_serializer,
    call_pickle,
    checkpoint_written,
    fingerprint_of,
)
from vactor_cloud.subtask_executors import (
    ExecutorSpec,
    Failure,
    Runner,
    executor_spec,
    function_name,
    recipe_of,
    resolve_executor,
)

__all__ = ["ExecutorSpec", "Subtask", "actor_serializer", "subtask", "task_key", "tasks_prefix"]

P = ParamSpec("P")
R = TypeVar("R")
#: (``Subtask.map``) the types of the first, second and third parameter, for the items
A1 = TypeVar("A1")
A2 = TypeVar("A2")
A3 = TypeVar("A3")

logger = logging.getLogger("vactor_cloud.subtask")


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

    # For type checkers: ``fn`` must take one (two, three) positional arguments, of the types of
    # the items of the iterables (its other parameters with defaults or keyword-only, as
    # ``fn(*items)`` calls it); a subtask is called as its function is (``__call__``). Four
    # iterables or more: not checked.
    @overload
    def map(self: Callable[[A1], R], items: Iterable[A1], /) -> list[R]: ...

    @overload
    def map(self: Callable[[A1, A2], R], items: Iterable[A1], second: Iterable[A2], /) -> list[R]: ...

    @overload
    def map(
        self: Callable[[A1, A2, A3], R],
        items: Iterable[A1],
        second: Iterable[A2],
        third: Iterable[A3],
        /,
    ) -> list[R]: ...

    @overload
    def map(
        self,
        items: Iterable[Any],
        second: Iterable[Any],
        third: Iterable[Any],
        fourth: Iterable[Any],
        /,
        *more: Iterable[Any],
    ) -> list[R]: ...

    def map(self, *iterables: Iterable[Any]) -> list[R]:
        """Run ``fn`` on every item (several iterables are zipped, like ``map``); results in order.

        All children run in parallel. If some fail (after their retries), the
        others still finish and are checkpointed; then the exception of the
        first failing child, by position, is raised.

        Type checkers check the items of up to three iterables against the
        function's parameters (``subtask(square).map(["x"])`` is an error for
        ``square(x: int)``).
        """
        return self._launch([(args, {}) for args in zip(*iterables, strict=False)])

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<subtask {function_name(self.fn)}>"

    # -- running -----------------------------------------------------------------------
    def _launch(self, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[R]:
        if _sync.in_loop_thread():
            raise RuntimeError(
                "subtask children were launched on vactor_cloud's IO loop; launch them from a method"
            )
        context = current_call()
        memo = Memo.start(context, len(calls)) if context is not None and not context.readonly else None
        pickles = [call_pickle(self.fn, args, kwargs) for args, kwargs in calls]
        fingerprints = [
            fingerprint_of(self.fn, *call, pickled) for call, pickled in zip(calls, pickles, strict=True)
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
        checkpoints = Checkpoints(memo, fingerprints, unmemoized) if memo is not None else None
        spec = executor_spec(self.executor, context)
        runner = Runner(
            resolve_executor(spec),
            spec if isinstance(spec, str) else None,
            self.max_retries,
            recipe_of(context),
            on_success=checkpoints.start if checkpoints is not None else None,
            # (kept for retries only: a child retried runs on the arguments it was launched with)
            launched=pickles if self.max_retries else None,
        )
        failures: dict[int, BaseException] = {}
        for index, outcome in runner.run(self.fn, [(i, *calls[i]) for i in todo]):
            if isinstance(outcome, Failure):
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
            stored = checkpoint_written(write, memo, index)
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
