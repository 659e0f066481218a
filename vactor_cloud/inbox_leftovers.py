"""The inbox objects a deleted actor leaves once applied: :func:`forget_applied_events`
deletes them, so that the next actor under the id does not apply them again.
"""

from __future__ import annotations

from vactor_cloud.dedup import StepDedup
from vactor_cloud.definition import lookup_local_class
from vactor_cloud.errors import IntegrityError
from vactor_cloud.ids import EVENT_KEY_PREFIX
from vactor_cloud.inbox_events import InboxEvent, event_keys, read_events
from vactor_cloud.keys import inbox_prefix
from vactor_cloud.lease import CLOCK_SKEW
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import StepRecord

__all__ = ["forget_applied_events"]


async def forget_applied_events(log: ActorLog, base: StepRecord) -> int:
    """Delete the inbox objects of events applied by the actor whose last step is ``base`` (an
    actor deleted: ``deletion.last_live_step``), found in ``base``'s idempotency table; how
    many went.

    An inbox object is deleted only after the commit that applied its event, so a writer that
    died in between leaves it; the actor's next fold knows it by its table, but the next actor
    under the id has no table and would apply it again. One LIST; only when the inbox holds
    events, ``base``'s table is read, and then only the events whose ids the table holds (a
    backlog waiting unapplied is not read). An event stamped (by its sender's clock) after
    ``base`` is left: it may be one sent for the next actor, under an id the old actor had
    applied. Its sender's clock and ``base``'s writer's disagree, though: an event stamped
    within ``CLOCK_SKEW`` of ``base`` is told by its call id instead, looked up in the last
    steps (``_applied_in_last_steps``), so that a sender's clock running ahead does not leave
    an applied object for the next actor (nor one behind delete an event sent again for it).
    Events waiting unapplied stay for the next actor, as documented. Best effort (the
    delete's clean-up): an object left is applied again. A pickled table of a class this
    process does not define is not read (``IntegrityError``): nothing from storage is
    unpickled for it.
    """
    prefix = inbox_prefix(log.actor_id)
    keys = event_keys(prefix, await log.store.list(prefix))
    if not keys:
        return 0
    # The serializer comes from the class, never from the step (docs/security.md): a class
    # not defined in this process is trusted to say JSON only, which runs no code.
    defined = lookup_local_class(base.class_ref.name)
    serializer = defined.serializer if defined is not None else "json"
    table = await StepDedup(log, base, serializer).load()
    ids = {key.rpartition("\x00")[2] for key in table.keys(EVENT_KEY_PREFIX)}
    events = await read_events(log.store, [k for k in keys if k[len(prefix) :] in ids], log.signing_key)
    recorded = [e for e in events if table.holds(e.dedup_key)]
    near = [e for e in recorded if abs(e.time - base.time) <= CLOCK_SKEW]
    found, complete = await _applied_in_last_steps(log, base, near) if near else (set(), False)
    # Every step that could have applied them read: one whose call id none holds is another event.
    told = {e.key for e in near} if complete else set()
    applied = {
        e.key: e.version
        for e in recorded
        if e.call_id in found or (e.time <= base.time and e.key not in told)
    }
    if applied:
        # (each only while at the version read: an event sent again meanwhile stays)
        await log.store.delete_unchanged(applied)
    return len(applied)


#: the most steps ``_applied_in_last_steps`` reads back from a deleted actor's last step
_LOOKBACK_STEPS = 256


async def _applied_in_last_steps(
    log: ActorLog, base: StepRecord, events: list[InboxEvent]
) -> tuple[set[str], bool]:
    """The call ids of ``events`` (each stamped within ``CLOCK_SKEW`` of ``base``) that the
    steps up to ``base`` applied, and whether those steps were all read.

    A step written before an event was sent cannot have applied it; with clocks within
    ``CLOCK_SKEW`` of each other, neither can one stamped more than that before the event. So
    the steps are read from ``base`` down to one stamped that long before the earliest event
    (or the actor's first step): an event whose call id none of them holds is another one
    sent under the id. Cut short (a step compacted or damaged, or ``_LOOKBACK_STEPS`` read),
    the reads tell only what they found (``complete`` False)."""
    wanted = {e.call_id for e in events}
    earliest = min(e.time for e in events) - CLOCK_SKEW
    found: set[str] = set()
    record = base
    for _ in range(_LOOKBACK_STEPS):
        found.update(call.call_id for call in record.calls if call.call_id in wanted)
        if found == wanted or record.time < earliest or record.parent is None:
            return found, True
        try:
            parent = await log.read_step(record.parent)
        except IntegrityError:
            parent = None
        if parent is None:
            return found, False
        record = parent
    return found, False
