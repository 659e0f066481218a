"""Leftovers of earlier reviews in contention posting and creation, each shown by a test that
failed on the code it was written against."""

from __future__ import annotations

import multiprocessing
import threading
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from actors import OrderLog, Total
from chaos_workers import read_chain
from child_processes import join_all
from interrupts import Interrupted
from leftover_workers import bump_once
from test_combining import init_switchable

import vactor_cloud as vc
from vactor_cloud import _sync, posting
from vactor_cloud.batch import PendingCall
from vactor_cloud.future import ActorFuture
from vactor_cloud.lease import LeaseStore
from vactor_cloud.runtime import Runtime
from vactor_cloud.testing.faults import HoldOne
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


class _Counted(HoldOne):
    """Holds the answer of a step put that landed (once armed); records every request's
    operation and key."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, "put", "/steps/", answer_first=True)
        self.trail: list[tuple[str, str]] = []

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        self.trail.append((operation, key))
        return await super()._around(operation, key, run, **batch)


@pytest.mark.usefixtures("runtime_off")
def test_after_ctrl_c_stopped_a_commit_whose_step_landed_the_next_commit_takes_it_for_its_own(
    store_spec: StoreSpec, ctrl_c: Callable[[threading.Event], None]
) -> None:
    """Ctrl-C after the step put landed, before its answer was read: the process's next commit
    found that step in its way, took it for a lost race, posted its calls, took the folder
    lease and folded them (four requests more than the two puts, a lease on an actor nobody
    else writes: the next commits of the process posted too, for ``combine_window``)."""
    store_spec.init(settings=vc.Settings(storage="", combine_window=60.0, combine_after=1))
    runtime = vc.get_runtime()
    store = _Counted(runtime.store)
    runtime.store = store
    tally = Total.get_or_create("interrupted", 0)
    store.hold()
    ctrl_c(store.held)
    try:
        with pytest.raises(Interrupted):
            tally.add.run(10)
    finally:
        store.release.set()
    store.trail.clear()
    assert tally.add.run(1) == 11
    assert tally.add.run(1) == 12
    touched = [(op, key.split("/")[2] if key.count("/") >= 2 else key) for op, key in store.trail]
    assert [t for t in touched if t[1] != "steps"] == [], touched  # no post, no lease
    assert touched.count(("put", "steps")) == 3, touched  # ours met, and one put per call
    assert [len(r.calls) for r in read_chain("interrupted")[-3:]] == [1, 1, 1]  # no empty fold


_INITS: list[str] = []
_INITS_LOCK = threading.Lock()


@vc.virtual_actor
class Counted:
    """Records each run of its ``__init__`` (slowly: creators overlap)."""

    def __init__(self, tag: str) -> None:
        with _INITS_LOCK:
            _INITS.append(tag)
        time.sleep(0.05)
        self.tag = tag

    def get(self) -> str:
        return self.tag


@vc.virtual_actor
class Nested:
    """Creates another actor in its ``__init__``: ``Counted`` ``inner`` or, ``again``, itself."""

    def __init__(self, inner: str, again: str = "") -> None:
        if again:
            Nested.get_or_create(again, inner)
        self.inner = Counted.get_or_create(inner, "nested").get.run()

    def get(self) -> str:
        return self.inner


@pytest.mark.usefixtures("runtime_off")
def test_threads_creating_one_new_actor_in_one_process_run_its_init_once(store_spec: StoreSpec) -> None:
    """64 threads calling ``get_or_create`` on one new id each ran ``__init__`` (64 of 64),
    though only one creation commits: the others' runs were thrown away."""
    store_spec.init()
    _INITS.clear()
    start = threading.Barrier(64, timeout=60)  # (a thread that never came breaks it: no hang)
    tags: list[str] = []

    def create(n: int) -> None:
        start.wait()
        tags.append(Counted.get_or_create("one", f"t{n}").get.run())

    threads = [threading.Thread(target=create, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(tags) == 64 and len(set(tags)) == 1  # one actor for all
    assert tags[:1] == _INITS  # its __init__ ran once


@pytest.mark.usefixtures("runtime_off")
def test_a_creation_inside_an_init_runs_while_others_wait_and_one_of_its_own_id_fails_clearly(
    store_spec: StoreSpec,
) -> None:
    """A creation inside another's ``__init__`` goes on (no lock between ids); creating an actor
    inside its own ``__init__`` (on the same thread) says so, rather than waiting for itself."""
    store_spec.init()
    _INITS.clear()
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(Nested.get_or_create("outer", "in").get.run()))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["nested"] * 4 and _INITS == ["nested"]
    with pytest.raises(vc.errors.ReentrantCallError, match=r"'self'.*own __init__"):
        Nested.get_or_create("self", "in2", "self")
    with pytest.raises(vc.errors.ActorNotFoundError):
        vc.get_actor("self").get.run()


@pytest.mark.usefixtures("runtime_off")
def test_processes_store_one_class_body_when_its_methods_use_another_actor_class(tmp_path: Path) -> None:
    """cloudpickle tags each class it pickles by value with a random per-process id: the class's
    own id was made stable, but not those of the classes its methods use (another actor class,
    a plain class of its module), so each cold process stored its own copy of an unchanged
    body, an extra PUT on its first commit (for serverless users, every invocation). And the
    other actor class's definition went into the body with its cached body in it, or not,
    depending on whether the process had stored that class first."""
    url = (tmp_path / "store").as_uri()
    ctx = multiprocessing.get_context("spawn")
    for peer_first in (False, False, True):
        child = ctx.Process(target=bump_once, args=(url, "u", peer_first))
        child.start()
        assert join_all([child]) == [0]
    vc.init(url)
    assert len(_sync.sync(vc.get_runtime().store.list("actors/u/class/"))) == 1
