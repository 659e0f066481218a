"""Review h147: a mutation sweep of the event inbox and signed mail (events.py, inbox.py,
mailkey.py).

TABLE_PLACEHOLDER
"""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time
from typing import Any

import pytest
from store_helpers import raw_put, retune

import vactor_cloud as vc
from vactor_cloud import _sync, codec, events, inbox, keys
from vactor_cloud.errors import IntegrityError, RetryableStorageError
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Chime:
    def __init__(self) -> None:
        self.heard: list[Any] = []

    def add(self, token: str) -> int:
        self.heard.append(token)
        return len(self.heard)

    @vc.virtual_actor.on_event("ring")
    def on_ring(self, payload: Any) -> Any:
        self.heard.append(payload)
        return payload

    @vc.virtual_actor.readonly
    def log(self) -> list[Any]:
        return list(self.heard)

    def hold(self) -> None:
        HELD.set()
        assert RELEASE.wait(60), "the test never released the writer"

    @vc.virtual_actor.on_event("exit")
    def on_exit(self, payload: Any) -> None:
        EXITS.append(payload)
        raise SystemExit("a handler that exits")


#: a writer of Chime is inside ``hold``; it leaves once RELEASE is set
HELD = threading.Event()
RELEASE = threading.Event()
#: payloads of the ``exit`` events whose handler ran (and raised SystemExit)
EXITS: list[Any] = []


@pytest.fixture(autouse=True)
def _fresh() -> None:
    HELD.clear()
    RELEASE.clear()
    EXITS.clear()


def _inbox_ids(actor_id: str) -> list[str]:
    listed = _sync.sync(inbox.list_inbox(vc.get_runtime().store, actor_id))
    return [key.rsplit("/", 1)[1] for key in listed]


def _event_object(actor_id: str, event_id: str, **meta: Any) -> tuple[str, bytes]:
    """An inbox object as a sender writes it (unsigned), with ``meta`` over the usual fields."""
    key = keys.inbox_key(actor_id, event_id)
    fields = {"kind": "event", "event_id": event_id, "name": "ring", "serializer": "json"}
    fields |= {"time": time.time(), "sender": "s" * 32, "seq": 0}
    payload = meta.pop("payload", json.dumps("forged").encode())
    return key, codec.encode(key, fields | meta, {"payload": payload})


# -- sending --------------------------------------------------------------------------------------
def test_a_payload_one_byte_past_the_limit_is_refused_and_one_at_it_is_taken() -> None:
    """docs/events.md: "a payload past 32 MB serialized ... is a ``ValueError``" (every lister
    reads an event whole). (Mutation: the bound compared one byte late: an event of
    ``MAX_EVENT_PAYLOAD_BYTES + 1`` bytes was stored.)"""
    limit = inbox.MAX_EVENT_PAYLOAD_BYTES
    assert len(inbox.serialize_payload("x" * (limit - 2), "json")) == limit  # (the quotes)
    with pytest.raises(ValueError, match="at most"):
        inbox.serialize_payload("x" * (limit - 1), "json")


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_wait_raises_a_failing_inbox_listing_once_it_lasts_the_deadline(
    store_spec: StoreSpec, twin: str
) -> None:
    """A wait applies pending events itself; when that cannot list the inbox (the store down for
    the inbox), the listing's error is polled through for ``Settings.deadline`` and then
    raised, as the other transient errors of a wait are, not swallowed into a
    ``TimeoutError`` after ``timeout``. (Mutation: ``_by`` not taking the result of the
    ``process_events`` it awaited: the async wait timed out instead.)"""
    store_spec.init()
    install(FaultConfig(seed=1, rules=(FaultRule("fail_before", frozenset({"list"}), "/inbox/", 1.0),)))
    Chime.get_or_create("a").add.run("me")
    retune(deadline=0.3)
    with pytest.raises(RetryableStorageError):
        if twin == "sync":
            events.wait_for_event("a", "ring", timeout=10.0)
        else:
            asyncio.run(events.wait_for_event_async("a", "ring", timeout=10.0))


# -- reading inbox objects ------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_an_event_of_an_unknown_payload_serializer_is_kept_and_never_unpickled(store_spec: StoreSpec) -> None:
    """An event whose serializer is neither json nor pickle (a newer sender's, or written by
    hand) is refused and kept, as docs/events.md says of events an actor cannot read: a
    payload is unpickled only when it says pickle. (Mutation: ``refusal`` not checking the
    serializer: the payload went to ``pickle.loads`` and the handler applied it.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    raw_put(*_event_object("a", "odd", serializer="pickle-next", payload=pickle.dumps("unpickled")))
    assert chime.process_events() == 0
    assert chime.log.run() == [] and _inbox_ids("a") == ["odd"]


def test_an_object_of_another_kind_at_an_inbox_key_is_no_event() -> None:
    """An inbox key holding an object of another kind (fields like an event's) is read as
    damaged, not applied. (Mutation: ``decode_event`` not checking ``kind``.)"""
    key, data = _event_object("a", "e1", kind="timer")
    with pytest.raises(IntegrityError, match="expected an event object"):
        inbox.decode_event(key, data, None)


def test_an_event_object_at_another_events_key_is_no_event() -> None:
    """An event object moved (or written) under another id's key is not taken for either: its
    dedup key would be one id's, its deletes the other's. (Mutation: ``decode_event`` checking
    only that the key is an inbox key.)"""
    key, data = _event_object("a", "e1")
    elsewhere = keys.inbox_key("a", "e2")
    moved = codec.encode(elsewhere, codec.decode(key, data).meta, {"payload": b"1"})
    with pytest.raises(IntegrityError, match="not the one its key names"):
        inbox.decode_event(elsewhere, moved, None)


def test_an_event_with_an_infinite_sequence_number_is_read_as_damaged() -> None:
    """``int()`` of an infinite ``seq`` raises ``OverflowError``: a malformed object, read as
    damaged, not an error out of the fold. (Mutation: ``OverflowError`` not caught.)"""
    key, data = _event_object("a", "e1", seq=float("inf"))
    with pytest.raises(IntegrityError, match="malformed"):
        inbox.decode_event(key, data, None)


# -- applying -------------------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_wait_times_out_while_a_writer_method_runs(store_spec: StoreSpec) -> None:
    """docs/events.md: ``wait_for_event`` raises ``TimeoutError`` after ``timeout`` "also while
    a writer method of the actor runs: applying events waits behind it, but the wait does
    not". (Mutation: ``_process_here`` waiting for its commit after ``help`` gave up at the
    timeout: the wait ended only when the writer did; every event and wait test passed.)"""
    store_spec.init()
    chime = Chime.get_or_create("a")
    writer = threading.Thread(target=chime.hold.run)
    writer.start()
    assert HELD.wait(30)
    released_by_test = threading.Timer(10.0, RELEASE.set)  # (a wait that does not end, ended)
    released_by_test.start()
    try:
        with pytest.raises(TimeoutError):
            events.wait_for_event("a", "ring", timeout=0.3)
        assert not RELEASE.is_set(), "the wait ended only once the writer method returned"
    finally:
        released_by_test.cancel()
        RELEASE.set()
        writer.join(60)


@pytest.mark.usefixtures("runtime_off")
def test_process_events_stops_after_a_full_fold_that_applied_nothing(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold that chose a commit's worth of events and applied none of them (every handler
    raised SystemExit: excluded, kept) would only repeat itself: ``process_events`` stops (each
    excluded event is tried once more, after the others, then left). (Mutation: ``more_to_do``
    asking only whether the fold was full: 1,000 folds, every handler run 1,000 times.)"""
    store_spec.init()
    monkeypatch.setattr(inbox, "MAX_EVENTS_PER_COMMIT", 2)
    chime = Chime.get_or_create("a")
    vc.send_event("a", "exit", 1, event_id="x1")
    vc.send_event("a", "exit", 2, event_id="x2")
    assert chime.process_events() == 0
    assert sorted(EXITS) == [1, 1, 2, 2]  # newly excluded: folded once more, then left
    assert _inbox_ids("a") == ["x1", "x2"]


@pytest.mark.usefixtures("runtime_off")
def test_events_the_creation_listed_are_applied_by_the_first_writer_call(store_spec: StoreSpec) -> None:
    """An event sent with ``create=True`` by another process waits for the actor; creating it
    lists the inbox once (beside the creation), and the first writer call applies the event
    before its own call, in the same commit (docs/events.md: "applied at the first commit
    after someone creates it"). (Mutation: ``wants_fold`` ignoring the events it holds: the
    first commits did not look at them until the listing went stale, 15 s on.)"""
    store_spec.init()
    vc.send_event("a", "ring", "early", event_id="e1", create=True)
    store_spec.init()  # another process: it never sent the actor an event
    chime = Chime.get_or_create("a")
    assert chime.add.run("first call") == 2
    assert chime.log.run() == ["early", "first call"]
