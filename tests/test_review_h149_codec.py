"""What the envelope's header may name that no vactor_cloud of this version wrote (review h149).

``decode`` read an object whose header named format 0 (never written: formats start at 1) as a
format-1 one, and ignored every flag bit but bit 0 (signed). A flag bit this reader does not
know is a meaning a newer writer gave the object (a compressed body, say): read as if unset, the
object is misread, not refused. Such an object is refused as a newer format is: "upgrade", when
its digest verifies (else it is damaged, as a damaged version field is).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct

import pytest

from vactor_cloud import codec
from vactor_cloud.errors import DamagedObjectError, FormatVersionError, IntegrityError

KEY = "actors/abc/steps/00000000000000000001"
SIGNING_KEY = b"correct horse battery staple"


def _object(*, version: int = 1, flags: int = 0, signing_key: bytes | None = None) -> bytes:
    """A well-formed envelope built by hand with this header, its digest valid."""
    meta_bytes = json.dumps({"actor": "abc", "parts": [["state", 3]]}, separators=(",", ":")).encode()
    head = struct.pack(">4sHHI", b"VACT", version, flags, len(meta_bytes)) + meta_bytes + b"xyz"
    if signing_key is None:
        return head + hashlib.sha256(head).digest()
    return head + hmac.new(signing_key, KEY.encode() + b"\0" + head, hashlib.sha256).digest()


def test_the_hand_made_object_decodes_as_encode_writes_it() -> None:
    """The premise: ``_object`` builds what ``encode`` does, signed and not."""
    assert _object() == codec.encode(KEY, {}, {"state": b"xyz"})
    signed = _object(flags=1, signing_key=SIGNING_KEY)
    assert signed == codec.encode(KEY, {}, {"state": b"xyz"}, signing_key=SIGNING_KEY)
    assert codec.decode(KEY, signed, signing_key=SIGNING_KEY).parts == {"state": b"xyz"}


def test_format_zero_is_refused_as_no_format_vactor_cloud_writes() -> None:
    """Before: decoded as format 1. Not ``FormatVersionError``: no upgrade reads it."""
    with pytest.raises(IntegrityError, match="format 0") as info:
        codec.decode(KEY, _object(version=0))
    assert not isinstance(info.value, FormatVersionError)
    assert "upgrade" not in str(info.value)


@pytest.mark.parametrize("bit", [1, 2, 7, 15])
def test_an_unknown_flag_bit_is_refused_as_a_newer_writers_saying_upgrade(bit: int) -> None:
    """Before: decoded as if the bit were unset."""
    with pytest.raises(FormatVersionError, match="upgrade") as info:
        codec.decode(KEY, _object(flags=1 << bit))
    assert f"0x{1 << bit:04x}" in str(info.value), info.value


def test_an_unknown_flag_bit_on_a_signed_object_is_refused_saying_upgrade() -> None:
    data = _object(flags=0x1 | 0x4, signing_key=SIGNING_KEY)
    with pytest.raises(FormatVersionError, match="upgrade"):
        codec.decode(KEY, data, signing_key=SIGNING_KEY)


def test_an_unknown_flag_bit_whose_digest_does_not_verify_is_damage_not_upgrade() -> None:
    """As for a version: a bit flipped on the way is not a newer writer's."""
    data = bytearray(_object())
    data[7] |= 0x2  # (flags' low byte: bit 1 set after the digest was computed)
    with pytest.raises(DamagedObjectError, match="checksum mismatch"):
        codec.decode(KEY, bytes(data))


def test_nothing_this_library_writes_sets_a_flag_bit_but_signed() -> None:
    """What the readers above refuse is never written here: encode sets bit 0 or nothing."""
    for signing_key, flags in ((None, 0), (SIGNING_KEY, 1)):
        for version in (1, 2, 3):
            data = codec.encode(KEY, {"k": 1}, {"p": b"x"}, signing_key=signing_key, version=version)
            assert struct.unpack_from(">4sHH", data)[1:] == (version, flags)
            assert codec.decode(KEY, data, signing_key=signing_key).parts == {"p": b"x"}


def test_a_signed_object_of_a_newer_format_read_without_the_key_asks_for_the_key() -> None:
    """What docs/protocol.md says of it (it said "reported as upgrade"; the reader asks for the
    key first: unverified, its header may be forged)."""
    data = _object(version=codec.FORMAT_VERSION + 1, flags=1, signing_key=SIGNING_KEY)
    with pytest.raises(IntegrityError, match="pass signing_key=") as info:
        codec.decode(KEY, data)
    assert not isinstance(info.value, FormatVersionError)
    with pytest.raises(FormatVersionError, match="upgrade"):
        codec.decode(KEY, data, signing_key=SIGNING_KEY)
