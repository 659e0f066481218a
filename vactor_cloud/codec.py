"""The envelope every object vactor_cloud writes is wrapped in.

Layout (all integers big-endian)::

    b"VACT" | format: u16 | flags: u16 | meta_len: u32 | meta (UTF-8 JSON) | parts ... | digest (32 bytes)

``meta["parts"]`` lists ``[name, length]`` of the binary parts that follow the
meta, in order. ``digest`` is SHA-256 over everything before it, or, when the
object is signed (flag bit 0, the only flag this library sets), HMAC-SHA256 with the signing key over the
object's key, a NUL byte, and everything before the digest, so a signed
object cannot be replayed under another key.

An object under ``actors/<id>/`` records ``meta["actor"] = "<id>"``, and decoding
refuses one whose recorded actor is not its key's: without a signing key the
digest covers the bytes, not the key, so this is what refuses an object copied
from one actor's keys to another's (a ``gc``, ``HEAD``, checkpoint, post,
event...). Objects written before it was recorded carry none and are read as
before. It catches mistakes, not forgeries: only signing authenticates.

Decoding checks magic, format version, flags, lengths and the digest *before*
anything is parsed further, so corrupt, truncated, unsigned or foreign
objects are refused without ever being unpickled. A format above
:data:`FORMAT_VERSION`, or a flag bit other than bit 0, is a newer writer's:
refused ("upgrade"), not misread; format 0 was never written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vactor_cloud.errors import DamagedObjectError, FormatVersionError, IntegrityError
from vactor_cloud.keys import actor_id_of

__all__ = ["FORMAT_VERSION", "Envelope", "decode", "digest", "encode"]

#: the newest format this version reads. Objects are written in the oldest format that can
#: hold them (1), so older readers keep reading everything but steps whose idempotency
#: table is a delta on a checkpoint object (2), and checkpoints that name outcome objects
#: and those objects (3), which they refuse instead of misreading.
FORMAT_VERSION = 3
_MAGIC = b"VACT"
_HEADER = struct.Struct(">4sHHI")
_DIGEST = 32
_SIGNED = 0x1


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded object: its JSON metadata and its named binary parts."""

    meta: dict[str, Any]
    parts: dict[str, bytes]


#: what ``json.dumps(meta, separators=(",", ":"), ensure_ascii=False)`` builds on every call
_META_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def digest(key: str, body: bytes | memoryview, signing_key: bytes | None) -> bytes:
    """An envelope's digest of ``body``: SHA-256, or with a signing key an HMAC bound to ``key``."""
    return _digest_of(key, (body,), signing_key)


def _digest_of(key: str, pieces: Iterable[bytes | memoryview], signing_key: bytes | None) -> bytes:
    """:func:`digest` of the concatenation of ``pieces``, without making it."""
    mac: Any = (
        hashlib.sha256()
        if signing_key is None
        else hmac.new(signing_key, key.encode("utf-8") + b"\0", hashlib.sha256)
    )
    for piece in pieces:
        mac.update(piece)
    return bytes(mac.digest())


def encode(
    key: str,
    meta: Mapping[str, Any],
    parts: Mapping[str, bytes] | None = None,
    *,
    signing_key: bytes | None = None,
    version: int = 1,
) -> bytes:
    """Wrap ``meta`` and ``parts`` for ``key`` in format ``version``; signed when ``signing_key`` is given."""
    parts = parts or {}
    full_meta = dict(meta)
    # Whose object it is: an unsigned digest covers the bytes, not the key (see decode).
    actor = actor_id_of(key)
    if actor is not None and full_meta.setdefault("actor", actor) != actor:
        raise ValueError(f"{key}: meta names actor {full_meta['actor']!r}, not the key's {actor!r}")
    full_meta["parts"] = [[name, len(data)] for name, data in parts.items()]
    meta_bytes = _META_ENCODER.encode(full_meta).encode("utf-8")
    flags = _SIGNED if signing_key is not None else 0
    # One copy of the parts (a state may be hundreds of MB): digested piece by piece, then
    # joined once with the digest, not joined and then copied again to append it.
    pieces = [_HEADER.pack(_MAGIC, version, flags, len(meta_bytes)), meta_bytes, *parts.values()]
    return b"".join([*pieces, _digest_of(key, pieces, signing_key)])


def _folded(actor_id: str) -> str:
    """``actor_id`` as a case-insensitive, normalizing file system compares names."""
    return unicodedata.normalize("NFD", actor_id).casefold()


def decode(key: str, data: bytes, *, signing_key: bytes | None = None) -> Envelope:
    """Check and unwrap an object read from ``key``.

    Raises :class:`IntegrityError` (naming ``key``) for anything corrupt,
    truncated, unsigned when a signing key is configured, or signed with
    another key, or in format 0 (none writes it); :class:`FormatVersionError` for a newer
    format or a flag bit this version does not know (a newer writer's). Bytes that fail
    the length or digest check raise its :class:`DamagedObjectError`, the one
    failure a body cut short or damaged on the way also gives (read it again:
    :mod:`vactor_cloud.checked_read`).
    """
    if len(data) < _HEADER.size + _DIGEST:
        raise DamagedObjectError(key, f"truncated object ({len(data)} bytes)")
    magic, version, flags, meta_len = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise IntegrityError(key, "not a vactor_cloud object (bad magic)")
    # A view, not a slice: a slice of a large object would copy it (its parts are copied once, below).
    whole = memoryview(data)
    body, stored = whole[:-_DIGEST], bytes(whole[-_DIGEST:])
    signed = bool(flags & _SIGNED)
    # Whatever format the header names: unchecked, it may be damaged or forged (an unsigned
    # object claiming a newer format must not pass for one where every object is signed),
    # and a newer vactor_cloud without the key would not read a signed object either.
    if signing_key is not None and not signed:
        raise IntegrityError(key, "object is not signed, but a signing key is configured; refused")
    if signing_key is None and signed:
        raise IntegrityError(
            key, "object is signed; pass signing_key= to init() or set $VACTOR_SIGNING_KEY to read it"
        )
    # A flag bit this reader does not know is a meaning a newer writer gave the object (this
    # library sets bit 0 alone): read as if unset, the object would be misread.
    unknown = flags & ~_SIGNED
    if version > FORMAT_VERSION or unknown:
        newer = f"format {version}" if version > FORMAT_VERSION else f"flag bits 0x{unknown:04x}"
        # Every format ends with this digest of the body, so a newer object verifies and a
        # damaged header does not: a version byte damaged in transit is not "upgrade" (a HEAD
        # in a newer format must not be overwritten; a damaged one is repaired).
        if not hmac.compare_digest(stored, digest(key, body, signing_key)):
            raise DamagedObjectError(
                key, f"checksum mismatch: the object is corrupt (its header names {newer})"
            )
        written = (
            f"written in storage format {version}, this vactor_cloud reads up to {FORMAT_VERSION}"
            if version > FORMAT_VERSION
            else f"its header sets flag bits 0x{unknown:04x}, which this vactor_cloud does not know "
            "(a newer one wrote it)"
        )
        raise FormatVersionError(key, f"{written}: upgrade vactor_cloud (pip install -U vactor_cloud)")
    if not hmac.compare_digest(stored, digest(key, body, signing_key)):
        what = "signature" if signed else "checksum"
        raise DamagedObjectError(
            key, f"{what} mismatch: the object is corrupt, was altered, or uses another key"
        )
    if version == 0:
        # (verified: not a version field damaged on the way, but bytes no vactor_cloud wrote)
        raise IntegrityError(
            key, "its header names storage format 0, which no vactor_cloud writes (formats start at 1)"
        )
    end = _HEADER.size + meta_len
    if end > len(body):
        raise IntegrityError(key, "truncated metadata")
    try:
        meta = json.loads(str(body[_HEADER.size : end], "utf-8"))
        if not isinstance(meta, dict):
            raise TypeError(f"metadata is a JSON {type(meta).__name__}, not an object")
        layout = [(str(name), int(size)) for name, size in meta.pop("parts")]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise IntegrityError(key, f"unreadable metadata: {exc}") from None
    # A signature covers the key; a plain checksum does not, so an object copied from another
    # actor's keys would verify here. Objects written before they recorded it carry none.
    owner = meta.get("actor")
    if owner is not None and owner != actor_id_of(key):
        here = actor_id_of(key)
        where = f"not {here!r}" if here is not None else "read from a key outside actors/"
        if here is not None and isinstance(owner, str) and _folded(owner) == _folded(here):
            raise IntegrityError(
                key,
                f"belongs to actor {owner!r}, {where}: the two ids differ only in case or Unicode "
                "form, which this store's file system does not tell apart (case-insensitive or "
                "normalizing, as macOS's is): they are two actors, and cannot both be stored here; "
                "use another id, or a store on a case-sensitive file system",
            )
        raise IntegrityError(
            key,
            f"belongs to actor {owner!r}, {where}: an object copied from another actor's keys "
            "is not this actor's",
        )
    parts: dict[str, bytes] = {}
    offset = end
    for name, size in layout:
        parts[name] = bytes(body[offset : offset + size])
        offset += size
    if offset != len(body):
        raise IntegrityError(key, "part lengths do not match the object size")
    return Envelope(meta, parts)
