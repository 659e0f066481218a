"""The object-store contract every backend implements.

The contract is small on purpose: whole-object reads and writes, a
create-only put, a compare-and-swap put, sorted listing, delete. Everything
the actor runtime needs for its commit protocol is expressed with these.
``delete_many`` is the one convenience: a backend with a batch request (S3's
DeleteObjects) sends fewer requests for it; the others delete key by key.
``delete_unchanged`` deletes objects only while they are at a given version
(the inbox's deletes: a key written again since must keep the new object).
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import collections
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias, TypeVar

from vactor_cloud import counters
from vactor_cloud.errors import RetryableStorageError, StorageError, StorageTimeoutError

__all__ = [
    "OBJECT_KEY_BYTES",
    "OPERATION",
    "REQUEST",
    "Blob",
    "IfMatch",
    "Listing",
    "ObjectStore",
    "OperationTrouble",
    "PutMode",
    "RequestAnswers",
    "RequestCounter",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Blob:
    """The bytes of one object and the version they were read at."""

    data: bytes
    version: str


@dataclass(frozen=True, slots=True)
class IfMatch:
    """Put mode: replace the object only if its current version is ``version``."""

    version: str


PutMode: TypeAlias = Literal["create", "overwrite"] | IfMatch


class Listing(builtins.list[str]):
    """The keys a listing found, and how many requests (pages) it took to find them: a
    backend whose listings may take several returns one (see :meth:`ObjectStore.listed_at_one_moment`).

    ``versions``: listed objects' versions as the listing saw them, the same versions ``get``
    returns: every listed object's where the backend's listing names them at no cost (S3's
    ETags, GCS's generations, the memory store's); on the local store (a version is inside its
    file) those of the objects this store object read, checked by a ``stat`` of each file
    against the one read (a file replaced since is opened for its version), not one open per
    key. ``None``: the listing names none. A reader holding what it read at a key tells by them
    that the object there was replaced since (the inbox); a key left out is one it cannot tell
    of. (The local store's one miss: a file replaced within one tick of the filesystem's clock
    by one of the same size that took over the freed inode number is listed at the old
    version.)"""

    __slots__ = ("requests", "versions")

    def __init__(self, keys: Iterable[str], requests: int, versions: dict[str, str] | None = None) -> None:
        super().__init__(keys)
        self.requests: int = requests
        self.versions: dict[str, str] | None = versions


class RequestCounter:
    """Counts the requests a store sent, by operation kind (``get``, ``put``, ...)."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, kind: str) -> None:
        self._counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)

    def total(self) -> int:
        return sum(self._counts.values())

    def reset(self) -> None:
        self._counts.clear()

    def __getitem__(self, kind: str) -> int:
        return self._counts[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)


class OperationTrouble:
    """What the requests of one operation (a piece of work ``Settings.deadline`` bounds) met:
    ``last``, when the last of them failed transiently and how (its text), or ``None``. Told
    apart from the failures of the store's other requests (another operation's) for the
    message of an operation that ran out of time (:meth:`ObjectStore.trouble_meanwhile`)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[float, str] | None = None


#: the operation the requests made here belong to: set by the runtime around each operation it
#: bounds (the tasks started in it inherit it); ``None``: none
OPERATION: contextvars.ContextVar[OperationTrouble | None] = contextvars.ContextVar(
    "vactor_operation", default=None
)


class RequestAnswers:
    """What the endpoint answered to the attempts of one request that were tried again:
    ``last``, when and what (a backend's own record: its text, the client's error), or
    ``None``. For the message of that request if it then runs out of ``Settings.timeout``
    (:meth:`ObjectStore._answered_meanwhile`): another request's answers are not its own."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[float, object] | None = None


#: the request being sent (set by a store around each request it bounds by its timeout; a
#: backend that tries a request again notes the answers in it); ``None``: none
REQUEST: contextvars.ContextVar[RequestAnswers | None] = contextvars.ContextVar(
    "vactor_request", default=None
)


#: the request methods (and their ``_``-prefixed hooks) that :attr:`ObjectStore.inline` bypasses
_REQUESTS = frozenset({"get", "put", "list", "delete", "delete_many", "delete_unchanged", "head"})
_PLAIN_CLASSES: dict[tuple[type, type], bool] = {}
#: the longest object key S3 and GCS accept (UTF-8 bytes), a store's own prefix included
OBJECT_KEY_BYTES = 1024


def repeated_page_token(url: str, prefix: str, token: str, page: int) -> str:
    """The message for a listing whose server answered page ``page`` with a continuation token
    it had sent before (a backend's paging loop checks: it would list the same pages forever)."""
    return (
        f"{url}: listing of {prefix!r} stopped: page {page} came with a continuation token the "
        f"server had already sent ({token[:80]!r}), so the listing would never end; the endpoint "
        "(an emulator, a caching proxy) does not page as S3 and GCS do"
    )


#: The attributes of :class:`ObjectStore` that say what a store can hold and how it answers; a
#: wrapper forwarding every request to another store takes them from it
#: (:meth:`ObjectStore.take_capabilities_of`).
CAPABILITIES = (
    "nested_keys",
    "definite_create_conflicts",
    "delete_batch",
    "delete_parallel",
    "conditional_deletes",
    "snapshot_list_keys",
    "max_key_bytes",
)


#: how many stores :meth:`ObjectStore.stores_below` names at most
STORES_BELOW = 10
#: the first component of every actor's keys (``keys.ACTORS``; see docs/protocol.md): a prefix
#: or a directory holding it holds a store
ACTORS_DIR = "actors"


class ObjectStore(abc.ABC):
    """An async object store rooted at ``url``; keys are ``/``-separated and relative to it.

    Guarantees every backend gives:

    * ``put`` is atomic: a reader sees the whole old object or the whole new
      one, never a part.
    * ``put(mode="create")`` succeeds for exactly one of any number of
      concurrent creators; the others get ``AlreadyExistsError``.
    * ``put(mode=IfMatch(v))`` succeeds only if the object exists at version
      ``v``; otherwise ``PreconditionFailedError``. Every successful write
      yields a version never returned before for that key (no ABA).
    * ``list`` reads the store itself, never a cache: another machine may
      have written a moment ago.
    * ``delete_unchanged({key: v})`` deletes the object only while it is at
      version ``v``: atomically where :attr:`conditional_deletes` says so,
      else after reading its version (a write in between is lost).

    Public methods count requests in ``requests`` and delegate to the
    ``_``-prefixed methods backends implement.
    """

    url: str
    #: Whether a key may also be a prefix of other keys ("a" and "a/b" both objects).
    #: True for object stores; a filesystem cannot hold a file and a directory of one name.
    #: vactor_cloud's own layout never needs it.
    nested_keys: bool = True
    #: the keyword options ``open_store(url, **options)`` passes to this backend; anything else is refused
    accepted_options: ClassVar[frozenset[str]] = frozenset()
    #: the types some of those options must have (checked by ``open_store``, so that a wrong one
    #: fails there, naming the option, not at the first request deep in the client)
    option_types: ClassVar[Mapping[str, tuple[type, ...]]] = {}

    #: seconds one request may take before ``StorageTimeoutError`` (None: no limit);
    #: the runtime sets it from ``Settings.timeout``
    request_timeout: float | None = None
    #: Whether ``AlreadyExistsError`` from a create proves that *this* request wrote nothing.
    #: True when the backend never retries a request internally (local, memory); an HTTP
    #: client that retries after a lost response can meet its own first attempt and report
    #: it as "already exists", so S3 says False; GCS too (see ``GCSStore``: a hop between
    #: may repeat an upload). After a conflict the step is read back either way; the flag
    #: decides only whose a step is that reads back damaged, or that is gone below the
    #: watermark with no record of its writer.
    definite_create_conflicts: bool = False
    #: The most keys one delete request can carry: 1 where the backend has no batch delete
    #: (each key its own DELETE), 1000 on S3 (DeleteObjects). A test may lower it on an
    #: instance to exercise the splitting without writing a thousand objects.
    delete_batch: int = 1
    #: The most requests one ``delete_many`` has in flight at once (each of up to
    #: :attr:`delete_batch` keys): the bound a caller deleting thousands of keys puts on the
    #: connections it holds.
    delete_parallel: int = 16
    #: Whether :meth:`delete_unchanged` is one atomic compare-and-delete on the backend (memory
    #: and local stores; S3's ``If-Match``/``ETag`` delete; GCS's ``ifGenerationMatch``). False
    #: where the server ignores the condition (fake-gcs-server): each key's version is then read
    #: right before its delete, which narrows the window in which a key written again meanwhile
    #: loses its new object, but does not close it.
    conditional_deletes: bool = False
    #: For a listing that is no :class:`Listing` (which says how many requests it took): one
    #: that returned fewer keys than this was made by one request, at one moment (see
    #: :meth:`listed_at_one_moment`). None: every listing is one moment (the memory store
    #: lists under its lock).
    snapshot_list_keys: int | None = None
    #: The longest key (UTF-8 bytes, relative to the root) this store can hold; None: no limit
    #: that matters here. S3 and GCS take object keys of up to 1,024 bytes, their prefix included.
    max_key_bytes: int | None = None
    #: when a request of this store last failed transiently, and how (see :meth:`trouble_meanwhile`):
    #: its text only, not the exception (whose traceback holds the frames that raised it, and
    #: what they hold: an evicted actor's core and state, for as long as the store lives)
    _failed_lately: tuple[float, str] | None = None

    def __init__(self, url: str) -> None:
        self.url: str = url
        self.requests: RequestCounter = RequestCounter()

    def take_capabilities_of(self, inner: ObjectStore) -> None:
        """Say what ``inner`` can hold and how it answers (each of :data:`CAPABILITIES`): for a
        wrapper (injected faults, added latency) that forwards every request to it. Copied now,
        but for one a store may learn once built (:attr:`conditional_deletes`: the S3 store's
        first conditional delete may find the endpoint ignoring the condition): a wrapper that
        defines it as a property reading ``inner``'s is left to follow it (a copy said True for
        ever)."""
        for name in CAPABILITIES:
            if isinstance(getattr(type(self), name, None), property):
                continue
            setattr(self, name, getattr(inner, name))

    # -- public API -------------------------------------------------------
    async def get(self, key: str) -> Blob:
        """Read a whole object. ``NotFoundError`` if it does not exist."""
        self._check_key(key)
        self.requests.add("get")
        return await self._bounded(self._get(key), "GET", key)

    async def head(self, key: str) -> str | None:
        """The object's current version, or ``None`` if it does not exist.

        An object too short to be one this store wrote (torn by a crash: shorter than the
        write token the local store puts in front of every object, and keeps its version in)
        has no version there: ``TruncatedObjectError``, as ``get`` raises; an if-match never
        matches it, an overwrite replaces it, a delete removes it. S3 and GCS keep versions
        beside the bytes: their ``head`` returns one, and ``get`` refuses the bytes."""
        self._check_key(key)
        self.requests.add("head")
        return await self._bounded(self._head(key), "HEAD", key)

    async def put(self, key: str, data: bytes, *, mode: PutMode = "overwrite") -> str:
        """Write a whole object atomically and return its new version.

        ``mode="create"`` raises ``AlreadyExistsError`` if the key exists;
        ``mode=IfMatch(v)`` raises ``PreconditionFailedError`` unless the key
        exists at version ``v``; ``"overwrite"`` always writes.
        """
        self._check_key(key)
        self.requests.add("put")
        return await self._bounded(self._put(key, bytes(data), mode), "PUT", key, write=True)

    @property
    def inline(self) -> bool:
        """Whether :meth:`put_now`, :meth:`get_now` and :meth:`list_now` may be used: requests
        answered on the calling thread, without an IO loop (the in-process memory store; the
        local store, whose requests are system calls). The runtime then skips the trip to the
        IO loop on its hot paths. Such requests are not bounded by ``Settings.timeout``."""
        return False

    def _plain(self, owner: type[ObjectStore]) -> bool:
        """For :attr:`inline`: no request method overridden below ``owner`` (a test's stalling or
        failing subclass) nor wrapped on the instance (a request tracer): those see every request."""
        if not _REQUESTS.isdisjoint(self.__dict__):
            return False
        cls = type(self)
        plain = _PLAIN_CLASSES.get((cls, owner))
        if plain is None:
            plain = _PLAIN_CLASSES[(cls, owner)] = all(
                getattr(cls, name) is getattr(ObjectStore, name)
                and getattr(cls, f"_{name}") is getattr(owner, f"_{name}")
                for name in _REQUESTS
            )
        return plain

    def put_now(self, key: str, data: bytes, *, mode: PutMode = "overwrite") -> str:
        """``put`` done synchronously on the calling thread, counted like ``put``; only
        where :attr:`inline` is true (``NotImplementedError`` elsewhere)."""
        raise NotImplementedError(f"{type(self).__name__} has no synchronous put")

    def get_now(self, key: str) -> Blob:
        """``get`` done synchronously on the calling thread, counted like ``get``; only
        where :attr:`inline` is true (``NotImplementedError`` elsewhere)."""
        raise NotImplementedError(f"{type(self).__name__} has no synchronous get")

    def list_now(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> builtins.list[str]:
        """``list`` done synchronously on the calling thread, counted like ``list``; only
        where :attr:`inline` is true (``NotImplementedError`` elsewhere)."""
        raise NotImplementedError(f"{type(self).__name__} has no synchronous list")

    async def list(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> builtins.list[str]:
        """Keys starting with ``prefix``, sorted, strictly after ``start_after``, at most ``limit``."""
        self.requests.add("list")
        return await self._bounded(self._list(prefix, start_after, limit), "LIST", prefix)

    async def delete(self, key: str) -> None:
        """Delete an object; deleting a missing object is not an error."""
        self._check_key(key)
        self.requests.add("delete")
        await self._bounded(self._delete(key), "DELETE", key, write=True)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every object in ``keys``; missing objects are not an error.

        Sent as requests of up to :attr:`delete_batch` keys each (S3: one DeleteObjects per
        1000 keys; elsewhere one DELETE per key), at most :attr:`delete_parallel` in flight at
        once, whatever the number of keys; each is bounded
        by ``request_timeout`` and counted in ``requests`` as one ``"delete"``. An empty
        ``keys`` sends nothing.

        Not atomic, and in no particular order: a failure raises :class:`StorageError`
        (the first one, once every request has finished) and then some of the keys may
        be deleted and others not, each object either gone or untouched. Once a request
        has timed out (:class:`StorageTimeoutError`) no new one is sent: the call ends
        after the requests in flight, not after a timeout per request. Retrying with
        the same keys is safe. Callers that need deletes in an order make one call per step
        of that order.
        """
        unique = list(dict.fromkeys(keys))
        for key in unique:  # all of them before any request: a bad key deletes nothing
            self._check_key(key)
        await self._in_batches(unique, self._delete_batch)

    async def delete_unchanged(self, versions: Mapping[str, str]) -> None:
        """Delete each object of ``versions`` (key to version) only if it is still at that
        version; one at another version, or missing, is left as it is (no error).

        Batched, bounded, counted and failing as :meth:`delete_many` (S3: one DeleteObjects
        carrying each object's ETag; GCS: a DELETE with ``ifGenerationMatch`` per key). Atomic
        per key where :attr:`conditional_deletes` says so; elsewhere the version is read (one
        HEAD, counted) right before the delete. For objects whose key may be written again once
        they are gone (an inbox's events): a delete that lands late, or a transport's retry of
        one whose first attempt landed, then leaves the new object in place."""
        items = dict(versions)
        for key in items:
            self._check_key(key)
        await self._in_batches(
            builtins.list(items), lambda batch: self._delete_unchanged_batch({k: items[k] for k in batch})
        )

    async def _in_batches(
        self, unique: builtins.list[str], send: Callable[[builtins.list[str]], Awaitable[None]]
    ) -> None:
        """Send ``send`` for ``unique`` in batches of :attr:`delete_batch`, at most
        :attr:`delete_parallel` in flight (see :meth:`delete_many`)."""
        if not unique:
            return
        size = max(1, self.delete_batch)
        batches = [unique[i : i + size] for i in range(0, len(unique), size)]
        if len(batches) == 1:
            await send(batches[0])
            return
        # A few senders taking batches one after the other, not a task per batch: deleting
        # a hundred thousand keys holds what ``delete_parallel`` requests need, no more.
        queued = iter(batches)
        failures: builtins.list[BaseException] = []
        timed_out = False

        async def sender() -> None:
            nonlocal timed_out
            for batch in queued:
                if timed_out:
                    # The endpoint stopped answering: every further request would wait out
                    # its own timeout too, a round after the other (an hour for thousands).
                    return
                try:
                    await send(batch)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # the others go on: every key is tried once
                    failures.append(exc)
                    timed_out = timed_out or isinstance(exc, StorageTimeoutError)

        await asyncio.gather(*(sender() for _ in range(min(max(1, self.delete_parallel), len(batches)))))
        if failures:
            # A storage failure is what callers handle; anything else (a bug) goes first.
            failures.sort(key=lambda exc: isinstance(exc, StorageError))
            raise failures[0]

    async def _delete_batch(self, keys: builtins.list[str]) -> None:
        """One delete request (counted and bounded) for at most ``delete_batch`` keys."""
        self.requests.add("delete")
        what = "DELETE" if len(keys) == 1 else f"DELETE of {len(keys)} keys, the first"
        await self._bounded(self._delete_many(keys), what, keys[0], write=True)

    async def _delete_unchanged_batch(self, versions: dict[str, str]) -> None:
        """One conditional delete request (counted and bounded) for at most ``delete_batch`` keys."""
        self.requests.add("delete")
        first = next(iter(versions))
        what = "DELETE" if len(versions) == 1 else f"DELETE of {len(versions)} keys, the first"
        await self._bounded(self._delete_many_unchanged(versions), what, first, write=True)

    async def remove_stale_temp_files(self, prefix: str, *, older_than: float) -> int:
        """Remove this backend's own leftovers of interrupted writes under ``prefix``.

        Only the local store has any (``.tmp-*`` files of a process killed
        mid-write); object stores write atomically and leave nothing. Returns
        how many were removed. Never touches an object.
        """
        return 0

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The store must not be used afterwards."""

    async def _bounded(self, request: Awaitable[_T], what: str, key: str, *, write: bool = False) -> _T:
        """Await one request within ``request_timeout`` (a plain function, not a context
        manager: this runs on every request and the generator machinery costs CPU). A
        transient failure is noted for :meth:`trouble_meanwhile`."""
        timeout = self.request_timeout
        try:
            if timeout is None:
                return await request
            scope = asyncio.timeout(timeout)
            answers = RequestAnswers()
            entered = REQUEST.set(answers)  # (``request`` runs in this task's context)
            try:
                async with scope:
                    return await request
            except TimeoutError as exc:
                if isinstance(exc, StorageTimeoutError) and not scope.expired():
                    raise  # (a wrapped store's own, told and counted: not this request's)
                answered = self._answered_meanwhile(timeout, answers)
                counters.storage_timeout(what, key, timeout, answered)
                outcome = " (the write may or may not have been applied)" if write else ""
                told = (
                    f"got no answer within {timeout:g} s{outcome}: {self._stall_advice(timeout)}"
                    if answered is None
                    else f"gave up after {timeout:g} s{outcome}; {answered}"
                )
                raise StorageTimeoutError(
                    f"{what} {key} on {self.describe()} {told} (Settings.timeout sets this limit)",
                    key,
                    write_in_flight=write,
                ) from None
            finally:
                REQUEST.reset(entered)
        except RetryableStorageError as exc:
            failure = self._failed_lately = (time.monotonic(), str(exc))
            operation = OPERATION.get()
            if operation is not None:
                operation.last = failure
            raise

    def trouble_meanwhile(self, within: float, operation: OperationTrouble | None = None) -> str | None:
        """What the requests met in the last ``within`` seconds, for the message of
        ``operation``, which ran out of time (``Settings.deadline``) meanwhile: the last
        transient failure of its own requests; else what the endpoint answered to requests
        tried again (a 503, a throttle, answers cut short: this store cannot tell whose); else
        the last transient failure of the store's other requests, said to be theirs (an
        operation that only waited did not meet it). ``None``: nothing failed that this store
        saw (it was only slow, or never answered)."""
        now = time.monotonic()
        mine = operation.last if operation is not None else None
        if mine is not None and now - mine[0] <= within:
            return (
                f"its requests failed meanwhile (the last: {mine[1]}); retry later, and check the "
                "endpoint if it lasts"
            )
        answered = self._answered_meanwhile(within)
        if answered is not None:
            return f"the store's requests (this operation's or others') met failures meanwhile: {answered}"
        failed = self._failed_lately
        if failed is None or now - failed[0] > within:
            return None
        whose = (
            "requests to the store (any operation's) failed meanwhile"
            if operation is None
            else "none of its requests failed, but other requests to the store failed meanwhile"
        )
        return f"{whose} (the last: {failed[1]}); retry later, and check the endpoint if it lasts"

    def _check_key(self, key: str) -> None:
        """Refuse a key no backend can store alike: ``""`` names no object, ``"/k"`` would
        be another object on S3 and GCS (``prefix//k``) than in a directory, and a key that is
        no UTF-8 text (lone surrogates) cannot be sent to S3 or GCS and is another key's file in
        a directory. Checked here, for
        every backend, before a request is counted or sent (and by the ``*_now`` methods)."""
        if not key or key[0] == "/":
            raise StorageError(
                f"{self.url}: invalid key {key!r}: keys are non-empty and relative (no leading '/')", key
            )
        if not key.isascii():
            try:
                key.encode()
            except UnicodeEncodeError:
                # (lone surrogates: S3 and GCS cannot send them; a directory stores "\udcc3\udca9"
                # under the bytes of "é", another key's file)
                raise StorageError(
                    f"{self.url}: invalid key {key!r}: keys are UTF-8 text (no lone surrogates)", key
                ) from None

    def describe(self) -> str:
        """A short human-readable name for messages."""
        return self.url

    async def stores_below(self) -> builtins.list[str] | None:
        """URLs of stores under this one's root (``s3://bucket`` named where the store is
        ``s3://bucket/app``), found with one listing request, for a command that found no actor
        to say where they may be; at most :data:`STORES_BELOW` of them. ``None``: this backend
        cannot tell."""
        return None

    def listed_at_one_moment(self, prefix: str, keys: builtins.list[str]) -> bool:
        """Whether ``keys``, a listing of ``prefix`` just made, shows the store at one moment:
        of two objects written one after the other, it never holds the second without the
        first. A listing of several requests (pages) does not: an object written meanwhile
        behind the page being read is missed while a later one ahead of it is seen. Readers
        that keep a writer's order (the inbox, the mailbox) wait for a second listing before
        they trust what such a one found first.

        A :class:`Listing` says how many requests it took (S3 and GCS: a server may answer a
        page with fewer keys than asked, and more follow, so the count of keys cannot tell)."""
        if isinstance(keys, Listing):
            return keys.requests <= 1
        limit = self.snapshot_list_keys
        return limit is None or len(keys) < limit

    def _answered_meanwhile(self, timeout: float, request: RequestAnswers | None = None) -> str | None:
        """What the endpoint answered to ``request``'s attempts that were tried again (a 503, a
        throttle, an answer cut short), or with ``request`` ``None`` to any of this store's
        requests, within the last ``timeout`` s, and what to do about it: the end of the message
        of a request that then ran out of time, which was answered, only not well (or, for
        :meth:`trouble_meanwhile`, what the store's requests met). ``None``: nothing answered
        meanwhile, or the backend cannot tell (the message then says the request got no
        answer, and ends with :meth:`_stall_advice`)."""
        return None

    def _stall_advice(self, timeout: float) -> str:
        """What to check about a request that timed out unanswered, its message's end: the endpoint, unless
        the backend knows better (what the request was still waiting for, what failed
        meanwhile). One advice: a wait for credentials is not an unreachable endpoint."""
        return "is the endpoint reachable?"

    # -- backend hooks ----------------------------------------------------
    @abc.abstractmethod
    async def _get(self, key: str) -> Blob: ...

    @abc.abstractmethod
    async def _head(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def _put(self, key: str, data: bytes, mode: PutMode) -> str: ...

    @abc.abstractmethod
    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> builtins.list[str]: ...

    @abc.abstractmethod
    async def _delete(self, key: str) -> None: ...

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        """Delete ``keys`` (at most :attr:`delete_batch` of them) in one request.

        The default, for backends without a batch request (``delete_batch = 1``), runs
        ``_delete`` for each key, concurrently. A backend that overrides it sets
        ``delete_batch``; a subclass that overrides ``_delete`` to watch or fail deletes
        must override this too when its base class has a batch request.
        """
        if len(keys) == 1:
            await self._delete(keys[0])
            return
        outcomes = await asyncio.gather(*(self._delete(key) for key in keys), return_exceptions=True)
        for outcome in outcomes:  # none left running behind the error
            if isinstance(outcome, BaseException):
                raise outcome

    async def _delete_unchanged(self, key: str, version: str) -> None:
        """Delete ``key`` if it is at ``version``. This default, for a backend whose server
        ignores a delete's condition (:attr:`conditional_deletes` False), reads the version
        first (one more request, counted as a ``"head"``): a write landing between that read and
        the delete is still lost. Backends that can compare and delete atomically override it."""
        self.requests.add("head")
        if await self._head(key) == version:
            await self._delete(key)

    async def _delete_many_unchanged(self, versions: dict[str, str]) -> None:
        """:meth:`_delete_unchanged` for ``versions`` (at most :attr:`delete_batch` keys) in one
        request; the default runs it for each key, concurrently (as :meth:`_delete_many`)."""
        if len(versions) == 1:
            [(key, version)] = versions.items()
            await self._delete_unchanged(key, version)
            return
        outcomes = await asyncio.gather(
            *(self._delete_unchanged(key, version) for key, version in versions.items()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
