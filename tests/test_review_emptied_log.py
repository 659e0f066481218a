"""An actor whose every step is gone while its retention watermark (``actors/<id>/gc``) stays.

A compaction that broke a required rule (it deleted the newest step too), steps deleted by
hand, or a partial restore from a backup leave such an id. It holds neither the old actor nor
room for a new one: a step 0 made there lies below the watermark, where no reader looks and
where a writer's retention check deletes its commits. Every way in must say so (an
``IntegrityError`` naming the actor, what is missing and the remedies), at once: before, a
call said "no actor, create it", ``get_or_create`` made the actor anew at step 0 (its reads
answered the new state, its calls committed or, with ``fresh_window=0``, ended in
``CallPendingError`` after seconds), and ``vactor show`` said "not found".

Also here: a HEAD left below the watermark by a compaction that does not move it first (an
advisory rule another implementation may skip) is normal and logged at debug only; a HEAD
below the watermark that names an object still there (a HEAD restored or replayed onto a
stray object) is still warned about.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from cli_harness import Vactor
from store_helpers import init, raw_get, raw_put

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.cli.request_trace import RequestTrace, sequential_round_trips
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Shelf:
    def __init__(self) -> None:
        self.items: list[object] = []

    def add(self, item: object) -> int:
        self.items.append(item)
        return len(self.items)

    @vc.virtual_actor.readonly
    def get(self) -> list[object]:
        return list(self.items)


def _delete(key: str) -> None:
    _sync.sync(vc.get_runtime().store.delete(key))


def _keys(prefix: str) -> list[str]:
    return list(_sync.sync(vc.get_runtime().store.list(prefix)))


def _emptied(spec: StoreSpec, actor: str, *, head: bool) -> vc.ActorHandle[Shelf]:
    """``actor`` with three calls committed and compacted (watermark 3), then every step
    deleted by hand (``gc`` left; HEAD too unless ``head`` is false); the runtime restarted.
    Returns the handle made before (a handle a program still holds)."""
    init(spec, fresh_window=0.0)
    shelf = Shelf.get_or_create(actor)
    for item in ("a", "b", "c"):
        shelf.add.run(item)
    assert shelf.compact(keep_last=1, min_age=0) is not None
    for key in _keys(f"actors/{actor}/steps/"):
        _delete(key)
    if not head:
        _delete(f"actors/{actor}/HEAD")
    vc.shutdown()
    return shelf


def _says_what_and_what_to_do(error: BaseException, actor: str) -> None:
    text = str(error)
    assert repr(actor) in text, text
    assert "no step" in text and "watermark 3" in text, text
    assert "restore" in text and f"actors/{actor}/gc" in text, text


WAYS: dict[str, Callable[[vc.ActorHandle[Shelf], str], Any]] = {
    "a call through the handle held": lambda held, actor: held.add.run("d"),
    "a read-only call through the handle held": lambda held, actor: held.get.run(),
    "get_or_create": lambda held, actor: Shelf.get_or_create(actor),
    "get_or_create, then a call": lambda held, actor: Shelf.get_or_create(actor).add.run("d"),
    "get_actor, then a call": lambda held, actor: vc.get_actor(actor).add.run("d"),
    "get_actor, then a read-only call": lambda held, actor: vc.get_actor(actor).get.run(),
    "history": lambda held, actor: held.history(),
    "delete_actor": lambda held, actor: vc.delete_actor(actor),
    "compact": lambda held, actor: held.compact(keep_last=1, min_age=3600.0),
}


@pytest.mark.parametrize("head", [True, False], ids=["HEAD left", "HEAD deleted too"])
@pytest.mark.parametrize("fresh_window", [0.0, 3600.0])
@pytest.mark.parametrize("way", list(WAYS))
def test_every_way_in_says_the_steps_are_gone_and_recreates_nothing(
    spec: StoreSpec, way: str, fresh_window: float, head: bool
) -> None:
    held = _emptied(spec, "gone", head=head)
    init(spec, fresh_window=fresh_window, commit_timeout=10.0)
    with pytest.raises(vc.IntegrityError) as raised:
        WAYS[way](held, "gone")
    _says_what_and_what_to_do(raised.value, "gone")
    assert _keys("actors/gone/steps/") == []  # nothing made below the watermark


@pytest.mark.parametrize("way", ["get_or_create, then a call", "get_actor, then a read-only call"])
def test_a_restore_that_brings_back_only_steps_below_the_watermark_is_refused_too(
    spec: StoreSpec, way: str
) -> None:
    """A partial restore from a backup older than the compaction: steps 0 and 1 back, the
    newest (3) not. They are no steps of the history (below the watermark): before, a read
    answered step 1's old state and a call ended in ``CallPendingError``."""
    init(spec, fresh_window=0.0)
    shelf = Shelf.get_or_create("partial")
    shelf.add.run("a")
    old = {key: raw_get(key) for key in _keys("actors/partial/steps/")}
    shelf.add.run("b")
    shelf.add.run("c")
    assert shelf.compact(keep_last=1, min_age=0) is not None
    for key in _keys("actors/partial/steps/"):
        _delete(key)
    for key, data in old.items():
        raw_put(key, data)
    vc.shutdown()
    init(spec, fresh_window=0.0, commit_timeout=10.0)
    with pytest.raises(vc.StepsMissingError) as raised:
        WAYS[way](shelf, "partial")
    assert "watermark 3" in str(raised.value) and "the newest is 1" in str(raised.value)
    assert _keys("actors/partial/steps/") == sorted(old)  # nothing added


def test_removing_the_gc_object_as_the_error_says_lets_the_id_start_afresh(spec: StoreSpec) -> None:
    """The remedy the error names for starting afresh works: with ``gc`` removed the id holds
    no actor, ``get_or_create`` makes one at step 0 and its calls commit (HEAD, left naming
    step 3, is pulled back)."""
    _emptied(spec, "afresh", head=True)
    init(spec, fresh_window=0.0)
    with pytest.raises(vc.IntegrityError):
        Shelf.get_or_create("afresh")
    _delete("actors/afresh/gc")
    shelf = Shelf.get_or_create("afresh")
    assert shelf.add.run("new") == 1
    vc.shutdown()
    init(spec, fresh_window=0.0)
    assert Shelf.get_or_create("afresh").get.run() == ["new"]


def test_restoring_the_steps_as_the_error_says_gives_the_actor_back(spec: StoreSpec) -> None:
    """The other remedy: the newest step put back (from a backup), the actor is read whole."""
    init(spec, fresh_window=0.0)
    shelf = Shelf.get_or_create("restored")
    for item in ("a", "b", "c"):
        shelf.add.run(item)
    assert shelf.compact(keep_last=1, min_age=0) is not None
    backup = {key: raw_get(key) for key in _keys("actors/restored/steps/")}
    for key in backup:
        _delete(key)
    vc.shutdown()
    init(spec, fresh_window=0.0)
    with pytest.raises(vc.IntegrityError):
        shelf.get.run()
    for key, data in backup.items():
        raw_put(key, data)
    assert shelf.get.run() == ["a", "b", "c"]
    assert shelf.add.run("d") == 4


@pytest.mark.parametrize("command", [("show", "gone"), ("history", "gone"), ("ls",)])
def test_the_cli_says_the_steps_are_gone(store: str, vactor: Vactor, command: tuple[str, ...]) -> None:
    """``vactor show``/``history`` fail with the error (exit 1, not "not found"); ``ls``, which
    goes on past one actor's error, names the actor and the error on stderr."""
    vc.init(storage=store, settings=vc.Settings(fresh_window=0.0))
    shelf = Shelf.get_or_create("gone")
    for item in ("a", "b", "c"):
        shelf.add.run(item)
    Shelf.get_or_create("fine").add.run("x")
    assert shelf.compact(keep_last=1, min_age=0) is not None
    for key in _keys("actors/gone/steps/"):
        _delete(key)
    vc.shutdown()
    result = vactor(*command)
    assert result.code == 1, result
    line = next(line for line in result.err.splitlines() if "no step" in line)
    assert "'gone'" in line and "watermark 3" in line and "actors/gone/gc" in line, result.err
    assert "restore it from a backup or an earlier version" not in line  # (its own remedy)
    if command == ("ls",):
        assert "fine" in result.out, result


def _compact_leaving_head(spec: StoreSpec, actor: str) -> dict[str, bytes]:
    """What a compaction that does not move HEAD first leaves: HEAD at step 1, watermark 3,
    steps 0..2 gone (HEAD put back to its bytes of step 1 after the library's compaction).
    Returns step 1's object and HEAD as they were (a backup of that time); the runtime running
    has not loaded the actor."""
    init(spec, fresh_window=0.0)
    shelf = Shelf.get_or_create(actor)
    shelf.add.run("a")
    vc.shutdown()  # HEAD moved to step 1
    init(spec, fresh_window=0.0)
    backup = {key: raw_get(key) for key in (f"actors/{actor}/HEAD", f"actors/{actor}/steps/{1:020d}")}
    shelf.add.run("b")
    shelf.add.run("c")
    assert shelf.compact(keep_last=1, min_age=0) is not None
    vc.shutdown()  # (moves HEAD to step 3: this runtime holds the actor)
    init(spec, fresh_window=0.0)  # a runtime that does not
    raw_put(f"actors/{actor}/HEAD", backup[f"actors/{actor}/HEAD"])
    return backup


def test_a_head_left_behind_by_a_compaction_is_not_warned_about(
    spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """HEAD below the watermark with its step gone: what a compaction that leaves HEAD behind
    makes (advisory: allowed). The log is listed and the newest state read; a debug line says
    so, no warning says "restored or replayed"."""
    _compact_leaving_head(spec, "behind")
    with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
        assert Shelf.get_or_create("behind").get.run() == ["a", "b", "c"]
    behind = [r for r in caplog.records if "below the retention watermark" in r.getMessage()]
    assert behind and all(r.levelno == logging.DEBUG for r in behind), caplog.text
    assert "restored or replayed" not in caplog.text


def test_a_head_restored_with_its_step_below_the_watermark_is_warned_about(
    spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """HEAD and its step 1 restored from a backup older than the compaction: HEAD below the
    watermark names an object that is no step of the history any more. The library lists the
    log, reads the newest state, and warns."""
    backup = _compact_leaving_head(spec, "restored-head")
    for key, data in backup.items():
        raw_put(key, data)
    with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
        assert Shelf.get_or_create("restored-head").get.run() == ["a", "b", "c"]
    warned = [r for r in caplog.records if "HEAD names step 1" in r.getMessage()]
    assert warned and warned[0].levelno == logging.WARNING, caplog.text
    assert "restored or replayed" in warned[0].getMessage()


def test_creating_a_new_id_reads_gc_beside_its_listing_in_the_same_round_trips(spec: StoreSpec) -> None:
    """What the check costs a brand-new id (docs/retention.md says it): ``gc`` read beside the
    LIST of ``steps/``, 6 requests in 4 round trips (5 in 4 before); HEAD moves kept out."""
    init(spec, head_interval=3600.0, fresh_window=600.0, inbox_interval=3600.0)
    trace = RequestTrace(vc.get_runtime().store, latency=0.02)
    with trace.installed():
        Shelf.get_or_create("brand-new")
    kinds = sorted((r.kind, r.key.removeprefix("actors/brand-new/").split("/")[0]) for r in trace.on_path())
    assert kinds == sorted(
        [
            ("get", "HEAD"),
            ("list", "steps"),
            ("get", "gc"),
            ("put", "class"),
            ("list", "inbox"),
            ("put", "steps"),
        ]
    )
    assert sequential_round_trips(trace.on_path()) == 4
