"""What a new user meets at the edges of the API, and must be able to act on.

Pins: a state that cannot be serialized is refused naming the actor, its
class and the attribute that holds the culprit (from a method and from
``__init__``); a result that cannot be passed by value names the method and
the actor; a cycle A -> B -> A is reported as that cycle, each actor once;
a storage URL whose scheme lost a slash (``s3:/bucket``) is refused rather
than taken for a local directory of that name.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Vactor

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Holder:
    def __init__(self, hold_lock: bool = False) -> None:
        self.items: list[Any] = []
        if hold_lock:
            self.connection = threading.Lock()

    def keep(self, name: str) -> None:
        # A lock made inside the method: arguments must pickle, so the culprit is born here.
        setattr(self, name, threading.Lock())

    def keep_nested(self) -> None:
        self.items.append({"lock": threading.Lock()})

    def lock_please(self) -> Any:
        self.items.append(1)
        return threading.Lock()

    @vc.virtual_actor.readonly
    def size(self) -> int:
        return len(self.items)

    def call_other(self, other: str, back: str) -> int:
        return int(vc.get_actor(other).call_back.run(back))

    def call_back(self, back: str) -> int:
        return int(vc.get_actor(back).size.run())


@vc.virtual_actor
class Packed:
    def __init__(self) -> None:
        self.box: dict[str, Any] = {"n": 1}

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.box)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.box = state

    def stash(self) -> None:
        self.box["socket"] = threading.Lock()


def test_an_unpicklable_attribute_set_by_a_method_is_named_with_its_actor(actor_store: StoreSpec) -> None:
    h = Holder.get_or_create("holder-1")
    with pytest.raises(vc.StateSerializationError) as info:
        h.keep.run("connection")
    message = str(info.value)
    assert "'holder-1'" in message and "Holder" in message, message
    assert "attribute 'connection'" in message, message
    assert "_thread.lock" in message, message
    assert h.size.run() == 0 and not hasattr(h.state_at(0), "connection")


def test_an_unpicklable_value_nested_in_an_attribute_names_that_attribute(actor_store: StoreSpec) -> None:
    h = Holder.get_or_create("holder-2")
    with pytest.raises(vc.StateSerializationError, match="attribute 'items'") as info:
        h.keep_nested.run()
    assert "'holder-2'" in str(info.value)
    assert h.size.run() == 0


def test_an_unpicklable_attribute_set_by_init_is_named_by_get_or_create(actor_store: StoreSpec) -> None:
    with pytest.raises(vc.StateSerializationError) as info:
        Holder.get_or_create("holder-3", True)
    message = str(info.value)
    assert "'holder-3'" in message and "attribute 'connection'" in message, message
    with pytest.raises(vc.ActorNotFoundError):
        vc.get_actor("holder-3")


def test_an_unpicklable_entry_of_what_getstate_returned_is_named(actor_store: StoreSpec) -> None:
    h = Packed.get_or_create("packed-1")
    with pytest.raises(vc.StateSerializationError) as info:
        h.stash.run()
    message = str(info.value)
    assert "'packed-1'" in message and "__getstate__" in message and "'socket'" in message, message


def test_an_unpicklable_result_names_the_method_and_the_actor(actor_store: StoreSpec) -> None:
    h = Holder.get_or_create("holder-4")
    with pytest.raises(TypeError) as info:
        h.lock_please.run()
    message = str(info.value)
    assert "lock_please()" in message and "'holder-4'" in message, message
    assert h.size.run() == 0  # the call failed: its change is not committed


def test_a_cycle_names_each_actor_of_it_once(actor_store: StoreSpec) -> None:
    Holder.get_or_create("cyc-a")
    Holder.get_or_create("cyc-b")
    with pytest.raises(vc.ReentrantCallError) as info:
        vc.get_actor("cyc-a").call_other.run("cyc-b", "cyc-a")
    message = str(info.value)
    assert "(a call cycle cyc-a -> cyc-b -> cyc-a)" in message, message


@pytest.mark.parametrize("url", ["s3:/bucket/actors", "s3:bucket", "gs:/bucket", "gcs:bucket", "memory:/x"])
def test_a_storage_url_missing_a_slash_is_refused_not_made_a_local_directory(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    scheme = url.partition(":")[0]
    with pytest.raises(ValueError, match=f"{scheme}://"):
        vc.init(url)
    vc.shutdown()
    assert list(tmp_path.iterdir()) == []


def test_vactor_refuses_a_storage_url_missing_a_slash_saying_what_to_write(
    vactor: Vactor, tmp_path: Path
) -> None:
    result = vactor("--storage", "s3:/bucket/actors", "ls")
    assert result.code == 2, result
    assert "write s3://bucket/actors" in result.err and "mkdir" not in result.err, result.err
