"""Firing due timers, and the timer operations of handles (schedule from outside, list, cancel).

One code path for every runner, :class:`TimerRunner`: :func:`fire_due_timers`
(``vc.fire_due_timers()``, ``vactor timers tick``) fires what is due now and
returns; :func:`run_timers` (``vactor timers run``) keeps firing until stopped.

How runners split the work (``split=``), without a coordinator:

* ``"runners"`` (the default): each runner heartbeats ``timer-runners/<id>``
  (its expiry, renewed every ``lease/3``, deleted on a graceful stop) and,
  every poll, lists that prefix; an actor belongs to the live runner of the
  same group (same ``shard``) that rendezvous hashing of (actor, runner)
  ranks first. No request per actor. Runners whose views differ for a
  moment (one just started, one just stopped) only duplicate work.
* ``"claims"``: per actor, a create-only ``timer-claims/<actor>`` holding a
  lease (two requests per actor and firing; losers pay more).
* ``"none"``: this runner fires every due timer (of its shard): one runner
  per shard, or a lone tick.

With a signing key, heartbeats and claims are signed envelopes (:func:`encode_hint`), and one
that does not verify for its own key counts for nothing: a forger who can write the bucket
cannot hold actors' timers off. Due-index entries are not signed: empty names, they decide
nothing (docs/security.md).

None of them is what makes firing exactly once: the actor's step is. A
``FIRE`` call removes its timer in the step that applies it, so a second
runner, a retry or a stale index entry finds the timer gone.

A long-running runner (:meth:`TimerRunner.run`) lists the due index every
``poll`` seconds, but only the entries due within ``horizon`` seconds
(pages of 1,000 keys): the ones it owns go into a local heap, and each
actor's group is fired, on a bounded pool, as soon as it is due (entries due
within ``coalesce`` seconds of each other commit together). A timer indexed
at least a poll before its due time is therefore fired about when it is due,
not a poll later.

Firing one actor's group: queue one ``FIRE`` per entry (they group-commit
as one step), then delete the entries whose timers fired or are gone. An
entry whose ``FIRE`` found nothing to fire is deleted only after a probe of
the newest step agrees (the cache may be behind a step that scheduled it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import heapq
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from vactor_cloud import _sync, codec, keys
from vactor_cloud.actor_runtime import join_threads
from vactor_cloud.batch import CallOptions, PendingCall
from vactor_cloud.checked_read import read_checked
from vactor_cloud.deletion import deleted_error, is_deleted
from vactor_cloud.errors import (
    ActorDeletedError,
    ActorNotFoundError,
    AlreadyExistsError,
    DamagedObjectError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    StorageTimeoutError,
    TruncatedObjectError,
    VactorError,
    VirtualActorNotInitializedError,
)
from vactor_cloud.future import ActorFuture
from vactor_cloud.history import iter_actor_ids
from vactor_cloud.ids import validate_runner_id
from vactor_cloud.lease import LONGEST_LEASE, expiry_too_far_ahead
from vactor_cloud.reentrancy import call_cycle
from vactor_cloud.runtime import Runtime, get_runtime
from vactor_cloud.runtime_scope import carry_runtime
from vactor_cloud.storage import Blob, IfMatch, ObjectStore
from vactor_cloud.timers import (
    CANCEL,
    FIRE,
    SCHEDULE,
    FireReport,
    IndexEntry,
    checked_due,
    forget_entry,
    list_index,
    pending_timers,
    remember_listed,
    repair_index,
    validate_timer_key,
)

__all__ = [
    "DEFAULT_LEASE",
    "SPLITS",
    "Membership",
    "Split",
    "TickError",
    "TickReport",
    "TimerRunner",
    "cancel_timer",
    "fire_due_timers",
    "list_timers",
    "repair_timer_index",
    "run_timers",
    "scheduling_call",
]

logger = logging.getLogger("vactor_cloud")
_T = TypeVar("_T")

#: seconds a runner's heartbeat (or claim) holds: a runner killed without a word is replaced after this
DEFAULT_LEASE = 30.0


#: how runners split the actors among themselves
Split = Literal["runners", "claims", "none"]
SPLITS: tuple[Split, ...] = ("runners", "claims", "none")
#: a long-running runner keeps the entries due within this many polls in its heap
_HORIZON_POLLS = 2.0
#: ...and lists at most this many entries per poll (a backlog is taken a slice at a time)
_MAX_LISTED = 20_000
#: a long-running runner's totals keep the newest this many lateness figures and errors (the
#: counts stay whole): one per timer fired, for the runner's life, is no bound
_TOTAL_LATENESS = 100_000
_TOTAL_ERRORS = 1_000


class TickError(str):
    """One error of a :class:`TickReport`: its text, and the exception it tells of (``cause``;
    ``None`` where there is none), by which the ``vactor`` command adds what to do about it, as
    for the same error met elsewhere (a damaged object, a class not loadable here)."""

    cause: BaseException | None

    def __new__(cls, text: str, cause: BaseException | None = None) -> TickError:
        error = super().__new__(cls, text)
        error.cause = cause
        return error


@dataclass
class TickReport:
    """What one :func:`fire_due_timers` pass (or a :func:`run_timers` run) did."""

    listed: int = 0
    due: int = 0
    fired: int = 0
    #: entries whose timer was gone (fired by someone else, cancelled, rescheduled): dropped
    stale: int = 0
    #: actors skipped because another runner holds their claim (``split="claims"``)
    claimed_elsewhere: int = 0
    #: actors with due entries left to another live runner (``split="runners"``)
    assigned_elsewhere: int = 0
    #: live runners in this runner's group, itself included, as last seen (``split="runners"``)
    runners: int = 1
    #: one line each, ``ACTOR: ...`` (a :class:`TickError` where an exception tells it); in the
    #: totals of :meth:`TimerRunner.run`: the newest ``_TOTAL_ERRORS``
    errors: list[str] = field(default_factory=list)
    #: seconds between each fired timer's due time and its commit (in the totals of
    #: :meth:`TimerRunner.run`: the newest ``_TOTAL_LATENESS``)
    lateness: list[float] = field(default_factory=list)
    #: errors trimmed from ``errors`` (totals only): ``error_count`` stays whole
    errors_dropped: int = 0
    #: the largest lateness trimmed from ``lateness`` (totals only): ``max_lateness`` stays whole
    lateness_dropped_max: float | None = None
    #: due entries a stopped tick (its ``stop`` set) listed and did not fire: they stay due
    left: int = 0

    @property
    def error_count(self) -> int:
        """Every error of the pass (or run), trimmed ones included."""
        return len(self.errors) + self.errors_dropped

    @property
    def max_lateness(self) -> float | None:
        """The largest lateness of every timer fired, trimmed figures included (``None``: none)."""
        figures = list(self.lateness)
        if self.lateness_dropped_max is not None:
            figures.append(self.lateness_dropped_max)
        return max(figures) if figures else None

    def merge(self, other: TickReport) -> None:
        self.fired += other.fired
        self.stale += other.stale
        self.claimed_elsewhere += other.claimed_elsewhere
        self.assigned_elsewhere += other.assigned_elsewhere
        self.errors += other.errors
        self.lateness += other.lateness
        self.errors_dropped += other.errors_dropped
        self.left += other.left
        self._note_dropped(other.lateness_dropped_max)

    def _note_dropped(self, lateness: float | None) -> None:
        if lateness is not None:
            top = self.lateness_dropped_max
            self.lateness_dropped_max = lateness if top is None else max(top, lateness)

    def _trim(self) -> None:
        """Keep the newest ``_TOTAL_LATENESS`` lateness figures and ``_TOTAL_ERRORS`` errors
        (what goes still counts in ``error_count`` and ``max_lateness``)."""
        cut = len(self.lateness) - _TOTAL_LATENESS
        if cut > 0:
            self._note_dropped(max(self.lateness[:cut]))
            del self.lateness[:cut]
        cut = len(self.errors) - _TOTAL_ERRORS
        if cut > 0:
            self.errors_dropped += cut
            del self.errors[:cut]


def _split_of(split: str | None, claims: bool | None) -> Split:
    """``split=``, or the older ``claims=`` flag (True: claims; False: none)."""
    if split is None:
        return "runners" if claims is None else ("claims" if claims else "none")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if claims is not None and (split == "claims") != claims:
        raise ValueError(f"claims={claims!r} contradicts split={split!r}")
    return split


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
            torn = await _still_torn(self.store, key)
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


# -- claims ---------------------------------------------------------------------------------------


async def claim_actor(
    store: ObjectStore, actor_id: str, runner: str, lease: float, signing_key: bytes | None = None
) -> str | None:
    """Take this runner's lease on ``actor_id``'s due timers: the version of the claim put (for
    :func:`release_actor`); None if another runner holds one (with ``signing_key``, one signed
    for this actor's claim: any other is taken over).

    A put whose answer was lost (an error, a timeout, a 412 or 409 that a retry of it met)
    may have landed: the claim is read back, and if it holds this put's bytes it is this
    runner's, at the version read. Else the put's error is raised (412: None). A claim torn
    by a crash (``TruncatedObjectError``) is deleted and created anew."""
    key = keys.timer_claim_key(actor_id)
    body = encode_hint(key, "timer-claim", {"runner": runner, "until": time.time() + lease}, signing_key)
    for attempt in range(_CLAIM_ROUNDS):
        try:
            return await store.put(key, body, mode="create")
        except AlreadyExistsError:
            pass
        except StorageError as exc:
            return await _own_claim_or_raise(store, key, body, exc)
        try:
            blob, held, _ = await read_hint(store, key, "timer-claim", signing_key)
        except NotFoundError:
            continue  # released meanwhile: try to create it again
        except TruncatedObjectError:
            # Torn by a crash (a local store's unsynced file): unreadable, so expired, and of no
            # version an if-match could name, nor the conditional delete of its runner's
            # release. Left, it failed every claim of the actor, its timers never fired.
            # Looked at again first (HEAD): whole by then (another runner removed it and took
            # its claim since the reads; or it is whole at rest, its reads cut on the way), it
            # is judged as any claim, in the next round (the last round raises). Still torn, it
            # is removed, then created: unconditionally, as it has no version; a claim another
            # runner took between the HEAD and the delete goes with it, and both take the actor
            # this once: work done twice, never a second firing.
            torn = await _still_torn(store, key)
            if torn is False and attempt == _CLAIM_ROUNDS - 1:
                raise
            if torn:
                with contextlib.suppress(NotFoundError):
                    await store.delete(key)
            continue
        if blob.data == body:  # (our create landed; its retry met it)
            return blob.version
        try:
            if held is None:
                raise ValueError(key)
            until, now = float(held["until"]), time.time()
            live = (
                until > now
                and held.get("runner") != runner
                and not expiry_too_far_ahead(until, now, lease, f"the timer claim on {actor_id!r}")
            )
        except (ValueError, KeyError, TypeError):
            live = False  # unreadable: treat as expired
        if live:
            return None
        try:
            return await store.put(key, body, mode=IfMatch(blob.version))
        except (PreconditionFailedError, NotFoundError):
            return await _own_claim(store, key, body)
        except StorageError as exc:
            return await _own_claim_or_raise(store, key, body, exc)
    return None


#: rounds of :func:`claim_actor` (create, else read and judge the claim there)
_CLAIM_ROUNDS = 2


async def _still_torn(store: ObjectStore, key: str) -> bool | None:
    """After every read of ``key`` found it torn: whether it still is (one HEAD). True: torn
    at rest (a local store's file cut by a crash: no version); False: whole now (written
    again since the reads, or whole at rest and only its reads were cut on the way); None:
    gone."""
    try:
        version = await store.head(key)
    except TruncatedObjectError:
        return True
    return None if version is None else False


async def _own_claim(store: ObjectStore, key: str, body: bytes) -> str | None:
    """The version of the claim at ``key`` if it holds ``body`` (this put's bytes: a time and a
    runner id, never written twice); None if it does not or cannot be read."""
    try:
        blob = await read_checked(store, key, lambda blob: blob)
    except (StorageError, DamagedObjectError):
        return None
    return blob.version if blob.data == body else None


async def _own_claim_or_raise(store: ObjectStore, key: str, body: bytes, error: StorageError) -> str:
    """:func:`_own_claim` after the put of ``body`` at ``key`` failed with ``error``: raised
    if the claim there is not this put's."""
    version = await _own_claim(store, key, body)
    if version is None:
        raise error
    return version


async def release_actor(store: ObjectStore, actor_id: str, version: str) -> None:
    """Delete this runner's claim on ``actor_id`` (put at ``version``), unless another runner
    took it over meanwhile (this runner's fire outlasted its lease): that one's is left."""
    try:
        await store.delete_unchanged({keys.timer_claim_key(actor_id): version})
    except StorageError as exc:  # the lease expires by itself
        logger.debug("could not release the timer claim on %r: %s", actor_id, exc)


async def _within(start: Callable[[], Coroutine[Any, Any, _T]], seconds: float, key: str, what: str) -> _T:
    """``start()``, cut off past ``seconds`` (``StorageTimeoutError``: its write may or may not have
    landed): the taking of a claim bounded by the lease's budget, not by ``Settings.deadline``
    alone (30 s by default: a claim put that answered after the lease was a claim expired as
    taken, and the actor was fired beside the runner that took it over)."""
    # (a task of its own, waited for by ``asyncio.wait``: ``asyncio.timeout`` needs a current
    # task, and ``Runtime.run`` starts a coroutine's first step eagerly, outside any)
    task = asyncio.ensure_future(start())  # (made here: one made before, never run, was never awaited)
    try:
        try:
            await asyncio.wait({task}, timeout=seconds)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
    except BaseException:
        # Cancelled (the runtime shut down, Ctrl-C, the operation's deadline) as the task
        # ended, or again while it waited above for the task it cancelled: nobody else takes
        # the task's outcome. Left, a failed one's exception went to the loop ("Task exception
        # was never retrieved") and a put that landed went unseen.
        _abandoned(task, key, what)
        raise
    if not task.cancelled():
        return task.result()
    raise StorageTimeoutError(
        f"{what} ({key}) took more than {seconds:g} s, a third of the lease: cut off (it may or "
        "may not have been written), tried again later",
        key,
        write_in_flight=True,
    )


def _abandoned(task: asyncio.Future[Any], key: str, what: str) -> None:
    """Take the outcome of :func:`_within`'s ``task``, which its caller no longer waits for
    (now, or when it ends), and log it (debug). A claim that landed so holds the actor for its
    lease at most, as one cut off that lands: its runner takes it back at its next tick."""

    def taken(task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.debug("%s (%s) failed after its tick stopped waiting for it: %s", what, key, error)
        else:
            logger.debug(
                "%s (%s) landed after its tick stopped waiting for it: it holds for its lease at most",
                what,
                key,
            )

    if task.done():
        taken(task)
    else:
        task.add_done_callback(taken)


# -- firing one actor's entries -------------------------------------------------------------------


def _shard_of(actor_id: str, count: int) -> int:
    return zlib.crc32(actor_id.encode("utf-8")) % count


def _fire_round(runtime: Runtime, actor_id: str, entries: list[IndexEntry]) -> list[FireReport | Exception]:
    """Queue one ``FIRE`` per entry (they group-commit as one step); what each found."""
    core = runtime.core(actor_id)
    calls = [PendingCall(FIRE, (e.key,), {}, False, ActorFuture(), uuid.uuid4().hex) for e in entries]
    for call in calls:
        core.submit(call)
    found: list[FireReport | Exception] = []
    for call in calls:
        core.help(call.future, None)
        try:
            outcome = call.future.result()
        except Exception as exc:  # the commit failed: the entry stays for a later round
            found.append(exc)
            continue
        assert isinstance(outcome, FireReport)
        found.append(outcome)
    return found


def _fire_actor(
    runtime: Runtime,
    runner: str,
    lease: float | None,
    actor_id: str,
    entries: list[IndexEntry],
    *,
    delete: bool = True,
) -> tuple[TickReport, list[IndexEntry]]:
    """Fire ``entries`` of one actor; the report and the entries done with (fired or stale),
    deleted unless ``delete`` is False (the caller deletes them).

    An entry whose ``FIRE`` found no due timer (gone, or pending at another due
    time or not yet due) is deleted only if the newest step (one probe) agrees
    that the timer is gone or rescheduled: a cache behind the step that
    scheduled it must not drop its entry. A timer the
    newest step shows due is fired once more; one not yet due keeps its entry.
    """
    store = runtime.store
    report = TickReport()
    claim: str | None = None
    try:
        signing_key = runtime.settings.signing_key
        if lease is not None:
            taking = functools.partial(claim_actor, store, actor_id, runner, lease, signing_key)
            claim = runtime.run(_within(taking, lease / 3, keys.timer_claim_key(actor_id), "a timer claim"))
            if claim is None:
                report.claimed_elsewhere += 1
                return report, []
    except VactorError as exc:
        report.errors.append(TickError(f"{actor_id}: claim: {exc}", exc))
        return report, []
    done: list[IndexEntry] = []
    try:
        try:
            core = runtime.load(actor_id)
        except ActorNotFoundError:
            report.stale += len(entries)  # the actor is gone (or never was): nothing to fire
            if delete:
                runtime.run(_delete_entries(store, entries))
            return report, list(entries)
        todo = list(entries)
        for attempt in range(2):
            unsure: list[IndexEntry] = []
            for entry, found in zip(todo, _fire_round(runtime, actor_id, todo), strict=True):
                if isinstance(found, ActorDeletedError):
                    # Deleted since our cache loaded it (the firing lost its put to the
                    # tombstone): never to fire, as for a load that finds it deleted. Its
                    # occurrence is the deleted actor's (a later actor's entries name later
                    # steps), so the entry goes even if an actor was created since.
                    done.append(entry)
                    report.stale += 1
                elif isinstance(found, Exception):
                    report.errors.append(TickError(f"{actor_id}/{entry.key}: {found}", found))
                elif found.fired:
                    done.append(entry)
                    report.fired += 1
                    report.lateness.append(time.time() - entry.due_ms / 1000)
                    if not found.ok:
                        logger.warning("timer %s of %r raised: %s", entry.key, actor_id, found.error)
                elif found.missing_method is not None:  # its class lacks the method: both stay
                    report.errors.append(
                        _missing_method_text(runtime, actor_id, entry.key, found.missing_method)
                    )
                elif not found.ok:  # its call was excluded (SystemExit, a StorageError): both stay
                    report.errors.append(_excluded_text(actor_id, entry.key, found.error))
                else:
                    # Gone, or pending at another due time (rescheduled: its own entry is another
                    # one), or not due yet; but a FIRE that fires nothing commits nothing, so
                    # this is what our cache says, which may predate the step that scheduled
                    # this entry's occurrence: the newest step decides.
                    unsure.append(entry)
            if not unsure:
                break
            newest = pending_timers(runtime.run(core.revalidate()).extra)
            todo = []
            for entry in unsure:
                timer = newest.get(entry.key)
                if timer is None or timer.due_ms != entry.due_ms:
                    done.append(entry)
                    report.stale += 1
                elif timer.due <= time.time() and attempt == 0:
                    todo.append(entry)  # our cache was behind the step that scheduled it
            if not todo:
                break
        if delete:
            runtime.run(_delete_entries(store, done))
    except VactorError as exc:
        report.errors.append(TickError(f"{actor_id}: {exc}", exc))
    finally:
        if claim is not None:
            with contextlib.suppress(VactorError):
                runtime.run(release_actor(store, actor_id, claim))
    return report, done


def _excluded_text(actor_id: str, key: str, error: object) -> str:
    """The error of a fire whose call was excluded: its method raised what is no outcome
    (``dedup.is_outcome``: ``SystemExit``, a ``StorageError``, ...)."""
    return (
        f"{actor_id}/{key}: not committed: the timer's method raised {error} (an interrupt, or "
        "a fault of the store, the runtime or the process: not the call's outcome, so its "
        "call is excluded), so the timer stays due and is fired again at every tick; if it "
        "raises that every time, make the method return or raise another exception, or cancel "
        f"the timer: vc.get_actor({actor_id!r}).cancel_timer({key!r})"
    )


def _missing_method_text(runtime: Runtime, actor_id: str, key: str, method: str) -> str:
    """The error of a fire whose timer calls a method the actor's class no longer has."""
    definition = runtime.core(actor_id).definition
    cls = "the actor's class" if definition is None else definition.cls.__qualname__
    return (
        f"{actor_id}/{key}: not fired: the timer calls {method!r}, which {cls} has no writer "
        "method of (renamed or removed since it was scheduled?); it stays pending and is tried "
        f"at every tick: deploy a class with {method!r}, or cancel the timer: "
        f"vc.get_actor({actor_id!r}).cancel_timer({key!r})"
    )


async def _delete_entries(store: ObjectStore, entries: list[IndexEntry]) -> None:
    async def one(entry: IndexEntry) -> None:
        forget_entry(store, entry)
        try:
            await store.delete(entry.object_key)
        except NotFoundError:
            pass
        except StorageError as exc:  # met again next tick, found gone, deleted then
            logger.debug("could not delete timer entry %s: %s", entry.object_key, exc)

    await asyncio.gather(*(one(e) for e in entries))


# -- runners --------------------------------------------------------------------------------------


class TimerRunner:
    """One timer runner: :meth:`tick` fires what is due now; :meth:`run` keeps firing until stopped.

    ``split`` says how runners share the actors (see the module's docstring);
    ``shard=(i, n)`` first keeps only the actors whose id hashes (CRC32) to
    ``i`` of ``n``, and with ``split="runners"`` only runners of the same
    shard split them. ``lease`` is the heartbeat's (or claim's) lifetime.
    """

    def __init__(
        self,
        runtime: Runtime | None = None,
        *,
        split: Split = "runners",
        lease: float = DEFAULT_LEASE,
        shard: tuple[int, int] | None = None,
        concurrency: int = 16,
        runner_id: str | None = None,
        poll: float = 1.0,
        horizon: float | None = None,
        coalesce: float = 0.03,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
        if not math.isfinite(poll) or poll <= 0:
            raise ValueError(f"poll must be a positive number of seconds, got {poll!r}")
        # (a claim of a lease of 0, negative or NaN expired as written: claims held nothing)
        if not math.isfinite(lease) or lease <= 0:
            raise ValueError(f"the lease must be a positive number of seconds, got {lease!r}")
        self.runtime = runtime or get_runtime()
        self.split = split
        self.lease = lease
        self.shard = shard
        self.concurrency = max(1, concurrency)
        self.runner_id = runner_id or f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.poll = poll
        self.horizon = _HORIZON_POLLS * poll if horizon is None else horizon
        self.coalesce = coalesce
        group = "all" if shard is None else f"{shard[0]}/{shard[1]}"
        self.membership = (
            Membership(self.runtime.store, self.runner_id, lease, group, self.runtime.settings.signing_key)
            if split == "runners"
            else None
        )

    # -- pieces shared by tick and run ---------------------------------------------------------
    def _join(self) -> None:
        if self.membership is None:
            return
        try:
            self.runtime.run(self.membership.beat())
        except VactorError as exc:  # the others do not see us: they duplicate our work, no more
            logger.warning("timer runner %s: could not write its heartbeat: %s", self.runner_id, exc)

    def _leave(self) -> None:
        if self.membership is None:
            return
        try:
            self.runtime.run(self.membership.leave())
        except VactorError as exc:  # it expires by itself
            logger.warning("timer runner %s: could not delete its heartbeat: %s", self.runner_id, exc)

    def _refresh(self, report: TickReport) -> None:
        if self.membership is None:
            return
        try:
            report.runners = len(self.runtime.run(self.membership.refresh()))
        except VactorError as exc:  # keep the previous view
            logger.warning("timer runner %s: could not list the runners: %s", self.runner_id, exc)

    def _mine(self, actor_id: str) -> bool:
        if self.shard is not None and _shard_of(actor_id, self.shard[1]) != self.shard[0]:
            return False
        return self.membership is None or self.membership.owns(actor_id)

    def _in_shard(self, actor_id: str) -> bool:
        return self.shard is None or _shard_of(actor_id, self.shard[1]) == self.shard[0]

    def _list(
        self,
        due_by_ms: float,
        limit: int | None,
        refresh: bool = False,
        report: TickReport | None = None,
        after: str | None = None,
    ) -> list[IndexEntry]:
        """The index entries due by ``due_by_ms`` (past the key ``after``); with ``refresh``, the
        runners listed beside."""
        store = self.runtime.store
        if refresh and self.membership is not None and report is not None:
            membership = self.membership

            async def both() -> list[IndexEntry]:
                view, found = await asyncio.gather(
                    membership.refresh(),
                    list_index(store, due_by_ms=due_by_ms, limit=limit, start_after=after),
                    return_exceptions=True,
                )
                if isinstance(view, VactorError):  # keep the previous view
                    logger.warning("timer runner %s: could not list the runners: %s", self.runner_id, view)
                elif isinstance(view, BaseException):
                    raise view
                else:
                    report.runners = len(view)
                if isinstance(found, BaseException):
                    raise found
                return found

            entries = self.runtime.run(both())
        else:
            entries = self.runtime.run(list_index(store, due_by_ms=due_by_ms, limit=limit, start_after=after))
        complete = limit is None or len(entries) < limit
        remember_listed(store, entries, complete_until_ms=due_by_ms if complete else None)
        return entries

    def _fire(self, actor_id: str, entries: list[IndexEntry]) -> tuple[TickReport, list[IndexEntry]]:
        lease = self.lease if self.split == "claims" else None
        return _fire_actor(self.runtime, self.runner_id, lease, actor_id, entries)

    # -- one pass ------------------------------------------------------------------------------
    def tick(
        self,
        *,
        stop: threading.Event | None = None,
        on_due: Callable[[int], None] | None = None,
        on_done: Callable[[str, int], None] | None = None,
    ) -> TickReport:
        """Fire every timer due now that this runner owns, each exactly once; what was done.

        With ``split="runners"`` the tick registers itself for its duration
        (heartbeat written first, deleted at the end), so that concurrent
        ticks and long-running runners split the actors with it.

        Once ``stop`` is set, no fire starts: those in flight finish, and the tick returns,
        counting in ``left`` the due entries it listed and did not fire (they stay due).
        ``on_due(n)`` is called as each slice of the index is listed, with the entries due
        that this runner fires; ``on_done(actor_id, n)`` as each actor's fire ends, with its
        entries (on the thread that called ``tick``).
        """
        # The renewals are timed from before the heartbeat's first write (its expiry counts from
        # then) and go on while it is in flight: started once it returned, a first write
        # answered late (after 2/3 of the lease) left its first renewal too little time to land.
        joined = time.monotonic()
        stalled = False
        # (begun in the ``try``: an interrupt just after they began stops them in the
        # ``finally``; left, they renewed the heartbeat for the process's life)
        renewing: Callable[[bool], None] = _no_renewals
        try:
            renewals = self._renewals(joined)
            if renewals is not None:
                # (Their stop held before they begin: an interrupt as ``begin`` queued the first
                # timer on the IO loop, before the stop was ours, left them renewing for good.)
                renewing = renewals.stop
                renewals.begin()
            self._join()
            report = TickReport()
            due_by_ms = time.time() * 1000
            after: str | None = None
            elsewhere: set[str] = set()
            while True:
                # The due entries (not the future ones) a slice at a time, past the previous
                # slice (an entry that could not be fired is not met again): a backlog of
                # millions is not held at once. The first slice lists the runners beside: a
                # stalled store costs one request timeout here, not two in a row.
                try:
                    entries = self._list(
                        due_by_ms, _MAX_LISTED, refresh=after is None, report=report, after=after
                    )
                except StorageTimeoutError:
                    stalled = True
                    raise
                self._fire_slice(entries, report, elsewhere, stop=stop, on_due=on_due, on_done=on_done)
                report._trim()  # (a figure per timer fired: the newest, as run()'s totals keep)
                if len(entries) < _MAX_LISTED or (stop is not None and stop.is_set()):
                    return report
                after = entries[-1].object_key
        finally:
            try:
                # (ended before the heartbeat is deleted: a renewal then wrote it again; on a
                # stalled store, not waited for: the heartbeat is left to expire)
                renewing(not stalled)
            finally:
                # (Left even when Ctrl-C cut that wait short: the heartbeat then stayed a lease,
                # this runner's share unfired. The renewal still in flight had put its write in
                # ``Membership._writes`` as it began, before the stop saw it: the leave waits
                # for that write before the delete.)
                if stalled:  # a third request timeout in a row would tell nothing new
                    logger.warning(
                        "timer runner %s: the store did not answer; its heartbeat is left to expire "
                        "(within %g s)",
                        self.runner_id,
                        self.lease,
                    )
                else:
                    self._leave()

    def _fire_slice(
        self,
        entries: list[IndexEntry],
        report: TickReport,
        elsewhere: set[str],
        *,
        stop: threading.Event | None = None,
        on_due: Callable[[int], None] | None = None,
        on_done: Callable[[str, int], None] | None = None,
    ) -> None:
        """Fire the listed ``entries`` this runner owns (a tick's slice); counted in ``report``,
        the actors another runner owns added to ``elsewhere``; see :meth:`tick` for the rest."""
        report.listed += len(entries)
        groups: dict[str, list[IndexEntry]] = {}
        for entry in entries:
            if not self._in_shard(entry.actor_id):
                continue
            if not self._mine(entry.actor_id):
                elsewhere.add(entry.actor_id)
                continue
            groups.setdefault(entry.actor_id, []).append(entry)
            report.due += 1
        report.assigned_elsewhere = len(elsewhere)
        if not groups:
            return
        if on_due is not None:
            on_due(sum(len(group) for group in groups.values()))
        workers = min(self.concurrency, len(groups))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="vactor-timers")
        fire = carry_runtime(self._fire)

        def fire_unless_stopped(actor_id: str, group: list[IndexEntry]) -> TickReport | None:
            if stop is not None and stop.is_set():  # (queued when it came: left due)
                return None
            return fire(actor_id, group)[0]

        finished_all = False
        try:
            fires = {pool.submit(fire_unless_stopped, a, g): (a, len(g)) for a, g in groups.items()}
            # (on the main thread in slices: a timer method may take long, and a signal's
            # handler runs meanwhile)
            pending = set(fires)
            while pending:
                finished = _sync.wait_first(pending)
                pending -= finished
                for done in finished:  # (one that raised raises below, once all are done)
                    if on_done is not None and done.exception() is None and done.result() is not None:
                        on_done(*fires[done])
            for done, (_, count) in fires.items():  # (in the order listed)
                actor_report = done.result()
                if actor_report is None:
                    report.left += count
                else:
                    report.merge(actor_report)
            finished_all = True
        finally:
            # (interrupted, a KeyboardInterrupt: the fires in flight finish, the queued ones are
            # not started; they stay due)
            _stopped(pool, cancel=not finished_all)

    # -- long-running ----------------------------------------------------------------------------
    def run(self, stop: threading.Event, on_tick: Callable[[TickReport], Any] | None = None) -> TickReport:
        """Fire timers as they fall due until ``stop`` is set; the totals (of their lateness
        figures and errors, the newest 100,000 and 1,000).

        A listing thread reads the runners and the due index every ``poll``
        seconds and puts the entries this runner owns (due within
        ``horizon``) into a heap; this thread pops each as it falls due and
        hands the actor's group to a pool of ``concurrency`` threads. On stop,
        fires in flight finish (queued ones are left to the next runner), then
        the heartbeat is deleted. ``on_tick(report)`` is called after each
        listing, with what happened since the previous one.
        """
        state = _RunState()
        joined = time.monotonic()  # (renewals from here, beside the first write: see ``tick``)
        renewer = threading.Thread(
            target=carry_runtime(self._renew), args=(stop, joined), name="vactor-timer-heartbeat", daemon=True
        )
        lister = threading.Thread(
            target=carry_runtime(self._list_loop),
            args=(stop, state, on_tick),
            name="vactor-timer-lister",
            daemon=True,
        )
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="vactor-timers")
        try:
            if self.membership is not None:
                renewer.start()
            self._join()
            lister.start()
            self._dispatch(stop, state, pool)
        finally:
            try:
                stop.set()
                with state.cond:
                    state.cond.notify_all()
                _stopped(pool, cancel=True)  # fires in flight finish; queued ones are left
                with state.cond:
                    deleting = list(state.deleting)
                _sync.wait_futures(deleting, self.runtime.settings.deadline)
                join_threads([t for t in (lister, renewer) if t.is_alive()], None)
            finally:
                # (Left even when Ctrl-C cut those waits short, as a tick's end is: kept, the
                # heartbeat stayed a lease. A renewal the renewer had sent is in
                # ``Membership._writes``, which the leave waits for; one it sends as the stop
                # comes, its join cut short, may land after the delete: a lease, as before.)
                self._leave()
        with state.cond:
            total = state.total
            total.merge(state.since)
            total._trim()
        return total

    def _renewals(self, joined: float) -> _TickRenewals | None:
        """The renewals of a tick's heartbeat (one outlasting its lease was counted gone while
        it fired its share, and the others fired that share too), from ``begin`` until ``stop``,
        which (given True) waits for a renewal in flight (lease/3 at most); ``joined``: when the
        heartbeat's first write was sent (monotonic), see :meth:`_renew`. Timed on the IO loop
        (:class:`_TickRenewals`), not on a thread of the tick's own: most ticks end before the
        first renewal is due, and a thread started and joined per tick cost each about 1 ms.
        None: no membership, nothing to renew."""
        if self.membership is None:
            return None
        return _TickRenewals(self.runtime, self.membership, self.runner_id, joined)

    def _renew(self, stop: threading.Event, joined: float) -> None:
        """Renew the heartbeat every lease/3 (from the start of one renewal to the next), each
        renewal cut off at lease/3: bounded by ``Settings.deadline`` alone (30 s by default,
        more than a third of the default lease) and followed lease/3 after it ended, one
        stalled renewal let the heartbeat expire while this runner went on firing its share.
        The first is due lease/3 after ``joined``, when the first write was sent (monotonic):
        counted from when that write returned, one answered after 2/3 of the lease was renewed
        only once it had expired."""
        membership = self.membership
        assert membership is not None
        period = self.lease / 3
        due = joined + period
        while not stop.wait(max(0.0, due - time.monotonic())):
            due = _next_renewal(due, period, time.monotonic())
            try:
                self.runtime.run(membership.beat(within=period))
            except VactorError as exc:  # retried next period; meanwhile others may duplicate our work
                logger.warning("timer runner %s: could not renew its heartbeat: %s", self.runner_id, exc)

    def _list_loop(
        self, stop: threading.Event, state: _RunState, on_tick: Callable[[TickReport], Any] | None
    ) -> None:
        refreshed = -math.inf
        while not stop.is_set():
            started = time.monotonic()
            report = TickReport(runners=len(self.membership.live) if self.membership else 1)
            try:
                # The runners are listed at most every lease/10 (a graceful leave is seen within
                # that), beside the index listing.
                refresh = self.membership is not None and started - refreshed >= self.lease / 10
                if refresh:
                    refreshed = started
                listed_at = time.monotonic()
                due_by_ms = time.time() * 1000 + self.horizon * 1000
                after: str | None = None
                while True:
                    # A slice at a time, past the previous one while this runner holds less
                    # than a slice: entries it does not own (another shard's, whose runner is
                    # down; a dead runner's) filling the earliest slice starved its own.
                    entries = self._list(due_by_ms, _MAX_LISTED, refresh and after is None, report, after)
                    report.listed += len(entries)
                    self._take(state, entries, listed_at, report)
                    with state.cond:
                        full = len(state.held) >= _MAX_LISTED
                    if len(entries) < _MAX_LISTED or full or stop.is_set():
                        break
                    after = entries[-1].object_key
            except VactorError as exc:
                logger.warning("timer runner %s: listing the due index failed: %s", self.runner_id, exc)
                report.errors.append(str(exc))
            with state.cond:
                done, state.since = state.since, TickReport()
            report.merge(done)
            with state.cond:
                state.total.listed += report.listed
                state.total.due += report.due
                state.total.runners = report.runners
                state.total.merge(report)
                state.total._trim()
            if on_tick is not None:
                on_tick(report)
            stop.wait(max(0.0, self.poll - (time.monotonic() - started)))
        with state.cond:
            state.cond.notify_all()

    def _take(
        self, state: _RunState, entries: list[IndexEntry], listed_at: float, report: TickReport
    ) -> None:
        """Put the listed entries this runner owns and does not hold yet into the heap."""
        elsewhere: set[str] = set()
        with state.cond:
            for entry in entries:
                key = entry.object_key
                if key in state.held or key in state.deleted or not self._in_shard(entry.actor_id):
                    continue
                if not self._mine(entry.actor_id):
                    elsewhere.add(entry.actor_id)
                    continue
                state.held.add(key)
                heapq.heappush(state.heap, (entry.due_ms, key, entry))
                report.due += 1
            # A delete that finished before this listing started cannot show in later ones.
            state.deleted = {k: t for k, t in state.deleted.items() if t >= listed_at}
            state.cond.notify_all()
        report.assigned_elsewhere += len(elsewhere)

    def _dispatch(self, stop: threading.Event, state: _RunState, pool: ThreadPoolExecutor) -> None:
        coalesce_ms = self.coalesce * 1000
        while not stop.is_set():
            groups: dict[str, list[IndexEntry]] = {}
            with state.cond:
                now_ms = time.time() * 1000
                if not state.heap or state.heap[0][0] + coalesce_ms > now_ms:
                    wait = 0.25 if not state.heap else (state.heap[0][0] + coalesce_ms - now_ms) / 1000
                    state.cond.wait(min(0.25, max(0.001, wait)))
                    continue
                while state.heap and state.heap[0][0] <= now_ms:
                    _, key, entry = heapq.heappop(state.heap)
                    if not self._mine(entry.actor_id):  # the view changed: the new owner fires it
                        state.held.discard(key)
                        continue
                    groups.setdefault(entry.actor_id, []).append(entry)
            for actor_id, group in groups.items():
                pool.submit(carry_runtime(self._fire_held), state, actor_id, group)

    def _fire_held(self, state: _RunState, actor_id: str, group: list[IndexEntry]) -> None:
        """Fire one actor's group (a pool thread); its entries are deleted off the pool thread."""
        claims = self.split == "claims"
        try:
            if claims:
                report, done = self._fire(actor_id, group)
            else:
                report, done = _fire_actor(self.runtime, self.runner_id, None, actor_id, group, delete=False)
        except Exception as exc:  # never lose the pool thread; the entries are listed again
            logger.exception("timer runner %s: firing %r failed", self.runner_id, actor_id)
            report, done = TickReport(errors=[TickError(f"{actor_id}: {exc!r}", exc)]), []
        self._warn_once(state, report.errors)

        def finish(deleting: concurrent.futures.Future[None] | None = None) -> None:
            now = time.monotonic()
            with state.cond:
                for entry in group:
                    state.held.discard(entry.object_key)
                for entry in done:
                    state.deleted[entry.object_key] = now
                state.since.merge(report)
                if deleting is not None:
                    state.deleting.discard(deleting)

        if claims or not done:
            finish()
            return
        # The entries stay held until their deletes finish: a listing meanwhile must not fire them.
        deleting = _sync.submit(_delete_entries(self.runtime.store, done))
        with state.cond:
            state.deleting.add(deleting)
        deleting.add_done_callback(finish)

    def _warn_once(self, state: _RunState, errors: list[str]) -> None:
        """Log each error not logged before: a long-running runner's log is its output, and a
        timer that cannot be fired is tried at every poll (one line, not one a poll)."""
        with state.cond:
            new = [error for error in errors if error not in state.warned]
            if len(state.warned) + len(new) > _MAX_WARNED:
                state.warned.clear()
            state.warned.update(new)
        for error in new:
            logger.warning("timer runner %s: %s", self.runner_id, error)


def _next_renewal(due: float, period: float, now: float) -> float:
    """When the renewal after one due at ``due`` and starting ``now`` is due (monotonic): a
    period after ``due``, or after ``now`` when that is past. A late renewal (its timer or
    thread held up for more than a period: an IO loop blocked) replaces those missed; due
    ``now`` instead, the next followed it at once, one more heartbeat write back to back."""
    following = due + period
    return following if following > now else now + period


def _no_renewals(wait: bool) -> None:
    """The stop of renewals never begun."""


class _TickRenewals:
    """A tick's heartbeat renewals, as :meth:`TimerRunner._renew` makes them (every lease/3
    from ``joined``, when the first write was sent; each cut off at lease/3), timed by a timer
    of the IO loop from ``begin`` (apart from it, so that the tick holds ``stop`` before any
    timer exists): nothing runs, and no thread exists, until the first renewal is due. Each
    renewal is work of the runtime (:meth:`Runtime.bounded`: refused once it stopped, and
    waited for, then cancelled, by its shutdown), as a ``Runtime.run`` of the thread was."""

    def __init__(self, runtime: Runtime, membership: Membership, runner_id: str, joined: float) -> None:
        self._runtime = runtime
        self._membership = membership
        self._runner_id = runner_id
        self._period = membership.lease / 3
        self._loop = _sync.get_loop()
        self._lock = threading.Lock()
        # (under ``_lock``: the tick's thread stops what the loop's callbacks start)
        self._due = joined + self._period
        self._stopped = False
        self._timer: asyncio.TimerHandle | None = None
        #: settles when the renewal in flight ends (None: none in flight)
        self._flight: concurrent.futures.Future[None] | None = None

    def begin(self) -> None:
        """Time the first renewal (``stop`` before this: none is)."""
        self._loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        """(IO loop) Time the next renewal, unless stopped."""
        with self._lock:
            if not self._stopped:
                self._timer = self._loop.call_later(max(0.0, self._due - time.monotonic()), self._renew)

    def _renew(self) -> None:
        """(IO loop) The renewal's time came: start it, unless stopped meanwhile."""
        flight: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self._timer = None
            if self._stopped:
                return
            self._due = _next_renewal(self._due, self._period, time.monotonic())
            self._flight = flight
        task = self._loop.create_task(self._beat())
        task.add_done_callback(functools.partial(self._ended, flight))

    async def _beat(self) -> None:
        try:
            await self._runtime.bounded(self._membership.beat(within=self._period))
        except VactorError as exc:  # retried next period; meanwhile others may duplicate our work
            logger.warning("timer runner %s: could not renew its heartbeat: %s", self._runner_id, exc)

    def _ended(self, flight: concurrent.futures.Future[None], task: asyncio.Task[None]) -> None:
        """(IO loop) A renewal ended: time the next one, and tell a stop waiting for it."""
        if not task.cancelled() and task.exception() is not None:  # (not a VactorError: a fault)
            logger.warning(
                "timer runner %s: renewing its heartbeat failed: %r", self._runner_id, task.exception()
            )
        with self._lock:
            self._flight = None
        self._arm()
        flight.set_result(None)

    def stop(self, wait: bool) -> None:
        """No renewal starts from now; ``wait``: the one in flight, if any, ends first (a
        renewal landing after the heartbeat's delete wrote it again)."""
        with self._lock:
            self._stopped = True
            timer, flight = self._timer, self._flight
            self._timer = None
        if timer is not None:
            with contextlib.suppress(RuntimeError):  # (the loop closed: it runs nothing more)
                self._loop.call_soon_threadsafe(timer.cancel)  # (a handle is the loop's to cancel)
        if wait and flight is not None:
            _sync.wait_futures([flight])


#: errors a long-running runner remembers having logged (then it forgets them all, and may log
#: each once more)
_MAX_WARNED = 10_000


def _stopped(pool: ThreadPoolExecutor, *, cancel: bool) -> None:
    """Shut ``pool`` down once its tasks in flight have finished (``cancel``: the queued ones
    are cancelled); on the main thread waited for in slices (``_sync.wait_aside``), as fires
    may take long."""
    _sync.wait_aside(
        functools.partial(pool.shutdown, wait=True, cancel_futures=cancel), name="vactor-timers-stop"
    )


@dataclass
class _RunState:
    """What the listing thread, the dispatcher and the pool share (under ``cond``)."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    #: (due_ms, object key, entry) of owned entries waiting for their due time
    heap: list[tuple[int, str, IndexEntry]] = field(default_factory=list)
    #: object keys in the heap or being fired: a listing does not add them again
    held: set[str] = field(default_factory=set)
    #: object keys this runner deleted, and when (monotonic): a listing that began before is stale
    deleted: dict[str, float] = field(default_factory=dict)
    #: deletes of fired entries in flight (a graceful stop waits for them)
    deleting: set[concurrent.futures.Future[None]] = field(default_factory=set)
    #: the errors logged already (``TimerRunner._warn_once``)
    warned: set[str] = field(default_factory=set)
    #: fires finished since the last listing, and the totals
    since: TickReport = field(default_factory=TickReport)
    total: TickReport = field(default_factory=TickReport)


def fire_due_timers(
    *,
    runtime: Runtime | None = None,
    lease: float = DEFAULT_LEASE,
    runner_id: str | None = None,
    concurrency: int = 16,
    shard: tuple[int, int] | None = None,
    split: Split | None = None,
    claims: bool | None = None,
    stop: threading.Event | None = None,
    on_due: Callable[[int], None] | None = None,
    on_done: Callable[[str, int], None] | None = None,
) -> TickReport:
    """Fire every timer due now, each exactly once, and return what was done.

    Safe to run in many processes at once and to kill at any point. By
    default (``split="runners"``) the pass registers itself as a runner for
    its duration and takes its rendezvous share of the actors, beside the
    other live runners of its group; ``split="none"`` takes every due timer
    (``claims=False``, as before), ``split="claims"`` claims each actor
    (``claims=True``). ``shard=(i, n)`` keeps only the actors whose id hashes
    to ``i`` of ``n`` (e.g. one Dask task per shard). ``stop`` ends the pass early (the fires
    in flight finish; the report's ``left`` counts the due timers not fired, which stay due);
    ``on_due`` and ``on_done`` follow its progress: see :meth:`TimerRunner.tick`.
    """
    runner = TimerRunner(
        runtime,
        split=_split_of(split, claims),
        lease=lease,
        shard=shard,
        concurrency=concurrency,
        runner_id=runner_id,
    )
    return runner.tick(stop=stop, on_due=on_due, on_done=on_done)


def run_timers(
    *,
    poll: float = 1.0,
    stop: threading.Event | None = None,
    runtime: Runtime | None = None,
    lease: float = DEFAULT_LEASE,
    shard: tuple[int, int] | None = None,
    split: Split | None = None,
    claims: bool | None = None,
    concurrency: int = 16,
    runner_id: str | None = None,
    on_tick: Callable[[TickReport], Any] | None = None,
) -> TickReport:
    """Fire timers as they fall due until ``stop`` is set; the totals (see :meth:`TimerRunner.run`).

    Fires in flight finish before returning (graceful shutdown), and the
    runner's heartbeat is deleted so that the others take its actors at once.
    """
    runner = TimerRunner(
        runtime,
        split=_split_of(split, claims),
        lease=lease,
        shard=shard,
        concurrency=concurrency,
        runner_id=runner_id,
        poll=poll,
    )
    return runner.run(stop or threading.Event(), on_tick)


# -- repair ---------------------------------------------------------------------------------------


#: actor ids ``repair_timer_index()`` of every actor lists, then repairs, at a time, each in an
#: operation of its own (``Settings.deadline`` bounds each: some 50 LISTs, then a read of each)
_REPAIR_CHUNK = 1_000


def repair_timer_index(actor_ids: Iterable[str] | None = None, *, runtime: Runtime | None = None) -> int:
    """Write the due-index entry of every pending timer (of ``actor_ids``, default every actor).

    For entries lost to a crash between a commit and its index write.
    Without ``actor_ids`` it pages through the actor ids (a LIST per page, an actor
    with many steps skipped in one) and repairs them 1,000 at a time, each chunk
    listed once the one before is repaired, and each listing and each repair an
    operation of its own (``Settings.deadline`` bounds each, not the whole job): a
    job for a schedule, not a request path. Returns how many timers were (re)indexed.
    """
    runtime = runtime or get_runtime()

    async def read_extra(actor_id: str) -> dict[str, Any]:
        try:
            record = await runtime.core(actor_id).revalidate()
        except ActorNotFoundError:  # (objects but no step: a creation never committed)
            return {}
        return record.extra

    if actor_ids is not None:
        return runtime.run(repair_index(runtime.store, list(actor_ids), read_extra))
    # Run as one operation, the job had one deadline for every actor: past it (a bucket of a
    # few thousand actors), StorageTimeoutError, every time.
    ids = iter_actor_ids(runtime.store)
    written = 0
    try:
        while True:
            chunk = runtime.run(_next_ids(ids, _REPAIR_CHUNK))
            written += runtime.run(repair_index(runtime.store, chunk, read_extra))
            if len(chunk) < _REPAIR_CHUNK:
                return written
    finally:
        with contextlib.suppress(Exception):  # (one cut short mid-page is still running)
            runtime.run(ids.aclose())


async def _next_ids(ids: AsyncIterator[str], count: int) -> list[str]:
    """The next ``count`` ids of ``ids``, or what is left."""
    chunk: list[str] = []
    while len(chunk) < count:
        actor_id = await anext(ids, None)
        if actor_id is None:
            break
        chunk.append(actor_id)
    return chunk


# -- handle operations ----------------------------------------------------------------------------


def scheduling_call(
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    delay: float | None,
    at: float | None,
    key: str | None,
    every: float | None,
    idempotency_key: str | None,
    for_class: str | None = None,
) -> PendingCall:
    """The tiny internal call that schedules ``method(*args, **kwargs)`` from outside the actor
    (``for_class``: the class ``method`` is of; on an actor of another class nothing is
    scheduled, ``ActorClassChangedError``).

    Its future resolves to the timer's key once the timer is committed and indexed.
    """
    if key is not None:
        validate_timer_key(key)
    if at is None:
        assert delay is not None
        at = time.time() + float(delay)
    at = checked_due(float(at), None if every is None else float(every))
    spec = {"args": tuple(args), "kwargs": dict(kwargs), "at": float(at), "key": key, "every": every}
    call_id = uuid.uuid4().hex
    if idempotency_key is not None:
        call_id = uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex
    return PendingCall.by_value(
        SCHEDULE,
        (method,),
        spec,
        readonly=False,
        future=ActorFuture(),
        call_id=call_id,
        options=CallOptions(idempotency_key=idempotency_key),
        for_class=for_class,
    )


def list_timers(actor_id: str, *, runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """The actor's pending timers in its newest committed step, earliest first.

    ``VirtualActorNotInitializedError`` while this process creates the actor
    (``Settings(wait_for_init=False)``), as a read-only call made then: there is no committed
    step to read yet (``handle.ready()`` waits for it)."""
    runtime = runtime or get_runtime()
    if runtime.creating(actor_id) is not None:
        # (Read now, it met no actor: ActorNotFoundError, as though none were coming.)
        raise VirtualActorNotInitializedError(actor_id, runtime.store.describe())
    core = runtime.load(actor_id)
    record = runtime.run(core.revalidate())
    timers = pending_timers(record.extra)
    return [t.describe(record.serializer) for t in sorted(timers.values(), key=lambda t: (t.due, t.key))]


def cancel_timer(actor_id: str, key: str, *, runtime: Runtime | None = None) -> bool:
    """Cancel the actor's pending timer ``key`` (one commit); False if there was none (a read
    of the newest step, no commit, when nothing of this process may still schedule it).
    ``ActorDeletedError`` if the actor was deleted (its timers went with it)."""
    runtime = runtime or get_runtime()
    # As a writer call made through a handle: behind this process's pending creation of the
    # actor (``wait_for_init=False``), and failing with its exception. Sent at once, the cancel
    # met no actor (``ActorNotFoundError``).
    failed = runtime.wait_created(actor_id)
    if failed is not None:
        raise failed
    if _none_to_cancel(runtime, actor_id, key):
        return False
    call = PendingCall(CANCEL, (key,), {}, False, ActorFuture(), uuid.uuid4().hex)
    runtime.call(actor_id, call)
    return bool(call.future.result())


def _none_to_cancel(runtime: Runtime, actor_id: str, key: str) -> bool:
    """Whether the actor's newest step, read now (one GET when warm), has no timer ``key``
    while no call of this process that might schedule it is still to apply: the cancel is then
    a no-op, linearized at that read, and commits nothing (it wrote a step recording it).

    Sound because the read is of the newest step: a ``set_timer`` that returned before the
    cancel began committed before the read and is seen; one that commits after the read
    overlapped the cancel, which may be ordered before it. What this process has queued or
    is applying to the actor, a creation of it still pending, and a post of its own not yet
    applied (``CallPendingError``: the cancel must apply after it) would apply before a
    cancel committed now: any of them sends the cancel the usual way, as does a call made
    inside a writer method of the actor (refused there as before)."""
    if call_cycle(actor_id) is not None or runtime.creating(actor_id) is not None:
        return False
    core = runtime.core(actor_id)
    if not core.idle or actor_id in runtime.pending_posts:
        return False
    record = runtime.run(core.revalidate())
    if is_deleted(record):  # no timer left, and no actor: say so, as timers() and calls do
        raise deleted_error(core.log, record)
    return key not in pending_timers(record.extra)
