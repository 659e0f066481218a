"""Unsynchronised wall clocks, from a hostile review (review-h39): one process's clock wrong by
minutes or hours, ahead or behind, or stepped (NTP) while a call is in flight.

Each test says whether it failed on the code it was written against (a defect, fixed) or
pins a guarantee that already held (then it names what was broken by hand to see it fail).
Helpers come from test_combining (imported by name, no tests)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import multiprocessing.context
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from actors import OrderLog
from child_processes import join_all, start_together
from clock_workers import skewed_hammer
from combining_workers import POSTING, ChildLog, check_once_and_in_order
from test_combining import _applied, commit_behind_its_back, foreign_box, init_switchable, pending_posts
from timer_workers import Alarm

import vactor_cloud as vc
from vactor_cloud import _sync, post_cursor, posting
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import StepTakenError
from vactor_cloud.posting import PostedCall, advance_cursor
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timer_firing import fire_actor
from vactor_cloud.timers import list_index

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: hang budget: a wait that outlives it is a hang, whatever the machine's speed
HANG = 60.0

_real_time = time.time


def _post_add(box: Any, token: str) -> str:
    """One ``add(token)`` post of ``box`` (dated by ``time.time`` as it reads now); its key."""
    call = PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex)
    post = _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)  # the next post gets a later millisecond
    return str(post.key)


def _leave_behind(store: Any, key: str) -> None:
    """Every delete of ``key`` fails from now on: a folder that applies it "dies" before deleting."""
    store.fail = lambda op, k: (
        RetryableStorageError("injected: the folder died before deleting it", k)
        if op in ("delete", "delete_many") and k == key
        else None
    )


def _a_post_applied_and_left_behind(store_spec: StoreSpec) -> tuple[Any, str]:
    """Actor "a" at step 3, which applied another sender's post (early/0) beside our me/1; the
    post was not deleted (as if its folder died first). The log's handle and the post's key."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    key = _post_add(foreign_box("a"), "early/0")
    _leave_behind(store, key)
    commit_behind_its_back("a")  # step 2
    log.add.run("me/1")  # step 3 folds early/0 and me/1; the post is left behind
    assert log.applied.run() == ["me/0", "early/0", "me/1"]
    return log, key


def _commit_behind_its_back_unless_folded() -> None:
    """``commit_behind_its_back``, unless this process's lease holder folded a step first (it
    folds a pending post at once, in the background): then its next call folds anyway."""
    with contextlib.suppress(StepTakenError):
        commit_behind_its_back("a")


# -- 1. a committer whose clock runs an hour ahead drops a cursor entry the others still need -----
@pytest.mark.usefixtures("runtime_off")
def test_a_step_from_a_clock_an_hour_ahead_does_not_let_a_post_left_behind_apply_twice(
    store_spec: StoreSpec,
) -> None:
    """Defect (failed before the fix: ``early/0`` applied twice). A sender's cursor entry is
    dropped ``SENDER_TTL`` (1 h) after its time by the clock of whoever writes the cursor; a
    post left behind (its folder died before deleting it) is expired ``SENDER_TTL / 2`` after
    its own time by the clock of whoever folds. With honest clocks the post expires 30 min
    before its entry can go. A process whose clock ran 61 min ahead wrote the cursor without
    the entry of a sender whose applied post was still there; the next fold of an honest
    process found the post young and its sender unknown, and applied it again. Dropping now
    raises the cursor's floor (``extra["post_floor"]``): a post dated at or before it is
    expired whatever the folder's clock says."""
    log, key = _a_post_applied_and_left_behind(store_spec)
    core = vc.get_runtime().core("a")
    three = core.record
    assert three is not None and three.step == 3
    ahead = time.time() + post_cursor.SENDER_TTL + 60  # another process, its clock 61 min ahead
    skewed = dataclasses.replace(
        three,
        step=4,
        parent=3,
        writer="a-clock-an-hour-ahead",
        time=ahead,
        extra=advance_cursor(three.extra, [], ahead),
        posted=b"",
        carried=b"",
    )
    _sync.sync(core.log.put_step(skewed))
    assert pending_posts("a") == [key]  # still there, young by this process's clock
    log.add.run("me/2")  # loses to step 4, posts, folds what is pending
    applied = log.applied.run()
    assert applied.count("early/0") == 1, applied
    assert applied.count("me/2") == 1, applied


@pytest.mark.usefixtures("runtime_off")
def test_a_fold_while_this_clock_ran_an_hour_ahead_does_not_let_a_post_left_behind_apply_twice(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect (failed before the fix), end to end in one process: its clock jumps 61 min ahead
    (a bad NTP step), it folds another sender's post (writing the cursor by that clock), the
    clock is stepped back, and its next fold meets a post it had applied and could not delete."""
    log, _ = _a_post_applied_and_left_behind(store_spec)
    monkeypatch.setattr(time, "time", lambda: _real_time() + post_cursor.SENDER_TTL + 60)
    _post_add(foreign_box("a"), "other/0")  # a second sender, its post dated by the skewed clock
    _commit_behind_its_back_unless_folded()
    log.add.run("me/2")  # folds other/0 (if the holder has not yet) with the clock an hour ahead
    monkeypatch.setattr(time, "time", _real_time)  # NTP steps it back
    _commit_behind_its_back_unless_folded()
    log.add.run("me/3")  # folds what is pending (the holder's idle fold may come first)
    applied = log.applied.run()
    assert applied.count("early/0") == 1, applied
    assert [applied.count(t) for t in ("me/0", "me/1", "me/2", "me/3", "other/0")] == [1] * 5, applied


# -- 2. processes whose clocks run hours apart, or are stepped, hammer one actor ------------------
def _run_skewed(
    ctx: multiprocessing.context.ForkServerContext,
    spec: StoreSpec,
    tmp_path: Path,
    actor_id: str,
    workers: dict[str, tuple[int, float, list[tuple[float, float]]]],
    settings: dict[str, Any],
) -> tuple[dict[str, ChildLog], dict[str, int | None]]:
    """One ``skewed_hammer`` child per worker (name -> (calls, delay, clock schedule)); each
    loses its first race on purpose, so that every one of them posts and may fold."""
    ready = ctx.Queue()
    start = ctx.Value("d", 0.0)
    outs = {who: tmp_path / f"{who}.log" for who in workers}
    procs = {
        who: ctx.Process(
            target=skewed_hammer,
            args=(schedule, spec, actor_id, who, calls, str(outs[who]), settings, start, delay, ready),
        )
        for who, (calls, delay, schedule) in workers.items()
    }
    start_together(procs.values(), ready, workers, start)
    codes = join_all(procs.values())
    return {who: ChildLog.read(path) for who, path in outs.items()}, dict(zip(workers, codes, strict=True))


@pytest.mark.usefixtures("runtime_off")
def test_processes_with_clocks_hours_apart_or_stepped_apply_every_call_once_and_hang_nowhere(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    """Pin (held): five processes hammer one actor, posting and folding: one clock 2 h ahead,
    one 2 h behind, one stepped +45 min, -45 min and back while its calls run (NTP), two
    honest. Every acknowledged call is applied once, in its process's order; a call that
    failed failed with a typed error, and one that failed with anything but
    ``CallPendingError`` was not applied; every process ends (no wait without a deadline).
    A smoke pin of the whole: hand-breaking any one clock safeguard (``PostBox.observe``
    a no-op, ``lease.expiry_too_far_ahead`` always False, both, or expiring posts dated
    ahead too) did not make it fail here: posters whose posts a skewed folder expired take
    the lease over and fold their own calls. It fails when exactly-once does (``applied``
    always False: calls applied twice)."""
    OrderLog.get_or_create("skew")
    vc.shutdown()
    hours = 2 * 3600.0
    workers = {
        "ahead": (1500, 0.0, [(0.0, hours)]),  # first: it takes the lease and folds for the others
        "behind": (20, 0.3, [(0.0, -hours)]),
        "stepped": (20, 0.3, [(0.3, 2700.0), (0.8, -2700.0), (1.3, 0.0)]),
        "honest0": (20, 0.3, []),
        "honest1": (20, 0.3, []),
    }
    settings = {**POSTING, "commit_timeout": 20.0}
    logs, codes = _run_skewed(process_context, shared, tmp_path, "skew", workers, settings)
    assert set(codes.values()) == {0}, (codes, {w: (log.errors, log.done) for w, log in logs.items()})
    applied = _applied(shared, "skew")
    assert check_once_and_in_order(logs.values(), applied) == []
    wrong = {t: kind for log in logs.values() for t, kind in log.errors.items() if kind != "CallPendingError"}
    assert not [t for t in wrong if t in applied], wrong  # reported failed, yet applied
    # A poster may give up (CallPendingError, after commit_timeout) where a skewed folder
    # expired its post; none did in any run here, but a loaded machine may see one.
    assert not wrong, wrong
    assert all(log.acked for log in logs.values()), {w: log.errors for w, log in logs.items()}


# -- 3. the clock stepped while a poster waits behind a lease of a holder that died ---------------
@pytest.mark.parametrize("step", [-2 * 3600.0, 2 * 3600.0], ids=["stepped-back-2h", "stepped-ahead-2h"])
@pytest.mark.usefixtures("runtime_off")
def test_a_poster_waiting_behind_a_dead_holders_lease_when_its_clock_is_stepped_gets_its_result(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, step: float
) -> None:
    """Pin (held): a poster waits behind the folder lease of a holder that died (written for
    10 min, by an honest clock). Its clock is stepped two hours back (the lease now reads
    2 h 10 min ahead: as if its holder's clock ran that far ahead) or ahead (long expired)
    while its call waits. Either way it takes the lease over and folds its own post, within
    ``commit_timeout``; no wait goes by the stepped clock. (Made to fail by hand: stepped
    back, with ``lease.expiry_too_far_ahead`` answering False; stepped ahead, with
    ``Lease.valid`` ignoring the clock: the poster waited behind the lease and its caller
    got ``CallPendingError`` after ``commit_timeout``.)"""
    init_switchable(store_spec, combine_window=60.0, commit_timeout=15.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    leases = LeaseStore(vc.get_runtime().store, "a", vc.get_runtime().settings.signing_key)
    held = _sync.sync(leases.write(_sync.sync(leases.read()), "a-dead-holder", 600.0, 1))
    assert held is not None and held.valid()
    shift = [0.0]
    monkeypatch.setattr(time, "time", lambda: _real_time() + shift[0])
    commit_behind_its_back("a")  # step 2: our next call loses, posts, and waits behind the lease
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(log.add.run, "me/1")
        time.sleep(0.5)  # posted by now (or about to): waiting behind the lease
        shift[0] = step  # NTP steps this process's clock
        assert call.result(timeout=HANG) == 2
    assert log.applied.run() == ["me/0", "me/1"]


# -- 4. a poster dates its post after the post floor it knows ------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_poster_dates_its_post_after_the_post_floor_of_the_step_it_lost_to(store_spec: StoreSpec) -> None:
    """Pin (held since the floor came, made to fail by dropping the ``observe`` of the floor in
    ``Poster._post``): a writer whose clock ran 70 min ahead dropped an entry of its own, so
    the floor lies 10 min ahead of the honest clocks; the step our call lost to was written
    after it by an honest clock. A post dated by our clock (or that step's) would be expired
    by every folder, by the floor; it is dated after the floor, and applied once."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    core = vc.get_runtime().core("a")
    one = core.record
    assert one is not None
    floor = time.time() + 600.0
    two = dataclasses.replace(
        one, step=2, parent=1, writer="honest", extra={**one.extra, post_cursor.POST_FLOOR: floor}
    )
    _sync.sync(core.log.put_step(two))
    written: list[str] = []
    store.fail = lambda op, key: written.append(key) if op == "put" and "/mail/" in key else None
    assert log.add.run("me/1") == 2  # loses to step 2, posts, folds
    assert written, "the call did not post: the test did not exercise posting"
    assert all((posting.identity(k) or 0.0) > floor for k in written), (written, floor)
    assert log.applied.run() == ["me/0", "me/1"]


# -- 5. idempotency keys recorded by one clock, trimmed by another --------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_the_newest_idempotency_keys_are_kept_whatever_a_committers_clock_reads(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin (held; made to fail by trimming the table by age alone in ``DedupTable.trimmed``
    and ``StepDedup.get``): the dedup window keeps the newest ``max_keys`` keys *or* the
    younger than ``max_age``. A committer whose clock runs two hours ahead (here: this
    process, stepped) forgets the old-by-its-clock keys beyond the newest ``max_keys`` (the
    age part shortens by the skew, docs/concepts.md, Clocks), never the newest ones: a retry
    of a key recorded a moment ago by an honest clock is not applied twice."""
    store_spec.init(settings=vc.Settings(dedup_window=(3, 60.0)))
    log = OrderLog.get_or_create("a")
    for i in range(3):
        assert log.add.options(idempotency_key=f"k{i}").run(f"me/{i}") == i + 1
    monkeypatch.setattr(time, "time", lambda: _real_time() + 2 * 3600.0)
    assert log.add.run("me/3") == 4  # a commit by the clock two hours ahead, no key
    for i in range(3):  # retries, by the skewed clock and then by the honest one
        assert log.add.options(idempotency_key=f"k{i}").run(f"me/{i}") == i + 1
    monkeypatch.setattr(time, "time", _real_time)
    for i in range(3):
        assert log.add.options(idempotency_key=f"k{i}").run(f"me/{i}") == i + 1
    assert log.applied.run() == ["me/0", "me/1", "me/2", "me/3"]


# -- 6. timers fired by runners whose clocks disagree ---------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_timer_fired_by_a_clock_two_hours_ahead_is_not_fired_again_by_honest_or_stepped_clocks(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin (held; made to fail by leaving a fired one-shot timer in the table, ``TimerTable.consume``
    a no-op for it): a timer due in an hour is fired early by a runner whose clock runs two
    hours ahead (docs/timers.md: "fire early by that skew"), which dies before deleting its
    index entry. Runners reading the honest clock, one stepped two hours back, or clocks
    two and four hours ahead (the entry due by theirs) fire nothing: the table in the step,
    not any clock, says whether it fired."""
    shift = [0.0]
    monkeypatch.setattr(time, "time", lambda: _real_time() + shift[0])
    store_spec.init()
    alarm = Alarm.get_or_create("alarm")
    assert alarm.arm.run(["t"], 3600.0) == 1
    assert vc.fire_due_timers().fired == 0  # not due by the honest clock
    shift[0] = 2 * 3600.0  # due by the clock two hours ahead
    entries = _sync.sync(list_index(vc.get_runtime().store))
    report, _ = fire_actor(vc.get_runtime(), "runner-ahead", None, "alarm", entries, delete=False)
    assert report.fired == 1
    for offset in (0.0, -2 * 3600.0, 2 * 3600.0, 4 * 3600.0):
        vc.shutdown()  # a runner of another process: nothing cached
        shift[0] = offset
        store_spec.init()
        assert vc.fire_due_timers().fired == 0
    assert Alarm.get_or_create("alarm").counts.run() == {"t": 1}


# -- 7. a step dated past any clock ---------------------------------------------------------------
@pytest.mark.parametrize("dated", [math.inf, 1e300, 4e10], ids=["infinity", "1e300", "year-3237"])
@pytest.mark.usefixtures("runtime_off")
def test_a_step_dated_past_any_clock_does_not_break_the_posts_of_a_process_that_reads_it(
    store_spec: StoreSpec, dated: float
) -> None:
    """Defect (failed before the fix: ``OverflowError`` for infinity, this call and every later
    post of the process for that actor; names wrapped for 1e300 and the year 3237). A poster
    dates its posts by the clock of the newest step's writer (``PostBox.observe``) and keeps
    the largest lead it saw. A step
    whose ``time`` is infinite or absurdly far ahead (a malformed writer; a clock reading the
    year 3237) made that lead infinite (``int(inf)``: every post failed, untyped, for the rest
    of the process's life) or past what a post's name can spell (45 bits of milliseconds, to
    the year 3084: the name wrapped). A lead a name cannot spell is now ignored."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    core = vc.get_runtime().core("a")
    mine = core.record
    assert mine is not None
    theirs = dataclasses.replace(mine, step=2, parent=1, writer="a-clock-past-any-other", time=dated)
    _sync.sync(core.log.put_step(theirs))
    written: list[str] = []
    store.fail = lambda op, key: written.append(key) if op == "put" and "/mail/" in key else None
    assert log.add.run("me/1") == 2  # loses to step 2, posts, folds
    commit_behind_its_back("a")
    assert log.add.run("me/2") == 3  # and again
    assert log.applied.run() == ["me/0", "me/1", "me/2"]
    assert written, "no call posted: the test did not exercise posting"
    now = time.time()  # the names spell this clock (not a wrapped time: they sort in post order)
    assert all(abs((posting.identity(k) or 0.0) - now) < 3600 for k in written), written
