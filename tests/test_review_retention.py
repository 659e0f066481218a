"""Compaction and retention against writers, posters, sub-tasks and skewed clocks, from a
hostile review (review-h41).

Each test says whether it failed on the code it was written against (a defect, fixed) or
pins a guarantee that already held (then it names what was broken by hand to see it fail)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, codec, compaction, workflow, workflow_steps
from vactor_cloud.batch import PendingCall
from vactor_cloud.compaction import compact
from vactor_cloud.errors import StepNotFoundError
from vactor_cloud.future import ActorFuture
from vactor_cloud.history import _history
from vactor_cloud.runtime import Runtime, Settings
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.workflow_steps import list_failures

#: the clock tests patch this process's view of time: the fast lanes show it
fast_lanes = pytest.mark.vactor_lanes("memory", "local")

#: how far ahead the compacting machine's clock runs in these tests
AHEAD = 2 * 3600.0

_real_time = time.time


@pytest.fixture
def compactor_ahead(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Compaction reads a wall clock two hours ahead of every other process's (this one's)."""
    ahead = types.SimpleNamespace(time=lambda: _real_time() + AHEAD, monotonic=time.monotonic)
    monkeypatch.setattr(compaction, "time", ahead)
    yield


def _commit_behind_its_back(actor_id: str) -> None:
    """Another writer commits the next step, dated now by an honest clock: this process's
    next commit on its cached step loses the race and runs its method again."""
    core = vc.get_runtime().core(actor_id)
    mine = core.record
    assert mine is not None
    theirs = dataclasses.replace(
        mine, step=mine.step + 1, parent=mine.step, writer="someone-else", time=_real_time()
    )
    _sync.sync(core.log.put_step(theirs))


# -- 1. a compactor whose clock runs ahead, and the sub-task checkpoints of calls not committed ----
_child_runs: list[int] = []
_in_method = threading.Event()
_release = threading.Event()


def _charge(amount: int) -> int:
    _child_runs.append(amount)
    return amount * 10


@vc.virtual_actor
class Biller:
    def __init__(self) -> None:
        self.charged: list[int] = []

    def bill(self, amount: int) -> int:
        charged = vc.subtask(_charge).run(amount)  # checkpointed before the method goes on
        if not _release.is_set():
            _in_method.set()
            _release.wait(60)
        self.charged.append(charged)
        return charged

    def touch(self) -> None:
        pass


def _task_keys(actor_id: str) -> list[str]:
    return list(_sync.sync(vc.get_runtime().store.list(f"actors/{actor_id}/tasks/")))


@fast_lanes
@pytest.mark.usefixtures("runtime_off")
def test_a_compactor_whose_clock_runs_ahead_does_not_make_a_running_calls_children_run_again(
    store_spec: StoreSpec, compactor_ahead: None
) -> None:
    """Defect (failed before the fix: the child ran twice, ``[7, 7]``). A call's child was
    checkpointed a moment ago; the call then lost its commit race, as calls do, and ran again.
    Meanwhile a compaction (``min_age`` an hour, the CLI's floor; ``keep_last`` deletes no step)
    on a machine whose clock ran two hours ahead took the checkpoint, dated a moment ago by the
    writer's clock, for two hours old and deleted it: the re-run charged again. Checkpoints of
    calls not committed are now aged against the actor's newest step's time, not the
    compactor's clock."""
    _child_runs.clear()
    _in_method.clear()
    _release.clear()
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    biller = Biller.get_or_create("b")
    biller.touch.run()
    billed = biller.bill.run_async(7)
    try:
        assert _in_method.wait(60), "the method never reached its wait"
        deadline = time.monotonic() + 30
        while not _task_keys("b") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _task_keys("b"), "the child's checkpoint was never written"
        _commit_behind_its_back("b")
        report = _sync.sync(compact(vc.get_runtime().core("b").log, keep_last=100, min_age=3600.0))
        assert report.deleted_steps == 0
    finally:
        _release.set()
    assert billed.result(60) == 70
    assert _child_runs == [7], "the child ran again: its checkpoint was compacted under the running call"
    assert report.deleted_tasks == 0


_tax_down: list[bool] = []


@workflow.step(max_retries=0)
def _price(amount: int) -> int:
    return amount


@workflow.step(max_retries=0)
def _tax(amount: int) -> int:
    if _tax_down:
        raise ConnectionError("the tax service blinked")
    return amount


@workflow.virtual_actor
class Till:
    def __init__(self) -> None:
        self.balance = 0

    def pay(self, amount: int) -> Any:
        return self.credit.step(_tax.step(_price.step(amount)))

    def credit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def touch(self) -> None:
        pass

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.balance


@fast_lanes
@pytest.mark.usefixtures("runtime_off")
def test_a_compactor_whose_clock_runs_ahead_keeps_a_call_that_failed_just_now_resumable(
    store_spec: StoreSpec, compactor_ahead: None
) -> None:
    """Defect (failed before the fix: the report named the call ``unresumable`` and resume ran
    nothing). A sub-workflow failed a moment ago and left its failure record (documented:
    resumable for ``min_age`` after it failed); other calls committed since. A compaction
    with ``min_age`` an hour on a machine whose clock ran two hours ahead deleted the record
    and the checkpoints with it: the call was given up two hours early."""
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    till = Till.get_or_create("till")
    _tax_down[:] = [True]
    try:
        with pytest.raises(ConnectionError):
            till.pay.run(5)
    finally:
        _tax_down.clear()
    (failed,) = _sync.sync(list_failures(vc.get_runtime().store, "till", None))
    till.touch.run()  # a step dated after the failure, by this (honest) clock
    report = _sync.sync(compact(vc.get_runtime().core("till").log, keep_last=100, min_age=3600.0))
    assert report.unresumable == ()
    assert workflow.get_status("till") == workflow.FAILED
    assert vc.get(workflow.resume("till"), timeout=60) == [5]
    assert failed.call_id


# -- 1b. a compactor whose clock runs ahead, and the steps a writer with a fresh cache builds on ---
@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.value = 0

    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def pay(self, tag: str) -> str:
        self.value += 1
        return f"{self.value}:{tag}"

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.value


def _call_on(runtime: Runtime, actor_id: str, method: str, *args: Any) -> Any:
    """A writer call through another runtime (another "process" on the same store)."""
    future: ActorFuture[Any] = ActorFuture()
    runtime.core(actor_id).submit(PendingCall(method, args, {}, False, future, uuid.uuid4().hex))
    return future.result(30)


@fast_lanes
@pytest.mark.usefixtures("runtime_off")
def test_a_compactor_whose_clock_runs_ahead_does_not_lose_a_commit_built_on_a_fresh_cache(
    store_spec: StoreSpec, compactor_ahead: None
) -> None:
    """A writer within ``fresh_window`` of validating its cache (step 1) skips the watermark
    read after its put (the one-request commit), safe because compaction deletes step 2 only
    once step 3 is ``min_age`` old. Another process commits steps 2 and 3 now; a compaction on
    a machine whose clock runs two hours ahead (``min_age`` an hour, above ``fresh_window``,
    as ``handle.compact`` and ``vactor compact`` accept) took step 3 for two hours old and
    deleted step 2: the writer re-created step 2 and its call was acknowledged, but no step
    of the history holds it (a lost acknowledged commit). Defect (failed before the fix:
    ``acknowledged with 1001, the history holds 111``): a step now also goes only once its
    successor is older than the newest step by ``fresh_window`` and a clock skew, by the
    steps' own recorded times."""
    store_spec.init(settings=vc.Settings(storage="", fresh_window=60.0))
    tally = Tally.get_or_create("t")
    assert tally.incr.run() == 1  # step 1: this process's cache is fresh for a minute
    other = Runtime(Settings(storage=store_spec.url, storage_options=store_spec.options, fresh_window=0.0))
    try:
        assert _call_on(other, "t", "incr", 10) == 11  # step 2
        assert _call_on(other, "t", "incr", 100) == 111  # step 3, dated now
        _sync.sync(compact(other.log("t"), keep_last=1, min_age=3600.0))
        acknowledged = tally.incr.run(1000)
        newest = _call_on(other, "t", "incr", 0)
    finally:
        other.close()
    assert newest == acknowledged == 1111, f"acknowledged with {acknowledged}, the history holds {newest}"


# -- 3. compaction racing writers and cold readers -----------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_cold_readers_and_writers_beside_repeated_compactions_lose_nothing_and_see_no_raw_error(
    store_spec: StoreSpec,
) -> None:
    """Pin (held): one thread commits (a keyed call every third, so the idempotency table
    takes checkpoints), one compacts again and again (``keep_last=2``, ``min_age=0``, the
    writers' ``fresh_window`` 0, as documented), and cold readers (a new runtime each time:
    HEAD, then the steps) load the newest state, read the history and the state at steps
    that may be going. Every acknowledged call is in the final state once, a keyed call
    retried after the compactions is not applied again, every load answers, and the only
    error a reader meets is ``StepNotFoundError`` for a step compacted. Readers dawdle
    after reading HEAD, so a compaction often deletes HEAD's step under them: with
    ``load_latest``'s fall back to a listing then removed by hand, readers got
    ``ActorNotFoundError``. 30 calls (60 until h162; their commits were most of the time on
    S3); the keys are long so that the keyed ones outgrow a step's delta: checkpoints are
    written (with keys of 3 characters none was, at 60 calls either)."""
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    tally = Tally.get_or_create("t")
    calls = 30

    def key(i: int) -> str:
        return f"k{i}-" + "x" * 250

    def fresh_runtime(*, slow_head: bool = False) -> Runtime:
        settings = Settings(storage=store_spec.url, storage_options=store_spec.options, fresh_window=0.0)
        runtime = Runtime(settings)
        if slow_head:
            # The reader dawdles between reading HEAD and the steps: a compaction often passes.
            store = runtime.store
            plain_get = store.get

            async def get(key: str) -> Any:
                blob = await plain_get(key)
                if key.endswith("/HEAD"):
                    await asyncio.sleep(0.005)
                return blob

            store.get = get  # type: ignore[method-assign]
        return runtime

    done = threading.Event()
    problems: list[str] = []
    acknowledged: list[int] = []
    compactions = [0]
    reads = [0]

    def write() -> None:
        try:
            for i in range(calls):
                if i % 3 == 0:
                    tally.incr.options(idempotency_key=key(i)).run(1)
                else:
                    tally.incr.run(1)
                acknowledged.append(i)
                time.sleep(0.01)
        except Exception as exc:
            problems.append(f"writer: {exc!r}")
        finally:
            done.set()

    def compact_again() -> None:
        runtime = fresh_runtime()
        try:
            while not done.is_set() and compactions[0] < 500:
                _sync.sync(compact(runtime.log("t"), keep_last=2, min_age=0.0, fresh_window=0.0))
                compactions[0] += 1
        except Exception as exc:
            problems.append(f"compactor: {exc!r}")
        finally:
            runtime.close()

    def read_cold() -> None:
        while not done.is_set() and reads[0] < 300:
            runtime = fresh_runtime(slow_head=True)
            try:
                future: ActorFuture[Any] = ActorFuture()
                runtime.core("t").submit(PendingCall("get", (), {}, True, future, uuid.uuid4().hex))
                value = future.result(30)
                entries = _sync.sync(_history(runtime.log("t"), None))
                assert entries and entries[0].step >= value, (entries[0].step, value)
                for entry in entries[1:]:
                    with contextlib.suppress(StepNotFoundError):  # compacted since: said so
                        _sync.sync(runtime.log("t").find_step(entry.step))
                reads[0] += 1
            except Exception as exc:
                problems.append(f"reader: {exc!r}")
            finally:
                runtime.close()

    threads = [threading.Thread(target=f) for f in (write, compact_again, read_cold, read_cold)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "hung"
    assert problems == []
    assert len(acknowledged) == calls and compactions[0] > 0 and reads[0] > 0
    for i in range(0, calls, 3):  # keyed calls retried: answered from the table, not applied again
        tally.incr.options(idempotency_key=key(i)).run(1)
    assert tally.get.run() == calls


# -- 2. a poster that gave up, compaction, and its outcome by call id ------------------------------
@fast_lanes
@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
def test_a_poster_that_gave_up_is_told_compacted_not_never_after_its_sender_left_the_cursor(
    store_spec: StoreSpec, keyed: bool
) -> None:
    """Pin (held): a poster gave up (``CallPendingError``); a fold applied its call; its sender
    then left the cursor (silent for ``SENDER_TTL``: a later step without the entry), and a
    compaction (``keep_last=1``) deleted the applying step. ``call_outcome`` walks back from
    the newest step to the post's: it must answer "applied, outcome compacted"
    (``CommitOutcomeUnknownError``), never "not applied (and never will be)", which invites
    a retry that applies the call twice. A keyed call retried after the compaction is
    answered from the idempotency table, not applied again. Fails with the walk's missing
    step taken for the walk's end (``complete`` left True in ``_look_up_outcome``:
    ``LookupError``)."""
    from actors import OrderLog
    from test_combining import gave_up_then_left_the_cursor, init_switchable

    from vactor_cloud.errors import CommitOutcomeUnknownError

    # (deadline: a refused step put "may land" until then; past it, only the steps tell)
    store = init_switchable(store_spec, combine_window=60.0)
    pay = (lambda log: log.add.options(idempotency_key="pay-1").run("me/1")) if keyed else None
    _, raised, later = gave_up_then_left_the_cursor(store, pay, commit_timeout=0.3, deadline=0.5)
    core = vc.get_runtime().core("a")
    report = _sync.sync(compact(core.log, keep_last=1, min_age=0.0, fresh_window=0.0))
    assert report.watermark == later.step
    time.sleep(0.6)  # past the deadline of the refused puts
    with pytest.raises(CommitOutcomeUnknownError) as unknown:
        vc.get_actor("a").call_outcome(raised.call_ids[0])
    assert type(unknown.value) is CommitOutcomeUnknownError, unknown.value  # not CallPendingError
    if keyed:
        assert OrderLog.get_or_create("a").add.options(idempotency_key="pay-1").run("me/1") == 2
    assert OrderLog.get_or_create("a").applied.run() == ["me/0", "me/1", "me/2"]


# -- 4. a resumed call whose failure record could not be deleted -----------------------------------
@fast_lanes
@pytest.mark.usefixtures("runtime_off")
def test_a_resumed_call_whose_failure_record_delete_failed_is_not_applied_again_by_a_later_resume(
    store_spec: StoreSpec,
) -> None:
    """Defect (failed before the fix: balance 10). ``workflow.resume`` re-ran a failed call,
    which committed; then it deleted the call's failure record, and a failure of that one
    DELETE (a 503, or the process dying first) was ignored: the record stayed, the status
    said FAILED, and the next resume (from another process, which knows nothing of this
    re-run) applied the call a second time. A resumed call now deletes its record before
    its step is written (as a retried or posted call does): a failed delete fails the run,
    nothing is committed, and the call stays resumable, once."""
    from test_combining import init_switchable

    from vactor_cloud.errors import RetryableStorageError, StorageError

    store = init_switchable(store_spec)
    till = Till.get_or_create("till")
    _tax_down[:] = [True]
    try:
        with pytest.raises(ConnectionError):
            till.pay.run(5)
    finally:
        _tax_down.clear()
    (failed,) = _sync.sync(list_failures(vc.get_runtime().store, "till", None))
    workflow_steps._recorded.discard("till", failed.call_id)  # resumed by another process
    refused = RetryableStorageError("injected: 503 on the record's delete", "k")
    store.fail = lambda op, key: refused if op == "delete" and key.endswith("/failed") else None
    with contextlib.suppress(StorageError):  # (after the fix: the run fails, nothing commits)
        vc.get(workflow.resume("till"), timeout=60)
    store.fail = lambda op, key: None
    workflow._rerun_done.clear()  # another process: it knows of no earlier re-run here
    vc.get(workflow.resume("till"), timeout=60)
    assert till.get.run() == 5, "the resumed call was applied twice"
    assert workflow.get_status("till") != workflow.FAILED
    assert vc.get(workflow.resume("till"), timeout=60) == []


# -- 5. a late compaction whose watermark step is a stray ----------------------------------------
_BIG = "t" * 200  # a keyed result this big makes a handful of keyed calls outgrow a step's delta


@fast_lanes
@pytest.mark.usefixtures("runtime_off")
def test_a_compaction_whose_watermark_step_became_a_stray_keeps_the_checkpoint_kept_steps_name(
    store_spec: StoreSpec,
) -> None:
    """Defect (failed before the fix: the newest step's idempotency checkpoint deleted, every
    keyed call of a new process then failed with NotFoundError naming it). Compaction A chose
    watermark M; compaction B
    raised it past M and deleted step M; a stalled writer's late put re-created M (a stray,
    built on an old base, naming a checkpoint of its own, ``M-...``). A then deleted the
    checkpoints older than the one *the stray* names, taken for the oldest kept step's:
    that included the checkpoint every kept step names. Below the watermark a step is no
    step of the history: its name now decides nothing."""
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    tally = Tally.get_or_create("w")
    for i in range(40):
        tally.pay.options(idempotency_key=f"pay-{i}").run(f"{i}{_BIG}")
    log = vc.get_runtime().core("w").log
    newest = _sync.sync(log.load_latest(_sync.sync(log.read_head())))
    assert newest is not None and newest.dedup_base is not None
    base_step = int(newest.dedup_base.split("-")[0])
    for _ in range(6):  # steps past the newest checkpoint, all naming it
        tally.incr.run(0)
    newest = _sync.sync(log.load_latest(_sync.sync(log.read_head())))
    assert newest is not None and int(str(newest.dedup_base).split("-")[0]) == base_step
    m, w2 = base_step + 2, base_step + 4
    # compaction B
    report = _sync.sync(compact(log, keep_last=newest.step - w2 + 1, min_age=0.0, fresh_window=0.0))
    assert report.watermark == w2
    stray = dataclasses.replace(newest, step=m, parent=m - 1, writer="stalled", dedup_base=f"{m:020d}-stray")
    _sync.sync(log.store.put(log.step_key(m), stray.encode(log.step_key(m), None), mode="create"))
    _sync.sync(compaction._delete_dedup_checkpoints(log, m))  # compaction A, late
    assert newest.dedup_base in _sync.sync(log.list_dedup_checkpoints())
    vc.shutdown()
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))  # a new process
    again = Tally.get_or_create("w")
    assert again.pay.options(idempotency_key="pay-3").run("again") == f"4:3{_BIG}"  # from the table
    assert again.get.run() == 40


@fast_lanes
@pytest.mark.usefixtures("runtime_off")
def test_compaction_keeps_the_sub_task_checkpoints_of_a_call_only_a_stray_step_holds(
    store_spec: StoreSpec,
) -> None:
    """Defect (failed before the fix: the checkpoints went). Compaction deletes the sub-task
    checkpoints of the calls committed in the steps it deletes. Among those it read a
    stray (a stalled writer's late put re-created a compacted number: not a commit, so its
    writer runs the call again) and took its calls for committed: their checkpoints went,
    and the re-run ran every child again. The ``gc`` record names the committed writer of
    each compacted number; a step by another writer is a stray, its calls not committed."""
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    tally = Tally.get_or_create("s")
    for _ in range(5):
        tally.incr.run(1)
    log = vc.get_runtime().core("s").log
    _sync.sync(compact(log, keep_last=2, min_age=0.0, fresh_window=0.0))  # watermark 4: steps 0..3 go
    four = _sync.sync(log.read_step(4))
    assert four is not None
    (call,) = four.calls
    stray_call = dataclasses.replace(call, call_id="stalled-call")
    stray = dataclasses.replace(four, step=2, parent=1, writer="stalled", calls=(stray_call,))
    _sync.sync(log.store.put(log.step_key(2), stray.encode(log.step_key(2), None), mode="create"))
    tally.incr.run(1)
    key = f"{log.prefix}tasks/stalled-call/000000"  # younger than the newest step: not aged out
    data = codec.encode(key, {"kind": "task", "time": _real_time()}, {"result": b"x"})
    _sync.sync(log.store.put(key, data, mode="create"))
    report = _sync.sync(compact(log, keep_last=2, min_age=0.0, fresh_window=0.0))
    assert report.deleted_steps == 2  # step 4, and the stray at 2
    assert _task_keys("s") == [key], "the stray's call was taken for committed"


# -- 1c. what the writers' evidence holds back on an idle actor, and how it goes ---------------------
def _age_all_steps(log: Any, seconds: float) -> None:
    """Re-date every step ``seconds`` earlier: an actor written in a burst, idle since."""
    for step in _sync.sync(log.list_steps()):
        record = _sync.sync(log.read_step(step))
        assert record is not None
        old = dataclasses.replace(record, time=record.time - seconds)
        _sync.sync(log.store.put(log.step_key(step), old.encode(log.step_key(step), log.signing_key)))


@fast_lanes
@pytest.mark.usefixtures("runtime_off")
def test_an_idle_actors_last_steps_go_on_a_compaction_repeated_fresh_window_later(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin of the cost of the fix above: steps written in a burst two hours ago (and nothing
    since) are old by the compactor's clock, but no writer's step shows them older than the
    newest by ``fresh_window`` and a clock skew: the first compaction keeps them
    (``held_unproven``). Having seen the newest step exist ``fresh_window`` ago, the same
    process's next compaction deletes them (its own monotonic clock is the proof).

    The compactor's monotonic clock is the test's (h184): it stands still through the first
    compaction and then moves by exactly ``fresh_window``, so neither outcome hangs on how
    long the host took (a window of 0.2 s and a 0.25 s sleep before), and one more compaction
    at less than the window would not pass."""
    store_spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
    tally = Tally.get_or_create("idle")
    for _ in range(3):
        tally.incr.run(1)
    log = vc.get_runtime().core("idle").log
    _age_all_steps(log, 7200.0)
    now = [1000.0]  # (sums of these are exact: 1059.75, 1060.0)
    monkeypatch.setattr(compaction, "time", types.SimpleNamespace(time=time.time, monotonic=lambda: now[0]))
    first = _sync.sync(compact(log, keep_last=1, min_age=3600.0, fresh_window=60.0))
    assert (first.deleted_steps, first.held_unproven) == (0, 3)
    now[0] += 59.75
    early = _sync.sync(compact(log, keep_last=1, min_age=3600.0, fresh_window=60.0))
    assert (early.deleted_steps, early.held_unproven) == (0, 3)
    now[0] += 0.25
    second = _sync.sync(compact(log, keep_last=1, min_age=3600.0, fresh_window=60.0))
    assert (second.deleted_steps, second.held_unproven, second.watermark) == (3, 0, 3)


def test_vactor_compact_deletes_an_idle_actors_last_steps_in_one_run(store: str, vactor: Any) -> None:
    """``vactor compact`` waits ``fresh_window`` once, after its first pass, and compacts again
    the actors whose last steps were held for want of the writers' evidence: one run leaves
    ``keep_last`` steps of an actor idle for two hours."""
    vc.init(store)
    try:
        tally = Tally.get_or_create("idle")
        for _ in range(3):
            tally.incr.run(1)
        _age_all_steps(vc.get_runtime().core("idle").log, 7200.0)
    finally:
        vc.shutdown()
    result = vactor("compact", "idle", "--keep-last", "1", "--min-age", "3600", "--fresh-window", "1")
    assert result.code == 0, result.err
    _header, row = result.out.splitlines()
    assert row.split() == ["idle", "3", "3..3", "0"], result.out
