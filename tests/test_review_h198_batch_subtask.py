"""A hostile review of ``batch.py`` and ``subtask.py`` against the seed's semantics (review h198).

1. ``options(max_retries=N)`` runs a *raising* body again. A body that returned, whose result
   cannot be copied (or whose state cannot be captured), raised nothing: running it again
   cannot help (the same code returns the same thing) and repeats what it did N more times.
2. A sub-task checkpoint is used only for the child it was written for (function and
   arguments, its fingerprint). A child with an argument that cannot be pickled (a lock, an
   open file: the thread executor passes arguments as they are) had the fingerprint
   ``name:unpicklable`` whatever its other arguments: a checkpoint of ``f(lock, 1)`` was the
   result of ``f(lock, 2)``.
3. The shared ``"process"`` pool, once a worker died, refused all work for good.
4. By value: a read-only method's result is a copy, as a writer's is. It was handed over as
   it was (the instance is the call's own), but a result that is not the instance's own (a
   class attribute, a module's object) was then shared with every later call in the process:
   a caller appending to it changed what the next writer committed here, and nowhere else.
5. A child retried (its ``max_retries``) on the thread executor, which passes arguments as they
   are, ran on what its failed attempt left of them (a list it popped from): another child.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from test_review_stand_in_methods import _stand_in_ledger, spec

import vactor_cloud as vc
from vactor_cloud.subtask_checkpoints import fingerprint_of
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: bodies run, by method, in this process (a body's own side effect, outside the actor's state)
_runs: list[str] = []
_LOCK = threading.Lock()


def plus_one(lock: Any, n: int) -> int:
    with lock:
        return n + 1


@vc.virtual_actor
class Shelf:
    DEFAULT = ["x"]

    def __init__(self) -> None:
        self.items: list[str] | None = None

    @vc.virtual_actor.readonly
    def items_or_default(self) -> list[str]:
        return self.items if self.items is not None else self.DEFAULT

    def take_the_default(self) -> list[str]:
        self.items = list(self.DEFAULT)
        return self.items


@vc.virtual_actor
class Retried:
    def __init__(self) -> None:
        self.n = 0

    def uncopyable_result(self) -> Any:
        _runs.append("uncopyable_result")
        self.n += 1
        return threading.Lock()

    def uncapturable_state(self) -> int:
        _runs.append("uncapturable_state")
        self.held = threading.Lock()
        return 1

    def raising(self) -> int:
        _runs.append("raising")
        raise ValueError("raised by the body")

    def child_of_each_run(self) -> int:
        """Its first run launches ``plus_one(_LOCK, 1)``, then raises; the run again (its
        ``max_retries``) launches ``plus_one(_LOCK, 2)`` at the same position."""
        _runs.append("child_of_each_run")
        n = _runs.count("child_of_each_run")
        got = vc.subtask(plus_one).run(_LOCK, n)
        if n == 1:
            raise ValueError("the first run fails after its child")
        return got

    def retried_child(self) -> int:
        return vc.subtask(pops_then_fails_once, max_retries=1).run([1, 2, 3])

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n


@pytest.fixture(autouse=True)
def runs_forgotten() -> None:
    _runs.clear()
    Shelf.cls.DEFAULT[:] = ["x"]  # (as the class made it, whatever a failing test did to it)


# -- 1. max_retries retries raising bodies only ---------------------------------------------------
@pytest.mark.parametrize("method", ["uncopyable_result", "uncapturable_state"])
def test_a_body_that_returned_is_not_run_again_when_its_result_or_state_cannot_be_kept(
    actor_store: StoreSpec, method: str
) -> None:
    handle = Retried.get_or_create("r")
    with pytest.raises(TypeError):
        getattr(handle, method).options(max_retries=3).run()
    assert _runs == [method]  # once: it raised nothing
    assert handle.count.run() == 0  # (excluded: nothing of it committed)


def test_a_raising_body_is_still_run_again_up_to_max_retries(actor_store: StoreSpec) -> None:
    with pytest.raises(ValueError, match="raised by the body"):
        Retried.get_or_create("r").raising.options(max_retries=2).run()
    assert _runs == ["raising"] * 3


# -- 2. the fingerprint of a child with an argument that cannot be pickled ------------------------
def test_the_fingerprint_of_an_unpicklable_argument_still_tells_the_other_arguments() -> None:
    lock = threading.Lock()
    assert fingerprint_of(plus_one, (lock, 1), {}) != fingerprint_of(plus_one, (lock, 2), {})
    assert fingerprint_of(plus_one, (lock, [1]), {}) != fingerprint_of(plus_one, (lock, [2]), {})
    assert fingerprint_of(plus_one, (lock, 1), {}) != fingerprint_of(plus_one, ([lock], 1), {})
    # the same shape, another lock (another run, another process): the same child
    assert fingerprint_of(plus_one, (lock, 1), {}) == fingerprint_of(plus_one, (threading.Lock(), 1), {})
    assert fingerprint_of(plus_one, ({"k": lock}, 1), {}) == fingerprint_of(plus_one, ({"k": _LOCK}, 1), {})


def test_a_checkpoint_of_a_child_with_an_unpicklable_argument_is_not_another_childs_result(
    actor_store: StoreSpec,
) -> None:
    """The run again launches ``plus_one(_LOCK, 2)`` where the first run checkpointed
    ``plus_one(_LOCK, 1)`` (2): it runs, its result 3, not the checkpoint's."""
    assert Retried.get_or_create("r").child_of_each_run.options(max_retries=1).run() == 3
    assert _runs == ["child_of_each_run"] * 2


# -- 3. the shared process pool after a worker died -----------------------------------------------
def test_the_shared_process_pool_is_made_again_once_a_worker_died() -> None:
    """A child ends its worker process (``os._exit``, a crash, the OOM killer): that launch
    fails (``BrokenProcessPool``), and the pool is unusable for good. Every later sub-task on
    ``"process"`` in this process failed so too, until the process ended."""
    with pytest.raises(BrokenProcessPool):
        vc.subtask(lambda x: os._exit(1) if x == 1 else x, executor="process").map(range(2))
    assert vc.subtask(lambda x: x * 2, executor="process").map([1, 2]) == [2, 4]


def test_a_child_whose_worker_died_is_retried_on_a_pool_made_again(tmp_path: Path) -> None:
    """``max_retries`` runs a child again when its worker died (its first run ends it): on a
    working pool, not the broken one, where every retry failed at once."""
    first = tmp_path / "first"

    def ends_its_worker_once(x: int) -> int:
        if x == 1 and not first.exists():
            first.touch()
            os._exit(1)
        return x

    assert vc.subtask(ends_its_worker_once, executor="process", max_retries=1).map(range(3)) == [0, 1, 2]
    assert first.exists()


# -- 4. a read-only result is the caller's own -----------------------------------------------------
@pytest.mark.parametrize("how", ["run", "run_async"])
def test_a_caller_changing_a_read_only_result_changes_nothing_a_later_call_sees(
    actor_store: StoreSpec, how: str
) -> None:
    handle = Shelf.get_or_create("s")
    method = handle.items_or_default
    got = method.run() if how == "run" else method.run_async().result()
    assert got == ["x"]
    got.append("the caller's")
    assert Shelf.cls.DEFAULT == ["x"]
    assert method.run() == ["x"]
    assert handle.take_the_default.run() == ["x"]  # (committed: what every process would)


@pytest.mark.usefixtures(spec.__name__)
def test_a_stand_ins_read_only_result_is_the_callers_own(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only method called through a stand-in (a handle unpickled where its class is not
    defined) runs in the batch, as a read: its result is a copy there too."""
    stand_in = _stand_in_ledger(store_spec, "si-kinds", monkeypatch)
    got = stand_in.kinds.run()
    assert got == ["add"]
    got.append("the caller's")
    assert stand_in.kinds.run() == ["add"]


# -- 5. a retried child gets the arguments it was launched with ------------------------------------
_attempts: list[int] = []


def pops_then_fails_once(items: list[int]) -> int:
    """Changes its argument, then fails the first time."""
    popped = items.pop()
    _attempts.append(popped)
    if len(_attempts) == 1:
        raise ValueError("the first attempt fails")
    return popped


@pytest.mark.parametrize("where", ["outside", "in-a-method"])
def test_a_child_retried_on_the_thread_executor_gets_its_arguments_as_launched(
    actor_store: StoreSpec, where: str
) -> None:
    """A child that changed its argument, then failed, is run again (``max_retries``) on the
    arguments it was launched with, as on a process pool (which sends a pickle of them each
    time), not on what the failed attempt left of them: the retry was another child."""
    _attempts.clear()
    if where == "outside":
        assert vc.subtask(pops_then_fails_once, max_retries=1).run([1, 2, 3]) == 3
    else:
        assert Retried.get_or_create("r").retried_child.run() == 3
    assert _attempts == [3, 3]
