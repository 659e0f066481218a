"""Contention combining: calls posted to an actor's mailbox and folded into the next commit.

When processes race for one actor, every loser of a race pays a PUT, a GET
and a re-apply, and tries again; under load most attempts lose. Instead, one
process holds the actor's advisory folder lease (``vactor_cloud.lease``);
the others *post* their batches of calls as one create-only object each and
wait; the holder folds every pending post into its next step (group commit
across processes). See docs/protocol.md ("Posting and folding") for the
protocol in full.

Object layout::

    actors/<id>/mail/<name>   one batch of calls, create-only; name = 9 base-32 digits of
                              the time in ms, then 3 random ones (short: cheap on the local store);
                              a small post's name goes on with "." and the post itself
                              (base64url, authenticated): a folder learns it from the LIST, no GET

``sender`` (in the post's meta) is random per process (``PostSender``: one per
runtime, for all its actors, evictions or not), ``seq`` counts that sender's
posts. A sender has at most one post outstanding per actor (its batches are
sequential) and its names grow, so its seqs apply in order.

Exactly once, with no table that grows with the traffic: every step carries
the **post cursor**, ``extra["post_cursor"] = {sender: [seq, time]}``, the
newest seq applied per sender. A folder applies a post only if its seq is
above the sender's cursor, and advances the cursor in the same create-only
put that commits the calls. A post left behind (its folder died before
deleting it) has ``seq <= cursor`` and is deleted unapplied. Senders silent
for ``SENDER_TTL`` leave the cursor; a post older than half that is never
applied (its poster stopped waiting long before), nor one dated at or before
the newest entry time ever dropped (``extra["post_floor"]``, whatever the
folder's clock says), so a forgotten sender cannot have a post applied twice.

Outcomes travel in the step that applied the calls (``StepRecord.posted``:
call id -> result or exception, each pickled on its own), never copied into
later steps (but the next one's ``carried``, when small). A poster
learns its outcome by reading that step; the cursor tells it whether (and
from which step on) to look.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import itertools
import math
import re
import secrets
import struct
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from vactor_cloud import bytecode, codec, mailkey
from vactor_cloud.class_tag import TAG_BYTES
from vactor_cloud.dedup import Outcome, recorded_exception, safe_repr
from vactor_cloud.errors import (
    AlreadyExistsError,
    IntegrityError,
    NotFoundError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.keys import post_key, posts_prefix
from vactor_cloud.log import OUTCOMES_MAGIC
from vactor_cloud.storage import ObjectStore

__all__ = [
    "POST_CURSOR",
    "POST_FLOOR",
    "SENDER_TTL",
    "Outcomes",
    "Post",
    "PostBox",
    "PostInDoubtError",
    "PostSender",
    "PostedCall",
    "advance_cursor",
    "applied",
    "bare",
    "cannot_tell",
    "cursor_of",
    "decode_outcomes",
    "encode_outcomes",
    "expired",
    "floor_of",
    "identity",
    "inline_name",
    "legacy_outcomes",
    "post_name",
    "read_name",
    "sealed",
]

#: ``StepRecord.extra`` key of the post cursor
POST_CURSOR = "post_cursor"
#: ``StepRecord.extra`` key of the post floor: the latest ``time`` of a cursor entry ever
#: dropped; a post dated at or before it is expired, whatever the folder's clock says
POST_FLOOR = "post_floor"
#: a sender silent this long leaves the cursor (seconds); posts older than half of it are expired
SENDER_TTL = 3600.0
_FETCH_CONCURRENCY = 32
#: reads of our own post back (after a lost answer) before a damaged one counts as unknown
_READ_BACKS = 5
#: a post whose reads failed this many times in a row, over at least this many seconds, is
#: taken for damaged at rest (or forged) and skipped; until then a fold stops at it. A fold
#: stopped so reads it again 10 ms later, doubling to 100 ms (about twenty reads in the 2 s):
#: at 30 % damaged reads in transit, 15 in a row happen to one post in ~70 million
DAMAGED_READS = 15
DAMAGED_SECONDS = 2.0


class PostInDoubtError(RetryableStorageError):
    """:meth:`PostBox.send` could not tell whether the post landed. ``post`` is the post as it
    may exist now: under the last name tried (a name taken by another's post is left for a new
    one, so it may differ from the post given to ``send``)."""

    def __init__(self, message: str, key: str, post: Post) -> None:
        super().__init__(message, key)
        self.post = post

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.key, self.post))


@dataclass(frozen=True, slots=True)
class PostedCall:
    """One call of a post, as another process needs it to run the call."""

    method: str
    #: the pickled ``(args, kwargs)``, copied when the call was made
    arguments: bytes
    call_id: str
    idempotency_key: str | None = None
    name: str | None = None
    metadata: dict[str, Any] | None = None
    max_retries: int = 0
    #: the tag of the class the call was made for (``vactor_cloud.class_tag``), or None
    for_class: str | None = None


@dataclass(frozen=True, slots=True)
class Post:
    """A batch of calls one sender posted, waiting to be folded into a step."""

    key: str
    sender: str
    seq: int
    time: float
    calls: tuple[PostedCall, ...]


def cursor_of(extra: dict[str, Any]) -> dict[str, list[float]]:
    """The post cursor a step carries: sender -> [newest applied seq, when]."""
    raw = extra.get(POST_CURSOR)
    return dict(raw) if isinstance(raw, dict) else {}


def applied(extra: dict[str, Any], sender: str, seq: int) -> bool:
    """Whether the step with this ``extra`` (or an earlier one) applied post ``seq`` of ``sender``."""
    entry = cursor_of(extra).get(sender)
    return entry is not None and int(entry[0]) >= seq


def floor_of(extra: dict[str, Any]) -> float:
    """The post floor a step carries (``-inf``: none, or not a finite number)."""
    raw = extra.get(POST_FLOOR)
    try:
        floor = float(raw) if isinstance(raw, (int, float)) else -math.inf
    except OverflowError:
        return -math.inf
    return floor if math.isfinite(floor) else -math.inf


def advance_cursor(extra: dict[str, Any], posts: list[Post], now: float) -> dict[str, Any]:
    """``extra`` with the cursor moved past ``posts`` and silent senders dropped.

    Dropping a sender raises the post floor to its entry's time: every post of that sender
    the cursor recorded applied is dated at or before it (below), so a copy left behind is
    expired by the floor, not by the clock of whoever folds next. (By clocks alone, a
    writer whose clock ran an hour ahead dropped the entry of a sender whose applied post
    an honest folder, its clock an hour behind that writer's, found young and applied again.)"""
    old = cursor_of(extra)
    cursor = {s: e for s, e in old.items() if now - float(e[1]) < SENDER_TTL}
    dropped = [float(e[1]) for s, e in old.items() if s not in cursor and math.isfinite(float(e[1]))]
    for post in posts:
        # Never before the post's own time (its poster's clock): the entry must outlive the
        # post's expiry (SENDER_TTL / 2 after that time), or a copy left behind by a folder
        # that died would be applied again once the entry was dropped, whatever clock skew.
        seq, since = cursor.get(post.sender, [-1, 0.0])
        cursor[post.sender] = [max(post.seq, int(seq)), max(now, post.time, float(since))]
    out = dict(extra)
    if dropped:
        out[POST_FLOOR] = max(floor_of(extra), *dropped)
    if cursor:
        out[POST_CURSOR] = cursor
    else:
        out.pop(POST_CURSOR, None)
    return out


def cannot_tell(call_id: str, step: int) -> str:
    """Why the outcome of a posted call the cursor forgot is unknown: a step compacted since
    (or a stray where it was) may have applied it, or none did. A writer drops a sender
    ``SENDER_TTL`` after its last post by its own clock: that long passed since the post (an
    ask that late, no clock skew needed), or that writer's clock runs ahead."""
    ttl = f"{SENDER_TTL / 3600:g} h (SENDER_TTL)"
    return (
        f"call {call_id} was posted, and its sender has left the cursor: a writer drops a sender "
        f"{ttl} after its last post, by the writer's clock (that long has passed since the post, "
        "or that writer's clock runs ahead): whether a step compacted since applied it cannot be "
        f"told (by step {step} it is applied, or never will be); read the actor's state before "
        f"calling again (applied at most once either way), and ask within {ttl} of a post to be "
        "told"
    )


#: the digits of post names: base 32, in byte order
_DIGITS = "0123456789abcdefghijklmnopqrstuv"
_TIME_DIGITS = 9  # 45 bits of milliseconds: until the year 3084
_RANDOM_DIGITS = 3
#: the latest time (seconds) a post's name can spell, less a day of margin
_LATEST_NAMED = (1 << (5 * _TIME_DIGITS)) / 1000 - 86400.0


def post_name(time_ms: int, rand: int) -> str:
    """The name of a post written at ``time_ms``: sorts by time; ``rand`` (15 bits) tells apart
    posts of one millisecond."""
    value = (time_ms << (5 * _RANDOM_DIGITS)) | (rand & ((1 << (5 * _RANDOM_DIGITS)) - 1))
    digits = []
    for _ in range(_TIME_DIGITS + _RANDOM_DIGITS):
        digits.append(_DIGITS[value & 31])
        value >>= 5
    return "".join(reversed(digits))


def identity(key: str) -> float | None:
    """The time (seconds) a post's key spells, or None for a key that is not a post's.

    A post's name is its 12-character prefix alone, or that prefix, ``"."`` and more (the
    post itself, see :func:`inline_name`; what follows the ``"."`` does not matter here)."""
    name = key.rpartition("/")[2]
    prefix = name[:_PREFIX]
    if len(prefix) != _PREFIX or any(c not in _DIGITS for c in prefix):
        return None
    if len(name) > _PREFIX and name[_PREFIX] != _INLINE_SEP:
        return None
    return int(name[:_TIME_DIGITS], 32) / 1000


#: a post's name prefix: the time, then the random digits
_PREFIX = _TIME_DIGITS + _RANDOM_DIGITS
#: between a post's prefix and the post it carries in its name
_INLINE_SEP = "."
#: the first byte of a name-carried post (its format; a reader that does not know it GETs the body)
_INLINE_VERSION = 1
#: the first byte of a sealed one: then the nonce, and the format-1 payload sealed with the mail key
_SEALED_VERSION = 2
#: a name carries its post only while the whole name is at most this many bytes: keys of S3 and
#: GCS may be 1024 bytes long, but the local store makes a mailbox name one file name (255 bytes
#: on Linux, stored as is)
INLINE_NAME_LIMIT = 200
_HEX_SENDER = re.compile(r"[0-9a-f]{16}")
_HEX_CALL_ID = re.compile(r"[0-9a-f]{32}")
_HEX_TAG = re.compile(rf"[0-9a-f]{{{2 * TAG_BYTES}}}")
#: call flags in a name-carried post
_RAW_CALL_ID = 0x1
_HAS_KEY = 0x2
_HAS_NAME = 0x4
#: the call names its class: 4 bytes of its tag follow its max_retries
_HAS_CLASS = 0x8


def _varint(value: int, out: bytearray) -> None:
    """Unsigned LEB128."""
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _inline_payload(sender: str, seq: int, calls: tuple[PostedCall, ...]) -> bytes | None:
    """A post's fields as a name carries them (before the digest), or None if they do not fit
    that encoding (calls with metadata, a sender that is not 16 hex digits, ...)."""
    if not calls or seq < 0 or not _HEX_SENDER.fullmatch(sender):
        return None
    out = bytearray([_INLINE_VERSION])
    out += bytes.fromhex(sender)
    _varint(seq, out)
    _varint(len(calls), out)
    try:
        for call in calls:
            if not (
                call.metadata is None
                and isinstance(call.method, str)
                and isinstance(call.arguments, bytes)
                and isinstance(call.call_id, str)
                and isinstance(call.idempotency_key, str | None)
                and isinstance(call.name, str | None)
                and type(call.max_retries) is int
                and call.max_retries >= 0
                and (call.for_class is None or _HEX_TAG.fullmatch(call.for_class) is not None)
            ):
                return None
            raw_id = _HEX_CALL_ID.fullmatch(call.call_id) is not None
            flags = (
                (_RAW_CALL_ID if raw_id else 0)
                | (_HAS_KEY if call.idempotency_key is not None else 0)
                | (_HAS_NAME if call.name is not None else 0)
                | (_HAS_CLASS if call.for_class is not None else 0)
            )
            out.append(flags)
            for text in (call.method, call.arguments, None if raw_id else call.call_id):
                if text is None:
                    continue
                data = text if isinstance(text, bytes) else text.encode("utf-8")
                _varint(len(data), out)
                out += data
            if raw_id:
                out += bytes.fromhex(call.call_id)
            for text in (call.idempotency_key, call.name):
                if text is not None:
                    data = text.encode("utf-8")
                    _varint(len(data), out)
                    out += data
            _varint(call.max_retries, out)
            if call.for_class is not None:
                out += bytes.fromhex(call.for_class)
    except UnicodeEncodeError:  # a lone surrogate: the body (pickle) carries it
        return None
    return bytes(out)


def inline_name(
    actor_id: str,
    prefix: str,
    sender: str,
    seq: int,
    calls: tuple[PostedCall, ...],
    signing_key: bytes | None,
    seal_key: bytes | None = None,
) -> str | None:
    """The name of a post that carries the post itself, or None when it would be longer than
    :data:`INLINE_NAME_LIMIT` or the calls do not fit the encoding (then the name is ``prefix``).

    With ``seal_key`` (the store's mail key, ``vactor_cloud.mailkey``) the post is sealed
    (format 2): what vactor_cloud writes. Without, in the clear (format 1): read still, for
    the names of snapshots that wrote them, and not written any more."""
    payload = _inline_payload(sender, seq, calls)
    if payload is not None and seal_key is not None:
        nonce = secrets.token_bytes(mailkey.NONCE_BYTES)
        head = bytes([_SEALED_VERSION]) + mailkey.key_id(seal_key) + nonce
        payload = head + mailkey.seal(seal_key, nonce, payload)
    # (unpadded base64 of the payload and its 32-byte digest: 4 characters per 3 bytes)
    if payload is None or _PREFIX + 1 + -(-(len(payload) + 32) * 4 // 3) > INLINE_NAME_LIMIT:
        return None
    digest = codec.digest(post_key(actor_id, prefix), payload, signing_key)
    encoded = base64.urlsafe_b64encode(payload + digest).rstrip(b"=").decode("ascii")
    return f"{prefix}{_INLINE_SEP}{encoded}"


class _Malformed(ValueError):
    pass


def _parse_payload(payload: bytes) -> tuple[str, int, tuple[PostedCall, ...]]:
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(payload):
            raise _Malformed("truncated")
        pos += n
        return payload[pos - n : pos]

    def varint() -> int:
        value = shift = 0
        while True:
            byte = take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
            if shift > 63:
                raise _Malformed("varint too long")

    def text() -> str:
        return take(varint()).decode("utf-8")

    if take(1)[0] != _INLINE_VERSION:
        raise _Malformed("unknown version")
    sender = take(8).hex()
    seq = varint()
    calls = []
    for _ in range(varint()):
        flags = take(1)[0]
        if flags & ~(_RAW_CALL_ID | _HAS_KEY | _HAS_NAME | _HAS_CLASS):
            raise _Malformed("unknown call flags")
        method = text()
        arguments = take(varint())
        call_id = take(16).hex() if flags & _RAW_CALL_ID else text()
        idempotency_key = text() if flags & _HAS_KEY else None
        name = text() if flags & _HAS_NAME else None
        max_retries = varint()
        for_class = take(TAG_BYTES).hex() if flags & _HAS_CLASS else None
        calls.append(
            PostedCall(method, arguments, call_id, idempotency_key, name, None, max_retries, for_class)
        )
    if pos != len(payload):
        raise _Malformed("trailing bytes")
    return sender, seq, tuple(calls)


def sealed(key: str) -> bool:
    """Whether a post's name carries a sealed post (format 2): reading it needs the mail key."""
    name = key.rpartition("/")[2]
    # (the first 6 bits of the first byte, then 2 and 4 of the next: "A" then g-v for byte 2)
    head = name[_PREFIX + 1 : _PREFIX + 3]
    return len(name) > _PREFIX + 2 and name[_PREFIX] == _INLINE_SEP and head in _SEALED_HEAD


#: how the base64 of a sealed payload begins (byte 2, then any byte)
_SEALED_HEAD = frozenset(
    base64.urlsafe_b64encode(bytes([_SEALED_VERSION, b]))[:2].decode() for b in range(256)
)


def read_name(key: str, signing_key: bytes | None, seal_key: bytes | None = None) -> Post | None:
    """The post a key's name carries, authenticated; None when it carries none, or one this
    process cannot trust or read (damaged, forged, another format, not the canonical
    encoding, sealed with a key other than ``seal_key``, or sealed and no key): then the
    object's body is read instead, as for any post."""
    head, _, name = key.rpartition("/")
    if len(name) <= _PREFIX + 1 or name[_PREFIX] != _INLINE_SEP or identity(key) is None:
        return None
    prefix_key = f"{head}/{name[:_PREFIX]}"
    encoded = name[_PREFIX + 1 :]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) <= 32:
        return None
    payload, digest = raw[:-32], raw[-32:]
    if not hmac.compare_digest(digest, codec.digest(prefix_key, payload, signing_key)):
        return None
    if payload[0] == _SEALED_VERSION:
        # Sealed with our key (its id), or read from the body: another key's bytes would
        # unseal to noise, and noise must not get its one chance in many to parse.
        start = 1 + mailkey.KEY_ID_BYTES + mailkey.NONCE_BYTES
        if seal_key is None or len(payload) <= start:
            return None
        if payload[1 : 1 + mailkey.KEY_ID_BYTES] != mailkey.key_id(seal_key):
            return None
        payload = mailkey.seal(seal_key, payload[1 + mailkey.KEY_ID_BYTES : start], payload[start:])
    try:
        sender, seq, calls = _parse_payload(payload)
    except (_Malformed, UnicodeDecodeError):
        return None
    # One post, one name: a name that is not the canonical encoding of what it carries (other
    # base64 or varint spellings of the same bytes) is not read, so that a copy under such a
    # name cannot pass for another post.
    if _inline_payload(sender, seq, calls) != payload or (
        base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != encoded
    ):
        return None
    return Post(key, sender, seq, int(name[:_TIME_DIGITS], 32) / 1000, calls)


def bare(key: str) -> bool:
    """Whether ``key`` is a post's bare name (its prefix alone): a name that does not carry
    its post, which another sender's post may take again once this one was deleted."""
    return len(key.rpartition("/")[2]) == _PREFIX


def expired(post: Post, now: float) -> bool:
    """Too old to apply: its poster stopped waiting long ago, and its sender may have left the cursor."""
    return now - post.time > SENDER_TTL / 2


_COUNT = struct.Struct(">I")
_ID_LEN = struct.Struct(">I")
_VALUE_LEN = struct.Struct(">Q")


def encode_outcomes(outcomes: dict[str, Outcome]) -> bytes:
    """A step's outcomes, encoded per call: each pickled on its own, so that a result one process
    cannot load (its class is in a module only its caller's process has) fails the reads of
    that call's outcome alone. Layout: docs/protocol.md ("Step objects")."""
    out = bytearray(OUTCOMES_MAGIC)
    out += _COUNT.pack(len(outcomes))
    for call_id, o in outcomes.items():
        # An exception that would not load back (its __init__ does not take its args) is
        # recorded as a RecordedError naming it. (Results were read back already: they
        # travel by value.)
        ok, value = o.ok, o.value if o.ok else recorded_exception(o.value, "pickle")
        try:
            data = bytecode.dumps(value)
        except Exception:
            # One unpicklable result must not lose the others: record it as its repr.
            ok = False
            error = RuntimeError(f"the call's result could not be recorded: {safe_repr(value)}"[:500])
            data = bytecode.dumps(error)
        name = call_id.encode("utf-8", "surrogatepass")  # (ids vactor_cloud makes are hex)
        out += _ID_LEN.pack(len(name)) + name + bytes([ok]) + _VALUE_LEN.pack(len(data)) + data
    return bytes(out)


def legacy_outcomes(outcomes: dict[str, Outcome], limit: int) -> bytes:
    """``outcomes`` in the earlier encoding (one pickle of ``{call_id: (ok, value)}``), for a
    reader that knows only that (a process of an earlier release posting to the same actor):
    ``b""`` when it would be longer than ``limit`` bytes or a value does not pickle (such a
    reader then gets ``CommitOutcomeUnknownError``, as for a compacted step)."""
    rows = {
        call_id: (o.ok, o.value if o.ok else recorded_exception(o.value, "pickle"))
        for call_id, o in outcomes.items()
    }
    try:
        data = bytecode.dumps(rows)
    except Exception:
        return b""
    return data if len(data) <= limit else b""


class Outcomes(Mapping[str, Outcome]):
    """A step's outcomes (encoded per call) by call id, each unpickled when first read: a lookup of
    one call's outcome raises only if that outcome does not load here. ``in``, ``len`` and
    iteration load nothing."""

    __slots__ = ("_key", "_loaded", "_raw")

    def __init__(self, raw: dict[str, tuple[bool, bytes]], key: str = "outcomes") -> None:
        self._raw = raw
        self._key = key
        self._loaded: dict[str, Outcome] = {}

    def __getitem__(self, call_id: str) -> Outcome:
        found = self._loaded.get(call_id)
        if found is None:
            ok, data = self._raw[call_id]
            try:
                value = bytecode.loads(data)
            except (ImportError, AttributeError):
                raise  # its class is not here: that call's outcome alone does not load
            except Exception as exc:
                # Bytes that are no pickle (or that raise while loading; a KeyError would pass
                # for "no outcome for this call" with ``get``).
                raise IntegrityError(self._key, f"outcome of call {call_id!r}: {exc!r}") from exc
            found = self._loaded[call_id] = Outcome(ok, value)
        return found

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def decode_outcomes(data: bytes, key: str = "outcomes") -> Mapping[str, Outcome]:
    """A step's ``posted`` (or ``carried``) outcomes by call id. Encoded per call (:func:`encode_outcomes`):
    each outcome loads when it is read; as one pickle of ``{call_id: (ok, value)}``,
    written before) loads them all now, and fails whole. Malformed: ``IntegrityError`` (``key``:
    the step's)."""
    if not data:
        return {}
    if not data.startswith(OUTCOMES_MAGIC):
        try:
            rows = bytecode.loads(data)
        except (ImportError, AttributeError):
            raise  # a class not here: as before, the whole part does not load
        except Exception as exc:
            raise IntegrityError(key, f"malformed outcomes (one pickle): {exc!r}") from exc
        if not isinstance(rows, dict) or not all(
            isinstance(call_id, str) and isinstance(row, tuple) and len(row) == 2
            for call_id, row in rows.items()
        ):
            raise IntegrityError(key, "malformed outcomes (one pickle): not {call_id: (ok, value)}")
        return {call_id: Outcome(bool(ok), value) for call_id, (ok, value) in rows.items()}
    try:
        return Outcomes(_parse_outcomes(data), key)
    except (ValueError, struct.error) as exc:  # (UnicodeDecodeError is a ValueError)
        raise IntegrityError(key, f"malformed outcomes: {exc}") from None


def _parse_outcomes(data: bytes) -> dict[str, tuple[bool, bytes]]:
    """Outcomes encoded per call, by call id, their values still pickled. Every length is
    checked against what is left before anything is taken (no allocation beyond ``data``)."""
    pos = len(OUTCOMES_MAGIC)

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise ValueError("outcomes: truncated")
        pos += n
        return data[pos - n : pos]

    raw: dict[str, tuple[bool, bytes]] = {}
    (count,) = _COUNT.unpack(take(_COUNT.size))
    for _ in range(count):
        call_id = take(_ID_LEN.unpack(take(_ID_LEN.size))[0]).decode("utf-8", "surrogatepass")
        ok = take(1)[0]
        value = take(_VALUE_LEN.unpack(take(_VALUE_LEN.size))[0])
        if ok > 1 or call_id in raw:
            raise ValueError("outcomes: malformed")
        raw[call_id] = (bool(ok), value)
    if pos != len(data):
        raise ValueError("outcomes: trailing bytes")
    return raw


def _encode_post(key: str, post: Post, signing_key: bytes | None) -> bytes:
    meta: dict[str, Any] = {"kind": "post", "sender": post.sender, "seq": post.seq, "time": post.time}
    if any(c.for_class is not None for c in post.calls):
        # (in the meta, not the rows: a reader of an earlier release builds each call from a
        # row of 7 fields, and would find every post with an 8th malformed)
        meta["classes"] = [c.for_class for c in post.calls]
    calls = [
        (c.method, c.arguments, c.call_id, c.idempotency_key, c.name, c.metadata, c.max_retries)
        for c in post.calls
    ]
    body = bytecode.dumps(calls)
    return codec.encode(key, meta, {"calls": body}, signing_key=signing_key)


def _decode_post(key: str, data: bytes, signing_key: bytes | None) -> Post:
    env = codec.decode(key, data, signing_key=signing_key)
    meta = env.meta
    try:
        if meta.get("kind") != "post":
            raise ValueError(f"expected a post, found {meta.get('kind')!r}")
        rows = bytecode.loads(env.parts["calls"])
        classes = meta.get("classes", [None] * len(rows))
        if not isinstance(classes, list) or len(classes) != len(rows):
            raise ValueError(f"classes {classes!r} do not match the {len(rows)} calls")
        for tag in classes:
            if tag is not None and (not isinstance(tag, str) or _HEX_TAG.fullmatch(tag) is None):
                raise ValueError(f"class tag {tag!r} is not {2 * TAG_BYTES} hex digits")
        calls = tuple(_posted_call(row, tag) for row, tag in zip(rows, classes, strict=True))
        return Post(key, str(meta["sender"]), int(meta["seq"]), float(meta["time"]), calls)
    except Exception as exc:
        # Whatever stops the calls from loading here (a module this process lacks: ImportError,
        # AttributeError) makes the post unreadable, never a failure of the fold reading it.
        raise IntegrityError(key, f"malformed post: {exc!r}") from None


def _posted_call(row: Any, for_class: str | None) -> PostedCall:
    """A call from its row in a post's body (7 fields) and its class tag (from the meta)."""
    if not isinstance(row, tuple) or len(row) != 7:
        raise ValueError(f"a call's row has 7 fields, not {row!r}")
    method, arguments, call_id, idempotency_key, name, metadata, max_retries = row
    return PostedCall(method, arguments, call_id, idempotency_key, name, metadata, max_retries, for_class)


class PostSender:
    """Who posts, for every actor of one runtime (process): its sender id and post counter.

    The cursor names each sender for ``SENDER_TTL`` after its last post, in every step. A
    sender per actor core put a new one into an actor's cursor each time the process evicted
    the actor and loaded it again: with more contended actors than the cache holds, an entry
    per call for an hour. One per runtime: one entry per process. Its seqs are one counter
    for all actors (``next`` on a count is atomic), so an actor sees them rise with gaps, which
    ``applied`` (a comparison) does not mind. A later core of an evicted actor posts after the
    old one's pending post, if any: the runtime remembers it (``CombiningEnv.pending_posts``),
    and the new PostBox names its next post after it (``PostBox.follow``).
    """

    __slots__ = ("_counter", "id")

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:16]
        self._counter = itertools.count()

    def next_seq(self) -> int:
        return next(self._counter)


class PostBox:
    """One actor's posting side in this process: its sender id, and the posts it has read.

    Its state lives on the IO loop (its coroutines run there).
    """

    __slots__ = (
        "_deleted",
        "_deleting",
        "_doomed",
        "_known",
        "_lag",
        "_last_ms",
        "_lock",
        "_sender",
        "_seqs",
        "_sure",
        "_unsure",
        "actor_id",
        "mail",
        "names",
        "sender",
        "signing_key",
        "store",
        "unreadable",
    )

    def __init__(
        self,
        store: ObjectStore,
        actor_id: str,
        signing_key: bytes | None,
        *,
        names: bool = False,
        sender: PostSender | None = None,
    ) -> None:
        self.store = store
        #: our small posts carry themselves in their names, sealed (``Settings.post_names``);
        #: any process reads such names, whatever its own setting
        self.names = names
        #: the store's mail key, which seals them (loaded when first needed)
        self.mail = mailkey.mail_keys(store, signing_key)
        self.actor_id = actor_id
        self.signing_key = signing_key
        #: who posts (one per runtime: see PostSender), and its seqs
        self._seqs = sender if sender is not None else PostSender()
        self.sender = self._seqs.id
        #: the time part of our newest key: never smaller than the one before, whatever the clock does
        self._last_ms = 0
        #: how far our wall clock is known to run behind the writers of steps we read (``observe``)
        self._lag = 0.0
        #: posts read from storage, by key (posts are immutable)
        self._known: dict[str, Post] = {}
        #: deletes in flight (awaited at shutdown, so that a process leaves no applied post behind)
        self._deleting: set[asyncio.Task[Any]] = set()
        #: where the store deletes many keys in one request (S3): applied posts whose delete
        #: waits for the one in flight, and the task sending them (None: none in flight)
        self._doomed: list[str] = []
        self._sender: asyncio.Task[Any] | None = None
        #: keys whose reads failed their digest or did not decode: how many times in a row,
        #: and when (monotonic) the first of them failed
        self.unreadable: dict[str, tuple[int, float, float]] = {}
        #: keys this process is deleting (None) or deleted (when it finished, monotonic): left out
        #: of listings that may predate the delete, so that a fold does not read them again
        self._deleted: dict[str, float | None] = {}
        #: keys first seen by a listing that was no single moment (``listed_at_one_moment``), and
        #: when (monotonic) that listing ended: an earlier post of the same sender may have
        #: landed behind its cursor, unseen. Sure once a listing begun after that saw it again
        self._unsure: dict[str, float] = {}
        #: listed keys known to have been there for a whole listing (or seen at one moment)
        self._sure: set[str] = set()
        self._lock = threading.Lock()

    def prepare(self, calls: tuple[PostedCall, ...]) -> Post:
        """The next post of this sender (its key and seq fixed now, before any write)."""
        return self._named(self._seqs.next_seq(), calls)

    def follow(self, post: Post) -> None:
        """Our next post sorts after ``post``, an earlier one of our sender to this actor still
        pending. (Its PostBox may be another: the actor's core was evicted and loaded again
        since. A folder applies posts in key order and takes a sender's seq below one it
        applied for stale: named before it, our next post made it be deleted unapplied.)"""
        self._last_ms = max(self._last_ms, round(post.time * 1000))

    def observe(self, written: float, age: float) -> None:
        """A step we read was written at ``written`` by its writer's wall clock, and read (or
        known the newest) ``age`` seconds ago: that clock reads at least ``written + age`` now.

        Where ours reads less, our posts are named by that time instead. A folder deletes a
        post more than ``SENDER_TTL / 2`` older than its clock unapplied (expired), and a
        process whose clock ran 30 min behind the folders' had every post deleted so, its
        calls failing with ``CallPendingError`` although they never could apply. A post dated
        later than the poster's clock is as safe as one from a clock running ahead (the
        cursor entry takes the later time), and never later than the step writer's clock."""
        seen = written + age
        if not seen < _LATEST_NAMED:
            # Past what a name can spell (or not a number): no clock reads that; a malformed
            # step. Taken, it made every later post of ours fail (``int(inf)``) or wrapped
            # our names out of seq order.
            return
        self._lag = max(self._lag, seen - time.time())

    def _named(self, seq: int, calls: tuple[PostedCall, ...]) -> Post:
        now = time.time() + self._lag
        # Our posts must sort in seq order (a folder applies them in key order, and the
        # cursor passing seq s means every post of ours up to s was applied): a later
        # millisecond for each, whatever the clock does.
        self._last_ms = max(int(now * 1000), self._last_ms + 1)
        name = post_name(self._last_ms, secrets.randbits(15))
        # A small post carries itself in its name too: a folder learns it from the LIST.
        seal_key = self.mail.key
        if self.names and seal_key is not None:
            sender, signing_key = self.sender, self.signing_key
            name = inline_name(self.actor_id, name, sender, seq, calls, signing_key, seal_key) or name
        return Post(post_key(self.actor_id, name), self.sender, seq, self._last_ms / 1000, calls)

    async def send(self, post: Post) -> Post:
        """Write ``post`` (create-only; a lost response is resolved by reading the key back).
        Returns the post as written: under another name if its name was taken by another post.

        Raises :class:`PostInDoubtError` when it could not tell: the post may or may not
        exist then, under the name the error gives (the caller must treat it as written).
        """
        try:
            last: StorageError | None = None
            for attempt in range(5):
                data = _encode_post(post.key, post, self.signing_key)
                try:
                    await self.store.put(post.key, data, mode="create")
                    return post
                except AlreadyExistsError:
                    try:
                        landed = await self._landed(post)
                    except StorageError as exc:
                        last = exc  # whose it is, unknown: the next attempt asks again
                    else:
                        if landed:
                            return post  # an earlier attempt landed
                        # Another post's name (or ours, applied and deleted since: then the copy
                        # written under the new name is stale by the cursor, and never applied).
                        post = self._named(post.seq, post.calls)
                        continue
                except StorageError as exc:
                    last = exc
                with contextlib.suppress(StorageError):
                    if await self._landed(post):
                        return post
                await asyncio.sleep(0.01 * 2**attempt)
            assert last is not None
            raise last
        except Exception as exc:
            # Under the name tried last: an earlier one was another's post (or ours, gone). Any
            # error (a MemoryError in the client, a defect) may have come after the post landed:
            # its caller heard it bare, as for a call not applied, and a fold applied the post.
            raise PostInDoubtError(
                f"{post.key}: the post may or may not exist: {exc}", post.key, post
            ) from exc

    def send_now(self, post: Post) -> bool:
        """The first attempt of :meth:`send` on the calling thread (only where ``store.inline``):
        True when it wrote the post; False after any error (then :meth:`send` goes on: an
        attempt that landed after all is found by its read-back)."""
        try:
            self.store.put_now(post.key, _encode_post(post.key, post, self.signing_key), mode="create")
        except Exception:  # (not only a StorageError: see ``send``)
            return False
        return True

    async def _landed(self, post: Post) -> bool:
        """Whether the object at ``post.key`` is this post (not another's, nor none).

        A read that arrives damaged tells nothing: it is read again (a few times); still
        damaged, ``RetryableStorageError`` (unknown), not "not ours", on which the sender would
        write its post again under a new name: two copies of one post."""
        for attempt in range(_READ_BACKS):
            try:
                blob = await self.store.get(post.key)
            except NotFoundError:
                return False
            try:
                found = _decode_post(post.key, blob.data, self.signing_key)
            except IntegrityError as exc:
                if attempt == _READ_BACKS - 1:
                    raise RetryableStorageError(
                        f"{post.key}: reading our post back arrived damaged {_READ_BACKS} times ({exc})",
                        post.key,
                    ) from exc
                await asyncio.sleep(0.01 * 2**attempt)
                continue
            return found.sender == post.sender and found.seq == post.seq
        raise AssertionError("unreachable")

    async def keys(self) -> list[str]:
        """The keys of every post waiting now, oldest first (one LIST; and one GET of the
        mail key, once per process, when a sealed name is first listed)."""
        listed_at = time.monotonic()
        keys = await self.store.list(posts_prefix(self.actor_id))
        if self._wants_key(keys):
            await self.mail.load(create=False)
        return self._listed(keys, listed_at)

    def keys_now(self) -> list[str]:
        """:meth:`keys` on the calling thread (only where ``store.inline``)."""
        listed_at = time.monotonic()
        keys = self.store.list_now(posts_prefix(self.actor_id))
        if self._wants_key(keys):
            self.mail.load_now(create=False)
        return self._listed(keys, listed_at)

    def _wants_key(self, keys: list[str]) -> bool:
        return self.mail.key is None and any(sealed(k) and k not in self._known for k in keys)

    def _listed(self, keys: list[str], listed_at: float) -> list[str]:
        present = set(keys)
        ended = time.monotonic()
        one_moment = self.store.listed_at_one_moment(posts_prefix(self.actor_id), keys)
        with self._lock:  # (deletes finish on the IO loop; a fold may list on another thread)
            for gone in [k for k in self._known if k not in present]:
                del self._known[gone]
            self._sure &= present
            self._unsure = {k: t for k, t in self._unsure.items() if k in present}
            for key in keys:
                if key in self._sure:
                    continue
                first = self._unsure.get(key)
                if one_moment or (first is not None and first <= listed_at):
                    self._unsure.pop(key, None)
                    self._sure.add(key)
                elif first is None:
                    self._unsure[key] = ended
            self.unreadable = {k: n for k, n in self.unreadable.items() if k in present}
            if self._deleted:
                # Hidden while our delete of it is in flight, or finished after this listing began;
                # a key listed after that is there (a failed delete, or a new post of the name).
                hidden = {k for k, done in self._deleted.items() if done is None or done > listed_at}
                self._deleted = {k: self._deleted[k] for k in hidden}
                keys = [k for k in keys if k not in hidden]
        # Posts are immutable: one whose name carries it is known from now on (read with no GET).
        seal_key = self.mail.key
        learned = [
            (key, post)
            for key in keys
            if key not in self._known and (post := read_name(key, self.signing_key, seal_key)) is not None
        ]
        if learned:
            with self._lock:
                for key, post in learned:
                    if key not in self._deleted:
                        self._known[key] = post
        return keys

    async def flush(self) -> None:
        """Send the deletes still waiting and wait for those in flight (at shutdown)."""
        current = asyncio.current_task()
        with self._lock:
            doomed, self._doomed = self._doomed, []
        if doomed:
            await self._delete(doomed)
        await asyncio.gather(*(t for t in list(self._deleting) if t is not current), return_exceptions=True)

    def unsure(self, key: str) -> bool:
        """Whether the post at ``key`` was first seen by a listing that was no single moment and
        not since by a later one: its sender's earlier posts may exist unseen (it waits, and
        its sender's later posts behind it, for the next listing)."""
        return key in self._unsure

    def cached(self, key: str) -> Post | None:
        """The post at ``key`` if this process read it already."""
        return self._known.get(key)

    def forget(self, keys: list[str]) -> None:
        """Read the posts at ``keys`` again when next asked (what is there may be another post)."""
        with self._lock:
            for key in keys:
                self._known.pop(key, None)

    async def read(self, keys: list[str]) -> list[Post]:
        """The posts at ``keys`` still there, in key order (a GET per post not read before)."""
        gate = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def read(key: str) -> None:
            async with gate:
                try:
                    blob = await self.store.get(key)
                except NotFoundError:
                    return  # applied and deleted meanwhile
                except IntegrityError:
                    self._damaged(key)  # cut short of the store's header (a torn local write)
                    return
                self._learn(key, blob.data)

        await asyncio.gather(*(read(k) for k in keys if k not in self._known and not self.skipped(k)))
        return [self._known[k] for k in keys if k in self._known]

    def read_now(self, keys: list[str]) -> list[Post]:
        """:meth:`read` on the calling thread, one GET after the other (only where ``store.inline``)."""
        for key in keys:
            if key not in self._known and not self.skipped(key):
                try:
                    blob = self.store.get_now(key)
                except NotFoundError:
                    continue  # applied and deleted meanwhile
                except IntegrityError:
                    self._damaged(key)  # cut short of the store's header (a torn local write)
                    continue
                self._learn(key, blob.data)
        return [self._known[k] for k in keys if k in self._known]

    def _learn(self, key: str, data: bytes) -> None:
        try:
            post = _decode_post(key, data, self.signing_key)
        except IntegrityError:
            self._damaged(key)
            return
        with self._lock:
            self._known[key] = post
            self.unreadable.pop(key, None)

    def _damaged(self, key: str) -> None:
        """A read of ``key`` found it damaged: not applied while so; the fold stops at it for
        a while, then skips it."""
        now = time.monotonic()
        with self._lock:
            failed, since, _ = self.unreadable.get(key, (0, now, now))
            self.unreadable[key] = (failed + 1, since, now)

    def waits_for(self, key: str) -> bool:
        """Whether a fold stops at ``key``: its reads failed, but not yet often enough and
        for long enough to take it for damaged at rest or forged (then it is skipped). Both:
        at 30 % damaged reads in transit, three in a row happen to about one post in 37, and
        a post skipped so waited while its sender's later posts passed it."""
        with self._lock:
            failed, since, _ = self.unreadable.get(key, (0, 0.0, 0.0))
        return failed > 0 and (failed < DAMAGED_READS or time.monotonic() - since < DAMAGED_SECONDS)

    def skipped(self, key: str) -> bool:
        """Whether ``key`` is skipped now (damaged at rest or forged, see :meth:`waits_for`):
        read again only ``DAMAGED_SECONDS`` after its last failed read, not by every fold,
        and no work for an idle holder meanwhile. A clean read then applies it (a post
        damaged in transit every time until then); it is deleted unread once expired."""
        with self._lock:
            failed, since, last = self.unreadable.get(key, (0, 0.0, 0.0))
        now = time.monotonic()
        return failed >= DAMAGED_READS and now - since >= DAMAGED_SECONDS and now - last < DAMAGED_SECONDS

    def delete(self, keys: list[str]) -> Coroutine[Any, Any, None]:
        """Delete posts (applied, or found stale); a failure leaves them for the next fold.

        The keys are left out of listings from now on (this call, on the caller's thread),
        while the deletes run where the returned coroutine is awaited (in the background).
        """
        with self._lock:
            for key in keys:
                self._known.pop(key, None)
                self._deleted[key] = None
            self._doomed.extend(keys)
        return self._delete_soon()

    async def _delete_soon(self) -> None:
        """A fold's applied posts are deleted at once, and the folds that end while that request
        is in flight share the next one (where one request deletes many keys, S3; elsewhere one
        ``delete_many`` round of single-key requests is in flight per folder). (Not later:
        every listing of the mailbox returns the applied posts still there, which the server
        sends and the folder parses on its critical path: a LIST of 30 keys took twice as long
        as one of 5 on moto.)"""
        with self._lock:
            if self._sender is not None:
                return  # the task sending deletes sends these next
            sender = self._sender = asyncio.current_task()
        try:
            while True:
                with self._lock:
                    # At most one request's worth where a request deletes many (S3): more (queued
                    # while a request hung) would go as several requests at once, just as the
                    # endpoint recovers. Where each key is its own request (GCS, local), one
                    # ``delete_many`` round: every fold's own would put no bound on the requests
                    # in flight, each holding a connection the commits need.
                    size = self.store.delete_batch
                    if size <= 1:
                        size = max(1, self.store.delete_parallel)
                    doomed, self._doomed = self._doomed[:size], self._doomed[size:]
                    if not doomed:
                        self._sender = None
                        return
                await self._delete(doomed)
        finally:
            with self._lock:
                if self._sender is sender:
                    self._sender = None  # (cancelled: flush sends what is left)

    async def _delete(self, keys: list[str]) -> None:
        task = asyncio.current_task()
        if task is not None and task not in self._deleting:
            # Once per task: the sender of ``_delete_soon`` sends request after request while
            # folds keep ending, and a callback per request grew its list for as long.
            self._deleting.add(task)
            task.add_done_callback(self._deleting.discard)

        try:
            # One request for all of them where the store has a batch delete (S3). A failure
            # may leave some in place: the next fold lists them and deletes them as stale.
            with contextlib.suppress(StorageError):
                await self.store.delete_many(keys)
        finally:
            done = time.monotonic()
            with self._lock:
                for key in keys:
                    if key in self._deleted:
                        self._deleted[key] = done
