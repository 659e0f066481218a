"""Firing one actor's due timers: its ``FIRE`` calls, then the due-index entries done with.

Firing one actor's group: queue one ``FIRE`` per entry (they group-commit
as one step), then delete the entries whose timers fired or are gone. An
entry whose ``FIRE`` found nothing to fire is deleted only after a probe of
the newest step agrees (the cache may be behind a step that scheduled it).
With ``split="claims"`` the actor's claim (:mod:`vactor_cloud.timer_claims`) is taken
first and released after. :class:`~vactor_cloud.timer_runner.TimerRunner` calls
:func:`fire_actor` for each actor it owns; what it did is a
:class:`~vactor_cloud.timer_report.TickReport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid

from vactor_cloud import keys
from vactor_cloud.batch import PendingCall
from vactor_cloud.errors import (
    ActorDeletedError,
    ActorNotFoundError,
    NotFoundError,
    StorageError,
    VactorError,
)
from vactor_cloud.future import ActorFuture
from vactor_cloud.runtime import Runtime
from vactor_cloud.storage import ObjectStore
from vactor_cloud.timer_claims import claim_actor, cut_off_after, release_actor
from vactor_cloud.timer_report import TickError, TickReport
from vactor_cloud.timers import (
    FIRE,
    FireReport,
    IndexEntry,
    forget_entry,
    pending_timers,
)

__all__ = ["delete_entries", "fire_actor"]

logger = logging.getLogger("vactor_cloud")


# -- firing one actor's entries -------------------------------------------------------------------


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


def fire_actor(
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
            claim = runtime.run(
                cut_off_after(taking, lease / 3, keys.timer_claim_key(actor_id), "a timer claim")
            )
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
                runtime.run(delete_entries(store, entries))
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
            runtime.run(delete_entries(store, done))
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


async def delete_entries(store: ObjectStore, entries: list[IndexEntry]) -> None:
    async def one(entry: IndexEntry) -> None:
        forget_entry(store, entry)
        try:
            await store.delete(entry.object_key)
        except NotFoundError:
            pass
        except StorageError as exc:  # met again next tick, found gone, deleted then
            logger.debug("could not delete timer entry %s: %s", entry.object_key, exc)

    await asyncio.gather(*(one(e) for e in entries))
