"""The live timer runners of a group, by their heartbeats, and which of them owns an actor.

:class:`Membership` writes this runner's heartbeat (``timer-runners/<id>``, as
:mod:`vactor_cloud.timer_hints` encodes it), renews and deletes it, and reads the others'
to know the live runners of its group; :func:`owner_of` ranks them per actor by
rendezvous hashing. :class:`~vactor_cloud.timer_runner.TimerRunner` uses it with
``split="runners"``, and times the heartbeat's renewals (a thread of a long-running runner;
in a tick, :mod:`vactor_cloud.timer_renewals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vactor_cloud import keys
from vactor_cloud.errors import (
    NotFoundError,
    StorageError,
    StorageTimeoutError,
    TruncatedObjectError,
)
from vactor_cloud.ids import validate_runner_id
from vactor_cloud.lease import LONGEST_LEASE, expiry_too_far_ahead
from vactor_cloud.storage import ObjectStore
from vactor_cloud.timer_hints import encode_hint, read_hint, still_torn

__all__ = ["Membership", "owner_of"]

logger = logging.getLogger("vactor_cloud")


# -- membership: heartbeats and rendezvous hashing ------------------------------------------------


def _settled_write(writes: set[asyncio.Future[str]]) -> Callable[[asyncio.Future[str]], None]:
    """The done-callback of a renewal no longer waited for: forgotten, its error taken (and
    logged at debug: the renewal that stopped waiting for it said it failed)."""

    def settled(write: asyncio.Future[str]) -> None:
        writes.discard(write)
        error = None if write.cancelled() else write.exception()
        if error is not None:
            logger.debug("a heartbeat renewal failed after it was no longer waited for: %s", error)

    return settled


def _weight(actor_id: str, runner_id: str) -> int:
    digest = hashlib.blake2b(f"{actor_id}\0{runner_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(actor_id: str, runners: Iterable[str]) -> str:
    """The runner that fires ``actor_id``'s timers among ``runners``: highest random weight."""
    return max(runners, key=lambda runner: (_weight(actor_id, runner), runner))


@dataclass
class _Seen:
    """Another runner's heartbeat as last read."""

    until: float
    group: str | None
    #: its writer's lease (a heartbeat expired for longer than that is removed)
    lease: float
    #: wall-clock time at which to read it again
    recheck: float


class Membership:
    """This runner's heartbeat, ``timer-runners/<id>``, and its view of the live runners.

    A heartbeat holds its expiry (``until``, the writer's clock plus
    ``lease``) and its group (the shard it serves, ``"all"`` without one);
    runners of other groups are ignored. Another runner's heartbeat is read
    once when it first appears and again only when its known expiry passes
    (a live runner has renewed it by then): the usual cost is one LIST per
    refresh. A heartbeat that expired more than its lease ago is deleted.
    """

    def __init__(
        self, store: ObjectStore, runner_id: str, lease: float, group: str, signing_key: bytes | None = None
    ) -> None:
        validate_runner_id(runner_id)  # (only '/' was refused: ".r" was written on S3, not locally)
        if not math.isfinite(lease) or lease <= 0:
            raise ValueError(f"the lease must be a positive number of seconds, got {lease!r}")
        self.store = store
        self.runner_id = runner_id
        self.lease = lease
        self.group = group
        #: signs this runner's heartbeat; the others' must carry its signature to count
        self.signing_key = signing_key
        self.key = keys.timer_runner_key(runner_id)
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()
        self._live: tuple[str, ...] = (runner_id,)
        self._owners: dict[str, str] = {}
        #: (IO loop) renewals no longer waited for, still in flight (``beat(within=...)``)
        self._writes: set[asyncio.Future[str]] = set()

    @property
    def live(self) -> tuple[str, ...]:
        """The runners this one believes alive in its group, itself included (sorted)."""
        return self._live

    async def beat(self, within: float | None = None) -> None:
        """Write (or renew) the heartbeat; ``within``: stop waiting for the write after that
        many seconds (``StorageTimeoutError``), leaving it to land or fail by itself
        (:meth:`leave` waits for it first)."""
        body = {
            "runner": self.runner_id,
            "until": time.time() + self.lease,
            "lease": self.lease,
            "group": self.group,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        data = encode_hint(self.key, "timer-runner", body, self.signing_key)
        if within is None:
            await self.store.put(self.key, data)
            return
        write = asyncio.ensure_future(self.store.put(self.key, data))
        self._writes.add(write)
        write.add_done_callback(_settled_write(self._writes))
        done, _ = await asyncio.wait({write}, timeout=within)
        if not done:
            raise StorageTimeoutError(
                f"a heartbeat renewal ({self.key}) took more than {within:g} s, a third of the lease: "
                "no longer waited for (it may still land), renewed again in turn",
                self.key,
                write_in_flight=True,
            )
        write.result()

    async def leave(self) -> None:
        """Delete the heartbeat (graceful stop): the others take this runner's actors at their
        next poll. Renewals no longer waited for land (or fail) first: one landing after the
        delete wrote the heartbeat again, and the others counted this runner live for a lease.
        Waited for a lease at most: each began before this, and its heartbeat's ``until`` is
        its start plus the lease, so one landing later writes a heartbeat already expired.
        (Waited for until the leave's ``Settings.deadline``, a stalled one kept a tick that
        Ctrl-C stopped 30 s, and then no delete was sent.)"""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=self.lease)
        with contextlib.suppress(NotFoundError):
            await self.store.delete(self.key)

    async def _read(self, runner_id: str, now: float, again: bool = True) -> _Seen | None:
        key = keys.timer_runner_key(runner_id)
        try:
            blob, read, failure = await read_hint(self.store, key, "timer-runner", self.signing_key)
        except NotFoundError:
            return None
        except TruncatedObjectError as exc:
            return await self._torn(runner_id, now, exc, again)
        trusted = True
        body: Any = read
        if failure is not None:
            # Never a live member. With a signing key: a forger's, or a runner's from before
            # the store had one (or of an earlier release); that one, still plain JSON and
            # expired long ago, is removed below as a signed one is.
            if self.signing_key is not None and runner_id not in self._seen:  # (once: then re-read per lease)
                logger.warning("timer runner %r's heartbeat is not counted: %s", runner_id, failure)
            trusted = False
            try:
                body = json.loads(blob.data)
            except ValueError:
                body = None
        try:
            until, lease = float(body["until"]), float(body.get("lease", self.lease))
            group = body.get("group")
            if not math.isfinite(until) or not math.isfinite(lease):
                raise ValueError("not finite")
        except (ValueError, KeyError, TypeError, AttributeError):  # unreadable: look again later
            return _Seen(-math.inf, None, self.lease, now + self.lease)
        if until <= now and now - until > max(lease, self.lease):
            # dead for longer than its lease: remove it (a runner that comes back writes it again)
            with contextlib.suppress(StorageError):
                await self.store.delete(key)
            return None
        bound = max(self.lease, min(lease, LONGEST_LEASE))
        if not trusted or expiry_too_far_ahead(until, now, bound, f"timer runner {runner_id!r}'s heartbeat"):
            return _Seen(-math.inf, None, self.lease, now + self.lease)  # not a live member; look again later
        return _Seen(
            until, group if isinstance(group, str) else None, lease, until if until > now else now + lease
        )

    async def _torn(self, runner_id: str, now: float, exc: TruncatedObjectError, again: bool) -> _Seen | None:
        """The heartbeat of ``runner_id`` torn at each read (a local store's file cut by a
        crash): unreadable, never a live member. Raised, it failed the whole refresh at every
        poll, and the runner kept its old view while the torn object stayed: a runner that left
        then was never dropped, its actors' timers left unfired. Looked at again first (HEAD):
        whole by then (its runner's renewal replaced it since the reads, or it is whole at rest
        and only its reads were cut on the way), it is read again (``again``: once) and counted
        as read. Still torn, it is removed (it has no expiry to read, so no other removal meets
        it: every tick read it three times and warned, for good); a live runner's next renewal
        writes it again, within lease/3. Left (a request failed): looked at again a lease later."""
        key = keys.timer_runner_key(runner_id)
        unreadable = _Seen(-math.inf, None, self.lease, now + self.lease)
        try:
            torn = await still_torn(self.store, key)
            if torn is None:
                return None
            if not torn:
                return await self._read(runner_id, now, again=False) if again else unreadable
            logger.warning("timer runner %r's heartbeat is not counted, and removed: %s", runner_id, exc)
            # Unconditionally: a torn file has no version a conditional delete could name. A
            # renewal landing between the HEAD above and this delete goes with it (not one
            # landing during the reads: that one the HEAD sees); the runner's next renewal
            # writes it again, lease/3 later, and meanwhile the others may fire its share
            # too: work done twice, never a timer fired twice.
            await self.store.delete(key)
        except NotFoundError:
            pass
        except StorageError:
            return unreadable
        return None

    async def refresh(self) -> tuple[str, ...]:
        """List the heartbeats, read the new and the expiring ones; the live runners of this group."""
        listed = [r for k in await self.store.list(keys.TIMER_RUNNERS) if (r := keys.timer_runner_of(k))]
        now = time.time()
        others = [r for r in listed if r != self.runner_id]
        stale = [r for r in others if r not in self._seen or self._seen[r].recheck <= now]
        reads = await asyncio.gather(*(self._read(r, now) for r in stale))
        present = set(others)
        seen = {r: s for r, s in self._seen.items() if r in present}
        for runner_id, found in zip(stale, reads, strict=True):
            if found is None:
                seen.pop(runner_id, None)
            else:
                seen[runner_id] = found
        self._seen = seen
        live = tuple(
            sorted({self.runner_id} | {r for r, s in seen.items() if s.until > now and s.group == self.group})
        )
        with self._lock:
            if live != self._live:
                self._live = live
                self._owners = {}
        return live

    def owns(self, actor_id: str) -> bool:
        """Whether this runner fires ``actor_id``'s timers, by its current view."""
        with self._lock:
            owner = self._owners.get(actor_id)
            live = self._live
        if owner is None:
            owner = owner_of(actor_id, live)
            with self._lock:
                if self._live is live:
                    if len(self._owners) > 100_000:
                        self._owners.clear()
                    self._owners[actor_id] = owner
        return owner == self.runner_id
