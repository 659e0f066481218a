"""Class tags that collide (review h129).

A posted call carries the tag of the class it was made for: 4 bytes of a keyed hash of the
class's name (``vactor_cloud.class_tag``). A fold refuses a call whose tag is not the tag of
the actor's class (``ActorClassChangedError``: the id was deleted and made again with another
class). Two names with one tag are found by brute force over 4 bytes in a fraction of a second
(about 80,000 names, the birthday bound): two such classes defined in one process, the fold
took a call made for the one for a call of the other, and applied it to the wrong class.
Now the second is refused where it is defined (``ActorDefinitionError`` naming both), so a
process never knows two classes of one tag.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from test_combining import commit_behind_its_back, foreign_box, init_switchable

import vactor_cloud as vc
from vactor_cloud import _sync, definition
from vactor_cloud.class_tag import class_tag
from vactor_cloud.posting import PostedCall
from vactor_cloud.testing.lanes import StoreSpec


@functools.cache  # (about 0.15 s each search)
def colliding_names(module: str) -> tuple[str, str]:
    """Two qualnames whose classes of ``module`` share a tag (brute force over 4 bytes)."""
    seen: dict[bytes, str] = {}
    for i in range(2_000_000):
        qualname = f"Collide{i}"
        tag = hashlib.blake2b(f"{module}:{qualname}".encode(), digest_size=4, person=b"vactor-class").digest()
        first = seen.setdefault(tag, qualname)
        if first != qualname:
            return first, qualname
    raise AssertionError("no collision in 2,000,000 names")


def counter_class(qualname: str) -> type:
    """A class with ``add`` under ``qualname`` in this module (as a ``class`` statement makes)."""

    def __init__(self: Any) -> None:
        self.items = []

    def add(self: Any, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    return type(
        qualname, (), {"__init__": __init__, "add": add, "__module__": __name__, "__qualname__": qualname}
    )


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    first, second = colliding_names(__name__)
    assert class_tag(f"{__name__}:{first}") == class_tag(f"{__name__}:{second}")
    yield first, second
    for qualname in (first, second):
        definition._REGISTRY.pop(f"{__name__}:{qualname}", None)
        definition._TAGS.pop(class_tag(f"{__name__}:{qualname}"), None)


def test_a_second_class_whose_tag_collides_is_refused_where_it_is_defined(names: tuple[str, str]) -> None:
    first, second = names
    vc.virtual_actor(counter_class(first))
    with pytest.raises(vc.ActorDefinitionError) as raised:
        vc.virtual_actor(counter_class(second))
    message = str(raised.value)
    assert f"{__name__}:{first}" in message and f"{__name__}:{second}" in message, message
    assert definition.lookup_local_class(f"{__name__}:{second}") is None
    # The first one defined again under its own name (a notebook's cell run again) is no collision.
    vc.virtual_actor(counter_class(first))


@pytest.mark.usefixtures("runtime_off")
def test_a_call_made_for_a_class_is_never_applied_to_another_of_its_tag(
    store_spec: StoreSpec, names: tuple[str, str]
) -> None:
    """The wrong-class application the refusal prevents: ``x`` was made an actor of the
    first class, deleted, and made again of another; a call made for the first (posted by a
    process that still took ``x`` for one) is folded here. Before, it ran on the second class
    (its tag collides): here the second class cannot be defined in this process; a process
    defining it and not the first never holds the first's tag."""
    first, second = names
    old = vc.virtual_actor(counter_class(first))
    try:
        new = vc.virtual_actor(counter_class(second))
    except vc.ActorDefinitionError:
        return
    init_switchable(store_spec, combine_window=60.0)
    old.get_or_create("x").add.run("old/0")
    assert vc.delete_actor("x") is True
    handle = new.get_or_create("x")
    stale = PostedCall("add", pickle.dumps((("stale",), {})), uuid.uuid4().hex, for_class=class_tag(old.name))
    box = foreign_box("x")
    sent = _sync.sync(box.send(box.prepare((stale,))))
    vc.get_runtime().core("x")._posts().follow(sent)
    commit_behind_its_back("x")  # our next commit loses the race, posts, and folds the stale one
    handle.add.run("new/0")
    with pytest.raises(vc.ActorClassChangedError):
        handle.call_outcome(stale.call_id)
