"""The advisory folder lease of a contended actor: who folds the posted calls (a hint, never the truth).

Under contention (``vactor_cloud.posting``) one process at a time should fold:
the others post their calls and wait instead of racing it for every step.
The lease says who that is::

    actors/<id>/lease    meta {"kind": "lease", "holder": <sender>, "expires": <wall s>,
                               "step": <N>, "token": <hex>, "time": <wall s>}

written with create-only (absent) or if-match (present) puts, so that of two
processes taking an expired lease at once exactly one succeeds, and a holder's
renewal fails once someone else took it over. ``expires == 0`` is a released
lease. ``step`` is the newest step the writer knew (for diagnostics).

**Exactly-once never depends on it.** Two processes that both believe they
hold the lease (a renewal that stalled past expiry, skewed clocks) each still
commit with a create-only put of ``steps/N+1`` and fold by the post cursor:
one wins each step, the other loses the race and catches up, as without a
lease. The lease only decides who *tries*.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

from vactor_cloud import codec
from vactor_cloud.checked_read import read_checked
from vactor_cloud.errors import (
    AlreadyExistsError,
    DamagedObjectError,
    FormatVersionError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
)
from vactor_cloud.keys import lease_key
from vactor_cloud.storage import Blob, IfMatch, ObjectStore, PutMode

__all__ = ["CLOCK_SKEW", "LONGEST_LEASE", "Lease", "LeaseStore", "expiry_too_far_ahead"]

logger = logging.getLogger("vactor_cloud")

#: How far (seconds) the clocks of processes sharing a store may run apart. An expiry another
#: process wrote (this lease; a timer runner's heartbeat or claim) further ahead of this clock
#: than the lease's length and this is taken for an expired one: its writer's clock ran ahead,
#: or the object is forged, and believed, it held for as long as it said.
CLOCK_SKEW = 300.0
#: the longest lease such an object may declare for that bound (a longer one counts as this)
LONGEST_LEASE = 3600.0


def expiry_too_far_ahead(until: float, now: float, length: float, what: str) -> bool:
    """Whether expiry ``until`` lies further ahead of ``now`` than a lease of ``length`` seconds
    and :data:`CLOCK_SKEW` allow; then it is to be taken for an expired one (a warning says so)."""
    ahead = until - now
    if ahead <= length + CLOCK_SKEW:
        return False
    logger.warning(
        "%s expires %.0f s ahead of this clock, more than its lease (%g s) and the clock skew "
        "processes may have (%g s): taken for an expired one (a clock running ahead, or a forged object)",
        what,
        ahead,
        length,
        CLOCK_SKEW,
    )
    return True


@dataclass(frozen=True, slots=True)
class Lease:
    """One state of an actor's lease object, as read or written."""

    holder: str
    #: wall-clock time (seconds since the epoch) after which anyone may take it; 0 = released
    expires: float
    #: the newest step its writer knew
    step: int
    #: random per write: tells our own write from another after a lost response
    token: str
    #: the object's version (for the next if-match put); None when the object is absent
    version: str | None

    def valid(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.expires


#: a lease object that is not there (or unreadable): anyone may create / replace it
_ABSENT = Lease("", 0.0, -1, "", None)


class LeaseStore:
    """Reads and conditional writes of one actor's lease object."""

    __slots__ = ("actor_id", "key", "signing_key", "store")

    def __init__(self, store: ObjectStore, actor_id: str, signing_key: bytes | None) -> None:
        self.store = store
        self.actor_id = actor_id
        self.key = lease_key(actor_id)
        self.signing_key = signing_key

    async def read(self) -> Lease:
        """The lease as stored now (one GET); an absent or unreadable lease is free to take.
        One that does not verify is read again first (:func:`read_checked`): a read cut short
        on the way would take a held lease for free."""
        seen: list[Blob] = []

        def lease_of(blob: Blob) -> Lease:
            seen.append(blob)
            return self._lease_of(blob)

        try:
            return await read_checked(self.store, self.key, lease_of)
        except NotFoundError:
            return _ABSENT
        except DamagedObjectError:
            return Lease("", 0.0, -1, "", seen[-1].version)  # (unreadable: see _lease_of)

    def _lease_of(self, blob: Blob) -> Lease:
        """The lease ``blob`` holds; free if it is unreadable. ``DamagedObjectError`` for bytes
        that do not verify (read again, then free)."""
        try:
            meta = codec.decode(self.key, blob.data, signing_key=self.signing_key).meta
            if meta.get("kind") != "lease":
                raise IntegrityError(self.key, f"holds a {meta.get('kind')!r} object")
            expires = float(meta["expires"])
            written = meta.get("time")
            # its length as written (expires - time), else none: a lease of lease_seconds
            length = expires - float(written) if written is not None else 0.0
            length = min(max(length, 0.0), LONGEST_LEASE) if math.isfinite(length) else 0.0
            if expires > 0:
                what = f"the folder lease of {self.actor_id!r} (held by {meta['holder']!r})"
                if expiry_too_far_ahead(expires, time.time(), length, what):
                    expires = 0.0  # free: replaced by if-match on its version, as an expired one
            return Lease(str(meta["holder"]), expires, int(meta["step"]), str(meta["token"]), blob.version)
        except (FormatVersionError, DamagedObjectError):
            raise
        except (IntegrityError, KeyError, ValueError, TypeError, OverflowError):  # (int() of Infinity)
            # A hint: an unreadable lease is replaced (by if-match on its version), never trusted.
            return Lease("", 0.0, -1, "", blob.version)

    async def write(self, seen: Lease, holder: str, seconds: float, step: int) -> Lease | None:
        """Replace ``seen`` (the state we read or wrote last) by a lease of ``holder`` for ``seconds``
        (0: released). The new lease, or None when someone else wrote the object since ``seen``.

        A write whose answer was lost is resolved by reading the object back (its token).
        Other storage errors propagate (the lease may or may not have been written).
        """
        now = time.time()
        token = os.urandom(8).hex()
        expires = now + seconds if seconds > 0 else 0.0
        meta = {"kind": "lease", "holder": holder, "expires": expires, "step": step, "token": token}
        meta["time"] = now
        data = codec.encode(self.key, meta, {}, signing_key=self.signing_key)
        mode: PutMode = "create" if seen.version is None else IfMatch(seen.version)
        version: str | None
        try:
            version = await self.store.put(self.key, data, mode=mode)
        except (AlreadyExistsError, PreconditionFailedError):
            back = await self.read()
            if back.token != token:
                return None
            version = back.version
        except StorageError:
            back = await self.read()
            if back.token != token:
                raise
            version = back.version
        return Lease(holder, expires, step, token, version)
