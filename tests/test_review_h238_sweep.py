"""Review h238: a mutation sweep of the contention path, posting calls into an actor's inbox and
folding them into a step: ``folding.py`` (whether a batch combines, the folder lease, the fold of
the posts), ``posting.py`` (``PostBox``: names, writes and read-backs, listings, reads, deletes),
``post_objects.py`` (names that carry their posts, bodies), ``inbox_leftovers.py`` and
``commit_notes.py``; the path ``test_review_fold_mutations`` (review h122) swept last.

130 hand-made mutations written, 85 run, one at a time, each against the modules that test that
code (memory and local lanes: the fold's and the posts' against ``test_combining``,
``test_review_posting``, ``test_review_fold_mutations``, ``test_review_h229_sweep``,
``test_combining_edges``, ``test_review_exactly_once``, ``test_review_posted_semantics`` and
``test_posting``; the lease's against the lease review modules; the names' against
``test_inline_posts`` and the forged-post modules; ...). The 45 left unrun, for time, are
timing-only ones (gather waits, the hot writer's pace, damage pauses) and others of the same
lines. Of the 85: 52 killed by the modules there (3 of them, F04, F13, F20, outside their run:
note d), 28 by the tests here (each test's docstring names its mutations; L09's added on
2026-12-08, note f), 5 are equivalent. None showed a defect of the unmutated code. "killed by" names the
module (``test_`` / ``test_review_`` left off) whose test failed first; "h238" a test here, by
words of its name.

==== =========================================================== ======== ==============================
id   mutation                                                    survived killed by / why
==== =========================================================== ======== ==============================
F01  _contended: a pending post of ours not contended            yes      h238 (given up on)
F02  _contended: served by another's fold, not contended         yes      h238 (folded a post of ours)
F03  _contended: holding the lease not contended                 yes      h238 (lease holder combines)
F04  _contended: our given-up lease still contended              no       combining (d)
F05  _contended: a failed lease read taken for contention        yes      h238 (failed read)
F06  _contended: a lease re-read as ours taken for another's     yes      h238 (read again as ours)
F09  _hot_writer: our own lease taken for another's              yes      equivalent (a)
F10  _count_commit: streak never grows (never hot)               no       combining
F11  _other_folds: a lease read long ago counts                  yes      h238 (read long ago)
F12  _holding: no margin before the lease ends                   no       h137_lease_take
F13  _holding: given up mid-fold                                 no       combining (d)
F14  _lease_for_fold: our own valid lease read as another's      no       h131_lease_give_up
F16  _lease_for_fold: a lost take folds anyway                   yes      h238 (take that loses)
F17  _renew_lease: a second renewal while one is in flight       yes      h238 (second renewal)
F19  renew: a lost renewal keeps holding                         no       fold_mutations
F20  renew: landed after give-up, not released                   no       combining (d)
F21  renew failed after give-up: nothing released                no       h135_lease_shutdown
F23  _release_lease: a newer take forgotten                      no       h131_lease_give_up
F24  _give_up_lease: a lease taken again meanwhile given up      no       h137_lease_take
F25  _give_up_lease: released beside a renewal in flight         no       h137_lease_take
F26  shutdown_lease: a held lease not released                   no       h184_lease_release_at_shutdown
F29  _keys_with_work: all, not any                               no       h188_unpinned_guards
F30  _deleted_as_applied: expired/non-post keys taken            no       h179_given_up_fold
F31  _deleted_as_applied: deletes when any post is stale         yes      h238 (left behind beside)
F32  _fold_posts: no room kept for own calls                     yes      h238 (keeps room)
F34  _fold_posts: a post at the floor applied                    no       fold_mutations
F35  _fold_posts: in doubt, our key not read                     no       combining_edges
F36  _fold_posts: a reused bare name not read again              no       posting
F37  _fold_posts: our post passes an unsure earlier one          yes      h238 (unsure of)
F38  _fold_posts: a copy of our post not deleted                 yes      h238 (copy of our post)
F39  _fold_posts: our calls in twice with a copy                 no       combining
F40  _fold_posts: a damaged post passed                          no       combining
F41  _fold_posts: two copies of one post applied                 no       combining
F42  _fold_posts: a sender's later post passes its unsure one    no       combining
F43  _fold_posts: earlier post of ours not noted                 yes      equivalent (b)
F45  _fold_posts: a post over max_batch never folded             yes      h238 (more calls)
F46  _fold_posts: others' seqs not tracked per fold              no       combining
F47  _fold_posts: unlisted own post passes ours waiting          yes      h238 (unsure of)
F48  _fold_posts: unlisted own post goes in after a stopped fold no       combining
F49  _fold_posts: in doubt, our key listed: our calls left out   yes      h238 (doubtful key)
F50  gives_fold_work: a skipped post is work                     yes      h238 (gives no fold work)
F51  _recordable_name: unrecordable kept                         no       posting
F52  _recordable_metadata: unrecordable kept                     no       posting
F54  fold: class tag dropped                                     no       class_identity
P01  observe: a far-future time taken                            no       clocks
P03  _named: names not strictly rising                           no       fold_mutations
P04  _named: same ms allowed                                     no       fold_mutations
P05  follow: a new box ignores the pending post                  no       fold_mutations
P06  send: any existing object taken for ours                    no       combining
P10  _landed: damaged read-back taken as not ours                no       combining
P11  _landed: seq not compared                                   yes      h238 (another seq)
P12  _listed: posts gone kept in the cache                       yes      h238 (another folder deleted)
P13  _listed: a listing begun before the first ended confirms    yes      h238 (confirmed only)
P17  _listed: a delete finished during the listing not hidden    no       combining
P19  keys: the mail key never loaded by a folder                 no       inline_posts
P20  read: a torn read taken for gone                            no       fold_mutations
P25  _damaged: the first failure's time moves                    no       combining
P28  skipped: never read again                                   no       combining
P30  delete: keys not hidden from listings                       no       combining
P33  _delete: a finished delete hidden forever                   no       post_deletes
P35  unsure: never                                               no       combining
O01  identity: 13th char not checked                             no       inline_posts
O03  _inline_payload: metadata dropped from a name               no       inline_posts
O05  inline_name: names up to 400 bytes                          yes      h238 (at most 200 bytes)
O06  read_name: digest not checked                               no       inline_posts
O07  read_name: key id not checked                               no       inline_posts
O08  read_name: non-canonical payload read                       no       inline_posts
O09  read_name: non-canonical base64 read                        no       inline_posts
O10  _parse_payload: unknown flags                               yes      equivalent (c)
O11  _parse_payload: trailing bytes                              yes      equivalent (c)
O15  encode_post: classes not written                            no       inline_posts
O19  read_name: format byte                                      yes      h238 (unknown format)
L01  leftovers: unknown class's table unpickled                  no       deleted_leftovers
L02  leftovers: unapplied events deleted                         no       h147_inbox_sweep
L04  leftovers: stamped at base's time kept                      yes      h238 (stamped at)
L05  leftovers: an incomplete lookback tells                     no       h147_inbox_sweep
L06  leftovers: told ignored                                     no       clock_skew
L07  leftovers: versions not checked                             yes      h238 (written again)
L08  lookback: not cut at the earliest event                     yes      equivalent (e)
L09  lookback: damaged step raises                               yes      h238 (damaged step, f)
L10  lookback: a missing step counts as complete                 no       h147_inbox_sweep
N01  noted_sent: actor not compared                              yes      h238 (note about one actor)
N02  noted_interrupted: actor not compared                       yes      h238 (note about one actor)
N03  interrupted_note: a mixed batch not told posted             yes      h238 (told posted)
N05  interrupted_note: one keyed call enough                     yes      h238 (unkeyed call)
==== =========================================================== ======== ==============================

(a) F09: the hot writer's look runs only while this core holds no lease copy (or a released
    one): it does not hold the lease (``_held_until`` -inf). A copy of a lease our own sender
    holds then reads "not contended" in ``_contended`` and "no other process folds" in
    ``_other_folds``, as no copy does.
(b) F43: the earlier post of ours that line notes is then either folded (our batch, not
    listed, goes in at the end, after it: in order) or the fold stops at it (a full batch:
    ``stopped``, which keeps our batch out too).
(c) O10, O11: a name is read only if encoding the post it parsed gives back the same payload:
    an unknown flag bit (flags are made from the call) or trailing bytes never do.
(d) F04, F13, F20: run against the lease modules without ``test_combining`` (for time); its
    tests kill each: the idle lease release in flight, a folder whose puts keep losing, a
    renewal landing after the give-up.
(e) L08: steps stamped more than ``CLOCK_SKEW`` before the earliest event cannot have applied
    it: reading on past them finds none of its call ids (more reads only).
(f) L09, killed later (2026-12-08): a damaged step met on the clean-up's lookback raised
    instead of ending it; the clean-up then warned and deleted nothing (applied events left
    for the next actor). The test damages the step below the last live one.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import time
import types
from concurrent.futures import Future
from typing import Any

import pytest
from store_helpers import init
from test_combining import give_up_on_a_post, heal_and_fold, init_switchable, wait_for, wait_for_no_posts
from test_review_fold_mutations import _box
from test_review_h147_inbox_sweep import Purse, _inbox_ids, inbox_deletes_lost, paid_and_deleted

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.commit_notes import (
    interrupted_note,
    not_sent_note,
    noted_interrupted,
    noted_sent,
    sent_note,
)
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.folding import gives_fold_work
from vactor_cloud.keys import inbox_prefix, posts_prefix, step_of, steps_prefix
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.post_cursor import advance_cursor
from vactor_cloud.post_objects import INLINE_NAME_LIMIT
from vactor_cloud.poster import Posted
from vactor_cloud.posting import Post, PostedCall, PostSender, inline_name, post_name, read_name
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _lease_of(actor_id: str) -> Any:
    runtime = vc.get_runtime()
    return _sync.sync(LeaseStore(runtime.store, actor_id, runtime.settings.signing_key).read())


@pytest.mark.usefixtures("runtime_off")
def test_a_batch_after_a_call_given_up_on_posts_behind_it_long_after_the_combine_window(
    store_spec: StoreSpec,
) -> None:
    """A call given up on (``CallPendingError``) leaves its post pending; the next batch must
    post behind it, whenever it comes: a batch that raced would apply before the pending post
    (per-process order lost). Here the next batch comes after ``combine_window`` has passed
    since the post, and after the lease was given up as idle: only the pending post itself
    says "contended". (F01: ``_contended`` without ``self._outstanding is not None``.)"""
    store = init_switchable(store_spec, combine_window=0.05)
    log, _ = give_up_on_a_post(store, commit_timeout=0.3)
    # The outage goes on while our holder gives the lease up as idle (no other's post).
    assert wait_for(lambda: not _lease_of("a").valid())
    time.sleep(0.1)  # (past combine_window since our post: a condition, not a measurement)
    assert heal_and_fold(store, log) == 3
    assert log.applied.run() == ["me/0", "me/1", "me/2"]
    assert wait_for_no_posts("a") == []


def _deciding(**fields: Any) -> Any:
    """A stand-in for an actor core, as ``Folder._contended`` reads it: nothing pending, never
    posted nor served, not holding the lease, none seen, not a hot writer; ``fields`` change
    that."""
    core = types.SimpleNamespace(
        _outstanding=None,
        _posted_at=-math.inf,
        _served_at=-math.inf,
        _held_until=-math.inf,
        _lease=None,
        env=types.SimpleNamespace(settings=vc.Settings(storage="", combine_window=60.0)),
        _holding=lambda: False,
        _hot_writer_sees_a_folder=lambda: False,
        _posts=lambda: types.SimpleNamespace(sender="me" * 8),
    )
    for name, value in fields.items():
        setattr(core, name, value)
    return core


def test_an_uncontended_batch_races() -> None:
    """(The premise of the tests below: the stand-in, unchanged, races.)"""
    assert ActorCore._contended(_deciding()) is False


def test_a_batch_right_after_another_process_folded_a_post_of_ours_combines() -> None:
    """Another process's fold applied our post just now (long after we posted it): a folder is
    at work, and our next batch combines rather than race it (racing, its puts lose to ours
    and our posts wait). (F02: ``_contended`` counting ``combine_window`` from our post
    alone, ``_served_at`` left out.)"""
    core = _deciding(_posted_at=time.monotonic() - 3600.0, _served_at=time.monotonic())
    assert ActorCore._contended(core) is True


def test_a_batch_of_the_lease_holder_combines() -> None:
    """The holder of the folder lease (not idle) folds its own batch with the posts waiting:
    it does not race the steps its posters wait for. (F03: ``_contended`` without
    ``if self._holding(): return True``.)"""
    assert ActorCore._contended(_deciding(_holding=lambda: True)) is True


def test_a_failed_read_of_a_lease_seen_expired_leaves_the_batch_racing() -> None:
    """The lease we saw another process hold has expired by our copy; reading it again fails:
    nothing says a folder is at work, and the batch races (as an uncontended one does),
    forgetting the copy. (F05: ``_contended`` answering True on that failure.)"""

    async def fails() -> Lease:
        raise RetryableStorageError("injected: the lease read fails", "lease")

    seen = Lease("other" * 3 + "o", time.time() - 1.0, 3, "t", "v1")
    core = _deciding(_lease=seen, _lease_store=lambda: types.SimpleNamespace(read=fails))
    core.env.run = _sync.sync
    assert ActorCore._contended(core) is False
    assert core._lease is None


def test_a_lease_seen_expired_and_read_again_as_ours_leaves_the_batch_racing() -> None:
    """The lease we saw another process hold has expired by our copy; read again, it is held
    by our own sender (this process: taken by an earlier core of the actor, say): no other
    process folds, and the batch races. (F06: ``_contended``'s last line without
    ``lease.holder != self._posts().sender``.)"""
    me = "me" * 8

    async def ours() -> Lease:
        return Lease(me, time.time() + 60.0, 4, "t2", "v2")

    seen = Lease("other" * 3 + "o", time.time() - 1.0, 3, "t", "v1")
    core = _deciding(_lease=seen, _lease_store=lambda: types.SimpleNamespace(read=ours))
    core.env.run = _sync.sync
    assert ActorCore._contended(core) is False


def test_a_lease_of_another_read_long_ago_does_not_say_another_process_folds() -> None:
    """A batch posts without reading the lease only while another process's lease was read
    lately (a quarter of ``lease_seconds``): read long ago, even if its copy is still valid
    (a long lease), it no longer says a folder is at work: the lease is read (and taken, if
    free). (F11: ``_other_folds`` without the age of that read.)"""
    lease_seconds = vc.Settings().lease_seconds
    theirs = Lease("other" * 3 + "o", time.time() + 3600.0, 3, "t", "v1")
    core = _deciding(_lease=theirs, _served_lately=lambda: False)
    core._lease_read_at = time.monotonic()
    assert ActorCore._other_folds(core) is True
    core._lease_read_at = time.monotonic() - lease_seconds
    assert ActorCore._other_folds(core) is False


def test_a_lease_take_that_loses_to_another_process_posts_and_waits() -> None:
    """The lease read free, and our conditional write of it lost to another process's take:
    that process folds, and we post and wait, knowing its lease (read back). (F16:
    ``_lease_for_fold`` answering True after the lost take: the attempt asked for the lease
    once more, a GET, before it posted.)"""
    free = Lease("", 0.0, -1, "", None)
    theirs = Lease("other" * 3 + "o", time.time() + 60.0, 3, "t", "v1")
    reads = [free, theirs]

    async def read() -> Lease:
        return reads.pop(0)

    async def write(*args: Any) -> Lease | None:
        return None  # (another process's take came first)

    core = _deciding(
        _lease_store=lambda: types.SimpleNamespace(read=read, write=write), record=None, _foreign_at=0.0
    )
    core.env.run = _sync.sync
    assert ActorCore._lease_for_fold(core) is False
    assert core._lease == theirs and reads == []


def test_no_second_lease_renewal_starts_while_one_is_in_flight() -> None:
    """A renewal is in flight (past half the lease): the next fold starts none of its own. Two
    would write the lease by if-match on the same version, and the one that lost would take
    the lease for taken over: the holder would stop folding. (F17: ``_renew_lease`` without
    ``self._renewing``.)"""
    started: list[Any] = []
    seconds = vc.Settings().lease_seconds
    mine = Lease("me" * 8, time.time() + 0.1 * seconds, 3, "t", "v1")
    core = _deciding(_renewing=True, _lease=mine, _held_until=time.monotonic() + 0.1 * seconds)

    def background(work: Any) -> Future[None]:
        work.close()
        started.append(work)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    core.env.background = background
    ActorCore._renew_lease(core, 4)
    assert started == []


#: two senders' ids, and the folder's own
ME, OTHER, THIRD = "f" * 16, "a" * 16, "b" * 16


def _post(ms: int, sender: str, seq: int, *calls: str) -> Post:
    """A post at ``ms`` after a common start (its key sorts by it), with ``add`` calls named
    ``calls`` (their call ids)."""
    at = int(time.time() * 1000) + ms
    return Post(
        posts_prefix("a") + post_name(at, 1),
        sender,
        seq,
        at / 1000,
        tuple(PostedCall("add", b"", call) for call in calls),
    )


def _fold(
    keys: list[Post],
    readable: list[Post],
    *,
    posted: Posted | None = None,
    batch: list[Any] | None = None,
    applied: list[Post] = (),  # type: ignore[assignment]
    max_batch: int = 100,
    damaged: frozenset[str] = frozenset(),
    unsure: frozenset[str] = frozenset(),
) -> tuple[list[Any], list[Post], list[str]]:
    """``Folder._fold_posts`` on a listing of ``keys`` (posts, by their keys), where the posts
    ``readable`` read as themselves (a key among ``keys`` not there reads as gone, or as
    damaged if in ``damaged``), on a base step whose cursor shows ``applied`` applied."""
    box = types.SimpleNamespace(
        waits_for=lambda key: key in damaged,
        cached=lambda key: None,
        unsure=lambda key: key in unsure,
        forget=lambda keys: None,
    )
    core = types.SimpleNamespace(
        env=types.SimpleNamespace(settings=types.SimpleNamespace(max_batch=max_batch)),
        _read_posts=lambda wanted: [p for p in readable if p.key in wanted],
        _posts=lambda: box,
    )
    base = types.SimpleNamespace(extra=advance_cursor({}, list(applied), time.time()))
    listed = [p.key for p in keys]
    return ActorCore._fold_posts(core, posted, batch or [], base, listed)  # type: ignore[arg-type]


def test_a_post_of_another_sender_at_our_doubtful_key_is_read_and_applied_before_its_next() -> None:
    """Our post's write ended in doubt, and the object at its key is another sender's post
    (it drew the same name): the fold reads it like any post and applies it, before that
    sender's next post, and our calls go in at the end, as for a post of ours not listed.
    (F49: the end's ``(own.key not in wanted or doubt)`` without ``doubt``: our key listed,
    our calls were left out of this fold, for a later one.)"""
    mine = _post(5, ME, 7, "f7")
    theirs = Post(mine.key, OTHER, 0, mine.time, (PostedCall("add", b"", "x0"),))
    after = _post(9, OTHER, 1, "x1")
    calls, folded, stale = _fold(
        [theirs, after], [theirs, after], posted=Posted(mine, 0, doubt=True), batch=["<our batch>"]
    )
    assert folded == [theirs, after, mine]
    assert [getattr(c, "call_id", c) for c in calls] == ["x0", "x1", "<our batch>"]
    assert stale == []


def test_our_post_waits_behind_an_earlier_post_of_ours_a_paged_listing_is_unsure_of() -> None:
    """An earlier post of ours was first seen by a listing of several pages (unsure: an even
    earlier one may have landed behind its cursor): it waits for the next listing, and our
    post behind it waits too, listed or not. (F37: ``(mine or copy) and own.sender in
    waiting`` dropped; F47: the end's ``not ours_waiting`` dropped: our calls went in, passing
    the earlier post, which the cursor then took for applied.)"""
    earlier = _post(1, ME, 4, "f4")
    mine = _post(5, ME, 5, "f5")
    for listed in ([earlier, mine], [earlier]):  # ours listed; ours not listed (its write unseen)
        calls, folded, _ = _fold(
            listed, listed, posted=Posted(mine, 0), batch=["<our batch>"], unsure=frozenset({earlier.key})
        )
        assert folded == [] and calls == [], listed


def test_a_copy_of_our_post_in_the_listing_is_stale_and_our_calls_go_in_once() -> None:
    """Our post and a copy of it (written again under a new name, its first write in doubt)
    in one listing: our calls go in once, at our post's place, and the copy is stale, deleted
    by this fold. (F38: the copy not made stale: left for a later fold to find applied.)"""
    mine = _post(1, ME, 5, "f5")
    copy = Post(_post(4, ME, 5).key, ME, 5, mine.time + 0.003, mine.calls)
    other = _post(6, OTHER, 0, "x0")
    calls, folded, stale = _fold(
        [mine, copy, other], [mine, copy, other], posted=Posted(mine, 0), batch=["<our batch>"]
    )
    assert calls[0] == "<our batch>" and calls.count("<our batch>") == 1
    assert folded == [mine, other]
    assert stale == [copy.key]


def test_an_ask_finding_a_post_left_behind_beside_a_pending_one_deletes_nothing_without_the_lease() -> None:
    """An ask's listing (``call_outcome`` of a call given up on) holds a post applied and left
    behind (its folder died before deleting it) and a post still pending: it is not "every
    post applied", so nothing is deleted here, without the lease; the ask goes on to take the
    lease and fold the pending one. (F31: ``_deleted_as_applied`` deleting the stale posts
    and answering True as soon as one was stale: the pending post was left unfolded.)"""
    left, pending = _post(1, OTHER, 0, "x0"), _post(2, OTHER, 1, "x1")
    deleted: list[list[str]] = []

    async def newest() -> Any:
        return "<the newest step>"

    box = types.SimpleNamespace(skipped=lambda key: False, delete=deleted.append)
    core = types.SimpleNamespace(
        _posts=lambda: box,
        env=types.SimpleNamespace(run=_sync.sync, background=lambda work: None),
        revalidate=newest,
        _fold_posts=lambda posted, batch, base, keys: (list(pending.calls), [pending], [left.key]),
    )
    assert ActorCore._deleted_as_applied(core, [left.key, pending.key]) is False
    assert deleted == []


def test_a_fold_of_our_unposted_batch_keeps_room_for_it_within_max_batch() -> None:
    """A batch we did not post goes last, after the posts: the posts taken leave room for it
    within ``max_batch`` (a post is never split, so one post always goes in). (F32:
    ``max_batch`` not lowered by the batch's size: 4 posts and our 3 calls in one step.)"""
    posts = [_post(i, OTHER, i, f"x{i}") for i in range(4)]
    calls, folded, _ = _fold(posts, posts, batch=["o1", "o2", "o3"], max_batch=4)
    assert folded == posts[:1]
    assert [getattr(c, "call_id", c) for c in calls] == ["x0", "o1", "o2", "o3"]


def test_a_post_is_not_taken_for_ours_when_our_sender_wrote_another_seq_at_its_key() -> None:
    """Our post's name is taken, by a post of our own sender with another seq (an earlier core
    of the actor, evicted, drew it): not ours, so ours is written under a new name, the other
    left as it is. (P11: ``_landed`` comparing the sender alone: our post was taken for
    written, and lost.)"""
    sender = PostSender()
    box = _box(sender)
    theirs = box.prepare((PostedCall("add", b"", "earlier"),))
    _sync.sync(box.send(theirs))
    ours = dataclasses.replace(box.prepare((PostedCall("add", b"", "later"),)), key=theirs.key)
    written = _sync.sync(box.send(ours))
    assert written.key != theirs.key and written.seq == ours.seq
    found = _sync.sync(box.read(_sync.sync(box.keys())))
    assert sorted((p.seq, p.calls[0].call_id) for p in found) == [
        (theirs.seq, "earlier"),
        (ours.seq, "later"),
    ]


def test_a_post_of_more_calls_than_max_batch_is_folded_whole_as_the_first_of_its_fold() -> None:
    """A post is never split: one with more calls than this folder's ``max_batch`` (posted by
    a process with a larger one) goes in whole when it comes first, else it would wait for
    ever, and every later post behind it. (F45: ``and calls`` dropped from the batch's
    bound.)"""
    big, after = _post(1, OTHER, 0, "x0", "x1", "x2"), _post(2, THIRD, 0, "y0")
    calls, folded, _ = _fold([big, after], [big, after], max_batch=2)
    assert folded == [big]
    assert [c.call_id for c in calls] == ["x0", "x1", "x2"]


def test_a_post_skipped_as_damaged_at_rest_gives_no_fold_work() -> None:
    """A post skipped as damaged at rest (or forged) is read again only ``DAMAGED_SECONDS``
    after its last failed read: meanwhile it is no work, for an idle holder's rounds nor for
    the release after an ask's fold (which keeps the lease while posts wait). A fresh one is.
    (F50: ``gives_fold_work`` without ``not box.skipped(key)``: a holder kept the lease and
    listed for a post it would not read.)"""
    key = _post(1, OTHER, 0, "x0").key
    assert gives_fold_work(types.SimpleNamespace(skipped=lambda k: False), key) is True  # type: ignore[arg-type]
    assert gives_fold_work(types.SimpleNamespace(skipped=lambda k: k == key), key) is False  # type: ignore[arg-type]


def test_a_post_another_folder_deleted_leaves_this_process_cache_at_the_next_listing() -> None:
    """The posts a process read are cached by key (posts are immutable) only while listed: one
    another folder applied and deleted leaves the cache at the next listing without it, so
    that a long-lived folder keeps no post it will never see again. (P12: ``_listed`` keeping
    the posts gone: the cache grew by every post the process ever read.)"""
    box = _box()
    post = box.prepare((PostedCall("add", b"", "c0"),))
    _sync.sync(box.send(post))
    assert _sync.sync(box.read(_sync.sync(box.keys()))) == [post]
    assert box.cached(post.key) == post
    _sync.sync(box.store.delete(post.key))  # (another process's fold applied it)
    assert _sync.sync(box.keys()) == []
    assert box.cached(post.key) is None


def test_a_post_first_seen_by_a_paged_listing_is_confirmed_only_by_a_listing_begun_after_that_ended() -> None:
    """A post first seen by a listing of several pages stays unsure (an earlier post of its
    sender may have landed behind that listing's cursor) until a listing *begun after that
    one ended* sees it again: one that overlapped it (another thread's fold) may have passed
    the same place before the earlier post landed. (P13: any later listing confirmed it.)"""
    box = _box()
    box.store.listed_at_one_moment = lambda prefix, keys: False  # type: ignore[method-assign]
    key = _post(1, OTHER, 0, "x0").key
    begun = time.monotonic() - 1.0
    box._listed([key], begun)  # the paged listing that first saw it
    assert box.unsure(key)
    box._listed([key], begun)  # an overlapping one, begun before the first ended
    assert box.unsure(key)
    box._listed([key], time.monotonic())  # begun after it ended
    assert not box.unsure(key)


def test_a_commit_note_about_one_actor_does_not_stand_for_another() -> None:
    """One exception may end commits to two actors (a caller's, then a nested one's): a note
    about the first is not the second's, which gets its own. (N01, N02: ``noted_sent`` and
    ``noted_interrupted`` not comparing the actor.)"""
    sent = RetryableStorageError("lost", "k")
    sent.add_note(sent_note("first", 3))
    assert noted_sent(sent, "first") and not noted_sent(sent, "second")
    stopped = KeyboardInterrupt()
    stopped.add_note(not_sent_note("first", [types.SimpleNamespace(method="add")]))  # type: ignore[list-item]
    assert noted_interrupted(stopped, "first") and not noted_interrupted(stopped, "second")


def test_an_interrupted_batch_with_a_posted_call_is_told_posted() -> None:
    """A batch of which some calls were posted (the rest, internal calls, race after them):
    the interrupt's note says posted, with ``call_outcome``, not "look at history", which does
    not show a posted call until a fold applies it. (N03: ``all`` for ``any``.)"""
    batch = [
        types.SimpleNamespace(method="add", call_id="c1", posted=("k", ME, 1), idempotency_key=None),
        types.SimpleNamespace(method="_timer", call_id="c2", posted=None, idempotency_key=None),
    ]
    note = interrupted_note("a", batch)  # type: ignore[arg-type]
    assert "posted under contention" in note and "call_outcome" in note


def test_a_name_of_an_unknown_format_built_like_a_sealed_one_is_not_read() -> None:
    """A name's payload of a format byte this reader does not know (a later format) is never
    read from the name, even one laid out as a sealed name of our mail key: the body is
    read. (O19: every format byte but 1 taken for sealed: such a name was unsealed and
    read.)"""
    seal_key = bytes(range(32))
    prefix = post_name(int(time.time() * 1000), 1)
    name = inline_name("a", prefix, OTHER, 0, (PostedCall("add", b"", "x0"),), None, seal_key)
    assert name is not None
    assert read_name(posts_prefix("a") + name, None, seal_key) is not None  # (as written: read)
    encoded = name.partition(".")[2]
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    later = bytes([3]) + raw[1:-32]
    digest = codec.digest(posts_prefix("a") + prefix, later, None)
    renamed = f"{prefix}.{base64.urlsafe_b64encode(later + digest).rstrip(b'=').decode()}"
    assert read_name(posts_prefix("a") + renamed, None, seal_key) is None


@pytest.mark.usefixtures("runtime_off")
def test_the_deletes_clean_up_leaves_an_event_written_again_after_it_read_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted actor's clean-up deletes the inbox objects of events it applied (left behind
    by a writer that died after its commit) only while each is at the version it read: one
    written again meanwhile (sent again, for the next actor) stays. (L07: an unconditional
    delete of the keys.)"""
    init(store_spec)
    store = vc.get_runtime().store
    purse = Purse.get_or_create("p")
    vc.send_event("p", "pay", 30, event_id="e1")
    with monkeypatch.context() as patch:
        inbox_deletes_lost(patch, store)  # (its writer died after the commit)
        assert purse.process_events() == 1
    assert _inbox_ids("p") == ["e1"]
    (key,) = _sync.sync(store.list(inbox_prefix("p")))

    def written_again_first(delete: Any) -> Any:
        async def deleting(keys: Any, *args: Any, **kwargs: Any) -> Any:
            if key in keys:
                # (another version of the object, just before)
                await store.put(key, (await store.get(key)).data)
            return await delete(keys, *args, **kwargs)

        return deleting

    monkeypatch.setattr(store, "delete_many", written_again_first(store.delete_many))
    monkeypatch.setattr(store, "delete_unchanged", written_again_first(store.delete_unchanged))
    assert vc.delete_actor("p") is True
    assert _inbox_ids("p") == ["e1"]


@pytest.mark.usefixtures("runtime_off")
def test_the_deletes_clean_up_deletes_an_applied_event_stamped_at_the_last_steps_time(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An applied event left behind whose step was compacted (the lookback by call id cut
    short) goes by its stamp: stamped at or before the last step, it is deleted; here its
    stamp equals the last step's time (one clock that did not move). (L04: ``<`` for ``<=``:
    it was kept, and the next actor applied it again.)"""
    paid_and_deleted(store_spec, monkeypatch, clock_stands=True)
    assert _inbox_ids("p") == []


def test_a_name_that_carries_its_post_is_at_most_200_bytes() -> None:
    """A name carries its post only while the whole name is at most ``INLINE_NAME_LIMIT``
    (200) bytes: the local store keeps a mailbox name as one file name (255 bytes on Linux),
    and a longer one could not be written at all. Past it, the bare prefix. (O05: a limit of
    400 bytes.)"""
    seal_key = bytes(range(32))
    prefix = post_name(int(time.time() * 1000), 1)
    lengths = set()
    for size in range(0, 300, 7):
        calls = (PostedCall("add", b"x" * size, "c0"),)
        name = inline_name("a", prefix, OTHER, 0, calls, None, seal_key)
        lengths.add(None if name is None else len(name.encode()) <= INLINE_NAME_LIMIT)
    assert lengths == {True, None}  # (small ones carried, within the limit; the rest bare)


def test_an_interrupted_batch_with_an_unkeyed_call_is_not_told_a_retry_is_safe() -> None:
    """Only a batch whose every call has an idempotency key (of its caller's) is told that a
    retry with the same key applies each at most once; one unkeyed call, and the note says to
    look at the history first. (N05: ``any`` for ``all``.)"""
    batch = [
        types.SimpleNamespace(method="add", call_id="c1", posted=None, idempotency_key="k1"),
        types.SimpleNamespace(method="add", call_id="c2", posted=None, idempotency_key=None),
    ]
    note = interrupted_note("a", batch)  # type: ignore[arg-type]
    assert "look at handle.history()" in note and "at most once" not in note


@pytest.mark.usefixtures("runtime_off")
def test_the_deletes_clean_up_meeting_a_damaged_step_goes_by_the_stamps(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean-up's lookback by call id ends at a damaged step (``IntegrityError``) as at a
    compacted one: it tells only what it found, and the applied events left behind, stamped
    before the last step, go by their stamps; the next actor applies none of them again.
    (L09: a damaged step raising out of the lookback: the clean-up warned and deleted
    nothing, and the next actor paid 35 again.)"""
    init(store_spec, fresh_window=0.0)
    store = vc.get_runtime().store
    old = Purse.get_or_create("p")
    with monkeypatch.context() as patch:
        inbox_deletes_lost(patch, store)  # (their writer died after each commit)
        vc.send_event("p", "pay", 30, event_id="e1")
        assert old.process_events() == 1
        vc.send_event("p", "pay", 5, event_id="e2")
        assert old.process_events() == 1
    assert _inbox_ids("p") == ["e1", "e2"]
    steps = sorted(_sync.sync(store.list(steps_prefix("p"))))
    damaged = steps[-2]  # the step that applied e1, just below the last live one
    data = bytearray(_sync.sync(store.get(damaged)).data)
    data[-40] ^= 1
    _sync.sync(store.delete(damaged))
    _sync.sync(store.put(damaged, bytes(data)))
    init(store_spec, fresh_window=0.0)  # (another process: nothing of "p" cached)
    with pytest.raises(vc.IntegrityError):
        _sync.sync(vc.get_runtime().log("p").read_step(step_of(damaged)))  # type: ignore[arg-type]
    assert vc.delete_actor("p") is True
    assert _inbox_ids("p") == []
    new = Purse.get_or_create("p")
    new.process_events()
    assert new.total.run() == 0
