"""Untrusted storage and bad input: corrupt, truncated and future objects, JSON state, class loading, ids."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from pickle_bomb import UNPICKLED, Bomb
from store_helpers import raw_get, raw_put

import vactor_cloud as vc
from vactor_cloud import _sync, codec, definition, post_objects
from vactor_cloud.errors import (
    ActorDefinitionError,
    FormatVersionError,
    IntegrityError,
    InvalidActorIdError,
    StateSerializationError,
)
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.parametrize("store_lane", ["memory", "local"], indirect=True)


@vc.virtual_actor
class Vault:
    def __init__(self) -> None:
        self.value = 0
        self.payload: Any = Bomb()

    def incr(self) -> int:
        self.value += 1
        return self.value

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.value


@vc.virtual_actor(serializer="json")
class Ledger:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.entries: list[dict[str, Any]] = []

    def add(self, item: str, amount: float) -> int:
        self.entries.append({"item": item, "amount": amount})
        return len(self.entries)

    def add_object(self) -> None:
        self.entries.append(object())  # type: ignore[arg-type]

    @vc.virtual_actor.readonly
    def total(self) -> float:
        return sum(e["amount"] for e in self.entries)


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    UNPICKLED.clear()
    vc.init(store_spec.url, **store_spec.options)
    yield store_spec
    vc.shutdown()


def reopen(spec: StoreSpec, **kwargs: Any) -> None:
    """A fresh runtime (empty caches), as another process would start."""
    vc.shutdown()
    vc.init(spec.url, **spec.options, **kwargs)


def step_key(actor_id: str, step: int) -> str:
    return vc.get_runtime().log(actor_id).step_key(step)


def test_intact_state_is_unpickled_so_the_bomb_is_a_valid_probe(spec: StoreSpec) -> None:
    Vault.get_or_create("v").incr.run()
    reopen(spec)
    assert vc.get_actor("v").get.run() == 1
    assert UNPICKLED  # reading the state did run the pickle's code


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="digest-bit-flipped"),
        pytest.param(lambda b: b[:40] + bytes([b[40] ^ 0x20]) + b[41:], id="meta-bit-flipped"),
        pytest.param(lambda b: b[: len(b) // 2], id="truncated-half"),
        pytest.param(lambda b: b[:7], id="truncated-header"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"\x80\x05garbage-pickle", id="raw-pickle"),
    ],
)
def test_corrupt_step_raises_integrity_error_naming_the_key_and_is_never_unpickled(
    spec: StoreSpec, damage: Any
) -> None:
    Vault.get_or_create("v").incr.run()
    key = step_key("v", 1)
    raw_put(key, damage(raw_get(key)))
    reopen(spec)
    UNPICKLED.clear()
    with pytest.raises(IntegrityError) as caught:
        vc.get_actor("v").get.run()
    assert caught.value.key == key and key in str(caught.value)
    assert UNPICKLED == []


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="digest-bit-flipped"),
        pytest.param(lambda b: b[: len(b) // 2], id="truncated-half"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b'{"min_step": 1}', id="not-an-envelope"),
    ],
)
def test_a_damaged_gc_watermark_says_which_actor_and_what_to_do(spec: StoreSpec, damage: Any) -> None:
    """Every load of the actor reads its ``gc`` object, so a damaged one stops the actor: the
    error must name the object and the actor and say how to recover (restore it: no value
    written by hand is safe, too low lets stray steps pass for history, too high hides it)."""
    from vactor_cloud.log_records import GcWatermark, encode_gc

    vault = Vault.get_or_create("v")
    vault.incr.run()
    vault.incr.run()
    log = vc.get_runtime().log("v")
    raw_put(log.gc_key, damage(encode_gc(log.gc_key, GcWatermark(1), 0.0, None)))
    # fresh_window=0: every call validates its cache, reading the watermark (by default a
    # process does so once its cache is 5 s old); history reads it on every call.
    reopen(spec, settings=vc.Settings(storage=spec.url, fresh_window=0.0))
    for call in (vc.get_actor("v").incr.run, vc.get_actor("v").history):
        with pytest.raises(IntegrityError) as caught:
            call()
        message = str(caught.value)
        assert caught.value.key == log.gc_key and message.startswith(f"{log.gc_key}: ")
        assert "retention watermark of actor 'v'" in message
        assert "damaged or cannot be verified" in message
        assert "restore it from a backup or an earlier version" in message
        assert "bucket versioning" in message
        assert "too low" in message and "too high" in message
    raw_put(log.gc_key, encode_gc(log.gc_key, GcWatermark(1), 0.0, None))  # restored
    assert vc.get_actor("v").incr.run() == 3


def test_a_step_copied_from_another_actors_log_is_refused_before_unpickling(spec: StoreSpec) -> None:
    """Without a signing key the digest covers the bytes, not the key: a step object copied
    from actor a's log to the same number in b's verifies. Each step records its actor, so b
    refuses it instead of taking a's state as its own (with a key, the MAC covers the key)."""
    a = Vault.get_or_create("a")
    a.incr.run()
    a.incr.run()
    Vault.get_or_create("b")  # step 0 only: a's step 1 fits b's log by number and parent
    key = step_key("b", 1)
    raw_put(key, raw_get(step_key("a", 1)))
    reopen(spec)
    UNPICKLED.clear()
    with pytest.raises(IntegrityError) as caught:
        vc.get_actor("b").get.run()
    assert caught.value.key == key
    assert "belongs to actor 'a', not 'b'" in str(caught.value)
    assert UNPICKLED == []
    assert vc.get_actor("a").get.run() == 2  # the original is untouched


def test_a_step_copied_to_a_later_number_of_its_own_log_is_refused_before_unpickling(spec: StoreSpec) -> None:
    """Without a signing key, a step object copied within its own actor's log (step 1's bytes
    put at step 2: a replay that would roll the state back) names its actor rightly and its
    digest verifies; the step number it records does not match its key, so it is refused."""
    a = Vault.get_or_create("a")
    a.incr.run()
    key = step_key("a", 2)
    raw_put(key, raw_get(step_key("a", 1)))
    reopen(spec)
    UNPICKLED.clear()
    with pytest.raises(IntegrityError) as caught:
        vc.get_actor("a").get.run()
    assert caught.value.key == key
    assert "holds step 1, not 2" in str(caught.value)
    assert UNPICKLED == []


def unbound(meta: dict[str, Any], parts: dict[str, bytes] | None = None) -> bytes:
    """An unsigned envelope as releases before objects recorded their actor wrote it (no
    ``"actor"`` in the meta; ``codec.encode`` now always adds the key's)."""
    parts = parts or {}
    full = {k: v for k, v in meta.items() if k != "actor"}
    full["parts"] = [[name, len(data)] for name, data in parts.items()]
    raw = json.dumps(full, separators=(",", ":")).encode("utf-8")
    body = struct.pack(">4sHHI", b"VACT", 1, 0, len(raw)) + raw + b"".join(parts.values())
    return body + hashlib.sha256(body).digest()


def test_a_step_written_before_steps_recorded_their_actor_is_still_read(spec: StoreSpec) -> None:
    Vault.get_or_create("v").incr.run()
    key = step_key("v", 1)
    env = codec.decode(key, raw_get(key))
    assert env.meta.pop("actor") == "v"  # recorded now
    raw_put(key, unbound(env.meta, env.parts))
    reopen(spec)
    assert vc.get_actor("v").incr.run() == 2


def test_a_gc_watermark_copied_from_another_actor_is_refused(spec: StoreSpec) -> None:
    """A's ``gc`` copied to B verifies without a signing key (the checksum covers the bytes, not
    the key): B would take a's watermark, hiding its history (too high) or letting stray steps
    pass for history (too low). The object records its actor, so B refuses it."""
    from vactor_cloud.log_records import GcWatermark, encode_gc

    for actor_id in ("a", "b"):
        vault = Vault.get_or_create(actor_id)
        vault.incr.run()
        vault.incr.run()
    log_a, log_b = vc.get_runtime().log("a"), vc.get_runtime().log("b")
    raw_put(log_a.gc_key, encode_gc(log_a.gc_key, GcWatermark(2), 0.0, None))
    raw_put(log_b.gc_key, raw_get(log_a.gc_key))
    reopen(spec, settings=vc.Settings(storage=spec.url, fresh_window=0.0))
    for call in (vc.get_actor("b").incr.run, vc.get_actor("b").history):
        with pytest.raises(IntegrityError) as caught:
            call()
        assert caught.value.key == log_b.gc_key
        assert "belongs to actor 'a', not 'b'" in str(caught.value)
        assert "retention watermark of actor 'b'" in str(caught.value)
    assert vc.get_actor("a").incr.run() == 3  # the original is read as before


def test_a_gc_watermark_written_before_objects_recorded_their_actor_is_still_read(
    spec: StoreSpec,
) -> None:
    vault = Vault.get_or_create("v")
    vault.incr.run()
    log = vc.get_runtime().log("v")
    assert codec.decode(log.gc_key, codec.encode(log.gc_key, {"kind": "gc"})).meta["actor"] == "v"
    raw_put(log.gc_key, unbound({"kind": "gc", "min_step": 1, "recorded_from": 1, "time": 0.0}))
    reopen(spec, settings=vc.Settings(storage=spec.url, fresh_window=0.0))
    assert vc.get_actor("v").incr.run() == 2
    assert _sync.sync(vc.get_runtime().log("v").read_gc()) == 1


def test_an_idempotency_checkpoint_copied_from_another_actor_is_refused(spec: StoreSpec) -> None:
    Vault.get_or_create("a")
    Vault.get_or_create("b")
    log_a, log_b = vc.get_runtime().log("a"), vc.get_runtime().log("b")
    name = "00000000000000000001-0123456789abcdef"
    _sync.sync(log_a.put_dedup_checkpoint(name, b"table", "pickle"))
    raw_put(log_b.dedup_key(name), raw_get(log_a.dedup_key(name)))
    with pytest.raises(IntegrityError) as caught:
        _sync.sync(log_b.read_dedup_checkpoint(name))
    assert caught.value.key == log_b.dedup_key(name)
    assert "belongs to actor 'a', not 'b'" in str(caught.value)
    assert _sync.sync(log_a.read_dedup_checkpoint(name)) == (b"table", "pickle")
    # one written before checkpoints recorded their actor is read as before
    raw_put(log_b.dedup_key(name), unbound({"kind": "dedup", "serializer": "pickle"}, {"table": b"t"}))
    assert _sync.sync(log_b.read_dedup_checkpoint(name)) == (b"t", "pickle")


def test_a_head_copied_from_another_actor_is_ignored_as_unreadable(spec: StoreSpec) -> None:
    """HEAD is advisory: a foreign one is ignored like a damaged one (never taken for b's newest
    step), and the next writer replaces it."""
    a = Vault.get_or_create("a")
    for _ in range(3):
        a.incr.run()
    Vault.get_or_create("b").incr.run()
    log_a, log_b = vc.get_runtime().log("a"), vc.get_runtime().log("b")
    _sync.sync(log_a.advance_head(3, _sync.sync(log_a.read_step(3)).class_ref, None))  # type: ignore[union-attr]
    raw_put(log_b.head_key, raw_get(log_a.head_key))
    assert _sync.sync(log_b.read_head()) is None
    reopen(spec)
    assert vc.get_actor("b").incr.run() == 2
    assert vc.get_actor("a").incr.run() == 4


def test_a_post_and_an_event_copied_from_another_actor_are_refused(spec: StoreSpec) -> None:
    from vactor_cloud import inbox_events, posting
    from vactor_cloud.keys import inbox_key, post_key

    call = posting.PostedCall("incr", b"args", "c1")
    post = posting.Post(post_key("a", "0000000000abc"), "00" * 8, 1, 1.0, (call,))
    data = post_objects.encode_post(post.key, post, None)
    assert post_objects.decode_post(post.key, data, None).calls == (call,)
    with pytest.raises(IntegrityError, match="belongs to actor 'a', not 'b'"):
        post_objects.decode_post(post_key("b", "0000000000abc"), data, None)
    key, data = inbox_events.encode_event("a", "e1", "ping", b"{}", "json", None)
    assert inbox_events.decode_event(key, data, None).event_id == "e1"
    with pytest.raises(IntegrityError, match="belongs to actor 'a', not 'b'"):
        inbox_events.decode_event(inbox_key("b", "e1"), data, None)


def test_an_actors_object_copied_outside_actors_is_refused_and_encode_checks_the_meta(
    spec: StoreSpec,
) -> None:
    data = codec.encode("actors/a/HEAD", {"kind": "head"})
    with pytest.raises(IntegrityError, match="belongs to actor 'a', read from a key outside actors/"):
        codec.decode("mail-key", data)
    assert "actor" not in codec.decode("mail-key", codec.encode("mail-key", {"kind": "mail-key"})).meta
    with pytest.raises(ValueError, match="names actor 'b'"):
        codec.encode("actors/a/HEAD", {"kind": "head", "actor": "b"})


def test_corrupt_state_bytes_are_refused_before_unpickling(spec: StoreSpec) -> None:
    Vault.get_or_create("v").incr.run()
    key = step_key("v", 1)
    data = bytearray(raw_get(key))
    # Flip a byte inside the state part (just before the 32-byte digest).
    data[-40] ^= 0xFF
    raw_put(key, bytes(data))
    reopen(spec)
    UNPICKLED.clear()
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        vc.get_actor("v").incr.run()
    assert UNPICKLED == []


def test_step_from_a_newer_format_says_upgrade(spec: StoreSpec) -> None:
    Vault.get_or_create("v").incr.run()
    key = step_key("v", 1)
    data = bytearray(raw_get(key))
    struct.pack_into(">H", data, 4, codec.FORMAT_VERSION + 1)
    body = bytes(data[: -hashlib.sha256().digest_size])
    raw_put(key, body + codec.digest(key, body, None))  # a newer writer's object: it verifies
    reopen(spec)
    UNPICKLED.clear()
    with pytest.raises(FormatVersionError, match="upgrade vactor_cloud") as caught:
        vc.get_actor("v").get.run()
    assert caught.value.key == key
    assert isinstance(caught.value, IntegrityError)
    assert UNPICKLED == []


def test_a_version_field_damaged_in_transit_is_a_checksum_mismatch_not_upgrade(spec: StoreSpec) -> None:
    """A damaged header that names a newer format does not verify: it is damage (retried,
    repaired where advisory), not a newer object to upgrade for (a chaos run reported
    "upgrade vactor_cloud" for a damaged read, and a HEAD read so would have stopped the
    call instead of being repaired)."""
    Vault.get_or_create("v").incr.run()
    key = step_key("v", 1)
    data = bytearray(raw_get(key))
    struct.pack_into(">H", data, 4, codec.FORMAT_VERSION + 1)
    with pytest.raises(IntegrityError, match="checksum mismatch") as caught:
        codec.decode(key, bytes(data))
    assert not isinstance(caught.value, FormatVersionError)


def test_a_newer_format_is_upgrade_only_once_the_signature_or_its_absence_checks_out(spec: StoreSpec) -> None:
    """A reader without a signing key cannot check a signed object, whatever its format: it
    is told to configure the key (without it an upgrade would not help, and the header,
    unchecked, may be damaged or forged), not to upgrade. A reader with a key refuses an
    unsigned object whatever format it claims (a forged HEAD "in a newer format" would stop
    every writer, which must not overwrite a newer HEAD)."""
    key = "actors/v/steps/00000000000000000001"
    data = codec.encode(key, {"x": 1}, signing_key=b"k" * 32, version=codec.FORMAT_VERSION + 1)
    with pytest.raises(IntegrityError, match="signing_key") as caught:
        codec.decode(key, data)
    assert not isinstance(caught.value, FormatVersionError)
    with pytest.raises(FormatVersionError, match="upgrade vactor_cloud"):
        codec.decode(key, data, signing_key=b"k" * 32)  # with the key: it verifies, a newer format
    # An unsigned object claiming a newer format, where objects are signed: refused, not "upgrade".
    unsigned = codec.encode(key, {"x": 1}, version=codec.FORMAT_VERSION + 1)
    with pytest.raises(IntegrityError, match="not signed") as refused:
        codec.decode(key, unsigned, signing_key=b"k" * 32)
    assert not isinstance(refused.value, FormatVersionError)


def test_json_serializer_stores_plain_data(spec: StoreSpec) -> None:
    ledger = Ledger.get_or_create("l", "ana")
    assert ledger.add.run("tea", 2.5) == 1
    assert ledger.add.run("cake", 4.0) == 2
    record = _sync.sync(vc.get_runtime().log("l").read_step(2))
    assert record is not None and record.serializer == "json"
    assert json.loads(record.state) == {
        "owner": "ana",
        "entries": [{"item": "tea", "amount": 2.5}, {"item": "cake", "amount": 4.0}],
    }
    reopen(spec)
    assert vc.get_actor("l").total.run() == 6.5


def test_json_serializer_refuses_non_json_state_and_commits_nothing(spec: StoreSpec) -> None:
    ledger = Ledger.get_or_create("l", "ana")
    ledger.add.run("tea", 2.5)
    before = _sync.sync(vc.get_runtime().log("l").list_steps())
    with pytest.raises(StateSerializationError, match="json"):
        ledger.add_object.run()
    assert _sync.sync(vc.get_runtime().log("l").list_steps()) == before
    assert ledger.add.run("cake", 4.0) == 2  # the refused call left no trace
    with pytest.raises(StateSerializationError):
        Ledger.get_or_create("m", object())
    assert _sync.sync(vc.get_runtime().store.list("actors/m/")) == []


def _unimportable_actor_class() -> vc.ActorClass:
    """A class this process cannot import by name, as in a process without the user's code."""

    @vc.virtual_actor
    class Stranger:
        def __init__(self) -> None:
            self.value = 0

        def incr(self) -> int:
            self.value += 1
            return self.value

    definition._REGISTRY.pop(Stranger.name)
    return Stranger


def test_class_bodies_are_loaded_from_storage_only_when_allowed(spec: StoreSpec) -> None:
    stranger = _unimportable_actor_class()
    stranger.get_or_create("s").incr.run()
    Vault.get_or_create("v").incr.run()

    reopen(spec, load_classes_from_storage=False)
    with pytest.raises(ActorDefinitionError, match="load_classes_from_storage=False"):
        vc.get_actor("s")
    # Importable classes keep working in that mode.
    assert vc.get_actor("v").incr.run() == 2

    reopen(spec)
    assert vc.get_actor("s").incr.run() == 2


@pytest.mark.parametrize(
    "actor_id",
    ["", "a/b", "a\\b", ".", "..", "tab\there", "nul\x00", "del\x7f", "x" * 256, "é" * 128, 42],
    ids=[
        "empty",
        "slash",
        "backslash",
        "dot",
        "dotdot",
        "tab",
        "nul",
        "del",
        "too-long",
        "too-long-utf8",
        "int",
    ],
)
def test_invalid_actor_ids_are_refused_before_any_request(spec: StoreSpec, actor_id: Any) -> None:
    store = vc.get_runtime().store
    store.requests.reset()
    with pytest.raises(InvalidActorIdError):
        Vault.get_or_create(actor_id)
    with pytest.raises(InvalidActorIdError):
        vc.get_actor(actor_id)
    assert store.requests.total() == 0
    assert isinstance(InvalidActorIdError("x"), ValueError)


def test_longest_valid_id_and_unicode_work(spec: StoreSpec) -> None:
    for actor_id in ["x" * 255, "ünïcode-ид-名前", "with space", "a.b-c_d:e@f"]:
        assert Vault.get_or_create(actor_id).incr.run() == 1
