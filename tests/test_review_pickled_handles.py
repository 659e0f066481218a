"""Pickled handles and methods carry the class they were made for (docs/concepts.md, "Deleting
an actor"; docs/protocol.md, "Handles in pickles"). Process A is this test's runtime with a warm
cache, process B (``own_runtime``) deletes the id and makes it again as a ``Basket``. Tests
whose docstring begins "Held" passed before the class was carried (they pin compatibility);
the others failed before it: an unpickled handle or method ran ``Basket.add``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from test_review_class_identity import _define, basket_items, basket_now
from test_review_warm_after_delete import WARM, Basket, Till, as_a, as_b, warm_till

import vactor_cloud as vc
from vactor_cloud import definition as definition_module
from vactor_cloud import handle as handle_module
from vactor_cloud.handle import ActorHandle
from vactor_cloud.runtime import store_in_use
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

PICKLERS = {"pickle": pickle.dumps, "cloudpickle": cloudpickle.dumps}
TILL = f"{Till.__module__}:Till"


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    yield store_spec
    vc.shutdown()


def refused_or_result(call: Any) -> Any:
    try:
        return call()
    except vc.ActorClassChangedError:
        return "refused"


@pytest.mark.parametrize("dumps", PICKLERS.values(), ids=PICKLERS.keys())
def test_a_pickled_method_alone_and_a_timer_refuse_an_actor_of_another_class(
    spec: StoreSpec, dumps: Any
) -> None:
    """``till.add`` pickled alone, and ``till.add.options(delay=...)``, with the stdlib pickle
    and with cloudpickle: unpickled after B made a basket of the id, the call and the timer's
    scheduling are refused, and the basket has no item and no timer."""
    as_a(spec, WARM)
    till = warm_till("pm-alone")
    method, timer = dumps(till.add), dumps(till.add.options(delay=3600))
    basket_now(spec, "pm-alone")

    def use() -> list[Any]:
        return [
            refused_or_result(lambda: pickle.loads(method).run(1)),
            refused_or_result(lambda: pickle.loads(timer).run(2)),
        ]

    assert as_b(spec, use) == ["refused", "refused"]
    assert basket_items(spec, "pm-alone") == []
    assert as_b(spec, lambda: vc.ActorHandle("pm-alone").timers()) == []


def test_an_unpickled_handle_of_a_class_still_calls_an_actor_of_that_class(spec: StoreSpec) -> None:
    """Held: a ``Till`` handle and method unpickled while the id holds a ``Till`` call it (the
    id deleted and made again as a ``Till`` too: same class, same name)."""
    as_a(spec, WARM)
    till = warm_till("pm-same")
    handle_bytes, method_bytes = pickle.dumps(till), pickle.dumps(till.add)

    def again() -> None:
        assert vc.delete_actor("pm-same") is True
        Till.get_or_create("pm-same", 100)

    as_b(spec, again)
    assert as_b(spec, lambda: pickle.loads(handle_bytes).add.run(1)) == 101
    assert as_b(spec, lambda: pickle.loads(method_bytes).run(2)) == 103


def test_a_handle_pickled_before_its_class_is_defined_again_runs_the_new_body(spec: StoreSpec) -> None:
    """Held: a notebook cell defining the class run again (same name, new body): a handle
    pickled before is of that name still, and runs the class now registered under it."""
    spec.init()
    first = _define(1)
    data = pickle.dumps(first.get_or_create("pm-redefined"))
    assert pickle.loads(data).incr.run() == 1
    _define(10)
    assert pickle.loads(data).incr.run() == 11
    assert pickle.loads(data).reset.run() == 0


def _previous_reduce(self: ActorHandle[Any]) -> tuple[Any, ...]:
    """``ActorHandle.__reduce__`` of the release before handles carried their class."""
    origin = self._origin or store_in_use()
    if origin is None:
        return (handle_module._get_actor_handle, (self.actor_id,))
    return (handle_module._get_actor_handle, (self.actor_id, origin))


def _previous_get_actor_handle(actor_id: str, origin: str | None = None) -> ActorHandle[Any]:
    """``_get_actor_handle`` of the release before handles carried their class."""
    handle: ActorHandle[Any] = ActorHandle(actor_id)
    handle._origin = origin
    return handle


def test_held_a_pickle_of_the_previous_release_loads_as_a_handle_of_no_class(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: a handle pickled by the previous release (``(_get_actor_handle, (id, store))``,
    made by hand here) loads as a handle of no class: it follows the actor, as it did."""
    as_a(spec, WARM)
    till = warm_till("pm-old")
    with monkeypatch.context() as patch:
        patch.setattr(ActorHandle, "__reduce__", _previous_reduce)
        old = pickle.dumps(till)
    basket_now(spec, "pm-old")
    assert as_b(spec, lambda: pickle.loads(old).add.run(3)) == 1


def test_the_previous_release_loads_a_handle_of_a_class_as_a_handle_of_no_class(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``Till`` handle pickled now, loaded by the previous release's ``_get_actor_handle``
    (patched in): it loads, with the store it came from and no class (the previous release
    cannot refuse: it follows the actor, as its own pickles do)."""
    as_a(spec, WARM)
    till = warm_till("pm-older")
    data = pickle.dumps(till)
    assert TILL.encode() in data
    monkeypatch.setattr(handle_module, "_get_actor_handle", _previous_get_actor_handle)
    loaded = pickle.loads(data)
    assert (loaded._origin, loaded._class, loaded._class_name) == (store_in_use(), None, None)
    basket_now(spec, "pm-older")
    assert as_b(spec, lambda: pickle.loads(data).add.run(3)) == 1


def test_a_handle_pickle_grows_by_its_class_name_and_a_few_bytes(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``Till`` handle's pickle is the untyped one's plus its class name and at most 40
    bytes; an untyped handle's pickle is what the previous release wrote, byte for byte."""
    as_a(spec, WARM)
    till = warm_till("pm-size")
    untyped = vc.get_actor("pm-size")
    with monkeypatch.context() as patch:
        patch.setattr(ActorHandle, "__reduce__", _previous_reduce)
        previous = pickle.dumps(untyped)
    assert pickle.dumps(untyped) == previous
    assert TILL.encode() not in previous
    growth = len(pickle.dumps(till)) - len(pickle.dumps(untyped))
    assert len(TILL) < growth <= len(TILL) + 40
    assert len(pickle.dumps(till.add)) - len(pickle.dumps(untyped.add)) == 0  # both name Till


@vc.virtual_actor
class Holder:
    """A state holding a handle to another actor."""

    def __init__(self, peer: vc.ActorHandle[Any]) -> None:
        self.peer = peer

    @vc.virtual_actor.readonly
    def peer_add(self, amount: int) -> Any:
        return refused_or_result(lambda: self.peer.add.run(amount))


@pytest.mark.parametrize("writer", ["previous", "this"])
def test_a_handle_in_an_actors_state_loads_and_keeps_its_class(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """A ``Holder`` whose state holds a ``Till`` handle, written by the previous release (its
    handle pickle patched in) or by this one, read by B (cold): the state loads; the handle
    this release wrote refuses B's basket, the previous release's follows it."""
    as_a(spec, WARM)
    till = warm_till("pm-peer")
    with monkeypatch.context() as patch:
        if writer == "previous":
            patch.setattr(ActorHandle, "__reduce__", _previous_reduce)
        Holder.get_or_create("pm-holder", till)
    basket_now(spec, "pm-peer")
    expected = "refused" if writer == "this" else 1
    assert as_b(spec, lambda: vc.get_actor("pm-holder").peer_add.run(5)) == expected


NOT_IMPORTABLE = """
import pickle, sys
import vactor_cloud as vc

vc.init(sys.argv[1])
for name in sys.argv[2:]:
    with open(name, "rb") as f:
        call = pickle.load(f)
    try:
        print(call.run(1) if isinstance(call, vc.ActorMethod) else call.add.run(1))
    except vc.ActorClassChangedError as exc:
        print("refused", exc.was)
assert not any(name.startswith("test_") for name in sys.modules)
"""


def test_a_handle_unpickled_where_its_class_module_is_not_importable_works_by_name(tmp_path: Path) -> None:
    """A process that cannot import the test module of ``Till`` and ``Basket`` (their bodies
    come from storage) unpickles a ``Till`` handle and ``add``: on the ``Till`` they call it;
    on the id made a ``Basket`` since, they are refused, by the name they carry."""
    vc.shutdown()
    root = (tmp_path / "store").as_uri()
    vc.init(root)
    try:
        files = []
        for actor_id in ("same", "changed"):
            till = Till.get_or_create(actor_id, 10)
            for kind, value in (("handle", till), ("method", till.add)):
                path = tmp_path / f"{actor_id}-{kind}"
                path.write_bytes(pickle.dumps(value))
                files.append(str(path))
        assert vc.delete_actor("changed") is True
        Basket.get_or_create("changed")
    finally:
        vc.shutdown()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", NOT_IMPORTABLE, root, *files],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=repo),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["11", "12", f"refused {TILL}", f"refused {TILL}"]


POOL_SCRIPT = """
import multiprocessing, pickle, sys
import vactor_cloud as vc


@vc.virtual_actor
class Till:
    def __init__(self) -> None:
        self.n = 0

    def add(self, amount: int) -> int:
        self.n += amount
        return self.n


@vc.virtual_actor
class Basket:
    def __init__(self) -> None:
        self.items = []

    def add(self, item: int) -> int:
        self.items.append(item)
        return len(self.items)


def work(root, sent):
    vc.init(root)
    assert __name__ == "__mp_main__"
    made_here = pickle.dumps(Till.get_or_create("here"))
    assert b"__main__:Till" in made_here and b"__mp_main__" not in made_here, made_here
    try:
        return sent.run(5) if isinstance(sent, vc.ActorMethod) else sent.add.run(5)
    except vc.ActorClassChangedError as exc:
        return "refused " + exc.was


if __name__ == "__main__":
    method, root = sys.argv[1], sys.argv[2]
    vc.init(root)
    till = Till.get_or_create("t")
    till.add.run(1)
    assert b"__main__:Till" in pickle.dumps(till)
    vc.delete_actor("t")
    Basket.get_or_create("t")
    with multiprocessing.get_context(method).Pool(2) as pool:
        print(pool.starmap(work, [(root, till), (root, till.add), (root, vc.get_actor("t"))]))
"""


def test_a_handle_sent_to_a_spawned_pool_child_refuses_an_actor_of_another_class(tmp_path: Path) -> None:
    """A script's ``Till`` handle and ``add`` (class ``__main__:Till``), sent to ``spawn`` pool
    children (where the script is ``__mp_main__``, its class still ``__main__:Till``) after the
    id was made a ``Basket``: refused there; the untyped handle of the basket calls it."""
    script = tmp_path / "pool_script.py"
    script.write_text(POOL_SCRIPT)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, str(script), "spawn", (tmp_path / "store").as_uri()],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=repo),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "['refused __main__:Till', 'refused __main__:Till', 1]"


@vc.virtual_actor
class Meter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def read(self) -> int:
        return self.n


@vc.virtual_actor
class Gauge:
    def __init__(self) -> None:
        self.n = 0

    @vc.virtual_actor.readonly
    def bump(self) -> int:
        """Read-only here, a writer in ``Meter``."""
        return -1


def test_a_writer_of_a_class_not_defined_here_is_no_read_where_a_stale_cache_knows_another(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``Meter`` handle unpickled where no ``Meter`` is defined (unregistered here), A's
    warm cache saying the id is a ``Gauge`` (whose ``bump`` is read-only), while B has made it
    a ``Meter`` again: ``bump`` went by the ``Gauge``'s read-only method, ran ``Meter.bump`` as
    a read, and its increment was dropped. A method of a class not defined here is a writer
    taking any arguments: it ran as one, committed."""
    as_a(spec, WARM)
    meter = Meter.get_or_create("pm-stale")
    assert meter.bump.run() == 1
    data = pickle.dumps(meter)

    def gauge() -> None:
        assert vc.delete_actor("pm-stale") is True
        Gauge.get_or_create("pm-stale")

    def meter_again() -> None:
        assert vc.delete_actor("pm-stale") is True
        Meter.get_or_create("pm-stale")

    as_b(spec, gauge)
    with pytest.raises(vc.ActorClassChangedError):
        meter.bump.run()  # A learns the id holds a Gauge
    as_b(spec, meter_again)
    monkeypatch.delitem(definition_module._REGISTRY, Meter.name)
    assert pickle.loads(data).bump.run() == 1

    def read_as_b() -> int:
        return int(vc.get_actor("pm-stale").read.run())

    assert as_b(spec, read_as_b) == 1
