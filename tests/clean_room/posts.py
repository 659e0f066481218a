"""Posting calls for another process to fold, and finding their outcomes (protocol.md,
"Posting and folding": "Post objects", "Posts carried by their names", "Outcomes")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from .actor_log import Log, Step
from .envelope import Refused, encode

BASE32 = "0123456789abcdefghijklmnopqrstuv"
MAX_NAME = 200


def class_tag(class_name: str) -> str:
    return hashlib.blake2b(class_name.encode(), digest_size=4, person=b"vactor-class").hexdigest()


@dataclass
class Call:
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    call_id: str = field(default_factory=lambda: secrets.token_hex(16))
    idempotency_key: str | None = None
    name: str | None = None
    max_retries: int = 0  # a raising body runs again this many times
    tag: str | None = None

    @property
    def arguments(self) -> bytes:
        return cloudpickle.dumps((self.args, self.kwargs))


@dataclass
class Post:
    sender: str
    seq: int
    calls: list[Call]
    ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def prefix(self) -> str:
        digits, value = [], self.ms
        for _ in range(9):
            digits.append(BASE32[value % 32])
            value //= 32
        return "".join(reversed(digits)) + "".join(secrets.choice(BASE32) for _ in range(3))

    def body(self, key: str, signing_key: bytes | None = None) -> bytes:
        rows = [
            (c.method, c.arguments, c.call_id, c.idempotency_key, c.name, None, c.max_retries)
            for c in self.calls
        ]
        meta: dict[str, Any] = {
            "kind": "post",
            "sender": self.sender,
            "seq": self.seq,
            "time": self.ms / 1000,
        }
        meta["actor"] = key.split("/")[1]
        if any(c.tag for c in self.calls):
            meta["classes"] = [c.tag for c in self.calls]
        parts = {"calls": cloudpickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)}
        return encode(key, meta, parts, signing_key=signing_key)

    def format1(self) -> bytes:
        out = bytearray([1]) + bytes.fromhex(self.sender) + _varint(self.seq) + _varint(len(self.calls))
        for c in self.calls:
            hex_id = len(c.call_id) == 32 and all(ch in "0123456789abcdef" for ch in c.call_id)
            flags = (
                hex_id
                | (c.idempotency_key is not None) << 1
                | (c.name is not None) << 2
                | (c.tag is not None) << 3
            )
            out += bytes([flags]) + _string(c.method) + _varint(len(c.arguments)) + c.arguments
            out += bytes.fromhex(c.call_id) if hex_id else _string(c.call_id)
            if c.idempotency_key is not None:
                out += _string(c.idempotency_key)
            if c.name is not None:
                out += _string(c.name)
            out += _varint(c.max_retries)
            if c.tag is not None:
                out += bytes.fromhex(c.tag)
        return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return _varint(len(data)) + data


def seal(payload: bytes, mail_key: bytes) -> bytes:
    """Format 2: the format-1 payload XOR a keyed-BLAKE2b keystream, behind the key id and nonce."""
    kid = hashlib.blake2b(b"", key=mail_key, digest_size=4, person=b"vactor-mail-kid").digest()
    nonce = secrets.token_bytes(12)
    return bytes([2]) + kid + nonce + seal_with(payload, mail_key, nonce)


def seal_with(data: bytes, mail_key: bytes, nonce: bytes) -> bytes:
    """``data`` XOR the keystream of (key, nonce): seals and unseals alike."""
    stream = b"".join(
        hashlib.blake2b(
            nonce + struct.pack(">I", i), key=mail_key, digest_size=64, person=b"vactor-post-name"
        ).digest()
        for i in range(len(data) // 64 + 1)
    )
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def mail_key(log: Log) -> bytes | None:
    obj = log.read("mail-key")
    return None if obj is None else obj.parts["key"]


def write_post(log: Log, post: Post, *, carry: str = "body") -> str:
    """Write ``post`` to the log's actor; ``carry``: ``body`` (a bare prefix), ``format1`` or
    ``format2`` (the post also carried by its name). The key written."""
    prefix = post.prefix()
    base = f"actors/{log.actor}/mail/{prefix}"
    name = prefix
    if carry != "body":
        payload = post.format1()
        if carry == "format2":
            key = mail_key(log)
            if key is None:
                raise Refused("no mail key to seal with")
            payload = seal(payload, key)
        if log.signing_key is None:
            digest = hashlib.sha256(payload).digest()
        else:
            digest = hmac.new(log.signing_key, base.encode() + b"\0" + payload, hashlib.sha256).digest()
        name = prefix + "." + base64.urlsafe_b64encode(payload + digest).rstrip(b"=").decode()
        assert len(name.encode()) <= MAX_NAME, name
    key = f"actors/{log.actor}/mail/{name}"
    assert log.store.create(key, post.body(key, log.signing_key))
    return key


def outcomes(data: bytes) -> dict[str, tuple[bool, bytes]]:
    """Part ``outcomes`` ("VOC2"): call id -> (ok, the pickled value), checked whole first."""
    if data[:4] != b"VOC2":
        raise Refused("outcomes: magic")
    (count,), offset, found = struct.unpack(">I", data[4:8]), 8, {}
    for _ in range(count):
        if offset + 4 > len(data):
            raise Refused("outcomes: short")
        (id_len,) = struct.unpack(">I", data[offset : offset + 4])
        call_id = data[offset + 4 : offset + 4 + id_len].decode("utf-8", "surrogatepass")
        offset += 4 + id_len
        if offset + 9 > len(data) or data[offset] not in (0, 1) or call_id in found:
            raise Refused("outcomes: malformed")
        ok = data[offset] == 1
        (value_len,) = struct.unpack(">Q", data[offset + 1 : offset + 9])
        offset += 9
        if offset + value_len > len(data):
            raise Refused("outcomes: a value runs past the part")
        found[call_id] = (ok, data[offset : offset + value_len])
        offset += value_len
    if offset != len(data):
        raise Refused("outcomes: trailing bytes")
    return found


def find_outcome(log: Log, known: int, post: Post, call_id: str) -> tuple[Step, bool, Any] | None:
    """Walk forward from step ``known`` (or the retention watermark, if above) to the first step
    whose cursor shows ``post`` applied: its ``outcomes`` hold the call's; or, where the
    applying step was compacted, this step's ``carried_outcomes`` (a copy of its parent's).
    None: not applied (yet). (The step found, ok, the value.)"""
    n = max(known, log.watermark())
    while (step := log.step(n)) is not None:
        if step.applied(post.sender, post.seq):
            for part in ("outcomes", "carried_outcomes"):
                if call_id in (table := outcomes(step.obj.parts.get(part, b"VOC2\0\0\0\0"))):
                    ok, value = table[call_id]
                    return step, ok, cloudpickle.loads(value)
            raise LookupError(f"step {n} applied the post but holds no outcome of {call_id}")
        n += 1
    return None
