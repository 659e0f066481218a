"""A posted call whose caller gave up (``CallPendingError``) while nobody held the folder lease:
asking ``call_outcome`` again must get its outcome, with no other call to the actor.

A call that loses a race posts its batch, then tries the folder lease. When its
``commit_timeout`` has passed by the time the post lands (a slow store: one attempt outlasts
it), the batch fails as pending at once, before the lease is tried. With no live holder,
nothing folded the post until some unrelated call came (or a folder half an hour later deleted
it unapplied), and ``call_outcome``, which only read, said "pending" all that time. The same
when the holder that would have folded it dies after our post (its lease expires).
"""

from __future__ import annotations

import asyncio
import math
import pickle
import time
import weakref
from typing import Any

import pytest
from actors import OrderLog
from combining_workers import commit_behind_its_back
from garbage import full_collection
from test_combining import HANG, Switchable, foreign_box, init_switchable, pending_posts, wait_for_no_posts

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import CallPendingError
from vactor_cloud.lease import LeaseStore
from vactor_cloud.posting import PostedCall, decode_outcomes
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: another process's sender id: the holder of the foreign lease
_FOREIGN = "f" * 16


def give_up_at_the_first_lost_race(monkeypatch: pytest.MonkeyPatch, before: Any = None) -> None:
    """The next commit that loses a race finds its ``commit_timeout`` passed there (as a slow
    store's one attempt outlasts it): it posts its batch and gives up before it tries the lease.
    ``before(core)``: run just before (another process's doing). Once: later commits are left
    alone."""
    lost_race = ActorCore._lost_race
    done: list[bool] = []

    def deadline_passed(core: ActorCore, c: Any, lost: Any) -> Any:
        if not done and c.posted is None and not c.fold:
            done.append(True)
            if before is not None:
                before(core)
            c.give_up_at = -math.inf
        return lost_race(core, c, lost)

    monkeypatch.setattr(ActorCore, "_lost_race", deadline_passed)


def lease_store() -> LeaseStore:
    runtime = vc.get_runtime()
    return LeaseStore(runtime.store, "a", runtime.settings.signing_key)


def give_up_on_me_1() -> tuple[Any, str]:
    """``me/1`` loses its race (another writer's step 2), posts and gives up: the log and
    the call's id."""
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    with pytest.raises(CallPendingError) as raised:
        log.add.run("me/1")
    (call_id,) = raised.value.call_ids
    assert len(pending_posts("a")) == 1  # posted, and not applied
    return log, call_id


def post_while_the_fold_commits(store: Switchable, token: str) -> list[str]:
    """Another process posts ``add(token)`` as our first step put goes out (after the fold
    listed the inbox): the list gets that put's key once the post is written."""
    box = foreign_box("a")
    around = store._around
    posted: list[str] = []

    async def post_first(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and "/steps/" in key and not posted:
            await box.send(box.prepare((PostedCall("add", pickle.dumps(((token,), {})), token),)))
            posted.append(key)
        return await around(operation, key, run, **kw)

    store._around = post_first  # type: ignore[method-assign]
    return posted


def ask_until_known(call_id: str) -> tuple[Any, int]:
    """``call_outcome`` asked again, with pauses, until it is known (bounded: HANG); the
    outcome and how many times it said pending."""
    handle = vc.get_actor("a")
    pending = 0
    deadline = time.monotonic() + HANG
    while True:
        try:
            return handle.call_outcome(call_id), pending
        except CallPendingError:
            pending += 1
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"call_outcome still said pending after {HANG:g} s ({pending} times), "
                    f"posts left: {pending_posts('a')}"
                ) from None
            time.sleep(0.05)


@pytest.mark.usefixtures("runtime_off")
def test_a_call_given_up_before_it_tried_the_lease_is_folded_once_its_outcome_is_asked(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    assert not _sync.sync(lease_store().read()).valid()  # nobody holds the lease: nobody folds
    outcome, _ = ask_until_known(call_id)
    assert outcome == 2  # me/0 then me/1 (another writer's step copied the state): applied once
    assert log.applied.run() == ["me/0", "me/1"]
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_a_call_given_up_behind_a_holder_that_died_is_folded_once_the_lease_expired(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder's lease is valid when we give up; then it dies (the lease expires unrenewed).
    ``call_outcome`` must not fold while the lease is another's, and must once it expired."""
    init_switchable(store_spec)
    expires: list[float] = []

    def another_process_takes_the_lease(core: ActorCore) -> None:
        leases = lease_store()
        lease = _sync.sync(leases.write(_sync.sync(leases.read()), _FOREIGN, 3.0, 2))
        assert lease is not None
        expires.append(lease.expires)

    give_up_at_the_first_lost_race(monkeypatch, before=another_process_takes_the_lease)
    log, call_id = give_up_on_me_1()
    outcome, _ = ask_until_known(call_id)
    assert outcome == 2
    assert log.applied.run() == ["me/0", "me/1"]
    core = vc.get_runtime().core("a")
    applying = _sync.sync(core.log.read_step(3))  # the step after the one we lost to
    assert applying is not None and call_id in decode_outcomes(applying.posted)
    # Folded by us, and only once the other process's lease had expired (wall clock, both).
    assert applying.writer != "someone-else"
    assert applying.time >= expires[0]
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_the_lease_taken_to_fold_a_given_up_post_is_released_at_shutdown(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease ``call_outcome``'s fold took is kept while serving (another process's post
    came during the fold, and a long ``combine_window`` here): shutdown releases it, and does
    not hang on the rounds of serving."""
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0)
    give_up_at_the_first_lost_race(monkeypatch)
    _, call_id = give_up_on_me_1()
    posted = post_while_the_fold_commits(store, "f/0")
    assert ask_until_known(call_id)[0] == 2
    assert posted
    assert wait_for_no_posts("a") == []  # (f/0 folded by the rounds of serving)
    leases = LeaseStore(store.inner, "a", vc.get_runtime().settings.signing_key)
    held = _sync.sync(leases.read())
    assert held.valid() and held.holder == vc.get_runtime().post_sender.id
    vc.shutdown()
    assert not _sync.sync(leases.read()).valid()


@pytest.mark.usefixtures("runtime_off")
def test_a_given_up_post_is_folded_when_taking_the_lease_outlasts_combine_window(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a slow store the lease's put may take longer than ``combine_window``: the fold-only
    commit that follows must not find the fresh lease idle and give it up before it folds (then
    every ask took the lease and gave it up again, and nothing was ever folded)."""
    window = 0.2
    store = init_switchable(store_spec, combine_window=window)
    give_up_at_the_first_lost_race(monkeypatch)
    _, call_id = give_up_on_me_1()
    around = store._around

    async def slow_lease_puts(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and key.endswith("/lease"):
            await asyncio.sleep(window + 0.1)  # a put slower than combine_window
        return await around(operation, key, run, **kw)

    store._around = slow_lease_puts  # type: ignore[method-assign]
    assert ask_until_known(call_id)[0] == 2


@pytest.mark.usefixtures("runtime_off")
def test_a_given_up_post_is_folded_by_a_new_core_after_the_cache_evicted_the_old_one(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The actor evicted (a cache of one, another actor touched) between the give-up and the ask:
    a new core, with no step, class or postbox of its own yet, folds the post."""
    init_switchable(store_spec, max_cached_actors=1)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    gone = weakref.ref(vc.get_runtime().core("a"))
    OrderLog.get_or_create("b").add.run("b/0")  # "a" leaves the cache
    full_collection()
    assert gone() is None, "the evicted core is still alive: the ask would reuse it"
    assert ask_until_known(call_id)[0] == 2
    assert log.applied.run() == ["me/0", "me/1"]
