"""A class body loaded by a process of another Python version than the one that pickled it.

A class body stored by value holds its methods' bytecode (cloudpickle rebuilds their code
objects as they were), and bytecode differs between Python versions: a 3.11 body called by
``vc.get_actor(...)`` in a process without the class crashed CPython 3.12 (SIGSEGV) and, on
3.13, ran ``self.n += 1`` as something else (``TypeError: unsupported operand type(s) for +:
'Tally' and 'str'``): a method run wrongly may as well commit a wrong state. Found by running
one program's actor from the others' Pythons on one store. A body now records the bytecode of
the Python that pickled it (``sys.implementation.cache_tag``), and a process of another
refuses to load it, saying what to do; a body stored by reference (no code) loads anywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from actors import Shelf

import vactor_cloud as vc
from vactor_cloud import _sync, codec, definition
from vactor_cloud.errors import ActorDefinitionError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init()
    try:
        yield store_spec
    finally:
        vc.shutdown()


def _rewrite_class_object(actor_id: str, meta_python: str | None) -> str:
    """The actor's class object written again, its meta saying ``meta_python`` pickled it; its key."""
    log = vc.get_runtime().log(actor_id)
    sha = _sync.sync(log.read_step(1)).class_ref.sha  # type: ignore[union-attr]
    key = log.class_key(sha)
    store = vc.get_runtime().store
    env = codec.decode(key, _sync.sync(store.get(key)).data)
    meta = {k: v for k, v in env.meta.items() if k not in ("parts", "python")}
    if meta_python is not None:
        meta["python"] = meta_python
    _sync.sync(store.put(key, codec.encode(key, meta, {"body": env.parts["body"]})))
    return key


def test_a_class_body_pickled_by_another_python_is_refused_not_run(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    shelf = Shelf.get_or_create("shelf")
    assert shelf.add.run() == 1
    log = vc.get_runtime().log("shelf")
    sha = _sync.sync(log.read_step(1)).class_ref.sha  # type: ignore[union-attr]
    stored = codec.decode(log.class_key(sha), _sync.sync(vc.get_runtime().store.get(log.class_key(sha))).data)
    assert stored.meta.get("python") == sys.implementation.cache_tag  # the writer's Python, recorded
    key = _rewrite_class_object("shelf", "cpython-99")

    vc.shutdown()
    spec.init()
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)  # a process without the class
    with pytest.raises(ActorDefinitionError) as caught:
        vc.get_actor("shelf").add.run()
    message = str(caught.value)
    assert "cpython-99" in message and str(sys.implementation.cache_tag) in message, message
    assert key.rsplit("/", 1)[1] in message and "import" in message, message
    monkeypatch.setitem(definition._REGISTRY, Shelf.name, Shelf.definition)
    assert vc.get_actor("shelf").value.run() == 1  # nothing ran, nothing was committed


def test_a_class_body_of_an_earlier_release_without_the_record_still_loads(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    shelf = Shelf.get_or_create("old")
    assert shelf.add.run() == 1
    _rewrite_class_object("old", None)
    vc.shutdown()
    spec.init()
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)
    assert vc.get_actor("old").add.run() == 2
