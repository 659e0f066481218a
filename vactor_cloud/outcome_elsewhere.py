"""``call_outcome`` of a call this process did not post, once the actor's newest steps do not
hold it: the steps committed since, and the answer (docs/protocol.md, "Outcomes and
``CallPendingError``", procedure B, steps 4 to 9).

A process asking of a call another process posted (a serverless invocation asking of the call
the one before gave up on) knows the call id alone. ``Poster._look_up_outcome`` walks the
newest actor's steps (B2); not found there, ``Poster._pending_elsewhere`` lists the inbox and
reads its posts until one names the call (B3), then walks the steps committed since the first
walk (:meth:`OutcomeElsewhere._walk_since`, B4) and answers
(:meth:`OutcomeElsewhere._answer_elsewhere`, B5 to B9): never "not found" for a call the
steps or the inbox show applied, pending, or maybe applied (a caller retries on it), never
another actor's outcome under the call's id (a keyed call's id is the same in every actor
under the id), and pending only while a fold may still apply the post.

:class:`OutcomeElsewhere` is a part of :class:`~vactor_cloud.core.ActorCore` (a mixin, a base
of :class:`~vactor_cloud.poster.Poster`) with no fields of its own; what it needs of the core
is declared at the top of the class.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from vactor_cloud.dedup import Outcome
from vactor_cloud.deletion import is_deleted
from vactor_cloud.errors import (
    CallNotFoundError,
    CallPendingError,
    CommitOutcomeUnknownError,
    RetryableStorageError,
)
from vactor_cloud.incarnation import born_of
from vactor_cloud.log import ActorLog, StepRecord
from vactor_cloud.post_cursor import applied, cannot_tell, cursor_of, floor_of
from vactor_cloud.post_objects import Post
from vactor_cloud.posting import PostBox
from vactor_cloud.step_outcomes import decode_outcomes

__all__ = ["InboxRead", "OutcomeElsewhere", "SinceWalked"]

T = TypeVar("T")


class _Env(Protocol):
    """What the lookup needs of the runtime (``poster.CombiningEnv`` has it)."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the IO loop and wait, at most ``settings.deadline``."""
        ...


@dataclass(slots=True)
class InboxRead:
    """The inbox as one ask read it (procedure B, step 3)."""

    #: the posting side that listed and read it (its cache: the posts read, those damaged)
    box: PostBox
    #: the posts read that name the call, an earlier actor's under the id left out
    naming: list[Post]
    #: the listed keys whose posts were not known from the listing (their names): read, or not
    unread: list[str]


@dataclass(slots=True)
class SinceWalked:
    """What the walk of the steps committed since the first walk found (procedure B, step 4)."""

    #: the newest step, probed after the inbox was read
    newest: StepRecord
    #: the newest step of the first walk's actor (the tombstone below the lowest actor made
    #: since, whose cursor every actor made since starts from); ``newest`` with none made since
    top: StepRecord
    #: every step from the first walk's lowest up to ``newest`` was read (none missing or a
    #: stray, and the walk not cut short by ``scan``): the two walks join
    joined: bool
    #: the call's outcome, when a step of the first walk's actor (or its tombstone) holds it
    found: Outcome | None = None
    #: an outcome under the call id not taken: in a step of an actor made since (that actor's
    #: call with the id, a keyed call's, or this call, its post landed after the delete and
    #: applied by that actor), or in a tombstone not known to be the first walk's actor's
    passed: bool = False


class OutcomeElsewhere:
    """An actor core answering ``call_outcome`` of a call another process posted, past its
    first walk: the walk of the steps since, and the answer."""

    __slots__ = ()

    if TYPE_CHECKING:
        # Of the actor core (vactor_cloud.core.ActorCore) and its poster's side
        # (vactor_cloud.poster.Poster).
        env: _Env
        actor_id: str
        log: ActorLog

        async def revalidate(self) -> StepRecord: ...
        def _fold_given_up_posts_soon(self) -> None: ...
        def _outcome_in(self, record: StepRecord, call_id: str) -> Outcome | None: ...
        def _below_watermark(self, step: int) -> bool: ...

    def _walk_step(self, step: int, read: dict[int, StepRecord]) -> StepRecord | None:
        """Step ``step`` for a walk of one ``call_outcome``, from ``read`` or the store (then kept
        in ``read``); None if it is not there (compacted, or not written). A step, once written,
        does not change: a try after a failed read reads only the steps the tries before it had
        not read, and a long walk comes through under transient failures of one read in a few.

        Kept, and given, without its state and idempotency table, which no walk reads: a walk
        of ``scan`` steps of a large actor holds none of the states it passed."""
        record = read.get(step)
        if record is None:
            record = self.env.run(self.log.read_step(step))
            if record is not None:
                record = read[step] = replace(record, state=b"", dedup=b"")
        return record

    def _walk_since(
        self, call_id: str, walked: StepRecord, scan: int, read: dict[int, StepRecord]
    ) -> SinceWalked:
        """Probe for the newest step and walk down the steps committed since ``walked`` (the
        first walk's newest), at most ``scan`` of them: a post applied and deleted between
        the first walk and the inbox's LIST is found there.

        The answer is about ``walked``'s actor, as the first walk's: the steps of an actor made
        since (the id deleted and made again: a keyed call of its has the same id) are read,
        their outcomes not taken (``passed`` notes one under the id), and a tombstone's outcome
        is taken once no step below it, down to ``walked``, is of an actor made since (not the
        tombstone of one made and deleted). A step missing, or a stray holding the outcome,
        ends the walk (not ``joined``)."""
        newest = self.env.run(self.revalidate())
        walk = SinceWalked(newest, top=newest, joined=newest.step - scan <= walked.step)
        later = newest.step + 1  # the steps from here up are of actors made since the first walk
        held: Outcome | None = None  # an outcome found in a tombstone, not yet known whose
        for step in range(newest.step, max(walked.step, newest.step - scan), -1):
            record = newest if step == newest.step else self._walk_step(step, read)
            if record is None:
                walk.joined = False
                break  # compacted: older steps are gone too
            if step >= later or (not is_deleted(record) and born_of(record.extra) > walked.step):
                if step < later:
                    later, walk.passed, held = born_of(record.extra), walk.passed or held is not None, None
                walk.passed = walk.passed or self._names_outcome(record, call_id)
                continue
            if step == later - 1:
                walk.top = record
            if record.serializer != "pickle":
                continue  # (a json actor's step: no posted outcome, never unpickled)
            found = self._outcome_in(record, call_id)
            if found is not None:
                if step != newest.step and self._below_watermark(step):
                    walk.joined = False
                    break  # a stray, not the history's: the step was compacted
                if not is_deleted(record):
                    walk.found = found
                    return walk
                held = found if held is None else held
        else:
            if held is not None and newest.step - scan <= walked.step:
                walk.found = held  # (the tombstones just above ``walked``: its actor's)
                return walk
        walk.passed = walk.passed or held is not None
        if later - 1 == walked.step:
            walk.top = walked  # (the first walk's newest, the tombstone below the creation)
        return walk

    def _answer_elsewhere(
        self, call_id: str, scan: int, lowest: StepRecord, inbox: InboxRead, walk: SinceWalked
    ) -> Outcome:
        """The answer once neither walk found the call's outcome (procedure B, steps 5 to 9).

        A post naming the call that the newest step's cursor has not applied: ``CallPendingError``,
        and a background fold is queued as for a post of ours
        (``ActorCore._fold_given_up_posts_soon``); but one whose sender that cursor dropped,
        dated at or before its post floor, no fold applies, and whether one did before the
        drop is not known: ``CommitOutcomeUnknownError`` as the outcome, "cannot be told", never
        pending (once the post is deleted, "not found" would follow, and a retry). None naming
        it, one read damaged that a fold would not skip yet: ``RetryableStorageError``
        (``call_outcome`` reads again until its deadline); one a fold skips (forged, or damaged
        at rest: ``PostBox.waits_for`` false) is passed over, as the fold passes it over. One
        the cursor passed within the steps walked (:meth:`_all_stale`): ``CallNotFoundError``. One
        the cursor applied, its outcome in no step read: applied, the outcome gone
        (``CommitOutcomeUnknownError`` as the outcome), never "not found". None naming it:
        ``CallNotFoundError``; but with an outcome under the id not taken in the walk since
        (``SinceWalked.passed``), ``CommitOutcomeUnknownError``, "cannot be told", never "not
        found"."""
        newest, naming = walk.newest, inbox.naming
        floor = floor_of(newest.extra)
        #: posts the newest cursor has not applied and forgot the sender of, dated at or before
        #: its post floor: no fold applies them (it deletes them unread), and whether one was
        #: applied before its sender was dropped (which raised the floor past it) is not known
        forgotten = [
            p
            for p in naming
            if not applied(newest.extra, p.sender, p.seq)
            and p.time <= floor
            and p.sender not in cursor_of(newest.extra)
        ]
        if any(not applied(newest.extra, p.sender, p.seq) and p not in forgotten for p in naming):
            # (On a tombstone too: that fold fails it with ``ActorDeletedError``, the answer
            # asked again; not folded, it stayed pending until an actor was made again.)
            self._fold_given_up_posts_soon()
            raise CallPendingError(self.actor_id, [call_id])
        box = inbox.box
        damaged = next((k for k in inbox.unread if box.cached(k) is None and box.waits_for(k)), None)
        if not naming and damaged is not None:  # (until a fold would skip it: it may name the call)
            raise RetryableStorageError(
                f"{damaged}: a post read damaged, it may name call {call_id}", damaged
            )
        if naming and self._all_stale(naming, lowest, walk):
            raise CallNotFoundError(
                self.actor_id,
                call_id,
                f"call {call_id} is in no step walked, down to step {lowest.step}, and its listed "
                "post is stale: its sender's cursor passed it there without it (it landed after "
                "its sender's later post was applied, or a fold skipped it as damaged); a fold "
                "deletes it unread (asked by a process that did not post it: not a sure never)",
            )
        if forgotten:
            return Outcome(
                False, CommitOutcomeUnknownError(self.actor_id, -1, cannot_tell(call_id, newest.step))
            )
        if naming:  # applied (its delete not done yet), in a step older than those read or compacted
            # (On an id deleted before: the cursor passes the posts a delete failed too.)
            failed = (
                " or failed by a delete of the actor" if born_of(newest.extra) or is_deleted(newest) else ""
            )
            why = (
                f"call {call_id} was applied{failed} (its post is still listed), but its outcome is "
                f"in no step of the newest {scan}: the step holding it is older, or has been compacted"
            )
            return Outcome(False, CommitOutcomeUnknownError(self.actor_id, -1, why))
        if walk.passed:  # (the call may be the one whose outcome that step holds)
            why = (
                f"call {call_id} is in no step of the actor asked of nor pending in its inbox, and "
                "a step not known to be that actor's holds an outcome under its id (a step of an "
                "actor made under the id since, or a tombstone above the steps walked): this call, "
                "its post landed after the delete and applied by that actor, or a call of that "
                "actor's with the same id (a keyed call's); whether this call was applied cannot "
                "be told: read the actor's state before calling again (applied at most once either way)"
            )
            return Outcome(False, CommitOutcomeUnknownError(self.actor_id, -1, why))
        raise CallNotFoundError(
            self.actor_id,
            call_id,
            f"no posted call {call_id} among the newest {scan} steps nor pending in its inbox "
            "(asked by a process that did not post it: not found, not a sure never)",
        )

    @staticmethod
    def _all_stale(naming: list[Post], lowest: StepRecord, walk: SinceWalked) -> bool:
        """Whether the cursor passed every post of ``naming`` within the steps walked, none of
        which holds the call's outcome: never applied (procedure B, step 7).

        Such a post is stale: it landed after its sender's later post was applied (a write in
        doubt), or a fold skipped it as damaged; a fold deletes it unread. It takes every step
        from ``lowest`` (the lowest the first walk read, whose cursor does not apply it) to the
        newest read (``joined``), and each post dated after the newest step's post floor (a
        sender absent from the lowest cursor was not dropped from it since the post was
        applied). With an actor made since the first walk, its steps' outcomes not taken: the
        cursor of ``top`` (the tombstone below it, whose cursor the creation took) passed the
        post, so no later actor applied it either (a post that actor applied: "applied", never
        "not found")."""
        floor = floor_of(walk.newest.extra)
        return walk.joined and all(
            not applied(lowest.extra, p.sender, p.seq)
            and applied(walk.top.extra, p.sender, p.seq)
            and p.time > floor
            for p in naming
        )

    def _to_this_actor(self, walked: StepRecord, posts: list[Post]) -> list[Post]:
        """``posts`` but those applied (or failed by a delete) before ``walked``'s actor was
        created: a post of an earlier actor under the id still listed (its folder's delete not
        done yet) is not the newest actor's call, though its id may be the same (a keyed
        call's). One read of the creation step, only with such posts on an id made again;
        gone (compacted), every post is kept (applied, then: never "not found" for a call
        the cursor applied)."""
        born = born_of(walked.extra)
        if not posts or born == 0:
            return posts
        creation = walked if walked.step == born else self.env.run(self.log.read_step(born))
        if creation is None:
            return posts
        return [p for p in posts if not applied(creation.extra, p.sender, p.seq)]

    def _names_outcome(self, record: StepRecord, call_id: str) -> bool:
        """Whether the step ``record`` holds an outcome of ``call_id`` (its own or a carried
        copy), loading none (a json actor's step holds none)."""
        if record.serializer != "pickle":
            return False
        key = self.log.step_key(record.step)
        return call_id in decode_outcomes(record.posted, key) or call_id in decode_outcomes(
            record.carried, key
        )
