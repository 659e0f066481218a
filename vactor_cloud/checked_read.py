"""Reading an object and checking it, read again when it fails as a body cut short would.

A GET whose body ended early where nothing in HTTP said so (an S3-compatible endpoint or a
proxy that sends neither ``Content-Length`` nor a checksum, and closes the connection early)
hands over a part of the object as if it were the whole; so does a body damaged on the way.
The envelope's digest (:mod:`vactor_cloud.codec`) refuses such a part
(:class:`DamagedObjectError`) as it refuses an object damaged at rest or forged, and only
reading again tells the two apart: the object is not corrupt, the read was.

So a read whose check fails so is repeated, as a fresh GET, until it has been read
:data:`READS` times in all, within whatever deadline the caller runs under. An object that
fails every time (damaged at rest, forged, signed with another key) is still refused, after
two more GETs, and its error says how often it was read. A read that passes is one GET.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from vactor_cloud import codec
from vactor_cloud.errors import DamagedObjectError, IntegrityError, TruncatedObjectError
from vactor_cloud.storage import Blob, ObjectStore

__all__ = ["READS", "read_checked", "read_checked_now", "read_envelope"]

T = TypeVar("T")
#: how many times an object is read (GETs) before bytes that do not verify are its own
READS = 3
#: the failures a read cut short or damaged on the way gives too (the store's own
#: ``TruncatedObjectError``: shorter than its write token, as the start of a body cut short is)
_MAY_BE_THE_WAY: tuple[type[IntegrityError], ...] = (DamagedObjectError, TruncatedObjectError)


async def read_checked(store: ObjectStore, key: str, check: Callable[[Blob], T]) -> T:
    """``check`` of the object at ``key``: GET it again (no pause: the failure was the
    transport's or is the object's, and a pause helps neither) while ``check`` or the store
    raises :class:`DamagedObjectError` or :class:`TruncatedObjectError`, :data:`READS` GETs in
    all; then that error, saying so. Any other error of ``check`` or the store at once
    (``NotFoundError``: deleted meanwhile)."""
    failures: list[IntegrityError] = []
    while True:
        try:
            return check(await store.get(key))
        except _MAY_BE_THE_WAY as exc:
            failures.append(exc)
            if len(failures) >= READS:
                raise read_every_time(failures) from exc


async def read_envelope(store: ObjectStore, key: str, signing_key: bytes | None) -> codec.Envelope:
    """The envelope of the object at ``key`` (:func:`codec.decode`), by :func:`read_checked`."""
    return await read_checked(store, key, lambda blob: codec.decode(key, blob.data, signing_key=signing_key))


def read_checked_now(store: ObjectStore, key: str, check: Callable[[Blob], T]) -> T:
    """:func:`read_checked` on the calling thread, by ``store.get_now`` (only where ``store.inline``)."""
    failures: list[IntegrityError] = []
    while True:
        try:
            return check(store.get_now(key))
        except _MAY_BE_THE_WAY as exc:
            failures.append(exc)
            if len(failures) >= READS:
                raise read_every_time(failures) from exc


def read_every_time(failures: list[IntegrityError]) -> IntegrityError:
    """The error of an object whose every read failed (``failures``, in order): the last,
    of the same type (what callers catch), saying it was read so often."""
    last = failures[-1]
    reasons = [_reason(exc) for exc in failures]
    alike = "the same each time" if len(set(reasons)) == 1 else f"each time (first: {reasons[0]})"
    note = (
        f" (read {len(failures)} times, failing {alike}: the object is so as stored, "
        "not a read cut short on the way)"
    )
    if isinstance(last, TruncatedObjectError):  # also a StorageError: keep what callers catch
        return TruncatedObjectError(f"{last}{note}", last.key)
    return DamagedObjectError(last.key, f"{last.reason}{note}")


def _reason(exc: IntegrityError) -> str:
    return str(exc) if isinstance(exc, TruncatedObjectError) else exc.reason
