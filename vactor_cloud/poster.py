"""The poster's side of contention combining: an actor's calls posted to its mail, and the wait
for the fold that applies them (``vactor_cloud.posting``;
docs/protocol.md, "Posting and folding").

A process that another one folds for (it holds the folder lease, ``vactor_cloud.folding``)
writes each batch as one post, then reads the steps that follow until one applies it (the
post cursor says so), and hands each caller the outcome that step records. A caller that
stops waiting gets ``CallPendingError``; ``call_outcome`` tells later whether the call was
applied (at most once), and its result (of a call another process posted, once the newest
steps do not hold it, the steps committed since and the answer are
``vactor_cloud.outcome_elsewhere``'s).

:class:`Poster` is a part of :class:`~vactor_cloud.core.ActorCore` (a mixin: it shares the
core's cache of the newest step and its commit loop); it owns the fields in its
``__slots__``. What it needs of the core is declared at the top of the class.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from vactor_cloud import _sync, counters
from vactor_cloud.batch import PendingCall, fail_calls
from vactor_cloud.class_tag import tag_of
from vactor_cloud.dedup import Outcome
from vactor_cloud.definition import ActorDefinition
from vactor_cloud.deletion import is_deleted
from vactor_cloud.errors import (
    CallNotFoundError,
    CallPendingError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    FormatVersionError,
    IntegrityError,
    RetryableStorageError,
    RuntimeShutdownError,
    StorageError,
    StorageTimeoutError,
)
from vactor_cloud.incarnation import born_of
from vactor_cloud.keys import posts_prefix
from vactor_cloud.lease import Lease
from vactor_cloud.log import ActorLog, StepRecord, retry_pause
from vactor_cloud.outcome_elsewhere import InboxRead, OutcomeElsewhere
from vactor_cloud.post_cursor import applied, cannot_tell, cursor_of, floor_of
from vactor_cloud.post_objects import Post, PostedCall
from vactor_cloud.posting import PostBox, PostInDoubtError, PostSender
from vactor_cloud.settings import Settings
from vactor_cloud.step_outcomes import decode_outcomes
from vactor_cloud.storage import ObjectStore
from vactor_cloud.timers import armed_unindexed, write_entries

__all__ = ["CombiningEnv", "Posted", "Poster"]

logger = logging.getLogger("vactor_cloud")

T = TypeVar("T")


class CombiningEnv(Protocol):
    """What contention combining needs from the runtime: its store and settings, the IO loop, the pool."""

    store: ObjectStore
    settings: Settings
    #: shutdown began: waits end, no commit attempt starts
    closed: bool
    #: shutdown finished waiting: no storage request may be made any more
    stopped: bool
    #: who posts, for every actor of this runtime (one sender in each cursor, evictions or not)
    post_sender: PostSender
    #: by actor id, our newest post not yet known applied (``Poster._outstanding``)
    pending_posts: dict[str, Posted]

    def run(self, coro: Coroutine[Any, Any, T], *, hint: str = "") -> T:
        """Run ``coro`` on the IO loop and wait, at most ``settings.deadline`` (then
        ``StorageTimeoutError``, ending with ``hint``)."""
        ...

    def shutdown_error(self) -> RuntimeShutdownError:
        """What a call gets that shutdown stopped before it started."""
        ...

    def step_put_refused_error(self) -> RuntimeShutdownError:
        """What a call gets whose body ran and whose step put shutdown refused."""
        ...

    def spawn(
        self, fn: Callable[[], None], on_shutdown: Callable[[BaseException], None] | None = None
    ) -> None:
        """Run ``fn`` on a pool thread (``on_shutdown``: called instead if it never starts)."""
        ...

    def background(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the IO loop without waiting for it (cleanup; failures are its own)."""
        ...

    def waiting_for_others(self) -> contextlib.AbstractContextManager[None]:
        """Around a wait for another process's fold: a pool thread waiting so does not count
        against ``max_workers`` (the pool runs the work queued behind it meanwhile)."""
        ...


class Poster(OutcomeElsewhere):
    """An actor core as a poster: post a batch, wait for the fold that applies it, deliver
    its outcomes; ``call_outcome`` for a caller that stopped waiting."""

    # The core's commit loop writes some of them too (_outstanding, _posted_at, _seen_at): kept
    # here, where they are read.
    __slots__ = (
        "_cycle",
        "_fold_after",
        "_postbox",
        "_posted_at",
        "_seen_at",
        "_served_at",
    )

    if TYPE_CHECKING:
        # Of the actor core (vactor_cloud.core.ActorCore): its cache of the newest step, its
        # commit loop; of the folder's side (vactor_cloud.folding.Folder): the lease.
        env: CombiningEnv
        actor_id: str
        log: ActorLog
        definition: ActorDefinition | None
        record: StepRecord | None
        validated_at: float
        _lease: Lease | None

        async def revalidate(self) -> StepRecord: ...
        def _accept(self, record: StepRecord, validated_at: float, instance: Any = None) -> None: ...
        def _distrust(self) -> None: ...
        def _commit(self, batch: list[PendingCall], keys: list[str] | None = None) -> None: ...
        def _lease_for_fold(self) -> bool: ...
        def _contended(self) -> bool: ...
        def _fold_given_up_posts_soon(self) -> None: ...

    def __init__(self) -> None:
        #: when this process last posted a batch for lost races: contended until combine_window later
        self._posted_at = -math.inf
        #: contention combining (vactor_cloud.posting): created on the first post
        self._postbox: PostBox | None = None
        #: seconds between the steps a poster sees committed (moving average): how often it polls
        self._cycle = 0.005
        #: seconds from a post of ours to the holder's record of the step that applied it (moving
        #: average, wall clocks): a poster's first look comes about then, if sooner than a cycle
        self._fold_after = 0.005
        #: when (monotonic) this process read or wrote the step it holds as ``record``
        self._seen_at = -math.inf
        #: when (monotonic) another process's fold last applied a post of ours: it folds
        self._served_at = -math.inf

    @property
    def _outstanding(self) -> Posted | None:
        """Our newest post to this actor not yet known applied: later batches post too, after
        it (order is kept). The runtime keeps it, by actor id (``CombiningEnv.pending_posts``),
        not the core: a core with a post given up on (``CallPendingError``) stayed cached for
        good, and one evicted all the same (a caller held it) took the post with it when it
        went, and the actor's next call raced past it."""
        return self.env.pending_posts.get(self.actor_id)

    @_outstanding.setter
    def _outstanding(self, posted: Posted | None) -> None:
        # (Only the thread that holds the actor writes it.)
        if posted is None:
            self.env.pending_posts.pop(self.actor_id, None)
        else:
            self.env.pending_posts[self.actor_id] = posted

    def _behind_our_post(self, batch: list[PendingCall], give_up_at: float) -> bool:
        """Wait until our pending post is applied: True, ``batch`` may commit now (after it);
        False: ``commit_timeout`` passed first, and ``batch`` failed (nothing of it applied).

        We fold it ourselves whenever the folder lease is free (the fold applies every
        pending post, ours in its place); else the holder's folds apply it."""
        with self.env.waiting_for_others():
            return self._wait_behind_our_post(batch, give_up_at)

    def _wait_behind_our_post(self, batch: list[PendingCall], give_up_at: float) -> bool:
        """``_behind_our_post``'s loop."""
        pause = 0.005
        while True:
            pending = self._outstanding
            if pending is None:
                return True
            try:
                newest = self.env.run(self.revalidate())
                if applied(newest.extra, pending.post.sender, pending.post.seq):
                    if self._outstanding is pending:
                        self._outstanding = None
                    return True
                if self._lease_for_fold():
                    self._commit([])  # fold the pending posts, ours among them
                    if self._never_applied(pending):
                        # Our fold found no post of ours to apply: it never landed (its every
                        # write failed) or expired. Nothing of it will apply: nothing to wait for.
                        if self._outstanding is pending:
                            self._outstanding = None
                        return True
                    # (Not at once again: a fold that applied nothing would list in a busy loop,
                    # past commit_timeout.)
            except (StorageError, IntegrityError) as exc:
                counters.transient_retry(self.actor_id, exc)
            if self.env.closed:  # shutdown: nothing of ``batch`` was applied
                fail_calls(batch, self.env.shutdown_error())
                return False
            if time.monotonic() >= give_up_at:
                why = (
                    f"an earlier call of this process (posted under contention, call "
                    f"{pending.post.calls[0].call_id if pending.post.calls else '?'}) is still "
                    f"pending after commit_timeout={self.env.settings.commit_timeout:g} s, and this "
                    "batch (timer or inbox calls among it) may not pass it"
                )
                fail_calls(batch, CommitConflictError(self.actor_id, 0, why))
                return False
            time.sleep(pause)
            pause = min(0.1, pause * 2)

    def _never_applied(self, pending: Posted) -> bool:
        """Whether our pending post will never be applied: no write of it may land any more,
        the object is not there, and (read after that) the newest cursor has not passed it.
        (Deleted only once applied, or expired: an applied one shows in the cursor.)"""
        if time.monotonic() < pending.may_land_until:
            return False
        if self.env.run(self.env.store.head(pending.post.key)) is not None:
            return False
        newest = self.env.run(self.revalidate())
        return not applied(newest.extra, pending.post.sender, pending.post.seq)

    def _may_post(self, batch: list[PendingCall]) -> bool:
        """Posting needs calls another process can run: pickled actors, no internal markers."""
        definition = self.definition
        return (
            self.env.settings.combine
            and definition is not None
            and definition.serializer == "pickle"
            and all(c.frozen is not None for c in batch)
        )

    def _postable_runs(self, batch: list[PendingCall]) -> list[list[PendingCall]]:
        """``batch`` cut where calls that can be posted and internal ones meet, under contention
        (one run otherwise: an uncontended batch commits whole, one PUT)."""
        postable = [c for c in batch if c.frozen is not None]
        if not postable or len(postable) == len(batch) or not self._may_post(postable):
            return [batch]
        if not self._contended():
            return [batch]
        runs: list[list[PendingCall]] = [[batch[0]]]
        for call in batch[1:]:
            if (call.frozen is None) == (runs[-1][-1].frozen is None):
                runs[-1].append(call)
            else:
                runs.append([call])
        return runs

    def _served_lately(self) -> bool:
        """Whether another process's fold applied a post of ours in the last quarter of
        ``lease_seconds``: a folder is at work (no need to read the lease to know)."""
        return time.monotonic() - self._served_at < 0.25 * self.env.settings.lease_seconds

    def _read_step(self, step: int) -> StepRecord | None:
        """``log.read_step``, on this thread where the store answers there (no trip to the loop)."""
        if self.log.store.inline:
            return self.log.read_step_now(step)
        return self.env.run(self.log.read_step(step))

    def _posts(self) -> PostBox:
        if self._postbox is None:
            settings = self.env.settings
            self._postbox = PostBox(
                self.env.store,
                self.actor_id,
                settings.signing_key,
                names=settings.post_names,
                sender=self.env.post_sender,
            )
        return self._postbox

    def _post(self, batch: list[PendingCall]) -> Posted:
        """Write ``batch`` as one post; the calls are then applied by whichever commit folds it."""
        calls = tuple(
            PostedCall(
                c.method,
                c.frozen.data if c.frozen is not None and c.frozen.data is not None else _pickle_frozen(c),
                c.call_id,
                c.idempotency_key,
                c.options.name,
                c.options.metadata,
                c.options.max_retries,
                tag_of(c.for_class),
            )
            for c in batch
        )
        base = self.record.step if self.record is not None else -1
        box = self._posts()
        seen = max(self._seen_at, self.validated_at)
        if self.record is not None and seen > -math.inf:
            # Another process's step (the one our batch lost to, mostly): its writer's clock
            # dates our post, where ours runs behind it (folders expire posts by their clocks).
            box.observe(self.record.time, time.monotonic() - seen)
        if self.record is not None:
            # Posts dated at or before the step's post floor are expired by any folder: ours
            # come later (the floor is a time some writer's clock passed an hour before).
            box.observe(floor_of(self.record.extra) + 0.002, 0.0)
        if box.names and box.mail.key is None:
            # The store's mail key seals a post carried by its name: read (or made) once per
            # process, in the background. Until it is at hand, posts keep bare names (a
            # serverless call that posts once pays no request for a key it would not use).
            self.env.background(box.mail.load(create=True))
        pending = self._outstanding
        if pending is not None:
            box.follow(pending.post)  # (written by an earlier core of this actor, maybe)
        post = box.prepare(calls)
        doubt = False
        try:
            if not (self.log.store.inline and box.send_now(post)):
                post = self.env.run(box.send(post))
        except StorageError as exc:
            # It may have landed unseen: from now on the batch is this post and nothing
            # else. Whoever commits our calls passes our seq in the cursor, which makes
            # the post (if it exists) stale: applied at most once either way.
            doubt = True
            if isinstance(exc, PostInDoubtError):
                post = exc.post  # under the name it may exist by (not one another's post took)
            logger.debug("actor %r: a post's write is in doubt: %s", self.actor_id, exc)
        except BaseException:
            # Interrupted (Ctrl-C) while the post was written: it may have landed, its answer
            # lost. Kept as in doubt (its caller gets the interrupt): our later posts follow it,
            # and call_outcome says pending, not "never", while it may apply.
            posted = Posted(post, base, time.monotonic(), doubt=True)
            for c in batch:
                c.posted = (post.key, post.sender, post.seq)
            self._interrupted_after_posting(posted, batch)
            raise
        counters.count("posted_calls", len(calls))
        for c in batch:
            c.posted = (post.key, post.sender, post.seq)  # another process may run it now
        posted = Posted(post, base, time.monotonic(), doubt=doubt)
        if doubt:
            posted.may_land_until = time.monotonic() + self.env.settings.deadline
        self._outstanding = posted
        return posted

    def _wait_for_fold(
        self, posted: Posted, batch: list[PendingCall], give_up_at: float
    ) -> tuple[str, StorageError | IntegrityError | None]:
        """A poster waits for the lease holder's fold, polling the next step.

        ``"done"``: applied, outcomes delivered; ``"fold"``: the lease was free and we
        took it (fold ourselves); ``"timeout"``: ``commit_timeout`` passed. With it, the
        error the last look failed with (None: it read the store): at a timeout, why our
        outcome was not read (a stalled store, a damaged step on the walk back to it).
        """
        with self.env.waiting_for_others():
            return self._poll_for_fold(posted, batch, give_up_at)

    def _poll_for_fold(
        self, posted: Posted, batch: list[PendingCall], give_up_at: float
    ) -> tuple[str, StorageError | IntegrityError | None]:
        """``_wait_for_fold``'s loop."""
        failed: StorageError | IntegrityError | None = None
        progress_at = time.monotonic()
        seen_step = self.record.step if self.record is not None else -1
        # The first look about one holder commit after posting (or, sooner, about when our
        # posts were folded lately: a holder that waits for posts folds one at once), then
        # less and less often.
        pause = max(0.001, min(self._cycle, 1.5 * self._fold_after + 0.001))
        first = True
        # Looks no further apart than the holder's commits (at least 50 ms): each look is a GET,
        # and on a remote store the holder's commits take longer than a few looks.
        longest = max(0.05, self._cycle)
        while True:
            now = time.monotonic()
            if now >= give_up_at or self.env.closed:
                return "timeout", failed  # (at shutdown: the post stays, and may still be applied)
            time.sleep(pause * (0.75 + 0.5 * random.random()))
            pause = min(longest, pause * 1.5)
            try:
                if self._poll_steps(posted, batch, skip=first):
                    return "done", None
                failed = None
                first = False
                step = self.record.step if self.record is not None else -1
                if step != seen_step:
                    seen_step, progress_at = step, time.monotonic()
                lease = self._lease
                # No step for a long while: the holder may have given the lease up or died.
                stalled = time.monotonic() - progress_at > max(0.25, 20 * min(0.02, self._cycle))
                if stalled or ((lease is None or not lease.valid()) and not self._served_lately()):
                    if self._lease_for_fold():
                        return "fold", None
                    progress_at = time.monotonic()
            except (StorageError, IntegrityError) as exc:
                failed = exc
                counters.transient_retry(self.actor_id, exc)
                self._distrust()

    def _poll_steps(self, posted: Posted, batch: list[PendingCall], *, skip: bool = False) -> bool:
        """Read the steps committed since our cache (a GET each, and one that misses); deliver
        our outcomes if one of them applied our post. True when delivered.

        ``skip`` (the first look after posting): the steps committed since we read our cache
        (about one per holder cycle), and the one being built when we posted (most likely
        without our post), are skipped: the first read is the step after them. The cursor is
        cumulative, so that step tells whether ours was applied by then (if so but not
        there, we walk back to the one that did); when it is not there yet, we walk back to
        the newest step.
        """
        env = self.env
        record = self.record
        if record is None or time.monotonic() - self.validated_at > env.settings.fresh_window:
            return self._settle_if_folded(posted, batch, env.run(self.revalidate()))
        post = posted.post
        if applied(record.extra, post.sender, post.seq):
            # Our cache already shows it: another thread's read (or call_outcome) moved the
            # cache past the step that applied our post. Its outcomes are there or below.
            return self._settle_if_folded(posted, batch, record)
        started = time.monotonic()
        # Steps read past ``record`` are newer than what was newest when ``record`` was
        # validated: they keep that time (a later step than the newest then is no less fresh).
        validated = self.validated_at
        current = record
        ahead = 1
        if skip and record.step == posted.base_step:
            # Where a look that overshoots costs a request, only the steps committed between
            # our look at the cache and our post (they cannot hold it); elsewhere, up to now.
            since = (started if self.log.store.inline else posted.at) - self._seen_at
            ahead = 2 + (min(_SKIP_MAX, int(since / self._cycle)) if 0 < since < _CYCLE_MAX * 8 else 0)
        if not self.log.store.inline:
            # Each look a request: skip at most one step we estimate was committed meanwhile
            # (a step we overshoot carries the outcomes of the one before it).
            return self._poll_remote(posted, batch, record, started, validated, min(ahead, 3))
        #: a step above the one we read was missing: that one is the newest
        newest = False
        for _ in range(16 + ahead):
            nxt = self._read_step(current.step + ahead)
            if nxt is None:
                if ahead > 1:
                    ahead -= 1  # not there yet: walk back to the newest step (ours, maybe)
                    newest = True
                    continue
                self._accept(current, started)  # the newest step, as of ``started``
                self._seen_at = time.monotonic()
                return False
            self._seen_at = time.monotonic()
            if nxt.time > current.time:
                # How long a commit of the holder takes (its steps' spacing, when it is busy).
                spacing = (nxt.time - current.time) / ahead
                self._cycle = 0.8 * self._cycle + 0.2 * min(_CYCLE_MAX, spacing)
            if applied(nxt.extra, post.sender, post.seq):
                self._served_at = time.monotonic()
                self._accept(nxt, validated)
                outcomes = decode_outcomes(nxt.posted, self.log.step_key(nxt.step))
                if batch and batch[0].call_id not in outcomes:
                    # Applied by a step below this one (one we skipped, or the one our cache
                    # held when another thread moved it): its outcomes are there, or carried here.
                    return self._settle_if_folded(posted, batch, nxt)
                self._deliver_posted(posted, batch, nxt, outcomes, nxt)
                return True
            if newest:
                self._accept(nxt, started)  # the newest step (the next was missing), not ours yet
                return False
            current = nxt
            ahead = 1
        self._accept(current, -math.inf)
        return self._settle_if_folded(posted, batch, env.run(self.revalidate()))  # far behind

    def _poll_remote(
        self,
        posted: Posted,
        batch: list[PendingCall],
        record: StepRecord,
        started: float,
        validated: float,
        ahead: int,
    ) -> bool:
        """``_poll_steps`` where each look is a request: read the step we aim at, not every step.

        A step that does not show our post applied tells that no earlier one does (the cursor
        is cumulative): the steps between our cache and it need not be read. A look aims at
        the step most likely to apply our post (the first: the one after those we estimate
        were committed since our cache and the one being built when we posted); a miss
        there waits for it (a GET per look, as when nothing changed), and a second miss at
        the same step walks back one. A step that applies ours holds its outcomes, or carries
        them when its parent applied it (``StepRecord.carried``); else we walk back to them.
        """
        aim = posted.aim if posted.aim > record.step else record.step + ahead
        current = record
        for _ in range(16 + ahead):
            nxt = self._read_step(aim)
            if nxt is None:
                if aim > current.step + 1 and posted.missed == aim:
                    aim -= 1  # missing twice: we aimed too far; the one before may be ours
                    continue
                posted.aim, posted.missed = aim, aim
                if aim == current.step + 1:
                    self._accept(current, started)  # the newest step, as of ``started``
                self._seen_at = time.monotonic()
                return False
            self._seen_at = time.monotonic()
            if nxt.time > current.time and nxt.step > current.step:
                spacing = (nxt.time - current.time) / (nxt.step - current.step)
                self._cycle = 0.8 * self._cycle + 0.2 * min(_CYCLE_MAX, spacing)
            if applied(nxt.extra, posted.post.sender, posted.post.seq):
                self._served_at = time.monotonic()
                self._accept(nxt, validated)
                outcomes = decode_outcomes(nxt.posted, self.log.step_key(nxt.step))
                if batch and batch[0].call_id not in outcomes:
                    return self._settle_if_folded(posted, batch, nxt)  # carried, or walk back
                self._deliver_posted(posted, batch, nxt, outcomes, nxt)
                return True
            if nxt.step > current.step:
                self._accept(nxt, validated)
                current = nxt
            aim = nxt.step + 1
            posted.aim = aim
        self._accept(current, -math.inf)
        return self._settle_if_folded(posted, batch, self.env.run(self.revalidate()))  # far behind

    def _deliver_posted(
        self,
        posted: Posted,
        batch: list[PendingCall],
        newest: StepRecord,
        found: Mapping[str, Outcome] | None,
        folded_in: StepRecord | None = None,
        *,
        surely_applied: bool = True,
    ) -> None:
        if folded_in is not None:
            # When the holder built the step that applied our post, after we wrote it.
            after = min(_CYCLE_MAX, max(0.0, folded_in.time - posted.post.time))
            self._fold_after = 0.8 * self._fold_after + 0.2 * after
        self._index_armed(newest, posted)
        # Each outcome loads here, ours alone (not another caller's). One that does not load
        # (its class is not here, or its bytes are malformed) fails that call alone: applied,
        # so CallPendingError with the load error as its cause (call_outcome raises it).
        for call in batch:
            try:
                outcome = (found or {}).get(call.call_id)
            except Exception as exc:
                self._remember_given_up(posted, [call])
                pending = CallPendingError(self.actor_id, [call.call_id])
                pending.__cause__ = exc
                outcome = Outcome(False, pending)
            if outcome is None:
                why = (
                    f"call {call.call_id} was applied (by step {newest.step} at the latest), but the "
                    "step holding its outcome has been compacted"
                    if surely_applied
                    else cannot_tell(call.call_id, newest.step)
                )
                outcome = Outcome(False, CommitOutcomeUnknownError(self.actor_id, newest.step, why))
            call.deliver(outcome)
        if self._outstanding is posted:
            self._outstanding = None

    def _index_armed(self, newest: StepRecord, posted: Posted) -> None:
        """Timers our posted calls armed are indexed before their callers hear of them, as a
        commit of our own would (the folder that applied them may have died before its index
        write). Nothing for an actor without timers."""
        armed = armed_unindexed(self.log.store, self.actor_id, newest.extra, posted.base_step)
        if armed:
            try:
                self.env.run(write_entries(self.log.store, self.actor_id, armed))
            except Exception as exc:  # the step stays the truth: a later commit or a repair indexes it
                logger.warning(
                    "actor %r: could not index timers its posted calls armed: %s", self.actor_id, exc
                )

    def _settle_if_folded(self, posted: Posted, batch: list[PendingCall], base: StepRecord) -> bool:
        """If a commit (ours or another process's) applied our post: deliver its outcomes.

        The cursor tells, unless it forgot our sender: a folder whose clock runs an hour or
        more ahead drops the entries others wrote, raising the post floor to their times
        (``advance_cursor``). Our post dated at or before the floor may then have been applied
        (and deleted) without the cursor saying so, or expired unapplied: the steps above our
        post tell which. Taken for never applied, it was folded in again by our own fold."""
        post = posted.post
        known = applied(base.extra, post.sender, post.seq)
        if not known and post.time > floor_of(base.extra):
            return False
        first = batch[0].call_id
        found: Mapping[str, Outcome] | None = None
        folded_in: StepRecord | None = None
        gap = False
        for step in range(base.step, posted.base_step, -1):
            if step in posted.passed:
                continue
            record = base if step == base.step else self._read_step(step)
            if record is None:
                gap = True
                break  # compacted: older steps are gone too
            outcomes = decode_outcomes(record.posted, self.log.step_key(record.step))
            if first in outcomes:
                found, folded_in = outcomes, record
            else:
                carried = decode_outcomes(record.carried, self.log.step_key(record.step))
                if first in carried:
                    found = carried  # applied by the step before (its time is not known here)
            if found is not None:
                if step != base.step and self._below_watermark(step):
                    found = folded_in = None  # a stray, not the history's: the step was compacted
                    gap = True
                break
            posted.passed.add(step)
        if found is None and not known and not gap:
            # Forgotten, and no step since our post applied it: it expired unapplied. Unless a
            # step we took for one lies below the watermark: a stray (the step was compacted).
            gap = base.step > posted.base_step + 1 and self._below_watermark(posted.base_step + 1)
            if not gap:
                return False
        self._deliver_posted(posted, batch, base, found, folded_in, surely_applied=known)
        return True

    def _below_watermark(self, step: int) -> bool:
        """Whether ``step``, just read on a walk back from a validated step, lies below the
        retention watermark: then it is no step of the history but a stray (a stalled
        writer's late put re-created a number a compaction had freed), and what it says
        must not be taken. The watermark is read *after* the step (as ``ActorLog.find_step``
        does): a compaction raises it before deleting, so a stray read before this answer
        shows below it. One request, only when a walk back found what it looked for, or
        found it nowhere and would take that for "never applied"."""
        return step < self.env.run(self.log.read_gc())

    def _pending_error(self, posted: Posted, batch: list[PendingCall]) -> CallPendingError:
        """The caller stops waiting; remember the post so ``call_outcome`` can tell later."""
        self._remember_given_up(posted, batch)
        self._outstanding = posted  # our next batch posts too, after this one: order is kept
        return CallPendingError(self.actor_id, [c.call_id for c in batch])

    def _interrupted_after_posting(self, posted: Posted, batch: list[PendingCall]) -> None:
        """An interrupt (Ctrl-C, a signal handler's exception) stopped ``batch``'s commit once it
        was posted (or while its post was written): its caller gets the interrupt, and the post
        may still be applied by any process's fold. Remembered as a post given up on
        (``call_outcome`` says pending, not "never", while it may apply) and kept as our
        pending post (our next batch applies after it). A write of ours that carries it (the
        post, or our own fold's step put) may still land: not "never" before the deadline."""
        unsettled = [c for c in batch if not c.future.done()]
        if not unsettled:
            return
        posted.may_land_until = max(posted.may_land_until, time.monotonic() + self.env.settings.deadline)
        self._remember_given_up(posted, unsettled)
        self._outstanding = posted

    def _remember_given_up(self, posted: Posted, calls: list[PendingCall]) -> None:
        """Keep ``posted`` for ``call_outcome`` under each call's id (the newest
        ``_GAVE_UP_MAX`` such calls of the process).

        Without its calls' arguments, nor the steps its wait walked: bounded by count, each
        entry must be small whatever they were. The post is written; what is asked of it from
        here on is its key, sender and seq (a fold applies it from the stored object, ours
        included; ``call_outcome`` walks back from the newest step)."""
        posted.passed.clear()
        if any(c.arguments or c.metadata for c in posted.post.calls):
            posted.post = replace(
                posted.post, calls=tuple(replace(c, arguments=b"", metadata=None) for c in posted.post.calls)
            )
        for call in calls:
            _GAVE_UP[(self.env.store.url, self.actor_id, call.call_id)] = posted
            while len(_GAVE_UP) > _GAVE_UP_MAX:
                _GAVE_UP.popitem(last=False)

    def call_outcome(self, call_id: str, scan: int = 1000) -> Outcome:
        """The outcome of a call posted under contention whose caller stopped waiting
        (docs/protocol.md, "Outcomes and ``CallPendingError``": procedure A for a call this
        process posted, B for another, and the list of answers).

        ``CallPendingError`` while it may still be applied: its post is still there (then a
        fold is queued unless another process is known to fold, see
        ``ActorCore._fold_given_up_posts_soon``), or a write of ours that carries it may
        still land. ``CallNotFoundError`` with ``never`` when it was not applied and never
        will be; without (a call this process did not post, ``_pending_elsewhere``): "not
        found", not a sure "never". ``CommitOutcomeUnknownError`` as the outcome when it was
        applied and the step holding its outcome is gone (or whether it was cannot be told).
        A try that fails transiently is tried again until ``Settings.deadline``; then
        ``StorageTimeoutError``: not known yet, ask again later (counted in
        ``deadline_timeouts``, as any operation that did not finish within it). A read damaged
        (``IntegrityError``) is tried twice more, then raised (damaged at rest).
        """
        deadline = self.env.settings.deadline
        give_up_at = time.monotonic() + deadline
        attempt = damaged = 0
        read: dict[int, StepRecord] = {}  # the steps the tries walked (each read once: _walk_step)
        while True:
            try:
                return self._look_up_outcome(call_id, scan, read)
            except FormatVersionError:
                raise  # a newer release wrote the step: no retry reads it
            except (RetryableStorageError, IntegrityError) as exc:
                if isinstance(exc, IntegrityError) and not isinstance(exc, RetryableStorageError):
                    damaged += 1
                    if damaged >= _DAMAGED_READS:
                        raise  # damaged at rest (or malformed), not in transit: reading again won't help
                # (A read, no commit attempt: not counted in commit_retries_transient.)
                logger.debug(
                    "actor %r: call_outcome(%r): a read failed, reading again: %s",
                    self.actor_id,
                    call_id,
                    exc,
                )
                self._distrust()
                pause = retry_pause(attempt)
                attempt += 1
                if time.monotonic() + pause >= give_up_at:
                    # An operation that did not finish within Settings.deadline: counted and
                    # logged as the runtime's are (docs/observability.md, deadline_timeouts).
                    counters.deadline_timeout(
                        self.env.store.describe(), deadline, f": call_outcome, last: {exc}"
                    )
                    raise StorageTimeoutError(
                        f"actor {self.actor_id!r}: call_outcome({call_id!r}) could not read the "
                        f"store within Settings.deadline ({deadline:g} s), last: {exc}; whether the "
                        "call was applied is not known yet (it is applied at most once either way): "
                        "ask call_outcome again later",
                        getattr(exc, "key", ""),
                    ) from exc
                _sync.sleep(pause)  # (up to 1.5 s: in slices on the main thread)

    def _look_up_outcome(self, call_id: str, scan: int, read: dict[int, StepRecord]) -> Outcome:
        """One try of :meth:`call_outcome`; storage errors are the caller's to retry. ``read``:
        the steps the tries before this one read (:meth:`_walk_step`)."""
        newest = self.env.run(self.revalidate())
        posted = _GAVE_UP.get((self.env.store.url, self.actor_id, call_id))
        if posted is None and newest.serializer != "pickle":
            # Its calls are never posted: no step of it holds outcomes, and reading a part so
            # named would unpickle bytes from storage, which a json actor never does. (Told by
            # the newest step, not the class this core caches: the id may hold another actor
            # since. A call this process posted went to a pickle actor the id held before a
            # delete: its steps are walked below, the json actor's passed over.)
            raise CallNotFoundError(
                self.actor_id,
                call_id,
                f"it uses the {newest.serializer!r} serializer, whose calls are never posted: "
                f"no posted call {call_id}",
                advice=_NEVER_POSTED,
            )
        #: not applied by the newest step's cursor, which no longer names our sender: it may
        #: have been applied and the entry dropped since (SENDER_TTL without a post): the
        #: steps since we posted tell
        unsure = False
        if posted is not None and not applied(newest.extra, posted.post.sender, posted.post.seq):
            if self.env.run(self.env.store.head(posted.post.key)) is not None:
                # Still pending: with no live folder (our caller gave up before it tried the
                # lease, or the holder died since), nothing else would fold it until the
                # actor's next call. The answer stays "pending, ask again".
                self._fold_given_up_posts_soon()
                raise CallPendingError(self.actor_id, [call_id])
            newest = self.env.run(self.revalidate())  # applied just before its post was deleted?
            if not applied(newest.extra, posted.post.sender, posted.post.seq):
                if posted.post.sender in cursor_of(newest.extra):
                    self._unless_a_write_may_land(posted, call_id)
                    raise _never(self.actor_id, call_id)
                unsure = True
        # A call this process did not post is looked for in the newest actor's steps alone: an
        # earlier actor under the id (before a delete) may hold a call with the same id (a
        # keyed call's id is derived from the key), and its outcome is not this actor's. Its
        # steps end, going down, at the tombstone below them: a tombstone records no
        # incarnation (born_of reads 0), so with the newest actor deleted the bound alone
        # let the walk go on into the actors before it.
        stop = (
            posted.base_step if posted is not None else max(-1, newest.step - scan, born_of(newest.extra) - 1)
        )
        complete = True
        live_seen = False  # (a call not posted here) a step of the newest actor's, not its tombstone
        #: the lowest step walked whose outcomes hold no outcome of the call (``_pending_elsewhere``)
        lowest = newest
        for step in range(newest.step, stop, -1):
            record = newest if step == newest.step else self._walk_step(step, read)
            if record is None:
                complete = False
                break  # compacted: older steps are gone too
            if posted is None:
                if is_deleted(record) and live_seen:
                    break  # the tombstone of the actor before the newest
                live_seen = live_seen or not is_deleted(record)
            if record.serializer != "pickle":
                continue  # a json actor's step (made after a delete): no posted outcome, never unpickled
            found = self._outcome_in(record, call_id)
            if found is not None and posted is not None and self._not_ours(record, posted):
                continue  # a later actor's call with the id (a keyed call's): ours is below
            if found is not None:
                if step != newest.step and self._below_watermark(step):
                    complete = False  # a stray, not the history's: the step was compacted
                    break
                if posted is not None:
                    self._index_armed(newest, posted)
                return found
            lowest = record
        if unsure and complete and stop + 1 < newest.step and self._below_watermark(stop + 1):
            complete = False  # a step walked may be a stray, not the history's: compacted
        if unsure and complete:  # no step since we posted applied it
            assert posted is not None
            self._unless_a_write_may_land(posted, call_id)
            raise _never(self.actor_id, call_id)
        if posted is not None:  # applied (or, unsure, maybe), but the step that tells was compacted
            why = (
                cannot_tell(call_id, newest.step)
                if unsure
                else f"call {call_id} was applied, but the step holding its outcome has been compacted"
            )
            return Outcome(False, CommitOutcomeUnknownError(self.actor_id, -1, why))
        return self._pending_elsewhere(call_id, newest, scan, lowest, read)

    def _not_ours(self, record: StepRecord, posted: Posted) -> bool:
        """(A call this process posted, an outcome of whose id the walk down found in
        ``record``) Whether the outcome is another call's with the same id (a keyed call's id
        derives from the actor id and the key), made to an actor under the id that came after
        ours was applied or failed: the step below ``record`` applied our post already
        (``record`` a tombstone), or the creation of ``record``'s actor, after our post, carried
        a cursor that had applied it (the tombstone's). One read, only on an id deleted since
        our post; a creation step gone (compacted) counts as not ours (the walk then ends at
        the gap: the outcome is not known)."""
        below = record.step - 1 if is_deleted(record) else born_of(record.extra)
        if below <= posted.base_step:
            return False  # (the actor our post was made to: a later copy of a keyed outcome is equal)
        earlier = record if below == record.step else self.env.run(self.log.read_step(below))
        return earlier is None or applied(earlier.extra, posted.post.sender, posted.post.seq)

    def _outcome_in(self, record: StepRecord, call_id: str) -> Outcome | None:
        """The outcome of ``call_id`` that the step ``record`` holds: its own, or (applied by
        the step below, whose outcomes a fold carries: the applying step may be compacted by
        now, and the copy is all that is left of them) the copy it carries; None if neither."""
        key = self.log.step_key(record.step)
        found = decode_outcomes(record.posted, key).get(call_id)
        return found if found is not None else decode_outcomes(record.carried, key).get(call_id)

    def _pending_elsewhere(
        self, call_id: str, walked: StepRecord, scan: int, lowest: StepRecord, read: dict[int, StepRecord]
    ) -> Outcome:
        """(A call this process did not post, not among the steps walked down from ``walked``,
        the lowest of them ``lowest``) Whether its post waits in the actor's inbox: a new
        process asking of a call an earlier one (a serverless invocation) gave up on knows no
        post of it, and "not found" must not read "never" while the post may still be folded.

        Procedure B from step 3 (docs/protocol.md, "Outcomes and ``CallPendingError``"): the
        inbox read until a post names the call (:meth:`_posts_naming`), the steps committed since
        ``walked`` (``OutcomeElsewhere._walk_since``: their outcome, if one of ``walked``'s actor
        holds it), and the answer (``OutcomeElsewhere._answer_elsewhere``)."""
        inbox = self._posts_naming(call_id, walked)
        walk = self._walk_since(call_id, walked, scan, read)
        if walk.found is not None:
            return walk.found
        return self._answer_elsewhere(call_id, scan, lowest, inbox, walk)

    def _posts_naming(self, call_id: str, walked: StepRecord) -> InboxRead:
        """One LIST of the inbox; posts whose names carry them are read from the names, the
        others with a GET each, in rounds of ``_ELSEWHERE_READS``, until one names the call
        or all are read (procedure B, step 3). No round starts once ``Settings.deadline`` has
        passed since the LIST: ``StorageTimeoutError`` then (not known yet, ask again), never
        "pending" for a call that may not exist. (A post the newest actor's creation had
        applied, an earlier actor's under the id still listed, names none of the newest
        actor's calls: ``OutcomeElsewhere._to_this_actor``.)"""
        box = self._posts()
        keys = self.env.run(box.keys())
        give_up_at = time.monotonic() + self.env.settings.deadline
        unread = [k for k in keys if box.cached(k) is None]
        naming = self._to_this_actor(
            walked, _naming(call_id, [p for k in keys if (p := box.cached(k)) is not None])
        )
        for start in range(0, len(unread), _ELSEWHERE_READS):
            if naming:
                break
            if time.monotonic() >= give_up_at:
                raise StorageTimeoutError(
                    f"actor {self.actor_id!r}: {len(unread) - start} of the {len(keys)} posts in "
                    f"its inbox unread when Settings.deadline passed, none of those read naming "
                    f"call {call_id}",
                    posts_prefix(self.actor_id),
                )
            naming = self._to_this_actor(
                walked, _naming(call_id, self.env.run(box.read(unread[start : start + _ELSEWHERE_READS])))
            )
        return InboxRead(box, naming, unread)

    def _unless_a_write_may_land(self, posted: Posted, call_id: str) -> None:
        """Before "never": ``CallPendingError`` while a write of ours that carries the call (the
        post, or the step put of our own fold) may still land."""
        if time.monotonic() < posted.may_land_until:
            raise CallPendingError(self.actor_id, [call_id])


@dataclass(slots=True)
class Posted:
    """Our post, and the newest step we knew when we wrote it (the outcome is in a later one).

    On a remote store, the step the next look reads (``aim``) and the last step a look
    found missing (``missed``): see ``Poster._poll_remote``.
    """

    post: Post
    base_step: int
    #: when (monotonic) the post was written
    at: float = -math.inf
    aim: int = -1
    missed: int = -1
    #: steps read since that neither record nor carry our outcomes: a walk back to the step
    #: that applied our post goes on past them after a failed read, not from its start
    passed: set[int] = field(default_factory=set)
    #: its write ended in doubt: the object at its key may be ours, or another's post (whose
    #: name ours drew): a fold reads it before it takes it for ours
    doubt: bool = False
    #: until when (monotonic) a write that carries our calls may still land (a post or a
    #: step put of ours whose outcome is unknown): ``call_outcome`` does not say "never" before
    may_land_until: float = -math.inf


def _naming(call_id: str, posts: list[Post]) -> list[Post]:
    """The posts among ``posts`` that carry the call ``call_id``."""
    return [p for p in posts if any(c.call_id == call_id for c in p.calls)]


def _never(actor_id: str, call_id: str) -> CallNotFoundError:
    """The answer of ``call_outcome`` sure that a call of this process was not applied."""
    return CallNotFoundError(
        actor_id, call_id, f"call {call_id} was not applied (and never will be)", never=True
    )


#: what a "not found" of an actor whose calls are never posted tells its caller: no post of
#: the call can land later (asking again tells nothing new), and its caller got its outcome
_NEVER_POSTED = (
    "call_outcome tells of posted calls alone (a caller got CallPendingError); a call of this "
    "actor got its outcome or an error from its commit: retry one whose outcome is unknown "
    "with the same idempotency key (applied at most once), or unkeyed only if it cannot have "
    "been applied"
)


def _pickle_frozen(call: PendingCall) -> bytes:
    args, kwargs = call.arguments()
    return pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)


#: posts whose callers stopped waiting (CallPendingError), by (actor id, call id): call_outcome reads them
#: (store URL, actor id, call id): a keyed call's id is the same wherever it is made (it
#: derives from the actor id and key), and one process may use two stores in turn
_GAVE_UP: OrderedDict[tuple[str, str, str], Posted] = OrderedDict()
_GAVE_UP_MAX = 10_000

#: posts read (GET) per round by a ``call_outcome`` of a call this process did not post
#: (``Poster._pending_elsewhere``): those whose names carry them cost no GET
_ELSEWHERE_READS = 256

#: reads damaged (or malformed) in a row after which ``call_outcome`` raises the IntegrityError:
#: one cut in transit reads whole the next time; one damaged at rest never does
_DAMAGED_READS = 3

#: the longest holder commit interval a poster's looks adapt to (seconds; longer gaps are idle time)
_CYCLE_MAX = 0.25

#: a poster's first look skips at most this many steps it estimates were committed since its cache
_SKIP_MAX = 6
