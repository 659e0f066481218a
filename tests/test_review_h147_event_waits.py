"""Review h147: a mutation sweep of the event inbox and signed mail (events, inbox, mailkey).

This module holds the tests of ``wait_for_event``'s polling and of the mail key's cipher; the
sweep's table is in ``test_review_h147_inbox_sweep``. Each test names the mutation it kills.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from store_helpers import retune

import vactor_cloud as vc
from vactor_cloud import events, mailkey
from vactor_cloud.errors import DamagedObjectError, FormatVersionError, RetryableStorageError
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
def test_damaged_reads_apart_from_each_other_do_not_end_a_wait(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, twin: str
) -> None:
    """Three damaged reads *in a row* end a wait; three with clean looks between them do not
    (each clean look starts the count again), and the wait returns the event's result.
    (Mutation: the wait not clearing its count after a clean look: it raised the third
    damaged read; every event test passed.)"""
    store_spec.init()
    Bell.get_or_create("a").add.run("me")
    damaged = [DamagedObjectError("step", f"cut {n}") for n in range(3)]
    looks = _looks(monkeypatch, [damaged[0], None, damaged[1], None, damaged[2], None])
    vc.send_event("a", "ring", "ding")
    assert _wait(twin, "a", "ring", HANG) == "ding"
    assert len(looks) == 7


# -- the mail key's cipher, as docs/protocol.md and mailkey.py define it --------------------------
def test_the_seal_is_the_documented_keystream() -> None:
    """Block ``i`` of the keystream is ``BLAKE2b-512(nonce || u32be(i), key, person)``: an
    implementation in another language reads sealed names by that definition. (Mutations:
    the block counter left out of the hash input, every block then the same; the
    personalization left out. A round trip cannot tell either: seal is its own inverse.)"""
    key, nonce = bytes(range(32)), b"n" * mailkey.NONCE_BYTES
    data = bytes(range(150))  # three blocks, the last one short
    person = b"vactor-post-name"
    stream = b"".join(
        hashlib.blake2b(nonce + i.to_bytes(4, "big"), key=key, digest_size=64, person=person).digest()
        for i in range(3)
    )
    sealed = mailkey.seal(key, nonce, data)
    assert sealed == bytes(a ^ b for a, b in zip(data, stream, strict=False))
    assert mailkey.seal(key, nonce, sealed) == data


def test_the_key_id_is_the_documented_digest_and_tells_keys_apart() -> None:
    """``key_id`` is ``BLAKE2b-32(b"", key=key, person=b"vactor-mail-kid")``: a reader holding
    another key (the key object deleted and made anew) tells a name sealed with the old one by
    it. (Mutation: the key left out of the digest: every key had the same id.)"""
    one, other = b"1" * 32, b"2" * 32
    expected = hashlib.blake2b(b"", key=one, digest_size=4, person=b"vactor-mail-kid").digest()
    assert mailkey.key_id(one) == expected
    assert mailkey.key_id(one) != mailkey.key_id(other)
