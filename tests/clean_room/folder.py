"""Holding the folder lease and folding other processes' posts into a step (protocol.md,
"The folder lease", "A folder", "Posts carried by their names", "Encoding of outcomes")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .actor_log import Log, Step
from .envelope import Refused, decode, encode
from .posts import mail_key, seal_with

POST_NAME = re.compile(r"[0-9a-v]{12}(\..*)?")


@dataclass
class Read:
    """A post as read: its sender, seq, time and rows ``(method, args, kwargs, call_id,
    idempotency_key, name, max_retries, tag)``."""

    key: str
    sender: str
    seq: int
    time: float
    rows: list[tuple[Any, ...]]


class Lease:
    def __init__(self, log: Log, holder: str) -> None:
        self.log, self.holder, self.version = log, holder, ""

    def _write(self, expires: float, step: int) -> bytes:
        key = f"actors/{self.log.actor}/lease"
        meta = {"kind": "lease", "actor": self.log.actor, "holder": self.holder, "expires": expires}
        meta |= {"step": step, "token": secrets.token_hex(8), "time": time.time()}
        return encode(key, meta, {}, signing_key=self.log.signing_key)

    def take(self, seconds: float, step: int) -> None:
        key = f"actors/{self.log.actor}/lease"
        found = self.log.store.get(key)
        data = self._write(time.time() + seconds, step)
        if found is None:
            assert self.log.store.create(key, data)
        else:
            current = decode(key, found[0], signing_key=self.log.signing_key).meta
            assert current["expires"] <= time.time() or current["holder"] == self.holder, current
            self.log.store.replace(key, data, found[1])
        self.version = self.log.store.get(key)[1]  # type: ignore[index]

    def release(self, step: int) -> None:
        self.log.store.replace(f"actors/{self.log.actor}/lease", self._write(0, step), self.version)


def read_posts(log: Log) -> list[Read]:
    """Every post listed, in key order, read from its body; one carried by its name is read
    from the name as well, and must say the same."""
    found = []
    for key in log.store.list(f"actors/{log.actor}/mail/"):
        name = key.rsplit("/", 1)[1]
        if not POST_NAME.fullmatch(name):
            continue
        blob = log.store.get(key)
        if blob is None:
            continue  # applied and deleted meanwhile
        obj = decode(key, blob[0], signing_key=log.signing_key)
        calls = cloudpickle.loads(obj.parts["calls"])
        tags = obj.meta.get("classes") or [None] * len(calls)
        rows = [
            (method, *cloudpickle.loads(arguments), call_id, ikey, cname, retries, tag)
            for (method, arguments, call_id, ikey, cname, _metadata, retries), tag in zip(
                calls, tags, strict=True
            )
        ]
        post = Read(key, obj.meta["sender"], obj.meta["seq"], obj.meta["time"], rows)
        if "." in name:
            assert from_name(log, key) == post, f"{key}: the name and the body disagree"
        found.append(post)
    return found


def from_name(log: Log, key: str) -> Read:
    """The post a name carries (format 2, sealed; or format 1), checked as the doc says."""
    name = key.rsplit("/", 1)[1]
    prefix, inline = name.split(".", 1)
    raw = base64.urlsafe_b64decode(inline + "=" * (-len(inline) % 4))
    payload, digest = raw[:-32], raw[-32:]
    cut = f"actors/{log.actor}/mail/{prefix}"
    if log.signing_key is None:
        expected = hashlib.sha256(payload).digest()
    else:
        expected = hmac.new(log.signing_key, cut.encode() + b"\0" + payload, hashlib.sha256).digest()
    if not hmac.compare_digest(digest, expected):
        raise Refused(f"{key}: the name's digest")
    if payload[0] == 2:
        mkey = mail_key(log)
        if mkey is None:
            raise Refused("no mail key")
        nonce, sealed = payload[5:17], payload[17:]
        assert (
            payload[1:5] == hashlib.blake2b(b"", key=mkey, digest_size=4, person=b"vactor-mail-kid").digest()
        )
        payload = seal_with(sealed, mkey, nonce)
    return _parse_format1(key, prefix, payload)


def _parse_format1(key: str, prefix: str, payload: bytes) -> Read:
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(payload):
            raise Refused(f"{key}: the name runs short")
        pos += n
        return payload[pos - n : pos]

    def varint() -> int:
        shift = value = 0
        while True:
            byte = take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def string() -> str:
        return take(varint()).decode()

    if take(1) != b"\x01":
        raise Refused(f"{key}: not format 1")
    sender, seq, rows = take(8).hex(), varint(), []
    for _ in range(varint()):
        flags = take(1)[0]
        if flags & ~0b1111:
            raise Refused(f"{key}: unknown flag bits")
        method = string()
        args, kwargs = cloudpickle.loads(take(varint()))
        call_id = take(16).hex() if flags & 1 else string()
        ikey = string() if flags & 2 else None
        cname = string() if flags & 4 else None
        retries = varint()
        tag = take(4).hex() if flags & 8 else None
        rows.append((method, args, kwargs, call_id, ikey, cname, retries, tag))
    if pos != len(payload):
        raise Refused(f"{key}: bytes left over")
    ms = 0
    for digit in prefix[:9]:
        ms = ms * 32 + int(digit, 32)
    return Read(key, sender, seq, ms / 1000, rows)


def encode_outcomes(outcomes: list[tuple[str, bool, Any]], *, pickled: bool = False) -> bytes:
    """Part ``outcomes`` of (call id, ok, value): values pickled here, or already (``pickled``)."""
    out = bytearray(b"VOC2") + struct.pack(">I", len(outcomes))
    for call_id, ok, value in outcomes:
        data, blob = call_id.encode("utf-8", "surrogatepass"), value if pickled else cloudpickle.dumps(value)
        out += struct.pack(">I", len(data)) + data + bytes([ok]) + struct.pack(">Q", len(blob)) + blob
    return bytes(out)


def deleted_error(actor: str, step: int) -> bytes:
    """The pickle (protocol 2, by hand) of ``vactor_cloud.errors.ActorDeletedError(actor, "",
    step)``, the outcome of a call a tombstone fails."""
    text = actor.encode()
    return (
        b"\x80\x02cvactor_cloud.errors\nActorDeletedError\n"
        + b"X" + len(text).to_bytes(4, "little") + text
        + b"X\x00\x00\x00\x00J" + step.to_bytes(4, "little", signed=True) + b"\x87R."
    )  # fmt: skip


def pending(base: Step, posts: list[Read]) -> tuple[list[Read], list[Read]]:
    """(the posts to apply on ``base``, in key order, one per sender and seq; the stale and
    expired ones, to delete unapplied)."""
    cursor, floor, now = base.extra.get("post_cursor", {}), base.extra.get("post_floor", 0.0), time.time()
    taken: list[Read] = []
    dropped: list[Read] = []
    for post in posts:
        seen = post.sender in cursor and cursor[post.sender][0] >= post.seq
        seen = seen or any(t.sender == post.sender and t.seq == post.seq for t in taken)
        expired = post.time <= floor or now - post.time > 1800
        (dropped if seen or expired else taken).append(post)
    return taken, dropped


def advance(cursor: dict[str, list[Any]], posts: list[Read], now: float) -> dict[str, list[Any]]:
    """The post cursor past ``posts`` (The post cursor)."""
    cursor = dict(cursor)
    for post in posts:
        old = cursor.get(post.sender, [0, 0.0])
        cursor[post.sender] = [max(post.seq, old[0]), max(now, post.time, old[1])]
    return cursor


def fold(
    log: Log, base: Step, posts: list[Read], apply: Callable[[Any, str, tuple[Any, ...], dict[str, Any]], Any]
) -> Step:
    """Step ``base + 1`` applying every post neither stale nor expired (one per sender and
    seq), in key order;
    ``apply(state, method, args, kwargs)`` runs one call on ``state`` in place. A keyed call
    whose key the table holds is answered from it (not run, not in ``calls``); one it does
    not is run and recorded (a format-1 table only: this clean room writes no checkpoint)."""
    if "deleted" in base.extra:
        return fold_on_tombstone(log, base, posts)
    state, now = log.state(base), time.time()
    table = log.dedup_table(base)
    recorded = {row[0]: row for row in table}
    calls, outcomes = [], []
    taken, _ = pending(base, posts)
    for post in taken:
        for method, args, kwargs, call_id, ikey, _name, _retries, _tag in post.rows:
            if ikey in recorded:
                outcomes.append((call_id, recorded[ikey][2], recorded[ikey][3]))
                continue
            try:
                result, ok = apply(state, method, args, kwargs), True
            except Exception as error:
                result, ok = error, False
            outcomes.append((call_id, ok, result))
            calls.append(
                {"method": method, "call_id": call_id, "ok": ok, "time": now, "result": repr(result)}
            )
            if ikey is not None:
                calls[-1]["key"] = ikey
                recorded[ikey] = [ikey, now, ok, result]
                table.append(recorded[ikey])
    keyed = any("key" in call for call in calls)
    step = log.commit(
        base,
        state,
        calls,
        {"post_cursor": advance(base.extra.get("post_cursor", {}), taken, now)},
        parts={"outcomes": encode_outcomes(outcomes)},
        table=table if keyed else None,
    )
    assert step is not None, "another writer took the step"
    for post in posts:
        log.store.delete(post.key)
    return step


def fold_on_tombstone(log: Log, tombstone: Step, posts: list[Read]) -> Step:
    """Deleting an actor, "A fold on a tombstone": another tombstone (its parent's ``extra``,
    the cursor advanced past the posts), failing every call with ActorDeletedError."""
    taken, _ = pending(tombstone, posts)
    now = time.time()
    extra = {**tombstone.extra, "post_cursor": advance(tombstone.extra.get("post_cursor", {}), taken, now)}
    rows = [row for post in taken for row in post.rows]
    value = deleted_error(log.actor, tombstone.n + 1)
    outcomes = encode_outcomes([(row[3], False, value) for row in rows], pickled=True)
    calls = [{"method": row[0], "call_id": row[3], "ok": False, "time": now} for row in rows]
    step = log.commit(tombstone, None, calls, extra, parts={"state": b"", "outcomes": outcomes}, fresh=True)
    assert step is not None, "another writer took the step"
    for post in posts:
        log.store.delete(post.key)
    return step
