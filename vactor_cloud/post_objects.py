"""Posts as objects on the store: a post's calls (:class:`PostedCall`, :class:`Post`), its
name (:func:`post_name`), the post a small one's name carries (:func:`inline_name`,
:func:`read_name`) and its body (:func:`encode_post`, :func:`decode_post`).
:class:`~vactor_cloud.posting.PostBox` writes, lists, reads and deletes them.

Object layout::

    actors/<id>/mail/<name>   one batch of calls, create-only; name = 9 base-32 digits of
                              the time in ms, then 3 random ones (short: cheap on the local store);
                              a small post's name goes on with "." and the post itself
                              (base64url, authenticated): a folder learns it from the LIST, no GET
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from vactor_cloud import bytecode, codec, mailkey
from vactor_cloud.class_tag import TAG_BYTES
from vactor_cloud.errors import IntegrityError
from vactor_cloud.keys import post_key

__all__ = [
    "INLINE_NAME_LIMIT",
    "LATEST_NAMED",
    "Post",
    "PostedCall",
    "bare",
    "decode_post",
    "encode_post",
    "identity",
    "inline_name",
    "post_name",
    "read_name",
    "sealed",
]


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


# (pickled with a PostInDoubtError, which a method's stored outcome may hold, by the name other
# modules import them by: ``vactor_cloud.posting`` holds both, and readers of every version find
# them there; set after the class is made, as dataclass looks its annotations up in __module__)
PostedCall.__module__ = Post.__module__ = "vactor_cloud.posting"


#: the digits of post names: base 32, in byte order
_DIGITS = "0123456789abcdefghijklmnopqrstuv"
_TIME_DIGITS = 9  # 45 bits of milliseconds: until the year 3084
_RANDOM_DIGITS = 3
#: the latest time (seconds) a post's name can spell, less a day of margin
LATEST_NAMED = (1 << (5 * _TIME_DIGITS)) / 1000 - 86400.0


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


def encode_post(key: str, post: Post, signing_key: bytes | None) -> bytes:
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


def decode_post(key: str, data: bytes, signing_key: bytes | None) -> Post:
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
