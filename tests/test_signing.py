"""Signing: every object written carries an HMAC; objects without a valid tag are refused before unpickling.

The attacker in these tests can write the bucket but does not hold the key:
they replace a step's state, a class body or HEAD with well-formed objects
of their own (correct SHA-256 checksum, unsigned), or alter signed bytes.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from pickle_bomb import UNPICKLED, Bomb
from store_helpers import raw_get, raw_put

import vactor_cloud as vc
from vactor_cloud import _sync, codec, definition
from vactor_cloud.errors import IntegrityError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.parametrize("store_lane", ["memory", "local", "moto"], indirect=True)

KEY = "correct horse battery staple"


@vc.virtual_actor
class Safe:
    def __init__(self) -> None:
        self.value = 0

    def incr(self) -> int:
        self.value += 1
        return self.value

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.value


@pytest.fixture
def spec(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreSpec]:
    monkeypatch.delenv("VACTOR_SIGNING_KEY", raising=False)
    UNPICKLED.clear()
    yield store_spec
    vc.shutdown()


def start(spec: StoreSpec, **kwargs: Any) -> None:
    vc.shutdown()
    vc.init(spec.url, **spec.options, **kwargs)


def keys_of(actor_id: str) -> list[str]:
    return _sync.sync(vc.get_runtime().store.list(f"actors/{actor_id}/"))


def forged_step(key: str, signed_original: bytes) -> bytes:
    """The attacker's step: same metadata, a malicious state, a valid SHA-256 digest, no signature."""
    env = codec.decode(key, signed_original, signing_key=KEY.encode())
    parts = dict(env.parts)
    parts["state"] = pickle.dumps({"value": 999, "payload": Bomb()})
    return codec.encode(key, env.meta, parts)


def _is_signed(data: bytes) -> bool:
    return bool(int.from_bytes(data[6:8], "big") & 1)


def test_every_object_is_signed_and_readable_with_the_key(spec: StoreSpec) -> None:
    start(spec, signing_key=KEY)
    handle = Safe.get_or_create("s")
    handle.incr.run()
    _sync.sync(vc.get_runtime().core("s").flush_head())
    keys = keys_of("s")
    assert any("/class/" in k for k in keys) and any(k.endswith("/HEAD") for k in keys)
    assert all(_is_signed(raw_get(k)) for k in keys), keys
    start(spec, signing_key=KEY)
    assert vc.get_actor("s").get.run() == 1


def test_signing_key_from_the_environment(spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VACTOR_SIGNING_KEY", KEY)
    start(spec)
    Safe.get_or_create("s").incr.run()
    step = raw_get(vc.get_runtime().log("s").step_key(1))
    assert _is_signed(step)
    assert codec.decode(vc.get_runtime().log("s").step_key(1), step, signing_key=KEY.encode())
    monkeypatch.delenv("VACTOR_SIGNING_KEY")
    start(spec)
    with pytest.raises(IntegrityError, match="VACTOR_SIGNING_KEY"):
        vc.get_actor("s")


@pytest.mark.parametrize("reader_key", [None, "another key"], ids=["no-key", "wrong-key"])
def test_signed_objects_are_refused_without_the_right_key(spec: StoreSpec, reader_key: str | None) -> None:
    start(spec, signing_key=KEY)
    Safe.get_or_create("s").incr.run()
    start(spec, signing_key=reader_key)
    with pytest.raises(IntegrityError):
        vc.get_actor("s").get.run()


def test_unsigned_objects_are_refused_when_a_key_is_configured(spec: StoreSpec) -> None:
    start(spec)
    Safe.get_or_create("s").incr.run()
    start(spec, signing_key=KEY)
    with pytest.raises(IntegrityError, match="not signed"):
        vc.get_actor("s").get.run()


def test_forged_step_is_refused_before_unpickling(spec: StoreSpec) -> None:
    start(spec, signing_key=KEY)
    Safe.get_or_create("s").incr.run()
    key = vc.get_runtime().log("s").step_key(1)
    forged = forged_step(key, raw_get(key))
    # Control: the forgery is a well-formed object that would run its code if trusted.
    state = codec.decode(key, forged).parts["state"]
    assert pickle.loads(state)["value"] == 999 and UNPICKLED == ["bomb"]
    UNPICKLED.clear()
    raw_put(key, forged)
    start(spec, signing_key=KEY)
    with pytest.raises(IntegrityError, match="not signed") as caught:
        vc.get_actor("s").get.run()
    assert caught.value.key == key
    assert UNPICKLED == []


def test_altered_signed_step_is_refused_before_unpickling(spec: StoreSpec) -> None:
    start(spec, signing_key=KEY)
    Safe.get_or_create("s").incr.run()
    key = vc.get_runtime().log("s").step_key(1)
    data = bytearray(raw_get(key))
    data[-40] ^= 0x01  # inside the state part; the signed flag stays set
    raw_put(key, bytes(data))
    start(spec, signing_key=KEY)
    with pytest.raises(IntegrityError, match="signature mismatch"):
        vc.get_actor("s").incr.run()
    assert UNPICKLED == []


def test_signed_step_replayed_under_another_key_is_refused(spec: StoreSpec) -> None:
    start(spec, signing_key=KEY)
    handle = Safe.get_or_create("s")
    handle.incr.run()
    handle.incr.run()
    log = vc.get_runtime().log("s")
    # A validly signed object, moved to another key (here: step 1's bytes at step 2).
    raw_put(log.step_key(2), raw_get(log.step_key(1)))
    start(spec, signing_key=KEY)
    with pytest.raises(IntegrityError, match="signature mismatch"):
        vc.get_actor("s").get.run()


def test_forged_class_body_is_refused_before_unpickling(spec: StoreSpec) -> None:
    @vc.virtual_actor
    class Remote:
        def __init__(self) -> None:
            self.value = 0

        def incr(self) -> int:
            self.value += 1
            return self.value

    start(spec, signing_key=KEY)
    Remote.get_or_create("r").incr.run()
    # From here on this process cannot import the class: it must come from storage.
    definition._REGISTRY.pop(Remote.name)
    (class_key,) = [k for k in keys_of("r") if "/class/" in k]
    body = pickle.dumps(Bomb())
    raw_put(class_key, codec.encode(class_key, {"kind": "class", "name": Remote.name}, {"body": body}))
    start(spec, signing_key=KEY)
    with pytest.raises(IntegrityError, match="not signed") as caught:
        vc.get_actor("r")
    assert caught.value.key == class_key
    assert UNPICKLED == []


def test_forged_head_is_ignored_and_replaced(spec: StoreSpec, caplog: pytest.LogCaptureFixture) -> None:
    # HEAD is advisory (issue 12 item 11): an unsigned one is not trusted, and not fatal either.
    start(spec, signing_key=KEY)
    Safe.get_or_create("s").incr.run()
    log = vc.get_runtime().log("s")
    _sync.sync(vc.get_runtime().core("s").flush_head())
    head = codec.decode(log.head_key, raw_get(log.head_key), signing_key=KEY.encode())
    raw_put(log.head_key, codec.encode(log.head_key, {**head.meta, "step": 0}))
    start(spec, signing_key=KEY)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        handle = vc.get_actor("s")
    assert "unreadable HEAD" in caplog.text and "not signed" in caplog.text
    assert handle.incr.run() == 2  # from the verified steps, not from the forged step 0
    _sync.sync(vc.get_runtime().core("s").flush_head())
    repaired = codec.decode(log.head_key, raw_get(log.head_key), signing_key=KEY.encode())
    assert repaired.meta["step"] == 2
