"""The folder's side of contention combining: whether a batch combines, the advisory folder
lease (``vactor_cloud.lease``), and the fold of the posted calls (``vactor_cloud.posting``)
into the lease holder's next step (docs/protocol.md, "Posting and folding").

Under contention one process at a time holds the folder lease: it lists the actor's mail,
applies every pending post in post order (its own calls among them) and commits them in one
step that advances the post cursor. While this process's callers are quiet, a pool thread
keeps folding for the others (``ActorCore._serve``, a mode of the core's drain) until the
lease is idle and given up, or until the cache evicts the core (the lease is given up then too:
the others' posters take it over, so that the actor's state is not kept outside the cache).

:class:`Folder` is a part of :class:`~vactor_cloud.core.ActorCore` (a mixin, over the
poster's side :class:`~vactor_cloud.poster.Poster`: it shares the core's commit loop and
its cache of the newest step); it owns the fields in its ``__slots__``.
What it needs of the core is declared at the top of the class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeGuard

from vactor_cloud import counters
from vactor_cloud.batch import CallOptions, PendingCall
from vactor_cloud.byvalue import Frozen
from vactor_cloud.dedup import safe_repr
from vactor_cloud.errors import IntegrityError, StorageError
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.log_records import StepRecord, unrecordable
from vactor_cloud.post_cursor import SENDER_TTL, applied, floor_of
from vactor_cloud.post_objects import Post, bare, identity
from vactor_cloud.poster import Posted, Poster
from vactor_cloud.posting import PostBox

__all__ = ["Folder", "damaged_pause", "doubling_pause", "gives_fold_work"]

logger = logging.getLogger("vactor_cloud")


class Folder(Poster):
    """An actor core as the folder: it decides whether a batch combines (posts, or folds as the
    lease holder) or races; takes, renews and releases the folder lease; gathers the pending
    posts and folds them into its commit (``ActorCore._commit``, and ``ActorCore._serve`` for
    the others while this process's callers are quiet)."""

    # The core's commit loop writes some of them too (the streak, _foreign_at): kept here, where
    # they are read.
    __slots__ = (
        "_folded_wall",
        "_foreign_at",
        "_gather",
        "_held_until",
        "_last_commit_at",
        "_lease",
        "_lease_read_at",
        "_lease_turn",
        "_leases",
        "_releasing",
        "_renewal",
        "_renewing",
        "_streak",
        "_streak_pace",
        "_unreleased",
    )

    if TYPE_CHECKING:
        # Of the actor core (vactor_cloud.core.ActorCore): how long its puts take.
        _put_seconds: float

    def __init__(self) -> None:
        super().__init__()
        #: the advisory folder lease (vactor_cloud.lease): the newest state of it we know (ours or
        #: another process's), until when (monotonic) we hold it, when we last folded another's post
        self._leases: LeaseStore | None = None
        self._lease: Lease | None = None
        #: when (monotonic) we last read another process's valid lease
        self._lease_read_at = -math.inf
        #: commits in a row with no long break between two (a hot writer), their average time
        #: apart (moving), and when the last was
        self._streak = 0
        self._streak_pace = math.inf
        self._last_commit_at = -math.inf
        self._held_until = -math.inf
        self._foreign_at = -math.inf
        self._renewing = False
        #: held while a give-up (a fold thread) or a renewal landing (the IO loop) moves the
        #: lease's state (``_held_until``, ``_renewing``): the one before the other, never between
        self._lease_turn = threading.Lock()
        #: our release of the folder lease, and our renewal of it, while they run in the background
        self._releasing: Future[None] | None = None
        self._renewal: Future[None] | None = None
        #: a lease of ours given up whose release has not landed (not run yet, refused because
        #: shutdown began, failed, or waiting for a renewal in flight): shutdown releases it
        self._unreleased: Lease | None = None
        #: the lease holder's group commit: the wall time of its last fold that applied another
        #: process's post, and how long after such a fold the posts of the next one come in
        #: (moving average): the next fold lists no sooner than that, so that it gathers them
        self._folded_wall = -math.inf
        self._gather = 0.0

    def _contended(self) -> bool:
        """Whether this batch combines (posts, or folds as the lease holder) instead of racing.

        Cheap and local: an actor that never lost a race here answers from memory.
        """
        now = time.monotonic()
        window = self.env.settings.combine_window
        if self._outstanding is not None or now - max(self._posted_at, self._served_at) < window:
            return True
        if self._holding():
            return True
        lease = self._lease
        if lease is None or lease.expires == 0:
            return self._hot_writer_sees_a_folder()
        if lease.holder == self._posts().sender:
            # Ours, though our margin ran out (a renewal failed or came late): take it again
            # rather than race the posters waiting for our folds. Not once we gave it up as
            # idle (held_until = -inf): its release may still be in flight, and this commit
            # races (one PUT), as an uncontended one does.
            return lease.valid() and self._held_until != -math.inf
        if not lease.valid():
            # We saw another process hold the lease: see whether it still does (one GET per
            # renewal of it, about every lease_seconds / 2; none once it was given up).
            try:
                lease = self._lease = self.env.run(self._lease_store().read())
            except (StorageError, IntegrityError):
                self._lease = None
                return False
        return lease.valid() and lease.holder != self._posts().sender

    def _hot_writer_sees_a_folder(self) -> bool:
        """A writer that keeps winning never loses a race, so it would never learn that others
        post and wait while their folder's puts lose to it. Committing back to back for
        ``_STREAK_COMMITS`` commits (on average within ``_streak_gap`` of each other: one
        longer pause, a loaded host descheduling the writer between two calls, does not start
        the count over), it reads the lease once per ``lease_seconds / 4`` (or 16 puts' time,
        if longer), in the background: held by another process = its next commit is contended
        (posts). An uncontended writer pays one GET per such interval of continuous commits,
        never one per commit, and never on a commit's path."""
        gap = self._streak_gap()
        if (
            self._streak < _STREAK_COMMITS
            or self._streak_pace > gap
            or time.monotonic() - self._last_commit_at > _STREAK_BREAK * gap
        ):
            return False
        now = time.monotonic()
        # At most once per lease_seconds / 4, and per 16 puts' time: on a slow store a GET per
        # 0.5 s would be one request more per few commits.
        every = max(0.25 * self.env.settings.lease_seconds, _HOT_READ_PUTS * self._put_seconds)
        if now - self._lease_read_at < every:
            return False
        self._lease_read_at = now
        sender = self._posts().sender

        async def look() -> None:
            # In the background, off this commit's path: the next commit sees what it found.
            try:
                lease = await self._lease_store().read()
            except (StorageError, IntegrityError):
                return
            if lease.valid() and lease.holder != sender:
                self._lease = lease
                self._lease_read_at = time.monotonic()

        self.env.background(look())
        return False

    def _streak_gap(self) -> float:
        """Commits closer than this are back to back: ``_STREAK_GAP``, or a few of our puts' time
        when puts are slow (an overloaded machine or store, where a writer that keeps winning
        would otherwise never count as hot, and a folder's commits lose to it every time)."""
        return max(_STREAK_GAP, _STREAK_PUTS * self._put_seconds)

    def _count_commit(self, now: float) -> None:
        """(After each commit) The hot writer's streak: a break longer than ``_STREAK_BREAK``
        gaps starts it over; its pace is the moving average of the times between commits."""
        gap = self._streak_gap()
        since = now - self._last_commit_at
        if since > _STREAK_BREAK * gap:
            self._streak, self._streak_pace = 1, gap
        else:
            self._streak = min(self._streak + 1, _STREAK_COMMITS)
            self._streak_pace = 0.75 * self._streak_pace + 0.25 * since
        self._last_commit_at = now

    def _other_folds(self) -> bool:
        """Whether another process folds: its fold applied a post of ours, or it held the folder
        lease when we read it, lately (a quarter of ``lease_seconds``): post without reading
        the lease. A poster whose folder went away finds out in its wait (no step for a
        while: it reads the lease and may take it)."""
        if self._served_lately():
            return True
        lease = self._lease
        return (
            lease is not None
            and lease.valid()
            and lease.holder != self._posts().sender
            and time.monotonic() - self._lease_read_at < 0.25 * self.env.settings.lease_seconds
        )

    def _lease_store(self) -> LeaseStore:
        if self._leases is None:
            self._leases = LeaseStore(self.env.store, self.actor_id, self.env.settings.signing_key)
        return self._leases

    def _holding(self, *, mid_fold: bool = False) -> bool:
        """Whether we hold the folder lease with time to spare; gives it up once idle.

        Idle: no other process's post folded for ``combine_window`` (the lease is released
        in the background, so that nobody waits for it to expire). Never ``mid_fold``: a
        commit folding with the lease is not idle, however long taking the lease, a lost put
        or a reload took (on a loaded store that is longer than ``combine_window``, and a
        holder gave the lease up before its first fold, only to take it again).
        """
        now = time.monotonic()
        settings = self.env.settings
        held_until = self._held_until
        if now >= held_until - 0.25 * settings.lease_seconds:
            return False
        if not mid_fold and now - self._foreign_at > settings.combine_window:
            self._give_up_lease(held_until)  # (not a take or renewal since: see there)
            return False
        return True

    def _lease_for_fold(self) -> bool:
        """True: we hold the folder lease (taken now if it was free) and fold; False: another
        process holds it, so post and wait. One GET of the lease, and a conditional PUT to take it.

        A storage error answers False: the poster's wait looks again later.
        """
        if self._holding():
            return True
        sender = self._posts().sender
        leases = self._lease_store()
        try:
            seen = self.env.run(leases.read())
            if seen.valid() and seen.holder != sender:
                self._lease = seen
                self._lease_read_at = time.monotonic()
                return False
            started = time.monotonic()
            step = self.record.step if self.record is not None else -1
            mine = self.env.run(leases.write(seen, sender, self.env.settings.lease_seconds, step))
            if mine is None:  # another process took it first
                self._lease = self.env.run(leases.read())
                self._lease_read_at = time.monotonic()
                return False
        except (StorageError, IntegrityError) as exc:
            logger.debug("actor %r: the folder lease could not be read or taken: %s", self.actor_id, exc)
            self._lease = None
            return False
        with self._lease_turn:  # (a give-up judged on the end before it leaves this take be)
            self._lease = mine
            self._unreleased = None  # (replaced by this take: its release would be refused)
            self._held_until = started + self.env.settings.lease_seconds
        self._foreign_at = started
        counters.count("leases_taken")
        return True

    def _renew_lease(self, step: int) -> None:
        """After a fold: extend our lease once half of it has run out (in the background)."""
        seconds = self.env.settings.lease_seconds
        if self._renewing or time.monotonic() < self._held_until - 0.5 * seconds:
            return
        lease = self._lease
        if lease is None or self._held_until == -math.inf:
            return
        self._renewing = True

        async def renew() -> None:
            release: Lease | None = None
            try:
                started = time.monotonic()
                mine = await self._lease_store().write(lease, lease.holder, seconds, step)
                # (A give-up between the check and the new end was undone by it: held again,
                # nobody folding, never released.)
                # (A lease no longer ``_lease`` was replaced by a take of ours since, given up
                # and taken again on a fold thread: this landing speaks not for that take. The
                # lease it wrote, read back meanwhile by a take that lost to it, is its own.)
                with self._lease_turn:
                    current = self._lease is lease or (mine is not None and self._lease == mine)
                    if mine is None:  # taken over (it had expired, or a clock disagrees): fold no more
                        if current:
                            self._held_until = -math.inf
                            self._lease = None
                        if self._unreleased is lease:
                            self._unreleased = None  # (nothing of ours left to release)
                    elif self._held_until != -math.inf:
                        if current:
                            self._lease = mine
                            self._held_until = started + seconds
                    else:
                        # Given up meanwhile (idle, or it neared its end): nobody folds with the
                        # lease we just extended, so release it rather than leave it to posters.
                        release = mine
                        if current:
                            self._lease = mine
                    self._renewing = False
            except (StorageError, IntegrityError) as exc:
                logger.debug("actor %r: renewing the folder lease failed: %s", self.actor_id, exc)
                with self._lease_turn:
                    if self._held_until == -math.inf and self._lease is lease:
                        # Given up meanwhile, its release left to us: release what we renewed
                        # from (by if-match: if the renewal landed all the same, it is refused).
                        release = lease
                    self._renewing = False
            finally:
                self._renewing = False
            if release is not None:
                self._start_release(release)

        self._renewal = self.env.background(renew())
        if self._renewal.done():  # refused (shutdown began): it never runs
            self._renewing = False

    async def _release_lease(self, lease: Lease | None) -> None:
        """Give the folder lease ``lease`` up (expires = 0), so that contended processes need
        not wait for it to expire. Only if the stored lease is still that one (if-match).

        ``lease`` is the one given up, taken when the release was started: the process may
        take the lease again before this begins (a loaded host, an eager store), and read
        here, that newer lease was released and forgotten. A release that fails stays for
        the shutdown to try again (``_unreleased``)."""
        if not self._ours(lease):
            return
        step = self.record.step if self.record is not None else -1
        try:
            released = await self._lease_store().write(lease, lease.holder, 0.0, step)
        except (StorageError, IntegrityError) as exc:
            logger.debug("actor %r: releasing the folder lease failed: %s", self.actor_id, exc)
            released = None
        else:
            # Released, or written since (by another process, or a later take of ours): done.
            if self._unreleased is lease:
                self._unreleased = None
        if self._lease is lease:  # (not if we took the lease again meanwhile)
            self._lease = released

    def _ours(self, lease: Lease | None) -> TypeGuard[Lease]:
        return lease is not None and self._postbox is not None and lease.holder == self._postbox.sender

    def _give_up_lease(self, judged: float | None = None) -> None:
        """Fold no more with the lease, and release it in the background (unless a renewal is
        in flight: landing, it releases what it renewed). Until the release lands, the lease is
        ``_unreleased``: a shutdown that refuses the background release (it began just now)
        releases it itself. ``judged``: the lease's end the give-up was decided on; if the
        lease was taken again or renewed since (another thread), it is kept."""
        with self._lease_turn:
            if judged is not None and self._held_until != judged:
                return
            lease = self._lease
            # (Recorded first: a shutdown on the IO loop that sees the lease given up finds it here.)
            if self._ours(lease):
                self._unreleased = lease
            self._held_until = -math.inf
            if self._renewing:
                return
        self._start_release(lease)

    def _start_release(self, lease: Lease | None) -> None:
        """Release the folder lease ``lease`` in the background; shutdown waits for it. (Named,
        not read from ``_lease`` here: a take of ours since, on a fold thread, is not released.)"""
        if self._ours(lease):
            self._unreleased = lease
        self._releasing = self.env.background(self._release_lease(lease))

    @property
    def leased(self) -> bool:
        """Whether this process posted or folded for this actor (it has work to finish at shutdown)."""
        return self._postbox is not None

    async def shutdown_lease(self) -> None:
        """At shutdown: release the folder lease if we hold it, or if we gave it up and its
        release has not landed (the shutdown refused it, having begun just before the give-up;
        it failed; a renewal in flight was to release it), once what runs of the renewal and
        of a release has ended. By if-match on the version of ours given up: a lease written
        since, by another process or by a later take of ours, is left as it is."""
        if self._held_until != -math.inf:
            self._held_until = -math.inf
            if self._ours(self._lease):
                self._unreleased = self._lease
        for running in (self._renewal, self._releasing):
            if running is not None and not running.done():
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(running)
        self._renewal = self._releasing = None
        unreleased, self._unreleased = self._unreleased, None
        if unreleased is not None:
            await self._release_lease(unreleased)

    async def flush_deletes(self) -> None:
        """At shutdown, last: finish deleting applied posts (``PostBox.flush``)."""
        if self._postbox is not None:
            await self._postbox.flush()

    def _release_nearly_lapsed_lease(self) -> None:
        """When the holder stops folding because its lease nears its end (renewed by folds
        only: nothing came for a while, though not for ``combine_window``), release the lease
        rather than let it lapse: posters would read it as held and wait for it to expire.
        Not while a renewal is in flight (it extends the lease), nor once released."""
        held_until = self._held_until
        if held_until == -math.inf:
            return
        if time.monotonic() >= held_until - 0.25 * self.env.settings.lease_seconds:
            # (Judged on ``held_until``: a drainer that came meanwhile may have taken it again.)
            self._give_up_lease(held_until)

    def _gather_posts(self, wake: threading.Event | None = None) -> None:
        """Group commit: a fold lists the posts no sooner than the other processes usually post
        after our previous fold (they learn their outcomes from it, then post their next batch),
        so that one step applies all of them: fewer steps, listings and reads per call. At most
        ``_GATHER_PUTS`` puts' time after that fold (``_GATHER_MAX`` seconds)."""
        if self._gather <= 0.0:
            return
        wait = self._folded_wall + self._gather - time.time()
        if wait > 0.0:
            wait = min(wait, self._gather_limit())
            if wake is None:
                time.sleep(wait)
            else:
                wake.wait(wait)

    def _gather_limit(self) -> float:
        return min(_GATHER_MAX, _GATHER_PUTS * max(self._put_seconds, 0.0005))

    def _learn_gather(self, foreign: list[Post], now: float) -> None:
        """After a fold that applied ``foreign`` posts (at wall time ``now``): how long after
        our previous fold the last of them was written, plus a put's time to land."""
        previous, self._folded_wall = self._folded_wall, now
        if now - previous > 1.0:
            return  # no fold of ours just before: nothing to measure from
        lags = [p.time - previous for p in foreign if p.time > previous]
        if not lags:
            return
        lag = min(self._gather_limit(), max(lags) + self._put_seconds)
        self._gather = 0.7 * self._gather + 0.3 * lag

    def _post_keys(self) -> list[str]:
        box = self._posts()
        return box.keys_now() if self.log.store.inline else self.env.run(box.keys())

    def _keys_with_work(self) -> list[str]:
        """One LIST of the inbox: its keys if a post there gives a fold work
        (``gives_fold_work``), else none."""
        keys = self._post_keys()
        return keys if any(gives_fold_work(self._posts(), k) for k in keys) else []

    def _deleted_as_applied(self, keys: list[str]) -> bool:
        """Whether every post at ``keys`` (a listing) was applied by the newest step (its folder
        died between that step's put and the posts' delete): then they are deleted, as a fold
        deletes the stale posts it lists, with no folder lease taken and no step written.
        Costs the newest step's probe (one GET when nothing changed) and the reads a fold of
        them would make anyway (cached for it). Safe without the lease: a cursor entry never
        moves back, so every later step shows these posts applied too (docs/protocol.md, The
        post cursor). Not for an expired post (its expiry is told by this process's clock)
        nor one that is not a post: those are the lease holder's fold's to delete."""
        box = self._posts()
        if not all(gives_fold_work(box, key) for key in keys):
            return False
        newest = self.env.run(self.revalidate())
        _, _, stale = self._fold_posts(None, [], newest, keys)
        if sorted(stale) != sorted(keys):
            return False  # a post to fold (or one unread, damaged, gone): the lease holder's
        self.env.background(box.delete(stale))
        return True

    def _read_posts(self, keys: list[str]) -> list[Post]:
        box = self._posts()
        return box.read_now(keys) if self.log.store.inline else self.env.run(box.read(keys))

    def _fold_posts(
        self, posted: Posted | None, batch: list[PendingCall], base: StepRecord, keys: list[str]
    ) -> tuple[list[PendingCall], list[Post], list[str]]:
        """The calls of every pending post (ours as our own calls), in post order; and stale keys.

        ``posted``: our own post, if ``batch`` was posted; else ``batch`` (never posted:
        nothing of ours is pending) goes last, after the posts.

        A post the cursor has passed (its folder died before deleting it) or
        too old to apply is stale: told from its key alone, without reading it.
        """
        now = time.time()
        max_batch = self.env.settings.max_batch
        calls: list[PendingCall] = []
        folded: list[Post] = []
        stale: list[str] = []
        #: the object at our post's key may be another's post: read it like theirs
        doubt = posted is not None and posted.doubt
        if posted is None:
            # Room for our own calls, after the posts.
            max_batch = max(1, max_batch - len(batch))
            own = Post("", "", -1, 0.0, ())
        else:
            own = posted.post
        wanted: list[str] = []
        #: posts dated at or before it may be applied ones whose sender left the cursor
        floor = floor_of(base.extra)
        for key in keys:
            written = identity(key)
            if written is None or now - written > SENDER_TTL / 2 or written <= floor:
                stale.append(key)  # not a post, or expired: deleted unread
            else:
                wanted.append(key)
        others = [k for k in wanted if k != own.key or doubt]
        box = self._posts()
        cached = [k for k in others if bare(k) and box.cached(k) is not None]
        read = {p.key: p for p in self._read_posts(others)} if others else {}
        # A bare name does not carry its post: after the post we read there was applied and
        # deleted, another sender's post may have drawn the name (same millisecond and random
        # part, clocks apart). One read before, now applied by the cursor, is read again rather
        # than deleted unread (rare: a post left behind, or one another folder applied first).
        again = [k for k in cached if k in read and applied(base.extra, read[k].sender, read[k].seq)]
        if again:
            box.forget(again)
            for key in again:
                del read[key]
            read.update((p.key, p) for p in self._read_posts(again))
        ours_waiting = False
        #: per sender, the newest seq this fold applies: a second copy of a post (its sender
        #: wrote it again under a new name, unsure whether the first landed) is stale like an
        #: applied one, and a copy of our own post stands for it
        folding: dict[str, int] = {}
        own_in = False
        #: the fold ended before the end of the listing (a damaged post, a full batch): an
        #: earlier post of ours may be among the posts it did not reach
        stopped = False
        #: senders with a post the listing may have seen without an earlier one of theirs
        #: (``PostBox.unsure``): it and their later posts wait for the next listing
        waiting: set[str] = set()
        for key in wanted:
            mine = key == own.key and not doubt
            post = None if mine else read.get(key)
            copy = post is not None and (post.sender, post.seq) == (own.sender, own.seq)
            if (mine or copy) and own.sender in waiting:
                ours_waiting = True  # behind an earlier post of ours not sure yet: next fold
                continue
            if mine or copy:
                if copy and key != own.key:
                    stale.append(key)  # a copy of our post: our calls go in once, as our post
                if not own_in:
                    own_in = True
                    calls.extend(batch)
                    folded.append(own)
                    folding[own.sender] = max(own.seq, folding.get(own.sender, -1))
                continue
            if post is None:
                if self._posts().waits_for(key):
                    # Damaged (in transit, maybe): whose it is is unknown, and a sender's later
                    # posts must not pass it. Nothing after it in this fold. (Still damaged after
                    # a few folds and seconds: forged or corrupt at rest, never applied, skipped.)
                    stopped = True
                    break
                continue  # deleted meanwhile: applied after our base (this commit loses anyway)
            if applied(base.extra, post.sender, post.seq) or post.seq <= folding.get(post.sender, -1):
                stale.append(key)  # applied; its folder died (or failed) before deleting it
                continue
            if post.sender in waiting or box.unsure(key):
                waiting.add(post.sender)
                if post.sender == own.sender:
                    ours_waiting = True
                continue
            if post.sender == own.sender:
                ours_waiting = True  # an earlier post of ours, still pending: it goes first
            if len(calls) + len(post.calls) > max_batch and calls:
                stopped = True
                break
            folded.append(post)
            folding[post.sender] = max(post.seq, folding.get(post.sender, -1))
            calls.extend(
                PendingCall(
                    pc.method,
                    (),
                    {},
                    False,
                    Future(),
                    pc.call_id,
                    idempotency_key=pc.idempotency_key,
                    frozen=Frozen(None, pc.arguments),
                    options=CallOptions(
                        idempotency_key=pc.idempotency_key,
                        name=_recordable_name(pc.name),
                        metadata=_recordable_metadata(pc.metadata),
                        max_retries=pc.max_retries,
                    ),
                    posted=(post.key, post.sender, post.seq),
                    for_class=pc.for_class,
                )
                for pc in post.calls
            )
        if posted is None:
            calls.extend(batch)
            return calls, folded, stale
        if not own_in and (own.key not in wanted or doubt) and not ours_waiting and not stopped:
            # Not listed (yet, or its write failed unseen): our calls go in anyway; once the
            # cursor passes our seq the post object, if any, is stale and deleted unapplied.
            # Not when the fold stopped early: an earlier post of ours it did not reach goes
            # first (passing it would apply our calls out of order, and leave it stale).
            calls.extend(batch)
            folded.append(own)
        return calls, folded, stale


def gives_fold_work(box: PostBox, key: str) -> bool:
    """Whether the post at ``key`` gives a fold work (a post's key, not expired, not skipped as
    damaged just now): it waits for one, or it was applied and left behind, and the fold
    deletes it.

    (A post known applied counts as work: a post carried by its name is known applied from the
    listing alone, without a fold having read and deleted it, and counted as no work, one left
    behind would stay until the next fold with calls.)"""
    written = identity(key)
    return written is not None and time.time() - written <= SENDER_TTL / 2 and not box.skipped(key)


def _recordable_name(name: str | None) -> str | None:
    """A posted call's ``name`` as its step can record it (its repr if not UTF-8: a poster
    that did not check it must not fail every fold that includes its post)."""
    return name if name is None or unrecordable(name, None) is None else safe_repr(name)[:200]


def _recordable_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """A posted call's ``metadata`` as its step can record it (a stand-in naming its repr if
    it is not JSON: see ``_recordable_name``)."""
    if metadata is None or unrecordable(None, metadata) is None:
        return metadata
    return {"unrecordable_metadata": safe_repr(metadata)[:200]}


def doubling_pause(attempt: int, longest: float) -> float:
    """The pause before retry ``attempt`` (1, 2, ...): 10 ms, doubling to ``longest`` seconds,
    jittered (0.5 to 1.5 times that)."""
    return float(min(longest, 0.01 * 2 ** min(attempt - 1, 10)) * (0.5 + random.random()))


def damaged_pause(attempt: int) -> float:
    """Before reading a damaged post again: 10 ms, doubling to 100 ms (jittered). A post damaged
    in transit reads fine at once; one damaged at rest is read about twenty times over
    ``posting.DAMAGED_SECONDS`` before it is skipped, not a LIST and a GET every few ms."""
    return doubling_pause(attempt, 0.1)


#: a hot writer: this many commits in a row, on average within _streak_gap() of each other
#: (_STREAK_GAP seconds, or _STREAK_PUTS puts' time), with no break of _STREAK_BREAK gaps
_STREAK_COMMITS = 8
_STREAK_BREAK = 4
#: a fold waits for the posts of the next round at most this many puts' time, and seconds
_GATHER_PUTS = 3
_GATHER_MAX = 0.05
_STREAK_GAP = 0.1
_STREAK_PUTS = 4
#: a hot writer reads the lease no more often than once per this many of its puts' time
_HOT_READ_PUTS = 16
