"""What the background fold ``call_outcome`` queues for a given-up post costs, in requests
(``ActorCore._fold_given_up_posts``): nothing more than a listing when another process folded
the post meanwhile, and no rounds of serving after its fold when nothing else waits (a process
that only asked, a serverless function's invocation, was kept listing the inbox about a hundred
times over ``combine_window``). A post that comes meanwhile is still folded, by us or its poster.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import pytest
from store_helpers import other_process
from test_combining import (
    HANG,
    fold_the_post_at_step_3,
    init_switchable,
    pending_posts,
    wait_for,
    wait_for_no_posts,
)
from test_delete_actor import submit_on
from test_review_h178_orphaned_post import (
    ask_until_known,
    give_up_at_the_first_lost_race,
    give_up_on_me_1,
    post_while_the_fold_commits,
)
from test_review_h179_given_up_fold import ask_once, asked_and_held

import vactor_cloud as vc
from vactor_cloud import _sync, folding
from vactor_cloud.cli.request_trace import Request, RequestTrace
from vactor_cloud.core import ActorCore
from vactor_cloud.lease import LeaseStore
from vactor_cloud.testing.lanes import StoreSpec

#: Request counts of this process's own protocol: memory and local suffice (no server's answers
#: are under test).
pytestmark = pytest.mark.vactor_lanes("memory", "local")


def quiet(core: ActorCore, leases: LeaseStore) -> bool:
    """No fold task queued or running, nothing serving, and the folder lease not ours nor held."""
    releasing = core._releasing
    return (
        not core._orphans_queued
        and core._drainer is None
        and not core._serving
        and not core._serve_queued
        and core._held_until == -math.inf
        and (releasing is None or releasing.done())
        and not _sync.sync(leases.read()).valid()
    )


def wait_until_quiet(store: Any) -> None:
    leases = LeaseStore(store.inner, "a", vc.get_runtime().settings.signing_key)  # (not traced)
    core = vc.get_runtime().core("a")
    assert wait_for(lambda: quiet(core, leases)), "the fold task or its serving did not end"


def kinds(requests: list[Request]) -> Counter[tuple[str, str]]:
    """Requests by kind and by what they address (lease, steps, mail, HEAD...)."""
    return Counter((r.kind, r.key.split("/")[2] if r.key.count("/") >= 2 else r.key) for r in requests)


def let_go_writing_nothing(store: Any, held: Any) -> tuple[list[Request], Counter[tuple[str, str]]]:
    """Let the held fold task go and trace its requests until the process is quiet: none may
    address the lease, none may be a PUT. The requests, and ``kinds`` of them."""
    # (The HEAD moves the setup's steps left pending fall due head_max_delay (10 s) after it:
    # a setup slower than that on a loaded host had one PUT land in the window; not the task's.)
    vc.get_runtime().heads.max_delay = 3600.0
    with RequestTrace(store).installed() as trace:
        held.let_go()
        wait_until_quiet(store)
    counted = kinds(trace.requests)
    assert not [r for r in trace.requests if r.key.endswith("/lease")], counted
    assert not [r for r in trace.requests if r.kind == "put"], counted
    return trace.requests, counted


@pytest.mark.usefixtures("runtime_off")
def test_a_post_another_process_folded_and_deleted_before_the_task_ran_costs_a_listing_no_lease(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folded (and its post deleted) by another process between the ask and the task's start:
    the task took the folder lease all the same (a GET and a PUT), folded nothing, and its
    rounds of serving listed the inbox for ``combine_window``, then released it (a PUT)."""
    store = init_switchable(store_spec)
    _, call_id, held = asked_and_held(monkeypatch)
    (key,) = pending_posts("a")
    fold_the_post_at_step_3(store, vc.get_runtime().core("a").log)
    _sync.sync(store.inner.delete(key))  # (the other folder deleted it after its step)
    requests, counted = let_go_writing_nothing(store, held)
    # One LIST (the post is gone); the probe for the newest step (step 3, then none at 4), which
    # tells our post applied: our next call need not post behind it.
    assert counted[("list", "mail")] == 1, counted
    assert len(requests) <= 4, counted
    assert vc.get_runtime().core("a")._outstanding is None
    assert ask_until_known(call_id)[0] == "from step 3"


@pytest.mark.usefixtures("runtime_off")
def test_one_ask_fold_on_an_idle_actor_lists_the_inbox_twice_and_releases_the_lease_at_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ask, its fold, and everything after until the process is quiet: the fold's listing,
    one more that finds nothing else waiting, and the lease released. It was about a hundred
    LISTs: the rounds of serving after the fold, for ``combine_window``."""
    store = init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    with RequestTrace(store).installed() as trace:
        ask_once(call_id)
        wait_until_quiet(store)
    counted = kinds(trace.requests)
    assert counted[("list", "mail")] == 2, counted
    lease = [r.kind for r in trace.requests if r.key.endswith("/lease")]
    assert lease == ["get", "put", "put"], counted  # read, taken, released
    # (the ask: a probe and a HEAD of the post; the fold: its post read, its step put, the post
    # deleted, HEAD moved)
    assert len(trace.requests) <= 12, counted
    assert ask_until_known(call_id)[0] == 2
    assert log.applied.run() == ["me/0", "me/1"]
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_a_post_that_lands_while_the_ask_fold_commits_is_folded_by_the_rounds_after_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's post written after the fold listed the inbox: the listing after the
    fold sees it, and the holder serves on (nobody else would fold it in this test)."""
    store = init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    posted = post_while_the_fold_commits(store, "f/0")
    assert ask_until_known(call_id)[0] == 2
    assert posted
    assert wait_for_no_posts("a") == []
    assert log.applied.run() == ["me/0", "me/1", "f/0"]


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_that_saw_the_ask_folds_lease_takes_it_once_released_and_folds_its_call(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process loses a race to the ask's fold, posts, and reads our lease held (its
    release is held back until the post is written): once we release it, that poster takes it
    and folds its own call (docs/protocol.md: a waiting poster reads the lease again when no
    step comes), long before its ``commit_timeout``."""
    store = init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    other = other_process(store_spec, combine_after=1, commit_timeout=HANG)
    try:
        assert submit_on(other, "a", "applied", readonly=True).result(HANG) == ["me/0"]  # its cache: step 2
        around = store._around
        stepped: list[str] = []
        future: list[Any] = []

        async def hold_the_release(operation: str, key: str, run: Any, **kw: Any) -> Any:
            if operation == "put" and "/steps/" in key:
                stepped.append(key)
            elif operation == "put" and key.endswith("/lease") and stepped and not future:
                # The fold's step is in: the other process calls now, loses its race to it, posts
                # and finds the lease ours; our release waits for its post.
                future.append(submit_on(other, "a", "add", "b/0"))
                for _ in range(int(HANG / 0.01)):
                    if await store.inner.list("actors/a/mail/"):
                        break
                    await asyncio.sleep(0.01)
            return await around(operation, key, run, **kw)

        store._around = hold_the_release  # type: ignore[method-assign]
        ask_once(call_id)
        assert wait_for(lambda: bool(future)), "the ask's fold never released the lease"
        assert future[0].result(HANG) == 3  # me/0, me/1 (applied by our fold), b/0
        leases = LeaseStore(store.inner, "a", vc.get_runtime().settings.signing_key)
        assert _sync.sync(leases.read()).holder == other.post_sender.id  # it took the lease
    finally:
        other.close()
    assert log.applied.run() == ["me/0", "me/1", "b/0"]


@pytest.mark.usefixtures("runtime_off")
def test_an_expired_given_up_post_is_deleted_by_the_ask_fold_and_told_never_applied(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post past its time (``SENDER_TTL / 2`` old: every post, here) gives an idle holder no
    work, but the ask's fold deletes it unapplied, and the ask then says never: a task that
    listed it as no work and did nothing left the ask pending for good."""
    init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    monkeypatch.setattr(folding, "SENDER_TTL", -1.0)  # (the folder's view: every post expired)
    with pytest.raises(LookupError):
        ask_until_known(call_id)
    assert wait_for_no_posts("a") == []
    assert log.applied.run() == ["me/0"]
