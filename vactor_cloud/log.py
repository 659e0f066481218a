"""ActorLog: the per-actor commit protocol over an :class:`ObjectStore`.

Object layout under the store root (DESIGN.md §3)::

    actors/<id>/class/<sha256>   class body, content-addressed, create-only
    actors/<id>/steps/<N:020d>   immutable step objects, create-only; step 0 = creation
    actors/<id>/HEAD             advisory pointer to a recent step; forward-only, by if-match
    actors/<id>/gc               retention low-watermark {"min_step": M}
    actors/<id>/dedup/<N:020d>-<token>   idempotency-table checkpoint, create-only, named by a step

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
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from vactor_cloud import codec
from vactor_cloud.errors import (
    AlreadyExistsError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.storage import IfMatch, ObjectStore

__all__ = [
    "ActorLog",
    "CallRecord",
    "ClassRef",
    "Head",
    "StepRecord",
    "StepTakenError",
    "actor_prefix",
]

_STEP_DIGITS = 20
#: how many times an ambiguous put (response lost, 409, 5xx) is resolved and retried
_AMBIGUOUS_RETRIES = 5


def actor_prefix(actor_id: str) -> str:
    return f"actors/{actor_id}/"


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
        )


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
    #: name of the checkpoint object (``dedup/<name>``) ``dedup`` is a delta on
    dedup_base: str | None = None
    #: writing side only, never encoded: a new checkpoint for ``dedup_base``, put before the step
    dedup_checkpoint: bytes = b""
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
        if self.dedup_base is None:
            return codec.encode(key, meta, parts, signing_key=signing_key)
        meta["dedup_base"] = self.dedup_base
        return codec.encode(key, meta, parts, signing_key=signing_key, version=2)

    @classmethod
    def decode(cls, key: str, data: bytes, signing_key: bytes | None) -> StepRecord:
        env = codec.decode(key, data, signing_key=signing_key)
        meta = env.meta
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
                dedup_base=None if meta.get("dedup_base") is None else str(meta["dedup_base"]),
                extra=dict(meta.get("extra") or {}),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise IntegrityError(key, f"malformed step object: {exc}") from None


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


class ActorLog:
    """Reads and writes one actor's objects. Safe to share between tasks of one loop."""

    __slots__ = (
        "actor_id",
        "dedup_cache",
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
        self.prefix = actor_prefix(actor_id)
        self.steps_prefix = f"{self.prefix}steps/"
        self.head_key = f"{self.prefix}HEAD"
        self.gc_key = f"{self.prefix}gc"
        self.dedup_prefix = f"{self.prefix}dedup/"
        #: the newest idempotency checkpoint this process decoded: (name, table), owned by dedup.py
        self.dedup_cache: tuple[str, Any] | None = None

    # -- keys ---------------------------------------------------------------
    def step_key(self, step: int) -> str:
        return f"{self.steps_prefix}{step:0{_STEP_DIGITS}d}"

    def class_key(self, sha: str) -> str:
        return f"{self.prefix}class/{sha}"

    def dedup_key(self, name: str) -> str:
        return f"{self.dedup_prefix}{name}"

    def step_of(self, key: str) -> int:
        try:
            return int(key.rsplit("/", 1)[1])
        except (IndexError, ValueError):
            raise IntegrityError(key, "not a step key") from None

    # -- steps ---------------------------------------------------------------
    async def read_step(self, step: int) -> StepRecord | None:
        """The step, or ``None`` if it does not exist (never written, or compacted)."""
        key = self.step_key(step)
        try:
            blob = await self.store.get(key)
        except NotFoundError:
            return None
        record = StepRecord.decode(key, blob.data, self.signing_key)
        if record.step != step:
            raise IntegrityError(key, f"holds step {record.step}, not {step}")
        return record

    async def put_step(self, record: StepRecord) -> bool:
        """Commit ``record`` with a create-only put: the linearization point.

        Returns normally when *our* object is at ``steps/N`` — including when
        the response to our put was lost and a retry (ours or the client
        library's) met our own object. Raises :class:`StepTakenError` when
        another writer's object is there. Storage errors after which the
        outcome cannot be learned propagate; the commit may or may not have
        happened.

        Returns ``True`` when the first request created the object outright,
        ``False`` when it took a retry (an earlier attempt may have landed
        first: the retention check in the runtime needs to know).
        """
        key = self.step_key(record.step)
        data = record.encode(key, self.signing_key)
        if record.dedup_checkpoint and record.dedup_base is not None:
            # Before the step: a committed step never names a checkpoint that is not there.
            await self.put_dedup_checkpoint(record.dedup_base, record.dedup_checkpoint, record.serializer)
        last_error: StorageError | None = None
        for attempt in range(_AMBIGUOUS_RETRIES):
            try:
                await self.store.put(key, data, mode="create")
                return attempt == 0
            except AlreadyExistsError:
                pass
            except RetryableStorageError as exc:
                last_error = exc
            except StorageError as exc:
                # The request may have been applied before the error reached
                # us (a lost response). Only reading the key can tell.
                last_error = exc
            try:
                existing = await self.read_step(record.step)
            except (RetryableStorageError, StorageError) as exc:
                last_error = exc
                existing = None
                await asyncio.sleep(_backoff(attempt))
                continue
            if existing is not None:
                if existing.writer == record.writer:
                    return False
                raise StepTakenError(existing)
            await asyncio.sleep(_backoff(attempt))
        if last_error is None:
            # Every attempt met an object that was gone when read back: only a
            # compaction racing this commit does that. Nothing tells whose it was.
            last_error = RetryableStorageError(
                f"{key}: the step was taken and deleted again while committing (a compaction ran); "
                "the call was not applied by this attempt",
                key,
            )
        raise last_error

    async def list_steps(self, *, after: int | None = None, limit: int | None = None) -> list[int]:
        start = None if after is None else self.step_key(after)
        keys = await self.store.list(self.steps_prefix, start_after=start, limit=limit)
        return [self.step_of(k) for k in keys]

    async def probe_from(self, record: StepRecord) -> tuple[StepRecord, int]:
        """The newest step at or after ``record``, and how many requests that took.

        Reads ``steps/N+1``, ``N+2``, ... until one is missing; after two hits
        in a row it lists once to jump to the end instead of walking.
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
                if later:
                    newest = await self.read_step(later[-1])
                    requests += 1
                    if newest is not None:
                        current = newest

    async def load_latest(self, head: Head | None) -> StepRecord | None:
        """The newest step, starting from ``head`` if given; ``None`` if the actor has no steps."""
        if head is not None:
            at_head, after_head = await asyncio.gather(
                self.read_step(head.step), self.read_step(head.step + 1)
            )
            # HEAD's own step gone means a compaction passed after we read HEAD: what
            # lies past it may be a below-watermark leftover, so take the listing path.
            if at_head is not None:
                return (await self.probe_from(after_head))[0] if after_head is not None else at_head
        steps = await self.list_steps()
        if not steps:
            return None
        # Walk back over steps deleted between the listing and the read.
        for step in reversed(steps):
            record = await self.read_step(step)
            if record is not None:
                return (await self.probe_from(record))[0]
        return None

    # -- idempotency checkpoints ------------------------------------------------
    async def put_dedup_checkpoint(self, name: str, table: bytes, serializer: str) -> None:
        """Write the checkpoint ``dedup/<name>`` (create-only; the name is unique to its writer)."""
        key = self.dedup_key(name)
        data = codec.encode(
            key,
            {"kind": "dedup", "serializer": serializer},
            {"table": table},
            signing_key=self.signing_key,
            version=2,
        )
        # Unique to this writer: an object found at the key after an ambiguous
        # failure is our own earlier attempt.
        await self._put_own(key, data)

    async def read_dedup_checkpoint(self, name: str) -> tuple[bytes, str]:
        """Checkpoint ``dedup/<name>``: its serialized table and serializer.

        ``NotFoundError`` once compacted away (only a reader of a step older
        than the retention watermark can ask for such a one).
        """
        key = self.dedup_key(name)
        blob = await self.store.get(key)
        env = codec.decode(key, blob.data, signing_key=self.signing_key)
        if env.meta.get("kind") != "dedup" or "table" not in env.parts:
            raise IntegrityError(key, "not an idempotency checkpoint")
        return env.parts["table"], str(env.meta.get("serializer", "pickle"))

    async def list_dedup_checkpoints(self) -> list[str]:
        """Names of the checkpoint objects, oldest first."""
        return [k[len(self.dedup_prefix) :] for k in await self.store.list(self.dedup_prefix)]

    # -- HEAD ------------------------------------------------------------------
    async def read_head(self) -> Head | None:
        try:
            blob = await self.store.get(self.head_key)
        except NotFoundError:
            return None
        env = codec.decode(self.head_key, blob.data, signing_key=self.signing_key)
        try:
            return Head(int(env.meta["step"]), ClassRef.from_json(env.meta["class"]), blob.version)
        except (KeyError, ValueError, TypeError) as exc:
            raise IntegrityError(self.head_key, f"malformed HEAD: {exc}") from None

    async def advance_head(self, step: int, class_ref: ClassRef, known: Head | None) -> Head:
        """Move HEAD forward to ``step`` (never backward) and return what HEAD now holds."""
        current = known
        for _ in range(8):
            if current is not None and current.step >= step:
                return current
            data = codec.encode(
                self.head_key,
                {"kind": "head", "step": step, "class": class_ref.to_json()},
                signing_key=self.signing_key,
            )
            try:
                if current is None:
                    version = await self.store.put(self.head_key, data, mode="create")
                else:
                    version = await self.store.put(self.head_key, data, mode=IfMatch(current.version))
                return Head(step, class_ref, version)
            except (AlreadyExistsError, PreconditionFailedError, RetryableStorageError):
                current = await self.read_head()
        return current if current is not None else Head(-1, class_ref, "")

    # -- retention watermark ---------------------------------------------------
    async def read_gc(self) -> int:
        """The retention low-watermark: steps below it may have been deleted."""
        try:
            blob = await self.store.get(self.gc_key)
        except NotFoundError:
            return 0
        env = codec.decode(self.gc_key, blob.data, signing_key=self.signing_key)
        try:
            return int(env.meta["min_step"])
        except (KeyError, ValueError, TypeError) as exc:
            raise IntegrityError(self.gc_key, f"malformed gc watermark: {exc}") from None

    # -- class bodies ------------------------------------------------------------
    async def put_class(self, sha: str, body: bytes, name: str) -> None:
        key = self.class_key(sha)
        data = codec.encode(
            key, {"kind": "class", "name": name}, {"body": body}, signing_key=self.signing_key
        )
        # Content-addressed: whoever wrote it first wrote the same bytes, so an
        # object found at the key after an ambiguous failure (a lost response, a
        # 409, a 5xx) is as good as our own write; only a missing one is retried.
        await self._put_own(key, data)

    async def _put_own(self, key: str, data: bytes) -> None:
        """Create ``key``; an object already there is this very write (same bytes by construction)."""
        last_error: StorageError | None = None
        for attempt in range(_AMBIGUOUS_RETRIES):
            try:
                await self.store.put(key, data, mode="create")
                return
            except AlreadyExistsError:
                return
            except StorageError as exc:
                last_error = exc
            with contextlib.suppress(StorageError):
                if await self.store.head(key) is not None:
                    return
            await asyncio.sleep(_backoff(attempt))
        assert last_error is not None  # every way round the loop without returning sets it
        raise last_error

    async def read_class(self, sha: str) -> bytes:
        key = self.class_key(sha)
        blob = await self.store.get(key)
        env = codec.decode(key, blob.data, signing_key=self.signing_key)
        body = env.parts.get("body")
        if body is None:
            raise IntegrityError(key, "class object has no body")
        if hashlib.sha256(body).hexdigest() != sha:
            raise IntegrityError(key, "class body does not match its content hash")
        return body

    async def exists(self) -> bool:
        head, steps = await asyncio.gather(self.read_head(), self.list_steps(limit=1))
        return head is not None or bool(steps)


def _backoff(attempt: int) -> float:
    return float(min(1.0, 0.01 * 2**attempt) * (0.5 + random.random()))
