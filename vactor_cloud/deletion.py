"""Deleting an actor: a **tombstone** step, committed like any step.

``steps/N+1`` with ``extra["deleted"]`` is written with the ordinary create-only put, so a
delete serializes with every writer, folder and compaction exactly as commits do: a writer
whose cache holds step N loses its put to the tombstone, reads it, and its calls fail with
:class:`~vactor_cloud.errors.ActorDeletedError` (nothing is applied on a tombstone). Deleting
the keys out of band is not safe: such a writer would commit step N+1 on nothing and the
actor would come back with its old state.

The tombstone carries no state, no timers and no idempotency table; it carries the post
cursor (and post floor) forward, advanced past every post pending when the deleter listed
them, with each of their calls' outcome recorded as ``ActorDeletedError``: those posters
read "deleted" there, and no later fold (of this actor or of a new one under the id)
applies them. A fold on a tombstone (a lease holder, a poster taking over) does the same
for posts that land later: it commits another tombstone recording them as failed
(``ActorCore``). A creation after a tombstone (``get_or_create``) is step ``T+1`` with
parent ``T``, carrying the cursor forward and nothing else but its incarnation (``born``:
``vactor_cloud.incarnation``) and the delete keys: a fresh actor.

**Delete keys.** Every delete has a key (``delete_actor(id, idempotency_key=...)``, else one
it makes up, named by the ``CommitOutcomeUnknownError`` that leaves it in doubt). The
tombstone appends its digest to ``extra["delete_keys"]``, the digests of the id's last
``DELETE_KEY_WINDOW`` deletes, which the creation after it and every later step carry
forward. A delete whose key is there was done already: a retry of a delete whose tombstone
landed, from any process, after the actor was created again and compacted, says False and
leaves the actor created since.

What the deleted actor leaves beside its steps is deleted after the commit, best effort, by
its last step (``last_live_step``: its idempotency table and timers): again by a delete that
finds the actor deleted, by a compaction before that step goes, and (the inbox objects of
events it applied) by the creation that follows the tombstone.

Format: docs/protocol.md, "Deleting an actor".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import shlex
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from vactor_cloud.actor_objects import retry_pause
from vactor_cloud.checked_read import read_envelope
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import (
    ActorDeletedError,
    ActorNotFoundError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    FormatVersionError,
    IntegrityError,
    NotFoundError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.inbox_leftovers import forget_applied_events
from vactor_cloud.incarnation import BORN, born_in, born_of
from vactor_cloud.keys import FAILED_CALL, tasks_prefix
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.log import ActorLog, StepCompactedError, StepTakenError
from vactor_cloud.log_records import CallRecord, Head, StepRecord
from vactor_cloud.post_cursor import POST_CURSOR, POST_FLOOR, advance_cursor, applied, expired, floor_of
from vactor_cloud.post_objects import Post, identity
from vactor_cloud.posting import PostBox
from vactor_cloud.settings import Settings
from vactor_cloud.step_outcomes import encode_outcomes, legacy_outcomes
from vactor_cloud.storage import ObjectStore
from vactor_cloud.timers import TIMERS, drop_entries

__all__ = [
    "DELETED",
    "DELETE_CALL",
    "DELETE_KEYS",
    "DELETE_KEY_WINDOW",
    "after_tombstone",
    "delete",
    "delete_again",
    "delete_keys",
    "deleted_by",
    "deleted_error",
    "failed_outcomes",
    "forget_before_creation",
    "forget_by_last_step",
    "forget_failed_calls",
    "forget_timers",
    "is_deleted",
    "key_digest",
    "last_live_step",
]

#: the ``extra`` key that makes a step a tombstone: ``{"time": <epoch s>}``
DELETED = "deleted"
#: the method name a tombstone records in its ``calls``
DELETE_CALL = "__vactor_delete__"
#: the ``extra`` key of the digests (``key_digest``) of the keys of the id's last deletes,
#: oldest first: appended to by each tombstone, carried forward by every later step
DELETE_KEYS = "delete_keys"
#: how many deletes of an id ``DELETE_KEYS`` remembers (a retry with a key older than that
#: finds it forgotten, and deletes the actor then under the id)
DELETE_KEY_WINDOW = 8
#: the ``extra`` keys a tombstone, and the creation after it, carry forward (the post cursor:
#: without it, a post applied before the delete and left behind would apply again; the delete
#: keys: without them, a delete retried after the actor was created again deleted it)
_CARRIED = (POST_CURSOR, POST_FLOOR, DELETE_KEYS)
#: tries of a folder lease's release that failed with a transient error
_RELEASE_TRIES = 3
#: outcomes in the earlier encoding are written beside the new one while this small
_LEGACY_MAX = 4096


def is_deleted(record: StepRecord) -> bool:
    """Whether ``record`` is a tombstone: the actor was deleted at this step."""
    return DELETED in record.extra


def deleted_error(log: ActorLog, record: StepRecord) -> ActorDeletedError:
    """The error for a call, load or read that met the tombstone ``record``."""
    return ActorDeletedError(log.actor_id, log.store.describe(), record.step)


def key_digest(key: str) -> str:
    """How ``DELETE_KEYS`` records a delete's ``key``: 32 hex digits of its SHA-256 (the same
    size whatever the key, and no caller's text in every step of the actors after it)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def delete_keys(extra: dict[str, Any]) -> list[str]:
    """The delete-key digests a step with this ``extra`` carries (none in a step written before
    them, or by an id never deleted; a value of another shape is taken for none)."""
    value = extra.get(DELETE_KEYS)
    return [k for k in value if isinstance(k, str)] if isinstance(value, list) else []


def deleted_by(record: StepRecord, key: str) -> bool:
    """Whether the delete with ``key`` was done already, by ``record``, the newest step: it is a
    tombstone (whatever its key), or it carries the key (that delete's tombstone landed, and
    the actor was created again after it)."""
    return is_deleted(record) or key_digest(key) in delete_keys(record.extra)


def after_tombstone(tombstone: StepRecord) -> dict[str, Any]:
    """The ``extra`` of the creation that follows ``tombstone``: the post cursor, the delete
    keys, and the new actor's incarnation (``born``: its own step number), nothing else."""
    return {**{k: v for k, v in tombstone.extra.items() if k in _CARRIED}, BORN: tombstone.step + 1}


def failed_outcomes(call_ids: list[str], error: ActorDeletedError) -> tuple[bytes, bytes]:
    """The ``outcomes`` part (and its earlier encoding, when small) failing each call with ``error``."""
    outcomes = {call_id: Outcome(False, error) for call_id in call_ids}
    return encode_outcomes(outcomes), legacy_outcomes(outcomes, _LEGACY_MAX)


def _tombstone(log: ActorLog, base: StepRecord, folded: list[Post], now: float, key: str) -> StepRecord:
    error = ActorDeletedError(log.actor_id, log.store.describe(), base.step + 1)
    extra = {k: v for k, v in base.extra.items() if k in _CARRIED}
    extra[DELETE_KEYS] = [*delete_keys(base.extra), key_digest(key)][-DELETE_KEY_WINDOW:]
    calls = [CallRecord(DELETE_CALL, uuid.uuid4().hex, True, now)]
    posted = legacy = b""
    if folded:
        extra = advance_cursor(extra, folded, now)
        ids = [call.call_id for post in folded for call in post.calls]
        posted, legacy = failed_outcomes(ids, error)
        calls += [
            CallRecord(call.method, call.call_id, False, now, result="ActorDeletedError")
            for post in folded
            for call in post.calls
        ]
    extra[DELETED] = {"time": now}
    return StepRecord(
        step=base.step + 1,
        parent=base.step,
        class_ref=base.class_ref,
        serializer=base.serializer,
        state=b"",
        writer=os.urandom(16).hex(),
        time=now,
        calls=tuple(calls),
        posted=posted,
        legacy=legacy,
        extra=extra,
    )


async def _pending_posts(box: PostBox, base: StepRecord, now: float) -> tuple[list[Post], list[str]]:
    """The posts waiting now that ``base`` has not applied (in key order, one per sender and
    seq), and the keys of stale or expired ones. A post whose read failed its digest ends
    the list (its sender is unknown, and its sender's later posts must not pass it): it and
    the posts after it stay, for the next fold on the tombstone."""
    keys = [k for k in await box.keys() if identity(k) is not None]
    posts = {p.key: p for p in await box.read(keys)}
    floor = floor_of(base.extra)
    pending: list[Post] = []
    done: list[str] = []
    seen: set[tuple[str, int]] = set()
    for key in keys:
        post = posts.get(key)
        if post is None:
            if key in box.unreadable:
                break
            continue  # gone since the listing: applied and deleted
        if (
            applied(base.extra, post.sender, post.seq)
            or expired(post, now)
            or post.time <= floor
            or (post.sender, post.seq) in seen
        ):
            done.append(key)
            continue
        seen.add((post.sender, post.seq))
        pending.append(post)
    return pending, done


async def delete(
    log: ActorLog,
    settings: Settings,
    *,
    keep: Callable[[asyncio.Future[None]], None],
    key: str | None = None,
) -> StepRecord | None:
    """Delete ``log``'s actor: commit a tombstone after its newest step.

    Returns the tombstone, or None when the actor was deleted already (by an
    earlier delete, or by one that won the race for the same step; what the actors up to
    that tombstone left beside their steps, should that delete's clean-up have stopped half
    way, is then deleted, best effort: see ``_forget_leftovers``). Raises
    ``ActorNotFoundError`` for an id that never held an actor, and
    ``CommitConflictError`` (nothing committed) if writers kept winning the race
    for the next step until ``settings.commit_timeout`` or ``max_commit_attempts``, and
    ``CommitOutcomeUnknownError`` when a tombstone was sent and whether it landed could
    not be learned (a delete again with the same ``key``, which the error names, tells).
    Other storage errors: nothing committed.

    ``key`` (None: a new one), recorded by the tombstone and carried by every later step of
    the id (``DELETE_KEYS``, a window of the last deletes): a delete whose newest step carries
    its key was done already (its tombstone landed, and an actor was created after it), and
    the actor created since is not deleted (None). No request is added for it: the newest
    step, read anyway, tells.

    ``keep`` is given the clean-up after the commit, a task the delete waits for up to 80 %
    of ``settings.deadline`` and then leaves to end by itself (``Runtime.keep``: the runtime's
    shutdown waits for it). ``SystemExit`` or ``KeyboardInterrupt`` raised in it while the
    delete waits reaches the delete's caller (the tombstone committed).
    """
    box = PostBox(log.store, log.actor_id, log.signing_key)
    lease = _DeleterLease(LeaseStore(log.store, log.actor_id, log.signing_key), box.sender, settings)
    started = validated = time.monotonic()
    give_up_at = started + settings.commit_timeout
    base, head = await log.load_latest_and_head(await log.read_head())
    if base is None:
        raise ActorNotFoundError(log.actor_id, log.store.describe())
    key = uuid.uuid4().hex if key is None else key
    attempt = 0
    try:
        while True:
            if deleted_by(base, key):
                # (What an earlier delete's clean-up may have stopped before, best effort as it
                # is: the leftovers of the actors up to this tombstone, or up to the tombstone
                # the actor now under the id followed. A stall there must not make "deleted
                # already" a timeout.)
                await _clean_up(_forget_leftovers_before(log, base), keep, started, settings)
                return None
            now = time.time()
            folded, done = await _pending_posts(box, base, now)
            record = _tombstone(log, base, folded, now, key)
            try:
                await log.put_step(record)
                # (Late, past fresh_window: a compaction may have freed the number meanwhile.)
                committed = (
                    time.monotonic() - validated <= settings.fresh_window
                    or await log.resolve_late_commit(record)
                )
            except StepTakenError as lost:
                validated = time.monotonic()
                base, _ = await log.probe_from(lost.winner)
                if is_deleted(base):  # (another delete won: deleted already, no attempt spent)
                    continue
                committed = False
            except StepCompactedError:
                committed = False
            except (StorageError, CommitOutcomeUnknownError) as exc:
                raise _outcome_unknown(log, record, exc, key) from exc
            if committed:
                # The clean-up runs on its own: awaited while the delete's deadline allows, then
                # left to end by itself. A stall there (all of it best effort: a post left is
                # stale by the cursor, HEAD a hint, a lease expires) must not turn a committed
                # delete into a timeout, which would tell its caller it may not have happened.
                cleanup = _after_commit(
                    lease.hand_over(), box, [p.key for p in folded] + done, log, record, head, base
                )
                await _clean_up(cleanup, keep, started, settings)
                return record
            attempt += 1
            if attempt >= settings.max_commit_attempts or time.monotonic() > give_up_at:
                raise CommitConflictError(log.actor_id, attempt)
            # Lost a race: a folder (or racers) keep committing. A delete cannot be posted, so
            # it takes the folder lease over: the holder's renewal fails and it stops folding,
            # the others post behind our lease, and the tombstone (failing their posts) wins.
            await lease.take(base.step)
            if not is_deleted(base):
                await asyncio.sleep(retry_pause(attempt))
            if base.step < record.step:  # (not caught up by a probe: find the newest again)
                validated = time.monotonic()
                newest = await log.load_latest(None)
                if newest is None:
                    raise ActorNotFoundError(log.actor_id, log.store.describe())
                base = newest
    finally:
        # Every way out gives a lease taken over back: a commit (handed to its clean-up), a
        # conflict, an error, an answer never learned, a cancel (Ctrl-C, a caller's timeout).
        # Posters would otherwise wait out lease_seconds before anyone folds their calls.
        await lease.release(base.step)


async def _forget_leftovers_before(log: ActorLog, newest: StepRecord) -> None:
    """``_forget_leftovers`` of the tombstone ``newest`` is, or else of the one the actor now
    under the id was created after (read: a delete retried after that creation), if still
    there."""
    tombstone: StepRecord | None = newest
    if not is_deleted(newest):
        born = born_of(newest.extra)
        try:
            tombstone = await log.read_step(born - 1) if born > 0 else None
        except (StorageError, IntegrityError):
            return  # (best effort, as the rest)
    if tombstone is not None and is_deleted(tombstone):
        await _forget_leftovers(log, tombstone)


async def _clean_up(
    work: Coroutine[Any, Any, None],
    keep: Callable[[asyncio.Future[None]], None],
    started: float,
    settings: Settings,
) -> None:
    """Run the best-effort ``work`` on its own (``keep``: the runtime's shutdown waits for it),
    awaited until 80 % of ``settings.deadline`` from the delete's ``started``, then left to
    end by itself. A ``SystemExit`` or ``KeyboardInterrupt`` in it meanwhile is raised here
    (its own errors it suppresses; an exit is not an error)."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_cleanup_ended)
    keep(task)
    budget = started + settings.deadline * _CLEANUP_SHARE - time.monotonic()
    await asyncio.wait({task}, timeout=None if math.isinf(budget) else max(budget, 0.0))
    if task.done() and not task.cancelled():
        interrupt = task.exception()
        if interrupt is not None and not isinstance(interrupt, Exception):
            raise interrupt


async def _after_commit(
    lease: _DeleterLease,
    box: PostBox,
    keys: list[str],
    log: ActorLog,
    record: StepRecord,
    head: Head | None,
    base: StepRecord,
) -> None:
    """After the tombstone ``record`` (which followed ``base``): give the lease back, delete the
    posts it failed (or found stale), move HEAD to it (a hint: a load then reads the tombstone
    first), and forget what the actor left beside its steps (``_forget_leftovers``)."""
    await lease.release(record.step)
    await _clear_posts(box, keys)
    with contextlib.suppress(StorageError):
        await log.advance_head(record.step, record.class_ref, head)
    await _forget_leftovers(log, record, base)


async def _forget_leftovers(log: ActorLog, tombstone: StepRecord, base: StepRecord | None = None) -> None:
    """What the actors up to ``tombstone`` leave beside their steps, best effort: their
    failed-call records (``forget_failed_calls``), and by the deleted actor's last step
    (``base``, else read: ``last_live_step``) the due-index entries of the timers it held
    (``forget_timers``) and the inbox objects of events it applied (``forget_applied_events``).
    Each is idempotent: a delete that finds the actor deleted already does it again (an earlier
    delete's clean-up may have stopped half way)."""
    with contextlib.suppress(StorageError):  # (a record left: see forget_failed_calls)
        await forget_failed_calls(log.store, log.actor_id, log.signing_key, deleted=tombstone)
    if base is None:
        try:
            base = await last_live_step(log, tombstone)
        except (StorageError, IntegrityError):
            return  # (an entry left is the runner's part; an inbox object left is applied again)
    if base is None:  # (compacted: the compaction did this first, see forget_by_last_step)
        return
    with contextlib.suppress(StorageError, IntegrityError):  # (an entry left: see forget_timers)
        await forget_timers(log, base)
    try:
        await forget_applied_events(log, base)
    except Exception as exc:  # (best effort, as the rest: its table may not unpickle here)
        _warn_events_left(log, exc)


async def forget_before_creation(log: ActorLog, tombstone: StepRecord) -> None:
    """Before a creation after ``tombstone`` (``ActorCore.create``) lists the inbox: delete the
    inbox objects of events the deleted actor applied (``forget_applied_events``), best effort.
    The delete's clean-up may not have run yet (it runs on after the tombstone landed, or its
    process died): the new actor's first fold applied them again."""
    try:
        base = await last_live_step(log, tombstone)
        if base is not None:
            await forget_applied_events(log, base)
    except Exception as exc:  # (as in the delete's clean-up)
        _warn_events_left(log, exc)


def _warn_events_left(log: ActorLog, exc: Exception) -> None:
    logging.getLogger("vactor_cloud").warning(
        "actor %r deleted; inbox objects of events it applied may be left (%s): the next actor "
        "created under the id applies them again: remove those of actors/%s/inbox/ before creating it",
        log.actor_id,
        exc,
        log.actor_id,
    )


async def last_live_step(log: ActorLog, tombstone: StepRecord) -> StepRecord | None:
    """The last step of the actor ``tombstone`` deleted: the newest below it that is no
    tombstone (a fold on a tombstone commits another after it, so tombstones may follow each
    other); None once a compaction deleted it (or the id held no actor before)."""
    record: StepRecord | None = tombstone
    while record is not None and is_deleted(record):
        record = None if record.parent is None else await log.read_step(record.parent)
    return record


async def forget_by_last_step(log: ActorLog, base: StepRecord) -> None:
    """What a compaction does before it deletes ``base``, the last step of an actor deleted
    (``last_live_step``): the clean-up that needs it (``forget_timers``, ``forget_applied_events``),
    done again, in case the delete's stopped half way; once ``base`` is gone, nothing tells
    which inbox objects the actor applied. Errors are raised: the compaction then keeps ``base``."""
    await forget_timers(log, base)
    await forget_applied_events(log, base)


#: the share of ``Settings.deadline`` (from the delete's start) a delete waits for its clean-up
_CLEANUP_SHARE = 0.8


def _cleanup_ended(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # (retrieved: its own errors are suppressed; a loop closing is not news)


def _outcome_unknown(
    log: ActorLog, record: StepRecord, exc: Exception, key: str
) -> CommitOutcomeUnknownError:
    """The tombstone ``record`` (of the delete with ``key``) was put and whether it landed is not
    known (its answer lost, and reading the step back failed too; or a compaction took the
    number meanwhile)."""
    return CommitOutcomeUnknownError(
        log.actor_id,
        record.step,
        f"the delete's tombstone (step {record.step}) was sent and whether it landed is not "
        f"known ({exc}); {delete_again(log.actor_id, key)}",
        idempotency_key=key,
    )


def delete_again(actor_id: str, key: str) -> str:
    """What to do after a delete with ``key`` whose outcome is not known."""
    return (
        f"call delete_actor again with idempotency_key={key!r}, from this process or any other "
        f"(vactor delete {shlex.quote(actor_id)} --idempotency-key {shlex.quote(key)}): it returns "
        f"False if this delete committed, even if the actor was created again since (the keys of "
        f"the id's last {DELETE_KEY_WINDOW} deletes are kept)"
    )


class _DeleterLease:
    """The folder lease, taken over by a delete that lost a race (whoever held it), and given up
    once the delete is done. A hint, like every lease: nothing depends on it but progress (a
    holder folding without pause would win every race against a delete, which cannot post)."""

    __slots__ = ("held", "leases", "maybe", "sender", "settings", "taken_at")

    def __init__(self, leases: LeaseStore, sender: str, settings: Settings) -> None:
        self.leases = leases
        #: ours alone (a fresh post sender per delete): a lease in this name is this delete's
        self.sender = sender
        self.settings = settings
        self.held: Lease | None = None
        #: a write of ours whose outcome we never learned (its answer lost, the read back
        #: failed too): the lease may be ours without our knowing its version
        self.maybe = False
        self.taken_at = -math.inf

    def hand_over(self) -> _DeleterLease:
        """A copy holding what this one holds (for the clean-up after the commit), this one
        left holding nothing: its ``release`` is then a no-op."""
        other = _DeleterLease(self.leases, self.sender, self.settings)
        other.held, other.maybe, other.taken_at = self.held, self.maybe, self.taken_at
        self.held, self.maybe = None, False
        return other

    async def take(self, step: int) -> None:
        """Write the lease in our name (again, past half its length), over whatever is there."""
        seconds = self.settings.lease_seconds
        if self.held is not None and time.monotonic() - self.taken_at < seconds / 2:
            return
        with contextlib.suppress(StorageError):
            seen = self.held if self.held is not None else await self.leases.read()
            started = time.monotonic()
            self.maybe = True
            self.held = await self.leases.write(seen, self.sender, seconds, step)
            self.maybe = False
            if self.held is None:  # changed since we read it: read it and take it next time
                return
            self.taken_at = started

    async def release(self, step: int) -> None:
        """Give the lease up (``expires`` 0), if we hold it, or may (a take whose outcome we
        never learned: read back, it is ours if it names us): posters waiting take it over
        and fold. Left held, they waited ``lease_seconds`` before anyone folded their calls."""
        held, self.held = self.held, None
        for attempt in range(_RELEASE_TRIES):  # (a transient error retried: one request, cheap)
            try:
                if held is None and self.maybe:
                    found = await self.leases.read()
                    if found.holder == self.sender and found.valid():
                        held = found
                self.maybe = False
                if held is not None:
                    await self.leases.write(held, self.sender, 0, step)
                return
            except RetryableStorageError:
                await asyncio.sleep(retry_pause(attempt))
            except StorageError:
                return  # (left held: it expires after lease_seconds)


async def _clear_posts(box: PostBox, keys: list[str]) -> None:
    """Delete the posts the tombstone failed (or found stale); one left behind is stale by the
    cursor, and the next fold deletes it unapplied."""
    if not keys:
        return
    with contextlib.suppress(StorageError):
        await box.delete(keys)
        await box.flush()


async def forget_timers(log: ActorLog, base: StepRecord) -> int:
    """Delete the due-index entries (``timers/...``) of the timers pending in ``base``, the last
    step of an actor deleted (``last_live_step``): its tombstone dropped them; how many. Left
    there, ``vactor timers ls`` listed a deleted actor's timers until each fell due and a runner
    found it deleted (a year's timer for a year). A step of a racing writer never comes
    between: a tombstone's parent was the newest step."""
    if not base.extra.get(TIMERS):
        return 0
    return await drop_entries(log.store, log.actor_id, base.extra)


async def forget_failed_calls(
    store: ObjectStore, actor_id: str, signing_key: bytes | None = None, *, deleted: StepRecord | None = None
) -> int:
    """Delete a deleted actor's failed-call records (``tasks/<call id>/failed``, what
    ``workflow.resume`` runs again and ``get_status`` calls FAILED); how many there were.

    Run after the tombstone is in place: left there, the next actor created under the id
    was FAILED from its start and ``resume`` ran the old actor's calls on it. (A call of the
    old actor that records its failure after this, having raced the delete, is left: it names
    the deleted actor's incarnation, and readers of the next actor's records pass over it.)

    ``deleted``, the tombstone: only the records of the actors it ended are deleted (those
    listed are read, a GET each): this runs on by itself after the delete returned, and
    the next actor under the id, created meanwhile, may have recorded its own failed calls,
    which a delete of them all took with it. A record that does not verify is deleted (as
    any is without ``deleted``); one in a newer release's format stays."""
    keys = [k for k in await store.list(tasks_prefix(actor_id)) if k.endswith(f"/{FAILED_CALL}")]
    if keys and deleted is not None:
        before = [_recorded_before(store, k, signing_key, deleted.step) for k in keys]
        keys = [k for k, ours in zip(keys, await asyncio.gather(*before), strict=True) if ours]
    if keys:
        await store.delete_many(keys)
    return len(keys)


async def _recorded_before(store: ObjectStore, key: str, signing_key: bytes | None, step: int) -> bool:
    """Whether the failed-call record ``key`` was written by an actor born before ``step``
    (or does not verify: no actor's record); False once it is gone, and for a record in a newer
    release's format (it verifies, its incarnation is unknown here: the next actor's, maybe)."""
    try:
        # (read again if it does not verify: a read cut short would delete the record of the
        # actor now under the id)
        return born_in((await read_envelope(store, key, signing_key)).meta) < step
    except (NotFoundError, FormatVersionError):
        return False
    except (IntegrityError, ValueError):
        return True
