"""Review h133: a folder lease given up as shutdown begins is released all the same.

A lease holder gives its lease up (``Folder._give_up_lease``) and releases it in the
background (``env.background``). A serving round that ended on a defect, or whose lease neared
its end (``_release_nearly_lapsed_lease``), gives it up after checking that the runtime has not
stopped; a shutdown that stops the runtime in between (its wait for running work timed out)
refuses that background release. ``shutdown_lease`` then saw the lease given up
(``_held_until == -inf``) and released nothing: the lease stayed in the store until it expired
(``lease_seconds``), and the posters of other processes waited for it. Now a lease of ours
given up and not known released is released by the shutdown (if-match on the version we wrote:
a lease written since, by another process or by a later take of ours, stays).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from actors import OrderLog
from combining_workers import commit_behind_its_back
from test_combining import Switchable, init_switchable
from test_review_actor_cache import HANG
from test_review_folding_round_errors import RoundDefect

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.lease import LeaseStore
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.lanes import StoreSpec

LEASE_SECONDS = 30.0


def a_holder(store_spec: StoreSpec) -> tuple[Runtime, ActorCore, LeaseStore]:
    """A runtime whose core of ``hot`` holds the folder lease (taken after a lost race)."""
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=LEASE_SECONDS)
    runtime = vc.get_runtime()
    hot = OrderLog.get_or_create("hot")
    hot.add.run("me/0")
    commit_behind_its_back("hot")
    assert hot.add.run("me/1") > 0  # lost: took the lease and folded
    holder = runtime.core("hot")
    assert holder._holding()
    leases = LeaseStore(store.inner, "hot", None)
    assert _sync.sync(leases.read()).valid()
    return runtime, holder, leases


def give_up_only_once_shutdown_began(monkeypatch: pytest.MonkeyPatch, holder: ActorCore) -> threading.Event:
    """``holder``'s next give-up of the lease waits until the shutdown reached ``shutdown_lease``
    (the runtime stopped: its background work refused), and that waits for the give-up: the
    order of the race, forced. The event returned is set when the give-up is reached."""
    reached, shutdown_began, given_up = threading.Event(), threading.Event(), threading.Event()
    give_up, shutdown_lease = ActorCore._give_up_lease, ActorCore.shutdown_lease

    def give_up_late(core: ActorCore, *judged: float) -> None:  # (judged: see _give_up_lease)
        if core is holder and not reached.is_set():
            reached.set()
            assert shutdown_began.wait(HANG), "the shutdown did not reach the lease"
            try:
                give_up(core, *judged)
            finally:
                given_up.set()
            return
        give_up(core, *judged)

    async def shutdown_after_the_give_up(core: ActorCore) -> None:
        if core is holder and reached.is_set():
            shutdown_began.set()
            await asyncio.to_thread(given_up.wait, HANG)
        await shutdown_lease(core)

    monkeypatch.setattr(ActorCore, "_give_up_lease", give_up_late)
    monkeypatch.setattr(ActorCore, "shutdown_lease", shutdown_after_the_give_up)
    return reached


def a_round_whose_lease_nears_its_end(monkeypatch: pytest.MonkeyPatch, holder: ActorCore) -> None:
    """``holder``'s next serving round finds its lease in its last quarter (renewed by folds
    only): it ends, and ``_release_nearly_lapsed_lease`` gives the lease up."""
    gather = ActorCore._gather_posts
    armed = [True]

    def lease_nears_its_end(core: ActorCore, wake: threading.Event | None = None) -> None:
        if core is holder and armed[0]:
            armed[0] = False
            core._held_until = time.monotonic() + 0.1 * LEASE_SECONDS
        gather(core, wake)

    monkeypatch.setattr(ActorCore, "_gather_posts", lease_nears_its_end)


def a_round_ended_by_a_defect(monkeypatch: pytest.MonkeyPatch, holder: ActorCore) -> None:
    gather = ActorCore._gather_posts
    armed = [True]

    def defect_once(core: ActorCore, wake: threading.Event | None = None) -> None:
        if core is holder and armed[0]:
            armed[0] = False
            raise RoundDefect("injected")
        gather(core, wake)

    monkeypatch.setattr(ActorCore, "_gather_posts", defect_once)


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("ending", [a_round_ended_by_a_defect, a_round_whose_lease_nears_its_end])
def test_a_lease_given_up_as_shutdown_stops_the_runtime_is_released_by_the_shutdown(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, ending: object
) -> None:
    runtime, holder, leases = a_holder(store_spec)
    reached = give_up_only_once_shutdown_began(monkeypatch, holder)
    assert callable(ending)
    ending(monkeypatch, holder)
    holder.wake()  # (the serving round between two listings: the next one begins now)
    assert reached.wait(HANG), "the serving round did not give the lease up"
    # The round holds the actor (shutdown waits for it): the wait times out, the runtime stops
    # (background work refused from now on), then the leases are released.
    runtime.close(timeout=0.3)
    lease = _sync.sync(leases.read())
    assert lease.holder == runtime.post_sender.id
    assert not lease.valid(), f"the lease stayed held for {lease.expires - time.time():.1f} s more"


@pytest.mark.usefixtures("runtime_off")
def test_shutdown_does_not_clear_a_lease_another_process_took_after_ours_was_given_up(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, holder, leases = a_holder(store_spec)
    reached = give_up_only_once_shutdown_began(monkeypatch, holder)
    a_round_ended_by_a_defect(monkeypatch, holder)
    holder.wake()
    assert reached.wait(HANG), "the serving round did not give the lease up"
    # Another process takes the lease over (ours expired, as far as its clock says).
    ours = _sync.sync(leases.read())
    theirs = _sync.sync(leases.write(ours, "another-process", LEASE_SECONDS, ours.step))
    assert theirs is not None
    runtime.close(timeout=0.3)
    lease = _sync.sync(leases.read())
    assert lease.holder == "another-process" and lease.valid() and lease.version == theirs.version


@pytest.mark.usefixtures("runtime_off")
def test_a_lease_whose_release_failed_is_released_by_the_shutdown(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background release of a given-up lease fails (the store refused the put): before,
    the lease was forgotten, and stayed held for ``lease_seconds`` after the shutdown."""
    runtime, holder, leases = a_holder(store_spec)
    store = runtime.store
    assert isinstance(store, Switchable)
    refused = threading.Event()
    inner_around = store._around

    async def refuse_the_release(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and key.endswith("/lease") and not refused.is_set():
            refused.set()
            raise RetryableStorageError("refused (injected)", key)
        return await inner_around(operation, key, run, **kw)

    store._around = refuse_the_release  # type: ignore[method-assign]
    a_round_ended_by_a_defect(monkeypatch, holder)
    holder.wake()
    assert refused.wait(HANG), "the lease was not given up"
    # (The release may fail on the IO loop before _start_release has stored its future.)
    deadline = time.monotonic() + HANG
    while (releasing := holder._releasing) is None:
        assert time.monotonic() < deadline, "the release was not started"
        time.sleep(0.01)
    releasing.result(HANG)
    assert _sync.sync(leases.read()).valid()  # the release failed: still held in the store
    vc.shutdown()
    lease = _sync.sync(leases.read())
    assert lease.holder == runtime.post_sender.id
    assert not lease.valid(), f"the lease stayed held for {lease.expires - time.time():.1f} s more"
