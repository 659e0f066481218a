"""FaultyStore: an :class:`ObjectStore` wrapper that injects storage faults, by seed.

Wrap any store and describe the faults as plain data (:class:`FaultConfig`
holding :class:`FaultRule` s); the config pickles and round-trips through
JSON, so a child process can wrap its own store with the same faults and a
seed derived from its index (:meth:`FaultConfig.derive`)::

    config = FaultConfig(seed=7, rules=(FaultRule("lost_response", probability=0.2),))
    store = FaultyStore(open_store(url), config.derive("worker-3"))
    # or, inside a vactor_cloud process, right after init():
    install(config.derive("worker-3"))

Fault kinds (``FaultRule.kind``). "Applied" means the wrapped store really
performed the operation; every raised error is one of
:mod:`vactor_cloud.errors`, exactly what a real backend raises after its
translation:

``fail_before``
    The request never reaches the store: raise :class:`RetryableStorageError`
    (or :class:`StorageError` with ``retryable=False``). Nothing is applied.
``lost_response``
    Apply the operation, then raise as if the response were lost on the way
    back (:class:`StorageError`, or :class:`RetryableStorageError` with
    ``retryable=True``). The caller cannot tell it from ``fail_before``.
``conflict_before`` / ``conflict_after``
    S3's 409 ``ConditionalRequestConflict`` (:class:`ConflictError`) before
    applying, or after applying (a response lost behind a 409).
``rate_limited``
    S3's 503 ``SlowDown`` / GCS's 429 (:class:`RateLimitedError`); not applied.
``timeout_before`` / ``timeout_after``
    A request that got no answer within its timeout (a silent endpoint):
    :class:`StorageTimeoutError` (``write_in_flight`` for a put or a delete),
    without applying the operation, or after applying it (the answer never
    came). Raised at once: the wait itself is the real store's business.
``delay``
    Sleep a random time up to ``delay`` seconds, then apply normally.
``truncate_read`` / ``corrupt_read``
    ``get`` only: the stored object is intact, but the bytes returned are cut
    short (a random length, never the whole) or have one byte flipped.
``crash_before`` / ``crash_after``
    SIGKILL this very process before sending, or right after the operation
    was answered (before anyone learns of its outcome), whatever the answer:
    a create-only put that lost its race or a get of a missing key is killed
    after the answer too, so a scheduled kill always lands. For crash tests:
    the kill lands exactly at the chosen point of a commit.

``delete_many`` is the operation ``delete``, decided once per request it
sends (:attr:`~vactor_cloud.storage.ObjectStore.delete_batch` keys, taken
from the wrapped store: one key on memory, local and GCS, up to 1000 on S3);
``key_contains`` matches when any key of the request contains it. A fault
hits the whole request: ``lost_response`` deletes every key of it, then raises.

A rule fires either by schedule (``at``: 1-based numbers of the operations
the rule matches, counted per rule) or with ``probability`` per matching
operation, drawn from a ``random.Random`` seeded by the config; at most
``limit`` times. Every rule counts every operation it matches; when several
fire for one operation, the first in ``rules`` is injected. What was
injected is counted in :attr:`FaultyStore.injected`.

:class:`HoldOne` holds one chosen request until the test lets it go (a put in
flight when Ctrl-C comes, a delete still waiting when the next fold ends)::

    store = HoldOne(runtime.store, "put", "/steps/")
    runtime.store = store
    store.hold()                 # arm: the next step put waits ...
    ...                          # ... (a call on another thread sends it)
    assert store.held.wait(60)   # ... and is being held now
    store.release.set()          # it goes on

:class:`HoldEvery` holds every matching request until released (deletes that must pile up
while a test counts how many are in flight at once).
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import dataclasses
import hashlib
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from vactor_cloud.errors import (
    ConflictError,
    RateLimitedError,
    RetryableStorageError,
    StorageError,
    StorageTimeoutError,
)
from vactor_cloud.runtime import get_runtime
from vactor_cloud.storage import Blob, ObjectStore, PutMode
from vactor_cloud.storage._base import OperationTrouble
from vactor_cloud.testing._forwarding import ForwardingStore

__all__ = [
    "ALL_OPERATIONS",
    "FAULT_KINDS",
    "FaultConfig",
    "FaultKind",
    "FaultRule",
    "FaultyStore",
    "HoldEvery",
    "HoldOne",
    "install",
]

FaultKind = Literal[
    "fail_before",
    "lost_response",
    "conflict_before",
    "conflict_after",
    "rate_limited",
    "timeout_before",
    "timeout_after",
    "delay",
    "truncate_read",
    "corrupt_read",
    "crash_before",
    "crash_after",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
ALL_OPERATIONS: frozenset[str] = frozenset({"get", "head", "put", "list", "delete"})
_READ_ONLY_KINDS = frozenset({"truncate_read", "corrupt_read"})


@dataclass(frozen=True)
class FaultRule:
    """One kind of fault, the operations and keys it applies to, and when it fires."""

    kind: FaultKind
    #: operations it applies to: any of ``get``, ``head``, ``put``, ``list``, ``delete``
    operations: frozenset[str] = frozenset({"put"})
    #: only keys (or list prefixes) containing this substring; "" matches every key
    key_contains: str = ""
    #: chance per matching operation (ignored when ``at`` is given)
    probability: float = 0.0
    #: schedule: 1-based numbers of the matching operations that fault
    at: tuple[int, ...] = ()
    #: most faults this rule injects (None: no bound)
    limit: int | None = None
    #: for ``delay``: the longest pause, in seconds
    delay: float = 0.05
    #: for ``fail_before`` / ``lost_response``: raise RetryableStorageError (True) or StorageError
    retryable: bool = True

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        unknown = set(self.operations) - ALL_OPERATIONS
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; known: {sorted(ALL_OPERATIONS)}")
        if self.kind in _READ_ONLY_KINDS and set(self.operations) != {"get"}:
            raise ValueError(f"{self.kind} applies to get only: pass operations=frozenset({{'get'}})")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability}")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["operations"] = sorted(self.operations)
        out["at"] = list(self.at)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        values = dict(data)
        values["operations"] = frozenset(values.get("operations", ("put",)))
        values["at"] = tuple(values.get("at", ()))
        return cls(**values)


@dataclass(frozen=True)
class FaultConfig:
    """The faults one :class:`FaultyStore` injects: plain data, picklable, JSON-able."""

    rules: tuple[FaultRule, ...] = ()
    seed: int = 0
    #: a label for messages and reports (e.g. the fault kind under test)
    name: str = field(default="")

    def derive(self, label: object) -> FaultConfig:
        """The same faults with a seed derived from this one and ``label`` (e.g. a worker index)."""
        digest = hashlib.sha256(f"{self.seed}/{label}".encode()).digest()
        return dataclasses.replace(self, seed=int.from_bytes(digest[:8], "big"))

    def to_json(self) -> str:
        return json.dumps({"seed": self.seed, "name": self.name, "rules": [r.to_json() for r in self.rules]})

    @classmethod
    def from_json(cls, text: str) -> FaultConfig:
        data = json.loads(text)
        return cls(
            rules=tuple(FaultRule.from_json(r) for r in data.get("rules", ())),
            seed=int(data.get("seed", 0)),
            name=str(data.get("name", "")),
        )


class _InjectedFault:
    """The decision for one operation: which rule fired, and a random source for its details."""

    def __init__(self, rule: FaultRule, rng: random.Random) -> None:
        self.rule = rule
        self.rng = rng


class FaultyStore(ForwardingStore):
    """Forwards every operation to ``inner`` and injects the faults ``config`` describes.

    Guarantee: apart from the injected faults it behaves exactly like
    ``inner`` (same keys, same versions, same errors). ``injected`` counts the
    faults by kind, ``seen`` the operations by name.
    """

    def __init__(self, inner: ObjectStore, config: FaultConfig) -> None:
        # What the wrapped store can hold and how it answers (the runtime and the conformance
        # suite read these): a wrapper of a directory cannot hold "a" and "a/b" either, no
        # injected fault turns a landed write into "already exists" (the inner store's word
        # holds), and one decision is made per request the wrapped store would send.
        super().__init__(inner)
        self.config = config
        self._rng = random.Random(config.seed)
        self._matched = [0] * len(config.rules)
        self._fired = [0] * len(config.rules)
        self.injected: collections.Counter[str] = collections.Counter()
        self.seen: collections.Counter[str] = collections.Counter()

    def describe(self) -> str:
        return self.inner.describe()

    def trouble_meanwhile(self, within: float, operation: OperationTrouble | None = None) -> str | None:
        # (the wrapped store's first: what its endpoint answered; then the faults injected here)
        return self.inner.trouble_meanwhile(within, operation) or super().trouble_meanwhile(within, operation)

    async def close(self) -> None:
        await self.inner.close()

    async def remove_stale_temp_files(self, prefix: str, *, older_than: float) -> int:
        return await self.inner.remove_stale_temp_files(prefix, older_than=older_than)

    # -- decisions --------------------------------------------------------------------
    def _decide(self, operation: str, keys: tuple[str, ...]) -> _InjectedFault | None:
        """The fault for this operation, if any. Every matching rule counts (and draws for) it."""
        self.seen[operation] += 1
        chosen: int | None = None
        for index, rule in enumerate(self.config.rules):
            if operation not in rule.operations or not any(rule.key_contains in key for key in keys):
                continue
            self._matched[index] += 1
            # A probabilistic rule draws even when it cannot fire, so that the random
            # stream (and so the schedule) does not depend on the other rules.
            fires = self._matched[index] in rule.at if rule.at else self._rng.random() < rule.probability
            if fires and chosen is None and (rule.limit is None or self._fired[index] < rule.limit):
                chosen = index
        if chosen is None:
            return None
        rule = self.config.rules[chosen]
        self._fired[chosen] += 1
        self.injected[rule.kind] += 1
        return _InjectedFault(rule, random.Random(self._rng.getrandbits(64)))

    def listed_at_one_moment(self, prefix: str, keys: builtins.list[str]) -> bool:
        return self.inner.listed_at_one_moment(prefix, keys)

    def _stall_advice(self, timeout: float) -> str:
        return self.inner._stall_advice(timeout)

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        """Run ``run()`` (a coroutine factory applying the operation) with the fault decided for it.

        ``batch``: every key of a request on many (``key`` is its first)."""
        fault = self._decide(operation, batch or (key,))
        if fault is None:
            return await run()
        kind = fault.rule.kind
        where = f"{self.inner.describe()}/{key}"
        if len(batch) > 1:
            where += f" (and {len(batch) - 1} more keys)"
        if kind == "crash_before":
            _kill_self()
        if kind == "fail_before":
            raise _error(
                fault.rule.retryable, f"{where}: {operation} failed before it was sent (injected)", key
            )
        if kind == "rate_limited":
            raise RateLimitedError(f"{where}: {operation} refused with 503 SlowDown (injected)", key)
        if kind == "conflict_before":
            raise ConflictError(
                f"{where}: {operation} answered 409 ConditionalRequestConflict (injected)", key
            )
        if kind == "timeout_before":
            raise _timed_out(where, operation, key)
        if kind == "delay":
            await asyncio.sleep(fault.rng.uniform(0.0, fault.rule.delay))
            return await run()
        if kind == "crash_after":
            try:
                return await run()
            finally:
                _kill_self()  # never returns outside tests
        result = await run()
        if kind == "lost_response":
            raise _error(
                fault.rule.retryable,
                f"{where}: {operation} was applied but its response was lost (injected)",
                key,
            )
        if kind == "timeout_after":
            raise _timed_out(where, operation, key)
        if kind == "conflict_after":
            raise ConflictError(
                f"{where}: {operation} was applied, then answered 409 ConditionalRequestConflict (injected)",
                key,
            )
        if kind in _READ_ONLY_KINDS and isinstance(result, Blob):
            return Blob(_damage(kind, result.data, fault.rng), result.version)
        return result

    # -- ObjectStore hooks ---------------------------------------------------------------
    async def _get(self, key: str) -> Blob:
        blob: Blob = await self._around("get", key, lambda: self.inner.get(key))
        return blob

    async def _head(self, key: str) -> str | None:
        version: str | None = await self._around("head", key, lambda: self.inner.head(key))
        return version

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        version: str = await self._around("put", key, lambda: self.inner.put(key, data, mode=mode))
        return version

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> builtins.list[str]:
        keys: builtins.list[str] = await self._around(
            "list", prefix, lambda: self.inner.list(prefix, start_after=start_after, limit=limit)
        )
        return keys

    async def _delete(self, key: str) -> None:
        await self._around("delete", key, lambda: self.inner.delete(key))

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        if len(keys) == 1:  # the wrapped store has no batch delete: exactly a delete
            await self._delete(keys[0])
            return
        await self._around("delete", keys[0], lambda: self.inner.delete_many(keys), batch=tuple(keys))

    async def _delete_unchanged(self, key: str, version: str) -> None:
        await self._around("delete", key, lambda: self.inner.delete_unchanged({key: version}))

    async def _delete_many_unchanged(self, versions: dict[str, str]) -> None:
        if len(versions) == 1:  # the wrapped store has no batch delete: exactly a delete
            [(key, version)] = versions.items()
            await self._delete_unchanged(key, version)
            return
        keys = tuple(versions)
        await self._around("delete", keys[0], lambda: self.inner.delete_unchanged(versions), batch=keys)


class _Hold(FaultyStore):
    """What :class:`HoldOne` and :class:`HoldEvery` share: which requests they hold, for how
    long at most, and the events a test waits on or sets."""

    def __init__(
        self, inner: ObjectStore, operation: str, fragment: str, *, timeout: float, config: FaultConfig | None
    ) -> None:
        super().__init__(inner, config or FaultConfig())
        self.operation = _known_operation(operation)
        self.fragment = fragment
        self.timeout = timeout
        #: set once a held request starts waiting
        self.held = threading.Event()
        #: set it to let the held request (HoldEvery: every one, and every later one) go on
        self.release = threading.Event()
        #: set once the hold ended: released, timed out (HoldOne: or cancelled with its call)
        self.ended = threading.Event()

    def _matches(self, operation: str, keys: tuple[str, ...]) -> bool:
        return operation == self.operation and any(self.fragment in k for k in keys)


class HoldOne(_Hold):
    """Holds one request until :attr:`release` is set: once armed by :meth:`hold`, the next
    ``operation`` on a key containing ``fragment`` (any key of a batch delete), after ``skip``
    others, waits; :attr:`held` is set as it starts waiting, :attr:`ended` as it stops
    (released, timed out, or cancelled with the call that sent it).

    By default the request waits before it is sent (nothing applied yet). With
    ``answer_first`` it is sent first and its outcome (answer or error) is held: applied,
    its answer on its way back. A hold ends after ``timeout`` seconds even if nobody set
    :attr:`release` (a failing test does not hang); the request then goes on. Every other
    request goes straight through, with the faults of ``config`` (none by default).
    """

    def __init__(
        self,
        inner: ObjectStore,
        operation: str,
        fragment: str,
        *,
        skip: int = 0,
        answer_first: bool = False,
        timeout: float = 60.0,
        config: FaultConfig | None = None,
    ) -> None:
        super().__init__(inner, operation, fragment, timeout=timeout, config=config)
        self.skip = skip
        self.answer_first = answer_first
        self._armed = False

    def hold(
        self, operation: str | None = None, fragment: str | None = None, *, skip: int | None = None
    ) -> None:
        """Arm a new hold (:attr:`held`, :attr:`release` and :attr:`ended` cleared): the next
        matching request waits. ``operation``, ``fragment`` and ``skip``, where given, replace
        the ones before."""
        if operation is not None:
            self.operation = _known_operation(operation)
        if fragment is not None:
            self.fragment = fragment
        if skip is not None:
            self.skip = skip
        self.held.clear()
        self.release.clear()
        self.ended.clear()
        self._armed = True

    def _takes(self, operation: str, keys: tuple[str, ...]) -> bool:
        """Whether this request is the one to hold (runs on the IO loop: one at a time)."""
        if not self._armed or not self._matches(operation, keys):
            return False
        if self.skip:
            self.skip -= 1
            return False
        self._armed = False
        return True

    async def _wait_for_release(self) -> None:
        self.held.set()
        until = time.monotonic() + self.timeout
        try:
            while not self.release.is_set() and time.monotonic() < until:
                await asyncio.sleep(0.005)
        finally:
            self.ended.set()

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if not self._takes(operation, batch or (key,)):
            return await super()._around(operation, key, run, batch=batch)
        if not self.answer_first:
            await self._wait_for_release()
            return await super()._around(operation, key, run, batch=batch)
        try:
            answer = await super()._around(operation, key, run, batch=batch)
        except Exception:  # an error is an answer too (a cancellation is not: it goes at once)
            await self._wait_for_release()
            raise
        await self._wait_for_release()
        return answer


class HoldEvery(_Hold):
    """Holds every ``operation`` on a key containing ``fragment`` (any key of a batch delete)
    until :attr:`release` is set: each such request waits before it is sent; :attr:`held` is
    set as the first starts waiting. :attr:`in_flight` counts the matching requests under way
    (held or sent), :attr:`most_in_flight` the most at once, held or not.

    The hold ends when :attr:`release` is set, or when a request has waited ``timeout``
    seconds: then :attr:`timed_out` is set as well, and that request and every later one goes
    on, so a test whose code never lets the test release them (a call that waits for a held
    request) waits one timeout in all, not one per request, and can say what it waited for
    (:meth:`check`). :attr:`ended` is set once the hold ended either way; :meth:`hold` arms it
    again. Every other request goes straight through, with the faults of ``config``.
    """

    def __init__(
        self,
        inner: ObjectStore,
        operation: str,
        fragment: str,
        *,
        timeout: float = 60.0,
        config: FaultConfig | None = None,
    ) -> None:
        super().__init__(inner, operation, fragment, timeout=timeout, config=config)
        #: set when a request waited ``timeout`` seconds without a release
        self.timed_out = threading.Event()
        #: matching requests under way (held or sent) right now, and the most at once
        self.in_flight = 0
        self.most_in_flight = 0

    def hold(self) -> None:
        """Hold the matching requests from now on (every event cleared)."""
        for event in (self.held, self.release, self.ended, self.timed_out):
            event.clear()

    def check(self) -> None:
        """``AssertionError`` naming the requests held and the timeout if the hold timed out."""
        if self.timed_out.is_set():
            raise AssertionError(
                f"a {self.operation} of a key containing {self.fragment!r} was held {self.timeout} s "
                "and nobody released it: the code under test waited for a held request, or the "
                "test never set release"
            )

    async def _wait_for_release(self) -> None:
        if self.ended.is_set():
            return
        self.held.set()
        until = time.monotonic() + self.timeout
        while not self.ended.is_set():
            if self.release.is_set():
                self.ended.set()
            elif time.monotonic() >= until:
                self.timed_out.set()
                self.ended.set()
            else:
                await asyncio.sleep(0.005)

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if not self._matches(operation, batch or (key,)):
            return await super()._around(operation, key, run, batch=batch)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self._wait_for_release()
            return await super()._around(operation, key, run, batch=batch)
        finally:
            self.in_flight -= 1


def _known_operation(operation: str) -> str:
    if operation not in ALL_OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; known: {', '.join(sorted(ALL_OPERATIONS))}")
    return operation


def _timed_out(where: str, operation: str, key: str) -> StorageTimeoutError:
    write = operation in ("put", "delete")
    return StorageTimeoutError(
        f"{where}: {operation} got no answer within its timeout (injected)"
        + (" (the write may or may not have been applied)" if write else ""),
        key,
        write_in_flight=write,
    )


def _error(retryable: bool, message: str, key: str) -> StorageError:
    return RetryableStorageError(message, key) if retryable else StorageError(message, key)


def _damage(kind: str, data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    if kind == "truncate_read":
        return data[: rng.randrange(len(data))]
    position = rng.randrange(len(data))
    return data[:position] + bytes([data[position] ^ (1 << rng.randrange(8))]) + data[position + 1 :]


def _kill_self() -> None:
    # SIGKILL, not an exception: no finally blocks, no atexit, no flushing.
    os.kill(os.getpid(), signal.SIGKILL)


def install(config: FaultConfig) -> FaultyStore:
    """Wrap the current vactor_cloud runtime's store in a :class:`FaultyStore` and return it.

    Call it right after ``vactor_cloud.init()``, before the first actor is
    touched: actors already loaded keep the unwrapped store.
    """
    runtime = get_runtime()
    store = FaultyStore(runtime.store, config)
    runtime.store = store
    return store
