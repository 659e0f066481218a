"""Retention: delete an actor's old steps behind a low-watermark (DESIGN.md §5).

``compact(log, keep_last=K)`` keeps the K newest steps (at least; see
``min_age``) and deletes the older ones, in this order:

1. find the newest step L (HEAD, then probe past it);
2. move HEAD forward to L, so that no reader starts from a step about to go;
3. choose the new watermark M <= L - K + 1 (never above the newest, and
   lowered further so that no deleted step has a successor younger than
   ``min_age`` seconds by the successor's recorded wall-clock ``time``; L a
   tombstone, M passing the deleted actor's last step: that delete's clean-up
   needing the step is done again first, and M lowered to keep it if that fails
   other than by a storage error: ``_kept_for_its_clean_up``);
4. raise ``actors/<id>/gc`` to ``{"min_step": M}`` (forward only, by
   create or if-match) *before* deleting anything;
5. delete every step below M that still exists (including leftovers of an
   interrupted compaction, or an object a stalled writer re-created);
6. delete sub-workflow checkpoints under ``actors/<id>/tasks/<call_id>/``
   whose call was committed in a deleted step or that are older than
   ``min_age`` before the newest step's recorded time (never by our clock
   alone: see ``_actor_now``).

Why this is safe for writers: a commit is a create-only put of ``steps/N+1``.
A writer that held step N while a compaction deleted N+1 could re-create that
number. A writer whose cache is older than ``Settings.fresh_window`` (or whose
put completed later than that after validating) reads ``gc`` after its put and
treats a step below the watermark as a lost race (it deletes its object and
retries). A writer with a fresher cache skips that read; it is safe because
step N+1 can only be deleted once its successor N+2 is ``min_age`` old, and
N+2 was written after the writer validated: so ``min_age`` must exceed
``fresh_window`` plus the clock skew between machines. Lest that hang on the
compactor's clock alone (one running ahead), N+2 must also be older than the
newest step by ``min(min_age, fresh_window + CLOCK_SKEW)`` by the times the
writers recorded (``_writers_cutoff``). This function refuses a ``min_age``
below its ``fresh_window`` argument (the writers', default ``Settings``'); ``ActorHandle.compact``
passes the runtime's (tests use ``min_age=0`` with ``fresh_window=0`` everywhere).

Why a writer whose put answered late is still never applied twice: before
raising the watermark past a step, the compaction reads the writer id of
the (committed) object at that number and records it in ``gc`` (the newest
``GC_RECORDED_STEPS`` of them). A writer that learns only after a
compaction that its put landed (a stall, SIGSTOP, a slow network) looks its
number up there: its own id means committed-then-compacted (success),
another id means its object came later (not a commit: delete, retry), and a
number no longer recorded means :class:`CommitOutcomeUnknownError`.

Defaults: ``min_age`` is ``DEFAULT_MIN_AGE`` (one day): a writer can trust
a cached step for ``fresh_window`` seconds, and a writer stalled longer
than ``min_age`` between validating and committing can only be resolved
through the record above; a day is past any realistic stall (Delta Lake
keeps its log 30 days for the same reason). ``vactor compact`` refuses a
``min_age`` below ``MIN_AGE_FLOOR`` (one hour) unless ``--force``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from vactor_cloud.checked_read import read_envelope
from vactor_cloud.deletion import forget_by_last_step, is_deleted, last_live_step
from vactor_cloud.errors import (
    ActorNotFoundError,
    AlreadyExistsError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    RetryableStorageError,
    StorageError,
    VactorError,
)
from vactor_cloud.incarnation import born_in, born_of
from vactor_cloud.keys import failure_key, tasks_prefix
from vactor_cloud.lease import CLOCK_SKEW
from vactor_cloud.log import ActorLog
from vactor_cloud.log_records import GC_RECORDED_STEPS, GcWatermark, StepRecord, encode_gc
from vactor_cloud.runtime import get_runtime
from vactor_cloud.settings import Settings
from vactor_cloud.storage import IfMatch

__all__ = [
    "DEFAULT_MIN_AGE",
    "MIN_AGE_FLOOR",
    "STALE_TEMP_AGE",
    "CompactionReport",
    "compact",
    "raise_watermark",
    "validate_compaction_args",
]

logger = logging.getLogger("vactor_cloud")

#: default ``min_age``: a day, past any realistic stall of a writer (see the module docstring)
DEFAULT_MIN_AGE = 24 * 3600.0
#: the smallest ``min_age`` ``vactor compact`` accepts without ``--force``
MIN_AGE_FLOOR = 3600.0
#: local store temp files (``.tmp-*``) older than this are a killed writer's leftovers
STALE_TEMP_AGE = 3600.0

T = TypeVar("T")

#: requests in flight at once while reading or deleting many objects
_PARALLEL = 16
#: keys per LIST page while walking the steps to delete
_PAGE = 1000
_WATERMARK_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What one compaction did.

    ``watermark`` is the ``gc`` low-watermark after the run: every step below
    it is gone (or going), every step from it to ``newest`` was kept.
    ``held_by_min_age`` counts the steps ``keep_last`` alone would have
    deleted but ``min_age`` kept.
    """

    actor_id: str
    newest: int
    watermark: int
    deleted_steps: int
    deleted_tasks: int
    held_by_min_age: int
    #: calls whose failure record (for ``workflow.resume``) was older than ``min_age`` and went:
    #: they can no longer be resumed (each is also logged as a warning), but by a resume that
    #: listed the record before it went, which may still run the call
    unresumable: tuple[str, ...] = ()
    #: of ``held_by_min_age``, the steps old enough by our clock but not shown old by the
    #: writers' times (``_writers_cutoff``): a compaction in this process ``fresh_window``
    #: seconds from now deletes them (it has then seen them exist that long)
    held_unproven: int = 0

    @property
    def kept_steps(self) -> int:
        return self.newest - self.watermark + 1


def validate_compaction_args(
    keep_last: object,
    min_age: object,
    *,
    fresh_window: float | None = None,
    floor: float | None = None,
) -> tuple[int, float]:
    """``(keep_last, min_age)`` checked, or ``ValueError`` saying what is wrong.

    ``keep_last`` is an integer >= 1; ``min_age`` a real, finite number of
    seconds >= 0 (NaN compares false with everything and would slip past
    every age check, deleting steps seconds old). With ``fresh_window``,
    ``min_age`` must also be at least that; with ``floor``, at least that
    (the CLI's documented floor, waived by ``--force``).
    """
    if not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 1:
        raise ValueError(
            f"keep_last must be an integer >= 1 (the newest step is always kept), got {keep_last!r}"
        )
    if not isinstance(min_age, numbers.Real) or isinstance(min_age, bool):
        raise ValueError(f"min_age must be a number of seconds, got {min_age!r}")
    age = float(min_age)
    if not math.isfinite(age) or age < 0:
        raise ValueError(f"min_age must be a finite number of seconds >= 0, got {min_age!r}")
    if fresh_window is not None and age < fresh_window:
        raise ValueError(
            f"min_age={age} s is below Settings.fresh_window={fresh_window} s: a writer trusting a "
            "cache that fresh could re-create a deleted step unnoticed; pass min_age >= fresh_window "
            "plus your machines' clock skew (or lower fresh_window in init(settings=...))"
        )
    if floor is not None and age < floor:
        raise ValueError(
            f"min_age={age} s is below the floor of {floor:g} s: a writer stalled longer than min_age "
            "(a paused VM, SIGSTOP, a long GC) may find its commit compacted and unresolvable; "
            "pass --force if no writer can be running"
        )
    return keep_last, age


async def compact(
    log: ActorLog,
    keep_last: int,
    *,
    min_age: float = DEFAULT_MIN_AGE,
    fresh_window: float = Settings.fresh_window,
    on_deleted: Callable[[int, int], None] | None = None,
    on_listed: Callable[[str, int, int], None] | None = None,
) -> CompactionReport:
    """Delete the steps of ``log``'s actor older than its ``keep_last`` newest.

    Never deletes the newest step, and never a step whose successor was
    written less than ``min_age`` seconds ago (by the successor's recorded
    wall-clock time), nor less than ``min(min_age, fresh_window + CLOCK_SKEW)``
    before the newest step (by the two steps' recorded times, whatever our
    clock reads: see ``_writers_cutoff``); ``fresh_window`` is the writers'
    ``Settings.fresh_window``. The watermark is raised before anything is deleted, so
    a writer stalled across the compaction cannot re-create a deleted step
    number and report it as committed. Safe to run concurrently with writers,
    readers and other compactions; idempotent. ``ActorNotFoundError`` if the
    actor has no steps; ``ValueError`` (before anything is read) if ``min_age`` is
    below ``fresh_window``: a writer trusting a cache that fresh skips the watermark
    read, and would re-create a deleted step and be told its call committed.

    ``on_deleted(deleted, total)``, if given, is called as each batch of step deletes
    lands: the steps deleted so far, of ``total`` to delete (an actor of a million steps
    takes minutes; ``vactor compact ID`` shows the count). It runs on the event loop, so it
    must not block; it adds no request, and nothing else changes with it.

    ``on_listed(phase, done, total)``, if given, tells of the work before the first delete,
    alike: ``("listing old steps", found, 0)`` after each page of the listing (the old steps
    found so far; their total is known only when it ends), then, for an actor with sub-task
    checkpoints, ``("reading old steps", read, total)`` as each batch of them is read (the
    calls they committed).
    """
    keep_last, min_age = validate_compaction_args(keep_last, min_age, fresh_window=fresh_window)
    started = time.time()

    head = await log.read_head()
    newest = await log.load_latest(head)
    if newest is None:
        raise ActorNotFoundError(log.actor_id, log.store.describe())
    # Readers start at HEAD: move it past everything we may delete first.
    await log.advance_head(newest.step, newest.class_ref, head)

    proven = _seen_long_enough(log, newest.step, fresh_window)
    current = (await log.read_watermark()).min_step
    by_count = max(0, newest.step - keep_last + 1)
    target = by_age = by_count
    if min_age > 0 and by_count > current:
        by_age = await _youngest_allowed(log, max(current, 0), by_count, started - min_age)
        cutoff = min(started - min_age, _writers_cutoff(newest.time, min_age, fresh_window))
        target = await _youngest_allowed(log, max(current, 0), by_age, cutoff)
        # Steps this process saw exist fresh_window ago need no writer's evidence.
        target = max(target, min(by_age, proven + 1))
    kept = await _kept_for_its_clean_up(log, newest, max(target, current)) if is_deleted(newest) else target
    watermark = await raise_watermark(log, max(min(target, kept), current))

    doomed = await _steps_below(log, watermark, on_listed)
    tasks = await _task_calls(log)
    committed_calls: dict[str, int] = {}
    if tasks and doomed:
        committed_calls = await _calls_in(log, doomed, (await log.read_watermark()).compacted, on_listed)
    # Oldest first, a chunk at a time (a chunk's deletes land in any order): while this
    # runs, the remaining steps stay contiguous but for the chunk being deleted.
    deleted = 0
    for chunk in _chunks(doomed, _PARALLEL):
        await log.store.delete_many([log.step_key(step) for step in chunk])
        deleted += len(chunk)
        if on_deleted is not None:
            on_deleted(deleted, len(doomed))
    # A call not committed is aged against the actor's own clock, the newest step's time, never
    # later than ours: our clock running ahead must not delete what a running call or a resume needs.
    committed, undecided = await _split_committed(log, tasks, committed_calls, newest)
    deleted_tasks, unresumable = await _delete_tasks(
        log, committed, undecided, _actor_now(started, newest.time) - min_age, min_age
    )
    await log.store.remove_stale_temp_files(log.prefix, older_than=max(STALE_TEMP_AGE, min_age))
    await _delete_dedup_checkpoints(log, watermark, newest)
    return CompactionReport(
        actor_id=log.actor_id,
        newest=newest.step,
        watermark=watermark,
        deleted_steps=len(doomed),
        deleted_tasks=deleted_tasks,
        held_by_min_age=max(0, by_count - max(target, current)),
        unresumable=tuple(unresumable),
        held_unproven=max(0, by_age - max(target, current)),
    )


async def raise_watermark(log: ActorLog, min_step: int) -> int:
    """Raise the actor's ``gc`` watermark to at least ``min_step``; return its value after.

    Forward only: a concurrent compaction that raised it further wins, and
    the higher value is returned. Create when absent, else if-match. Before
    each attempt the writer ids of the steps it passes (the newest
    ``GC_RECORDED_STEPS``) are read and recorded with it, so that a writer
    answered late can tell whether its step was the committed one.
    """
    writers: dict[int, str | None] = {}
    for _ in range(_WATERMARK_ATTEMPTS):
        current = await log.read_watermark()
        if current.min_step >= min_step:
            return current.min_step
        low = max(current.min_step, min_step - GC_RECORDED_STEPS)
        await _read_writers(log, [n for n in range(low, min_step) if n not in writers], writers)
        recorded = dict(current.compacted)
        recorded.update({n: w for n in range(low, min_step) if (w := writers.get(n)) is not None})
        kept = sorted(recorded)[-GC_RECORDED_STEPS:]
        raised = GcWatermark(
            min_step,
            compacted={n: recorded[n] for n in kept},
            recorded_from=kept[0] if kept else min_step,
        )
        data = encode_gc(log.gc_key, raised, time.time(), log.signing_key)
        try:
            if current.version is None:
                await log.store.put(log.gc_key, data, mode="create")
            else:
                await log.store.put(log.gc_key, data, mode=IfMatch(current.version))
            return min_step
        except (AlreadyExistsError, PreconditionFailedError, RetryableStorageError):
            # Another compaction moved it (or the answer was lost): re-read and decide again.
            continue
    raise VactorError(
        f"actor {log.actor_id!r}: could not raise the retention watermark to {min_step} after "
        f"{_WATERMARK_ATTEMPTS} attempts (concurrent compactions?); nothing was deleted, retry later"
    )


async def _kept_for_its_clean_up(log: ActorLog, tombstone: StepRecord, watermark: int) -> int:
    """The watermark to raise, at most ``watermark``, for an actor deleted by ``tombstone``:
    before its last step goes, the delete's clean-up that needs it is done (again: the
    deleting process may have died before it; ``deletion.forget_by_last_step``), and if that
    fails other than by a storage error (raised: nothing is deleted), the step is kept. Gone,
    nothing told which inbox objects the actor applied, and the next actor under the id applied
    them again."""
    try:
        base = await last_live_step(log, tombstone)
    except IntegrityError:
        return watermark  # (a damaged step on the way: nothing to judge by, kept or not)
    if base is None or base.step >= watermark:
        return watermark
    try:
        await forget_by_last_step(log, base)
    except StorageError:
        raise
    except Exception as exc:
        logger.warning(
            "actor %r: compaction keeps step %d, the deleted actor's last: what it left beside its "
            "steps could not be cleaned up (%s); remove the inbox objects of events it applied",
            log.actor_id,
            base.step,
            exc,
        )
        return base.step
    return watermark


async def _read_writers(log: ActorLog, steps: list[int], into: dict[int, str | None]) -> None:
    """The writer id of each step in ``steps`` (``None``: missing or unreadable), into ``into``.

    These steps are at or above the current watermark, so each object is the
    one its create-only put committed: nothing was ever deleted there.
    """

    async def writer_of(step: int) -> str | None:
        try:
            record = await log.read_step(step)
        except IntegrityError:
            return None
        return None if record is None else record.writer

    for chunk in _chunks(steps, _PARALLEL):
        for step, writer in zip(chunk, await asyncio.gather(*(writer_of(n) for n in chunk)), strict=True):
            into[step] = writer


async def _youngest_allowed(log: ActorLog, low: int, high: int, cutoff: float) -> int:
    """The largest M in [low, high] whose step was written at or before ``cutoff``.

    Deleting the steps below M deletes no step whose successor is younger
    than ``cutoff``: the chain is causal, so every successor n+1 <= M was
    written before step M. Binary search, assuming recorded times grow along
    the chain (true up to clock skew between writers). Missing steps (already
    deleted) count as old.
    """
    top = high
    if not await _written_before(log, low, cutoff, top):
        return low
    while low < high:
        mid = (low + high + 1) // 2
        if await _written_before(log, mid, cutoff, top):
            low = mid
        else:
            high = mid - 1
    return low


async def _written_before(log: ActorLog, step: int, cutoff: float, top: int) -> bool:
    """Whether ``step`` was written at or before ``cutoff`` (a missing one was deleted: old).

    A step that does not verify (damaged at rest, or in transit) is judged by the next one
    that does, up to ``top``: the chain is causal, so it was written before its successors,
    and a successor old enough vouches for it. (It failed every compaction of the actor, so
    that not even the damaged step could be deleted.) None up to ``top``: taken for young."""
    for number in range(step, top + 1):
        try:
            record = await log.read_step(number)
        except IntegrityError as exc:
            logger.warning(
                "actor %r: compaction passes over a step that does not verify: %s", log.actor_id, exc
            )
            continue
        return record is None or record.time <= cutoff
    return False


async def _steps_below(
    log: ActorLog, watermark: int, on_listed: Callable[[str, int, int], None] | None = None
) -> list[int]:
    """Every existing step number below ``watermark``, ascending (LIST, page by page; each
    told to ``on_listed``: see :func:`compact`)."""
    found: list[int] = []
    after: int | None = None
    while True:
        page = await log.list_steps(after=after, limit=_PAGE)
        below = [step for step in page if step < watermark]
        found.extend(below)
        if on_listed is not None:
            on_listed("listing old steps", len(found), 0)
        if len(page) < _PAGE or len(below) < len(page):
            return found
        after = page[-1]


async def _calls_in(
    log: ActorLog,
    steps: list[int],
    committed_by: Mapping[int, str],
    on_listed: Callable[[str, int, int], None] | None = None,
) -> dict[str, int]:
    """Call ids committed in ``steps``, each with the latest incarnation that committed it
    (``vactor_cloud.incarnation``; a step that cannot be read contributes none).

    ``committed_by`` is the ``gc`` record: the writer of the committed step at each number
    compactions passed. A step there by another writer is a stray (a stalled writer's late
    put re-created the freed number): not a commit, its writer runs its calls again, and
    their sub-task checkpoints must stay for that run.
    """

    async def calls_of(step: int) -> tuple[list[str], int]:
        try:
            record: StepRecord | None = await log.read_step(step)
        except IntegrityError:
            return [], 0
        if record is None or committed_by.get(step, record.writer) != record.writer:
            return [], 0
        return [call.call_id for call in record.calls], born_of(record.extra)

    found: dict[str, int] = {}
    read = 0
    for chunk in _chunks(steps, _PARALLEL):
        for ids, born in await asyncio.gather(*(calls_of(step) for step in chunk)):
            for call_id in ids:
                found[call_id] = max(born, found.get(call_id, 0))
        read += len(chunk)
        if on_listed is not None:
            on_listed("reading old steps", read, len(steps))
    return found


async def _split_committed(
    log: ActorLog, tasks: dict[str, list[str]], committed_calls: dict[str, int], newest: StepRecord
) -> tuple[list[str], dict[str, list[str]]]:
    """The checkpoints of calls committed in deleted steps (to delete), and the others by call
    id (to age).

    A keyed call's id is the same on every actor under the id (``vc.delete_actor``, then
    ``get_or_create``): a call an earlier actor committed leaves to the age test the
    checkpoints a later actor wrote under that id, its own call with the same key, not
    committed (one may be running). Only calls committed by an actor earlier than the
    newest step's cost a read (a GET per checkpoint: its meta names the incarnation).
    """
    newest_born = await _born_after_listing(log, tasks, committed_calls, newest)
    committed: list[str] = []
    undecided: dict[str, list[str]] = {}
    for call_id, keys in tasks.items():
        if call_id not in committed_calls:
            undecided[call_id] = keys
        elif committed_calls[call_id] >= newest_born:
            committed.extend(keys)
        else:
            metas = [
                meta
                for chunk in _chunks(keys, _PARALLEL)
                for meta in await asyncio.gather(*(_checkpoint_meta(log, key) for key in chunk))
            ]
            born = committed_calls[call_id]
            for key, meta in zip(keys, metas, strict=True):
                if _later_than(meta, born):
                    undecided.setdefault(call_id, []).append(key)
                else:
                    committed.append(key)
    return committed, undecided


async def _born_after_listing(
    log: ActorLog, tasks: dict[str, list[str]], committed_calls: dict[str, int], newest: StepRecord
) -> int:
    """The incarnation of the newest step as of now, after ``tasks`` was listed: ``newest``'s
    unless the id was deleted and made again since ``newest`` was read (a checkpoint listed
    may then be the next actor's, under the call id of a call ``newest``'s actor committed).
    One probe, made only when a call committed by ``newest``'s incarnation has checkpoints
    (the shortcut that deletes them unread); a watermark past the step probed (a compaction
    of a later actor) answers "later than any": every such checkpoint is read."""
    born = born_of(newest.extra)
    if not any(committed_calls.get(call_id, -1) >= born for call_id in tasks):
        return born
    latest, watermark = await log.probe_with_watermark(newest)
    if watermark.min_step > latest.step:
        return sys.maxsize
    return born_of(latest.extra)


def _later_than(meta: dict[str, Any] | None, born: int) -> bool:
    """Whether a checkpoint's meta names an incarnation later than ``born`` (one that names
    none readable is aged, not taken for committed; one gone or unreadable goes)."""
    if meta is None:
        return False
    try:
        return born_in(meta) > born
    except ValueError:
        return True


async def _task_calls(log: ActorLog) -> dict[str, list[str]]:
    """Sub-workflow checkpoints ``tasks/<call_id>/...`` grouped by call id."""
    prefix = tasks_prefix(log.actor_id)
    grouped: dict[str, list[str]] = {}
    for key in await log.store.list(prefix):
        call_id, sep, _ = key[len(prefix) :].partition("/")
        if sep:
            grouped.setdefault(call_id, []).append(key)
    return grouped


#: (store, actor) -> (the newest step this process's compaction saw, monotonic time it first did)
_newest_seen: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
_NEWEST_SEEN_MAX = 4096


def _seen_long_enough(log: ActorLog, newest: int, fresh_window: float) -> int:
    """The newest step this process saw exist at least ``fresh_window`` ago (monotonic), or -1;
    remembers ``newest`` as seen now.

    Every step up to it was written ``fresh_window`` ago or more, so any put built on a cache
    validated before it has ended (see ``_writers_cutoff``): it may go whatever the times
    recorded in the steps say, so an idle actor's last steps go on a compaction this
    process repeats ``fresh_window`` later (``vactor compact`` does so by itself).
    """
    key = (log.store.url, log.actor_id)
    now = time.monotonic()
    seen = _newest_seen.get(key)
    proven = seen[0] if seen is not None and now - seen[1] >= fresh_window else -1
    if seen is None or seen[0] != newest:
        _newest_seen[key] = (newest, now)
        _newest_seen.move_to_end(key)
        while len(_newest_seen) > _NEWEST_SEEN_MAX:
            _newest_seen.popitem(last=False)
    return min(proven, newest)


def _writers_cutoff(newest_step_time: float, min_age: float, fresh_window: float) -> float:
    """The latest time a deleted step's successor may carry, judged by the writers' clocks alone.

    ``min_age`` by our clock alone let a compactor whose clock runs ``min_age`` ahead delete
    step N+1 a moment after N+2 was written, while a writer that validated N within its
    ``fresh_window`` (so it skips the watermark read) had yet to put N+1: it re-created the
    number and its call was acknowledged, held by no step of the history. N+2 written at
    least ``fresh_window`` (plus ``CLOCK_SKEW`` between writers) before the newest step
    means that put had ended before the newest step was written, so before this compaction
    began: it met N+1 and lost its race. The cost: an actor idle since keeps the steps of
    its last ``fresh_window + CLOCK_SKEW`` of activity (at least the newest step's
    predecessor) until it commits again. Capped by ``min_age`` (0 deletes at once).
    """
    guard = min(min_age, fresh_window + CLOCK_SKEW)
    return newest_step_time - guard if math.isfinite(newest_step_time) else math.inf


def _actor_now(ours: float, newest_step_time: float) -> float:
    """The "now" against which an uncommitted call's checkpoints are aged: the newest step's
    recorded time, or our clock if that reads earlier (a finite time only).

    The checkpoints and the failure record of a call not committed carry their writer's
    clock. Compared with the compactor's clock, a compactor running ``d`` ahead deleted them
    ``d`` early: a running call's children ran again, a call that failed a moment ago could
    no longer be resumed. Compared with the newest step's time, they go only once the actor
    has committed a step ``min_age`` after them by its writers' clocks, whatever ours reads
    (an actor idle since keeps them until it commits again).
    """
    return min(ours, newest_step_time) if math.isfinite(newest_step_time) else ours


async def _delete_tasks(
    log: ActorLog, committed: list[str], tasks: dict[str, list[str]], cutoff: float, min_age: float
) -> tuple[int, list[str]]:
    """Delete ``committed`` (the checkpoints of calls committed in deleted steps) and those of
    the calls in ``tasks`` written before ``cutoff``; how many objects, and the calls whose
    failure record went (no longer resumable).

    A call committed long ago never runs again (a retry with its idempotency
    key is answered from the step's table), so its children are not needed.
    A checkpoint older than ``cutoff`` belongs to a call abandoned (or running
    longer than ``min_age``, which then recomputes the children it loses).
    The age is the ``time`` in the checkpoint's metadata, ``cutoff`` is by
    the actor's newest step (``_actor_now``); a checkpoint without a readable
    time is kept. A call with a failure record is aged by that record
    (rewritten at each failure), not by its first checkpoint: a call that failed
    just now, its first step checkpointed long ago, stays resumable for ``min_age``.
    """
    doomed = list(committed)
    unresumable: list[str] = []
    for chunk in _chunks(tasks, _PARALLEL):
        # (a failure record names the call's newest failure; else the first checkpoint)
        aged_by = [_aged_by(log.actor_id, call_id, tasks[call_id]) for call_id in chunk]
        metas = await asyncio.gather(*(_checkpoint_meta(log, key) for key in aged_by))
        for call_id, key, meta in zip(chunk, aged_by, metas, strict=True):
            written = _written_at(meta)
            if meta is None or written is None or written > cutoff:
                continue
            doomed.extend(tasks[call_id])
            if key == failure_key(log.actor_id, call_id):
                unresumable.append(call_id)
                logger.warning(
                    "actor %r: the failure record of call %s (method %r), recorded %.0f s before "
                    "the actor's newest step, was older than compaction's min_age: compaction "
                    "removed it, and the call can no longer be resumed (workflow.resume; a resume "
                    "that listed it before may still run it: look at handle.history() for it, "
                    "shown as a resumed failed call); run it again as a new call if it is still "
                    "wanted and not there",
                    log.actor_id,
                    call_id,
                    meta.get("method"),
                    cutoff + min_age - written,
                )
    await log.store.delete_many(doomed)  # in any order: nothing reads them any more
    return len(doomed), unresumable


async def _delete_dedup_checkpoints(log: ActorLog, watermark: int, newest: StepRecord | None = None) -> int:
    """Delete the idempotency checkpoints that no kept step names, nor any step to come,
    below the newest step (``newest``, as the compaction read it first; ``None``: not known).

    A step names the checkpoint it was written on, and names only grow along the chain: the
    checkpoint ``<n>-<token>`` is first named, if ever, by step ``n`` (the commit that wrote
    it), and a commit names its parent's or a new one of its own number. So every kept step
    names the oldest kept step's (the floor) or a newer one, and the older checkpoints were
    named only by deleted steps, or by none (a commit that lost its race). And a step ``k``
    naming ``<j>-<t>`` tells that steps ``j..k`` all name it: every other checkpoint of a number
    from ``j`` to ``k`` is a lost race's, named by no step now or later (``_named_by_none``).
    Known so: the floor's numbers and the newest's, and those of a number at which the
    listing holds two checkpoints or more (its step read: a lost race is seldom). Checkpoints
    above the newest step stay (a commit in flight puts its checkpoint before its step); so
    does a lone checkpoint of a number between those known (a lost race whose winner wrote
    none: it goes once the watermark passes it).
    """
    try:
        oldest = await log.read_step(watermark)
    except IntegrityError as exc:
        # Which checkpoint it names is unknown: keep them all (the next compaction tries again).
        # Raised, it failed the compaction after its steps were deleted, and every one after.
        logger.warning(
            "actor %r: compaction keeps the idempotency checkpoints: the oldest kept step does not "
            "verify (%s)",
            log.actor_id,
            exc,
        )
        return 0
    if watermark < await log.read_gc():
        # Another compaction raised the watermark past ours (and deleted our watermark step):
        # what sits at that number now may be a stray (a stalled writer's late put), naming a
        # checkpoint newer than the one the kept steps name. Read after the step, so a stray
        # read shows here. That compaction deletes the old checkpoints; we leave them.
        return 0
    if oldest is None:
        return 0
    # No kept step names a checkpoint older than the watermark step itself.
    floor = f"{watermark:020d}" if oldest.dedup_base is None else oldest.dedup_base
    # One listing of dedup/: the checkpoints, and the outcome objects under dedup/outcomes/.
    listed = await log.store.list(log.dedup_prefix)
    checkpoints = [key[len(log.dedup_prefix) :] for key in listed if "/" not in key[len(log.dedup_prefix) :]]
    #: steps read, by number: the checkpoint each names
    names: dict[int, str | None] = {watermark: oldest.dedup_base}
    if newest is not None and newest.step > watermark:
        names[newest.step] = newest.dedup_base
    names |= await _names_at_shared_numbers(log, checkpoints, names, watermark)
    doomed = [name for name in checkpoints if name < floor or _named_by_none(name, names)]
    # In any order: no kept step names them.
    await log.store.delete_many([log.dedup_key(name) for name in doomed])
    into = len(log.dedup_outcomes_prefix)
    outcomes = [key[into:] for key in listed if key.startswith(log.dedup_outcomes_prefix)]
    await _delete_unnamed_outcomes(log, watermark, oldest.dedup_base, outcomes)
    return len(doomed)


async def _names_at_shared_numbers(
    log: ActorLog, checkpoints: list[str], known: Mapping[int, str | None], watermark: int
) -> dict[int, str | None]:
    """The checkpoint step ``n`` names, for each number ``n`` above the watermark and below the
    newest step known at which ``checkpoints`` holds two or more that ``known`` does not settle
    (two commits of step ``n`` that each wrote one: one lost its race). One GET each; a step that
    cannot be read settles nothing. None at all once another compaction raised the watermark
    meanwhile: a step read may be a stray (a stalled writer's late put at a number it deleted),
    and what the stray names decides nothing."""
    top = max(known)
    counts: dict[int, int] = {}
    for name in checkpoints:
        number = _checkpoint_number(name)
        if number is not None and watermark < number < top and not _settled(number, known):
            counts[number] = counts.get(number, 0) + 1
    shared = sorted(number for number, count in counts.items() if count > 1)
    if not shared:
        return {}

    async def named_at(step: int) -> tuple[int, str | None] | None:
        try:
            record = await log.read_step(step)
        except IntegrityError:
            return None
        return None if record is None else (step, record.dedup_base)

    read: list[tuple[int, str | None]] = []
    for chunk in _chunks(shared, _PARALLEL):
        read += [found for found in await asyncio.gather(*map(named_at, chunk)) if found is not None]
    if watermark < await log.read_gc():
        return {}
    return dict(read)


def _settled(number: int, names: Mapping[int, str | None]) -> bool:
    """Whether a step of ``names`` tells which checkpoint of ``number``, if any, is named."""
    return any(_tells_of(step, name, number) for step, name in names.items())


def _named_by_none(checkpoint: str, names: Mapping[int, str | None]) -> bool:
    """Whether the steps read (``names``: step -> the checkpoint it names) tell that no step
    names ``checkpoint``, now or later: it is of a number from ``j`` to ``k`` where step ``k``
    names another checkpoint ``<j>-...`` (or none: ``j = k``)."""
    number = _checkpoint_number(checkpoint)
    return number is not None and any(
        _tells_of(step, name, number) and checkpoint != name for step, name in names.items()
    )


def _tells_of(step: int, name: str | None, number: int) -> bool:
    """Whether step ``step``, naming checkpoint ``name`` (None: none), tells which checkpoint of
    ``number`` is named: ``number`` is from ``name``'s number to ``step`` (steps that all name
    ``name``), or ``step`` itself when it names none."""
    first = step if name is None else _checkpoint_number(name)
    return first is not None and first <= number <= step


def _checkpoint_number(name: str) -> int | None:
    """``N`` of a checkpoint named ``<N:020d>-<token>``; None for any other name."""
    number, dash = name[:20], name[20:21]
    return int(number) if dash == "-" and number.isdigit() and number.isascii() else None


async def _delete_unnamed_outcomes(
    log: ActorLog, watermark: int, floor: str | None, outcomes: list[str]
) -> int:
    """Delete the outcome objects (``dedup/outcomes/<N:020d>-<sha256>``) of steps below the
    watermark that the floor checkpoint (the one the watermark step names; None: it names
    none) does not name. One GET, of the floor, when there are such objects; none otherwise.

    A checkpoint names only objects its base checkpoint names or new ones of its own step
    number. Every checkpoint a kept step names descends from the floor (written on it, or on one
    written on it, ...), at a step number at or above the watermark: of the objects below the
    watermark it names only some the floor names. (A step naming none: the checkpoints written
    on it, or later, name none below the watermark.) Listed after the watermark was raised, so
    no step that commits from now on is below it, and such a step's checkpoint descends from
    the floor in turn: an object this deletes is named by no step that is or will be kept,
    whichever commits race it (``test_a_compaction_racing_a_commit_that_names_an_existing_outcome``).
    The checkpoints no step names (a lost race's) name what they will: no step reads them.
    """
    below = f"{watermark:020d}"
    candidates = {name for name in outcomes if name[:20] < below}
    if not candidates:
        return 0
    named: set[str] = set()
    if floor is not None:
        try:
            named = await log.read_dedup_checkpoint_outcomes(floor)
        except (StorageError, IntegrityError) as exc:
            # What it names is unknown (gone: deleted out of band; damaged; a newer format):
            # keep them all (the next compaction tries again).
            logger.warning(
                "actor %r: compaction keeps the outcome objects: checkpoint %s cannot be read (%s)",
                log.actor_id,
                floor,
                exc,
            )
            return 0
    doomed = sorted(candidates - named)
    await log.store.delete_many([log.dedup_outcome_key(name) for name in doomed])
    return len(doomed)


def _aged_by(actor_id: str, call_id: str, keys: list[str]) -> str:
    """The object whose ``time`` ages one call's group: its failure record, else its first checkpoint."""
    record = failure_key(actor_id, call_id)
    return record if record in keys else min(keys)


async def _checkpoint_meta(log: ActorLog, key: str) -> dict[str, Any] | None:
    """The meta of a checkpoint or failure record; None if gone or unreadable."""
    try:
        # (read again if it does not verify: one taken for unreadable is deleted as aged)
        return (await read_envelope(log.store, key, log.signing_key)).meta
    except (NotFoundError, IntegrityError):
        return None


def _written_at(meta: dict[str, Any] | None) -> float | None:
    written = None if meta is None else meta.get("time")
    return float(written) if isinstance(written, int | float) else None


def _chunks(items: Iterable[T], size: int) -> list[list[T]]:
    batch: list[T] = []
    out: list[list[T]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return out


async def compact_actor(
    actor_id: str, keep_last: int, *, min_age: float = DEFAULT_MIN_AGE
) -> CompactionReport:
    """Compact the actor ``actor_id`` of the current runtime (what ``ActorHandle.compact`` runs).

    Refuses a ``min_age`` below the runtime's ``Settings.fresh_window``: a
    writer trusting a cache that fresh does not read the watermark, so a
    step it is about to re-create must not be deletable yet (see the module
    docstring). Every process sharing the store should use the same
    ``fresh_window``, and ``min_age`` should also cover the clock skew
    between their machines.
    """
    runtime = get_runtime()
    keep_last, min_age = validate_compaction_args(
        keep_last, min_age, fresh_window=runtime.settings.fresh_window
    )
    core = runtime.core(actor_id)
    report = await compact(core.log, keep_last, min_age=min_age, fresh_window=runtime.settings.fresh_window)
    if core.record is not None and core.record.step < report.watermark:
        # This process's cache points below the watermark: forget it rather than commit on it.
        core.forget()
    return report
