"""A hostile review of "an evicted folder-lease holder gives its lease up at its next round"
(h126): lease churn through a cache of one.

Two actors this process holds the folder leases of, called alternately through a cache of one
(each call evicts the other actor's core, a lease holder between rounds), while another
process posts to both all the time: every evicted holder gives its lease up at its next round,
the next call here takes the same core back (or a new one once it went) and takes the lease
again or posts. Nothing hangs; every call of either process applies once, in its order.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from actors import OrderLog
from test_combining import commit_behind_its_back, init_switchable
from test_review_actor_cache import (
    HANG,
    a_posting_process,
    add_call,
    applied_tokens,
    check_once_in_order,
    doubled_cores,
    evicted_between_rounds_once_set,
    holding_hot_through_a_cache_of_one,
    wait_until,
)

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.core import ActorCore
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.testing.lanes import StoreSpec

__all__ = ["doubled_cores"]  # (a fixture, used by name)

_ROUNDS = 12


@pytest.mark.usefixtures("runtime_off")
def test_two_contended_actors_alternating_through_a_cache_of_one_apply_every_call_once_in_order(
    store_spec: StoreSpec, doubled_cores: list[tuple[str, int]]
) -> None:
    init_switchable(store_spec, max_cached_actors=1, combine_window=60.0, lease_seconds=30.0)
    runtime = vc.get_runtime()
    actors = ["churn-a", "churn-b"]
    mine: dict[str, list[str]] = {a: ["me/0", "me/1"] for a in actors}
    for actor in actors:
        OrderLog.get_or_create(actor).add.run("me/0")
        commit_behind_its_back(actor)
        assert OrderLog.get_or_create(actor).add.run("me/1") > 0  # lost: took the lease and folded
    other = a_posting_process(store_spec)
    theirs: dict[str, list[str]] = {a: [] for a in actors}
    failures: list[BaseException] = []
    stop = threading.Event()

    def post_from_the_other_process() -> None:
        try:
            while not stop.is_set():
                for actor in actors:
                    token = f"other/{len(theirs[actor])}"
                    theirs[actor].append(token)
                    call = add_call(token)
                    other.core(actor).call(call)
                    call.future.result(HANG)
        except BaseException as exc:
            failures.append(exc)

    poster = threading.Thread(target=post_from_the_other_process)
    poster.start()
    try:
        for i in range(2, 2 + _ROUNDS):
            # (interleaved: the other process's calls keep coming between ours)
            wait_until(lambda i=i: min(map(len, theirs.values())) >= i - 1 or bool(failures), "no posts")
            for actor in actors:
                token = f"me/{i}"
                OrderLog.get_or_create(actor).add.run(token)
                mine[actor].append(token)
    finally:
        stop.set()
        poster.join(2 * HANG)
    assert not poster.is_alive(), "the other process's call hung"
    assert not failures, failures
    assert doubled_cores == []
    assert min(map(len, theirs.values())) >= _ROUNDS
    for actor in actors:
        check_once_in_order(applied_tokens(other, actor), {"me": mine[actor], "other": theirs[actor]})
    other.close()
    del runtime


@pytest.mark.usefixtures("runtime_off")
def test_a_shutdown_while_an_evicted_holders_release_is_in_flight_waits_for_it_and_leaves_no_lease(
    store_spec: StoreSpec, doubled_cores: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evicted holder gives its lease up at its next round; its release (in the
    background) is slow. Shutdown begins meanwhile: it waits for that release (the core is no
    longer in the cache, nor holding) and ends; no valid lease of ours is left behind, and
    nothing hangs."""
    store = holding_hot_through_a_cache_of_one(store_spec)
    runtime = vc.get_runtime()
    holder = runtime.core("hot")
    assert holder._holding()
    evict = evicted_between_rounds_once_set(monkeypatch, runtime, holder)
    releasing = threading.Event()
    release = ActorCore._release_lease

    async def slow_release(core: ActorCore, lease: Lease | None) -> None:
        releasing.set()
        await asyncio.sleep(0.3)
        await release(core, lease)

    monkeypatch.setattr(ActorCore, "_release_lease", slow_release)
    evict.set()
    wait_until(lambda: "hot" not in runtime._cores, "the serving holder was never evicted")
    assert releasing.wait(HANG), "the evicted holder never gave its lease up"
    vc.shutdown()
    assert runtime.finished_closing
    lease = _sync.sync(LeaseStore(store.inner, "hot", None).read())
    assert not lease.valid() and lease.holder == runtime.post_sender.id
    assert doubled_cores == []
