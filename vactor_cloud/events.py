"""External events: send them to an actor, apply them exactly once, wait for them.

::

    @virtual_actor
    class Order:
        @virtual_actor.on_event("paid")
        def on_paid(self, payload):
            self.paid = payload["amount"]
            return self.paid

    send_event("order-7", "paid", {"amount": 30}, event_id="stripe-evt-123")
    Order.get_or_create("order-7").process_events()          # or any writer call
    handle.wait_for_event("paid", timeout=10)                 # -> 30

Guarantees (the inbox protocol itself is described in ``inbox.py``):

* ``send_event`` costs one create-only PUT (plus, the first time this
  process sends to an actor it has not loaded, one LIST to check that the
  actor exists). It never waits for the actor's writers. Sending the same
  ``event_id`` twice stores it once; a send whose answer was lost is retried
  as the same object, so one call is one event.
* Each event is applied exactly once, by the handler marked
  ``@virtual_actor.on_event(name)``, in inbox order, folded into the actor's
  next commit: any writer call, ``process_events()``, ``wait_for_event()``
  or ``vactor events drain``. The handler's result (or exception) is
  recorded in that same commit; its mutations are discarded if it raises.
* An event nobody handles stays in the inbox and is listed by
  ``vactor events ls``; it is never dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

from vactor_cloud import _sync
from vactor_cloud.batch import PendingCall
from vactor_cloud.dedup import Outcome, StepDedup, delivered
from vactor_cloud.deletion import deleted_error, is_deleted
from vactor_cloud.errors import (
    ActorDeletedError,
    ActorNotFoundError,
    FormatVersionError,
    IntegrityError,
    ReentrantCallError,
    RetryableStorageError,
    RuntimeShutdownError,
)
from vactor_cloud.ids import event_dedup_key, validate_event_id, validate_event_name
from vactor_cloud.inbox import PROCESS_EVENTS, PROCESS_MORE_EVENTS, ActorInbox
from vactor_cloud.inbox_events import encode_event, event_handlers, put_event, serialize_payload
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import StepRecord
from vactor_cloud.reentrancy import call_cycle
from vactor_cloud.runtime import Runtime, get_runtime

__all__ = [
    "applied_event",
    "process_events",
    "process_events_async",
    "send_event",
    "send_event_async",
    "wait_for_event",
    "wait_for_event_async",
]

#: actors this process knows to exist, per runtime, the most recently used
#: ``Settings.max_cached_actors`` of them: one more is read on its next send (HEAD and the newest
#: step), no more; a delete made here drops its id (``forget_existing``)
_existing: weakref.WeakKeyDictionary[Runtime, OrderedDict[str, None]] = weakref.WeakKeyDictionary()
#: process_events() gives up after this many commits in one call (MAX_EVENTS_PER_COMMIT each)
_MAX_ROUNDS = 1000


def _prepare(name: str, payload: Any, event_id: str | None, serializer: str) -> tuple[str, bytes]:
    validate_event_name(name)
    event_id = uuid.uuid4().hex if event_id is None else validate_event_id(event_id)
    return event_id, serialize_payload(payload, serializer)


async def _actor_exists(runtime: Runtime, actor_id: str) -> bool:
    """Whether ``actor_id`` holds an actor; ``ActorDeletedError`` if its newest step is a
    tombstone. Steps listed are not enough: a deleted actor's stay until a compaction, and its
    events would wait for whatever actor is created under the id next."""
    core = runtime.core(actor_id)
    known = _existing.setdefault(runtime, OrderedDict())
    record = core.record
    if record is not None and not is_deleted(record):
        return True  # (another process's delete since is a send that raced it: see send_event)
    if record is None and actor_id in known:
        known.move_to_end(actor_id)
        return True
    # Read from HEAD (a tombstone cached here may be followed by a creation, and by steps a
    # compaction deleted since: a probe from it would stop short and see "deleted").
    newest = await core.log.load_latest(await core.log.read_head())
    if newest is None:
        return False
    if is_deleted(newest):
        known.pop(actor_id, None)
        raise deleted_error(core.log, newest)
    known[actor_id] = None
    while len(known) > runtime.settings.max_cached_actors:
        known.popitem(last=False)
    return True


def forget_existing(runtime: Runtime, actor_id: str) -> None:
    """``actor_id`` was deleted by this process: its next send checks the store again."""
    known = _existing.get(runtime)
    if known is not None:
        known.pop(actor_id, None)


async def _send(
    actor_id: str, name: str, event_id: str, payload: bytes, serializer: str, create: bool
) -> str:
    runtime = get_runtime()
    if not create and not await _actor_exists(runtime, actor_id):
        raise ActorNotFoundError(actor_id, runtime.store.describe())
    signing_key = runtime.settings.signing_key
    # Encoded once: every attempt creates the same object (see put_event).
    key, data = encode_event(actor_id, event_id, name, payload, serializer, signing_key)
    await put_event(runtime.store, key, data, name=name, signing_key=signing_key)
    _inbox(runtime, actor_id).signal()
    return event_id


def send_event(
    actor_id: str,
    name: str,
    payload: Any = None,
    *,
    event_id: str | None = None,
    create: bool = False,
    serializer: str = "json",
) -> str:
    """Put event ``name`` with ``payload`` into actor ``actor_id``'s inbox; return its event id.

    Give ``event_id`` (a webhook's delivery id, a message id) to make
    retried sends safe: an event id is stored once and applied once (within
    the dedup window, even after it left the inbox). Without it a fresh id
    is generated and every call is a new event. Either way the id and the
    object are chosen once per call: a put whose answer was lost is retried
    as the same object (one event); when every attempt fails,
    ``EventInDoubtError.event_id`` is the id to send again with. An id
    already waiting under another name raises ``ValueError`` (nothing stored).

    ``ActorNotFoundError`` if the actor does not exist, unless
    ``create=True``: the event then waits in the inbox and is applied after
    the actor is created (by ``get_or_create``), at its first commit. A
    deleted actor (``delete_actor``) does not exist: ``ActorDeletedError``,
    nothing stored, unless ``create=True`` (then the next actor created under
    the id applies it). A process that has the actor cached from before
    another process deleted it does not read the store again to send: its
    event raced the delete, and waits for the next actor as events sent
    before the delete do.

    ``serializer``: ``"json"`` (default; plain data, readable by actors using
    either serializer) or ``"pickle"`` (any Python object; refused, and
    kept, by actors using the json serializer). A payload that cannot be
    serialized raises ``StateSerializationError`` before anything is written.
    """
    event_id, data = _prepare(name, payload, event_id, serializer)
    return get_runtime().run(
        _send(actor_id, name, event_id, data, serializer, create), hint=_resend(event_id)
    )


async def send_event_async(
    actor_id: str,
    name: str,
    payload: Any = None,
    *,
    event_id: str | None = None,
    create: bool = False,
    serializer: str = "json",
) -> str:
    """Async twin of :func:`send_event`; awaitable from any event loop."""
    event_id, data = _prepare(name, payload, event_id, serializer)
    coro = _send(actor_id, name, event_id, data, serializer, create)
    return await asyncio.wrap_future(_sync.submit(get_runtime().bounded(coro, hint=_resend(event_id))))


def _resend(event_id: str) -> str:
    return (
        f"the event may or may not have been written: send it again with event_id={event_id!r} "
        "(an event id is applied once)"
    )


def _inbox(runtime: Runtime, actor_id: str) -> ActorInbox:
    inbox = runtime.core(actor_id).inbox
    assert isinstance(inbox, ActorInbox)
    return inbox


# -- applying ------------------------------------------------------------------------------
async def _process(actor_id: str) -> int:
    runtime = get_runtime()
    core = runtime.core(actor_id)
    await core.ensure_loaded()
    total = 0
    for n in range(_MAX_ROUNDS):
        future: Future[int] = Future()
        core.submit(PendingCall(_marker(n), (), {}, False, future, uuid.uuid4().hex))
        applied = await asyncio.wrap_future(future)
        total += applied
        # Done unless the fold left work it saw: a commit's worth chosen (it may have applied
        # fewer: a handler raising SystemExit is excluded), or an event whose place in the
        # order changed when it was read again (it waits for the next fold).
        if not _inbox(runtime, actor_id).more_to_do(applied):
            break
    inbox = _inbox(runtime, actor_id)
    left = await runtime.bounded(inbox.wait_some_deleted(), hint=_deleting(total))
    while left:  # (see _process_here)
        left = await runtime.bounded(inbox.wait_some_deleted(left), hint=_deleting(total))
    return total


def _marker(round: int) -> str:
    """The marker call of ``process_events``'s commit ``round``: the first lists the inbox; the
    others go on with what it found (and list again only where a fold asks for it: another
    process committed meanwhile, a listing left events unread), so that a commit of a drain
    does not list, nor sort, the whole backlog again."""
    return PROCESS_EVENTS if round == 0 else PROCESS_MORE_EVENTS


def _deleting(total: int) -> str:
    return (
        f"process_events applied {total} event(s); deleting them from the inbox did not finish and "
        "goes on in the background (an applied event found again is skipped, never applied twice)"
    )


def process_events(actor_id: str) -> int:
    """Apply every pending event of ``actor_id`` now; return how many this call applied.

    Each is applied exactly once (events another process applied meanwhile
    are only cleaned up), and removed from the inbox after its commit.
    Events without a handler stay. ``ActorNotFoundError`` if the actor does
    not exist.

    Each commit is bounded by ``Settings.deadline``, not the whole drain: a
    backlog whose reads take longer is read over several commits (none applied
    before all are read), then applied in commits of up to 256. It returns once
    the deletes of the events it applied are done, waited for a round at a time:
    ``StorageTimeoutError`` when one commit, or one round of deletes, takes longer
    than the deadline; the events committed before stay applied (the next call
    goes on from there), and the deletes go on in the background.
    """
    _refuse_own_writer(actor_id, "process_events")
    return _process_here(get_runtime(), actor_id, None)


def _process_here(runtime: Runtime, actor_id: str, timeout: float | None) -> int:
    """:func:`_process` for a plain thread, which applies the events itself whenever nobody else
    does (caller runs, as ``run()`` does). Handed to the pool alone, the commit waited for a pool
    thread, and a pool thread calling this from an actor method (``run_async``) waited for it:
    with every pool thread doing so, forever. ``timeout``: stop waiting then (a commit queued
    goes on in the background; one this thread runs is finished first)."""
    core = runtime.core(actor_id)
    runtime.run(core.ensure_loaded())
    ends = math.inf if timeout is None else time.monotonic() + timeout
    total = 0
    for n in range(_MAX_ROUNDS):
        future: Future[int] = Future()
        core.submit(PendingCall(_marker(n), (), {}, False, future, uuid.uuid4().hex))
        core.help(future, None if ends == math.inf else max(0.0, ends - time.monotonic()))
        if not future.done():
            return total
        applied = future.result()
        total += applied
        if not _inbox(runtime, actor_id).more_to_do(applied):  # (see _process)
            break
    # The deletes of the events applied, a round at a time, each within the deadline (all of a
    # backlog's within it took longer than its reads, on a store that deletes one key a request);
    # with a ``timeout``, until then at most (they go on in the background)
    inbox = _inbox(runtime, actor_id)
    left = runtime.run(inbox.wait_some_deleted(), hint=_deleting(total))
    while left and time.monotonic() < ends:
        left = runtime.run(inbox.wait_some_deleted(left), hint=_deleting(total))
    return total


async def process_events_async(actor_id: str) -> int:
    """Async twin of :func:`process_events`."""
    _refuse_own_writer(actor_id, "process_events_async")
    return await asyncio.wrap_future(_sync.submit(_process(actor_id)))


def _refuse_own_writer(actor_id: str, what: str) -> None:
    """``ReentrantCallError`` when a writer method of ``actor_id`` runs on this thread: applying
    events commits on that actor, which would wait for the method, which waits for it."""
    cycle = call_cycle(actor_id)
    if cycle is not None:
        raise ReentrantCallError(
            f"{what}() of actor {actor_id!r} was called while a writer method of it runs on this "
            f"same thread (a call cycle {cycle}): applying events commits on that actor, which "
            "waits for the method, so it would wait for itself; nothing was applied. Events are "
            "applied with the actor's next commit anyway: call it after the method has returned"
        )


async def applied_event(
    log: ActorLog, record: StepRecord, name: str, event_id: str | None = None, *, serializer: str
) -> Outcome | None:
    """The recorded outcome of the newest applied event ``name`` (or of ``event_id``) as of ``record``.

    Looks in the idempotency table (read through ``log``), so it knows events
    applied within the dedup window. ``serializer`` is the actor class's
    (never the step's own word). The outcome is the caller's own copy: the
    table this process decoded stays cached, and is what the next caller reads.
    """
    table = await StepDedup(log, record, serializer).load()
    key: str | None = event_dedup_key(name, event_id if event_id is not None else "")
    if event_id is None:
        key = table.newest_key(event_dedup_key(name, ""))
    if key is None:
        return None
    outcome = (await table.fetch([key])).get(key)
    return None if outcome is None else delivered(outcome)


class _Blips:
    """Transient storage errors (and reads damaged in transit) met by a wait: the wait polls on
    through them, as it does while the event is not applied yet, until they have lasted
    ``Settings.deadline`` in a row (then the last one is raised: the store is down), or until
    3 reads in a row were damaged (damaged at rest: reading again will not help)."""

    def __init__(self, runtime: Runtime) -> None:
        self.limit = runtime.settings.deadline
        self.since: float | None = None
        self.damaged = 0

    def absorb(self, exc: Exception) -> None:
        if isinstance(exc, FormatVersionError) or not isinstance(exc, RetryableStorageError | IntegrityError):
            raise exc
        if not isinstance(exc, RetryableStorageError):
            self.damaged += 1
            if self.damaged >= 3:
                raise exc
        now = time.monotonic()
        if self.since is None:
            self.since = now
        elif now - self.since >= self.limit:
            raise exc

    def cleared(self) -> None:
        self.since = None
        self.damaged = 0


async def _wait(actor_id: str, name: str, timeout: float | None, event_id: str | None) -> Any:
    runtime = get_runtime()
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    delay = 0.02
    blips = _Blips(runtime)
    why = ""  # what the last look found that keeps the event from applying (see _remaining)
    while True:
        _check_open(runtime, actor_id, name)
        try:
            # The waiter drives the inbox itself: an idle actor has no writer to do it. Applying
            # queues behind a writer method of the actor that is running: bounded by the timeout
            # (cut off, it goes on in the background; the newest step is still looked at).
            await _by(_process(actor_id), deadline)
            outcome = await _applied_now(runtime, actor_id, name, event_id)
            why = _unhandled(runtime, actor_id, name)
        except RuntimeShutdownError as exc:
            # (Shut down while a poll ran: the error names the wait, not the poll's inner call.)
            raise _shut_down(actor_id, name) from exc
        except ActorDeletedError as exc:
            raise _deleted_while_waiting(exc, name) from None
        except ActorNotFoundError:
            # Not created yet: an event sent with create=True applies at its first commit.
            blips.cleared()
            outcome, why = None, _not_created(actor_id)
        except Exception as exc:  # (events apply exactly once: applying them again is safe)
            blips.absorb(exc)
            outcome = None
        else:
            blips.cleared()
        if outcome is not None:
            return outcome.unwrap()
        remaining = _remaining(deadline, actor_id, name, timeout, event_id, why)
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 1.0)


def _wait_here(
    runtime: Runtime, actor_id: str, name: str, timeout: float | None, event_id: str | None
) -> Any:
    """:func:`_wait` for a plain thread, applying the events itself (see :func:`_process_here`)."""
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    delay = 0.02
    blips = _Blips(runtime)
    why = ""  # what the last look found that keeps the event from applying (see _remaining)
    while True:
        _check_open(runtime, actor_id, name)
        try:
            _process_here(
                runtime, actor_id, None if deadline == math.inf else max(0.0, deadline - time.monotonic())
            )
            outcome = runtime.run(_applied_now(runtime, actor_id, name, event_id))
            why = _unhandled(runtime, actor_id, name)
        except RuntimeShutdownError as exc:
            raise _shut_down(actor_id, name) from exc  # (see _wait)
        except ActorDeletedError as exc:
            raise _deleted_while_waiting(exc, name) from None
        except ActorNotFoundError:  # (see _wait)
            blips.cleared()
            outcome, why = None, _not_created(actor_id)
        except Exception as exc:  # (see _wait)
            blips.absorb(exc)
            outcome = None
        else:
            blips.cleared()
        if outcome is not None:
            return outcome.unwrap()
        remaining = _remaining(deadline, actor_id, name, timeout, event_id, why)
        _sync.sleep(min(delay, remaining))  # (in slices on the main thread)
        delay = min(delay * 2, 1.0)


def _deleted_while_waiting(exc: ActorDeletedError, name: str) -> ActorDeletedError:
    """The wait for an event of a deleted actor ends (it waited for ever, an actor that does not
    exist *yet* being what it waits through): nothing applies events on a tombstone."""
    exc.add_note(
        f"stopped waiting for event {name!r}: a deleted actor applies no events. Events still in its "
        "inbox stay there and are applied by the next actor created under the id, if any; an "
        "event applied before the delete went with the actor's records"
    )
    return exc


def _check_open(runtime: Runtime, actor_id: str, name: str) -> None:
    if runtime.closed:
        raise _shut_down(actor_id, name)


def _shut_down(actor_id: str, name: str) -> RuntimeShutdownError:
    return RuntimeShutdownError(
        f"actor {actor_id!r}: the vactor_cloud runtime was shut down (vc.shutdown(), or "
        f"init() again) during wait_for_event({name!r}); call it again (on a new runtime)"
    )


async def _applied_now(runtime: Runtime, actor_id: str, name: str, event_id: str | None) -> Outcome | None:
    """The outcome of the event waited for, as of the newest step (None: not applied yet)."""
    core = runtime.core(actor_id)
    record = await core.revalidate()
    assert core.definition is not None  # set by revalidate (ensure_loaded)
    return await applied_event(core.log, record, name, event_id, serializer=core.definition.serializer)


def _not_created(actor_id: str) -> str:
    return (
        f": the actor does not exist (yet). An event sent to it with create=True is applied at "
        f"its first commit after Cls.get_or_create({actor_id!r}, ...) creates it; check the "
        "actor id and the storage URL"
    )


def _unhandled(runtime: Runtime, actor_id: str, name: str) -> str:
    """What to say when the actor's class (as last loaded) has no handler for events ``name``:
    such an event is kept in the inbox, and a wait for it can only time out (a typo, often)."""
    definition = runtime.core(actor_id).definition
    if definition is None or name in event_handlers(definition):
        return ""
    return (
        f": {definition.cls.__qualname__} has no method marked on_event({name!r}); the event stays "
        "in the inbox (vactor events ls) until a version of the class that handles it is loaded"
    )


def _remaining(
    deadline: float, actor_id: str, name: str, timeout: float | None, event_id: str | None, why: str
) -> float:
    """Seconds left until ``deadline``; ``TimeoutError`` when none are, ending with ``why``: what
    the last look found that keeps the event from applying (the actor missing, no handler)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        what = f"event {event_id!r} ({name!r})" if event_id is not None else f"an event {name!r}"
        raise TimeoutError(f"actor {actor_id!r}: {what} was not applied within {timeout} s{why}")
    return remaining


async def _by(step: Coroutine[Any, Any, Any], deadline: float) -> None:
    """Await ``step`` until ``deadline`` (monotonic) at most; a step cut off finishes in the
    background (applying events that were due anyway)."""
    if deadline == math.inf:
        await step
        return
    task = asyncio.ensure_future(step)
    await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
    if task.done():
        task.result()
    else:
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


def wait_for_event(
    actor_id: str, name: str, timeout: float | None = None, *, event_id: str | None = None
) -> Any:
    """Block until an event ``name`` has been applied; return its handler's result.

    If one was already applied (within the dedup window), the newest one's
    result is returned at once; with ``event_id``, that event's. A handler
    that raised has its exception re-raised here. While waiting, pending
    events are applied (as ``process_events`` does), polling with a backoff
    up to 1 s. ``TimeoutError`` after ``timeout`` seconds (``None``: no limit).
    Transient storage errors are polled through, until they last ``Settings.deadline``.
    An actor that does not exist yet is waited for too (an event sent to it with
    ``create=True`` is applied at its first commit); the ``TimeoutError`` then says so.
    """
    _check_wait(name, timeout, event_id)
    _refuse_own_writer(actor_id, "wait_for_event")
    return _wait_here(get_runtime(), actor_id, name, timeout, event_id)


async def wait_for_event_async(
    actor_id: str, name: str, timeout: float | None = None, *, event_id: str | None = None
) -> Any:
    """Async twin of :func:`wait_for_event`."""
    _check_wait(name, timeout, event_id)
    _refuse_own_writer(actor_id, "wait_for_event_async")
    return await asyncio.wrap_future(_sync.submit(_wait(actor_id, name, timeout, event_id)))


def _check_wait(name: str, timeout: float | None, event_id: str | None) -> None:
    """Refuse, before waiting, a timeout that is not a number (NaN never passes: the wait never
    ended), and a name no event can have (send_event refuses it: the wait never ended either)."""
    validate_event_name(name)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
        if math.isnan(timeout):
            raise ValueError("timeout must be a number of seconds or None, got nan")
    if event_id is not None:
        validate_event_id(event_id)
