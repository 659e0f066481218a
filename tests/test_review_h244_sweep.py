"""Review h244: a mutation sweep of the commit-attempt family, not swept as a whole before:
``step_attempt.py`` (one attempt: its base, the fold, the calls applied, the step put),
``attempt_stops.py`` (a lost race, a storage error, shutdown, a defect), ``after_commit.py``,
``checked_read.py``, ``batch_commit.py``, ``method_calls.py`` and ``read_room.py``
(``commit_env.py`` holds protocols only: nothing to mutate).

189 hand-made mutations were written; 118 of them (the ones on the guarantees: a body
runs once, a lost race retries within a bound, a failed attempt commits nothing and its error
reaches its caller, reads never commit nor wait behind writes, after-commit work only for a
committed step, a checked read never returns a partial or forged object) were run one at a time
against the modules that test that code (memory and local lanes): the attempt's against
``commit_loop``, ``refusal_gaps``, ``h237_sweep``, ``mutation_sweep``, ``h231_commit_side_sweep``,
``posting``, ``h143_sent_note``, ``deadline_after_a_lost_race``, ``shutdown_retry_message`` and
``class_bodies``; the method calls' against ``h230_call_surface_sweep``, ``h138_execution_model``,
``call_edges``, ``at_step_reads``, ``h146_cancel_in_creation``, ``h152_state_capture`` and
``wait_for_init``; the read room's against ``h158_read_room`` and ``reads_beside_compaction``; the
checked read's against ``h158_checked_reads`` and ``h142_reads_cut_short``. A survivor was run
again against wider modules (``combining``, ``class_identity``, ``clean_room_events_timers``,
``hangs``, ``h138_execution_model``) before a test was written here. The other 71
(costs only, log text, variants of these, read-room mutations the h158 sweep ran) were not run:
the time ran out. Of the 118 run, 60 were killed there, 7 by a wider module (named; S50's
found after the sweep), 26 by the tests here (each test's docstring names its mutations); 7
are equivalent (notes a-e, l, m), 18 are not killed (notes f-k, n). None showed a defect of
the unmutated code.
"killed by" names the module (``test_`` / ``test_review_`` left off) whose test failed first;
"h244" a test here, by words of its name.

==== ========================================================== ======== ====================================
id   mutation                                                   survived killed by / why
==== ========================================================== ======== ====================================
S02  _attempt: refusal ends a commit that folds for others      yes      not killed (g)
S03  _attempt: live instance of a class defined again kept      yes      class_identity (defined again)
S04  _attempt: posted calls not looked for as folded already    yes      combining (forgot applied post)
S05  _attempt_base: a cached tombstone not probed past          yes      not killed (f)
S09  _attempt_base: live instance of another step kept          yes      equivalent (c)
S10  _attempt_base: live instance not taken (used twice)        no       refusal_gaps
S11  _fold_into_attempt: fold kept on after the lease was lost  yes      not killed (g)
S15  _fold_into_attempt: damaged-post wait without deadline     yes      h244 (damaged post deadline)
S17  _apply_attempt: calls applied on a tombstone               no       mutation_sweep
S18  _apply_attempt: inbox never asked to fold                  yes      clean_room_events_timers
S20  _apply_attempt: ran not noted                              no       shutdown_retry_message
S21  _apply_attempt: shutdown's error in a body not reworded    yes      h244 (nested call met shutdown)
S22  _apply_attempt: outcomes given from a base not newest      yes      h138_execution_model
S23  _apply_attempt: all-raised fold commits base.extra {}      yes      h244 (all-raised fold keeps timers)
S24  _not_applied_at_shutdown: every error reworded             yes      h244 (own error at shutdown)
S26  _answers_from_newest: never probes                         no       h138_execution_model
S28  _refuse_other_class: a tombstone's class refuses           yes      h244 (earlier class on a tombstone)
S29  _refuse_other_class: stale record refuses unprobed         no       refusal_gaps
S30  _refuse_other_class: refused calls kept in the batch       yes      equivalent (d)
S32  _refuse_other_class: never says the batch is empty         no       refusal_gaps
S35  _fail_on_tombstone: hooked left set                        yes      not killed (h)
S36  _fail_on_tombstone: unposted calls commit a tombstone      yes      h244 (lost to a delete)
S37  _step_record: cursor not advanced for folded posts         no       posting
S40  _step_record: parent off by one                            yes      h244 (parent)
S42  _step_record: one writer id for every step                 no       posting
S43  _put_attempt: put sent after the runtime stopped           yes      h244 (put once stopped)
S44  _put_attempt: stopped during prerequisites not checked     yes      not killed (j)
S45  _put_attempt: put_sent not set                             no       commit_loop
S46  _put_attempt: unanswered writer not recorded               yes      h244 (own step interrupted)
S47  _put_attempt: ForeignStepError leaves put_sent             yes      h244 (foreign object retried)
S49  _put_attempt: unanswered not cleared after an answer       yes      equivalent (l)
S50  _put_attempt: late put not resolved by the watermark       yes      compaction (outside its set, j)
S51  _put_attempt: below the watermark, cache kept              yes      equivalent (m)
S52  _put_attempt: inline put's taken key not read back         no       commit_loop
S54  _class_ref_for_commit: sha comparison inverted             yes      not killed (n)
S57  _restore_class_body: failed check not forgotten            yes      not killed (n)
T02  _lost_race: unanswered writer not cleared                  yes      equivalent (a)
T03  _lost_race: no catch-up probe                              no       deadline_after_a_lost_race
T04  _lost_race: own step recognised without put_sent           yes      equivalent (b)
T05  _lost_race: own step taken for a lost race                 yes      h244 (own step interrupted)
T07  _lost_race: attempts not counted                           no       commit_loop
T10  _lost_race: posts one race later (> combine_after)         no       commit_loop
T11  _lost_race: posts after a race lost to a delete            yes      h244 (lost to a delete)
T13  _lost_race: one attempt more than the bound                no       posting
T14  _lost_race: no time bound                                  no       h231_commit_side_sweep
T15  _lost_race: a posted batch given up as a conflict          no       h231_commit_side_sweep
T16  _lost_race: lease for fold not taken after posting         yes      not killed (g)
T18  _storage_failed: cache not distrusted                      no       deadline_after_a_lost_race
T20  _storage_failed: may_land_until not set                    no       deadline_after_a_lost_race
T22  _storage_failed: retries past the deadline                 no       deadline_after_a_lost_race
T23  _storage_failed: retried after the put was sent            no       h237_sweep
T26  _storage_failed: pending error without cause               yes      not killed (i)
T28  _storage_failed: timeout before the put not reworded       yes      h244 (timeout before the put)
T29  _storage_failed: that timeout says write in flight         yes      h244 (timeout before the put)
T30  _storage_failed: no sent note after the put                no       h143_sent_note
T33  _stopped_by_shutdown: posted batch gets bare error         yes      not killed (j)
T34  _stopped_by_shutdown: sent put gets bare error             no       commit_loop
T36  _attempt_failed: unknown wrapped in unknown                yes      h244 (unknown not wrapped)
T37  _attempt_failed: sent put gets bare error                  yes      h244 (defect after sent)
T38  _attempt_failed: posted batch gets bare error              yes      h244 (defect in a posted attempt)
T39  _catch_up: newest not accepted                             no       posting
A02  _after_commit: timers not indexed                          no       refusal_gaps
A03  _after_commit: folded posts not deleted                    no       commit_loop
A05  _after_commit: lease not renewed                           yes      not killed (g)
A06  _after_commit: HEAD not moved                              no       h231_commit_side_sweep
A08  _after_commit: own post test inverted                      yes      not killed (k)
A09  _after_commit: our batch settled though not folded         yes      not killed (k)
A10  _after_commit: done-callback's BaseException not kept      yes      not killed (k)
A11  _after_commit: outstanding post not cleared                yes      h244 (no post behind an applied one)
A12  _settle: done-callback's BaseException swallowed           yes      not killed (n)
A13  _settle: inbox never settles                               yes      clean_room_events_timers
A14  _settle: inbox cleanup failure not given to batch          yes      not killed (j)
A16  _index_timers: failure raised after commit                 yes      h244 (index fails after commit)
A17  _settle: inbox cleanup failure raised                      yes      not killed (j)
B01  BatchCommit.put_sent default True                          yes      h244 (interrupt before attempting)
B04  BatchCommit.ran default True                               yes      not killed (j)
R01  read_checked: one read only                                no       h158_checked_reads
R02  read_checked: four reads                                   no       h158_checked_reads
R03  torn read (TruncatedObjectError) not read again            no       h158_checked_reads
R04  read_checked_now: one read only                            no       h158_checked_reads
R05  read_checked: last error raised bare                       no       h158_checked_reads
R06  read_every_time: built from the first failure              no       h158_checked_reads
R07  read_every_time: two reasons called the same               yes      h244 (failed alike)
R08  read_every_time: torn becomes damaged                      no       h158_checked_reads
R09  _reason: str() of a damaged error                          no       h158_checked_reads
R10  read_envelope: signing key not passed                      yes      h244 (envelope signed)
R11  read_checked: any IntegrityError read again                no       h158_checked_reads
R12  read_checked_now: torn not read again                      no       h158_checked_reads
M01  _too_deep never                                            yes      hangs (past the recursion limit)
M03  _help_after_creation: interrupted wait not withdrawn       no       h230_call_surface_sweep
M04  _run: no help behind a pending creation                    no       h230_call_surface_sweep
M05  _run: started-elsewhere note never added                   no       h230_call_surface_sweep
M06  _run: read-only call goes through the writer queue         no       h138_execution_model
M07  _queue: read-only run_async queued on the actor            no       h230_call_surface_sweep
M09  _queue: cancelled read not let go                          no       h230_call_surface_sweep
M10  _after_creation: settled creation lets writers pass        no       h230_call_surface_sweep
M11  _after_creation: read during creation goes on              no       wait_for_init
M12  submit: creation's error not given to the call             no       wait_for_init
M13  submit: failure after hand-over fails the call too         yes      h244 (interrupt as handed over)
M16  _make_call: at_step not checked                            no       at_step_reads
M17  _make_call: arguments not checked                          yes      h244 (args checked as made)
M18  _make_call: timer from a read of the same actor refused    yes      h244 (read schedules own timer)
M20  _make_call: reentry checked for at_step reads              no       at_step_reads
M21  _make_call: keyed call id random                           no       h230_call_surface_sweep
M22  _make_call: at_step call not read-only                     yes      equivalent (e)
M23  _refuse_reentry: actor not held still refused              no       h230_call_surface_sweep
M25  _refuse_reentry: run_async cycle refused                   yes      h244 (run_async back up the thread)
M27  _refuse_reentry: read cycle told as writer's               no       at_step_reads
M28  _make_call: class tag dropped                              no       at_step_reads
W09  taken: nested read takes room                              no       h158_read_room
W12  taken: wait without deadline                               no       reads_beside_compaction
W14  taken: used not counted                                    no       h158_read_room
W17  taken: current read not restored                           no       h158_read_room
W20  _give_back: lender chain not followed                      no       reads_beside_compaction
W22  _give_back: used not given back                            no       reads_beside_compaction
W28  within: context not reset                                  no       h158_read_room (the run errors out)
W29  Read.thread 0 (every read nested)                          no       h158_read_room
W30  lent_while_waiting: read not lent                          no       h158_read_room
==== ========================================================== ======== ====================================

(a) T02: a put answered "taken" never lands (create-only: the number holds another writer's
    step), so the writer id it leaves in ``_unanswered`` never matches a winner.
(b) T04: a winner bearing the writer of our earlier unanswered put is our own landed step,
    whichever attempt met it.
(c) S09: ``_live`` is set only with its step and dropped whenever the cached record moves
    (``_accept``, ``_invalidate``, ``_distrust``): it never names another step than the record.
(d) S30: the refused calls have their outcome (claimed) already; kept in the batch, they are
    at most posted again, and a fold refuses them by their class tag.
(e) M22: ``at_step`` is refused for writer methods (``check_at_step``), and a stand-in is
    resolved to its class first: a call at a step is always of a read-only method.
(f) S05, not killed: the call's path probes past a cached tombstone first (``ensure_exists``);
    the attempt's own probe covers a batch queued before the tombstone was cached, a window
    not reached without a hook into the queue.
(g) S02, S11, T16, A05, not killed: delays, not outcomes. S02: others' posts wait for the next
    fold round; S11: the core polls (reads) where it would wait for the folder; T16: the
    poster's wait takes the free lease later; A05: a lease not renewed expires and is taken
    again. A test needs to count requests or time.
(h) S35, not killed: ``hooked`` was set by the attempt that lost before the fold; it differs
    only for an event batch whose race is lost to a delete.
(i) T26, not killed: the given-up post this sweep could reach (storage failures after the post)
    got its cause on another path; the one that takes this line was not found in time.
(j) T33, B04, S44, A14, A17, not killed: their premise was not reached in time: a posted batch
    stopped by shutdown in the middle of an attempt (T33); shutdown between a commit's start
    and its first attempt (B04); a step with a dedup checkpoint and the runtime stopping during
    its prerequisites (S44); a step put landing at a number another process compacted while it
    was in flight (S50: the setup here did not finish in time; ``test_compaction``'s stalled and
    late writers kill it, 6 tests on memory and local, run after the sweep); an event batch
    whose inbox cleanup fails (A14, A17).
(k) A08, A09, A10, not killed: they differ only when a fold leaves our own post out (a full batch); a
    post that was folded is found by the next attempt's walk back (``_settle_if_folded``).
(l) S49: the writer id left is that of a step this core accepted as its newest (committed and
    answered): no later put, at a higher number, meets it as the winner.
(m) S51: the cache kept is older than ``fresh_window`` (the late check required it): the next
    attempt probes from it and reads the watermark (``revalidate``) before it builds a step.
(n) S54, S57, A12, not killed: found at the end, no test written in time. S54: a process running
    an upgraded class stores its body off the commit's path only (a step may land naming a
    body not yet stored); S57: a failed background check of a class body is not tried again
    for an hour; A12: a done-callback's ``BaseException`` is logged and swallowed, not raised
    once every call has its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from interrupts import Interrupted, InterruptOnce
from test_review_h150_ready_after_failed_creation import FailsToInit, _hold_spawned

import vactor_cloud as vc
from vactor_cloud import after_commit, codec, counters, step_attempt
from vactor_cloud.batch import PendingCall
from vactor_cloud.checked_read import READS, read_checked, read_envelope
from vactor_cloud.core import ActorCore
from vactor_cloud.errors import (
    CommitOutcomeUnknownError,
    DamagedObjectError,
    IntegrityError,
    NotFoundError,
    RuntimeShutdownError,
    StorageTimeoutError,
)
from vactor_cloud.future import ActorFuture
from vactor_cloud.log import ActorLog, ForeignStepError
from vactor_cloud.runtime import Runtime, Settings, own_runtime
from vactor_cloud.storage import Blob, MemoryStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: a bound on a wait that never ends in a passing test (a mutant's hang fails at it)
BOUND = 20.0
STEP_KEY = "actors/h244/steps/3"
SIGNING_KEY = b"the store's own signing key"


#: the runs of ``Ledger.raises_when_run_again``
RUNS: list[str] = []


@vc.virtual_actor
class Ledger:
    """Entries added in order; ``boom`` raises after changing the state."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    def add(self, entry: str) -> int:
        self.entries.append(entry)
        return len(self.entries)

    def raises_when_run_again(self, entry: str) -> None:
        RUNS.append(entry)
        if len(RUNS) > 1:
            raise ValueError(f"refused {entry} the second time")
        self.entries.append(entry)

    def boom(self, entry: str) -> None:
        self.entries.append(entry)
        raise ValueError(f"refused {entry}")

    @vc.virtual_actor.readonly
    def seen(self) -> list[str]:
        return list(self.entries)


@vc.virtual_actor
class MeetsShutdown:
    """``nested`` stands for a method whose nested call meets the runtime's shutdown."""

    def __init__(self) -> None:
        self.n = 0

    def nested(self) -> None:
        self.n += 1
        runtime = vc.get_runtime()
        threading.Thread(target=vc.shutdown, daemon=True).start()
        ends = time.monotonic() + BOUND
        while not runtime.closed and time.monotonic() < ends:  # (until shutdown has begun)
            time.sleep(0.005)
        raise RuntimeShutdownError("the nested call's: the runtime is shutting down")

    def refuses(self) -> None:
        self.n += 1
        runtime = vc.get_runtime()
        threading.Thread(target=vc.shutdown, daemon=True).start()
        ends = time.monotonic() + BOUND
        while not runtime.closed and time.monotonic() < ends:
            time.sleep(0.005)
        raise ValueError("the method's own refusal")


@vc.virtual_actor
class Reminder:
    """A read-only method that schedules a writer of its own actor, through a handle."""

    def __init__(self) -> None:
        self.pinged = 0

    def ping(self) -> int:
        self.pinged += 1
        return self.pinged

    @vc.virtual_actor.readonly
    def remind_me(self, me: str) -> str:
        key: str = vc.get_actor(me).ping.options(delay=3600.0).run()
        return key


#: the futures of calls ``Relay.relay`` queued with ``run_async``
QUEUED: list[Any] = []


@vc.virtual_actor
class Pinger:
    def __init__(self) -> None:
        self.pings = 0

    def outer(self, relay: str, me: str) -> int:
        sent: int = vc.get_actor(relay).relay.run(me)
        return sent

    def ping(self) -> int:
        self.pings += 1
        return self.pings


@vc.virtual_actor
class Relay:
    def __init__(self) -> None:
        self.sent = 0

    def relay(self, to: str) -> int:
        self.sent += 1
        QUEUED.append(vc.get_actor(to).ping.run_async())  # (not waited for here)
        return self.sent


@pytest.fixture
def ledger(actor_store: StoreSpec) -> Iterator[Any]:
    """A ledger actor with one entry committed, on this test's store."""
    handle = Ledger.get_or_create("h244")
    handle.add.run("first")
    yield handle


def call_on(runtime: Runtime, method: str, *args: Any, readonly: bool = False) -> Any:
    """``method`` of the ledger called through ``runtime`` (another process on the store)."""
    future: ActorFuture[Any] = ActorFuture()
    call = PendingCall.by_value(method, args, {}, readonly=readonly, future=future, call_id=uuid.uuid4().hex)
    core = runtime.core("h244")
    if readonly:
        runtime.spawn(lambda: core.read(call))
    else:
        core.submit(call)
    return future.result(BOUND)


def lose_the_next_put(core: ActorCore) -> None:
    """Another writer commits the step after ``core``'s cache (which stays fresh): its next put loses."""
    mine = core.record
    assert mine is not None
    theirs = dataclasses.replace(mine, step=mine.step + 1, parent=mine.step, writer="someone-else")
    core.env.run(core.log.put_step(theirs))


def another_process(spec: StoreSpec, **settings: Any) -> Runtime:
    return Runtime(Settings(storage=spec.url, storage_options=spec.options, **settings))


@pytest.fixture(autouse=True)
def _zero() -> Iterator[None]:
    counters.reset()
    yield
    counters.reset()


def test_an_attempt_whose_base_was_invalidated_meanwhile_tries_again(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S01: an attempt that finds its base gone (a compaction invalidated the cache between its
    probe and its look) ended the commit as "done": its calls never had an outcome, and their
    callers waited for good."""
    original = ActorCore._attempt_base
    gone = [True]

    def attempt_base(self: ActorCore, c: Any) -> Any:
        base, validated, live = original(self, c)
        if gone and gone.pop():
            self._invalidate()  # (what a compaction noticed meanwhile does)
            return None, validated, None
        return base, validated, live

    monkeypatch.setattr(ActorCore, "_attempt_base", attempt_base)
    future = ledger.add.run_async("second")
    assert future.result(timeout=BOUND) == 2
    assert not gone
    assert ledger.seen.run() == ["first", "second"]


@pytest.mark.parametrize("stored_with", [None, b"another key"], ids=["unsigned", "another-key"])
def test_an_envelope_read_for_a_signed_store_refuses_one_not_signed_with_its_key(
    stored_with: bytes | None,
) -> None:
    """R10: ``read_envelope`` decoded without the store's signing key: an unsigned object (or one
    signed with another key) that whoever can write the bucket put there passed for the actor's
    own (compaction's and delete's reads of a step's meta), and a signed one was refused."""
    store = MemoryStore()
    forged = codec.encode(STEP_KEY, {"step": 3}, signing_key=stored_with)
    asyncio.run(store.put(STEP_KEY, forged))
    with pytest.raises(IntegrityError):
        asyncio.run(read_envelope(store, STEP_KEY, SIGNING_KEY))
    asyncio.run(store.put(STEP_KEY, codec.encode(STEP_KEY, {"step": 3}, signing_key=SIGNING_KEY)))
    assert asyncio.run(read_envelope(store, STEP_KEY, SIGNING_KEY)).meta["step"] == 3


def test_a_step_another_process_committed_at_our_number_is_a_lost_race_not_our_commit(
    ledger: Any, actor_store: StoreSpec
) -> None:
    """S42 (``posting`` kills it too, through a fold): every step written with the same writer
    id: a put that met another process's step at its number read it back, found "its own"
    writer there and took the lost race for its own commit; the call returned, and its entry
    was lost."""
    other = another_process(actor_store)
    try:
        assert call_on(other, "add", "theirs") == 2  # (our cache, fresh, does not see it)
        assert ledger.add.run("mine") == 3
    finally:
        other.close()
    reader = another_process(actor_store, fresh_window=0.0)
    try:
        assert call_on(reader, "seen", readonly=True) == ["first", "theirs", "mine"]
    finally:
        reader.close()


def test_reads_that_failed_alike_but_once_do_not_say_the_same_each_time() -> None:
    """R07: "the same each time" said when two of three failed reads differed from the third
    (any two reasons taken for one): the error told an operator that the object is so as
    stored when one read saw other bytes (a body cut short on the way among them)."""
    assert READS == 3
    store = MemoryStore()
    asyncio.run(store.put(STEP_KEY, b"bytes"))
    reasons = iter(["digest mismatch", "digest mismatch", "truncated object (3 bytes)"])

    def check(blob: Blob) -> None:
        raise DamagedObjectError(STEP_KEY, next(reasons))

    with pytest.raises(DamagedObjectError) as err:
        asyncio.run(read_checked(store, STEP_KEY, check))
    assert "each time (first: digest mismatch)" in err.value.reason
    assert "the same each time" not in err.value.reason


def test_our_own_step_whose_put_was_interrupted_is_no_lost_race(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T05, S46 (our put's writer not kept as unanswered): the next commit's put meets the step
    our interrupted put landed (Ctrl-C as its answer came): taken for a race lost to another
    writer, it was counted as a conflict, backed off, and after ``combine_after`` such losses
    posted its batch for an actor no other process writes."""
    store = vc.get_runtime().store
    real = store.put
    interrupted: list[str] = []

    async def landed_then_interrupted(key: str, data: bytes, mode: Any = "overwrite") -> Any:
        version = await real(key, data, mode=mode)
        if "/steps/" in key and not interrupted:
            interrupted.append(key)
            raise KeyboardInterrupt
        return version

    monkeypatch.setattr(store, "put", landed_then_interrupted)
    monkeypatch.setattr(type(store), "inline", False)  # (every step put through ``put``)
    with pytest.raises(KeyboardInterrupt):
        ledger.add.run("second")
    assert interrupted
    assert ledger.add.run("third") == 3
    assert ledger.seen.run() == ["first", "second", "third"]
    assert counters.stats().get("commit_conflicts", 0) == 0


def test_a_race_lost_to_a_delete_posts_nothing_and_writes_no_step_after_the_tombstone(
    ledger: Any, actor_store: StoreSpec
) -> None:
    """T11: a race lost to a delete counted towards ``combine_after`` as any: the batch was
    posted, and the fold that failed it as deleted wrote a second tombstone (a step, a post and
    its deletes, for calls that fail anyway). S36: calls failed on a tombstone (none of them
    posted) committed another tombstone recording their errors."""
    runtime = vc.get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, combine_after=1)  # (one lost race posts)
    with own_runtime():  # another process deletes the actor; our cache, fresh, does not see it
        actor_store.init()
        assert vc.delete_actor("h244") is True
    commits = counters.stats().get("commits", 0)  # (the delete's tombstone among them)
    with pytest.raises(vc.ActorDeletedError):
        ledger.add.run("lost")
    core = runtime.core("h244")
    tombstone = core.record
    assert tombstone is not None
    with pytest.raises(NotFoundError):
        asyncio.run(runtime.store.get(core.log.step_key(tombstone.step + 1)))
    assert counters.stats().get("commits", 0) == commits


def test_a_post_that_waits_behind_a_damaged_one_past_the_commit_timeout_is_pending(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S15: the commit's deadline dropped where our fold stops at a post whose read is damaged:
    a post that stays unreadable (as every fold here finds) kept our call's caller waiting for
    good, one read of the posts after another, past ``commit_timeout``."""
    runtime = vc.get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, combine_after=1, commit_timeout=3.0)
    monkeypatch.setattr(step_attempt, "damaged_pause", lambda attempt: 0.01)
    monkeypatch.setattr(ActorCore, "_fold_posts", lambda self, *args: ([], [], []))
    lose_the_next_put(runtime.core("h244"))  # our put loses: we post the call, take the lease, fold
    future = ledger.add.run_async("second")
    with pytest.raises(vc.CallPendingError):
        future.result(timeout=BOUND)


def test_an_interrupt_as_a_call_queued_behind_a_creation_is_handed_over_leaves_it_to_the_actor(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """M13: Ctrl-C landing just as the creation handed a call queued behind it to the actor
    (``core.submit`` had taken it): the call was also failed with the interrupt, here, though
    the actor answers for it once it has it (applied, its caller told it was not)."""
    runtime = vc.get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, wait_for_init=False)
    held = _hold_spawned(runtime, monkeypatch, 2)  # the creation, then the actor's drain
    handle = FailsToInit.get_or_create("h244-hand-over", False)
    queued = handle.add.run_async(5)  # queued behind the creation
    handed = InterruptOnce(ActorCore.submit, after=True)
    monkeypatch.setattr(ActorCore, "submit", handed)
    with contextlib.suppress(Interrupted):  # (whether the creation passes it on is not the point)
        held[0]()  # the creation commits here, then hands the call over: Ctrl-C lands then
    assert handed.fired and len(held) == 2
    held[1]()  # the actor's drain applies the call it was handed
    assert queued.result(BOUND) == 5
    assert handle.add.run(1) == 6


@pytest.mark.usefixtures("runtime_off")
def test_a_body_that_met_shutdown_in_a_nested_call_hears_it_ran_and_was_not_applied(
    store_spec: StoreSpec,
) -> None:
    """S21: the error a method's nested call raised at shutdown reached the caller as it was
    (its words are of the nested call, "shutting down"), not the caller's own: its body ran,
    and nothing of it was applied."""
    store_spec.init()
    actor = MeetsShutdown.get_or_create("h244-meets-shutdown")
    with pytest.raises(RuntimeShutdownError) as stopped:
        actor.nested.run()
    assert "while this call ran" in str(stopped.value) and "not applied" in str(stopped.value)
    assert isinstance(stopped.value.__cause__, RuntimeShutdownError)
    assert "the nested call's" in str(stopped.value.__cause__)


def test_a_read_only_method_may_schedule_a_timer_on_its_own_actor(actor_store: StoreSpec) -> None:
    """M18: a timer scheduled through a handle from a *read-only* method of the same actor was
    refused as a writer waiting for itself: the read holds no writer (its scheduling commit
    waits for nothing of it)."""
    reminder = Reminder.get_or_create("h244-reminder")
    key = reminder.remind_me.run("h244-reminder")
    assert isinstance(key, str) and key
    assert [timer["key"] for timer in reminder.timers()] == [key]


@pytest.mark.usefixtures("runtime_off")
def test_a_body_that_raised_its_own_error_as_shutdown_began_gets_that_error(store_spec: StoreSpec) -> None:
    """S24: every error a body raised once shutdown had begun was reworded as the runtime's
    ("shut down while this call ran"): a method's own ``ValueError`` (nothing to apply either
    way) no longer reached the code that catches it."""
    store_spec.init()
    actor = MeetsShutdown.get_or_create("h244-refuses")
    with pytest.raises(ValueError, match="the method's own refusal"):
        actor.refuses.run()


def test_a_call_queued_back_to_an_actor_up_the_thread_without_waiting_is_applied_after_it(
    actor_store: StoreSpec,
) -> None:
    """M25: a ``run_async`` call to an actor whose writer runs further up this thread (A -> B
    -> A) was refused as a cycle: it waits for nothing (queued, applied once A's method has
    committed)."""
    QUEUED.clear()
    pinger = Pinger.get_or_create("h244-pinger")
    Relay.get_or_create("h244-relay")
    assert pinger.outer.run("h244-relay", "h244-pinger") == 1
    assert len(QUEUED) == 1
    assert QUEUED[0].result(timeout=BOUND) == 1


def test_a_timeout_before_the_step_was_sent_says_the_calls_were_not_applied(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T28, T29: a read timing out before the commit's step put (past its retries) reached the
    caller as the bare timeout, or said a write was in flight: the caller could not tell that
    nothing was applied and the call can be retried."""
    runtime = vc.get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, deadline=1.0)
    store = runtime.store

    async def stalled(key: str) -> Any:
        raise StorageTimeoutError(f"{key}: injected stall", key, write_in_flight=False)

    monkeypatch.setattr(store, "get", stalled)
    monkeypatch.setattr(type(store), "inline", False)
    runtime.core("h244")._distrust()  # (the next attempt reads before its put)
    with pytest.raises(StorageTimeoutError) as timed_out:
        ledger.add.run("second")
    assert timed_out.value.write_in_flight is False
    assert "not applied and can be retried" in str(timed_out.value)
    assert isinstance(timed_out.value.__cause__, StorageTimeoutError)


def test_a_fold_whose_calls_all_raised_keeps_the_actors_timers(ledger: Any) -> None:
    """S23: the step that records the outcomes of folded calls that all raised was written
    without its parent's ``extra``: the actor's timers (and the rest of it) were dropped."""
    key = ledger.add.options(delay=3600.0).run("later")
    runtime = vc.get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, combine_after=1)  # (one lost race posts)
    lose_the_next_put(runtime.core("h244"))  # our put loses: we post the call, take the lease, fold
    RUNS.clear()
    with pytest.raises(ValueError, match="refused again the second time"):
        ledger.raises_when_run_again.run("again")  # (its put loses; the fold runs it again)
    assert len(RUNS) == 2
    assert counters.stats().get("folded_calls", 0) == 1
    assert [timer["key"] for timer in ledger.timers()] == [key]


def test_a_call_with_arguments_its_method_does_not_take_is_refused_as_it_is_made(ledger: Any) -> None:
    """M17: the arguments not checked against the method as the call was made: ``run_async``
    handed back a future (the call queued, its batch-mates' commit carrying a call bound to
    fail) for a call that could never run."""
    with pytest.raises(TypeError):
        ledger.add.run_async("one", "two", "three")
    assert ledger.seen.run() == ["first"]


def test_a_put_whose_outcome_it_could_not_tell_reaches_the_caller_as_it_said_it(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T36: a step put that itself ended in ``CommitOutcomeUnknownError`` (it said which step
    and why nothing tells) was wrapped in another ("was sent and then failed with
    CommitOutcomeUnknownError(...)"), its words buried in a repr."""
    unknown = CommitOutcomeUnknownError("h244", 2, "injected: nothing tells whether step 2 is ours")

    async def cannot_tell(self: ActorLog, *args: Any, **kwargs: Any) -> None:
        raise unknown

    monkeypatch.setattr(ActorLog, "put_step", cannot_tell)
    monkeypatch.setattr(type(vc.get_runtime().store), "inline", False)
    with pytest.raises(CommitOutcomeUnknownError) as raised:
        ledger.add.run("second")
    assert raised.value is unknown


def test_a_call_of_an_earlier_class_on_a_deleted_actor_is_told_it_was_deleted(actor_store: StoreSpec) -> None:
    """S28: a tombstone's class taken for the actor's: a call through a handle of the id's
    earlier class (made again since with another, then deleted) was refused as "class
    changed" rather than failed as deleted."""
    reminder = Reminder.get_or_create("h244-twice")
    assert reminder.ping.run() == 1
    assert vc.delete_actor("h244-twice") is True
    assert Ledger.get_or_create("h244-twice").add.run("new") == 1
    assert vc.delete_actor("h244-twice") is True
    with pytest.raises(vc.ActorDeletedError):
        reminder.ping.run()


def test_a_defect_after_the_step_put_was_sent_leaves_the_outcome_open(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T37: an exception other than a storage error, raised once the step's put was sent (a
    defect in the client, a ``MemoryError``), reached the caller bare: as if nothing was
    applied, where the put may have landed."""
    defect = RuntimeError("injected: the client failed after sending")

    async def failing_after_sending(self: ActorLog, *args: Any, **kwargs: Any) -> None:
        raise defect

    monkeypatch.setattr(ActorLog, "put_step", failing_after_sending)
    monkeypatch.setattr(type(vc.get_runtime().store), "inline", False)
    with pytest.raises(CommitOutcomeUnknownError) as raised:
        ledger.add.run("second")
    assert raised.value.__cause__ is defect


def test_a_defect_in_a_posted_calls_attempt_leaves_it_pending(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T38: a posted call whose next attempt met a defect (not a storage error) failed with
    that error, as if never applied, though its post stays and any process's fold may still
    apply it: pending, the defect its cause."""
    runtime = vc.get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, combine_after=1)  # (one lost race posts)
    defect = RuntimeError("injected: the client failed")
    real_put_step = ActorLog.put_step
    puts: list[int] = []

    async def put_step(self: ActorLog, record: Any, *args: Any, **kwargs: Any) -> Any:
        puts.append(record.step)
        if len(puts) > 1:  # (the first loses its race; the fold's put meets the defect)
            raise defect
        return await real_put_step(self, record, *args, **kwargs)

    lose_the_next_put(runtime.core("h244"))
    monkeypatch.setattr(ActorLog, "put_step", put_step)
    monkeypatch.setattr(type(runtime.store), "inline", False)
    with pytest.raises(vc.CallPendingError) as pending:
        ledger.add.run("second")
    assert len(puts) == 2
    assert pending.value.__cause__ is defect


def test_a_step_names_the_step_before_it_as_its_parent(ledger: Any) -> None:
    """S40: the step a commit wrote named the step two before it as its parent
    (docs/protocol.md: step N's parent is N - 1)."""
    assert ledger.add.run("second") == 2
    core = vc.get_runtime().core("h244")
    record = core.env.run(core.log.read_step(2))
    assert record is not None and record.parent == 1


def test_a_step_put_once_the_runtime_stopped_is_never_sent(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S43: the put of a step built as the runtime stopped was sent all the same on a store
    that puts inline (memory, local: not through the loop, which refuses): the step landed
    after shutdown, behind its caller's back."""
    runtime = vc.get_runtime()
    real = ActorCore._step_record

    def step_record(self: ActorCore, *args: Any) -> Any:
        record = real(self, *args)
        runtime.stopped = True  # (the runtime stops as the step is built)
        return record

    monkeypatch.setattr(ActorCore, "_step_record", step_record)
    try:
        with pytest.raises(RuntimeShutdownError):
            ledger.add.run("second")
    finally:
        runtime.stopped = False
    with pytest.raises(NotFoundError):
        asyncio.run(runtime.store.get(runtime.core("h244").log.step_key(2)))


def test_an_interrupt_before_the_first_attempt_says_nothing_was_sent(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B01: a commit taken for one whose step put was sent before its first attempt began:
    Ctrl-C landing as the way was chosen (race, fold or post) reached its catcher without the
    note that nothing was sent and the call can be made again."""
    monkeypatch.setattr(ActorCore, "_choose_way", InterruptOnce(ActorCore._choose_way))
    with pytest.raises(Interrupted) as interrupted:
        ledger.add.run("second")
    assert any(
        "before its step's write was sent: not applied" in note for note in interrupted.value.__notes__
    )
    assert ledger.add.run("third") == 2


def test_a_timer_index_that_fails_after_the_commit_does_not_fail_the_committed_call(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A16: a failure to write the due-index of a committed step's timers reached the caller as
    the call's failure: the step, with its timer, had committed (the index is repaired later)."""

    async def index_fails(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected: the due-index could not be written")

    monkeypatch.setattr(after_commit, "index_after_commit", index_fails)
    key = ledger.add.options(delay=3600.0).run("later")
    assert [timer["key"] for timer in ledger.timers()] == [key]


def test_a_step_put_that_met_a_foreign_object_is_retried_as_never_sent(
    ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S47: a put that met an unreadable object already at its number (which proves it wrote
    nothing) left the commit taken for one whose put was sent: not retried, and its caller
    told the call "may have been applied"."""
    real_put_step = ActorLog.put_step
    met: list[int] = []

    async def put_step(self: ActorLog, record: Any, *args: Any, **kwargs: Any) -> Any:
        if not met:
            met.append(record.step)
            raise ForeignStepError(self.step_key(record.step), "injected: an unreadable object was there")
        return await real_put_step(self, record, *args, **kwargs)

    monkeypatch.setattr(ActorLog, "put_step", put_step)
    monkeypatch.setattr(type(vc.get_runtime().store), "inline", False)
    assert ledger.add.run("second") == 2
    assert met


def test_a_call_after_our_post_was_applied_does_not_post_behind_it(ledger: Any) -> None:
    """A11: our post, applied by our own fold, was still taken for pending after the commit:
    the next call posted its batch too (behind a post long applied), however it could race."""
    runtime = vc.get_runtime()
    runtime.settings = dataclasses.replace(runtime.settings, combine_after=1)  # (one lost race posts)
    lose_the_next_put(runtime.core("h244"))  # our put loses: we post the call, take the lease, fold
    assert ledger.add.run("second") == 2  # (the step it lost to is a copy of step 1)
    assert counters.stats().get("posted_calls", 0) == 1
    assert ledger.add.run("third") == 3
    assert counters.stats().get("posted_calls", 0) == 1
