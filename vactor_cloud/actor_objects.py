"""ActorObjects: one actor's objects on an :class:`ObjectStore`, read and written, but for
the commit of a step (:class:`~vactor_cloud.log.ActorLog`, which builds on this class).

Steps read and listed, HEAD, the retention watermark (``gc``), class bodies, idempotency
checkpoints and the outcome objects they name; the object layout is in
:mod:`vactor_cloud.log`'s docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
from typing import Any

from vactor_cloud import codec, keys
from vactor_cloud.checked_read import read_checked, read_checked_now, read_envelope
from vactor_cloud.errors import (
    AlreadyExistsError,
    FormatVersionError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
    StorageTimeoutError,
    TruncatedObjectError,
)
from vactor_cloud.log_records import ClassRef, GcWatermark, Head, StepRecord, decode_gc
from vactor_cloud.storage import IfMatch, ObjectStore

__all__ = ["AMBIGUOUS_RETRIES", "ActorObjects", "retry_pause"]

logger = logging.getLogger("vactor_cloud")

#: how many times an ambiguous put (response lost, 409, 5xx) is resolved and retried
AMBIGUOUS_RETRIES = 5


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


class ActorObjects:
    """Reads and writes one actor's objects, but for the commit of a step (see
    :class:`~vactor_cloud.log.ActorLog`). Safe to share between tasks of one loop."""

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
        for attempt in range(AMBIGUOUS_RETRIES):
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
        # (one GET: its caller reads a body that does not verify again, class_bodies._read_class_body)
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


#: keys under steps/ naming no step that this process has warned about (once each; bounded)
_STRAYS_SEEN: set[str] = set()
os.register_at_fork(after_in_child=_STRAYS_SEEN.clear)  # (a child warns once too)


def retry_pause(attempt: int) -> float:
    """The jittered pause before retry ``attempt`` (0-based) of a request whose outcome was
    unknown or that failed transiently: 10 ms doubling, at most 1 s."""
    return float(min(1.0, 0.01 * 2**attempt) * (0.5 + random.random()))
