"""The envelope refuses what does not add up, whatever its digest says (review h139).

A mutation sweep of ``codec.py`` (review h139) let these through: the digest of an
unsigned object is a plain SHA-256, which anyone writing the bucket can compute, so an object
whose checksum holds may still be malformed (part lengths that overrun the body or stop short
of it), and the checks after the digest are the ones that refuse it. Each test names the
mutation it kills. Two more state at the codec what the sweep found held only by tests through
a runtime (``test_integrity``, ``test_signing``): every single-bit flip is refused (the digest
covers the header), and a signature binds an object to its key where no actor id does.
"""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from vactor_cloud import codec
from vactor_cloud.errors import FormatVersionError, IntegrityError

KEY = "actors/abc/steps/00000000000000000001"
SIGNING_KEY = b"correct horse battery staple"


def _object(meta: dict[str, object], body: bytes, *, version: int = 1, flags: int = 0) -> bytes:
    """An envelope built by hand, ``body`` after the meta as is, with a valid (unsigned) digest."""
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    head = struct.pack(">4sHHI", b"VACT", version, flags, len(meta_bytes)) + meta_bytes + body
    return head + hashlib.sha256(head).digest()


def test_a_well_formed_hand_made_object_decodes() -> None:
    """The premise of the tests below: ``_object`` builds what ``encode`` does."""
    data = _object({"actor": "abc", "parts": [["state", 3]]}, b"xyz")
    assert data == codec.encode(KEY, {}, {"state": b"xyz"})
    assert codec.decode(KEY, data).parts == {"state": b"xyz"}


def test_parts_shorter_than_the_body_are_refused() -> None:
    """Killed mutation: ``offset != len(body)`` as ``offset > len(body)`` (trailing bytes read as
    nothing: an object carrying more than it says, say a part its reader never sees)."""
    data = _object({"actor": "abc", "parts": [["state", 3]]}, b"xyz" + b"hidden")
    with pytest.raises(IntegrityError, match="part lengths"):
        codec.decode(KEY, data)


def test_parts_longer_than_the_body_are_refused() -> None:
    """Killed mutation: ``offset != len(body)`` as ``offset < len(body)`` (a slice past the end
    is silently short: a part cut short would be returned as whole)."""
    data = _object({"actor": "abc", "parts": [["state", 10]]}, b"xyz")
    with pytest.raises(IntegrityError, match="part lengths"):
        codec.decode(KEY, data)


def test_every_single_bit_flip_is_refused() -> None:
    """The digest covers the header too (also killed by ``test_integrity``: the digest over
    the meta and parts only, encode and decode alike, let a flip of the format version pass)."""
    data = codec.encode(KEY, {"writer": "w"}, {"state": b"state bytes"})
    for at in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[at] ^= 1 << bit
            with pytest.raises(IntegrityError) as caught:
                codec.decode(KEY, bytes(flipped))
            assert not isinstance(caught.value, FormatVersionError), (at, bit, caught.value)


def test_a_signed_object_does_not_verify_under_another_key_outside_actors() -> None:
    """The HMAC covers the object's key (also killed by ``test_signing``'s replayed step).
    Outside ``actors/`` no actor is recorded in the meta: only the signature binds the two."""
    data = codec.encode("runners/a", {"x": 1}, {"p": b"1"}, signing_key=SIGNING_KEY)
    assert codec.decode("runners/a", data, signing_key=SIGNING_KEY).meta["x"] == 1
    with pytest.raises(IntegrityError, match="signature mismatch"):
        codec.decode("runners/b", data, signing_key=SIGNING_KEY)


def test_an_object_of_another_format_family_is_refused_by_its_magic() -> None:
    """Killed mutation: the magic unchecked (an object whose digest holds, as a plain SHA-256
    always can, but which is no vactor_cloud object, was read as one)."""
    data = _object({"actor": "abc", "parts": [["state", 3]]}, b"xyz")
    other = b"ZARR" + data[4:-32]
    other += hashlib.sha256(other).digest()
    with pytest.raises(IntegrityError, match="bad magic"):
        codec.decode(KEY, other)
