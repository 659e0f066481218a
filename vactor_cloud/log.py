"""ActorLog: the per-actor commit protocol over an :class:`ObjectStore`.

Object layout under the store root (DESIGN.md §3)::

    actors/<id>/class/<sha256>   class body, content-addressed, create-only
    actors/<id>/steps/<N:020d>   immutable step objects, create-only; step 0 = creation
    actors/<id>/HEAD             advisory pointer to a recent step; forward-only, by if-match
    actors/<id>/gc               retention low-watermark {"min_step": M} and whose steps it deleted
    actors/<id>/dedup/<N:020d>-<token>   idempotency-table checkpoint, create-only, named by a step
    actors/<id>/dedup/outcomes/<N:020d>-<sha256>   a large recorded outcome, named by checkpoints

The step log is the truth. Writing ``steps/N+1`` with a create-only put is
the linearization point of a commit: exactly one writer can succeed. HEAD is
only a hint that lets a reader start near the end; readers always probe past
it, so a HEAD left behind by a crash costs a little latency, never
correctness. Nothing in this module knows what an actor *does*: states and
results are opaque bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import os
import random
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from vactor_cloud import codec, counters, keys
from vactor_cloud.checked_read import read_checked, read_checked_now, read_envelope
from vactor_cloud.errors import (
    ActorNotFoundError,
    AlreadyExistsError,
    CommitOutcomeUnknownError,
    FormatVersionError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    RateLimitedError,
    RetryableStorageError,
    StepNotFoundError,
    StepsMissingError,
    StorageError,
    StorageTimeoutError,
    TruncatedObjectError,
)
from vactor_cloud.storage import IfMatch, ObjectStore

__all__ = [
    "OUTCOMES_MAGIC",
    "ActorLog",
    "CallRecord",
    "ClassRef",
    "GcWatermark",
    "Head",
    "LateCommit",
    "StepCompactedError",
    "StepRecord",
    "StepTakenError",
    "actor_prefix",
    "classify_late_commit",
    "retry_pause",
    "unrecordable",
]

actor_prefix = keys.actor_prefix

logger = logging.getLogger("vactor_cloud")

#: how many times an ambiguous put (response lost, 409, 5xx) is resolved and retried
_AMBIGUOUS_RETRIES = 5

#: how a step's outcomes encoded per call begin (``vactor_cloud.posting``; the one pickle
#: written before begins with 0x80): they go in parts a reader of the pickle does not know
OUTCOMES_MAGIC = b"VOC2"


@dataclass(frozen=True, slots=True)
class ClassRef:
    """Which class an actor's steps belong to: content hash of its body and its import name."""

    sha: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"sha": self.sha, "name": self.name}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClassRef:
        return cls(str(data["sha"]), str(data["name"]))


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call a step applied, as history shows it (summaries, not the values)."""

    method: str
    call_id: str
    ok: bool
    time: float
    args: str = ""
    result: str = ""
    key: str | None = None
    #: the caller's label and metadata for this call (``options(name=..., metadata=...)``)
    name: str | None = None
    metadata: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "call_id": self.call_id,
            "ok": self.ok,
            "time": self.time,
            "args": self.args,
            "result": self.result,
        }
        if self.key is not None:
            out["key"] = self.key
        if self.name is not None:
            out["name"] = self.name
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecord:
        return cls(
            method=str(data["method"]),
            call_id=str(data["call_id"]),
            ok=bool(data["ok"]),
            time=float(data["time"]),
            args=str(data.get("args", "")),
            result=str(data.get("result", "")),
            key=data.get("key"),
            name=data.get("name"),
            metadata=data.get("metadata"),
        )


def unrecordable(name: object, metadata: object) -> str | None:
    """Why a call's ``name`` or ``metadata`` cannot be recorded in a step's JSON meta (UTF-8
    JSON: a ``datetime``, a set or a lone surrogate cannot), or None when both can.

    Checked when the call is made (``options()``), and by a folder for the calls of other
    processes' posts: a step whose meta does not encode fails its whole commit, and a post
    carrying such a call would fail every fold that includes it."""
    if name is not None:
        if not isinstance(name, str):
            return f"name must be a string, got {type(name).__name__}"
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"name cannot be recorded as UTF-8: {exc}"
    if metadata is not None:
        if not isinstance(metadata, dict):
            return f"metadata must be a dict, got {type(metadata).__name__}"
        try:
            json.dumps(metadata, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            return f"metadata must be JSON-serializable (it is recorded in the step's JSON meta): {exc}"
    return None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One immutable step: the actor's state after it and the calls that produced it."""

    step: int
    parent: int | None
    class_ref: ClassRef
    serializer: str
    state: bytes
    writer: str
    time: float
    calls: tuple[CallRecord, ...] = ()
    #: serialized idempotency table (opaque here): the whole table when ``dedup_base`` is
    #: None (format 1), else the entries recorded since checkpoint ``dedup_base`` (format 2)
    dedup: bytes = b""
    #: outcomes of posted calls this step applied (``vactor_cloud.posting``); not carried
    #: forward. Part ``outcomes`` (encoded per call), or ``posted`` (one pickle: read still)
    posted: bytes = b""
    #: the parent step's ``posted`` part, copied when small (``vactor_cloud.posting``): a
    #: poster that reads this step finds its outcomes without reading the parent; never
    #: copied further. Part ``carried_outcomes``, or ``carried`` (one pickle: read still)
    carried: bytes = b""
    #: writing side only: ``posted``'s outcomes in the earlier encoding (one pickle), written
    #: beside it as part ``posted`` when small, for readers that know only that part
    legacy: bytes = b""
    #: name of the checkpoint object (``dedup/<name>``) ``dedup`` is a delta on
    dedup_base: str | None = None
    #: writing side only, never encoded: a new checkpoint for ``dedup_base``, put before the step
    dedup_checkpoint: bytes = b""
    #: writing side only: the outcome objects that checkpoint names (format 3 if any)
    dedup_named: tuple[str, ...] = ()
    #: writing side only: no row that checkpoint holds by value is encoded larger (None: unknown)
    dedup_by_value_at_most: int | None = None
    #: writing side only: of those, the ones to put before it, (name, part ``outcome``)
    dedup_outcomes: tuple[tuple[str, bytes], ...] = ()
    #: metadata of features layered on top (events applied, tasks used, ...)
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self, key: str, signing_key: bytes | None) -> bytes:
        meta = {
            "kind": "step",
            "step": self.step,
            "parent": self.parent,
            "class": self.class_ref.to_json(),
            "serializer": self.serializer,
            "writer": self.writer,
            "time": self.time,
            "calls": [c.to_json() for c in self.calls],
            "extra": self.extra,
        }
        parts = {"state": self.state}
        if self.dedup:
            parts["dedup"] = self.dedup
        # Encoded per call, under new names: a reader that knows only the one pickle finds
        # no outcomes there (never takes those bytes for a pickle of them).
        if self.posted:
            parts["outcomes" if self.posted.startswith(OUTCOMES_MAGIC) else "posted"] = self.posted
        if self.legacy and self.posted.startswith(OUTCOMES_MAGIC):
            parts["posted"] = self.legacy
        if self.carried:
            parts["carried_outcomes" if self.carried.startswith(OUTCOMES_MAGIC) else "carried"] = self.carried
        if self.dedup_base is None:
            return codec.encode(key, meta, parts, signing_key=signing_key)
        meta["dedup_base"] = self.dedup_base
        return codec.encode(key, meta, parts, signing_key=signing_key, version=2)

    @classmethod
    def decode(cls, key: str, data: bytes, signing_key: bytes | None) -> StepRecord:
        env = codec.decode(key, data, signing_key=signing_key)
        meta = env.meta
        # (its "actor", recorded by codec.encode, is checked by codec.decode: a step copied
        # from another actor's log is refused there, before any part is read)
        try:
            if meta.get("kind") != "step":
                raise ValueError(f"expected a step object, found {meta.get('kind')!r}")
            return cls(
                step=int(meta["step"]),
                parent=None if meta["parent"] is None else int(meta["parent"]),
                class_ref=ClassRef.from_json(meta["class"]),
                serializer=str(meta["serializer"]),
                state=env.parts["state"],
                writer=str(meta["writer"]),
                time=float(meta["time"]),
                calls=tuple(CallRecord.from_json(c) for c in meta["calls"]),
                dedup=env.parts.get("dedup", b""),
                posted=_outcomes_part(env.parts, "outcomes", "posted"),
                carried=_outcomes_part(env.parts, "carried_outcomes", "carried"),
                dedup_base=None if meta.get("dedup_base") is None else str(meta["dedup_base"]),
                extra=dict(meta.get("extra") or {}),
            )
        except (KeyError, ValueError, TypeError, OverflowError) as exc:  # (int() of Infinity)
            raise IntegrityError(key, f"malformed step object: {exc}") from None


def _outcomes_part(parts: dict[str, bytes], new: str, old: str) -> bytes:
    """A step's outcomes encoded per call (part ``new``) or as one pickle (part ``old``). Both
    may be there (the pickle for readers of the earlier encoding): ``new`` is read then."""
    data = parts.get(old, b"")
    if data.startswith(OUTCOMES_MAGIC):
        raise ValueError(f"part {old!r} not a pickle")
    if new not in parts:
        return data
    if not parts[new].startswith(OUTCOMES_MAGIC):
        raise ValueError(f"part {new!r} not encoded per call")
    return parts[new]


@dataclass(frozen=True, slots=True)
class Head:
    """The advisory HEAD pointer as read from storage."""

    step: int
    class_ref: ClassRef
    version: str


class StepTakenError(Exception):
    """Another writer committed the step we tried to write; ``winner`` is its record."""

    def __init__(self, winner: StepRecord) -> None:
        super().__init__(f"step {winner.step} was committed by writer {winner.writer}")
        self.winner = winner


class ForeignStepError(IntegrityError):
    """Our create of a step met an object that was there before it and cannot be read (forged,
    or damaged at rest), on a store whose "already exists" proves our request wrote nothing:
    our calls were certainly not applied (where our own put may have landed, the outcome is
    :class:`CommitOutcomeUnknownError` instead)."""


class StepCompactedError(Exception):
    """Another writer committed the step we tried to write, and a compaction deleted it since.

    Our calls were certainly not applied (the watermark records another
    writer at that number, or the store's "already exists" was definite):
    reload from the newest step and retry.
    """

    def __init__(self, step: int) -> None:
        super().__init__(f"step {step} was committed by another writer and compacted since")
        self.step = step


@dataclass(frozen=True, slots=True)
class GcWatermark:
    """The ``gc`` object: the retention low-watermark and whose steps compactions deleted.

    ``min_step``: steps below it may have been deleted. ``compacted`` maps
    step numbers to the writer id of the *committed* step a compaction deleted
    there (the object present at that number when the watermark passed it),
    for the newest deleted steps only (at most ``GC_RECORDED_STEPS``);
    ``recorded_from`` is the lowest number that record covers. A writer whose
    put answered only after its number was compacted reads this to learn
    whether its step was the commit (see :func:`classify_late_commit`).
    """

    min_step: int
    version: str | None = None
    compacted: Mapping[int, str] = field(default_factory=dict)
    recorded_from: int = 0


#: how many deleted steps' writers the ``gc`` object remembers (about 45 bytes each)
GC_RECORDED_STEPS = 512


class LateCommit(enum.Enum):
    """What became of a step whose number was compacted before its writer learned the outcome."""

    #: our object was the committed step (and was compacted later): the calls were applied
    COMMITTED = "committed"
    #: another writer's object was the committed step: ours, if present, was created afterwards
    NOT_COMMITTED = "not committed"
    #: the watermark no longer records that number (or never could): undecidable
    UNKNOWN = "unknown"


def classify_late_commit(gc: GcWatermark, step: int, writer: str) -> LateCommit:
    """Was ``writer``'s put of ``step`` (a number now below ``gc.min_step``) the commit?

    Create-only puts make the first object at a number the committed one;
    a compaction records the writer of the object it found at each number
    it passed (it reads them before raising the watermark, so no later
    object can be mistaken for it). The same writer id there means our put
    landed first: committed, then compacted. Another writer id means ours
    can only have landed after that deletion: not a commit. A number the
    record does not cover (older than the newest ``GC_RECORDED_STEPS``
    deleted, or written before this record existed) is undecidable.
    """
    if step >= gc.min_step:
        raise ValueError(f"step {step} is not below the watermark {gc.min_step}")
    found = gc.compacted.get(step)
    if found is None:
        return LateCommit.UNKNOWN
    return LateCommit.COMMITTED if found == writer else LateCommit.NOT_COMMITTED


def encode_gc(key: str, gc: GcWatermark, now: float, signing_key: bytes | None) -> bytes:
    """The bytes of a ``gc`` object (the writer record is a JSON part, parsed only when needed)."""
    rows = sorted(gc.compacted.items())
    meta = {"kind": "gc", "min_step": gc.min_step, "recorded_from": gc.recorded_from, "time": now}
    part = json.dumps(rows, separators=(",", ":")).encode("utf-8")
    return codec.encode(key, meta, {"compacted": part}, signing_key=signing_key)


def decode_gc(key: str, data: bytes, version: str | None, signing_key: bytes | None) -> GcWatermark:
    env = codec.decode(key, data, signing_key=signing_key)
    try:
        min_step = int(env.meta["min_step"])
        raw = env.parts.get("compacted")
        rows = json.loads(raw.decode("utf-8")) if raw else []
        compacted = {int(step): str(writer) for step, writer in rows}
        recorded_from = int(env.meta.get("recorded_from", min_step if not compacted else min(compacted)))
    except (KeyError, ValueError, TypeError, OverflowError) as exc:  # (int() of Infinity)
        raise IntegrityError(key, f"malformed gc watermark: {exc}") from None
    return GcWatermark(min_step, version, compacted, recorded_from)


def _unusable_gc(actor_id: str, key: str, exc: IntegrityError) -> IntegrityError:
    """``exc`` (a ``gc`` object that does not verify or decode) reworded to say what it stops
    and what to do. No value can be put back safely without the original: a watermark too
    low lets stray steps below it (a stalled writer's late puts) pass for history, one too
    high hides history, and the record of compacted writers would be lost either way."""
    detail = str(exc) if isinstance(exc, TruncatedObjectError) else exc.reason
    reason = (
        f"the retention watermark of actor {actor_id!r} is damaged or cannot be verified ({detail}). "
        "The actor cannot be used (calls, history, compaction) until it reads: which of its steps are "
        "history depends on it. If a retry reads it, it was damaged in transit; if every object "
        "fails alike, check the signing key (signing_key= / $VACTOR_SIGNING_KEY). Otherwise restore "
        "it from a backup or an earlier version (S3 bucket versioning, GCS object versioning); the "
        "steps are untouched. Do not delete it or write one by hand: a watermark too low lets stray "
        "steps below it pass for history, one too high hides history."
    )
    if isinstance(exc, TruncatedObjectError):  # also a StorageError: keep what callers catch
        return TruncatedObjectError(f"{key}: {reason}", key)
    return IntegrityError(key, reason)


class ActorLog:
    """Reads and writes one actor's objects. Safe to share between tasks of one loop."""

    __slots__ = (
        "actor_id",
        "dedup_cache",
        "dedup_outcomes_prefix",
        "dedup_prefix",
        "gc_key",
        "head_key",
        "prefix",
        "signing_key",
        "steps_prefix",
        "store",
    )

    def __init__(self, store: ObjectStore, actor_id: str, *, signing_key: bytes | None = None) -> None:
        self.store = store
        self.actor_id = actor_id
        self.signing_key = signing_key
        self.prefix = keys.actor_prefix(actor_id)
        self.steps_prefix = keys.steps_prefix(actor_id)
        self.head_key = keys.head_key(actor_id)
        self.gc_key = keys.gc_key(actor_id)
        self.dedup_prefix = keys.dedup_prefix(actor_id)
        self.dedup_outcomes_prefix = keys.dedup_outcomes_prefix(actor_id)
        #: the newest idempotency checkpoint this process decoded: (name, table), owned by dedup.py
        self.dedup_cache: tuple[str, Any] | None = None

    # -- keys ---------------------------------------------------------------
    def step_key(self, step: int) -> str:
        return keys.step_key(self.actor_id, step)

    def class_key(self, sha: str) -> str:
        return keys.class_key(self.actor_id, sha)

    def dedup_key(self, name: str) -> str:
        return f"{self.dedup_prefix}{name}"

    # -- steps ---------------------------------------------------------------
    async def read_step(self, step: int) -> StepRecord | None:
        """The step, or ``None`` if it does not exist (never written, or compacted)."""
        key = self.step_key(step)
        try:
            return await read_checked(self.store, key, lambda blob: self._step_record(key, step, blob.data))
        except NotFoundError:
            return None

    def read_step_now(self, step: int) -> StepRecord | None:
        """:meth:`read_step` on the calling thread (only where ``store.inline``)."""
        key = self.step_key(step)
        try:
            return read_checked_now(self.store, key, lambda blob: self._step_record(key, step, blob.data))
        except NotFoundError:
            return None

    def _step_record(self, key: str, step: int, data: bytes) -> StepRecord:
        """The record stored at ``key``, which must be step ``step`` (a forged or moved object is not)."""
        record = StepRecord.decode(key, data, self.signing_key)
        if record.step != step:
            raise IntegrityError(key, f"holds step {record.step}, not {step}")
        return record

    def encode_step(self, record: StepRecord) -> bytes:
        """The bytes of ``record`` at its key (signed): built before its put is sent, so that a
        failure here (a ``MemoryError``, say) is one of a call never sent, not applied."""
        return record.encode(self.step_key(record.step), self.signing_key)

    async def put_step(
        self, record: StepRecord, data: bytes | None = None, *, prerequisites: bool = True
    ) -> bool:
        """Commit ``record`` with a create-only put: the linearization point.

        Returns normally when *our* object is at ``steps/N`` — including when
        the response to our put was lost and a retry (ours or the client
        library's) met our own object. Raises :class:`StepTakenError` when
        another writer's object is there. Storage errors after which the
        outcome cannot be learned propagate; the commit may or may not have
        happened.

        Returns ``True`` when the first request created the object outright,
        ``False`` when it took a retry or the step was found to be ours.

        When the object met at ``steps/N`` is gone by the time it is read back
        (a compaction passed), the ``gc`` record decides: ours (committed, then
        compacted: returns), another writer's (:class:`StepCompactedError`:
        not applied, retry), or undecidable (:class:`CommitOutcomeUnknownError`).
        ``data``: the record's bytes (:meth:`encode_step`), when already built.
        ``prerequisites``: False when the caller already put what the step names
        (:meth:`put_step_prerequisites`).
        """
        return await self._put_step(record, None, encoded=data, prerequisites=prerequisites)

    def put_step_now(self, record: StepRecord, data: bytes | None = None) -> Coroutine[Any, Any, bool] | None:
        """:meth:`put_step`'s first create, done on the calling thread through the store's
        synchronous ``put_now`` (only where ``store.inline``: the memory and local stores).

        ``None``: committed, with that one request. Otherwise the key was
        taken, or the put failed (it may have landed all the same): the
        returned coroutine finishes what :meth:`put_step` does then (read
        back, ``StepTakenError``, a retry, ...), on the IO loop. A step that
        needs a dedup checkpoint first must go through :meth:`put_step`.
        """
        assert not record.dedup_checkpoint, "a step with a dedup checkpoint goes through put_step"
        assert not record.dedup_outcomes, "a step with outcome objects goes through put_step"
        key = self.step_key(record.step)
        if data is None:
            data = self.encode_step(record)
        try:
            self.store.put_now(key, data, mode="create")
        except AlreadyExistsError:
            return self._put_step(record, data)
        except StorageError as exc:
            return self._put_step(record, data, failed=exc)
        return None

    async def put_step_prerequisites(self, record: StepRecord) -> None:
        """Put what ``record`` names that must exist before it: its idempotency checkpoint, and
        the outcome objects that checkpoint names (nothing for most steps). A failure here is of
        a step not yet sent: a committer retries it as it retries any failure before its put."""
        if record.dedup_checkpoint and record.dedup_base is not None:
            # Before the step: a committed step never names a checkpoint that is not there,
            # nor a checkpoint an outcome object.
            for name, outcome in record.dedup_outcomes:
                await self.put_dedup_outcome(name, outcome, record.serializer)
            await self.put_dedup_checkpoint(
                record.dedup_base,
                record.dedup_checkpoint,
                record.serializer,
                record.dedup_named,
                record.dedup_by_value_at_most,
            )

    async def _put_step(
        self,
        record: StepRecord,
        taken: bytes | None,
        *,
        failed: StorageError | None = None,
        encoded: bytes | None = None,
        prerequisites: bool = True,
    ) -> bool:
        """``taken``: the step's bytes, whose first create already met an existing object
        (or, with ``failed``, whose first create failed so: it may have landed); ``encoded``:
        the step's bytes, not yet sent; ``prerequisites``: False once the caller put them
        (:meth:`put_step_prerequisites`)."""
        key = self.step_key(record.step)
        data = taken if taken is not None else encoded if encoded is not None else self.encode_step(record)
        if taken is None and prerequisites:
            await self.put_step_prerequisites(record)
        last_error: StorageError | IntegrityError | None = None
        #: whether the object at our number may be our own put: not while every create of ours
        #: was answered "already exists" by a store whose answer proves it wrote nothing
        maybe_ours = failed is not None or not self.store.definite_create_conflicts
        for attempt in range(_AMBIGUOUS_RETRIES):
            try:
                if attempt == 0 and failed is not None:
                    raise failed
                if attempt == 0 and taken is not None:
                    raise AlreadyExistsError(f"{key}: already exists", key)
                await self.store.put(key, data, mode="create")
                return attempt == 0
            except AlreadyExistsError:
                pass
            except StorageError as exc:
                # The request may have been applied before the error reached
                # us (a lost response). Only reading the key can tell.
                last_error = exc
                maybe_ours = True
            try:
                existing = await self.read_step(record.step)
            except (StorageError, IntegrityError) as exc:
                # Damaged in transit tells nothing either (read again, as a failed read is):
                # the step may be ours, and a commit it is must not be reported as corrupt.
                last_error = exc
                existing = None
                await asyncio.sleep(retry_pause(attempt))
                continue
            if existing is not None:
                if existing.writer == record.writer:
                    counters.lost_response_resolved(key, last_error)
                    return False
                raise StepTakenError(existing)
            # Something was at our number and is gone: a compaction passed it, or
            # it was never there (an ambiguous failure that did not land).
            if await self._compacted_step_was_ours(record, definite=last_error is None):
                return False
            await asyncio.sleep(retry_pause(attempt))
        if last_error is None:
            # Every attempt met an object that was gone when read back: only a
            # compaction racing this commit does that. Nothing tells whose it was.
            last_error = RetryableStorageError(
                f"{key}: the step was taken and deleted again while committing (a compaction ran); "
                "the call was not applied by this attempt",
                key,
            )
        if isinstance(last_error, IntegrityError) and not maybe_ours:
            # Someone else's object (a forged step, one damaged at rest): ours never landed.
            raise ForeignStepError(
                key,
                f"{last_error.reason}; it took step {record.step} before our create, so the "
                "calls were not applied: delete or restore the object (docs/security.md)",
            ) from last_error
        if isinstance(last_error, IntegrityError):
            # The step at our number never read back whole: it may be ours (committed).
            raise CommitOutcomeUnknownError(
                self.actor_id,
                record.step,
                f"step {record.step} never read back whole after its put's answer was lost "
                f"({last_error}); the calls may or may not have been applied: check the actor's "
                "state (or use an idempotency key) before retrying",
            ) from last_error
        raise last_error

    async def _compacted_step_was_ours(self, record: StepRecord, *, definite: bool) -> bool:
        """After our create met an object that is gone now: decide from the watermark.

        ``True``: the step was ours and was compacted since (committed).
        Raises :class:`StepCompactedError` when it certainly was not ours
        (the watermark records another writer, or every failure was a
        *definite* "already exists", which wrote nothing), and
        :class:`CommitOutcomeUnknownError` when nothing tells. ``False``:
        the number is above the watermark (no compaction took it): retry the create.
        """
        gc = await self._read_watermark_after_commit(record)
        if record.step >= gc.min_step:
            return False
        verdict = classify_late_commit(gc, record.step, record.writer)
        if verdict is LateCommit.COMMITTED:
            return True
        if verdict is LateCommit.NOT_COMMITTED or (definite and self.store.definite_create_conflicts):
            raise StepCompactedError(record.step)
        raise CommitOutcomeUnknownError(self.actor_id, record.step)

    async def resolve_late_commit(self, record: StepRecord) -> bool:
        """Our put of ``record`` succeeded, but late: is it a commit? (Called by a writer whose
        put completed longer than ``fresh_window`` after it validated its cache.)

        ``True``: committed, either above the watermark (the common case) or
        recorded by the compaction that deleted it since as ours. ``False``:
        not a commit; our object, created after a compaction freed the
        number, has been deleted: reload and retry. Raises
        :class:`CommitOutcomeUnknownError` when the watermark cannot tell
        (never retries: that could apply the calls twice).
        """
        gc = await self._read_watermark_after_commit(record)
        if record.step >= gc.min_step:
            return True
        verdict = classify_late_commit(gc, record.step, record.writer)
        if verdict is LateCommit.COMMITTED:
            return True
        # Below the watermark and not the commit (or maybe not): whatever sits at our
        # number is no part of the history. Remove it; the next compaction would.
        with contextlib.suppress(StorageError):
            await self.store.delete(self.step_key(record.step))
        if verdict is LateCommit.NOT_COMMITTED:
            return False
        raise CommitOutcomeUnknownError(self.actor_id, record.step)

    async def _read_watermark_after_commit(self, record: StepRecord) -> GcWatermark:
        """The watermark, retried: our step is already written, so failing here would
        report a commit that happened as an error (and invite a retry that applies it twice)."""
        for attempt in range(_AMBIGUOUS_RETRIES):
            try:
                return await self.read_watermark()
            except (StorageError, IntegrityError):
                await asyncio.sleep(retry_pause(attempt))
        try:
            return await self.read_watermark()
        except (StorageError, IntegrityError) as exc:
            raise CommitOutcomeUnknownError(self.actor_id, record.step) from exc

    async def list_steps(self, *, after: int | None = None, limit: int | None = None) -> list[int]:
        """Step numbers in order, after ``after``, at most ``limit`` (fewer: there are no more).

        Keys under ``steps/`` that name no step (a folder marker an S3 console or a sync tool
        made, a copy by hand) are passed over, with a warning: no reader reads one as a step
        (steps are read by the keys :func:`keys.step_key` spells), and they are left in place.
        """
        start = None if after is None else self.step_key(after)
        found: list[int] = []
        while True:
            want = None if limit is None else limit - len(found)
            listed = await self.store.list(self.steps_prefix, start_after=start, limit=want)
            for key in listed:
                # (one level only: "steps/x/steps/<20 digits>" also ends as a step key does)
                step = keys.step_of(key) if "/" not in key[len(self.steps_prefix) :] else None
                if step is not None:
                    found.append(step)
                elif key not in _STRAYS_SEEN:
                    if len(_STRAYS_SEEN) >= 1024:
                        _STRAYS_SEEN.clear()
                    _STRAYS_SEEN.add(key)
                    logger.warning("actor %r: passing over %r, which names no step", self.actor_id, key)
            if want is None or len(listed) < want or len(found) == limit:
                return found
            start = listed[-1]

    async def probe_from(self, record: StepRecord) -> tuple[StepRecord, int]:
        """The newest step at or after ``record``, and how many requests that took.

        Reads ``steps/N+1``, ``N+2``, ... until one is missing; after two hits
        in a row it lists once to jump to the end instead of walking, and answers
        the newest step of that listing: the newest as of the LIST, which came
        after the probe began. (Walking on from it until a miss would never end
        while another writer commits as fast as the probe reads: a folder or a
        poster behind a busy writer on a slow store chased it for seconds.)
        """
        current = record
        requests = 0
        hits = 0
        while True:
            nxt = await self.read_step(current.step + 1)
            requests += 1
            if nxt is None:
                return current, requests
            current = nxt
            hits += 1
            if hits >= 2:
                later = await self.list_steps(after=current.step)
                requests += 1
                hits = 0
                if not later:
                    return current, requests
                newest = await self.read_step(later[-1])
                requests += 1
                if newest is not None:
                    return newest, requests
                # gone since the listing (compacted meanwhile): walk on from ours

    async def find_step(self, step: int) -> StepRecord:
        """Step ``step``; :class:`StepNotFoundError` saying why it is not there.

        The error tells a compacted step (below the retention watermark or the
        oldest remaining step) from one not written yet, and names the range of
        steps that remain.
        """
        if step < 0:
            raise ValueError(f"step numbers start at 0, got {step}")
        # The watermark too: an object below it is no step of the history (a stalled writer's
        # late put re-created a freed number, deleted again by its own check, or left by a crash).
        # Read *after* the step: such an object exists only once a compaction raised the
        # watermark past it, so a later gc read sees that; read concurrently, a gc answer from
        # before the compaction could vouch for a stray read after it.
        record = await self.read_step(step)
        watermark = await self.read_gc()
        if record is not None and step >= watermark:
            return record
        oldest_keys, head = await asyncio.gather(self.list_steps(limit=1), self.read_head())
        newest = await self.load_latest(head)
        if newest is None or not oldest_keys:
            raise ActorNotFoundError(self.actor_id, self.store.describe())
        oldest = max(oldest_keys[0], min(watermark, newest.step))
        compacted = step < oldest or step < watermark
        raise StepNotFoundError(self.actor_id, step, (oldest, newest.step), compacted=compacted)

    async def probe_with_watermark(self, record: StepRecord) -> tuple[StepRecord, GcWatermark]:
        """The newest step at or after ``record``, and the watermark read *after* the probe answered.

        The order matters: a compaction raises ``gc`` before it deletes. A
        probe that missed a step because it was deleted is therefore followed
        by a ``gc`` read that sees the raised watermark. Read concurrently,
        the ``gc`` answer could predate the compaction while the probe's
        postdates its deletes, and a stale cache would pass as the newest step.
        """
        newest, _ = await self.probe_from(record)
        return newest, await self.read_watermark()

    async def load_latest(self, head: Head | None) -> StepRecord | None:
        """The newest step, starting from ``head`` if given; ``None`` if the actor has no steps."""
        return (await self.load_latest_and_head(head))[0]

    async def load_latest_and_head(self, head: Head | None) -> tuple[StepRecord | None, Head | None]:
        """:meth:`load_latest`, and HEAD as it is after it: ``head``, unless it named a step past
        the newest one (see :meth:`_pull_back_head`); ``None`` when that is not known.

        :class:`StepsMissingError` when the log holds no step at or above the retention
        watermark (every step deleted while ``gc`` stayed): never ``None``, which would let
        ``get_or_create`` make the actor anew below the watermark."""
        if head is not None:
            # The watermark beside the steps (no extra round trip): HEAD moves forward only and
            # this library's compaction moves it to the newest step before raising the watermark;
            # another implementation's may leave it behind (an advisory rule). A HEAD below the
            # watermark is not used: the object at its number, if any, is no step of the history
            # (a HEAD restored or replayed onto an old step, or a late put's leftover a crash kept
            # from deleting): taken for the newest, a reader got an old state and a writer's
            # commit landed on a freed number no reader lists.
            at_head, after_head, watermark = await asyncio.gather(
                self.read_step(head.step), self.read_step(head.step + 1), self._watermark_or_none()
            )
            if watermark is None or head.step < watermark:
                if watermark is not None:
                    self._note_head_below(head.step, watermark, stray=at_head is not None)
                at_head = None  # (unreadable watermark: the listing needs none; whoever needs it says so)
            # HEAD's own step gone means a compaction passed after we read HEAD: what
            # lies past it may be a below-watermark leftover, so take the listing path.
            if at_head is not None:
                return (await self.probe_from(after_head))[0] if after_head is not None else at_head, head
            newest = await self._list_latest()
        else:
            # No HEAD (a new id, or one whose HEAD is gone): the watermark beside the listing,
            # in its round trip, tells an id that never held an actor from one whose steps
            # were deleted while its gc stayed.
            newest, watermark = await asyncio.gather(self._list_latest(), self._watermark_or_none())
        if watermark and (newest is None or newest.step < watermark):
            await self._refuse_missing_steps()
            newest = await self._list_latest()  # (the first look raced a compaction: look again)
        if head is not None and newest is not None and newest.step < head.step:
            return newest, await self._pull_back_head(head, newest)
        return newest, head

    def _note_head_below(self, step: int, watermark: int, *, stray: bool) -> None:
        """Say that HEAD names a step below the watermark: normal (debug) when that step is gone,
        as a compaction that does not move HEAD first leaves it; a warning when an object is
        still there, no step of the history (HEAD restored or replayed with it)."""
        if stray:
            logger.warning(
                "actor %r: HEAD names step %d, below the retention watermark %d, and an object is "
                "still at that number: not a step of the history (HEAD restored or replayed, or a "
                "late put's leftover); finding the newest step by listing",
                self.actor_id,
                step,
                watermark,
            )
        else:
            logger.debug(
                "actor %r: HEAD names step %d, below the retention watermark %d (left behind by a "
                "compaction that did not move it first); finding the newest step by listing",
                self.actor_id,
                step,
                watermark,
            )

    async def _refuse_missing_steps(self) -> None:
        """Raise :class:`StepsMissingError` if no step remains at or above the watermark; return
        if one does (the first look raced a compaction).

        Read in order, the watermark first: a compaction raises it only to a step that exists
        and never deletes that step, so a listing begun after the watermark was read that finds
        no step at or above it means the steps were deleted out of band. (Only on this failure
        path: a sound log never comes here.)"""
        watermark = await self.read_gc()
        if watermark == 0 or await self.list_steps(after=watermark - 1, limit=1):
            return
        below = await self.list_steps()
        raise StepsMissingError(
            self.actor_id, watermark, below[-1] if below else None, self.gc_key, self.steps_prefix
        )

    async def _watermark_or_none(self) -> int | None:
        """The watermark; ``None`` when it cannot be read now (damaged, a failed request)."""
        try:
            return await self.read_gc()
        except (StorageError, IntegrityError):
            return None

    async def _list_latest(self) -> StepRecord | None:
        steps = await self.list_steps()
        if not steps:
            return None
        # Walk back over steps deleted between the listing and the read.
        for step in reversed(steps):
            record = await self.read_step(step)
            if record is not None:
                return (await self.probe_from(record))[0]
        return None

    async def _pull_back_head(self, head: Head, newest: StepRecord) -> Head | None:
        """Move ``head``, which names a step past every step listed after it was read, back to
        ``newest``; what HEAD then holds (``None``: not known).

        HEAD moves forward only, after the step it names is committed, and the newest step is
        never deleted: a HEAD whose step is missing while no later step is listed was never a
        committed step's (forged, or restored from another copy of the store). Left there,
        every load read two missing steps and listed the log until the log grew past it. The
        move is the compare-and-swap every HEAD move makes (``IfMatch`` of the version read),
        so it never replaces a HEAD another process wrote meanwhile; a step committed after
        the listing (whose writer saw HEAD ahead and left it) is probed for, and HEAD moved on
        to it, so HEAD ends at the newest step this reader can find.
        """
        logger.warning(
            "actor %r: HEAD names step %d, past the newest step %d (forged, or restored from "
            "another copy of the store); pulling it back",
            self.actor_id,
            head.step,
            newest.step,
        )
        data = codec.encode(
            self.head_key,
            {"kind": "head", "step": newest.step, "class": newest.class_ref.to_json()},
            signing_key=self.signing_key,
        )
        try:
            version = await self.store.put(self.head_key, data, mode=IfMatch(head.version))
        except StorageError as exc:
            # Changed meanwhile (left to its writer), or not ours to write (a reader's
            # credentials may not allow it): the load goes on either way.
            logger.info("actor %r: HEAD not pulled back: %s", self.actor_id, exc)
            return None
        pulled = Head(newest.step, newest.class_ref, version)
        later, _ = await self.probe_from(newest)
        if later.step > newest.step:
            return await self.advance_head(later.step, later.class_ref, pulled)
        return pulled

    # -- idempotency checkpoints ------------------------------------------------
    async def put_dedup_checkpoint(
        self,
        name: str,
        table: bytes,
        serializer: str,
        outcomes: tuple[str, ...] = (),
        by_value_at_most: int | None = None,
    ) -> None:
        """Write the checkpoint ``dedup/<name>`` (create-only; the name is unique to its writer).
        ``outcomes``: the outcome objects its table names (meta ``outcomes``): any, format 3,
        which readers of format 2 refuse rather than take a row naming one for the outcome.
        ``by_value_at_most``: no row it holds by value is encoded larger (None: not known)."""
        key = self.dedup_key(name)
        meta: dict[str, Any] = {"kind": "dedup", "serializer": serializer}
        if outcomes:
            meta["outcomes"] = list(outcomes)
        if by_value_at_most is not None:
            meta["by_value_at_most"] = by_value_at_most
        data = codec.encode(
            key, meta, {"table": table}, signing_key=self.signing_key, version=3 if outcomes else 2
        )
        # Unique to this writer: an object found at the key after an ambiguous
        # failure is our own earlier attempt.
        await self._put_own(key, data)

    async def read_dedup_checkpoint(self, name: str) -> tuple[bytes, str]:
        """Checkpoint ``dedup/<name>``: its serialized table and serializer.

        ``NotFoundError`` once compacted away (only a reader of a step older
        than the retention watermark can ask for such a one).
        """
        table, serializer, _ = await self.read_dedup_checkpoint_rows(name)
        return table, serializer

    async def read_dedup_checkpoint_rows(self, name: str) -> tuple[bytes, str, int | None]:
        """:meth:`read_dedup_checkpoint`, and its meta ``by_value_at_most``: no row it holds by
        value is encoded larger (None: not known, as in a checkpoint of an earlier release)."""
        key = self.dedup_key(name)
        env = await read_envelope(self.store, key, self.signing_key)
        if env.meta.get("kind") != "dedup" or "table" not in env.parts:
            raise IntegrityError(key, "not an idempotency checkpoint")
        at_most = env.meta.get("by_value_at_most")
        known = at_most if isinstance(at_most, int) and not isinstance(at_most, bool) else None
        return env.parts["table"], str(env.meta.get("serializer", "pickle")), known

    async def list_dedup_checkpoints(self) -> list[str]:
        """Names of the checkpoint objects, oldest first."""
        names = [k[len(self.dedup_prefix) :] for k in await self.store.list(self.dedup_prefix)]
        return [name for name in names if "/" not in name]

    async def read_dedup_checkpoint_outcomes(self, name: str) -> set[str]:
        """The outcome objects checkpoint ``dedup/<name>`` names (its meta ``outcomes``)."""
        key = self.dedup_key(name)
        env = await read_envelope(self.store, key, self.signing_key)
        named = env.meta.get("outcomes", [])
        if env.meta.get("kind") != "dedup" or not isinstance(named, list):
            raise IntegrityError(key, "not an idempotency checkpoint")
        return {str(n) for n in named}

    # -- large recorded outcomes -------------------------------------------------
    def dedup_outcome_key(self, name: str) -> str:
        return f"{self.dedup_outcomes_prefix}{name}"

    async def list_dedup_outcomes(self) -> list[str]:
        """Names of the outcome objects (``<N:020d>-<sha256>``), oldest first."""
        prefix = self.dedup_outcomes_prefix
        return [k[len(prefix) :] for k in await self.store.list(prefix)]

    def _outcome_object(self, key: str, outcome: bytes, serializer: str) -> bytes:
        meta = {"kind": "outcome", "serializer": serializer}
        return codec.encode(key, meta, {"outcome": outcome}, signing_key=self.signing_key, version=3)

    async def put_dedup_outcome(self, name: str, outcome: bytes, serializer: str) -> None:
        """Write the outcome object ``dedup/outcomes/<name>`` (create-only). Its name is its
        content's: one already there (another commit's of the same step, or our own put whose
        answer was lost) is taken once it is read back and holds what the name says."""
        key = self.dedup_outcome_key(name)
        if await self._put_own(key, self._outcome_object(key, outcome, serializer)):
            return
        _, stored = await self.read_dedup_outcome(name)  # raises unless it holds what its name says
        if stored != serializer:
            raise IntegrityError(
                key, f"an outcome object stored with serializer {stored!r}, not {serializer!r}"
            )

    async def read_dedup_outcome(self, name: str) -> tuple[bytes, str]:
        """Outcome object ``dedup/outcomes/<name>``: its part ``outcome`` (one row, decoded by
        ``vactor_cloud.dedup``) and serializer. ``IntegrityError`` for one that does not verify,
        or whose content is not what its name is the SHA-256 of (forged, or another's)."""
        key = self.dedup_outcome_key(name)
        env = await read_envelope(self.store, key, self.signing_key)
        outcome = env.parts.get("outcome")
        if env.meta.get("kind") != "outcome" or outcome is None:
            raise IntegrityError(key, "not an outcome object")
        if hashlib.sha256(outcome).hexdigest() != name.rpartition("-")[2]:
            raise IntegrityError(key, "its content is not the one its name is the SHA-256 of")
        return outcome, str(env.meta.get("serializer", ""))

    # -- HEAD ------------------------------------------------------------------
    async def read_head(self) -> Head | None:
        """HEAD, or ``None`` when absent *or unreadable*.

        HEAD is advisory: a corrupt, truncated or foreign HEAD is logged and
        ignored (readers fall back to listing the steps), and the next
        :meth:`advance_head` replaces it. Only a HEAD in a newer format
        raises (:class:`FormatVersionError`): it must not be overwritten.
        """
        return (await self._read_head_versioned())[0]

    async def _read_head_versioned(self) -> tuple[Head | None, str | None]:
        """HEAD and its version; ``(None, version)`` when HEAD exists but cannot be read."""
        try:
            blob = await self.store.get(self.head_key)
        except NotFoundError:
            return None, None
        except RetryableStorageError as exc:
            return None, await self._version_of_an_unreadable_head(exc)
        try:
            env = codec.decode(self.head_key, blob.data, signing_key=self.signing_key)
            if env.meta.get("kind", "head") != "head":
                raise IntegrityError(self.head_key, f"holds a {env.meta.get('kind')!r} object")
            head = Head(int(env.meta["step"]), ClassRef.from_json(env.meta["class"]), blob.version)
        except FormatVersionError:
            raise
        except (IntegrityError, KeyError, ValueError, TypeError, OverflowError) as exc:
            logger.warning(
                "actor %r: ignoring an unreadable HEAD (%s); finding the newest step by listing, "
                "the next writer replaces it",
                self.actor_id,
                exc,
            )
            return None, blob.version
        return head, blob.version

    async def _version_of_an_unreadable_head(self, failed: RetryableStorageError) -> str | None:
        """After a read of HEAD failed in transit: HEAD's version when the store answers for it
        (the object is there, only its bytes never arrive whole: an emulator that stored an
        upload without its body), so that it is treated as a damaged HEAD (ignored, replaced
        by the next move); otherwise ``failed`` is raised, the store's own trouble (a timeout,
        an endpoint that answers nothing, a store asking for fewer requests)."""
        if isinstance(failed, StorageTimeoutError | RateLimitedError):
            raise failed
        try:
            version = await self.store.head(self.head_key)
        except StorageError:
            answered = False
        else:
            answered = True
        if not answered:
            raise failed  # (out of the handler: with its own cause, not the head()'s)
        logger.warning(
            "actor %r: ignoring a HEAD whose bytes cannot be read (%s); finding the newest step "
            "by listing, the next writer replaces it",
            self.actor_id,
            failed,
        )
        return version

    async def advance_head(self, step: int, class_ref: ClassRef, known: Head | None) -> Head:
        """Move HEAD forward to ``step`` (never backward) and return what HEAD now holds."""
        current = known
        #: version of an unreadable HEAD, replaced by if-match (a repair)
        unreadable: str | None = None
        #: transient refusals so far (rate limited, a conflict): each retry waits longer
        refused = 0
        for _ in range(8):
            if current is not None and current.step >= step:
                return current
            data = codec.encode(
                self.head_key,
                {"kind": "head", "step": step, "class": class_ref.to_json()},
                signing_key=self.signing_key,
            )
            try:
                if current is not None:
                    version = await self.store.put(self.head_key, data, mode=IfMatch(current.version))
                elif unreadable is not None:
                    version = await self.store.put(self.head_key, data, mode=IfMatch(unreadable))
                else:
                    version = await self.store.put(self.head_key, data, mode="create")
                return Head(step, class_ref, version)
            except RetryableStorageError:
                # (A store asking for fewer requests: not another put and read at once.)
                await asyncio.sleep(retry_pause(refused))
                refused += 1
                current, unreadable = await self._read_head_versioned()
            except (AlreadyExistsError, PreconditionFailedError):
                current, unreadable = await self._read_head_versioned()
        return current if current is not None else Head(-1, class_ref, "")

    # -- retention watermark ---------------------------------------------------
    async def read_gc(self) -> int:
        """The retention low-watermark: steps below it may have been deleted."""
        return (await self.read_watermark()).min_step

    async def read_watermark(self) -> GcWatermark:
        """The ``gc`` object: the watermark, its version, and whose steps it deleted."""
        key = self.gc_key
        try:
            return await read_checked(
                self.store, key, lambda blob: decode_gc(key, blob.data, blob.version, self.signing_key)
            )
        except NotFoundError:
            return GcWatermark(0)
        except FormatVersionError:
            raise  # its message already says what to do: upgrade
        except IntegrityError as exc:
            raise _unusable_gc(self.actor_id, self.gc_key, exc) from None

    # -- class bodies ------------------------------------------------------------
    async def put_class(self, sha: str, body: bytes, name: str, bytecode: str | None) -> bool:
        """Create the class object ``sha`` (``bytecode``: whose code objects the body holds,
        ``ActorDefinition.bytecode``). True when this put created it; False when an object
        was there already (sound, or damaged at rest: :meth:`restore_class` tells)."""
        key = self.class_key(sha)
        data = self._class_object(key, body, name, bytecode)
        # Content-addressed: whoever wrote it first wrote the same bytes, so an
        # object found at the key after an ambiguous failure (a lost response, a
        # 409, a 5xx) is as good as our own write; only a missing one is retried.
        return await self._put_own(key, data)

    async def _put_own(self, key: str, data: bytes) -> bool:
        """Create ``key``; an object already there is this very write (same bytes by construction).
        True when one of this put's requests created it (False: an object was there, or one was
        found there after an answer was lost)."""
        last_error: StorageError | None = None
        for attempt in range(_AMBIGUOUS_RETRIES):
            try:
                await self.store.put(key, data, mode="create")
                return True
            except AlreadyExistsError:
                return False
            except StorageError as exc:
                last_error = exc
            with contextlib.suppress(StorageError):
                if await self.store.head(key) is not None:
                    return False
            await asyncio.sleep(retry_pause(attempt))
        assert last_error is not None  # every way round the loop without returning sets it
        raise last_error

    def _class_object(self, key: str, body: bytes, name: str, bytecode: str | None) -> bytes:
        meta: dict[str, Any] = {"kind": "class", "name": name}
        if bytecode is not None:
            meta["python"] = bytecode
        return codec.encode(key, meta, {"body": body}, signing_key=self.signing_key)

    async def read_class(self, sha: str) -> tuple[bytes, str | None]:
        """The verified body of the class object ``sha``, and whose bytecode it holds (None: a
        body stored by reference, or by a release that did not record it)."""
        key = self.class_key(sha)
        # (one GET: its caller reads a body that does not verify again, actor_runtime._read_class_body)
        body, env = self._class_body_and_envelope(key, sha, (await self.store.get(key)).data)
        python = env.meta.get("python")
        return body, python if isinstance(python, str) else None

    def _class_body(self, key: str, sha: str, data: bytes) -> bytes:
        """The verified body of the class object ``data`` read from ``key``; ``IntegrityError``."""
        return self._class_body_and_envelope(key, sha, data)[0]

    def _class_body_and_envelope(self, key: str, sha: str, data: bytes) -> tuple[bytes, codec.Envelope]:
        """:meth:`_class_body`, and the object's envelope (its meta names the bytecode)."""
        env = codec.decode(key, data, signing_key=self.signing_key)
        body = env.parts.get("body")
        if body is None:
            raise IntegrityError(key, "class object has no body")
        if hashlib.sha256(body).hexdigest() != sha:
            raise IntegrityError(key, "class body does not match its content hash")
        return body, env

    async def restore_class(self, sha: str, body: bytes, name: str, bytecode: str | None) -> str | None:
        """Make sure the class body ``sha`` is stored whole (``body``: this process's own, whose
        sha it is): read it (one GET) and store it again if it is missing or does not verify
        (damaged at rest, another class's body under this sha, signed with another key). What
        was wrong with it, or None if it was sound (or written by a newer release: not ours to
        replace)."""
        key = self.class_key(sha)
        try:
            blob = await self.store.get(key)
        except NotFoundError:
            await self.put_class(sha, body, name, bytecode)
            return "missing"
        try:
            self._class_body(key, sha, blob.data)
            return None
        except FormatVersionError:
            return None
        except IntegrityError as exc:
            damage = exc.reason
        data = self._class_object(key, body, name, bytecode)
        # Content-addressed: any sound object at the key holds these very bytes, so replacing
        # the one read (and only that one: if-match) loses nothing, whoever wrote it. Replaced
        # or deleted meanwhile: ``PreconditionFailedError``, and the caller checks again.
        await self.store.put(key, data, mode=IfMatch(blob.version))
        return f"damaged ({damage})"

    async def exists(self) -> bool:
        head, steps = await asyncio.gather(self.read_head(), self.list_steps(limit=1))
        return head is not None or bool(steps)


#: keys under steps/ naming no step that this process has warned about (once each; bounded)
_STRAYS_SEEN: set[str] = set()
os.register_at_fork(after_in_child=_STRAYS_SEEN.clear)  # (a child warns once too)


def retry_pause(attempt: int) -> float:
    """The jittered pause before retry ``attempt`` (0-based) of a request whose outcome was
    unknown or that failed transiently: 10 ms doubling, at most 1 s."""
    return float(min(1.0, 0.01 * 2**attempt) * (0.5 + random.random()))
