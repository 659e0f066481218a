"""Timer runners' heartbeats and claims as stored, and as read back.

A runner's heartbeat (:mod:`vactor_cloud.timer_membership`) and its claim on an actor
(:mod:`vactor_cloud.timer_claims`) are small objects holding an expiry: plain JSON, or
with a signing key an envelope signed for its own key (:func:`encode_hint`), so that one
forged or copied from another key counts for nothing. :func:`read_hint` reads one
(again, if a read was cut short on the way); :func:`still_torn` tells whether one that
every read found torn still is.
"""

from __future__ import annotations

import json
from typing import Any

from vactor_cloud import codec
from vactor_cloud.checked_read import read_checked
from vactor_cloud.errors import (
    DamagedObjectError,
    IntegrityError,
    TruncatedObjectError,
)
from vactor_cloud.storage import Blob, ObjectStore

__all__ = ["decode_hint", "encode_hint", "read_hint", "still_torn"]


# -- heartbeats and claims as stored ---------------------------------------------------------------
def encode_hint(key: str, kind: str, body: dict[str, Any], signing_key: bytes | None) -> bytes:
    """A heartbeat or claim as stored: plain JSON, or with a signing key an envelope signed for
    ``key`` (``meta``: ``kind`` and ``body``), so that one forged or copied from another key
    is not believed."""
    if signing_key is None:
        return json.dumps(body).encode()
    return codec.encode(key, {"kind": kind, **body}, signing_key=signing_key)


def decode_hint(key: str, kind: str, data: bytes, signing_key: bytes | None) -> dict[str, Any]:
    """What :func:`encode_hint` wrote at ``key``; ``ValueError`` for anything else: with a
    signing key, an unsigned one (forged, or plain JSON of a release before it signed them),
    one signed for another key or with another key, or one of another kind."""
    if signing_key is None:
        body = json.loads(data)
    else:
        try:
            body = codec.decode(key, data, signing_key=signing_key).meta
        except IntegrityError as exc:
            raise ValueError(str(exc)) from exc
        if body.get("kind") != kind:
            raise ValueError(f"{key}: holds a {body.get('kind')!r} object, not a {kind!r}")
    if not isinstance(body, dict):
        raise ValueError(f"{key}: not a JSON object")
    return body


async def read_hint(
    store: ObjectStore, key: str, kind: str, signing_key: bytes | None
) -> tuple[Blob, dict[str, Any] | None, ValueError | DamagedObjectError | None]:
    """The heartbeat or claim at ``key`` as read, what it holds, and why not (what holds
    None: unreadable, never a live runner or claim). Read again first if it fails as a read
    cut short on the way would (``read_checked``): a live one read so was taken for
    unreadable, a claim taken from the runner holding it, a runner counted dead for a lease."""
    seen: list[Blob] = []

    def hint(blob: Blob) -> dict[str, Any]:
        seen.append(blob)
        try:
            return decode_hint(key, kind, blob.data, signing_key)
        except ValueError as exc:
            if isinstance(exc.__cause__, DamagedObjectError):  # (signed: its digest)
                raise exc.__cause__ from None
            if isinstance(exc, json.JSONDecodeError):  # (plain: a whole one always parses)
                raise DamagedObjectError(key, str(exc)) from exc
            raise

    try:
        held = await read_checked(store, key, hint)
    except (DamagedObjectError, ValueError) as exc:
        return seen[-1], None, exc
    return seen[-1], held, None


async def still_torn(store: ObjectStore, key: str) -> bool | None:
    """After every read of ``key`` found it torn: whether it still is (one HEAD). True: torn
    at rest (a local store's file cut by a crash: no version); False: whole now (written
    again since the reads, or whole at rest and only its reads were cut on the way); None:
    gone."""
    try:
        version = await store.head(key)
    except TruncatedObjectError:
        return True
    return None if version is None else False
