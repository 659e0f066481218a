"""The envelope every object is wrapped in (protocol.md, "Envelope")."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"VACT"
KNOWN_VERSIONS = (1, 2, 3)
SIGNED = 1
DIGEST = 32


class Refused(Exception):
    """An object this implementation must not use (the library's ``IntegrityError``)."""


class Newer(Refused):
    """An object of a format version above the ones known ("upgrade")."""


@dataclass
class Object:
    meta: dict[str, Any]
    parts: dict[str, bytes]
    version: int


def _digest(key: str, body: bytes, signing_key: bytes | None) -> bytes:
    if signing_key is None:
        return hashlib.sha256(body).digest()
    return hmac.new(signing_key, key.encode() + b"\0" + body, hashlib.sha256).digest()


def encode(
    key: str,
    meta: dict[str, Any],
    parts: dict[str, bytes],
    *,
    version: int = 1,
    signing_key: bytes | None = None,
) -> bytes:
    meta = {**meta, "parts": [[name, len(data)] for name, data in parts.items()]}
    meta_bytes = json.dumps(meta).encode()
    flags = SIGNED if signing_key is not None else 0
    body = (
        MAGIC + struct.pack(">HHI", version, flags, len(meta_bytes)) + meta_bytes + b"".join(parts.values())
    )
    return body + _digest(key, body, signing_key)


def actor_of(key: str) -> str | None:
    return key.split("/")[1] if key.startswith("actors/") else None


def decode(key: str, data: bytes, *, signing_key: bytes | None = None) -> Object:
    """Check magic, lengths and digest before parsing anything; then the ``actor`` field."""
    if len(data) < 12 + DIGEST or data[:4] != MAGIC:
        raise Refused(f"{key}: no envelope")
    version, flags, meta_len = struct.unpack(">HHI", data[4:12])
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if 12 + meta_len > len(body):
        raise Refused(f"{key}: meta runs past the object")
    signed = bool(flags & SIGNED)
    if signed and signing_key is None:
        raise (Newer if version not in KNOWN_VERSIONS else Refused)(f"{key}: signed, and no key")
    if not signed and signing_key is not None:
        raise Refused(f"{key}: unsigned, and a key is configured")
    if not hmac.compare_digest(digest, _digest(key, body, signing_key)):
        raise Refused(f"{key}: digest")
    if version not in KNOWN_VERSIONS:
        raise Newer(f"{key}: format {version}: upgrade")
    meta = json.loads(body[12 : 12 + meta_len])
    parts, offset = {}, 12 + meta_len
    for name, length in meta["parts"]:
        parts[name] = body[offset : offset + length]
        offset += length
    if offset != len(body):
        raise Refused(f"{key}: parts do not add up")
    if "actor" in meta and meta["actor"] != actor_of(key):
        raise Refused(f"{key}: written for actor {meta['actor']!r}")
    return Object(meta, parts, version)
