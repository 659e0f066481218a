"""The records of an actor's step log, and how they are encoded: a step (:class:`StepRecord`),
the calls it applied (:class:`CallRecord`), the class its steps belong to (:class:`ClassRef`),
HEAD as read (:class:`Head`), and the ``gc`` object (:class:`GcWatermark`) with what it tells
of a step compacted before its writer learned the outcome (:func:`classify_late_commit`).

Nothing here reads or writes the store: :class:`~vactor_cloud.log.ActorLog` does.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vactor_cloud import codec
from vactor_cloud.errors import IntegrityError

__all__ = [
    "GC_RECORDED_STEPS",
    "OUTCOMES_MAGIC",
    "CallRecord",
    "ClassRef",
    "GcWatermark",
    "Head",
    "LateCommit",
    "StepRecord",
    "classify_late_commit",
    "decode_gc",
    "encode_gc",
    "unrecordable",
]

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
