"""Leftovers of earlier reviews in contention posting and creation, each shown by a test that
failed on the code it was written against."""

from __future__ import annotations

import time
import types
import uuid
from typing import Any

import pytest
from combining_workers import OrderLog
from test_combining import init_switchable

import vactor_cloud as vc
from vactor_cloud import _sync, posting
from vactor_cloud.batch import PendingCall
from vactor_cloud.future import ActorFuture
from vactor_cloud.lease import LeaseStore
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _clock_behind(seconds: float) -> Any:
    """``time`` as seen by a module, its wall clock ``seconds`` behind the others'."""
    fake = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
    fake.time = lambda: time.time() - seconds
    return fake


def _call_on(runtime: Runtime, actor_id: str, method: str, *args: Any) -> Any:
    future: ActorFuture[Any] = ActorFuture()
    call = PendingCall.by_value(method, args, {}, readonly=False, future=future, call_id=uuid.uuid4().hex)
    runtime.core(actor_id).submit(call)
    return future.result(30)


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_whose_clock_runs_an_hour_behind_has_its_posts_applied_not_expired(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Posts are named by their poster's wall clock, and a folder deletes a post older than
    30 min by its own clock unapplied: every contended call of a process whose clock ran more
    than 30 min behind failed with CallPendingError ("may still be applied"), never applied."""
    settings = {
        "combine_window": 60.0,
        "commit_timeout": 3.0,
        "combine_after": 1,
        "fresh_window": 60.0,
        "lease_seconds": 30.0,
    }
    init_switchable(store_spec, **settings)
    folder = Runtime(vc.Settings(storage=store_spec.url, storage_options=store_spec.options, **settings))
    try:
        log = OrderLog.get_or_create("a")
        assert _call_on(folder, "a", "add", "them/0") == 1
        assert log.applied.run() == ["them/0"]
        assert log.add.run("me/0") == 2
        # The other process loses a race, posts, takes the lease and keeps folding.
        assert _call_on(folder, "a", "add", "them/1") == 3
        lease = _sync.sync(LeaseStore(folder.store, "a", None).read())
        assert lease.holder != ""
        monkeypatch.setattr(posting, "time", _clock_behind(3600.0))  # names our posts
        assert log.add.run("me/1") == 4  # loses the race to step 3, posts, the holder folds it
        assert log.applied.run() == ["them/0", "me/0", "them/1", "me/1"]
    finally:
        folder.close()
