"""Ray Workflows-compatible facade: ``from vactor_cloud import workflow``.

The seed example of Ray's virtual actors runs unchanged with
``from vactor_cloud import workflow`` and ``import vactor_cloud as ray``;
so do Ray's sub-workflows (``@workflow.step``, ``f.step(...)``, an actor
method returning a step, ``self.method.step(...)``: see
:mod:`vactor_cloud.workflow_steps`) and Ray's management calls for actors
(``list_all``, ``get_status``, ``resume``). ``docs/migrating-from-ray.md``
lists every element of Ray's API and what it is here.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import enum
import functools
import itertools
import threading
from collections.abc import Iterable
from typing import Any

from vactor_cloud.actor import get_actor as _get_actor
from vactor_cloud.batch import PendingCall, applying
from vactor_cloud.byvalue import freeze_arguments
from vactor_cloud.deletion import deleted_error, is_deleted
from vactor_cloud.errors import CallPendingError
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.future import ActorFuture, Waker
from vactor_cloud.handle import ActorHandle
from vactor_cloud.history import list_actors_async
from vactor_cloud.ids import resume_dedup_key
from vactor_cloud.incarnation import born_of
from vactor_cloud.log_records import StepRecord
from vactor_cloud.post_cursor import applied
from vactor_cloud.runtime import Runtime, get_runtime, init
from vactor_cloud.step_outcomes import decode_outcomes
from vactor_cloud.workflow_steps import (
    FailedCall,
    StepFunction,
    StepNode,
    WorkflowVirtualActorDecorator,
    delete_failure,
    failure_key,
    failure_keys,
    has_failures,
    list_failures,
    resuming,
    step,
)

__all__ = [
    "CANCELED",
    "FAILED",
    "RESUMABLE",
    "RUNNING",
    "SUCCESSFUL",
    "StepFunction",
    "StepNode",
    "WorkflowStatus",
    "get_actor",
    "get_status",
    "init",
    "list_all",
    "resume",
    "step",
    "virtual_actor",
]

#: ``@workflow.virtual_actor``: ``vc.virtual_actor`` whose methods also offer ``self.method.step(...)``
virtual_actor: WorkflowVirtualActorDecorator = WorkflowVirtualActorDecorator()


class WorkflowStatus(enum.StrEnum):
    """Ray's workflow statuses; a member equals its name as a string (``FAILED == "FAILED"``).

    For an actor: ``RUNNING`` while this process runs one of its writer
    methods (of the actor now under the id: not of one deleted since),
    ``FAILED`` while it has a failed sub-workflow that
    ``resume`` can run again, ``SUCCESSFUL`` otherwise. ``CANCELED`` and
    ``RESUMABLE`` exist for Ray's spelling; no actor has them.
    """

    RUNNING = "RUNNING"
    CANCELED = "CANCELED"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    RESUMABLE = "RESUMABLE"


RUNNING = WorkflowStatus.RUNNING
CANCELED = WorkflowStatus.CANCELED
SUCCESSFUL = WorkflowStatus.SUCCESSFUL
FAILED = WorkflowStatus.FAILED
RESUMABLE = WorkflowStatus.RESUMABLE


def get_actor(workflow_id: str | None = None, *, actor_id: str | None = None) -> ActorHandle[Any]:
    """The existing actor with this id; ``ActorNotFoundError`` if none.

    Ray spelled the id both ways: ``get_actor(actor_id=...)`` (its signature)
    and ``get_actor(workflow_id=...)`` (its documentation); a positional id
    works too.
    """
    if (workflow_id is None) == (actor_id is None):
        raise TypeError("get_actor() takes one id: get_actor(actor_id=...) or get_actor(workflow_id=...)")
    chosen = actor_id if actor_id is not None else workflow_id
    assert chosen is not None
    return _get_actor(chosen)


async def _status(runtime: Runtime, actor_id: str, *, strict: bool = False) -> WorkflowStatus:
    """Its status. Failed-call records found, they count only if the actor now under the id
    wrote them (a record of an actor deleted is not its): the newest step says which actor
    that is (one probe from the cached step; a cache from before a delete is not it). A
    deleted actor has none: ``strict`` raises ``ActorDeletedError`` then. A writer method
    running in this process makes it RUNNING if it runs on the actor now under the id (one
    probe to tell, only then): an earlier actor's, deleted since, is not this one's."""
    newest: StepRecord | None = None
    running = applying(actor_id)
    if running:
        newest = await runtime.core(actor_id).revalidate()
        if not is_deleted(newest) and born_of(newest.extra) in running:
            return RUNNING
    keys = await failure_keys(runtime.store, actor_id)
    if not keys:
        return SUCCESSFUL
    core = runtime.core(actor_id)
    if newest is None:
        newest = await core.revalidate()
    if is_deleted(newest):  # (deleted since it was listed, or since this process cached it)
        if strict:
            raise deleted_error(core.log, newest)
        return SUCCESSFUL
    signing_key = runtime.settings.signing_key
    if await has_failures(runtime.store, actor_id, signing_key, born=born_of(newest.extra), keys=keys):
        return FAILED
    return SUCCESSFUL


def get_status(actor_id: str) -> WorkflowStatus:
    """The status of the actor ``actor_id`` (see :class:`WorkflowStatus`); ``ActorNotFoundError``."""
    runtime = get_runtime()
    runtime.load(actor_id)
    return runtime.run(_status(runtime, actor_id, strict=True))


def list_all(
    status_filter: str | WorkflowStatus | Iterable[str | WorkflowStatus] | None = None,
) -> list[tuple[str, WorkflowStatus]]:
    """Every actor of the store as ``(actor_id, status)``, in id order; optionally only some statuses.

    ``RUNNING`` is what this process knows: a writer method running in
    another process does not show. Costs what ``vc.list_actors()`` costs plus
    one LIST per actor (for failure records), and for an actor that has some, the read of its
    newest step (which actor under the id it is: a record of an actor deleted is not its).
    """
    if status_filter is None:
        wanted = set(WorkflowStatus)
    elif isinstance(status_filter, str):
        wanted = {WorkflowStatus(status_filter)}
    else:
        wanted = {WorkflowStatus(s) for s in status_filter}
    runtime = get_runtime()

    async def collect() -> list[tuple[str, WorkflowStatus]]:
        actors = await list_actors_async()
        statuses = await asyncio.gather(*(_status(runtime, a.actor_id) for a in actors))
        return [(a.actor_id, s) for a, s in zip(actors, statuses, strict=True) if s in wanted]

    return runtime.run(collect(), hint="list the actors a page at a time with vc.list_actors(limit=...)")


def resume(actor_id: str) -> ActorFuture[list[Any]]:
    """Run again the calls of ``actor_id`` whose sub-workflow failed; a future of their results.

    The calls run in the order they first failed, under their original call
    ids, so every step that had finished is read back from its checkpoint,
    not run again. A call that succeeds now commits, its failure record
    deleted before its step is written (a delete that fails fails the run:
    nothing commits, the call stays recorded, and no later resume applies it
    twice; a commit that fails after the delete, a storage error, leaves the
    call unrecorded, as for a retried call: the future raises that error, and
    the call may be made again as a new one); one whose sub-workflow fails
    again stays recorded and the future raises its exception (of several that fail again, the
    first's, in the order the calls first failed: the others still run, and those that succeed
    commit). With nothing to resume the future's result is ``[]``.
    A call this process is re-running, or re-ran while another resume of
    this process was listing (its record may still be listed by that resume,
    which raced its delete), is not run again: that re-run's outcome, its
    result or its exception, is given.
    A call that came in a post (under contention) whose post
    may still be applied by a fold (the folder that recorded its failure died, or lost the
    lease, before its step landed) is not run: its future raises ``CallPendingError``, and
    the fold that applies the post runs it; one whose post a fold applied with a successful
    run (its record listed before that run deleted it, or written late by another folder whose
    run failed and whose step never landed) is not run either, and its stale record goes.
    Each re-run commits under an idempotency key of its call's own
    (``ids.resume_dedup_key``: its call id, in a namespace no caller's key can spell), recorded
    when it succeeds: a re-run of the same call by another process's resume that listed the
    record too, or of the record put back after the re-run, finds the key when it commits and
    gives that outcome, applying nothing, within the idempotency window
    (``Settings.dedup_window``); past it, a record put back runs again.

    Its reads (the listing, then each posted call's checks) each end within
    ``Settings.deadline``, with ``StorageTimeoutError`` on a store that does not answer.
    """
    runtime = get_runtime()
    core = runtime.load(actor_id)
    # A json actor in a process that loads no class body from storage unpickles nothing from it.
    json_actor = core.definition is not None and core.definition.serializer == "json"
    unpickle = runtime.settings.load_classes_from_storage or not json_actor
    # Which actor is under the id now (the cache may predate a delete): only its records count.
    newest = runtime.run(core.revalidate(), hint=_HINT)
    if is_deleted(newest):
        raise deleted_error(core.log, newest)
    with _rerunning_lock:
        listing = next(_ticks)
        _listing[listing] = actor_id
    try:
        failed = runtime.run(
            list_failures(
                runtime.store,
                actor_id,
                runtime.settings.signing_key,
                unpickle=unpickle,
                born=born_of(newest.extra),
            )
        )
        failed = [
            call for call in failed if not runtime.run(_applied_elsewhere(runtime, call, listing), hint=_HINT)
        ]
        futures = [_rerun_once(runtime, call, listing) for call in failed]
    finally:
        with _rerunning_lock:
            del _listing[listing]
            _forget_done_reruns()
    combined: ActorFuture[list[Any]] = ActorFuture()

    def settle(_: object = None) -> None:
        if not all(f.done() for f in futures) or combined.done():
            return
        try:
            combined.set_result([f.result() for f in futures])
        except BaseException as exc:
            combined.set_exception(exc)

    def help_each(timeout: float | None) -> None:
        for future in futures:
            future._wait_helping(timeout)

    if not futures:
        combined.set_result([])
    else:
        # The re-runs are submitted (shared with any other resume of this process): they go on
        # whatever becomes of this future. Running, it cannot be cancelled; cancelled, it said
        # so of calls that then applied.
        combined.set_running_or_notify_cancel()
    for future in futures:
        future.add_done_callback(Waker(settle))
    # A waiter applies the re-runs when nobody else does (caller runs), as a call's waiter does:
    # a method on the pool waiting for them must not wait for a pool thread.
    combined._help = help_each
    return combined


#: re-runs this process started and that have not settled yet (their record not yet deleted)
_rerunning: dict[tuple[str, str], ActorFuture[Any]] = {}
#: re-runs that ended (their record deleted, unless the call failed before its commit) while a
#: resume of this process was listing, with when they did (a tick of ``_ticks``): that resume may
#: find the record still listed, and must not run the call again (newest last). Kept while such a
#: resume runs (each holds its result): kept for good, the newest 4,096 held theirs, however large,
#: for the process's life
_rerun_done: collections.OrderedDict[tuple[str, str], tuple[ActorFuture[Any], int]] = (
    collections.OrderedDict()
)
_RERUN_DONE_MAX = 4096
#: the resumes of this process between their listing's start and their re-runs': the actor each
#: lists, by the tick it began at (oldest first): a re-run done before the oldest listing of its
#: actor began is listed by none of them
_listing: dict[int, str] = {}
_ticks = itertools.count()
_rerunning_lock = threading.Lock()


def _forget_done_reruns() -> None:
    """(Holding ``_rerunning_lock``) Forget the re-runs done before every listing of their actor
    now running began (a listing of another actor cannot list their record)."""
    oldest: dict[str, int] = {}
    for began, actor_id in _listing.items():
        oldest.setdefault(actor_id, began)
    for key, (_, done_at) in list(_rerun_done.items()):
        listed = oldest.get(key[0])
        if listed is None or done_at < listed:
            del _rerun_done[key]


# A forked child has none of the parent's threads: their re-runs never settle there, and
# their listings never end (what is kept for them, results and all, is for no resume here).
renew_in_a_forked_child(globals(), "_rerunning_lock", _rerunning, _listing, _rerun_done)


def _rerun_once(runtime: Runtime, failed: FailedCall, listed: int) -> ActorFuture[Any]:
    """The re-run of ``failed``: the one already under way in this process, if any, or the one
    that ended after ``listed`` (the tick the listing that found ``failed`` began at).

    A recorded call runs again under its call id and its resume key (see ``resume``): a second
    re-run, in another process, is answered by the key once the first committed; in this
    process it is not even started: the one under way (or just ended) is given.
    """
    key = (failed.actor_id, failed.call_id)
    with _rerunning_lock:
        done = _rerun_done.get(key)
        # (One that ended before: a later run, the record listed since (it failed again), is due.)
        running = _rerunning.get(key) or (done[0] if done is not None and done[1] > listed else None)
        if running is not None:
            return running
        shared: ActorFuture[Any] = ActorFuture()
        _rerunning[key] = shared

    def settle(finished: concurrent.futures.Future[Any]) -> None:
        with _rerunning_lock:  # gone first: a resume after the answer lists the records again
            if _rerunning.get(key) is shared:
                del _rerunning[key]
            # Remembered while listed, whatever its outcome: failed, its record may be gone too
            # (deleted before a commit that then failed, the step perhaps landed)
            _rerun_done[key] = (shared, next(_ticks))
            _rerun_done.move_to_end(key)
            _forget_done_reruns()
            while len(_rerun_done) > _RERUN_DONE_MAX:
                _rerun_done.popitem(last=False)
        error = finished.exception()
        if error is not None:
            shared.set_exception(error)
        else:
            shared.set_result(finished.result())

    try:
        # Outside the lock: the call may run on this thread, and its method may resume others.
        rerun = _rerun(runtime, failed)
    except BaseException as exc:
        with _rerunning_lock:
            del _rerunning[key]
        shared.set_exception(exc)
        raise
    shared._help = rerun._help
    rerun.add_done_callback(Waker(settle))
    return shared


#: what to do when a check of resume's runs out of Settings.deadline
_HINT = "resume again later, or raise Settings.deadline"


async def _applied_elsewhere(runtime: Runtime, failed: FailedCall, listed: int) -> bool:
    """Whether a posted call listed as failed was applied since by a fold whose run of it
    succeeded: the newest step shows its post applied, and the record is gone (a run that
    succeeds deletes it before its step is written). Listed before that delete, it is no
    longer to resume: run again, it would apply twice."""
    if failed.post is None:
        return False
    key = (failed.actor_id, failed.call_id)
    with _rerunning_lock:
        done = _rerun_done.get(key)
        if key in _rerunning or (done is not None and done[1] > listed):
            return False  # our own re-run: its result is given
    _, sender, seq = failed.post
    core = runtime.core(failed.actor_id)
    if not applied((await core.revalidate()).extra, sender, seq):
        return False
    record = failure_key(failed.actor_id, failed.call_id)
    if await runtime.store.head(record) is None:
        return True
    if not await _ran_ok_where_applied(runtime, failed):
        return False
    # A stale record: a folder whose run failed wrote it late, after another folder's run
    # succeeded (and deleted what was there) and committed; its own step never landed.
    await delete_failure(runtime.store, failed.actor_id, failed.call_id)
    return True


#: how many steps back from the newest resume looks for the step that applied a posted call
_SCAN_STEPS = 1000


async def _ran_ok_where_applied(runtime: Runtime, failed: FailedCall) -> bool:
    """Whether the step that applied the post ``failed`` came in records the call's outcome as
    a success (its outcomes, or the copy the next fold carries). False when it does not, or
    when that cannot be told (the step compacted, an outcome that does not load here)."""
    assert failed.post is not None
    _, sender, seq = failed.post
    core = runtime.core(failed.actor_id)
    newest = record = await core.revalidate()
    for _ in range(_SCAN_STEPS):
        if not applied(record.extra, sender, seq):
            return False  # below the step that applied it, and not found on the way
        key = core.log.step_key(record.step)
        for part in (record.posted, record.carried):
            try:
                outcome = decode_outcomes(part, key).get(failed.call_id)
            except Exception:
                return False
            if outcome is not None:
                # (A step below the watermark is a stray, not the history's: not taken.)
                return outcome.ok and (record is newest or record.step >= await core.log.read_gc())
        below = await core.log.read_step(record.step - 1) if record.step > 0 else None
        if below is None:
            return False  # compacted
        record = below
    return False


async def _post_pending(runtime: Runtime, failed: FailedCall) -> bool:
    """Whether the post ``failed`` came in may still be applied by a fold: it is there, and the
    newest step (read after it) does not show it applied. (A folder that ran the call and
    recorded its failure died, or lost the lease, before its step landed: the post stays.)"""
    if failed.post is None:
        return False
    key, sender, seq = failed.post
    core = runtime.core(failed.actor_id)
    if applied((await core.revalidate()).extra, sender, seq):
        return False
    if await runtime.store.head(key) is None:
        return False  # applied and deleted since (the newest step shows it), or expired
    return not applied((await core.revalidate()).extra, sender, seq)


def _rerun(runtime: Runtime, failed: FailedCall) -> ActorFuture[Any]:
    done: ActorFuture[Any] = ActorFuture()
    if runtime.run(_post_pending(runtime, failed), hint=_HINT):
        # Any process's fold may still apply it: run here too, it would apply twice.
        done.set_exception(CallPendingError(failed.actor_id, [failed.call_id]))
        return done
    future: ActorFuture[Any] = ActorFuture()
    call = PendingCall(
        method=failed.method,
        args=(),
        kwargs={},
        # By value, as the call was made: each run of the body gets its own copy, and a failure
        # recorded again holds the arguments as recorded, not what the body made of them.
        frozen=freeze_arguments(failed.args, failed.kwargs),
        readonly=False,
        future=future,
        call_id=failed.call_id,
        # Recorded when it succeeds: a re-run of the call elsewhere (another process's resume
        # listed the record too) or later (the record put back) is answered with its outcome.
        idempotency_key=resume_dedup_key(failed.born, failed.call_id),
    )

    def forget(finished: concurrent.futures.Future[Any]) -> None:
        if finished.exception() is not None:
            done.set_exception(finished.exception())
            return
        # Settled on the IO loop: schedule the delete there, and answer once it is done
        # so that a status read after the result no longer says FAILED.
        # (A background request of the runtime: shutdown waits for it; once stopped, refused.)
        deleting = runtime.background(delete_failure(runtime.store, failed.actor_id, failed.call_id))
        deleting.add_done_callback(lambda _: done.set_result(finished.result()))

    future.add_done_callback(Waker(forget))
    core = runtime.core(failed.actor_id)
    resuming(failed.actor_id, failed.call_id)  # its record goes before its step is written
    core.submit(call)
    done._help = functools.partial(core.help, future)  # (see resume)
    return done
