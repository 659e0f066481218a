"""Firing due timers, and the timer operations of handles (schedule from outside, list, cancel).

One code path for every runner: :func:`fire_due_timers` (``vc.fire_due_timers()``,
``vactor timers tick``) fires what is due now and returns; :func:`run_timers`
(``vactor timers run``) calls it every ``poll`` seconds until stopped.

One tick:

1. LIST the due index (``timers/``), earliest first; entries due by now are
   grouped by actor (every listed entry is remembered, so the actors' next
   commits in this process need not write them again).
2. For each actor, a *claim*: a create-only put of ``timer-claims/<actor>``
   holding a lease; an expired lease is taken over with an if-match put.
   Runners that lose the claim skip the actor: several runners split the
   work without a coordinator. Claims only save work; they are not what
   makes firing exactly once.
3. Queue one ``FIRE`` call per entry on the actor: they group-commit as one
   step, which removes each due timer and applies its call (see
   :mod:`vactor_cloud.timers`): exactly once, whatever other runner raced.
4. Delete the entries whose timers fired or were gone, then the claim.

A runner killed at any point leaves either a claim (its lease expires),
entries whose timers already fired (met again, found gone, deleted), or
entries not yet fired (fired by the next tick after the lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vactor_cloud import keys
from vactor_cloud.batch import CallOptions, PendingCall
from vactor_cloud.errors import (
    ActorNotFoundError,
    AlreadyExistsError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    VactorError,
)
from vactor_cloud.future import ActorFuture
from vactor_cloud.runtime import Runtime, get_runtime
from vactor_cloud.storage import IfMatch, ObjectStore
from vactor_cloud.timers import (
    CANCEL,
    FIRE,
    SCHEDULE,
    FireReport,
    IndexEntry,
    forget_entry,
    list_index,
    pending_timers,
    remember_listed,
    repair_index,
    validate_timer_key,
)

__all__ = [
    "TickReport",
    "cancel_timer",
    "fire_due_timers",
    "list_timers",
    "repair_timer_index",
    "run_timers",
    "scheduling_call",
]

logger = logging.getLogger("vactor_cloud")

#: how long a runner's claim on an actor holds before another runner may take over
DEFAULT_LEASE = 30.0


@dataclass
class TickReport:
    """What one :func:`fire_due_timers` pass did."""

    listed: int = 0
    due: int = 0
    fired: int = 0
    #: entries whose timer was gone (fired by someone else, cancelled, rescheduled): dropped
    stale: int = 0
    #: actors skipped because another runner holds their claim
    claimed_elsewhere: int = 0
    errors: list[str] = field(default_factory=list)
    #: seconds between each fired timer's due time and its commit
    lateness: list[float] = field(default_factory=list)

    def merge(self, other: TickReport) -> None:
        self.fired += other.fired
        self.stale += other.stale
        self.claimed_elsewhere += other.claimed_elsewhere
        self.errors += other.errors
        self.lateness += other.lateness


# -- claims ---------------------------------------------------------------------------------------


async def claim_actor(store: ObjectStore, actor_id: str, runner: str, lease: float) -> bool:
    """Take this runner's lease on ``actor_id``'s due timers; False if another runner holds one."""
    key = keys.timer_claim_key(actor_id)
    body = json.dumps({"runner": runner, "until": time.time() + lease}).encode()
    for _ in range(2):
        try:
            await store.put(key, body, mode="create")
            return True
        except AlreadyExistsError:
            pass
        try:
            blob = await store.get(key)
        except NotFoundError:
            continue  # released meanwhile: try to create it again
        try:
            held = json.loads(blob.data)
            live = float(held["until"]) > time.time() and held.get("runner") != runner
        except (ValueError, KeyError, TypeError):
            live = False  # unreadable: treat as expired
        if live:
            return False
        try:
            await store.put(key, body, mode=IfMatch(blob.version))
            return True
        except (PreconditionFailedError, NotFoundError):
            return False
    return False


async def release_actor(store: ObjectStore, actor_id: str) -> None:
    try:
        await store.delete(keys.timer_claim_key(actor_id))
    except StorageError as exc:  # the lease expires by itself
        logger.debug("could not release the timer claim on %r: %s", actor_id, exc)


# -- firing ---------------------------------------------------------------------------------------


def _shard_of(actor_id: str, count: int) -> int:
    return zlib.crc32(actor_id.encode("utf-8")) % count


def fire_due_timers(
    *,
    runtime: Runtime | None = None,
    lease: float = DEFAULT_LEASE,
    runner_id: str | None = None,
    concurrency: int = 16,
    shard: tuple[int, int] | None = None,
    claims: bool = True,
) -> TickReport:
    """Fire every timer due now, each exactly once, and return what was done.

    Safe to run in many processes at once (they split the actors through
    claims) and to kill at any point. ``shard=(i, n)`` takes only the actors
    whose id hashes to ``i`` of ``n`` (static partitioning, e.g. one Dask
    task per shard); without it, claims alone split the work. ``claims=False``
    skips the claim objects (two requests per actor): for runners that own
    their shard alone; two runners on one shard then only duplicate work,
    never a firing.
    """
    runtime = runtime or get_runtime()
    store = runtime.store
    runner = runner_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    entries = runtime.run(list_index(store))
    remember_listed(store, entries)
    now_ms = time.time() * 1000
    report = TickReport(listed=len(entries))
    groups: dict[str, list[IndexEntry]] = {}
    for entry in entries:
        if entry.due_ms > now_ms:
            break  # sorted by due time
        if shard is not None and _shard_of(entry.actor_id, shard[1]) != shard[0]:
            continue
        groups.setdefault(entry.actor_id, []).append(entry)
        report.due += 1
    if not groups:
        return report
    workers = max(1, min(concurrency, len(groups)))
    with ThreadPoolExecutor(workers, thread_name_prefix="vactor-timers") as pool:
        fire = functools.partial(_fire_actor, runtime, runner, lease if claims else None)
        for part in pool.map(lambda item: fire(*item), groups.items()):
            report.merge(part)
    return report


def _fire_actor(
    runtime: Runtime, runner: str, lease: float | None, actor_id: str, entries: list[IndexEntry]
) -> TickReport:
    store = runtime.store
    report = TickReport()
    try:
        if lease is not None and not runtime.run(claim_actor(store, actor_id, runner, lease)):
            report.claimed_elsewhere += 1
            return report
    except VactorError as exc:
        report.errors.append(f"{actor_id}: claim: {exc}")
        return report
    done: list[IndexEntry] = []
    try:
        core = runtime.core(actor_id)
        try:
            runtime.load(actor_id)
        except ActorNotFoundError:
            done = list(entries)  # the actor is gone (or never was): nothing to fire
            report.stale += len(entries)
            entries = []
        calls = [PendingCall(FIRE, (e.key,), {}, False, ActorFuture(), uuid.uuid4().hex) for e in entries]
        for call in calls:
            core.submit(call)
        for entry, call in zip(entries, calls, strict=True):
            core.help(call.future, None)
            try:
                outcome = call.future.result()
            except Exception as exc:  # the commit failed: the entry stays for the next tick
                report.errors.append(f"{actor_id}/{entry.key}: {exc}")
                continue
            done.append(entry)
            assert isinstance(outcome, FireReport)
            if outcome.fired:
                report.fired += 1
                report.lateness.append(time.time() - entry.due_ms / 1000)
                if not outcome.ok:
                    logger.warning("timer %s of %r raised: %s", entry.key, actor_id, outcome.error)
            else:
                report.stale += 1
        runtime.run(_delete_entries(store, done))
    except VactorError as exc:
        report.errors.append(f"{actor_id}: {exc}")
    finally:
        if lease is not None:
            with contextlib.suppress(VactorError):
                runtime.run(release_actor(store, actor_id))
    return report


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


def run_timers(
    *,
    poll: float = 1.0,
    stop: threading.Event | None = None,
    runtime: Runtime | None = None,
    lease: float = DEFAULT_LEASE,
    shard: tuple[int, int] | None = None,
    claims: bool = True,
    on_tick: Any = None,
) -> TickReport:
    """Fire due timers every ``poll`` seconds until ``stop`` is set; the totals.

    A tick in progress finishes before returning (graceful shutdown).
    """
    stop = stop or threading.Event()
    runner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    total = TickReport()
    while not stop.is_set():
        started = time.monotonic()
        try:
            tick = fire_due_timers(runtime=runtime, lease=lease, runner_id=runner, shard=shard, claims=claims)
        except VactorError as exc:
            logger.warning("timer tick failed: %s", exc)
            tick = TickReport(errors=[str(exc)])
        total.listed += tick.listed
        total.due += tick.due
        total.merge(tick)
        if on_tick is not None:
            on_tick(tick)
        stop.wait(max(0.0, poll - (time.monotonic() - started)))
    return total


# -- repair ---------------------------------------------------------------------------------------


def repair_timer_index(actor_ids: Iterable[str] | None = None, *, runtime: Runtime | None = None) -> int:
    """Write the due-index entry of every pending timer (of ``actor_ids``, default every actor).

    For entries lost to a crash between a commit and its index write.
    Without ``actor_ids`` it lists every key under ``actors/``: a job for a
    schedule, not a request path. Returns how many timers were (re)indexed.
    """
    runtime = runtime or get_runtime()

    async def actors() -> list[str]:
        found: dict[str, None] = {}
        for key in await runtime.store.list(keys.ACTORS):
            actor_id = keys.actor_id_of(key)
            if actor_id is not None and keys.step_of(key) is not None:
                found[actor_id] = None
        return list(found)

    async def read_extra(actor_id: str) -> dict[str, Any]:
        try:
            record = await runtime.core(actor_id).revalidate()
        except ActorNotFoundError:
            return {}
        return record.extra

    async def repair() -> int:
        ids = list(actor_ids) if actor_ids is not None else await actors()
        return await repair_index(runtime.store, ids, read_extra)

    return runtime.run(repair())


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
) -> PendingCall:
    """The tiny internal call that schedules ``method(*args, **kwargs)`` from outside the actor.

    Its future resolves to the timer's key once the timer is committed and indexed.
    """
    if key is not None:
        validate_timer_key(key)
    if at is None:
        assert delay is not None
        at = time.time() + float(delay)
    if not math.isfinite(at):
        raise ValueError(f"the due time must be finite, got {at!r}")
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
    )


def list_timers(actor_id: str, *, runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """The actor's pending timers in its newest committed step, earliest first."""
    runtime = runtime or get_runtime()
    core = runtime.load(actor_id)
    record = runtime.run(core.revalidate())
    timers = pending_timers(record.extra)
    return [t.describe(record.serializer) for t in sorted(timers.values(), key=lambda t: (t.due, t.key))]


def cancel_timer(actor_id: str, key: str, *, runtime: Runtime | None = None) -> bool:
    """Cancel the actor's pending timer ``key`` (one commit); False if there was none."""
    runtime = runtime or get_runtime()
    call = PendingCall(CANCEL, (key,), {}, False, ActorFuture(), uuid.uuid4().hex)
    runtime.call(actor_id, call)
    return bool(call.future.result())
