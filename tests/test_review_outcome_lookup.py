"""Review h78: the posting path's outcome lookup, far behind the step that holds it.

A poster that gave up (``CallPendingError``) asks ``call_outcome`` later. Between its
post and its question, any number of steps may land (other writers; a delete, then a new
actor under the id). The outcome (or the delete's ``ActorDeletedError``) is recorded in
one step; the lookup must find it however many steps came after, not call it pending.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
import uuid
from typing import Any

import pytest
from actors import OrderLog
from combining_workers import commit_behind_its_back
from store_helpers import retune
from test_combining import (
    HANG,
    Switchable,
    foreign_box,
    give_up_on_a_post,
    heal_and_fold,
    init_switchable,
    wait_for_no_posts,
)

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.deletion import after_tombstone, delete
from vactor_cloud.errors import ActorDeletedError
from vactor_cloud.keys import posts_prefix
from vactor_cloud.log import ActorLog
from vactor_cloud.posting import PostBox, PostedCall
from vactor_cloud.testing.faults import FaultConfig
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


#: lose one race and post; a commit_timeout no wait here reaches
POSTING_SETTINGS = vc.Settings(storage="", combine_after=1, combine_window=60.0, commit_timeout=20.0)


def _commit_more(log: Any, count: int) -> None:
    for i in range(count):
        log.add.run(f"later/{i}")


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("later_steps", [1, 20])
def test_call_outcome_finds_an_applied_call_however_many_steps_landed_since(
    store_spec: StoreSpec, later_steps: int
) -> None:
    store = init_switchable(store_spec, combine_window=60.0)
    log, raised = give_up_on_a_post(store, commit_timeout=0.3)
    assert heal_and_fold(store, log) == 3  # folds the given-up post first: its outcome is 2
    assert wait_for_no_posts("a") == []
    _commit_more(log, later_steps)
    assert vc.get_actor("a").call_outcome(raised.call_ids[0]) == 2


def delete_as_another_process(store: Any) -> None:
    """Another process deletes ``a`` (on the store under the faults: our step puts stay refused,
    so no fold of ours applies the pending post first); its tombstone fails the post."""
    runtime = vc.get_runtime()
    other = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    tombstone = _sync.sync(delete(other, runtime.settings, keep=lambda task: None))
    assert tombstone is not None and tombstone.posted, "the delete failed no pending post"
    vc.get_runtime().core("a").forget()


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("later_steps", [1, 12, 20])
def test_call_outcome_of_a_post_a_delete_failed_says_deleted_however_many_steps_the_next_actor_made(
    store_spec: StoreSpec, later_steps: int
) -> None:
    store = init_switchable(store_spec, combine_window=60.0)
    _, raised = give_up_on_a_post(store, commit_timeout=0.3)
    delete_as_another_process(store)
    store.fail = lambda op, key: None
    retune(commit_timeout=HANG)  # (0.3 s was the given-up call's alone)
    log = OrderLog.get_or_create("a")
    _commit_more(log, later_steps)
    with pytest.raises(ActorDeletedError):
        vc.get_actor("a").call_outcome(raised.call_ids[0])


class DeleteAndRemakeAfterOurPost(Switchable):
    """Once our post has landed (before the poster's first look), another process deletes the
    actor (its tombstone fails our post), makes a new one under the id, and commits
    ``later_steps`` steps on it: the poster's looks all come after every one of them."""

    later_steps = 0
    done = False

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        result = await super()._around(operation, key, run, **batch)
        if operation == "put" and key.startswith(posts_prefix("a")) and not self.done:
            self.done = True
            await self._delete_and_remake()
        return result

    async def _delete_and_remake(self) -> None:
        settings = vc.get_runtime().settings
        other = ActorLog(self.inner, "a", signing_key=settings.signing_key)
        tombstone = await delete(other, settings, keep=lambda task: None)
        assert tombstone is not None and tombstone.posted, "the delete failed no pending post"
        before = await other.read_step(tombstone.step - 1)
        assert before is not None
        record = dataclasses.replace(before, extra=after_tombstone(tombstone), calls=(), dedup=b"")
        for i in range(self.later_steps):
            record = dataclasses.replace(
                record,
                step=tombstone.step + 1 + i,
                parent=tombstone.step + i,
                writer="other",
                time=time.time(),
            )
            await other.put_step(record)


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("later_steps", [1, 12, 40])
def test_a_waiting_poster_whose_post_a_delete_failed_hears_deleted_however_many_steps_the_next_actor_made(
    store_spec: StoreSpec, later_steps: int
) -> None:
    store_spec.init(
        settings=vc.Settings(storage="", combine_after=1, combine_window=60.0, commit_timeout=20.0)
    )
    runtime = vc.get_runtime()
    store = DeleteAndRemakeAfterOurPost(runtime.store, FaultConfig())
    store.later_steps = later_steps
    runtime.store = store
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    with pytest.raises(ActorDeletedError):
        log.add.run("me/1")  # loses the race and posts; the delete fails the post
    assert store.done


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("later_steps", [1, 12, 40])
def test_a_waiting_poster_on_an_inline_store_whose_post_a_delete_failed_hears_deleted(
    store_spec: StoreSpec, later_steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, where the store answers on the caller's thread (memory, local): the poster's
    looks read steps there, not through the loop."""
    store_spec.init(
        settings=vc.Settings(storage="", combine_after=1, combine_window=60.0, commit_timeout=20.0)
    )
    runtime = vc.get_runtime()
    remake = DeleteAndRemakeAfterOurPost(runtime.store, FaultConfig())
    remake.later_steps = later_steps
    real_send_now = PostBox.send_now
    real_send = PostBox.send

    def send_now(box: PostBox, post: Any) -> bool:
        sent = real_send_now(box, post)
        if sent and not remake.done:
            remake.done = True
            _sync.sync(remake._delete_and_remake())
        return sent

    async def send(box: PostBox, post: Any) -> Any:
        sent = await real_send(box, post)
        if not remake.done:
            remake.done = True
            await remake._delete_and_remake()
        return sent

    monkeypatch.setattr(PostBox, "send_now", send_now)
    monkeypatch.setattr(PostBox, "send", send)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    with pytest.raises(ActorDeletedError):
        log.add.run("me/1")
    assert remake.done


@vc.virtual_actor(serializer="json")
class JsonCounter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, token: str) -> int:
        self.n += 1
        return self.n

    def __getstate__(self) -> int:
        return self.n

    def __setstate__(self, n: int) -> None:
        self.n = n


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("deleted_first", [True, False])
def test_call_outcome_of_a_posted_call_after_the_id_holds_a_json_actor_is_not_never(
    store_spec: StoreSpec, deleted_first: bool
) -> None:
    """This process posted a call to a pickle actor and gave up on it; the actor was then deleted
    (its tombstone failing the call, or after a fold applied it) and a json actor made under the
    id. ``call_outcome`` must tell what became of the call (ActorDeletedError, or its result),
    not LookupError "never posted": the call was posted (and applied, in the second case)."""
    store = init_switchable(store_spec, combine_window=60.0)
    log, raised = give_up_on_a_post(store, commit_timeout=0.3)
    if deleted_first:
        delete_as_another_process(store)
        store.fail = lambda op, key: None
    else:
        assert heal_and_fold(store, log) == 3  # folds the given-up post first: its outcome is 2
        assert vc.delete_actor("a") is True
    retune(commit_timeout=HANG)  # (0.3 s was the given-up call's alone)
    JsonCounter.get_or_create("a").add.run("json/0")
    if deleted_first:
        with pytest.raises(ActorDeletedError):
            vc.get_actor("a").call_outcome(raised.call_ids[0])
    else:
        assert vc.get_actor("a").call_outcome(raised.call_ids[0]) == 2
    with pytest.raises(LookupError, match="never posted"):
        vc.get_actor("a").call_outcome(uuid.uuid4().hex)  # one this process did not post: as before


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_on_a_deleted_actor_does_not_answer_with_an_earlier_actors_outcome(
    store_spec: StoreSpec,
) -> None:
    """A call id (a keyed call's is derived from the actor id and the key) applied by the id's
    first actor; that actor deleted, a second made, and deleted too. A process that did not
    post the call asks ``call_outcome``: the walk stops at the newest actor's incarnation
    (docs/protocol.md), also when the newest step is that actor's tombstone (which carries no
    incarnation of its own): not the first actor's result, which is not the second's."""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = foreign_box("a")
    call = PostedCall("add", pickle.dumps((("other/0",), {})), "the-same-call-id")
    _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)  # our post (next) gets a later millisecond: it sorts after, folded second
    commit_behind_its_back("a")
    assert log.add.run("me/1") == 3  # folds the other process's call: its outcome is 2
    assert vc.get_actor("a").call_outcome("the-same-call-id") == 2  # (the first actor: found)
    assert vc.delete_actor("a") is True
    OrderLog.get_or_create("a").add.run("second/0")
    with pytest.raises(LookupError):
        vc.get_actor("a").call_outcome("the-same-call-id")  # the second actor: not its call
    assert vc.delete_actor("a") is True
    with pytest.raises(LookupError):  # (ActorDeletedError is one)
        vc.get_actor("a").call_outcome("the-same-call-id")  # still not: the first actor's


@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_judges_the_serializer_by_the_newest_step_not_a_cached_class(
    store_spec: StoreSpec,
) -> None:
    """This process knew the id as a json actor (its core caches that class); another process
    deleted it and made a pickle actor there, whose fold applied a posted call. Asked for that
    call (by a process that did not post it), ``call_outcome`` must walk the pickle actor's
    steps, not answer from the cached class that its calls are never posted."""
    store = init_switchable(store_spec, combine_window=60.0)
    JsonCounter.get_or_create("a").add.run("json/0")
    # A pickle actor "b" whose step 3 applies another process's call "cid" (outcome 2) ...
    log = OrderLog.get_or_create("b")
    log.add.run("me/0")
    box = foreign_box("b")
    _sync.sync(box.send(box.prepare((PostedCall("add", pickle.dumps((("other/0",), {})), "cid"),))))
    time.sleep(0.003)  # our post (next) gets a later millisecond: it sorts after, folded second
    commit_behind_its_back("b")
    assert log.add.run("me/1") == 3
    # ... copied by "another process" after its delete of "a": "a" is now that pickle actor.
    settings = vc.get_runtime().settings
    theirs = ActorLog(store.inner, "a", signing_key=settings.signing_key)
    tombstone = _sync.sync(delete(theirs, settings, keep=lambda task: None))
    assert tombstone is not None
    source = ActorLog(store.inner, "b", signing_key=settings.signing_key)
    born = after_tombstone(tombstone)
    for i in range(4):
        step = _sync.sync(source.read_step(i))
        assert step is not None
        extra = {**step.extra, **born} if i else born
        copy = dataclasses.replace(step, step=tombstone.step + 1 + i, parent=tombstone.step + i, extra=extra)
        _sync.sync(theirs.put_step(copy))
    assert vc.get_runtime().core("a").definition.serializer == "json"  # (still cached here)
    assert vc.get_actor("a").call_outcome("cid") == 2
