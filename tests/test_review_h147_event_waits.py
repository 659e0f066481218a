"""Review h147: a mutation sweep of the event inbox and signed mail (events, inbox, mailkey).

This module holds the tests of ``wait_for_event``'s polling and of the mail key object; the
sweep's table is in ``test_review_h147_inbox_sweep``. Each test names the mutation it kills.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import _sync, codec, events, mailkey
from vactor_cloud.errors import DamagedObjectError, FormatVersionError, IntegrityError, RetryableStorageError
from vactor_cloud.keys import mail_seal_key
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.lanes import StoreSpec

HANG = 60.0


@vc.virtual_actor
class Bell:
    def __init__(self) -> None:
        self.rung: list[str] = []

    def add(self, token: str) -> int:
        self.rung.append(token)
        return len(self.rung)

    @vc.virtual_actor.on_event("ring")
    def on_ring(self, payload: str) -> str:
        self.rung.append(payload)
        return payload


def _wait(twin: str, actor_id: str, name: str, timeout: float | None) -> Any:
    if twin == "sync":
        return events.wait_for_event(actor_id, name, timeout=timeout)
    return asyncio.run(events.wait_for_event_async(actor_id, name, timeout=timeout))


def _looks(monkeypatch: pytest.MonkeyPatch, answers: list[BaseException | None]) -> list[int]:
    """Make each look of a wait at the newest step answer the next of ``answers`` (an exception
    raised, or ``None``: not applied yet), then the real answer; the looks made, counted."""
    looks: list[int] = []
    real = events.applied_event

    async def scripted(*args: Any, **kwargs: Any) -> Any:
        looks.append(1)
        if len(looks) <= len(answers):
            answer = answers[len(looks) - 1]
            if answer is not None:
                raise answer
            return None
        return await real(*args, **kwargs)

    monkeypatch.setattr(events, "applied_event", scripted)
    return looks


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_wait_raises_a_read_damaged_three_times_in_a_row(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str
) -> None:
    """docs/events.md: a wait polls through reads damaged in transit "until ... 3 reads in a
    row were damaged (then the last one is raised)". (Mutation: ``_Blips.absorb`` counting to
    30: the wait read 27 more times; every event test passed.)"""
    store_spec.init()
    Bell.get_or_create("a").add.run("me")
    looks = _looks(monkeypatch, [DamagedObjectError("step", f"cut {n}") for n in range(10)])
    with pytest.raises(DamagedObjectError, match="cut 2"):
        _wait(twin, "a", "ring", 10.0)
    assert len(looks) == 3


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_wait_raises_an_object_of_a_newer_format_at_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str
) -> None:
    """A ``FormatVersionError`` (written by a newer vactor_cloud) is no read damaged in transit:
    reading again will not help, so the wait raises it at its first look. (Mutation:
    ``_Blips.absorb`` not singling it out of ``IntegrityError``: raised at the third look;
    every event test passed.)"""
    store_spec.init()
    Bell.get_or_create("a").add.run("me")
    looks = _looks(monkeypatch, [FormatVersionError("step", "format 9") for _ in range(10)])
    with pytest.raises(FormatVersionError):
        _wait(twin, "a", "ring", HANG)
    assert len(looks) == 1


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_wait_ends_when_storage_errors_last_the_deadline(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str
) -> None:
    """docs/events.md: transient storage errors are polled through "until they have lasted
    ``Settings.deadline`` in a row", not until the wait's timeout (``None``: never, while the
    store was down). (Mutation: ``_Blips.absorb`` never comparing with the deadline: the wait
    polled until its timeout; every event test passed.)"""
    store_spec.init()
    Bell.get_or_create("a").add.run("me")
    looks = _looks(monkeypatch, [RetryableStorageError("down", "step") for _ in range(10_000)])
    retune(deadline=0.3)
    with pytest.raises(RetryableStorageError, match="down"):
        _wait(twin, "a", "ring", 20.0)
    assert 2 <= len(looks) < 10_000


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("twin", ["sync", "async"])
@pytest.mark.parametrize("clean", ["not-applied-yet", "actor-not-created-yet"])
def test_damaged_reads_apart_from_each_other_do_not_end_a_wait(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str, clean: str
) -> None:
    """Three damaged reads *in a row* end a wait; three with clean looks between them do not
    (each clean look starts the count again: one that found the event not applied yet, or the
    actor not created yet), and the wait returns the event's result. (Mutations: the wait not
    clearing its count after a clean look, or after one that found no actor: it raised the
    third damaged read; every event test passed.)"""
    store_spec.init()
    Bell.get_or_create("a").add.run("me")
    damaged = [DamagedObjectError("step", f"cut {n}") for n in range(3)]
    between = None if clean == "not-applied-yet" else vc.ActorNotFoundError("a", "the store")
    looks = _looks(monkeypatch, [damaged[0], between, damaged[1], between, damaged[2], between])
    vc.send_event("a", "ring", "ding")
    assert _wait(twin, "a", "ring", HANG) == "ding"
    assert len(looks) == 7


# -- the mail key object ----------------------------------------------------------------------------
def _key_object(meta: dict[str, Any], key: bytes, signing_key: bytes | None = None) -> bytes:
    return codec.encode(mail_seal_key(), meta, {"key": key}, signing_key=signing_key)


@pytest.mark.parametrize(
    ("meta", "key"),
    [({"kind": "mail-key"}, b"s" * 16), ({"kind": "mail-key"}, b"l" * 64), ({"kind": "step"}, b"k" * 32)],
    ids=["short", "long", "another-kind"],
)
def test_a_mail_key_object_of_another_length_or_kind_is_not_taken(meta: dict[str, Any], key: bytes) -> None:
    """The key is 32 bytes in an object of kind ``mail-key``; anything else at its name is
    damaged (a process then writes bare names, docs/protocol.md), never a key to seal with.
    (Mutations: ``_decode`` not checking the length; not checking the kind.)"""
    store = MemoryStore(f"mail-{uuid.uuid4().hex}")
    _sync.sync(store.put(mail_seal_key(), _key_object(meta, key)))
    with pytest.raises(IntegrityError, match="not a mail key"):
        mailkey._decode(_sync.sync(store.get(mail_seal_key())).data, None)
    assert _sync.sync(mailkey.MailKeys(store, None).load(create=True)) is None


def test_the_mail_key_of_a_signed_store_is_signed_and_read_by_other_processes() -> None:
    """Every object of a signed store is signed, the mail key too: another process with the
    signing key reads the key this one made. And a process's keys are per signing key: the
    same store object under another key does not reuse them. (Mutations: ``_encode`` not
    signing; ``mail_keys`` reusing the keys loaded under another signing key.)"""
    signing = b"s" * 32
    name = f"mail-{uuid.uuid4().hex}"
    store = MemoryStore(name)
    made = _sync.sync(mailkey.mail_keys(store, signing).load(create=True))
    assert made is not None
    assert _sync.sync(mailkey.MailKeys(MemoryStore(name), signing).load(create=False)) == made
    unsigned = mailkey.mail_keys(store, None)
    assert unsigned.signing_key is None and unsigned is not mailkey.mail_keys(store, signing)


@pytest.mark.usefixtures("runtime_off")
def test_a_wait_polls_at_least_once_a_second(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/events.md: a wait "polls with a backoff up to 1 s": however long it has waited, the
    event is seen within a second of being applicable. (Mutation: the backoff not capped: the
    pause doubled for ever, 40 s after a dozen polls.)"""
    store_spec.init()
    Bell.get_or_create("a").add.run("me")
    pauses: list[float] = []

    def counted(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 12:
            vc.send_event("a", "ring", "late")

    monkeypatch.setattr(events._sync, "sleep", counted)
    assert events.wait_for_event("a", "ring", timeout=None) == "late"
    assert len(pauses) >= 12 and max(pauses) <= 1.0
