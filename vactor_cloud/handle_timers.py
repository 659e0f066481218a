"""The timer operations of actor handles: schedule from outside the actor, list, cancel.

:class:`~vactor_cloud.handle.ActorHandle` calls these; firing the timers is
:mod:`vactor_cloud.timer_runner`'s.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from vactor_cloud.batch import CallOptions, PendingCall
from vactor_cloud.deletion import deleted_error, is_deleted
from vactor_cloud.errors import (
    VirtualActorNotInitializedError,
)
from vactor_cloud.future import ActorFuture
from vactor_cloud.reentrancy import call_cycle
from vactor_cloud.runtime import Runtime, get_runtime
from vactor_cloud.timers import (
    CANCEL,
    SCHEDULE,
    TimerInfo,
    checked_due,
    pending_timers,
    validate_timer_key,
)

__all__ = ["cancel_timer", "list_timers", "scheduling_call"]


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


def list_timers(actor_id: str, *, runtime: Runtime | None = None) -> list[TimerInfo]:
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
