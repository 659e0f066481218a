"""Contention combining at its edges, from a hostile review: each test failed on the code it
was written against. Helpers come from test_combining (imported by name, no tests)."""

from __future__ import annotations

import copyreg
import dataclasses
import threading
import uuid
from typing import Any

import pytest
from actors import OrderLog
from store_helpers import retune
from test_combining import (
    HANG,
    a_fold_of,
    commit_behind_its_back,
    foreign_box,
    give_up_when_the_fold_is_refused,
    init_switchable,
    pending_posts,
    post_adds,
    wait_for,
)

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.batch import PendingCall
from vactor_cloud.core import ActorCore
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import CallPendingError, RetryableStorageError, StorageTimeoutError
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import ActorLog
from vactor_cloud.posting import PostBox, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import CANCEL

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _hold_lease_elsewhere(actor_id: str, seconds: float = 60.0) -> None:
    """Another process holds the folder lease: our contended calls post and wait."""
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, actor_id, runtime.settings.signing_key)
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, seconds, 1)) is not None


def _fold_our_post_elsewhere(actor_id: str, value: Any) -> int:
    """Another process's fold: the next step applies the one pending post (outcome ``value``).
    Returns the step number."""
    runtime = vc.get_runtime()
    log_ = ActorLog(runtime.store, actor_id, signing_key=runtime.settings.signing_key)
    box = PostBox(runtime.store, actor_id, runtime.settings.signing_key)
    (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
    (call,) = post.calls
    newest = _sync.sync(log_.load_latest(None))
    assert newest is not None
    folded = a_fold_of(newest, [post], encode_outcomes({call.call_id: Outcome(True, value)}), carried=b"")
    _sync.sync(log_.put_step(folded))
    _sync.sync(box.delete([post.key]))
    return folded.step


def _plain_commit_elsewhere(actor_id: str) -> None:
    """A third process's ordinary commit (no fold): copies the cursor, records no outcomes."""
    runtime = vc.get_runtime()
    log_ = ActorLog(runtime.store, actor_id, signing_key=runtime.settings.signing_key)
    newest = _sync.sync(log_.load_latest(None))
    assert newest is not None
    _sync.sync(
        log_.put_step(
            dataclasses.replace(
                newest, step=newest.step + 1, parent=newest.step, writer="third", posted=b"", carried=b""
            )
        )
    )


# -- 1. a concurrent read moves the poster's cache past the step that applied its post ----------
@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize(
    ("store_kind", "after"),
    [("inline", "a-later-step"), ("inline", "nothing-later"), ("remote", "nothing-later")],
)
def test_a_poster_whose_cache_a_concurrent_read_moved_past_its_applying_step_gets_its_result(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, store_kind: str, after: str
) -> None:
    """Another process holds the lease; our call posts and waits. Meanwhile the folder applies
    our post at step 3 and a read-only call on another thread of our process revalidates the
    actor (its cache moves to step 3). Neither look of the poster checks the cached step
    itself: on an inline store (memory, local) the look reads step 4 with ``ahead == 1`` and
    takes step 4's ``posted`` part for the one that applied it: with a later plain commit
    (``a-later-step``) the caller gets ``CommitOutcomeUnknownError`` although its result is in
    step 3; with nothing later (``nothing-later``, inline or remote) it never sees its post
    applied and waits out ``commit_timeout`` (``CallPendingError`` for an applied call)."""
    if store_kind == "inline":
        store_spec.init(
            settings=vc.Settings(storage="", combine_after=1, combine_window=60.0, commit_timeout=2.0)
        )
    else:
        init_switchable(store_spec, combine_window=60.0, commit_timeout=2.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    assert vc.get_runtime().core("a").log.store.inline == (store_kind == "inline")
    _hold_lease_elsewhere("a")
    commit_behind_its_back("a")  # step 2: our next put loses, we post and wait
    real_poll = ActorCore._poll_steps
    looks = 0

    def poll(self: ActorCore, *args: Any, **kwargs: Any) -> bool:
        nonlocal looks
        looks += 1
        if looks == 1:
            # While the poster sleeps before its first look:
            _fold_our_post_elsewhere("a", "from step 3")  # the holder folds our post (step 3)
            reader = threading.Thread(target=log.applied.run)  # a read on another thread
            reader.start()
            reader.join(60)
            assert not reader.is_alive(), "a read on another thread hangs while a call waits to be folded"
            assert self.record is not None and self.record.step == 3
            if after == "a-later-step":
                _plain_commit_elsewhere("a")  # step 4: an ordinary commit of a third process
        return real_poll(self, *args, **kwargs)

    monkeypatch.setattr(ActorCore, "_poll_steps", poll)
    assert log.add.run("me/1") == "from step 3"


# -- 2. a post in doubt under a name another sender's post holds ---------------------------------
@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("failed_reads", [1, 10])
def test_a_fold_whose_own_post_is_in_doubt_under_another_senders_name_does_not_delete_that_post(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, failed_reads: int
) -> None:
    """Our post's name is taken by another sender's post (same millisecond, same random
    digits) and the one read back of it fails (a timeout): ``PostBox.send`` cannot tell whose
    it is and reports the post in doubt *under that name* (as documented). Our own fold then
    takes the object at that key for our post without reading it: it applies our calls
    directly and deletes the key after its put, which is the other sender's post, never
    applied (its caller waits out ``commit_timeout``; the call is lost)."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    other = foreign_box("a")
    post_adds(other, ["other/0"])
    [theirs] = pending_posts("a")
    # Our next post draws their name.
    prepare = PostBox.prepare

    def same_name(self: PostBox, calls: Any) -> Any:
        post = prepare(self, calls)
        return dataclasses.replace(post, key=theirs) if self is not other else post

    monkeypatch.setattr(PostBox, "prepare", same_name)
    # The read back of that key (after "already exists") fails once: a timeout, a 503.
    failed: list[str] = []

    def fail_read_back(operation: str, key: str) -> Exception | None:
        if operation == "get" and key == theirs and len(failed) < failed_reads:
            failed.append(key)
            return RetryableStorageError("injected: the read back timed out", key)
        return None

    store.fail = fail_read_back
    commit_behind_its_back("a")  # our next commit loses, posts (in doubt), takes the lease, folds
    log.add.run("me/1")
    assert failed == [theirs] * failed_reads
    monkeypatch.undo()
    log.add.run("me/2")  # another fold: the other sender's post, if still there, goes in now
    wait_for(lambda: "other/0" in log.applied.run())  # (3 s was a speed on a loaded host)
    applied = log.applied.run()
    assert "other/0" in applied or theirs in pending_posts("a"), (
        f"the other sender's post was deleted unapplied: {applied}, posts {pending_posts('a')}"
    )
    assert sorted(applied) == ["me/0", "me/1", "me/2", "other/0"], applied
    assert applied.index("me/1") < applied.index("me/2")


# -- 3. a batch that cannot post races past our pending post --------------------------------------
@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("holder", ["stalled", "gone"])
def test_a_batch_with_an_internal_call_does_not_pass_a_pending_post_of_ours(
    store_spec: StoreSpec, holder: str
) -> None:
    """``me/1`` was posted and its caller gave up (``CallPendingError``): the post is pending and
    our later calls must apply after it. A later batch that holds an internal call too (here
    ``vc.cancel_timer``'s CANCEL, made at the same time as ``me/2``) cannot be posted; it raced
    for the next step directly, so ``me/2`` committed while ``me/1`` was still pending.
    Now it waits behind the pending post: folded by us once the lease is free (``gone``:
    ``me/1`` then ``me/2``), or, while the holder stays stalled, the internal call fails after
    ``commit_timeout`` with nothing of it applied (``CommitConflictError``). (Since review-h26
    a contended batch is cut where internal and user calls meet: ``me/2`` is posted behind
    ``me/1``, pending as well, and applied after it.)"""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    _hold_lease_elsewhere("a")  # a holder that does not fold for now (stalled, or dying)
    commit_behind_its_back("a")  # step 2
    retune(commit_timeout=0.5)  # (after the setup: a loaded host's may pass 0.5 s)
    with pytest.raises(CallPendingError):
        log.add.run("me/1")  # loses, posts, waits for the holder's fold: gives up
    assert len(pending_posts("a")) == 1
    if holder == "gone":
        _hold_lease_elsewhere("a", 0.0)  # its lease released
    core = vc.get_runtime().core("a")
    # A cancel_timer call and me/2, made at the same time by two threads: one batch.
    cancel = PendingCall(CANCEL, ("no-such-timer",), {}, False, vc.ActorFuture(), uuid.uuid4().hex)
    core._enqueue(cancel)
    if holder == "gone":
        retune(commit_timeout=HANG)  # (0.5 s was me/1's bound: this fold may take longer)
        log.add.run("me/2")
        assert log.applied.run() == ["me/0", "me/1", "me/2"]
        return
    with pytest.raises(CallPendingError):
        log.add.run("me/2")  # posted behind me/1: pending too, never before it
    with pytest.raises(vc.CommitConflictError, match="still pending"):
        cancel.future.result(0)
    assert "me/2" not in log.applied.run()
    _hold_lease_elsewhere("a", 0.0)  # the holder is gone: our next call folds every pending post
    retune(commit_timeout=HANG)  # (0.5 s was the stalled holder's: this fold may take longer)
    log.add.run("me/3")
    assert log.applied.run() == ["me/0", "me/1", "me/2", "me/3"]


# -- 4. call_outcome says "never" while the fold's step put that carries the call is in flight ------
@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_does_not_say_never_while_a_step_put_carrying_the_call_may_still_land(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our post's every write failed (it never landed: ``PostInDoubtError``), so our own fold
    puts our calls in directly (the post is not listed). That fold's step put times out with the
    request in flight; every later attempt fails; the caller gets ``CallPendingError``.
    ``call_outcome`` then answers "not applied (and never will be)" (``LookupError``): the post
    object is absent and no step since the post applied the call. But the call is not carried
    by the post object alone: the in-flight step put carries it, and lands a moment later (the
    protocol's own premise: a put may land after its deadline). The call is then applied after
    ``call_outcome`` said never: a caller retrying on that answer applies it twice."""
    # The caller gives up at the second failure of its fold's step put (the timeout, then a
    # later attempt's refusal), not at a 1 s commit_timeout: on a slow store (0.1 s per
    # request) the post's failing writes used that up before the fold's step put was sent.
    give_up_when_the_fold_is_refused(monkeypatch, refusals=2)
    store = init_switchable(store_spec, combine_window=60.0, commit_timeout=HANG, fresh_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    commit_behind_its_back("a")  # step 2: our next put loses, we post
    step3 = f"/steps/{3:020d}"
    held: list[Any] = []
    inner_around = store._around

    async def stall_then_refuse(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and "/mail/" in key:
            raise RetryableStorageError("injected: the post's write failed before it was sent", key)
        if operation == "put" and key.endswith(step3):
            if not held:
                held.append(run)  # sent, not answered: it lands later
                raise StorageTimeoutError("injected: the step put timed out", key, write_in_flight=True)
            refused_later.append(key)
            raise RetryableStorageError("injected: the step put failed before it was sent", key)
        return await inner_around(operation, key, run, **kw)

    refused_later: list[str] = []
    store._around = stall_then_refuse  # type: ignore[method-assign]
    with pytest.raises(CallPendingError) as raised:
        log.add.run("me/1")
    assert held, "the fold's step put was never sent"
    assert refused_later, "no later attempt's step put was refused"
    said: Any
    try:
        said = vc.get_actor("a").call_outcome(raised.value.call_ids[0])
    except LookupError as exc:
        said = exc
    except CallPendingError as exc:
        said = exc
    _sync.sync(held[0]())  # the stalled request lands
    store._around = inner_around  # type: ignore[method-assign]
    applied = log.applied.run()
    assert "me/1" in applied
    assert not isinstance(said, LookupError), f"call_outcome said {said!r}, then the call applied: {applied}"


# -- 5. a posted call's exception that cannot be rebuilt cost every outcome of its step ------------
class _TwoArgError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")  # args is one string: unpickling calls E(args[0])
        self.code = code


def test_an_exception_that_cannot_be_rebuilt_does_not_cost_the_other_outcomes_of_its_step() -> None:
    """The outcomes of a fold's calls travel in one part of its step: an exception of one call
    that pickles but cannot be unpickled made the whole part unreadable (every poster of that
    step got an error instead of its result). It is recorded as a RecordedError naming it."""
    copyreg.dispatch_table.pop(_TwoArgError, None)  # tblib (Dask) may have made it round-trip
    from vactor_cloud.dedup import RecordedError
    from vactor_cloud.posting import decode_outcomes

    data = encode_outcomes({"a": Outcome(False, _TwoArgError(7, "declined")), "b": Outcome(True, [5])})
    got = decode_outcomes(data)
    assert got["b"] == Outcome(True, [5])
    assert not got["a"].ok and isinstance(got["a"].value, RecordedError)
    assert got["a"].value.type_name.endswith("_TwoArgError") and "declined" in str(got["a"].value)
