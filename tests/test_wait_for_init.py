"""``Settings(wait_for_init=False)``: get_or_create returns before ``__init__`` commits (Ray)."""

import time
from pathlib import Path

import pytest

import vactor_cloud as vc
from vactor_cloud.errors import VirtualActorNotInitializedError


@vc.virtual_actor
class Gated:
    def __init__(self, gate: str, fail: bool = False) -> None:
        deadline = time.monotonic() + 10
        while not Path(gate).exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        if fail:
            raise ValueError("init failed")
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.n


@pytest.fixture
def gate(tmp_path):
    path = tmp_path / "gate"
    yield path
    path.touch()


@pytest.fixture
def nowait_store(store_spec):
    store_spec.init(settings=vc.Settings(wait_for_init=False))
    try:
        yield store_spec
    finally:
        vc.shutdown()


def test_writers_queue_behind_the_pending_creation_and_readers_raise(nowait_store, gate):
    actor = Gated.get_or_create("g", str(gate))
    assert vc.get_actor("g") == actor  # found at once in the creating process
    first = actor.add.run_async(1)
    with pytest.raises(VirtualActorNotInitializedError):
        actor.get.run()
    with pytest.raises(VirtualActorNotInitializedError):
        vc.get(actor.get.run_async())
    assert not first.done()
    gate.touch()
    assert actor.add.run(2) == 3  # after the queued call, in order
    assert vc.get(first) == 1
    vc.get(actor.ready())
    assert actor.get.run() == 3
    # an existing actor: nothing pending, nothing raises
    assert Gated.get_or_create("g", str(gate)).get.run() == 3


def test_a_failed_creation_reaches_queued_writers_and_ready(nowait_store, gate):
    actor = Gated.get_or_create("bad", str(gate), fail=True)
    queued = actor.add.run_async(1)
    ready = actor.ready()
    gate.touch()
    with pytest.raises(ValueError, match="init failed"):
        vc.get(queued)
    with pytest.raises(ValueError, match="init failed"):
        vc.get(ready)
    with pytest.raises(vc.ActorNotFoundError):
        vc.get_actor("bad")


def test_the_default_waits_for_init(actor_store, gate):
    gate.touch()
    with pytest.raises(ValueError):
        Gated.get_or_create("bad", str(gate), fail=True)
    assert Gated.get_or_create("ok", str(gate)).get.run() == 0
