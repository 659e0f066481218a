"""docs/protocol.md is enough for a second implementation, beyond steps and posts: the clean room
(``tests/clean_room``, written from the docs alone; where they said nothing, the gap was
recorded, the source read and the doc completed) sends events the library applies and drains
events the library sent ("External events"); arms timers, one-shot and recurring, the
library's runner fires, fires the library's, and shares the work with its runners
("Timers"); folds keyed posted calls whose retries the library answers from the table the
clean room wrote; shares sub-task checkpoints ("Sub-task checkpoints"); and deletes actors,
and creates them after a delete, as the library reads and does ("Deleting an actor").
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from clean_room.actor_log import Log
from clean_room.deletion import create_after, delete, digest
from clean_room.envelope import encode
from clean_room.folder import Lease, fold, read_posts
from clean_room.inbox import Handlers, drain, pending, send
from clean_room.stores import Through
from clean_room.subtasks import checkpoint, fingerprint, keyed_call_id, read_checkpoint
from clean_room.timers import claim, due_ms, entries, fire, heartbeat, owner, schedule
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Journal:
    def __init__(self) -> None:
        self.items: list[object] = []

    def add(self, item: object) -> int:
        self.items.append(item)
        return len(self.items)

    @vc.virtual_actor.on_event("note")
    def on_note(self, payload: object) -> int:
        self.items.append(payload)
        return len(self.items)

    @vc.virtual_actor.on_event("boom")
    def on_boom(self, payload: str) -> None:
        self.items.append("never")
        raise ValueError(payload)

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def square_of(self, n: int) -> int:
        result: int = vc.subtask(square).run(n)
        self.items.append(result)
        return result

    @vc.virtual_actor.readonly
    def get(self) -> list[object]:
        return list(self.items)


SQUARED: list[int] = []


def square(n: int) -> int:
    SQUARED.append(n)
    return n * n


@vc.virtual_actor(serializer="json")
class Plain:
    def __init__(self) -> None:
        self.items: list[object] = []

    def add(self, item: object) -> int:
        self.items.append(item)
        return len(self.items)

    @vc.virtual_actor.on_event("note")
    def on_note(self, payload: object) -> int:
        return self.add(payload)

    @vc.virtual_actor.on_event("boom")
    def on_boom(self, payload: str) -> None:
        raise ValueError(payload)

    @vc.virtual_actor.readonly
    def get(self) -> list[object]:
        return list(self.items)


def _add(state: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The clean room's own ``Journal.add``."""
    assert method == "add" and not kwargs
    state["items"].append(*args)
    return len(state["items"])


def _apply(state: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The clean room's ``Journal.add`` and ``Journal.fail``."""
    if method == "fail":
        raise ValueError(*args)
    return _add(state, method, args, kwargs)


def _boom(state: Any, payload: str) -> None:
    state["items"].append("never")
    raise ValueError(payload)


HANDLERS: Handlers = {
    "note": ("on_note", lambda state, payload: _add(state, "add", (payload,), {})),
    "boom": ("on_boom", _boom),
}


@pytest.fixture
def room(spec: StoreSpec) -> Iterator[Through]:
    through = Through(spec.open())
    yield through
    through.close()


def _journal(spec: StoreSpec, actor: str, *items: str) -> None:
    """A Journal holding ``items``, written by the library (runtime shut down after)."""
    init(spec)
    journal = Journal.get_or_create(actor)
    for item in items:
        journal.add.run(item)
    vc.shutdown()


def test_events_the_clean_room_sends_are_applied_once_in_inbox_order(spec: StoreSpec, room: Through) -> None:
    """Inbox order is (sender time, sender, seq), not the keys' order; an id sent again after
    it was applied is found in the table and deleted unapplied."""
    log = Log(room, "ev-in")
    _journal(spec, "ev-in", "a")
    one, other, t0 = uuid.uuid4().hex, uuid.uuid4().hex, time.time() - 1
    assert send(log, "z1", "note", "one", sender=one, seq=0, sent=t0)
    assert send(log, "a2", "note", "two", sender=one, seq=1, sent=t0)  # same time: by seq
    assert send(log, "m3", "note", {"three": [3]}, sender=one, seq=2, sent=t0 + 0.001)
    assert send(log, "y0", "note", "zero", sender=other, seq=7, sent=t0 - 0.5)  # earlier clock
    assert not send(log, "z1", "note", "one again", sender=one, seq=3, sent=t0)  # waiting already
    assert send(log, "p4", "note", (4, "four"), sender=one, seq=4, sent=t0 + 0.002, serializer="pickle")
    assert send(log, "u5", "note", b"?", sender=one, seq=5, sent=t0 + 0.003, serializer="cbor")  # kept

    init(spec)
    with pytest.raises(ValueError, match="boom"):  # our object's name read back
        vc.send_event("ev-in", "boom", event_id="z1")
    assert vc.send_event("ev-in", "note", "not stored", event_id="z1") == "z1"
    journal = Journal.get_or_create("ev-in")
    assert journal.process_events() == 5
    applied = ["a", "zero", "one", "two", {"three": [3]}, (4, "four")]
    assert journal.get.run() == applied
    assert journal.wait_for_event("note", timeout=5, event_id="a2") == 4
    newest = log.newest()
    assert newest is not None
    assert sorted(row[0] for row in log.dedup_table(newest)) == [
        f"\0event\0note\0{i}" for i in ("a2", "m3", "p4", "y0", "z1")
    ]

    assert send(log, "z1", "note", "one", sender=one, seq=0, sent=t0)  # applied and deleted: again
    assert journal.process_events() == 0
    assert journal.get.run() == applied
    vc.shutdown()  # (the inbox's deletes run in the background: shutdown waits for them)
    assert room.list("actors/ev-in/inbox/") == ["actors/ev-in/inbox/u5"]  # the copy deleted unapplied


def test_the_clean_room_drains_events_the_library_sent(spec: StoreSpec, room: Through) -> None:
    log = Log(room, "ev-out")
    _journal(spec, "ev-out", "a")
    init(spec)
    for event_id, payload in (("e2", "one"), ("e1", "two"), ("e0", "three")):
        vc.send_event("ev-out", "note", payload, event_id=event_id)
    vc.send_event("ev-out", "boom", "bad", event_id="b")
    vc.shutdown()
    assert [e.event_id for e in pending(log)] == ["e2", "e1", "e0", "b"]  # the sender's order
    base = log.newest()
    assert base is not None
    step = drain(log, base, HANDLERS)
    assert step is not None and log.state(step) == {"items": ["a", "one", "two", "three"]}
    assert room.list("actors/ev-out/inbox/") == []

    init(spec)
    journal = Journal.get_or_create("ev-out")
    assert journal.wait_for_event("note", timeout=5, event_id="e1") == 3  # our table's row
    with pytest.raises(ValueError, match="bad"):  # a handler's exception, recorded
        journal.wait_for_event("boom", timeout=5, event_id="b")
    vc.send_event("ev-out", "note", "two", event_id="e1")  # applied by us: not again
    assert journal.process_events() == 0
    assert journal.get.run() == ["a", "one", "two", "three"]


def test_a_json_actors_events_drained_by_the_clean_room(spec: StoreSpec, room: Through) -> None:
    """A json actor's table, written by the clean room: a result, and an exception as its type,
    repr and args, which the library raises again as the builtin type."""
    init(spec)
    Plain.get_or_create("ev-json")
    vc.send_event("ev-json", "note", {"n": 1}, event_id="n")
    vc.send_event("ev-json", "boom", "bad", event_id="b")
    vc.shutdown()
    log = Log(room, "ev-json")
    assert drain(log, log.newest(), HANDLERS) is not None  # type: ignore[arg-type]
    init(spec)
    plain = Plain.get_or_create("ev-json")
    assert plain.wait_for_event("note", timeout=5, event_id="n") == 1
    with pytest.raises(ValueError, match="bad"):
        plain.wait_for_event("boom", timeout=5, event_id="b")
    assert plain.process_events() == 0 and plain.get.run() == [{"n": 1}]


def test_a_timer_the_clean_room_arms_is_fired_once_by_the_librarys_runner(
    spec: StoreSpec, room: Through
) -> None:
    _journal(spec, "tm-in", "a")
    log = Log(room, "tm-in")
    base = log.newest()
    assert base is not None
    due = time.time() - 1
    schedule(log, base, "soon", "add", ("fired",), due)
    init(spec)
    journal = Journal.get_or_create("tm-in")
    assert [t["key"] for t in journal.timers()] == ["soon"]
    assert vc.fire_due_timers().fired == 1
    assert vc.fire_due_timers().fired == 0
    assert journal.get.run() == ["a", "fired"] and journal.timers() == []
    vc.shutdown()
    assert room.list("timers/") == []
    newest = log.newest()
    assert newest is not None and newest.meta["calls"][0]["key"] == f"\0timer\0soon\0{due_ms(due)}"

    init(spec)  # a json actor's timer: its arguments as JSON text
    Plain.get_or_create("tm-json").add.run("a")
    vc.shutdown()
    log = Log(room, "tm-json")
    schedule(log, log.newest(), "soon", "add", ({"n": [1]},), time.time() - 1)  # type: ignore[arg-type]
    init(spec)
    assert vc.fire_due_timers().fired == 1
    assert Plain.get_or_create("tm-json").get.run() == ["a", {"n": [1]}]


def test_recurring_timers_move_to_their_next_occurrence_both_ways(spec: StoreSpec, room: Through) -> None:
    """A recurring timer, fired by the other side: moved to ``due + k * every``, the first
    occurrence after now, as a new generation (the firing step) with an entry of its own."""
    _journal(spec, "every-in", "a")
    log = Log(room, "every-in")
    due = time.time() - 250  # two periods and a half ago: the next occurrence is 50 s ahead
    schedule(log, log.newest(), "tick", "add", ("tick",), due, every=100.0)  # type: ignore[arg-type]
    init(spec)
    assert vc.fire_due_timers().fired == 1
    journal = Journal.get_or_create("every-in")
    assert journal.get.run() == ["a", "tick"]
    vc.shutdown()
    newest = log.newest()
    assert newest is not None
    row = newest.extra["timers"]["tick"]
    assert (row["due"], row["every"], row["g"]) == (due + 300, 100.0, newest.n)
    assert [(e.timer, e.due_ms, e.gen) for e in entries(room)] == [("tick", due_ms(due + 300), newest.n)]

    init(spec)
    other = Journal.get_or_create("every-out")
    other.add.options(at=due, timer_key="tick", every=100.0).run("tock")
    vc.shutdown()
    log = Log(room, "every-out")
    (entry,) = [e for e in entries(room) if e.actor == "every-out"]
    fired = fire(log, entry, _add)
    assert fired is not None and log.state(fired)["items"] == ["tock"]
    init(spec)
    (timer,) = Journal.get_or_create("every-out").timers()
    assert (timer["key"], timer["due"], timer["every"]) == ("tick", due + 300, 100.0)
    assert [(e.due_ms, e.gen) for e in entries(room) if e.actor == "every-out"] == [
        (due_ms(due + 300), fired.n)
    ]
    assert vc.fire_due_timers().fired == 0  # not due for 50 s


def test_a_timer_indexed_as_before_generations_fires_and_other_keys_under_timers_are_ignored(
    spec: StoreSpec, room: Through
) -> None:
    _journal(spec, "tm-old", "a")
    log = Log(room, "tm-old")
    schedule(log, log.newest(), "old", "add", ("fired",), time.time() - 1, gen=False)  # type: ignore[arg-type]
    junk = [
        "timers/x",
        "timers/00000000000000000001-x/tm-old/k",
        "timers/00000000000000000001/" + "x" * 256 + "/k",
    ]
    for key in junk:
        room.create(key, b"")
    init(spec)
    report = vc.fire_due_timers()
    assert (report.fired, report.errors) == (1, [])
    assert Journal.get_or_create("tm-old").get.run() == ["a", "fired"]
    assert room.list("timers/") == sorted(junk)


def test_the_clean_room_fires_a_timer_the_library_armed(spec: StoreSpec, room: Through) -> None:
    init(spec)
    journal = Journal.get_or_create("tm-out")
    journal.add.run("a")
    assert journal.add.options(at=time.time() - 1, timer_key="due").run("fired") == "due"
    journal.add.options(delay=3600, timer_key="later").run("later")
    vc.shutdown()
    log = Log(room, "tm-out")
    due, later = entries(room)
    assert (due.timer, later.timer, due.actor) == ("due", "later", "tm-out")
    step = fire(log, due, _add)
    assert step is not None and log.state(step) == {"items": ["a", "fired"]}
    assert fire(log, due, _add) is None and fire(log, later, _add) is None  # gone; not yet due
    assert [e.timer for e in entries(room)] == ["later"]

    init(spec)
    assert vc.fire_due_timers().fired == 0
    journal = Journal.get_or_create("tm-out")
    assert journal.get.run() == ["a", "fired"]
    assert [t["key"] for t in journal.timers()] == ["later"]


def test_a_keyed_post_the_clean_room_folds_is_answered_from_its_table(spec: StoreSpec, room: Through) -> None:
    """The clean room holds the folder lease; the library posts a keyed call, which the clean
    room's fold runs and records; the library's retry with the key, posted (answered from the
    table by the clean room's fold) or answered from the step the library read, gets the
    recorded result, and the call is applied once."""
    init(spec, fresh_window=3600.0, combine_window=60.0)
    journal = Journal.get_or_create("keyed")
    journal.add.run("lib1")
    log = Log(room, "keyed")
    if room.get("mail-key") is None:
        room.create("mail-key", encode("mail-key", {"kind": "mail-key"}, {"key": secrets.token_bytes(32)}))
    lease = Lease(log, secrets.token_hex(8))
    lease.take(60.0, 1)
    base = log.commit(log.newest(), {"items": ["lib1", "cr"]}, [])  # type: ignore[arg-type]
    assert base is not None

    def call(method: str, key: str, arg: str, out: list[object]) -> None:
        try:
            out.append(getattr(journal, method).options(idempotency_key=key).run(arg))
        except ValueError as error:
            out.append(error.args)

    rounds = [("add", "k1", "keyed", 3), ("add", "k1", "retry", 3), ("fail", "kf", "x", ("x",))]
    for method, key, arg, expected in [*rounds, ("fail", "kf", "y", ("x",))]:
        results: list[object] = []
        caller = threading.Thread(target=call, args=(method, key, arg, results))
        caller.start()
        deadline = time.monotonic() + 30
        while caller.is_alive() and time.monotonic() < deadline:
            if posts := read_posts(log):
                base = fold(log, base, posts, _apply)
            time.sleep(0.002)
        caller.join(30)
        assert results == [expected]
    assert log.state(log.newest())["items"] == ["lib1", "cr", "keyed"]  # type: ignore[arg-type]
    table = [(key, ok, value if ok else value.args) for key, _, ok, value in log.dedup_table(base)]
    assert table == [("k1", True, 3), ("kf", False, ("x",))]
    lease.release(base.n)
    assert journal.add.options(idempotency_key="k1").run("third") == 3
    with pytest.raises(ValueError, match="x"):
        journal.fail.options(idempotency_key="kf").run("z")
    assert journal.add.options(idempotency_key="k2").run("new") == 4
    assert journal.get.run() == ["lib1", "cr", "keyed", "new"]


def test_an_actor_the_clean_room_deletes_is_deleted_for_the_library(spec: StoreSpec, room: Through) -> None:
    init(spec)
    journal = Journal.get_or_create("del-in")
    journal.add.run("a")
    journal.add.options(delay=3600, timer_key="later").run("x")
    vc.shutdown()
    log = Log(room, "del-in")
    assert delete(log, "bye-é") is True
    assert delete(log, "bye-é") is False and room.list("timers/") == []
    init(spec)
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("del-in").get.run()
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("del-in").timers()
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("del-in").wait_for_event("note", timeout=5)
    with pytest.raises(vc.ActorDeletedError):
        vc.send_event("del-in", "note", "x")
    assert vc.delete_actor("del-in", idempotency_key="other") is False  # deleted already
    again = Journal.get_or_create("del-in")
    assert again.get.run() == [] and again.timers() == []
    assert vc.delete_actor("del-in", idempotency_key="bye-é") is False  # our key, carried on
    newest = log.newest()
    assert (
        newest is not None and newest.extra["born"] == 4 and newest.extra["delete_keys"] == [digest("bye-é")]
    )


def test_the_clean_room_creates_an_actor_after_the_librarys_delete(spec: StoreSpec, room: Through) -> None:
    init(spec)
    Journal.get_or_create("del-out").add.run("old")
    assert vc.delete_actor("del-out", idempotency_key="k") is True
    vc.shutdown()
    log = Log(room, "del-out")
    tombstone = log.newest()
    assert tombstone is not None and delete(log, "k2") is False
    made = create_after(log, tombstone, f"{__name__}:Plain", {"items": ["new"]}, "json")  # another class
    assert made is not None and made.n == 3
    init(spec)
    assert vc.get_actor("del-out").get.run() == ["new"]
    with pytest.raises(vc.ActorDefinitionError):
        Journal.get_or_create("del-out")
    assert Plain.get_or_create("del-out").add.run("x") == 2
    assert vc.delete_actor("del-out", idempotency_key="k") is False  # the id's delete keys
    assert vc.get_actor("del-out").get.run() == ["new", "x"]
    assert vc.delete_actor("del-out", idempotency_key="k3") is True
    again = log.newest()
    assert again is not None and again.n == 5 and again.extra["delete_keys"] == [digest("k"), digest("k3")]


def test_sub_task_checkpoints_are_shared_both_ways(spec: StoreSpec, room: Through) -> None:
    """A checkpoint the clean room writes for a keyed call's child is the library's memoized
    result (the child does not run); one the library writes is read, fingerprint and all."""
    log = Log(room, "subtasks")
    _journal(spec, "subtasks")
    SQUARED.clear()
    ours = keyed_call_id("subtasks", "k1")
    assert checkpoint(log, ours, "square_of", 0, fingerprint(f"{__name__}.square", (7,), {}), 1000)
    init(spec)
    journal = Journal.get_or_create("subtasks")
    assert journal.square_of.options(idempotency_key="k1").run(7) == 1000 and SQUARED == []
    assert journal.square_of.options(idempotency_key="k2").run(3) == 9 and SQUARED == [3]
    found = read_checkpoint(log, keyed_call_id("subtasks", "k2"), 0)
    assert found is not None
    obj, value = found
    assert value == 9 and obj.meta["fingerprint"] == fingerprint(f"{__name__}.square", (3,), {})
    assert obj.meta["call_id"] == keyed_call_id("subtasks", "k2") and obj.meta["method"] == "square_of"


def test_what_a_deleter_that_died_left_is_cleaned_up_by_the_library(spec: StoreSpec, room: Through) -> None:
    """The clean room applies an event and dies before deleting its object, arms a due timer,
    then deletes the actor and dies before its clean-up: the library's runner drops the
    timer's entry firing nothing, and its creation of the next actor deletes the applied
    event's object first (the new actor has no table to know it by), while an event sent
    after the delete waits for the new actor and is applied by it."""
    log = Log(room, "died")
    _journal(spec, "died", "a")
    one = uuid.uuid4().hex
    assert send(log, "old", "note", "applied", sender=one, seq=0, sent=time.time() - 1)
    base = log.newest()
    assert base is not None
    base = drain(log, base, HANDLERS, clean=False)
    assert base is not None and [k.rsplit("/", 1)[1] for k in room.list("actors/died/inbox/")] == ["old"]
    schedule(log, base, "due", "add", ("never",), time.time() - 1)
    assert delete(log, "bye", clean=False) is True
    assert len(room.list("timers/")) == 1
    assert send(log, "new", "note", "for the next actor", sender=one, seq=1, sent=time.time())

    init(spec)
    report = vc.fire_due_timers()
    assert (report.fired, report.stale, report.errors) == (0, 1, [])
    assert room.list("timers/") == []
    journal = Journal.get_or_create("died")
    assert journal.process_events() == 1
    assert journal.get.run() == ["for the next actor"]


def test_a_clean_room_runner_shares_the_actors_with_the_librarys(spec: StoreSpec, room: Through) -> None:
    """The clean room's heartbeat makes it a live runner: the library's tick fires the actors
    rendezvous hashing gives it, and leaves the clean room's, which the clean room fires; an
    actor the clean room holds a claim on is left by a claiming tick until the claim goes."""
    ids = [f"share-{i}" for i in range(6)]
    init(spec)
    for actor in ids:
        Journal.get_or_create(actor).add.options(at=time.time() - 1, timer_key="t").run(actor)
    vc.shutdown()
    heartbeat(room, "clean-room", 30.0)
    ours = {actor for actor in ids if owner(actor, ["clean-room", "library"]) == "clean-room"}
    assert 0 < len(ours) < len(ids)
    init(spec)
    assert vc.fire_due_timers(runner_id="library").fired == len(ids) - len(ours)
    assert {e.actor for e in entries(room)} == ours
    for entry in entries(room):
        assert fire(Log(room, entry.actor), entry, _add) is not None
    assert entries(room) == [] and vc.fire_due_timers(runner_id="library").fired == 0
    assert [Journal.get_or_create(actor).get.run() for actor in ids] == [[actor] for actor in ids]

    claimed = Journal.get_or_create(ids[0])
    claimed.add.options(at=time.time() - 1, timer_key="t").run("again")
    assert claim(room, ids[0], "clean-room", 30.0)
    assert vc.fire_due_timers(split="claims").fired == 0
    room.delete(f"timer-claims/{ids[0]}")
    assert vc.fire_due_timers(split="claims").fired == 1
    assert claimed.get.run() == [ids[0], "again"]


def test_an_extra_key_the_library_does_not_know_is_carried_by_every_kind_of_step(
    spec: StoreSpec, room: Through
) -> None:
    """ "A writer copies its parent's extra whole ..., keys it does not know included": through
    a plain commit, a timer armed from outside, a timer fired, an event applied and a timer
    cancelled."""
    _journal(spec, "extra", "a")
    log = Log(room, "extra")
    base = log.newest()
    assert base is not None and log.commit(base, log.state(base), [], {"clean-room": {"n": [1]}}) is not None
    init(spec)
    journal = Journal.get_or_create("extra")
    journal.add.run("b")
    journal.add.options(at=time.time() - 1, timer_key="now").run("fired")
    journal.add.options(delay=3600, timer_key="later").run("never")
    assert vc.fire_due_timers().fired == 1
    vc.send_event("extra", "note", "event")
    assert journal.process_events() == 1
    assert journal.cancel_timer("later") is True
    assert journal.get.run() == ["a", "b", "fired", "event"]
    vc.shutdown()
    newest = log.newest()
    assert newest is not None and newest.n == 8
    for n in range(2, newest.n + 1):
        step = log.step(n)
        assert step is not None and step.extra.get("clean-room") == {"n": [1]}, step


def test_a_library_process_behind_the_clean_rooms_firing_and_drain_applies_nothing_twice(
    spec: StoreSpec, room: Through
) -> None:
    """The library's cache holds the step before the clean room fired a timer and applied an
    event (whose object it left, as a drainer that died): the library's runner and its next
    commit lose their puts to the clean room's steps, and find the timer gone and the event
    in the table."""
    init(spec, fresh_window=3600.0)  # the library trusts its cache: no probe before a put
    journal = Journal.get_or_create("behind")
    journal.add.run("a")
    journal.add.options(at=time.time() - 1, timer_key="t").run("fired")
    vc.send_event("behind", "note", "event", event_id="e")
    log = Log(room, "behind")
    (entry,) = entries(room)
    assert fire(log, entry, _add) is not None
    room.create(entry.key, b"")  # the index entry again, as a repair would write it
    base = log.newest()
    assert base is not None and drain(log, base, HANDLERS, clean=False) is not None
    assert vc.fire_due_timers().fired == 0
    assert journal.add.run("b") == 4  # lists the inbox (this process sent an event), loses, adopts
    assert journal.get.run() == ["a", "fired", "event", "b"]
    # The fold that met the left object on a stale listing forgets it (its key may hold another
    # event by now); the next listing reads it again, finds it applied and deletes it.
    assert journal.process_events() == 0
    vc.shutdown()
    assert room.list("actors/behind/inbox/") == [] and entries(room) == []
    assert log.state(log.newest())["items"] == ["a", "fired", "event", "b"]  # type: ignore[arg-type]


def _died_deleting(spec: StoreSpec, room: Through, actor: str) -> Log:
    """An actor of the clean room's that applied an event and armed a timer, deleted by the
    clean room: every clean-up left undone (its writers died), the event object and the
    timer's due-index entry still there."""
    log = Log(room, actor)
    _journal(spec, actor, "a")
    assert send(log, "old", "note", "applied", sender=uuid.uuid4().hex, seq=0, sent=time.time() - 1)
    base = drain(log, log.newest(), HANDLERS, clean=False)  # type: ignore[arg-type]
    assert base is not None
    schedule(log, base, "later", "add", ("never",), time.time() + 3600)
    assert delete(log, "bye", clean=False) is True
    assert len(room.list(f"actors/{actor}/inbox/")) == 1 and len(room.list("timers/")) == 1
    return log


def test_a_delete_found_done_and_a_compaction_do_the_clean_up_a_dead_deleter_left(
    spec: StoreSpec, room: Through
) -> None:
    """ "Deleting": a delete that finds the actor deleted does the clean-up again (due-index
    entries, applied events); "What stays": a compaction does it before its watermark passes
    the deleted actor's last step."""
    _died_deleting(spec, room, "left-1")
    init(spec)
    assert vc.delete_actor("left-1") is False
    assert room.list("actors/left-1/inbox/") == [] and room.list("timers/") == []
    vc.shutdown()

    _died_deleting(spec, room, "left-2")
    init(spec, fresh_window=0.0)
    assert vc.ActorHandle("left-2").compact(keep_last=1, min_age=0) is not None
    assert room.list("actors/left-2/inbox/") == [] and room.list("timers/") == []


def test_a_library_cache_from_before_a_clean_room_delete_and_creation(spec: StoreSpec, room: Through) -> None:
    """ "Deleting an actor": a process whose cache predates another's delete and creation of the
    id runs its next call on the new actor (same class), past the tombstone; a keyed retry of
    a call the deleted actor committed is not answered from the deleted actor's table."""
    init(spec, fresh_window=3600.0)  # the cache is trusted: no probe before a put
    journal = Journal.get_or_create("reborn")
    assert journal.add.options(idempotency_key="k").run("old") == 1
    log = Log(room, "reborn")
    assert delete(log, "bye") is True
    tombstone = log.newest()
    assert tombstone is not None and create_after(log, tombstone, f"{__name__}:Journal", {"items": ["new"]})
    assert journal.add.run("y") == 2
    assert journal.add.options(idempotency_key="k").run("again") == 3
    assert journal.get.run() == ["new", "y", "again"]


def test_a_checkpoint_of_an_earlier_incarnation_is_not_used(spec: StoreSpec, room: Through) -> None:
    """A keyed call's id is the same on the next actor under the id: a checkpoint the clean
    room wrote for the deleted actor (no ``born``) is neither used nor kept by the library's
    run on the actor the clean room created after the delete; the run's own replaces it,
    naming its incarnation."""
    _journal(spec, "incarnations")
    log = Log(room, "incarnations")
    call_id = keyed_call_id("incarnations", "k")
    assert checkpoint(log, call_id, "square_of", 0, fingerprint(f"{__name__}.square", (5,), {}), 1000)
    assert delete(log, "bye") is True
    tombstone = log.newest()
    assert tombstone is not None
    assert create_after(log, tombstone, f"{__name__}:Journal", {"items": []}) is not None
    SQUARED.clear()
    init(spec)
    assert Journal.get_or_create("incarnations").square_of.options(idempotency_key="k").run(5) == 25
    assert SQUARED == [5]
    found = read_checkpoint(log, call_id, 0)
    assert found is not None and found[1] == 25 and found[0].meta["born"] == tombstone.n + 1


def test_a_clean_room_delete_fails_the_calls_posted_to_it(spec: StoreSpec, room: Through) -> None:
    """The clean room holds the folder lease; a library call posts behind it and waits; the
    clean room's delete takes the post, advances the cursor past it and fails its call with
    ActorDeletedError in the tombstone's outcomes, which the library's caller gets."""
    init(spec, fresh_window=3600.0, combine_window=60.0)
    journal = Journal.get_or_create("del-posted")
    journal.add.run("lib1")
    log = Log(room, "del-posted")
    lease = Lease(log, secrets.token_hex(8))
    lease.take(60.0, 1)
    assert log.commit(log.newest(), {"items": ["lib1", "cr"]}, []) is not None  # type: ignore[arg-type]
    errors: list[Exception] = []

    def call() -> None:
        try:
            journal.add.run("posted")
        except Exception as error:
            errors.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 30
    while not (posts := read_posts(log)) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert len(posts) == 1 and delete(log, "bye") is True
    caller.join(30)
    tombstone = log.newest()
    assert tombstone is not None and tombstone.n == 3
    assert tombstone.extra["post_cursor"][posts[0].sender][0] == posts[0].seq
    assert len(errors) == 1 and isinstance(errors[0], vc.ActorDeletedError) and errors[0].step == 3
    lease.release(tombstone.n)
    assert room.list("actors/del-posted/mail/") == []
    with pytest.raises(vc.ActorDeletedError):
        journal.get.run()


def test_a_clean_room_timer_for_a_raising_method_is_consumed_and_one_for_no_method_stays(
    spec: StoreSpec, room: Through
) -> None:
    """Timers: a method that raises consumes its timer (recorded ``ok`` false); a method the
    class does not have is not fired, the timer stays with its entry, the runner says so."""
    _journal(spec, "tm-odd", "a")
    log = Log(room, "tm-odd")
    base = schedule(log, log.newest(), "raises", "fail", ("boom",), time.time() - 1)  # type: ignore[arg-type]
    base = schedule(log, base, "gone", "vanished", (), time.time() - 1)
    init(spec)
    report = vc.fire_due_timers()
    assert report.fired == 1 and len(report.errors) == 1 and "vanished" in str(report.errors[0])
    assert [t["key"] for t in Journal.get_or_create("tm-odd").timers()] == ["gone"]
    vc.shutdown()
    newest = log.newest()
    assert newest is not None and [(c["method"], c["ok"]) for c in newest.meta["calls"]] == [("fail", False)]
    assert [e.timer for e in entries(room)] == ["gone"]


def test_a_post_after_the_tombstone_is_failed_by_the_clean_rooms_fold_on_it(
    spec: StoreSpec, room: Through
) -> None:
    """ "A fold on a tombstone": the library, contended behind the clean room's lease and
    holding a step from before the clean room's delete, posts its next call; the clean room
    folds it onto the tombstone (another tombstone, cursor advanced, the call failed), and
    the library's caller gets ActorDeletedError."""
    init(spec, fresh_window=3600.0, combine_window=60.0)
    journal = Journal.get_or_create("late-post")
    journal.add.run("lib1")
    log = Log(room, "late-post")
    lease = Lease(log, secrets.token_hex(8))
    lease.take(60.0, 1)
    base = log.commit(log.newest(), {"items": ["lib1", "cr"]}, [])  # type: ignore[arg-type]
    assert base is not None
    outcomes: list[object] = []

    def call(item: str) -> None:
        try:
            outcomes.append(journal.add.run(item))
        except vc.ActorDeletedError as error:
            outcomes.append(error.step)

    for item in ("posted", "late"):
        caller = threading.Thread(target=call, args=(item,))
        caller.start()
        deadline = time.monotonic() + 30
        while not (posts := read_posts(log)) and time.monotonic() < deadline:
            time.sleep(0.002)
        base = fold(log, base, posts, _apply)
        caller.join(30)
        if item == "posted":  # now the library is contended: its next call posts
            assert outcomes == [3] and delete(log, "bye") is True
            base = log.newest()  # type: ignore[assignment]
    assert outcomes == [3, 5]
    lease.release(base.n)
    assert base.n == 5 and "deleted" in base.extra and base.meta["calls"][0]["method"] == "add"
    with pytest.raises(vc.ActorDeletedError):
        journal.get.run()
