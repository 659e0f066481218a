"""The seed's API on every backend: creation, calls, read-only calls, bad input."""

from __future__ import annotations

import asyncio
import os
import runpy
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from runtime_workers import Counter, init_from_spec

import vactor_cloud as vc
from vactor_cloud import _sync, definition
from vactor_cloud.errors import (
    ActorDefinitionError,
    ActorNotFoundError,
    InvalidActorIdError,
    StateSerializationError,
)
from vactor_cloud.storage import LocalStore
from vactor_cloud.testing.lanes import StoreSpec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def actors(actor_store: StoreSpec) -> StoreSpec:
    """vactor_cloud initialised on a fresh store of the current lane (the plugin's fixture)."""
    return actor_store


def steps_of(actor_id: str) -> list[int]:
    return _sync.sync(vc.get_runtime().core(actor_id).log.list_steps())


def test_seed_example_runs_with_only_its_imports_changed(
    actors: StoreSpec, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seed calls workflow.init() without arguments: the store comes from the
    # environment, as it would for a user (credentials and endpoints included).
    monkeypatch.setenv("VACTOR_STORAGE", actors.url)
    # The script's class is registered as __main__:Counter in this worker: dropped after the
    # test (a later test's CLI, run in this process, took it for the README tour's
    # __main__:Counter and ran the quickstart's methods on that state: TypeError, dict + int)
    monkeypatch.setattr(definition, "_REGISTRY", dict(definition._REGISTRY))
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    assert capsys.readouterr().out.split() == ["10", "20", "30"]


def test_quickstart_script_prints_the_seed_values_on_the_embedded_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VACTOR_STORAGE"}
    env["XDG_DATA_HOME"] = str(tmp_path)  # the embedded store lives under it
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.split() == ["10", "20", "30"]
    embedded = LocalStore(tmp_path / "vactor_cloud")
    assert asyncio.run(embedded.head("actors/my_counter/HEAD")) is not None


def test_get_or_create_returns_the_existing_actor_and_ignores_arguments(actors: StoreSpec) -> None:
    first = Counter.get_or_create("c", 5)
    first.incr.run(1)
    again = Counter.get_or_create("c", 100)
    assert again.actor_id == "c"
    assert again.value.run() == 6
    assert steps_of("c") == [0, 1]


def test_run_async_returns_an_awaitable_future_and_get_collects_lists(actors: StoreSpec) -> None:
    counter = Counter.get_or_create("c", 0)
    futures = [counter.incr.run_async(1) for _ in range(10)]
    assert all(isinstance(f, vc.ActorFuture) for f in futures)
    assert sorted(vc.get(futures)) == list(range(1, 11))

    async def from_a_foreign_loop() -> int:
        return int(await counter.value.run_async())

    assert asyncio.run(from_a_foreign_loop()) == 10


def test_calls_from_one_process_apply_in_submission_order(actors: StoreSpec) -> None:
    counter = Counter.get_or_create("c", 0)
    results = vc.get([counter.incr.run_async(1) for _ in range(50)])
    assert results == list(range(1, 51))
    assert counter.value.run() == 50


def test_a_raising_method_commits_nothing_and_reraises_the_original(actors: StoreSpec) -> None:
    @vc.virtual_actor
    class Fragile:
        def __init__(self) -> None:
            self.items: list[int] = []

        def add(self, x: int) -> int:
            self.items.append(x)
            if x < 0:
                raise ValueError(f"negative {x}")
            return len(self.items)

        @vc.virtual_actor.readonly
        def all(self) -> list[int]:
            return list(self.items)

    fragile = Fragile.get_or_create("f")
    fragile.add.run(1)
    before = steps_of("f")
    with pytest.raises(ValueError, match="negative -5"):
        fragile.add.run(-5)
    assert steps_of("f") == before
    assert fragile.all.run() == [1]
    # In one group commit, the raising call is excluded and the others commit.
    futures = [fragile.add.run_async(x) for x in (2, -1, 3)]
    assert futures[0].result() == 2
    with pytest.raises(ValueError):
        futures[1].result()
    assert futures[2].result() == 3
    assert fragile.all.run() == [1, 2, 3]


def test_a_mutation_inside_a_readonly_method_is_discarded(actors: StoreSpec) -> None:
    @vc.virtual_actor
    class Sneaky:
        def __init__(self) -> None:
            self.n = 0

        @vc.virtual_actor.readonly
        def peek_and_poke(self) -> int:
            self.n += 100
            return self.n

    sneaky = Sneaky.get_or_create("s")
    assert sneaky.peek_and_poke.run() == 100
    assert sneaky.peek_and_poke.run() == 100
    assert steps_of("s") == [0]


def test_dict_state_is_used_when_the_class_defines_no_state_protocol(actors: StoreSpec) -> None:
    counter = Counter.get_or_create("c", 3)
    counter.incr.run(4)
    vc.shutdown()
    init_from_spec(actors)
    assert vc.get_actor("c").value.run() == 7


def test_only_one_of_getstate_setstate_is_refused_at_decoration() -> None:
    with pytest.raises(ActorDefinitionError, match="__getstate__ but not __setstate__"):

        @vc.virtual_actor
        class Half:
            def __getstate__(self) -> int:
                return 1


def test_unknown_method_is_an_attribute_error(actors: StoreSpec) -> None:
    counter = Counter.get_or_create("c")
    with pytest.raises(AttributeError, match="no method 'decr'"):
        counter.decr.run()


def test_wrong_arguments_are_a_type_error_before_anything_is_written(actors: StoreSpec) -> None:
    counter = Counter.get_or_create("c")
    with pytest.raises(TypeError, match="incr"):
        counter.incr.run(1, 2, 3)
    with pytest.raises(TypeError):
        counter.incr.run(nope=1)
    assert steps_of("c") == [0]


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "tab\there", "nul\x00", "x" * 513, "é" * 257])
def test_invalid_actor_ids_are_refused(actors: StoreSpec, bad: str) -> None:
    with pytest.raises(InvalidActorIdError):
        Counter.get_or_create(bad)
    with pytest.raises(InvalidActorIdError):
        vc.get_actor(bad)


def test_get_actor_of_a_missing_id_names_the_id_and_the_root(actors: StoreSpec) -> None:
    with pytest.raises(ActorNotFoundError) as info:
        vc.get_actor("nobody")
    assert "nobody" in str(info.value)
    assert vc.get_runtime().store.describe() in str(info.value)
    assert isinstance(info.value, LookupError)


def test_workflow_facade_matches_ray_names(actors: StoreSpec) -> None:
    from vactor_cloud import workflow

    Counter.get_or_create("wf", 2)
    assert workflow.get_actor(workflow_id="wf").value.run() == 2


def test_unpicklable_state_is_a_clear_error_and_nothing_is_committed(actors: StoreSpec) -> None:
    @vc.virtual_actor
    class Holder:
        def __init__(self) -> None:
            self.thing: object = None

        def hold_a_lock(self) -> None:
            self.thing = threading.Lock()

        def hold_a_number(self) -> None:
            self.thing = 1

    holder = Holder.get_or_create("h")
    with pytest.raises(StateSerializationError, match="cannot serialize"):
        holder.hold_a_lock.run()
    assert steps_of("h") == [0]
    holder.hold_a_number.run()
    assert steps_of("h") == [0, 1]


def test_a_writer_cannot_call_its_own_actor_through_a_handle(actors: StoreSpec) -> None:
    @vc.virtual_actor
    class Loop:
        def __init__(self) -> None:
            self.n = 0

        def again(self) -> None:
            vc.get_actor("loop").again.run()

    loop = Loop.get_or_create("loop")
    with pytest.raises(vc.ReentrantCallError, match="same actor"):
        loop.again.run()


def test_an_actor_method_may_call_another_actor(actors: StoreSpec) -> None:
    @vc.virtual_actor
    class Forwarder:
        def __init__(self) -> None:
            self.sent = 0

        def forward(self, to: str) -> int:
            self.sent += 1
            return int(vc.get_actor(to).incr.run(10))

    Counter.get_or_create("target")
    forwarder = Forwarder.get_or_create("fwd")
    assert forwarder.forward.run("target") == 10
    assert vc.get_actor("target").value.run() == 10


def test_shutdown_waits_for_a_head_move_already_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    # A periodic HEAD flush in flight when shutdown() ran used to be left behind: the last
    # flush found nothing pending and returned, the runtime closed its executor, and the
    # move failed afterwards ("could not move HEAD ...: cannot schedule new futures after
    # shutdown", seen at Dask workers' exit). Shutdown now waits for it.
    from vactor_cloud.storage import MemoryStore

    started, finished = threading.Event(), threading.Event()

    class SlowHead(MemoryStore):
        async def _put(self, key: str, data: bytes, mode: object) -> str:
            if key.endswith("/HEAD") and started.is_set() is False and "slow" in key:
                started.set()
                await asyncio.sleep(0.5)
                version = await super()._put(key, data, mode)  # type: ignore[arg-type]
                finished.set()
                return version
            return await super()._put(key, data, mode)  # type: ignore[arg-type]

    settings = vc.Settings(head_interval=0.01, head_max_delay=0.01, head_lag_steps=1000)
    vc.init(SlowHead("slow-head"), settings=settings)
    try:
        counter = Counter.get_or_create("slow")
        counter.incr.run()
        counter.incr.run()
        assert started.wait(10), "no periodic HEAD move started"
    finally:
        vc.shutdown()
    assert finished.is_set(), "shutdown returned with a HEAD move still in flight"
    assert "could not move HEAD" not in caplog.text
