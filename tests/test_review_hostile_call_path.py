"""Hostile review h102 of the call path: attacks that found the guarantees holding, kept as
regression tests (the ones that broke are in test_review_store_base_exceptions,
test_review_stand_in_methods, test_review_nested_doubts_group and
test_review_deadline_after_a_lost_race).

* Nothing hangs: a call from a thread an actor method started and left running, after the
  method returned; a future made in one ``asyncio.run`` loop and awaited in the next; calls
  from ``atexit`` callbacks that run before and after vactor_cloud's own exit hook.
* Results by value: the state object itself, a result holding a handle, and a generator
  (which cannot be copied: ``TypeError``, the call not applied).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: bound on any wait here (a hang fails the test instead of the run)
HANG = 60.0

#: the threads methods started, by the test that asked (class bodies may be copied by value)
_started: dict[str, tuple[threading.Thread, list[Any]]] = {}


@vc.virtual_actor
class Keeper:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> int:
        self.items.append(item)
        return len(self.items)

    def me(self) -> Keeper:
        return self

    def handle_of(self, actor_id: str) -> Any:
        return vc.get_actor(actor_id)

    def lazy(self) -> Any:
        self.items.append("lazy")
        return (item for item in self.items)

    def leave_a_thread(self, key: str, target: str) -> str:
        """Start a thread that calls ``target`` once this method returned, and return."""
        gate = threading.Event()
        box: list[Any] = []

        def later() -> None:
            gate.wait(HANG)
            try:
                box.append(vc.get_actor(target).add.run(key))
            except BaseException as exc:  # reported to the test
                box.append(exc)

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        _started[key] = (thread, box)
        gate.set()  # (the call may start before or after the return: either way it ends)
        return "left"

    @vc.virtual_actor.readonly
    def get(self) -> list[Any]:
        return list(self.items)


def test_a_thread_an_actor_method_left_running_calls_its_own_actor_and_others(spec: StoreSpec) -> None:
    spec.init()
    keeper = Keeper.get_or_create("k")
    Keeper.get_or_create("other")
    for target in ("k", "other"):
        assert keeper.leave_a_thread.run(f"t-{target}", target) == "left"
        thread, box = _started.pop(f"t-{target}")
        thread.join(HANG)
        assert not thread.is_alive() and box == [1], box


def test_a_future_made_in_one_event_loop_is_awaited_in_the_next(spec: StoreSpec) -> None:
    spec.init()
    keeper = Keeper.get_or_create("loops")
    futures: list[Any] = []

    async def first() -> int:
        futures.append(keeper.add.run_async("a"))
        return await keeper.add.run_async("b")

    async def second() -> tuple[int, int]:
        return await futures[0], await keeper.add.run_async("c")

    assert asyncio.run(first()) == 2
    assert asyncio.run(second()) == (1, 3)


def test_results_are_copies_and_a_generator_result_fails_its_call_alone(spec: StoreSpec) -> None:
    spec.init()
    keeper = Keeper.get_or_create("r")
    keeper.add.run([1])
    state = keeper.me.run()
    state.items.append("leak")  # a copy of the state: the actor's is untouched
    handle = keeper.handle_of.run("r")
    assert handle.get.run() == [[1]]
    with pytest.raises(TypeError, match="by value"):
        keeper.lazy.run()
    assert keeper.get.run() == [[1]]  # the call that returned a generator was not applied


SCRIPT = """
import atexit, sys


def late() -> None:  # registered first: runs after vactor_cloud's exit hook shut the runtime
    print("after the runtime's exit:", Counter.get_or_create("c").add.run(), flush=True)


atexit.register(late)
import vactor_cloud as vc


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n


vc.init(sys.argv[1])
Counter.get_or_create("c").add.run()
atexit.register(lambda: print("before the runtime's exit:", Counter.get_or_create("c").add.run(), flush=True))
"""


def test_calls_from_exit_callbacks_before_and_after_the_runtimes_exit_hook(tmp_path: Path) -> None:
    script = tmp_path / "exiting.py"
    script.write_text(SCRIPT)
    repo = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, str(script), (tmp_path / "store").as_uri()],
        env=dict(os.environ, PYTHONPATH=repo),
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["before the runtime's exit: 2", "after the runtime's exit: 3"]
