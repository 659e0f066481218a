"""Class bodies beside damage, deletion and compaction (the h55 review).

A step names its class body (``actors/<id>/class/<sha>``), which a process without the class
loads. A writer that has the class checks, in the background at its first commit to an actor
(and hourly after), that the body is there. Each test failed on the code it was written
against; waits are bounded, never timed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from actors import Shelf
from background import in_thread

import vactor_cloud as vc
from vactor_cloud import _sync, codec, definition
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.errors import IntegrityError, NotFoundError
from vactor_cloud.testing.faults import HoldOne
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: how long a test waits for what must finish at once before calling it a hang
HANG = 120.0
#: no background HEAD move or inbox listing inside a window whose requests are counted
_QUIET = vc.Settings(storage="", head_interval=3600.0, fresh_window=600.0, inbox_interval=3600.0)


@pytest.fixture
def quiet(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    store_spec.init(settings=replace(_QUIET, storage=store_spec.url))
    try:
        yield store_spec
    finally:
        vc.shutdown()


def _reopen(spec: StoreSpec) -> None:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    spec.init(settings=replace(_QUIET, storage=spec.url))


def _settle_background() -> None:
    for work in list(vc.get_runtime()._background):
        work.result(HANG)


@vc.virtual_actor
class Crate:
    def __init__(self) -> None:
        self.items: list[str] = []


def _shelf_with_a_step(actor_id: str) -> tuple[vc.ActorHandle[Shelf], str, str]:
    """A new Shelf with step 1 committed; the sha and key of its class body."""
    shelf = Shelf.get_or_create(actor_id)
    assert shelf.add.run() == 1
    log = vc.get_runtime().log(actor_id)
    sha = _sync.sync(log.read_step(1)).class_ref.sha  # type: ignore[union-attr]
    return shelf, sha, log.class_key(sha)


def _damaged(kind: str, key: str, data: bytes) -> bytes:
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "flipped":
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x40]) + data[middle + 1 :]
    # A whole, well-formed class object, but another class's body under this sha.
    _, body = Crate.definition.body()
    return codec.encode(key, {"kind": "class", "name": Shelf.name}, {"body": body})


@pytest.mark.parametrize("kind", ["truncated", "flipped", "another-class"])
def test_a_damaged_class_body_says_what_to_do_and_a_writer_with_the_class_repairs_it(
    quiet: StoreSpec, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A body damaged at rest (truncated, a byte flipped, another class's body under this sha)
    failed every load in a process without the class with a bare ``IntegrityError`` ("class
    body does not match its content hash": nothing said what to do), and no process ever
    repaired it: the writers' check (one HEAD) found an object at the key, and the create-only
    put cannot replace one. The error now names the actor, its class and what to do, and a
    writer that has the class verifies the body at its first commit (one GET instead of the
    HEAD, in the background) and replaces a damaged one; its warm commits stay one PUT."""
    actor_id = f"shelf-{kind}"
    shelf, _, key = _shelf_with_a_step(actor_id)
    store = vc.get_runtime().store
    good = _sync.sync(store.get(key)).data
    _sync.sync(store.put(key, _damaged(kind, key, good)))

    _reopen(quiet)
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)  # a process without the class
    with pytest.raises(IntegrityError) as caught:
        vc.get_actor(actor_id).value.run()
    message = str(caught.value)
    assert caught.value.key == key
    assert f"actor {actor_id!r}" in message and Shelf.name in message, message
    assert "damaged" in message and "import" in message and "stores it again" in message, message

    monkeypatch.setitem(definition._REGISTRY, Shelf.name, Shelf.definition)
    _reopen(quiet)
    assert shelf.add.run() == 2  # this process's first commit to the actor: it checks the body
    _settle_background()
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        assert shelf.add.run() == 3
    assert [r.kind for r in trace.requests] == ["put"]

    _reopen(quiet)
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)
    assert vc.get_actor(actor_id).add.run() == 4


def test_a_damaged_body_left_at_the_key_of_an_actor_created_anew_is_repaired(
    quiet: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An actor's keys deleted out of band while a writer's background check re-stored its
    body, or a copy of the bucket that kept a damaged class object: the id created anew found
    an object at its body's key, and the creator's create-only put took it for its own
    ("already exists") and counted the body as checked for the hour: a damaged one there went
    unnoticed, and the new actor was unloadable in processes without the class. A body found
    already there is now verified by the creator's first commit, as any writer's."""
    scratch = Shelf.get_or_create("scratch")  # (only to learn the key of Shelf's body)
    assert scratch.add.run() == 1
    store = vc.get_runtime().store
    sha = _sync.sync(vc.get_runtime().log("scratch").read_step(0)).class_ref.sha  # type: ignore[union-attr]
    key = vc.get_runtime().log("anew").class_key(sha)
    _, body = Shelf.definition.body()
    data = codec.encode(key, {"kind": "class", "name": Shelf.name}, {"body": body})
    _sync.sync(store.put(key, _damaged("flipped", key, data), mode="create"))

    shelf = Shelf.get_or_create("anew")
    assert shelf.add.run() == 1
    _settle_background()
    _reopen(quiet)
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)
    assert vc.get_actor("anew").add.run() == 2


@pytest.mark.parametrize("kind", ["truncated", "flipped", "another-class", "missing"])
def test_a_load_reads_a_damaged_or_missing_class_body_no_more_often_than_its_retries(
    quiet: StoreSpec, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A load in a process without the class fetched the class HEAD names beside the steps
    (its three reads of a body that does not verify, its error swallowed: HEAD is a hint),
    then, the newest step naming that very class, fetched it again: six GETs of a damaged
    body (two of a missing one) and twice the retries' pauses before the error. The load now
    reads the body once per attempt: three GETs of a damaged body, one of a missing one, and
    the same error naming the actor, its class and what to do."""
    actor_id = f"shelf-reads-{kind}"
    _, sha, key = _shelf_with_a_step(actor_id)
    store = vc.get_runtime().store
    if kind == "missing":
        _sync.sync(store.delete(key))
    else:
        good = _sync.sync(store.get(key)).data
        _sync.sync(store.put(key, _damaged(kind, key, good)))

    _reopen(quiet)
    head = _sync.sync(vc.get_runtime().log(actor_id).read_head())
    assert head is not None and head.class_ref.sha == sha  # (the hint names the damaged body)
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)  # a process without the class
    expected = NotFoundError if kind == "missing" else IntegrityError
    with RequestTrace(vc.get_runtime().store).installed() as trace, pytest.raises(expected) as caught:
        vc.get_actor(actor_id).value.run()
    message = str(caught.value)
    assert f"actor {actor_id!r}" in message and Shelf.name in message, message
    body_reads = [r for r in trace.requests if r.key == key]
    assert [r.kind for r in body_reads] == ["get"] * (1 if kind == "missing" else 3), body_reads


def test_loads_that_waited_behind_a_failing_load_share_the_answer_of_one_begun_after_them(
    quiet: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loads of one actor take turns. Each caller that came while a load of an actor whose body
    is damaged was running loaded again in its turn: three GETs of the body (and the retries'
    pauses) per caller, one caller after the other. A load begun after a caller came answers
    that caller too: here the first load's three reads, then one load for the three callers
    that waited behind it (each gets its error naming the actor and its class)."""
    actor_id = "shelf-herd"
    _, _, key = _shelf_with_a_step(actor_id)
    store = vc.get_runtime().store
    good = _sync.sync(store.get(key)).data
    _sync.sync(store.put(key, _damaged("flipped", key, good)))

    _reopen(quiet)
    monkeypatch.delitem(definition._REGISTRY, Shelf.name)  # a process without the class
    runtime = vc.get_runtime()
    held = HoldOne(runtime.store, "get", "/class/", timeout=HANG)
    runtime.store = held  # (before the actor is touched: its core reads through it)
    held.hold()
    with RequestTrace(held).installed() as trace:
        callers = [in_thread(lambda: vc.get_actor(actor_id))]
        assert held.held.wait(HANG), "the first load never read the class body"
        lock = runtime.core(actor_id)._lock()
        callers += [in_thread(lambda: vc.get_actor(actor_id)) for _ in range(3)]
        for _ in range(int(HANG / 0.005)):
            if len(lock._waiters or ()) == 3:  # type: ignore[attr-defined]
                break
            time.sleep(0.005)
        assert len(lock._waiters or ()) == 3, "the other callers never waited for the load"  # type: ignore[attr-defined]
        held.release.set()
        for thread, _ in callers:
            thread.join(HANG)
    for thread, out in callers:
        assert not thread.is_alive() and isinstance(out[0], IntegrityError), out
        assert f"actor {actor_id!r}" in str(out[0]) and Shelf.name in str(out[0]), out
    body_reads = [r.kind for r in trace.requests if r.key == key]
    assert body_reads == ["get"] * 6, body_reads
