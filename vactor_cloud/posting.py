"""Contention combining: calls posted to an actor's mailbox and folded into the next commit.

When processes race for one actor, every loser of a race pays a PUT, a GET
and a re-apply, and tries again; under load most attempts lose. Instead, one
process holds the actor's advisory folder lease (``vactor_cloud.lease``);
the others *post* their batches of calls as one create-only object each and
wait; the holder folds every pending post into its next step (group commit
across processes). See docs/protocol.md ("Posting and folding") for the
protocol in full.

``sender`` (in the post's meta) is random per process (``PostSender``: one per
runtime, for all its actors, evictions or not), ``seq`` counts that sender's
posts. A sender has at most one post outstanding per actor (its batches are
sequential) and its names grow, so its seqs apply in order.

Posts as objects (calls, names, bodies) are in :mod:`vactor_cloud.post_objects`, the post
cursor in :mod:`vactor_cloud.post_cursor`, and the encoding of outcomes in
:mod:`vactor_cloud.step_outcomes`; this module holds :class:`PostBox`, which writes,
lists, reads and deletes an actor's posts, and :class:`PostSender`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from vactor_cloud import mailkey
from vactor_cloud.errors import (
    AlreadyExistsError,
    IntegrityError,
    NotFoundError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.keys import post_key, posts_prefix
from vactor_cloud.post_cursor import advance_cursor, applied, cannot_tell, cursor_of, expired, floor_of
from vactor_cloud.post_objects import (
    LATEST_NAMED,
    Post,
    PostedCall,
    bare,
    decode_post,
    encode_post,
    identity,
    inline_name,
    post_name,
    read_name,
    sealed,
)
from vactor_cloud.step_outcomes import Outcomes, decode_outcomes, encode_outcomes, legacy_outcomes
from vactor_cloud.storage import ObjectStore

__all__ = [
    "Outcomes",
    "Post",
    "PostBox",
    "PostInDoubtError",
    "PostSender",
    "PostedCall",
    "advance_cursor",
    "applied",
    "bare",
    "cannot_tell",
    "cursor_of",
    "decode_outcomes",
    "encode_outcomes",
    "expired",
    "floor_of",
    "identity",
    "inline_name",
    "legacy_outcomes",
    "post_name",
    "read_name",
    "sealed",
]

_FETCH_CONCURRENCY = 32
#: reads of our own post back (after a lost answer) before a damaged one counts as unknown
_READ_BACKS = 5
#: a post whose reads failed this many times in a row, over at least this many seconds, is
#: taken for damaged at rest (or forged) and skipped; until then a fold stops at it. A fold
#: stopped so reads it again 10 ms later, doubling to 100 ms (about twenty reads in the 2 s):
#: at 30 % damaged reads in transit, 15 in a row happen to one post in ~70 million
DAMAGED_READS = 15
DAMAGED_SECONDS = 2.0


class PostInDoubtError(RetryableStorageError):
    """:meth:`PostBox.send` could not tell whether the post landed. ``post`` is the post as it
    may exist now: under the last name tried (a name taken by another's post is left for a new
    one, so it may differ from the post given to ``send``)."""

    def __init__(self, message: str, key: str, post: Post) -> None:
        super().__init__(message, key)
        self.post = post

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.key, self.post))


class PostSender:
    """Who posts, for every actor of one runtime (process): its sender id and post counter.

    The cursor names each sender for ``SENDER_TTL`` after its last post, in every step. A
    sender per actor core put a new one into an actor's cursor each time the process evicted
    the actor and loaded it again: with more contended actors than the cache holds, an entry
    per call for an hour. One per runtime: one entry per process. Its seqs are one counter
    for all actors (``next`` on a count is atomic), so an actor sees them rise with gaps, which
    ``applied`` (a comparison) does not mind. A later core of an evicted actor posts after the
    old one's pending post, if any: the runtime remembers it (``CombiningEnv.pending_posts``),
    and the new PostBox names its next post after it (``PostBox.follow``).
    """

    __slots__ = ("_counter", "id")

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:16]
        self._counter = itertools.count()

    def next_seq(self) -> int:
        return next(self._counter)


class PostBox:
    """One actor's posting side in this process: its sender id, and the posts it has read.

    Its state lives on the IO loop (its coroutines run there).
    """

    __slots__ = (
        "_deleted",
        "_deleting",
        "_doomed",
        "_known",
        "_lag",
        "_last_ms",
        "_lock",
        "_sender",
        "_seqs",
        "_sure",
        "_unsure",
        "actor_id",
        "mail",
        "names",
        "sender",
        "signing_key",
        "store",
        "unreadable",
    )

    def __init__(
        self,
        store: ObjectStore,
        actor_id: str,
        signing_key: bytes | None,
        *,
        names: bool = False,
        sender: PostSender | None = None,
    ) -> None:
        self.store = store
        #: our small posts carry themselves in their names, sealed (``Settings.post_names``);
        #: any process reads such names, whatever its own setting
        self.names = names
        #: the store's mail key, which seals them (loaded when first needed)
        self.mail = mailkey.mail_keys(store, signing_key)
        self.actor_id = actor_id
        self.signing_key = signing_key
        #: who posts (one per runtime: see PostSender), and its seqs
        self._seqs = sender if sender is not None else PostSender()
        self.sender = self._seqs.id
        #: the time part of our newest key: never smaller than the one before, whatever the clock does
        self._last_ms = 0
        #: how far our wall clock is known to run behind the writers of steps we read (``observe``)
        self._lag = 0.0
        #: posts read from storage, by key (posts are immutable)
        self._known: dict[str, Post] = {}
        #: deletes in flight (awaited at shutdown, so that a process leaves no applied post behind)
        self._deleting: set[asyncio.Task[Any]] = set()
        #: where the store deletes many keys in one request (S3): applied posts whose delete
        #: waits for the one in flight, and the task sending them (None: none in flight)
        self._doomed: list[str] = []
        self._sender: asyncio.Task[Any] | None = None
        #: keys whose reads failed their digest or did not decode: how many times in a row,
        #: and when (monotonic) the first of them failed
        self.unreadable: dict[str, tuple[int, float, float]] = {}
        #: keys this process is deleting (None) or deleted (when it finished, monotonic): left out
        #: of listings that may predate the delete, so that a fold does not read them again
        self._deleted: dict[str, float | None] = {}
        #: keys first seen by a listing that was no single moment (``listed_at_one_moment``), and
        #: when (monotonic) that listing ended: an earlier post of the same sender may have
        #: landed behind its cursor, unseen. Sure once a listing begun after that saw it again
        self._unsure: dict[str, float] = {}
        #: listed keys known to have been there for a whole listing (or seen at one moment)
        self._sure: set[str] = set()
        self._lock = threading.Lock()

    def prepare(self, calls: tuple[PostedCall, ...]) -> Post:
        """The next post of this sender (its key and seq fixed now, before any write)."""
        return self._named(self._seqs.next_seq(), calls)

    def follow(self, post: Post) -> None:
        """Our next post sorts after ``post``, an earlier one of our sender to this actor still
        pending. (Its PostBox may be another: the actor's core was evicted and loaded again
        since. A folder applies posts in key order and takes a sender's seq below one it
        applied for stale: named before it, our next post made it be deleted unapplied.)"""
        self._last_ms = max(self._last_ms, round(post.time * 1000))

    def observe(self, written: float, age: float) -> None:
        """A step we read was written at ``written`` by its writer's wall clock, and read (or
        known the newest) ``age`` seconds ago: that clock reads at least ``written + age`` now.

        Where ours reads less, our posts are named by that time instead. A folder deletes a
        post more than ``SENDER_TTL / 2`` older than its clock unapplied (expired), and a
        process whose clock ran 30 min behind the folders' had every post deleted so, its
        calls failing with ``CallPendingError`` although they never could apply. A post dated
        later than the poster's clock is as safe as one from a clock running ahead (the
        cursor entry takes the later time), and never later than the step writer's clock."""
        seen = written + age
        if not seen < LATEST_NAMED:
            # Past what a name can spell (or not a number): no clock reads that; a malformed
            # step. Taken, it made every later post of ours fail (``int(inf)``) or wrapped
            # our names out of seq order.
            return
        self._lag = max(self._lag, seen - time.time())

    def _named(self, seq: int, calls: tuple[PostedCall, ...]) -> Post:
        now = time.time() + self._lag
        # Our posts must sort in seq order (a folder applies them in key order, and the
        # cursor passing seq s means every post of ours up to s was applied): a later
        # millisecond for each, whatever the clock does.
        self._last_ms = max(int(now * 1000), self._last_ms + 1)
        name = post_name(self._last_ms, secrets.randbits(15))
        # A small post carries itself in its name too: a folder learns it from the LIST.
        seal_key = self.mail.key
        if self.names and seal_key is not None:
            sender, signing_key = self.sender, self.signing_key
            name = inline_name(self.actor_id, name, sender, seq, calls, signing_key, seal_key) or name
        return Post(post_key(self.actor_id, name), self.sender, seq, self._last_ms / 1000, calls)

    async def send(self, post: Post) -> Post:
        """Write ``post`` (create-only; a lost response is resolved by reading the key back).
        Returns the post as written: under another name if its name was taken by another post.

        Raises :class:`PostInDoubtError` when it could not tell: the post may or may not
        exist then, under the name the error gives (the caller must treat it as written).
        """
        try:
            last: StorageError | None = None
            for attempt in range(5):
                data = encode_post(post.key, post, self.signing_key)
                try:
                    await self.store.put(post.key, data, mode="create")
                    return post
                except AlreadyExistsError:
                    try:
                        landed = await self._landed(post)
                    except StorageError as exc:
                        last = exc  # whose it is, unknown: the next attempt asks again
                    else:
                        if landed:
                            return post  # an earlier attempt landed
                        # Another post's name (or ours, applied and deleted since: then the copy
                        # written under the new name is stale by the cursor, and never applied).
                        post = self._named(post.seq, post.calls)
                        continue
                except StorageError as exc:
                    last = exc
                with contextlib.suppress(StorageError):
                    if await self._landed(post):
                        return post
                await asyncio.sleep(0.01 * 2**attempt)
            assert last is not None
            raise last
        except Exception as exc:
            # Under the name tried last: an earlier one was another's post (or ours, gone). Any
            # error (a MemoryError in the client, a defect) may have come after the post landed:
            # its caller heard it bare, as for a call not applied, and a fold applied the post.
            raise PostInDoubtError(
                f"{post.key}: the post may or may not exist: {exc}", post.key, post
            ) from exc

    def send_now(self, post: Post) -> bool:
        """The first attempt of :meth:`send` on the calling thread (only where ``store.inline``):
        True when it wrote the post; False after any error (then :meth:`send` goes on: an
        attempt that landed after all is found by its read-back)."""
        try:
            self.store.put_now(post.key, encode_post(post.key, post, self.signing_key), mode="create")
        except Exception:  # (not only a StorageError: see ``send``)
            return False
        return True

    async def _landed(self, post: Post) -> bool:
        """Whether the object at ``post.key`` is this post (not another's, nor none).

        A read that arrives damaged tells nothing: it is read again (a few times); still
        damaged, ``RetryableStorageError`` (unknown), not "not ours", on which the sender would
        write its post again under a new name: two copies of one post."""
        for attempt in range(_READ_BACKS):
            try:
                blob = await self.store.get(post.key)
            except NotFoundError:
                return False
            try:
                found = decode_post(post.key, blob.data, self.signing_key)
            except IntegrityError as exc:
                if attempt == _READ_BACKS - 1:
                    raise RetryableStorageError(
                        f"{post.key}: reading our post back arrived damaged {_READ_BACKS} times ({exc})",
                        post.key,
                    ) from exc
                await asyncio.sleep(0.01 * 2**attempt)
                continue
            return found.sender == post.sender and found.seq == post.seq
        raise AssertionError("unreachable")

    async def keys(self) -> list[str]:
        """The keys of every post waiting now, oldest first (one LIST; and one GET of the
        mail key, once per process, when a sealed name is first listed)."""
        listed_at = time.monotonic()
        keys = await self.store.list(posts_prefix(self.actor_id))
        if self._wants_key(keys):
            await self.mail.load(create=False)
        return self._listed(keys, listed_at)

    def keys_now(self) -> list[str]:
        """:meth:`keys` on the calling thread (only where ``store.inline``)."""
        listed_at = time.monotonic()
        keys = self.store.list_now(posts_prefix(self.actor_id))
        if self._wants_key(keys):
            self.mail.load_now(create=False)
        return self._listed(keys, listed_at)

    def _wants_key(self, keys: list[str]) -> bool:
        return self.mail.key is None and any(sealed(k) and k not in self._known for k in keys)

    def _listed(self, keys: list[str], listed_at: float) -> list[str]:
        present = set(keys)
        ended = time.monotonic()
        one_moment = self.store.listed_at_one_moment(posts_prefix(self.actor_id), keys)
        with self._lock:  # (deletes finish on the IO loop; a fold may list on another thread)
            for gone in [k for k in self._known if k not in present]:
                del self._known[gone]
            self._sure &= present
            self._unsure = {k: t for k, t in self._unsure.items() if k in present}
            for key in keys:
                if key in self._sure:
                    continue
                first = self._unsure.get(key)
                if one_moment or (first is not None and first <= listed_at):
                    self._unsure.pop(key, None)
                    self._sure.add(key)
                elif first is None:
                    self._unsure[key] = ended
            self.unreadable = {k: n for k, n in self.unreadable.items() if k in present}
            if self._deleted:
                # Hidden while our delete of it is in flight, or finished after this listing began;
                # a key listed after that is there (a failed delete, or a new post of the name).
                hidden = {k for k, done in self._deleted.items() if done is None or done > listed_at}
                self._deleted = {k: self._deleted[k] for k in hidden}
                keys = [k for k in keys if k not in hidden]
        # Posts are immutable: one whose name carries it is known from now on (read with no GET).
        seal_key = self.mail.key
        learned = [
            (key, post)
            for key in keys
            if key not in self._known and (post := read_name(key, self.signing_key, seal_key)) is not None
        ]
        if learned:
            with self._lock:
                for key, post in learned:
                    if key not in self._deleted:
                        self._known[key] = post
        return keys

    async def flush(self) -> None:
        """Send the deletes still waiting and wait for those in flight (at shutdown)."""
        current = asyncio.current_task()
        with self._lock:
            doomed, self._doomed = self._doomed, []
        if doomed:
            await self._delete(doomed)
        await asyncio.gather(*(t for t in list(self._deleting) if t is not current), return_exceptions=True)

    def unsure(self, key: str) -> bool:
        """Whether the post at ``key`` was first seen by a listing that was no single moment and
        not since by a later one: its sender's earlier posts may exist unseen (it waits, and
        its sender's later posts behind it, for the next listing)."""
        return key in self._unsure

    def cached(self, key: str) -> Post | None:
        """The post at ``key`` if this process read it already."""
        return self._known.get(key)

    def forget(self, keys: list[str]) -> None:
        """Read the posts at ``keys`` again when next asked (what is there may be another post)."""
        with self._lock:
            for key in keys:
                self._known.pop(key, None)

    async def read(self, keys: list[str]) -> list[Post]:
        """The posts at ``keys`` still there, in key order (a GET per post not read before)."""
        gate = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def read(key: str) -> None:
            async with gate:
                try:
                    blob = await self.store.get(key)
                except NotFoundError:
                    return  # applied and deleted meanwhile
                except IntegrityError:
                    self._damaged(key)  # cut short of the store's header (a torn local write)
                    return
                self._learn(key, blob.data)

        await asyncio.gather(*(read(k) for k in keys if k not in self._known and not self.skipped(k)))
        return [self._known[k] for k in keys if k in self._known]

    def read_now(self, keys: list[str]) -> list[Post]:
        """:meth:`read` on the calling thread, one GET after the other (only where ``store.inline``)."""
        for key in keys:
            if key not in self._known and not self.skipped(key):
                try:
                    blob = self.store.get_now(key)
                except NotFoundError:
                    continue  # applied and deleted meanwhile
                except IntegrityError:
                    self._damaged(key)  # cut short of the store's header (a torn local write)
                    continue
                self._learn(key, blob.data)
        return [self._known[k] for k in keys if k in self._known]

    def _learn(self, key: str, data: bytes) -> None:
        try:
            post = decode_post(key, data, self.signing_key)
        except IntegrityError:
            self._damaged(key)
            return
        with self._lock:
            self._known[key] = post
            self.unreadable.pop(key, None)

    def _damaged(self, key: str) -> None:
        """A read of ``key`` found it damaged: not applied while so; the fold stops at it for
        a while, then skips it."""
        now = time.monotonic()
        with self._lock:
            failed, since, _ = self.unreadable.get(key, (0, now, now))
            self.unreadable[key] = (failed + 1, since, now)

    def waits_for(self, key: str) -> bool:
        """Whether a fold stops at ``key``: its reads failed, but not yet often enough and
        for long enough to take it for damaged at rest or forged (then it is skipped). Both:
        at 30 % damaged reads in transit, three in a row happen to about one post in 37, and
        a post skipped so waited while its sender's later posts passed it."""
        with self._lock:
            failed, since, _ = self.unreadable.get(key, (0, 0.0, 0.0))
        return failed > 0 and (failed < DAMAGED_READS or time.monotonic() - since < DAMAGED_SECONDS)

    def skipped(self, key: str) -> bool:
        """Whether ``key`` is skipped now (damaged at rest or forged, see :meth:`waits_for`):
        read again only ``DAMAGED_SECONDS`` after its last failed read, not by every fold,
        and no work for an idle holder meanwhile. A clean read then applies it (a post
        damaged in transit every time until then); it is deleted unread once expired."""
        with self._lock:
            failed, since, last = self.unreadable.get(key, (0, 0.0, 0.0))
        now = time.monotonic()
        return failed >= DAMAGED_READS and now - since >= DAMAGED_SECONDS and now - last < DAMAGED_SECONDS

    def delete(self, keys: list[str]) -> Coroutine[Any, Any, None]:
        """Delete posts (applied, or found stale); a failure leaves them for the next fold.

        The keys are left out of listings from now on (this call, on the caller's thread),
        while the deletes run where the returned coroutine is awaited (in the background).
        """
        with self._lock:
            for key in keys:
                self._known.pop(key, None)
                self._deleted[key] = None
            self._doomed.extend(keys)
        return self._delete_soon()

    async def _delete_soon(self) -> None:
        """A fold's applied posts are deleted at once, and the folds that end while that request
        is in flight share the next one (where one request deletes many keys, S3; elsewhere one
        ``delete_many`` round of single-key requests is in flight per folder). (Not later:
        every listing of the mailbox returns the applied posts still there, which the server
        sends and the folder parses on its critical path: a LIST of 30 keys took twice as long
        as one of 5 on moto.)"""
        with self._lock:
            if self._sender is not None:
                return  # the task sending deletes sends these next
            sender = self._sender = asyncio.current_task()
        try:
            while True:
                with self._lock:
                    # At most one request's worth where a request deletes many (S3): more (queued
                    # while a request hung) would go as several requests at once, just as the
                    # endpoint recovers. Where each key is its own request (GCS, local), one
                    # ``delete_many`` round: every fold's own would put no bound on the requests
                    # in flight, each holding a connection the commits need.
                    size = self.store.delete_batch
                    if size <= 1:
                        size = max(1, self.store.delete_parallel)
                    doomed, self._doomed = self._doomed[:size], self._doomed[size:]
                    if not doomed:
                        self._sender = None
                        return
                await self._delete(doomed)
        finally:
            with self._lock:
                if self._sender is sender:
                    self._sender = None  # (cancelled: flush sends what is left)

    async def _delete(self, keys: list[str]) -> None:
        task = asyncio.current_task()
        if task is not None and task not in self._deleting:
            # Once per task: the sender of ``_delete_soon`` sends request after request while
            # folds keep ending, and a callback per request grew its list for as long.
            self._deleting.add(task)
            task.add_done_callback(self._deleting.discard)

        try:
            # One request for all of them where the store has a batch delete (S3). A failure
            # may leave some in place: the next fold lists them and deletes them as stale.
            with contextlib.suppress(StorageError):
                await self.store.delete_many(keys)
        finally:
            done = time.monotonic()
            with self._lock:
                for key in keys:
                    if key in self._deleted:
                        self._deleted[key] = done
