"""History and time travel: what an actor's log says happened, and what it looked like then.

Everything here only *reads* the step log (DESIGN.md §3); nothing is
written, so it is safe to run against a live bucket from any machine while
writers keep committing.

* :func:`history` lists committed steps newest first, with the calls each
  applied (argument and result summaries recorded at commit time).
* :func:`state_at` restores a detached, read-only instance from one step.
* :func:`list_actors` enumerates the actors under the storage root, paging
  through one listing that skips over each actor's objects.

A step that compaction deleted cannot be read back: asking for it raises
:class:`~vactor_cloud.errors.StepNotFoundError`, which names the steps that
remain.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from vactor_cloud.definition import check_at_step, check_step_number
from vactor_cloud.deletion import DELETE_CALL, deleted_error, is_deleted
from vactor_cloud.errors import ActorDefinitionError, ActorNotFoundError, IntegrityError
from vactor_cloud.ids import EVENT_KEY_PREFIX, is_resume_key
from vactor_cloud.log import ActorLog, actor_prefix, missing_step_error
from vactor_cloud.log_records import CallRecord, StepRecord
from vactor_cloud.reentrancy import writers_on_this_thread
from vactor_cloud.runtime import Runtime, get_runtime, validate_actor_id
from vactor_cloud.state import expect_serializer, loads_state, restore_instance
from vactor_cloud.storage import ObjectStore
from vactor_cloud.timers import MARKERS, describe_call

if TYPE_CHECKING:
    from vactor_cloud.definition import ActorDefinition

__all__ = [
    "ActorInfo",
    "HistoryEntry",
    "check_at_step",
    "find_step",
    "history",
    "iter_actor_ids",
    "iter_actors",
    "iter_history",
    "list_actors",
    "list_actors_async",
    "raw_state_at",
    "state_at",
]

#: steps read concurrently while walking the log backwards
_READ_AHEAD = 16
#: history entries read (and, by ``vactor history``, printed) at a time: the watermark is read
#: once per page
_HISTORY_PAGE = 64
#: actors described concurrently while listing
_DESCRIBE_CONCURRENCY = 32
_ACTORS = "actors/"
#: keys per LIST while enumerating actor ids
_ID_PAGE = 64


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One committed step as history shows it.

    ``calls`` are the calls the step applied, in order (a group commit
    applies several); their ``args`` and ``result`` are short ``repr``
    summaries recorded when the step was committed, not the values.
    A timer's call (scheduled or cancelled from outside, fired by a runner)
    and a delete also have their meaning in words: :meth:`call_text`, and
    ``meaning`` in :meth:`to_json`. ``deleted`` is True on a tombstone: the
    step that deleted the actor (``delete_actor``), or one that failed calls
    posted to it after that.
    """

    step: int
    parent: int | None
    time: float
    writer: str
    class_name: str
    calls: tuple[CallRecord, ...]
    deleted: bool = False

    @property
    def when(self) -> datetime.datetime:
        """``time`` as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.time, tz=datetime.UTC)

    @classmethod
    def from_record(cls, record: StepRecord) -> HistoryEntry:
        return cls(
            step=record.step,
            parent=record.parent,
            time=record.time,
            writer=record.writer,
            class_name=record.class_ref.name,
            calls=record.calls,
            deleted=is_deleted(record),
        )

    @staticmethod
    def call_text(call: CallRecord) -> str:
        """One line for ``call``: ``method(args) -> result`` (``!! error`` if it raised), a
        timer's call, an event's or a delete in words (``timer scheduled: bump(5) key='renewal'
        due ...``, ``event 'paid' id='wh_1': on_paid(...) -> 5``, ``actor deleted``)."""
        meaning = _meaning(call)
        if meaning is not None and call.method in _WORDS_ONLY:
            return meaning if call.ok else f"{meaning} !! {call.result}"
        text = f"{call.method}({call.args})"
        if call.ok:
            text += f" -> {call.result}" if call.result not in ("", "None") else ""
        else:
            text += f" !! {call.result}"
        if meaning is not None:  # a fired timer, an event, a resumed call: the method's own record
            return f"{meaning}: {text}"
        return f"{text}  [key {call.key}]" if call.key else text

    def to_json(self) -> dict[str, Any]:
        out = {
            "step": self.step,
            "parent": self.parent,
            "time": self.time,
            "when": self.when.isoformat(),
            "writer": self.writer,
            "class": self.class_name,
            "calls": [_call_json(c) for c in self.calls],
        }
        if self.deleted:
            out["deleted"] = True
        return out


#: the tombstone's own call, in words
DELETED_TEXT = "actor deleted"
#: calls shown by their meaning alone (no ``method(args)``: internal names)
_WORDS_ONLY = MARKERS | {DELETE_CALL}


#: a call ``workflow.resume`` ran again, in words (its key is ``ids.resume_dedup_key``'s)
RESUMED_TEXT = "resumed failed call"


def _meaning(call: CallRecord) -> str | None:
    """A timer's call (``describe_call``), an event's, a resumed one or a delete, in words; None
    for other calls."""
    if call.method == DELETE_CALL:
        return DELETED_TEXT
    if is_resume_key(call.key):
        return RESUMED_TEXT
    return describe_call(call) or _event_text(call)


def _event_text(call: CallRecord) -> str | None:
    """An applied event's handler call, by its name and id (``event 'paid' id='wh_1'``), which its
    recorded key holds (``event_dedup_key``: no NUL in either); None for other calls."""
    if call.key is None or not call.key.startswith(EVENT_KEY_PREFIX):
        return None
    name, _, event_id = call.key[len(EVENT_KEY_PREFIX) :].partition("\x00")
    return f"event {name!r} id={event_id!r}"


def _call_json(call: CallRecord) -> dict[str, Any]:
    """A call as ``CallRecord.to_json``, plus ``meaning`` for a timer's call or a delete."""
    out = call.to_json()
    meaning = _meaning(call)
    if meaning is not None:
        out["meaning"] = meaning
    return out


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """One actor found by :func:`list_actors`: its class and newest committed step."""

    actor_id: str
    class_name: str
    step: int
    time: float

    @property
    def when(self) -> datetime.datetime:
        """Time of the newest step, as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.time, tz=datetime.UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "actor_id": self.actor_id,
            "class": self.class_name,
            "step": self.step,
            "time": self.time,
            "when": self.when.isoformat(),
        }


def _runtime() -> Runtime:
    return get_runtime()


def _log(runtime: Runtime, actor_id: str) -> ActorLog:
    validate_actor_id(actor_id)
    return ActorLog(runtime.store, actor_id, signing_key=runtime.settings.signing_key)


# -- steps ----------------------------------------------------------------------------------


async def _newest(log: ActorLog) -> StepRecord:
    record = await log.load_latest(await log.read_head())
    if record is None:
        raise ActorNotFoundError(log.actor_id, log.store.describe())
    return record


def newest_step(actor_id: str) -> StepRecord:
    """The actor's newest committed step as stored (a tombstone too), read without its class:
    what names an actor (class, step) where its code is not importable, a maintenance job's.
    ``ActorNotFoundError`` if the actor has no steps."""
    runtime = _runtime()
    return runtime.run(_newest(_log(runtime, actor_id)))


async def newest_step_async(actor_id: str) -> StepRecord:
    """:func:`newest_step`, on the IO loop."""
    return await _newest(_log(_runtime(), actor_id))


async def find_step(log: ActorLog, step: int) -> StepRecord:
    """Step ``step`` of ``log``'s actor; see :meth:`ActorLog.find_step`."""
    return await log.find_step(step)


#: what :func:`history` is given for a step it cannot read, with ``on_damaged``: the step's
#: number and the error
OnDamagedStep = Callable[[int, IntegrityError], None]

#: (``_history``) a step read that failed with ``on_damaged`` given: not an entry, not a gap
_DAMAGED = object()


async def _history_pages(
    log: ActorLog, limit: int | None, on_damaged: OnDamagedStep | None = None
) -> AsyncGenerator[list[HistoryEntry], None]:
    """The entries of :func:`history`, newest first, a page (up to ``_HISTORY_PAGE``) at a
    time: only that page is held (``vactor history --limit all`` of a million steps)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    newest = await _newest(log)
    want = newest.step + 1 if limit is None else min(limit, newest.step + 1)
    damaged: list[tuple[int, IntegrityError]] = []  # (of the page being read)

    async def read(step: int) -> object:
        try:
            return await log.read_step(step)
        except IntegrityError as exc:
            if on_damaged is None:
                raise
            damaged.append((step, exc))
            return _DAMAGED

    page = [HistoryEntry.from_record(newest)]
    given = 0
    next_step = newest.step - 1
    ended = next_step < 0
    while given < want:
        damaged.clear()
        read_any = False
        missing: int | None = None  # (the step whose read found nothing, which ended the page)
        while not ended and given + len(page) < want and len(page) < _HISTORY_PAGE:
            count = min(_READ_AHEAD, _HISTORY_PAGE - len(page), want - given - len(page), next_step + 1)
            steps = range(next_step, next_step - count, -1)
            records = await asyncio.gather(*(read(s) for s in steps))
            read_any = True
            found = list(itertools.takewhile(lambda r: r is not None, records))
            # Compaction deletes the oldest steps first: past a step it deleted nothing older
            # remains. Whether this one is such is told by the watermark, read below.
            page.extend(HistoryEntry.from_record(r) for r in found if isinstance(r, StepRecord))
            if len(found) < len(records):
                missing = next_step - len(found)
                damaged[:] = [d for d in damaged if d[0] > missing]  # (read again, if at all)
                next_step = missing - 1
                ended = True
            else:
                next_step -= count
                ended = next_step < 0
        if read_any:
            # Below the retention watermark nothing is history: a stalled writer's late put may
            # re-create a freed number (a stray), and a compaction may leave steps it has not
            # deleted yet. Read after the page's steps: a stray exists only once a compaction
            # raised the watermark past it, so this read sees that (one read before could
            # predate it). Every step older than the watermark is below it too: the end.
            floor = await log.read_gc()
            kept = [e for e in page if e.step >= floor or e.step == newest.step]
            ended = ended or len(kept) < len(page) or next_step < floor
            page = kept
            if missing is not None and missing >= floor:
                # A compaction raises the watermark before it deletes a step, and the watermark
                # was read after this step's read: it was deleted by something else. Not the
                # end of the history, as if compacted (the older steps may be there): damage.
                gone = missing_step_error(log.actor_id, missing, floor)
                if on_damaged is None:
                    raise gone
                damaged.append((missing, gone))
                ended = next_step < max(floor, 0)
            for step, exc in sorted(damaged, reverse=True):
                if step >= floor:
                    assert on_damaged is not None  # (else read() raised)
                    on_damaged(step, exc)
        page = page[: want - given]
        if page:
            yield page
            given += len(page)
        if ended:
            return
        page = []


async def _history(
    log: ActorLog, limit: int | None, on_damaged: OnDamagedStep | None = None
) -> list[HistoryEntry]:
    pages = _history_pages(log, limit, on_damaged)
    try:
        return [entry async for page in pages for entry in page]
    finally:
        await pages.aclose()


def history(
    actor_id: str, limit: int | None = None, *, on_damaged: OnDamagedStep | None = None
) -> list[HistoryEntry]:
    """The actor's committed steps, newest first, at most ``limit`` of them.

    Steps removed by compaction are not listed; the oldest entry is the
    oldest step that remains. ``ActorNotFoundError`` if the actor has no steps.

    A step that cannot be read (a torn write, a file vactor_cloud did not write, a signature
    that does not match) raises :class:`IntegrityError`; with ``on_damaged``, that function is
    called with the step's number and the error instead (newest first, once the steps are
    read), the step is left out (not counted in ``limit``), and the older steps are still listed.
    The newest step is read first: damaged, it raises whatever ``on_damaged``.
    """
    runtime = _runtime()
    return runtime.run(_history(_log(runtime, actor_id), limit, on_damaged), hint=_HISTORY_HINT)


_HISTORY_HINT = "read fewer steps at a time (limit=..., or iter_history), or raise Settings.deadline"


def iter_history(
    actor_id: str, limit: int | None = None, *, on_damaged: OnDamagedStep | None = None
) -> Generator[list[HistoryEntry], None, None]:
    """The entries of :func:`history` (same arguments, same order), yielded a page (up to 64)
    at a time as they are read: each page read within ``Settings.deadline`` (not the whole
    history), and only one page held at a time. ``vactor history`` prints with it.

    ``on_damaged`` is called for a page's damaged steps before that page is yielded. Stopping
    early (``break``, an exception) closes the reading."""
    if limit is not None and limit < 0:  # (at the call, as history() does, not at the first page)
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    runtime = _runtime()
    return _pages_on_the_loop(
        runtime, _history_pages(_log(runtime, actor_id), limit, on_damaged), _HISTORY_HINT
    )


_Page = TypeVar("_Page")


def _pages_on_the_loop(
    runtime: Runtime, pages: AsyncGenerator[_Page, None], hint: str
) -> Generator[_Page, None, None]:
    """``pages``, each read on the runtime's loop within ``Settings.deadline`` (``hint`` says
    what to do when one is not); closed there when the caller stops early."""

    async def next_page() -> _Page | None:
        return await anext(pages, None)

    try:
        while True:
            page = runtime.run(next_page(), hint=hint)
            if page is None:
                return
            yield page
    finally:
        with contextlib.suppress(Exception):  # (a runtime shut down meanwhile: nothing to close)
            runtime.run(pages.aclose())


def raw_state_at(actor_id: str, step: int | None = None) -> tuple[StepRecord, Any]:
    """Step ``step`` (default: the newest) and its state as stored, deserialized but not restored.

    The state is what the class's ``__getstate__`` returned (or the
    instance ``__dict__``). With the pickle serializer this unpickles: read
    only stores you trust, or sign them (``init(signing_key=)``).
    """
    runtime = _runtime()
    log = _log(runtime, actor_id)

    async def read() -> StepRecord:
        if step is None:
            record = await _newest(log)
        else:
            record = await find_step(log, step)
        if is_deleted(record):  # (a tombstone holds no state; the steps before it still do)
            raise deleted_error(log, record)
        return record

    async def serializer_of(record: StepRecord) -> str:
        # The class decides how its state is encoded. Without the class (loading class
        # bodies from storage disabled, or a body that cannot be loaded here), only json is
        # read: it never runs code. A pickled state then needs the class: say why it is
        # missing, not that the step looks forged (as a json class's pickled step would).
        try:
            definition = await runtime.core(actor_id).definition_for(record.class_ref)
        except ActorDefinitionError:
            if record.serializer != "json":
                raise
            return "json"
        return definition.serializer

    record = runtime.run(read())
    expected = runtime.run(serializer_of(record))
    where = f"actor {actor_id!r} step {record.step}"
    return record, loads_state(record.state, expect_serializer(record.serializer, expected, where))


def state_at(actor_id: str, step: int) -> Any:
    """A read-only instance of the actor as it was right after step ``step`` committed.

    The instance is detached: it is restored from the stored step into
    private memory and nothing done to it ever reaches storage. Assigning
    or deleting its attributes raises ``AttributeError`` (mutating a
    contained object is not detected, and is not written either; a class
    that cannot be subclassed to guard it gets an unguarded view). Call its
    read-only methods directly, or use ``handle.method.run(at_step=N)``.

    ``StepNotFoundError`` if the step was compacted or is not written yet;
    the message names the steps that remain. The state is restored within the
    read budget (``Settings.max_read_bytes``), as a read-only call's is.
    """
    check_step_number(step, "state_at()'s step")  # (True read step 1; 1.0 failed formatting a key)
    runtime = _runtime()
    core = runtime.core(actor_id)

    async def load_definition() -> tuple[StepRecord, ActorDefinition]:
        record = await find_step(core.log, step)
        if is_deleted(record):
            raise deleted_error(core.log, record)
        return record, await core.definition_for(record.class_ref)

    record, definition = runtime.run(load_definition())
    where = f"actor {actor_id!r} step {record.step}"
    serializer = expect_serializer(record.serializer, definition.serializer, where)
    # Restored under the read budget, as a read's copy is (the view is then the caller's); the
    # fetched copy is not held while waiting for room (read again once there is).
    room, deadline, writers = runtime.read_room, runtime.settings.deadline, writers_on_this_thread()
    size = len(record.state)
    again = room.would_wait(size, writers=writers)
    if again:
        del record
    with room.taken(size, deadline, actor_id, "state_at", writers=writers):
        if again:
            record = runtime.run(find_step(core.log, step))
        instance = restore_instance(definition.cls, loads_state(record.state, serializer))
    return _freeze(instance, record.step)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise AttributeError(
        f"this {type(self).__bases__[0].__qualname__} is a read-only view of a past step; "
        "call the actor's methods through its handle to change it"
    )


def _frozen_delattr(self: Any, name: str) -> None:
    _frozen_setattr(self, name, None)


def _freeze(instance: Any, step: int) -> Any:
    cls = type(instance)
    try:
        frozen = type(
            cls.__name__,
            (cls,),
            {
                "__slots__": (),
                "__setattr__": _frozen_setattr,
                "__delattr__": _frozen_delattr,
                "__module__": cls.__module__,
                "__qualname__": f"{cls.__qualname__}@step{step}",
                "__vactor_step__": step,
            },
        )
    except Exception:
        # The class refuses to be subclassed so (an __init_subclass__ that needs keywords, a
        # metaclass): the copy is still detached, only not guarded.
        return instance
    # Exotic layouts (builtin bases) refuse __class__ assignment; likewise not guarded then.
    with contextlib.suppress(TypeError):
        instance.__class__ = frozen
    return instance


# -- listing ----------------------------------------------------------------------------------


async def iter_actor_ids(
    store: ObjectStore, prefix: str = "", *, start_after: str | None = None
) -> AsyncGenerator[str, None]:
    """Actor ids with ``prefix`` after ``start_after``, in key order, paging through one listing.

    The contract has no delimiter listing, so each LIST asks for a page of
    keys from the cursor; every actor id the page shows is yielded, and the
    next page starts just past the last one's objects (``"0"`` is the
    character after ``"/"``, so ``actors/<id>0`` sorts after every key of
    ``<id>`` and before any longer id). A page therefore costs what it
    returns, and an actor with many steps is skipped in one request.
    """
    cursor = f"{_ACTORS}{start_after}0" if start_after is not None else None
    list_prefix = f"{_ACTORS}{prefix}"
    while True:
        keys = await store.list(list_prefix, start_after=cursor, limit=_ID_PAGE)
        last: str | None = None
        for key in keys:
            actor_id = key[len(_ACTORS) :].split("/", 1)[0]
            if actor_id == last:
                continue
            last = actor_id
            # (a prefix reaching past an id, "a/steps", lists that actor's keys: not its id)
            if key.startswith(actor_prefix(actor_id)) and actor_id.startswith(prefix):
                yield actor_id
        if len(keys) < _ID_PAGE or last is None:
            return
        cursor = f"{_ACTORS}{last}0"


async def _take(ids: AsyncIterator[str], count: int) -> AsyncIterator[str]:
    for _ in range(count):
        try:
            yield await anext(ids)
        except StopAsyncIteration:
            return


async def _describe(runtime: Runtime, actor_id: str) -> ActorInfo | None:
    log = ActorLog(runtime.store, actor_id, signing_key=runtime.settings.signing_key)
    record = await log.load_latest(await log.read_head())
    if record is None or is_deleted(record):  # objects but no step (a creation that never
        return None  # committed), or a deleted actor's: no actor
    return ActorInfo(actor_id, record.class_ref.name, record.step, record.time)


async def list_actors_async(
    prefix: str = "",
    *,
    start_after: str | None = None,
    limit: int | None = None,
    on_damaged: Callable[[str, IntegrityError], None] | None = None,
) -> list[ActorInfo]:
    """Async twin of :func:`list_actors`."""
    found: list[ActorInfo] = []
    pages = _actor_pages(_runtime(), prefix, start_after, limit, on_damaged)
    try:
        async for page in pages:
            found.extend(page)
    finally:
        await pages.aclose()
    return found


async def _actor_pages(
    runtime: Runtime,
    prefix: str,
    start_after: str | None,
    limit: int | None,
    on_damaged: Callable[[str, IntegrityError], None] | None,
) -> AsyncGenerator[list[ActorInfo], None]:
    """The actors of :func:`list_actors`, a page at a time: those of up to
    ``_DESCRIBE_CONCURRENCY`` ids, described concurrently (a page may be empty: all damaged)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    semaphore = asyncio.Semaphore(_DESCRIBE_CONCURRENCY)

    async def describe(actor_id: str) -> ActorInfo | None:
        async with semaphore:
            try:
                return await _describe(runtime, actor_id)
            except IntegrityError as exc:
                if on_damaged is None:
                    raise
                on_damaged(actor_id, exc)
                return None

    ids = iter_actor_ids(runtime.store, prefix, start_after=start_after)
    found = 0
    try:
        while limit is None or found < limit:
            page_size = _DESCRIBE_CONCURRENCY
            if limit is not None:
                page_size = min(page_size, limit - found)
            page = [actor_id async for actor_id in _take(ids, page_size)]
            if not page:
                break
            infos = [info for info in await asyncio.gather(*(describe(i) for i in page)) if info is not None]
            found += len(infos)
            yield infos
    finally:
        await ids.aclose()


_LIST_HINT = "list a page at a time (limit=..., then start_after= the last id), or raise Settings.deadline"


def iter_actors(
    prefix: str = "",
    *,
    start_after: str | None = None,
    limit: int | None = None,
    on_damaged: Callable[[str, IntegrityError], None] | None = None,
) -> Generator[list[ActorInfo], None, None]:
    """The actors of :func:`list_actors` (same arguments, same order), yielded a page at a
    time as they are listed: up to 32 per page, each page read within ``Settings.deadline``
    (not the whole listing), and only one page held at a time. ``vactor ls`` prints with it.
    A page may be empty (its actors all damaged, with ``on_damaged``).

    Stopping early (``break``, an exception) closes the listing."""
    runtime = get_runtime()
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    return _pages_on_the_loop(
        runtime, _actor_pages(runtime, prefix, start_after, limit, on_damaged), _LIST_HINT
    )


def list_actors(
    prefix: str = "",
    *,
    start_after: str | None = None,
    limit: int | None = None,
    on_damaged: Callable[[str, IntegrityError], None] | None = None,
) -> list[ActorInfo]:
    """Actors whose id starts with ``prefix``, with class, newest step and its time.

    Ordered as their objects are (by ``id + "/"``: ``"a-1"`` comes before ``"a"``).

    Paged: ``limit`` caps how many are returned and ``start_after`` resumes
    after the last id of the previous page::

        page = vc.list_actors(limit=100)
        while page:
            ...
            page = vc.list_actors(start_after=page[-1].actor_id, limit=100)

    Costs one LIST per page of keys (an actor's objects are skipped in one
    request) plus two or three GETs per actor returned (HEAD, a probe past
    it). A consistent snapshot is not promised: actors created or advanced
    while listing may or may not appear with their newest step.

    An actor whose objects cannot be read (a torn write, a file vactor_cloud did not
    write, a signature that does not match) raises :class:`IntegrityError`; with
    ``on_damaged``, that function is called with the actor's id and the error instead
    (on the IO loop's thread), the actor is left out, and the listing goes on.
    """
    return get_runtime().run(
        list_actors_async(prefix, start_after=start_after, limit=limit, on_damaged=on_damaged),
        hint=_LIST_HINT,
    )
