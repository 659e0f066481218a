"""A lease holder's serving round that ends on an unexpected exception (review h129).

``ActorCore._serve_round`` folds for other processes while this process's callers are quiet.
A round that ends on an exception that is no storage error (a defect, a store that raises
something else) stops serving. Before, the folder lease stayed held until it expired
(``lease_seconds``): other processes' posters read it as held and waited for a fold that no
longer came (2 s by default; 30 s here). Now the round gives the lease up at once (a
conditional PUT, as an idle holder does): a poster takes it over.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from actors import OrderLog
from test_combining import commit_behind_its_back, init_switchable
from test_review_actor_cache import HANG, add_call, wait_until

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.core import ActorCore
from vactor_cloud.lease import LeaseStore
from vactor_cloud.runtime import Runtime
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec


class RoundDefect(Exception):
    pass


def a_serving_round_ended_by_a_defect(monkeypatch: pytest.MonkeyPatch, holder: ActorCore) -> bool:
    """``holder``'s next serving round raises :class:`RoundDefect` (once); whether one did
    within ``HANG``."""
    armed, ended = threading.Event(), threading.Event()
    gather = ActorCore._gather_posts

    def defect_once(core: ActorCore, wake: threading.Event | None = None) -> None:
        if core is holder and armed.is_set():
            armed.clear()
            ended.set()
            raise RoundDefect("injected")
        gather(core, wake)

    monkeypatch.setattr(ActorCore, "_gather_posts", defect_once)
    armed.set()
    return ended.wait(HANG)


@pytest.mark.usefixtures("runtime_off")
def test_a_serving_round_ended_by_a_defect_gives_the_folder_lease_up_at_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0)
    runtime = vc.get_runtime()
    OrderLog.get_or_create("hot").add.run("me/0")
    commit_behind_its_back("hot")
    assert OrderLog.get_or_create("hot").add.run("me/1") > 0  # lost: took the lease and folded
    holder = runtime.core("hot")
    assert holder._holding()
    leases = LeaseStore(store.inner, "hot", None)
    assert _sync.sync(leases.read()).valid()
    assert a_serving_round_ended_by_a_defect(monkeypatch, holder), "no serving round ran"
    wait_until(lambda: not _sync.sync(leases.read()).valid(), "the lease was not given up", seconds=5.0)
    lease = _sync.sync(leases.read())
    assert lease.holder == runtime.post_sender.id
    # Another process's call that loses a race posts, finds the lease free and folds (before,
    # it waited for the lease to expire: about ``lease_seconds``); ours goes on after it.
    other = Runtime(
        Settings(
            storage=store_spec.url, storage_options=store_spec.options, combine_after=1, lease_seconds=30.0
        )
    )
    try:
        first = add_call("other/0")
        other.core("hot").call(first)
        assert first.future.result(HANG) > 0
        mine = other.core("hot").record
        assert mine is not None
        behind = dataclasses.replace(mine, step=mine.step + 1, parent=mine.step, writer="someone-else")
        _sync.sync(other.core("hot").log.put_step(behind))
        lost = add_call("other/1")
        started = time.monotonic()
        other.core("hot").call(lost)
        assert lost.future.result(HANG) > 0
        print(f"the other process's contended call took {time.monotonic() - started:.3f} s")
    finally:
        other.close()
    assert OrderLog.get_or_create("hot").add.run("me/2") > 0
