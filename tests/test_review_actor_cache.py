"""Hostile review (h40): the process-wide actor cache against what keeps state on a core.

The cache (``Runtime._cores``, ``Runtime._evicted``, ``ActorCore.idle``) drops idle cores,
least recently used first; an evicted core still referenced is taken back, never doubled.
Each test drives many actors through a small cache while something keeps state on their
cores (the folder lease, a pending post, a fold serving others, timers, events) and counts
what is left: cores alive per actor, senders named in the post cursor, tasks, threads.
No timing in assertions: waits are bounded by ``HANG`` and end as soon as the state is reached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import math
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from actors import OrderLog
from garbage import full_collection
from quiet_runtime import late_serving_rounds, wait_until_quiet
from store_helpers import retune
from test_combining import Switchable, commit_behind_its_back, foreign_box, init_switchable, post_adds

import vactor_cloud as vc
from vactor_cloud import _sync, events, posting
from vactor_cloud.batch import PendingCall
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import CallPendingError, RetryableStorageError
from vactor_cloud.future import ActorFuture
from vactor_cloud.lease import Lease, LeaseStore
from vactor_cloud.runtime import Runtime
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: the longest a wait for what must happen lasts before it is called a hang
HANG = 60.0


def wait_until(condition: Callable[[], bool], what: str, seconds: float = HANG) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"hang: {what}")
        time.sleep(0.01)


def cores_of(runtime: Runtime) -> list[ActorCore]:
    """Every core of ``runtime`` alive in the process (cached, evicted, or only referenced)."""
    full_collection()
    return [o for o in gc.get_objects() if isinstance(o, ActorCore) and o.env is runtime]


@pytest.fixture
def doubled_cores(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every core created while another core of the same runtime and actor was alive:
    (actor id, how many were alive). Two live cores of one actor in one runtime would race
    each other (two senders, two folders, calls out of submission order)."""
    alive: dict[tuple[int, str], list[weakref.ref[ActorCore]]] = {}
    doubled: list[tuple[str, int]] = []
    original = ActorCore.__init__

    def init(self: ActorCore, env: object, actor_id: str, inbox: object) -> None:
        original(self, env, actor_id, inbox)  # type: ignore[arg-type]
        refs = alive.setdefault((id(env), actor_id), [])
        refs[:] = [r for r in refs if r() is not None]
        if refs:
            doubled.append((actor_id, len(refs)))
        refs.append(weakref.ref(self))

    monkeypatch.setattr(ActorCore, "__init__", init)
    yield doubled


def add_call(token: str) -> PendingCall:
    return PendingCall.by_value("add", (token,), {}, readonly=False, future=ActorFuture(), call_id="")


def applied_tokens(runtime: Runtime, actor_id: str) -> list[str]:
    core = runtime.load(actor_id)
    call = PendingCall.by_value("applied", (), {}, readonly=True, future=ActorFuture(), call_id="")
    core.read(call)
    result: list[str] = call.future.result(HANG)
    return result


def check_once_in_order(tokens: list[str], made: dict[str, list[str]]) -> None:
    """Every call made (per caller, in order) applied exactly once, in that caller's order."""
    counts = Counter(tokens)
    assert not [t for t, n in counts.items() if n > 1], f"applied twice: {counts.most_common(3)}"
    for who, calls in made.items():
        mine = [t for t in tokens if t.startswith(f"{who}/")]
        assert mine == calls, f"{who}: {mine} != {calls}"


# -- 1. the folder lease holder and eviction ---------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_weight_changes_racing_an_eviction_leave_the_cache_byte_count_exact(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ActorCore._reweigh`` set the core's ``_weight`` before the runtime added the change
    under its lock: an eviction in between subtracted the new weight though only the old had
    been added, and the change was then dropped (the core was no longer cached). Each such race
    moved ``Runtime._cached_bytes`` away from what the cache holds, for good: a long-running
    process's byte bound drifted (down: more held than ``max_cache_bytes``; up: every access
    evicting everything)."""
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_cached_actors=2))
    runtime = vc.get_runtime()
    for name in ("a", "b"):
        OrderLog.get_or_create(name).add.run(f"{name}/0")
    core = runtime.core("a")
    runtime.core("b")  # "a" is the least recently used now
    original = runtime.weigh
    entered, go = threading.Event(), threading.Event()

    def slow_weigh(of: ActorCore, delta: int) -> None:
        if of is core and threading.current_thread() is not threading.main_thread():
            entered.set()
            assert go.wait(HANG)
        original(of, delta)

    monkeypatch.setattr(runtime, "weigh", slow_weigh)
    # (A compaction's forget(), or a read that loads a newer step: neither holds the actor.)
    grows = threading.Thread(target=core.forget)
    grows.start()
    try:
        assert entered.wait(HANG)
        OrderLog.get_or_create("c").add.run("c/0")  # evicts "a" while its weight changes
        assert "a" not in runtime._cores
    finally:
        go.set()
        grows.join(HANG)
    monkeypatch.setattr(runtime, "weigh", original)
    runtime.core("a")  # taken back: its weight counts again
    actors, held = runtime.cached()
    assert held == sum(c._weight for c in runtime._cores.values()), (held, actors)


def commit_behind_our_back(runtime: Runtime, actor_id: str) -> None:
    """Another writer commits the next step: this runtime's cached step (trusted for
    ``fresh_window``) is behind, and its next call loses the race and posts."""
    core = runtime.core(actor_id)
    if core.record is None:
        runtime.run(core.ensure_loaded())
    mine = _sync.sync(core.revalidate())
    theirs = dataclasses.replace(mine, step=mine.step + 1, parent=mine.step, writer="someone-else")
    _sync.sync(core.log.put_step(theirs))


def lease_let_go(runtime: Runtime, actor_id: str) -> bool:
    """Whether the stored folder lease of ``actor_id`` is held by nobody now."""
    lease = _sync.sync(LeaseStore(runtime.store, actor_id, runtime.settings.signing_key).read())
    return not lease.valid()


@pytest.mark.usefixtures("runtime_off")
def test_a_contended_actor_evicted_and_loaded_again_names_one_sender_of_this_process_in_its_cursor(
    store_spec: StoreSpec, doubled_cores: list[tuple[str, int]]
) -> None:
    """Every step carries the post cursor (sender -> newest seq applied), and a sender stays
    in it for ``SENDER_TTL`` (an hour) after its last post. The sender was random per core: an
    actor evicted and loaded again posted under a new one, so a contended actor that a process
    with a small cache (more actors than ``max_cached_actors``) called now and then added a
    sender to the cursor at each call: an entry per call for an hour, in every step's PUT,
    parse and cached copy. One sender per runtime keeps one entry per process."""
    store_spec.init(
        settings=vc.Settings(
            storage=store_spec.url,
            max_cached_actors=1,
            fresh_window=300.0,
            combine_after=1,
            combine_window=0.05,  # the lease goes idle soon after its fold: the core can go
        )
    )
    runtime = vc.get_runtime()
    OrderLog.get_or_create("quiet").add.run("quiet/0")
    hot = OrderLog.get_or_create("hot")
    made: list[str] = []
    senders: set[str] = set()
    for i in range(12):
        commit_behind_our_back(runtime, "hot")
        made.append(f"me/{i}")
        assert hot.add.run(made[-1]) > 0  # lost the race: posted and folded under the lease
        core = runtime.core("hot")
        assert core._postbox is not None
        senders.add(core._postbox.sender)
        wait_until(lambda c=core: c.idle and c._held_until == -math.inf, "the folder never went idle")
        wait_until(lambda: lease_let_go(runtime, "hot"), "the idle lease was never released")
        del core
        OrderLog.get_or_create("quiet").add.run(f"quiet/{i + 1}")  # "hot" is evicted
        assert "hot" not in runtime._cores
        full_collection()  # (a core in a reference cycle is taken back until collected)
    record = runtime.load("hot").record
    assert record is not None
    check_once_in_order(applied_tokens(runtime, "hot"), {"me": made})
    assert doubled_cores == []
    cursor = posting.cursor_of(record.extra)
    assert len(cursor) == 1, f"{len(senders)} senders of one process, {len(cursor)} in the cursor"


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize(
    "dropped", ["", "dropped", "rounds-late"], ids=["cached", "core-dropped", "core-dropped-rounds-late"]
)
@pytest.mark.parametrize("folder", ["this-process", "another-process"])
def test_a_read_after_a_posted_call_returned_sees_it_with_a_long_fresh_window(
    store_spec: StoreSpec,
    folder: str,
    dropped: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pin (it passed before; h106 looked for a way it fails and found none): once a writer
    call posted under contention returns, a read-only call of the same process sees its
    write, with the cache trusted for 300 s, whichever process folded it, and whether the core
    that waited for it is still cached or was evicted and dropped (a new core loads). Every
    way an outcome reaches its caller first moves the core to the step holding it (a fold's
    own commit, or the poster's read of the applying step), and every read probes past the
    step its core holds (one GET).

    ``core-dropped-rounds-late``: the holder's rounds of serving start late, as on a loaded
    host: it is idle between them while it still serves, and the test, which waited for
    ``idle`` before dropping the core, found it alive (its next round held it)."""
    if dropped == "rounds-late":
        late_serving_rounds(monkeypatch)
    store = init_switchable(
        store_spec, fresh_window=300.0, max_cached_actors=1, combine_window=0.05, lease_seconds=30.0
    )
    runtime = vc.get_runtime()
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    other: Runtime | None = None
    posted = threading.Event()
    if folder == "another-process":
        # It holds the folder lease: our post waits for its fold (its next call, once ours landed).
        other = Runtime(
            Settings(
                storage=store_spec.url,
                storage_options=store_spec.options,
                combine_window=60.0,
                lease_seconds=30.0,
            )
        )
        request.addfinalizer(other.close)
        assert other.load("a")._lease_for_fold()
        around = store._around

        async def note_posts(operation: str, key: str, run: Any, **kw: Any) -> Any:
            result = await around(operation, key, run, **kw)
            if operation == "put" and "/mail/" in key:
                posted.set()
            return result

        store._around = note_posts  # type: ignore[method-assign]
    commit_behind_our_back(runtime, "a")  # step 2: our put of it loses, the call is posted

    def fold_as_another_process() -> None:
        if other is not None and posted.wait(HANG):
            call = add_call("them/0")  # folds the pending posts, ours first, with its own call
            other.call("a", call)
            call.future.result(HANG)

    folds = threading.Thread(target=fold_as_another_process)
    folds.start()
    try:
        assert log.add.run("me/1") == 2
    finally:
        posted.set()
        folds.join(HANG)
    core = runtime.core("a")
    record = core.record
    # Step 3 folded our post: alone (our fold), or with the other process's call (its fold).
    assert record is not None and record.step == 3 and posting.cursor_of(record.extra)
    assert len(record.calls) == (1 if other is None else 2)
    if dropped:
        # (Not until ``core.idle``: a lease holder is idle between two rounds of serving, and
        # evicted then, its next round and the lease release it starts keep it alive a moment.)
        wait_until_quiet(runtime)
        gone = weakref.ref(core)
        del core
        OrderLog.get_or_create("b")  # "a" is evicted (max_cached_actors=1)
        full_collection()
        assert gone() is None
    assert log.applied.run() == ["me/0", "me/1"] + ([] if other is None else ["them/0"])


# -- 2. a post given up on, a kept exception -------------------------------------------------------
def refuse_step_puts(operation: str, key: str) -> Exception | None:
    """(A new error each time: one instance raised again and again keeps every traceback.)"""
    if operation == "put" and "/steps/" in key:
        return RetryableStorageError("injected: step puts refused", key)
    return None


@pytest.mark.usefixtures("runtime_off")
def test_actors_whose_posted_calls_were_given_up_on_leave_the_cache_and_their_posts_still_go_first(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that stops waiting for a fold gets ``CallPendingError``; its post stays and the
    core remembered it (``_outstanding``: the actor's next batch must post after it). A core
    with such a post was never idle, so never evicted: after a store outage in which many
    actors' calls were given up on, every one of them stayed cached (its state too) past
    ``max_cached_actors`` and ``max_cache_bytes`` until that actor was called again, for good
    if it never was. The pending post is the runtime's to keep now, by actor (a small record
    without the arguments): the core goes, and the actor's next call, on a new core, still
    posts after the pending post, which applies first."""
    # (The warnings logged name the storage error, whose traceback holds the core's frames;
    # pytest's log capture keeps every record of the test.)
    monkeypatch.setattr(logging.getLogger("vactor_cloud"), "disabled", True)
    store = init_switchable(store_spec, max_cached_actors=2, combine_window=0.05, fresh_window=300.0)
    runtime = vc.get_runtime()
    actors = [f"given-up-{i}" for i in range(8)]
    big = "me/1" + "x" * 10_000
    for actor in actors:
        store.fail = lambda op, key: None
        retune(commit_timeout=HANG)  # (the setup's: on a loaded emulator it may take longer)
        OrderLog.get_or_create(actor).add.run("me/0")
        core = runtime.core(actor)  # (held: its cached step stays, trusted and stale)
        commit_behind_our_back(runtime, actor)  # the next call loses and posts
        store.fail = refuse_step_puts
        retune(commit_timeout=0.3)  # the outage's bound, for the call given up on alone
        with pytest.raises(CallPendingError):
            OrderLog.get_or_create(actor).add.run(big)
        del core
    store.fail = lambda op, key: None
    OrderLog.get_or_create("other").add.run("other/0")

    def within_the_cache() -> bool:
        # (Each took the free lease to fold its own post and serves others until the lease is
        # idle: busy at an access, it stays cached until the next.)
        runtime.core("other")
        return len(cores_of(runtime)) <= 2

    wait_until(within_the_cache, f"{sorted(runtime._cores)} cached")
    # The outage is over: the calls below post behind the pending posts and wait for a fold,
    # which on a loaded emulator takes longer than the outage's 0.3 s (they were given up on too,
    # CallPendingError, in 1 of 3 full runs on moto).
    retune(commit_timeout=HANG)
    for actor in actors:
        assert OrderLog.get_or_create(actor).add.run("me/2") == 3  # after the pending post
        assert applied_tokens(runtime, actor) == ["me/0", big, "me/2"]


class _SteppedBack:
    """``time`` as the posting module sees it, its wall clock stepped ``by`` seconds back."""

    def __init__(self, by: float) -> None:
        self.by = by

    def time(self) -> float:
        return time.time() - self.by

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


@pytest.mark.usefixtures("runtime_off")
def test_a_post_given_up_on_goes_first_after_its_core_went_and_the_clock_stepped_back(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder applies posts in key order (their names begin with the time) and takes a
    sender's post with a seq below one it applied for stale. A PostBox names its posts after
    its own last one, whatever the clock does; a new core's box (the actor was evicted) knew
    nothing of the pending post of the old one: with the wall clock stepped back, the next
    post sorted first, was applied, and the pending one, older by seq, was deleted unapplied."""
    monkeypatch.setattr(logging.getLogger("vactor_cloud"), "disabled", True)
    store = init_switchable(store_spec, max_cached_actors=1, combine_window=0.05, fresh_window=300.0)
    runtime = vc.get_runtime()
    actor = OrderLog.get_or_create("a")
    actor.add.run("me/0")
    core = runtime.core("a")
    commit_behind_our_back(runtime, "a")
    store.fail = refuse_step_puts
    retune(commit_timeout=0.3)  # the outage's bound, for the call given up on alone
    with pytest.raises(CallPendingError):
        actor.add.run("me/1")
    store.fail = lambda op, key: None
    retune(commit_timeout=HANG)
    del core
    OrderLog.get_or_create("b").add.run("b/0")  # "a" is evicted
    wait_until(lambda: not [c for c in cores_of(runtime) if c.actor_id == "a"], "the core of 'a' stayed")
    monkeypatch.setattr(posting, "time", _SteppedBack(30.0))
    # The outage is over: me/2 posts behind the pending post and folds both, on a loaded
    # emulator in more than the outage's 0.3 s (as in the test above).
    assert actor.add.run("me/2") == 3
    assert applied_tokens(runtime, "a") == ["me/0", "me/1", "me/2"]


# -- 1. lease holders evicted under load, two runtimes -------------------------------------------------
def loop_tasks() -> int:
    async def count() -> int:
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    return _sync.sync(count())


def runtime_threads() -> list[str]:
    """Threads alive, but the process's IO loop thread (started by the first test of this worker
    to need it, kept for the process's life) and its default executor (shared by the process,
    bounded: the local store's file calls run there)."""
    return sorted(
        t.name for t in threading.enumerate() if t.name != "vactor-io" and not t.name.startswith("asyncio_")
    )


@pytest.mark.usefixtures("runtime_off")
def test_lease_holders_evicted_under_load_are_never_doubled_and_every_call_applies_once_in_order(
    store_spec: StoreSpec, doubled_cores: list[tuple[str, int]]
) -> None:
    """Three callers (two threads of a runtime whose cache holds one actor, one of another
    runtime: another process) call four actors in turn, each trusting its cached step (every
    call may lose a race, post, take the lease and fold). The first runtime evicts at almost
    every call, lease holders serving others' posts among them. No runtime ever has two live
    cores of one actor; every call applies once, in each caller's order; once both runtimes
    are shut down no lease is held, and no task or thread of theirs is left."""
    actors = [f"rot-{i}" for i in range(4)]
    tasks_before = loop_tasks()
    threads_before = runtime_threads()
    tuning = {"combine_after": 1, "combine_window": 0.2, "fresh_window": 300.0}
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_cached_actors=1, **tuning))
    small = vc.get_runtime()
    other = Runtime(Settings(storage=store_spec.url, storage_options=store_spec.options, **tuning))
    for actor in actors:
        OrderLog.get_or_create(actor)
    made: dict[str, dict[str, list[str]]] = {a: {} for a in actors}
    failures: list[BaseException] = []

    def caller(runtime: Runtime, who: str, calls: int) -> None:
        try:
            for i in range(calls):
                actor = actors[(i + len(who)) % len(actors)]
                token = f"{who}/{i}"
                made[actor].setdefault(who, []).append(token)
                call = add_call(token)
                runtime.core(actor).call(call)
                call.future.result(HANG)
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=caller, args=(small, "s1", 60)),
        threading.Thread(target=caller, args=(small, "s22", 60)),
        threading.Thread(target=caller, args=(other, "o333", 60)),
    ]
    before = {k: vc.stats()[k] for k in ("evictions", "folded_calls")}
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(4 * HANG)
        assert not failures, failures
        assert not any(t.is_alive() for t in threads)
        for actor in actors:
            check_once_in_order(applied_tokens(other, actor), made[actor])
        assert doubled_cores == []
        moved = {k: vc.stats()[k] - v for k, v in before.items()}
        assert moved["evictions"] > 0 and moved["folded_calls"] > 0, moved
    finally:
        other.close()
        vc.shutdown()
    full_collection()
    tasks_after = loop_tasks()
    # (The S3 store's request threads are told to end by its close, and end just after it.)
    wait_until(lambda: runtime_threads() == threads_before, f"threads left: {runtime_threads()}", seconds=10)
    for actor in actors:
        assert lease_let_go(vc.get_runtime(), actor), f"{actor}: a lease is held after shutdown"
    vc.shutdown()
    assert tasks_after <= tasks_before


# -- 3. a long-running process: many actors, posting, events, timers ------------------------------------
@vc.virtual_actor
class Ticker:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    def arm(self) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("add", after=3600, args=("timer",), key="later")

    @vc.virtual_actor.on_event("ping")
    def on_ping(self, payload: str) -> None:
        self.tokens.append(payload)

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


@pytest.mark.usefixtures("runtime_off")
def test_many_contended_actors_with_events_and_timers_leave_counts_bounded_by_the_cache(
    store_spec: StoreSpec,
) -> None:
    """A long-running process (a cache of 8) calls 48 distinct actors (six times its cache), each
    also written by another runtime behind its back (its call loses, posts, takes the lease and
    folds), sent an event and armed with a timer. Once quiet, what it holds is counted, not
    timed: live cores within the cache's limit, no pending post remembered, no task left on the
    IO loop beyond what was there, pool threads within ``max_workers``, the cursor of each actor
    naming this process once."""
    tasks_before = loop_tasks()
    tuning = {"combine_after": 1, "combine_window": 0.05, "fresh_window": 300.0}
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_cached_actors=8, **tuning))
    runtime = vc.get_runtime()
    other = Runtime(Settings(storage=store_spec.url, storage_options=store_spec.options, **tuning))
    before = {k: vc.stats()[k] for k in ("evictions", "folded_calls")}
    try:
        for i in range(48):  # (120 took 115 s of a CI run on moto: six times the cache will do)
            name = f"tick-{i}"
            actor = Ticker.get_or_create(name)
            actor.add.run("me/0")
            call = add_call("other/0")
            other.core(name).call(call)  # behind our back: our cached step is stale now
            call.future.result(HANG)
            assert actor.add.run("me/1") == 3  # lost the race: posted and folded
            vc.send_event(name, "ping", "event")
            events.process_events(name)
            actor.arm.run()
            assert actor.add.run_async("me/2").result(HANG) == 5
        moved = {k: vc.stats()[k] - v for k, v in before.items()}
        assert moved["evictions"] > 0 and moved["folded_calls"] > 0, moved

        def within_the_cache() -> bool:
            # (The cache drops idle cores on an access: those still busy, serving others' posts,
            # at the last one stay cached until the next.)
            runtime.core("tick-0")
            return len(cores_of(runtime)) <= 8

        wait_until(within_the_cache, "cores left beyond the cache")
        assert runtime.pending_posts == {}
        assert len(runtime.executor.threads()) <= runtime.settings.max_workers
        for i in range(0, 48, 7):
            record = runtime.load(f"tick-{i}").record
            assert record is not None
            assert len(posting.cursor_of(record.extra)) <= 2  # this process, and the other
    finally:
        other.close()
        vc.shutdown()
    full_collection()
    assert loop_tasks() <= tasks_before


def holding_hot_through_a_cache_of_one(store_spec: StoreSpec) -> Switchable:
    """``vc.init`` with a cache of one, holding the folder lease of ``hot`` (its call ``me/1``
    lost a race, took the lease and folded), ``cold`` called once before it."""
    store = init_switchable(store_spec, max_cached_actors=1, combine_window=60.0, lease_seconds=30.0)
    OrderLog.get_or_create("cold").add.run("cold/0")
    OrderLog.get_or_create("hot").add.run("me/0")
    commit_behind_its_back("hot")
    assert OrderLog.get_or_create("hot").add.run("me/1") > 0  # lost: took the lease and folded
    return store


def a_posting_process(store_spec: StoreSpec) -> Runtime:
    """Another process on the same store: it posts at its first lost race, with long leases."""
    return Runtime(
        Settings(
            storage=store_spec.url,
            storage_options=store_spec.options,
            combine_after=1,
            combine_window=60.0,
            lease_seconds=30.0,
        )
    )


def evicted_between_rounds_once_set(
    monkeypatch: pytest.MonkeyPatch, runtime: Runtime, holder: ActorCore
) -> threading.Event:
    """An event: once set, ``holder`` (``hot``, in ``runtime``'s cache of one) is evicted at the
    start of its next serving round (the cache takes ``cold`` in); once per setting."""
    evict = threading.Event()
    serve = ActorCore._serve

    def evicted_between_rounds(core: ActorCore) -> None:
        if core is holder and evict.is_set():
            evict.clear()
            runtime.core("cold")  # the cache holds one: "hot", between rounds (idle), goes
        serve(core)

    monkeypatch.setattr(ActorCore, "_serve", evicted_between_rounds)
    return evict


@pytest.mark.usefixtures("runtime_off")
def test_an_evicted_lease_holder_gives_its_lease_up_is_taken_back_if_called_meanwhile_and_leaves_no_lease(
    store_spec: StoreSpec, doubled_cores: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``idle`` ignores the folder lease: a holder between two rounds of serving others is
    evicted. Its next round serves no more: it gives the lease up and releases it in the
    background (it went on folding, here until 60 s after the last post it folded). The actor's
    next call here while that release is in flight (it refers to the core) gets that same core
    back (one sender, one folder, not two); losing a race, it takes the lease again and folds
    the post waiting meanwhile, and the stale release leaves that new lease alone. Evicted
    again, it gives the lease up again; shutdown, which waits for releases in flight, leaves
    no valid lease. Every call applies once."""
    store = holding_hot_through_a_cache_of_one(store_spec)
    runtime = vc.get_runtime()
    holder = runtime.core("hot")
    assert holder._holding()
    evict = evicted_between_rounds_once_set(monkeypatch, runtime, holder)
    releasing, go = threading.Event(), threading.Event()
    release = ActorCore._release_lease

    async def held_release(core: ActorCore, lease: Lease | None) -> None:
        releasing.set()
        deadline = time.monotonic() + HANG
        while not go.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await release(core, lease)

    monkeypatch.setattr(ActorCore, "_release_lease", held_release)

    def evict_the_holder() -> None:
        evict.set()
        wait_until(lambda: "hot" not in runtime._cores, "the serving holder was never evicted")

    evict_the_holder()
    assert releasing.wait(HANG), "the evicted holder never gave its lease up"
    assert not holder._holding()
    post_adds(foreign_box("hot"), ["other/0"])
    assert runtime.core("hot") is holder  # taken back while its release is in flight
    commit_behind_its_back("hot")
    OrderLog.get_or_create("hot").add.run("me/2")  # lost: took the lease again and folded
    assert holder._holding()
    go.set()
    wait_until(lambda: holder._releasing is not None and holder._releasing.done(), "the release hung")
    lease = _sync.sync(LeaseStore(store.inner, "hot", None).read())
    assert lease.valid() and lease.holder == runtime.post_sender.id  # the stale release left it
    evict_the_holder()
    wait_until(lambda: not holder._holding(), "the holder evicted again kept its lease")
    tokens = applied_tokens(runtime, "hot")
    check_once_in_order(tokens, {"me": ["me/0", "me/1", "me/2"], "other": ["other/0"]})
    vc.shutdown()
    assert doubled_cores == []
    lease = _sync.sync(LeaseStore(store.inner, "hot", None).read())
    assert not lease.valid() and lease.holder == runtime.post_sender.id


@pytest.mark.usefixtures("runtime_off")
def test_an_evicted_lease_holder_releases_its_lease_at_its_next_round_and_goes_while_others_post(
    store_spec: StoreSpec, doubled_cores: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``idle`` ignores the folder lease: a holder between two rounds of serving others is
    evicted. Its pool task kept it alive and folding, its state outside ``max_cache_bytes``,
    until its lease went idle (``combine_window``, here 60 s, after the last post of another
    process it folded): another process posting all the time kept it for good, and a process
    holding the leases of many contended actors kept all their states. Evicted, the holder now
    serves no further round: it releases its lease, as an idle one does, and goes; the other
    process's poster takes the lease over and folds. Every call applies once, in its order."""
    holding_hot_through_a_cache_of_one(store_spec)
    runtime = vc.get_runtime()
    assert runtime.core("hot")._holding()
    holder = weakref.ref(runtime.core("hot"))
    other = a_posting_process(store_spec)
    try:
        # The other process has seen our lease: its calls post, and our holder folds them.
        assert not other.load("hot")._lease_for_fold()
        evict, evicted = threading.Event(), threading.Event()
        rounds_after_eviction = 0
        serve = ActorCore._serve

        def evicted_between_rounds(core: ActorCore) -> None:
            nonlocal rounds_after_eviction
            if core.env is runtime and core.actor_id == "hot":
                if evict.is_set() and not evicted.is_set():
                    runtime.core("cold")  # the cache holds one: "hot", between rounds (idle), goes
                    evicted.set()
                if evicted.is_set():
                    rounds_after_eviction += 1
            serve(core)

        monkeypatch.setattr(ActorCore, "_serve", evicted_between_rounds)
        made: list[str] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def post_from_the_other_process() -> None:
            try:
                after = 0
                while after < 20 and not stop.is_set():
                    token = f"other/{len(made)}"
                    made.append(token)
                    call = add_call(token)
                    other.core("hot").call(call)
                    call.future.result(HANG)
                    if evicted.is_set():
                        after += 1
                    elif len(made) == 3:
                        evict.set()  # our holder folded a few: evicted at its next round
            except BaseException as exc:
                failures.append(exc)

        poster = threading.Thread(target=post_from_the_other_process)
        poster.start()
        try:
            poster.join(4 * HANG)
        finally:
            stop.set()
            poster.join(HANG)
        assert not failures, failures
        assert evicted.is_set() and len(made) >= 23
        # It folded nothing past the round it was evicted between (the one queued then).
        assert rounds_after_eviction <= 2, f"the evicted holder served {rounds_after_eviction} rounds"

        def holder_gone() -> bool:
            full_collection()
            return holder() is None

        wait_until(holder_gone, "the evicted holder stayed alive")
        lease = _sync.sync(LeaseStore(vc.get_runtime().store, "hot", None).read())
        assert not (lease.valid() and lease.holder == runtime.post_sender.id)
        check_once_in_order(applied_tokens(other, "hot"), {"me": ["me/0", "me/1"], "other": made})
        assert doubled_cores == []
    finally:
        other.close()
        vc.shutdown()


@pytest.mark.usefixtures("runtime_off")
def test_a_process_holding_the_leases_of_many_actors_keeps_no_more_cores_than_its_cache_while_others_post(
    store_spec: StoreSpec, doubled_cores: list[tuple[str, int]]
) -> None:
    """Six contended actors through a cache of two: this process took each one's folder lease
    (a lost race), and another process posts to all six all the time. Each holder the cache
    evicts gives its lease up at its next round and goes: while the other process still posts,
    no more cores than the cache holds are alive (each evicted holder kept its state, and
    served, until 60 s after the last post it folded, for good while others posted). Every
    call applies once, in its caller's order."""
    init_switchable(store_spec, max_cached_actors=2, combine_window=60.0, lease_seconds=30.0)
    runtime = vc.get_runtime()
    actors = [f"held-{i}" for i in range(6)]
    made: dict[str, dict[str, list[str]]] = {a: {"me": ["me/0", "me/1"], "other": []} for a in actors}
    for actor in actors:
        OrderLog.get_or_create(actor).add.run("me/0")
        commit_behind_its_back(actor)
        assert OrderLog.get_or_create(actor).add.run("me/1") > 0  # lost: took the lease and folded
    other = a_posting_process(store_spec)
    failures: list[BaseException] = []
    stop = threading.Event()

    def post_from_the_other_process() -> None:
        try:
            for actor in actors:
                other.load(actor)._lease_for_fold()  # held by us: its calls post (else it folds)
            while not stop.is_set():
                for actor in actors:
                    token = f"other/{len(made[actor]['other'])}"
                    made[actor]["other"].append(token)
                    call = add_call(token)
                    other.core(actor).call(call)
                    call.future.result(HANG)
        except BaseException as exc:
            failures.append(exc)

    poster = threading.Thread(target=post_from_the_other_process)
    poster.start()
    try:
        wait_until(lambda: all(len(m["other"]) > 2 for m in made.values()) or bool(failures), "no posts")
        wait_until(lambda: len(cores_of(runtime)) <= 2, "evicted lease holders kept alive while others post")
        assert poster.is_alive() and not failures, failures
    finally:
        stop.set()
        poster.join(HANG)
    try:
        assert not failures, failures
        for actor in actors:
            check_once_in_order(applied_tokens(other, actor), made[actor])
        assert doubled_cores == []
    finally:
        other.close()
        vc.shutdown()


@vc.virtual_actor
class Raiser:
    def __init__(self) -> None:
        self.payload = b"x" * 50_000

    def fail(self, n: int) -> None:
        raise ValueError(f"refused {n}")


@pytest.mark.usefixtures("runtime_off")
def test_failed_calls_whose_exceptions_the_caller_dropped_leave_no_core_behind(store_spec: StoreSpec) -> None:
    """A pin (it passed before): an exception a method raised refers, through its traceback's
    frames, to the actor's core (documented: an application that keeps it keeps the actor).
    The library itself keeps none: 40 actors whose calls all raised, run and run_async (its
    future dropped), through a cache of 4, leave at most 4 cores alive."""
    store_spec.init(settings=vc.Settings(storage=store_spec.url, max_cached_actors=4))
    runtime = vc.get_runtime()
    for i in range(40):
        actor = Raiser.get_or_create(f"raiser-{i}")
        with pytest.raises(ValueError, match="refused"):
            actor.fail.run(i)
        future = actor.fail.run_async(i)
        with pytest.raises(ValueError, match="refused"):
            future.result(HANG)
        del future
    assert len(cores_of(runtime)) <= 4
