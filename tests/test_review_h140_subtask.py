"""``vc.subtask`` checkpoints: guarantees that a mutation sweep (review-h140) found no test
holding. Each test failed with the mutation named in its docstring applied to the library, and
passes without it."""

from __future__ import annotations

from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, codec, keys, subtask_checkpoints
from vactor_cloud.keys import task_key
from vactor_cloud.state import dumps_state
from vactor_cloud.subtask_checkpoints import fingerprint_of
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def fail_some(x: int) -> int:
    if x > 0:
        raise ValueError(f"child {x} failed")
    return x


def won_elsewhere(actor_id: str, call_id: str) -> str:
    """A child that, while it runs, has another run of its call (two processes running one keyed
    call) checkpoint this very child first: same position, same function, same arguments."""
    key = task_key(actor_id, call_id, 0)
    meta = {
        "kind": "task",
        "position": 0,
        "fingerprint": fingerprint_of(won_elsewhere, (actor_id, call_id), {}),
        "serializer": "pickle",
    }
    data = codec.encode(key, meta, {"result": dumps_state("the winner's result", "pickle")})
    _sync.sync(vc.get_runtime().store.put(key, data, mode="create"))
    return "the loser's result"


@vc.virtual_actor
class Launcher:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def fail_two(self) -> list[int]:
        return vc.subtask(fail_some).map([0, 1, 2])

    def race(self) -> str:
        call = vc.current_call()
        assert call is not None
        value = vc.subtask(won_elsewhere).run(call.actor_id, call.call_id)
        self.got.append(value)
        return value

    @vc.virtual_actor.readonly
    def view(self) -> list[Any]:
        return list(self.got)


def test_the_exception_raised_is_the_first_failing_childs_by_position(actor_store: StoreSpec) -> None:
    """Documented: "the exception of the first failing child (by position) is raised". With
    ``max(failures)`` the last one was; nothing else noticed."""
    with pytest.raises(ValueError, match="child 1 failed"):
        Launcher.get_or_create("two-fail").fail_two.run()


def test_the_run_that_lost_a_checkpoint_race_returns_the_winners_result(actor_store: StoreSpec) -> None:
    """Two runs of one call computing the same child: "the first checkpoint written wins and both
    runs return that result". The loser's create-only put fails; taking its own result then
    (``Memo._put`` answering None instead of the bytes found), it committed a result that
    another run of the call, answered from the checkpoint, would not give."""
    launcher = Launcher.get_or_create("race")
    assert launcher.race.run() == "the winner's result"
    assert launcher.view.run() == ["the winner's result"]


_computed: list[int] = []
_blink_after_children: list[bool] = []


def square(x: int) -> int:
    _computed.append(x)
    return x * x


@vc.virtual_actor
class Squares:
    def __init__(self) -> None:
        self.total = 0

    def add(self, x: int) -> int:
        value = vc.subtask(square).run(x)
        if _blink_after_children:
            _blink_after_children.pop()
            raise ConnectionError("blinked after the child finished")
        self.total += value
        return self.total


def test_a_checkpoint_compacted_between_its_listing_and_its_read_is_computed_again(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If compaction removed a call's checkpoints, "a re-run computes the children again": also
    one listed and gone by the time it is read. Its read's ``NotFoundError`` passed on failed
    the call (and each run again that listed it meanwhile) instead."""
    from vactor_cloud.errors import NotFoundError

    _computed.clear()
    _blink_after_children[:] = [True]
    store = vc.get_runtime().store
    real_get = store.get
    gone: list[str] = []

    async def get(key: str) -> Any:
        if "/tasks/" in key and not gone:  # the retry's read: compacted since its listing
            gone.append(key)
            raise NotFoundError(key)
        return await real_get(key)

    monkeypatch.setattr(store, "get", get)
    assert Squares.get_or_create("sq").add.options(max_retries=1).run(3) == 9
    assert gone and _computed == [3, 3]


def double(x: int) -> int:
    return 2 * x


@vc.virtual_actor
class ManyChildren:
    def __init__(self) -> None:
        self.done = 0

    def launch_twice(self, count: int) -> list[int]:
        first = vc.subtask(double).map(range(count))
        second = vc.subtask(double).map(range(count))
        self.done += 1
        return first + second


def test_a_run_launching_more_children_than_checkpoint_keys_can_number_is_refused(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoint keys number a run's children with 6 digits (``keys.task_key``): position
    1,000,000 and on sort among the others (``"1000000" < "999999"``), so the listing that finds
    a launch's checkpoints missed them and a re-run ran those children again. A launch past
    ``TASK_POSITIONS`` is refused before it runs any child (the bound lowered here to 5), and
    the bound is where the keys stop sorting as their positions do."""
    last = task_key("a", "c", keys.TASK_POSITIONS - 1)
    assert len(last) == len(task_key("a", "c", 0)) < len(task_key("a", "c", keys.TASK_POSITIONS))
    monkeypatch.setattr(subtask_checkpoints, "TASK_POSITIONS", 5)
    launcher = ManyChildren.get_or_create("many")
    assert launcher.launch_twice.run(2) == [0, 2, 0, 2]
    with pytest.raises(ValueError, match="at most 5 sub-tasks"):
        launcher.launch_twice.run(3)
    assert launcher.launch_twice.options(name="ok").run(1) == [0, 0]
