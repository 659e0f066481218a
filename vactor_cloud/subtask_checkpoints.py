"""Sub-task checkpoints: each finished child's result, written create-only as
``actors/<id>/tasks/<call_id>/<position:06d>`` (:class:`Memo`; the guarantees are in
:mod:`vactor_cloud.subtask`'s docstring), started as soon as the child succeeded
(:class:`Checkpoints`), and the fingerprint that tells a checkpoint written for another
child (:func:`fingerprint_of`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import cloudpickle

from vactor_cloud import codec
from vactor_cloud.batch import CallContext
from vactor_cloud.checked_read import read_checked
from vactor_cloud.errors import (
    AlreadyExistsError,
    DamagedObjectError,
    FormatVersionError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    RetryableStorageError,
    RuntimeShutdownError,
    StateSerializationError,
)
from vactor_cloud.incarnation import BORN, born_in
from vactor_cloud.keys import TASK_POSITIONS, task_key, tasks_prefix
from vactor_cloud.state import dumps_state, expect_serializer, loads_state
from vactor_cloud.storage import Blob, IfMatch, ObjectStore, PutMode
from vactor_cloud.subtask_executors import function_name

__all__ = ["Checkpoints", "Memo", "actor_serializer", "call_pickle", "checkpoint_written", "fingerprint_of"]

logger = logging.getLogger("vactor_cloud.subtask")

#: attempts to write one checkpoint through transient storage errors
_WRITE_ATTEMPTS = 5


class Checkpoints:
    """The checkpoint writes of one launch, each started once, as soon as its child succeeded:
    by the pool thread that ran it (thread pools), or by the waiting thread taking its outcome.

    Started by the waiting thread only, the checkpoints of children that finished on the pool
    while that thread ran a child itself waited for that child: a process killed meanwhile lost
    them, and a run of the call again ran them again.
    """

    def __init__(self, memo: Memo, fingerprints: list[str], unmemoized: set[int]) -> None:
        self.memo = memo
        self.fingerprints = fingerprints
        self.unmemoized = unmemoized
        self.lock = threading.Lock()
        self.writes: dict[int, concurrent.futures.Future[bytes | None]] = {}
        #: a result that could not be checkpointed fails its child
        self.errors: dict[int, BaseException] = {}

    def start(self, index: int, value: Any) -> None:
        if index in self.unmemoized:
            return
        # Held while serializing: the waiting thread, told of the same child after a pool
        # thread, must find the write once its ``start`` returns.
        with self.lock:
            if index in self.writes or index in self.errors:
                return
            try:
                self.writes[index] = self.memo.store(index, self.fingerprints[index], value)
            except Exception as exc:  # StateSerializationError; or a runtime shut down meanwhile
                self.errors[index] = exc


def checkpoint_written(
    write: concurrent.futures.Future[bytes | None], memo: Memo | None, index: int
) -> bytes | None:
    """A checkpoint write's outcome (see ``Memo.store``). Cancelled, it was cut off by its
    runtime's shutdown (``Runtime.close`` cancels the work still running past its timeout):
    ``RuntimeShutdownError``, not the bare ``CancelledError`` the method could not tell from
    its own."""
    try:
        return write.result()
    except concurrent.futures.CancelledError:
        key = memo.key(index) if memo is not None else "a sub-task checkpoint"
        raise RuntimeShutdownError(
            f"{key}: the vactor_cloud runtime was shut down while this child's checkpoint was "
            "written; it may not have landed: a run of this call again (after init) runs the "
            "child again if it did not"
        ) from None


# -- checkpoints --------------------------------------------------------------------------------------
_cursor = threading.local()


def actor_serializer(context: CallContext) -> str:
    """The serializer of the actor whose method runs in ``context`` (its class's, never storage's)."""
    definition = context.runtime.core(context.actor_id).definition
    return definition.serializer if definition is not None else "pickle"


class Memo:
    """The checkpoints of one launch (a contiguous range of positions) within one run of a call."""

    def __init__(self, context: CallContext, first: int, count: int) -> None:
        self.context = context
        self.first = first
        self.count = count
        runtime = context.runtime
        self.objects: ObjectStore = runtime.store
        self.signing_key: bytes | None = runtime.settings.signing_key
        #: how results are checkpointed: the actor class's serializer (a json actor never unpickles)
        self.serializer = actor_serializer(context)

    @classmethod
    def start(cls, context: CallContext, count: int) -> Memo:
        # Positions restart at 0 on every run of the method: batch_apply.py gives each run (first
        # run, conflict retry, max_retries retry, replay) its own CallContext object. The
        # cursor holds it weakly (a strong reference kept the thread's last call, its runtime
        # and that runtime's cache alive after shutdown()); a dead reference is no context,
        # so the ``is`` test cannot be fooled by id reuse either.
        #
        # Per context, not one per thread: a method calling another actor runs that actor's
        # method on this same thread (the caller runs), and its launches must not restart the
        # caller's count (the caller's next launch took position 0 again: another child's).
        held: dict[int, tuple[weakref.ref[CallContext], int]] = getattr(_cursor, "state", None) or {}
        for key in [k for k, (ref, _) in held.items() if ref() is None]:
            del held[key]
        entry = held.get(id(context))
        first = entry[1] if entry is not None and entry[0]() is context else 0
        if first + count > TASK_POSITIONS:
            raise ValueError(
                f"a run of a method launches at most {TASK_POSITIONS:,} sub-tasks (their checkpoints "
                f"are numbered by position), and this launch of {count:,} after {first:,} would "
                "pass that: launch them from several calls, or give each child a batch of items"
            )
        held[id(context)] = (weakref.ref(context), first + count)
        _cursor.state = held
        return cls(context, first, count)

    def key(self, index: int) -> str:
        return task_key(self.context.actor_id, self.context.call_id, self.first + index)

    def load(self) -> dict[int, tuple[str, Any] | None]:
        """Checkpoints already written for this launch, by index: ``(fingerprint, value)``. One
        an earlier actor under the id wrote (a keyed call's id is the same on the next actor
        after a delete) is not this call's: left out, and replaced when this run stores its own."""
        # Unpickling user objects may be slow: done here, in the method's thread, not on the IO loop.
        found = self.context.runtime.run(
            self._load(), hint="the sub-task checkpoints could not be read; no child was run: call again"
        )
        return {
            index: self.decode(index, data)
            for index, data in found.items()
            if not self._earlier_actors(self.key(index), data)
        }

    def _earlier_actors(self, key: str, data: bytes) -> bool:
        """Whether the checkpoint ``data`` was written by an earlier actor under the id (an
        earlier incarnation: ``vactor_cloud.incarnation``). A damaged one is not: it is
        refused as it was (``decode``)."""
        if not self.context.born:
            return False  # (the id's first actor: nothing came before it)
        try:
            return born_in(codec.decode(key, data, signing_key=self.signing_key).meta) < self.context.born
        except (IntegrityError, ValueError):
            return False

    async def _load(self) -> dict[int, bytes]:
        prefix = tasks_prefix(self.context.actor_id, self.context.call_id)
        start_after = self.key(-1) if self.first > 0 else None
        keys = await self.objects.list(prefix, start_after=start_after, limit=self.count)
        wanted = {self.key(i): i for i in range(self.count)}
        found = [(wanted[k], k) for k in keys if k in wanted]

        async def read(index: int, key: str) -> tuple[int, bytes | None]:
            try:
                return index, (await self._read(key)).data
            except NotFoundError:  # compacted meanwhile: run the child again
                return index, None

        blobs = await asyncio.gather(*(read(i, k) for i, k in found))
        return {index: data for index, data in blobs if data is not None}

    async def _read(self, key: str) -> Blob:
        """The checkpoint at ``key`` as read, to be decoded by ``decode``: bytes that do not
        verify are read again first (``read_checked``: one read cut short is not a damaged
        checkpoint, whose child would run again, its result unmemoized); so every time, the
        last read (``decode`` says so). ``NotFoundError`` if it is gone."""
        seen: list[Blob] = []

        def verified(blob: Blob) -> Blob:
            seen.append(blob)
            try:
                codec.decode(key, blob.data, signing_key=self.signing_key)
            except DamagedObjectError:
                raise
            except IntegrityError:
                pass  # (whatever else is wrong, ``decode`` says)
            return blob

        try:
            return await read_checked(self.objects, key, verified)
        except DamagedObjectError:
            return seen[-1]

    def decode(self, index: int, data: bytes) -> tuple[str, Any] | None:
        """(fingerprint, result) of the checkpoint ``data``; ``None`` (with a warning) for one
        that does not verify: damaged, or not signed with the store's key (a forger's, who can
        write the bucket). It is not used, as one written for another child: the child runs
        again and its result is not memoized. Refused (``IntegrityError``), it failed every
        run of the call for good (a keyed call's or a timer's id, so its checkpoints' keys,
        is known beforehand); unused, it costs a run of the child, as a deleted one would."""
        key = self.key(index)
        try:
            envelope = codec.decode(key, data, signing_key=self.signing_key)
        except FormatVersionError:
            raise  # (a newer release's checkpoint: "upgrade")
        except IntegrityError as exc:
            logger.warning(
                "sub-task checkpoint %s cannot be used (%s); running the child again without memoizing it",
                key,
                exc.reason,
            )
            return None
        meta = envelope.meta
        if (
            meta.get("kind") != "task"
            or meta.get("position") != self.first + index
            or "result" not in envelope.parts
        ):
            raise IntegrityError(key, "not a sub-task checkpoint of this position")
        serializer = expect_serializer(str(meta.get("serializer", "pickle")), self.serializer, key)
        try:
            value = loads_state(envelope.parts["result"], serializer)
        except Exception as exc:
            raise IntegrityError(key, f"the checkpointed result cannot be decoded here: {exc}") from exc
        return str(meta.get("fingerprint", "")), value

    def store(self, index: int, fingerprint: str, value: Any) -> concurrent.futures.Future[bytes | None]:
        """Start writing the checkpoint; the future gives ``None``, or the bytes another run wrote first."""
        key = self.key(index)
        try:
            pickled = dumps_state(value, self.serializer, what="sub-task result")
        except Exception as exc:
            raise StateSerializationError(
                f"{key}: the result of this sub-task cannot be serialized ({self.serializer}), "
                f"so it cannot be checkpointed: {exc}"
            ) from exc
        meta = {
            "kind": "task",
            "actor": self.context.actor_id,
            "call_id": self.context.call_id,
            "method": self.context.method,
            "position": self.first + index,
            "fingerprint": fingerprint,
            "serializer": self.serializer,
            "time": time.time(),
        }
        if self.context.born:  # (the id's first actor names none: checkpoints as before)
            meta[BORN] = self.context.born
        data = codec.encode(key, meta, {"result": pickled}, signing_key=self.signing_key)
        return self.context.runtime.background(self._bounded_put(key, data))

    async def _bounded_put(self, key: str, data: bytes) -> bytes | None:
        """``_put`` within ``Settings.deadline``. Its coroutines are made here, once the write
        runs: a runtime stopped already refuses the write and closes this one unstarted, where
        a ``_put`` made beforehand was left never awaited (a RuntimeWarning)."""
        hint = "this child's result was not checkpointed: a run of this call again runs the child again"
        return await self.context.runtime.bounded(self._put(key, data), hint=hint)

    async def _put(self, key: str, data: bytes) -> bytes | None:
        mode: PutMode = "create"
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                await self.objects.put(key, data, mode=mode)
                return None
            except (AlreadyExistsError, PreconditionFailedError, NotFoundError):
                # Another run won this position, or our own earlier attempt landed
                # and its response was lost; either way the stored bytes count. But for an
                # earlier actor's under the id: replaced, by the version read (a run of this
                # call racing us replaces it first, and then its checkpoint counts).
                try:
                    # (read again if it does not verify: the winner's result, read cut short,
                    # was taken for none written, and this run went on with its own)
                    found = await self._read(key)
                except NotFoundError:  # (the one replaced gone meanwhile, compacted: create it)
                    if attempt == _WRITE_ATTEMPTS - 1:
                        raise
                    mode = "create"
                    continue
                if not self._earlier_actors(key, found.data) or attempt == _WRITE_ATTEMPTS - 1:
                    return found.data
                mode = IfMatch(found.version)
            except RetryableStorageError:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")


def call_pickle(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
    """The cloudpickle of a child's call, ``(bound, args, kwargs)`` (``bound``: a
    ``functools.partial``'s own arguments, else None); None if it does not pickle."""
    bound = (fn.args, fn.keywords) if isinstance(fn, functools.partial) else None
    try:
        return bytes(cloudpickle.dumps((bound, args, kwargs)))
    except Exception:
        return None


_UNSET: Any = object()


def fingerprint_of(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], pickled: bytes | None = _UNSET
) -> str:
    """Function name and a digest of the arguments, to notice a checkpoint written for another
    child. Arguments that cannot be pickled (the thread executor passes them as they are: a
    lock, an open file) are digested as their shape (``_shape``): each part that cannot be
    pickled by its type, the others as they pickle, so that ``f(lock, 1)`` and ``f(lock, 2)``
    still differ (one digest for all such children used a checkpoint of the one for the other)."""
    if pickled is _UNSET:  # (``pickled``: ``call_pickle``'s, if made already)
        pickled = call_pickle(fn, args, kwargs)
    if pickled is None:
        bound = (fn.args, fn.keywords) if isinstance(fn, functools.partial) else None
        pickled = cloudpickle.dumps(_shape((bound, args, kwargs), _SHAPE_DEPTH))
    return f"{function_name(fn)}:{hashlib.sha256(pickled).hexdigest()[:16]}"


#: how deep ``_shape`` looks into lists, tuples and dicts for the parts that cannot be pickled
_SHAPE_DEPTH = 8


def _shape(value: Any, depth: int) -> Any:
    """``value`` as ``fingerprint_of`` digests it when it cannot be pickled: a list, tuple or dict
    (to ``depth`` levels) part by part, any other part as its pickle, or its type's name if
    it has none."""
    kind = type(value)
    if depth > 0 and kind in (list, tuple):
        return (kind.__name__, [_shape(item, depth - 1) for item in value])
    if depth > 0 and kind is dict:
        return ("dict", [(_shape(k, depth - 1), _shape(v, depth - 1)) for k, v in value.items()])
    try:
        return bytes(cloudpickle.dumps(value))
    except Exception:
        return f"<unpicklable {kind.__module__}.{kind.__qualname__}>"
