"""Review h232: a mutation sweep of modules not swept as a whole before: ``history.py`` (an
actor's history, past views, the listing of actors), ``creation.py`` (creation turns, background
creations), ``init_settings.py``, ``subtask_checkpoints.py`` and ``subtask_executors.py``
(sub-tasks), ``log_records.py`` and ``actor_objects.py``.

146 hand-made mutations, one at a time, each run against the modules that test that code
(memory and local lanes; H01-H08 also against the CLI's and the newcomer's modules): 54 killed
there. Of the 92 left, 76 are killed by the tests here (each test's docstring names its
mutations), 12 are equivalent, 4 are not killed (notes m, h, n). None showed a defect of the
unmutated code. "killed by" names the module (``test_`` / ``test_review_`` left off) whose
test failed first; "h232" a test here, by words of its name.

==== ============================================================= ======== ================================
id   mutation                                                      survived killed by / why
==== ============================================================= ======== ================================
H01  call_text: every call with a meaning in words only            yes      h232 (call text), newcomer
H02  call_text: a failed timer/delete marker without its error     yes      h232 (call text)
H03  call_text: '-> None' shown                                    yes      h232 (call text)
H04  call_text: key not shown                                      yes      h232 (call text)
H05  to_json: deleted flag negated                                 yes      h232 (history json)
H06  _meaning: a resumed call not named                            yes      h232 (call text)
H07  _event_text: any keyed call taken for an event                yes      h232 (call text)
H08  _event_text: name and id swapped                              yes      h232 (call text)
H09  _call_json: meaning dropped                                   yes      h232 (history json)
H10  from_record: tombstone not marked                             yes      h232 (history json)
H11  history(): limit -1 accepted                                  yes      h232 (bad limits)
H12  want one short with limit None                                no       at_step_reads
H13  read-ahead past step 0                                        yes      h232 (bad limits)
H14  a missing step does not end history (older ones listed)       yes      h232 (a gap below ends it)
H15  a missing step does not end the walk                          yes      h232 (a gap below ends it)
H16  steps below the watermark (strays) shown                      no       h131_history_pages
H17  newest dropped when below the watermark                       yes      h232 (newest kept)
H18  walk goes on below the watermark                              yes      h232 (page at watermark)
H19  on_damaged told of damaged steps below the watermark          no       h131_history_pages
H20  on_damaged oldest first                                       no       h131_history_pages
H21  a page not cut to the limit                                   yes      equivalent (a)
H22  a damaged step ends history                                   no       h131_history_pages
H23  damaged of an earlier page reported again                     no       h131_history_pages
H24  iter_history: bad limit only at the first page                no       h131_history_pages
H25  _pages_on_the_loop: not closed on an early stop               no       h131_history_pages
H26  raw_state_at: a tombstone's state read                        no       delete_actor
H27  raw_state_at: a pickled state read as json without class      yes      h232 (class missing)
H28  state_at: tombstone restored                                  no       delete_actor
H29  state_at: the record held while waiting for room              yes      not killed (m)
H30  _freeze: subclass with a __dict__ (a slotted class unguarded) yes      h232 (slotted view)
H31  _freeze: del allowed                                          yes      h232 (slotted view)
H32  start_after's own actor listed again                          no       history
H33  an actor's keys yield its id many times                       no       history
H34  id not matching prefix yielded                                yes      h232 (prefix past an id)
H35  listing stops after the first page                            no       history
H36  next page does not skip the last actor's keys                 no       history
H37  a deleted actor listed                                        yes      h232 (deleted not listed)
H38  list_actors limit=0 accepted                                  yes      h232 (bad limits)
H39  page not cut to the limit                                     no       history
H40  a damaged actor silently left out                             no       deleted_leftovers
H41  _take one more                                                no       history
H42  HistoryEntry.when naive                                       yes      h232 (history json)
C01  turn: a creation ended since the caller looked not noticed    yes      h232 (ended after looking)
C02  turn: a cycle through another thread's creation not refused   yes      h232 (cycle, two threads)
C03  turn: ended not counted                                       yes      h232 (ended after looking)
C04  turn: a waiter's entry kept                                   yes      h232 (not waiting still)
C05  created_by_me for any thread's creation                       no       wait_for_init
C06  claim true twice                                              no       failed_creation_locals
C07  defer after settle: fn given no error                         no       h150_ready_after_failed_creation
C08  settle: locals kept                                           no       failed_creation_locals
C09  settle: a deferred fn's exception swallowed                   no       h153_creation_hand_over
C10  _run_each: last exception, not first                          no       h153_creation_hand_over
C11  _forget_locals: context not followed                          yes      h232 (implicit chain)
C12  _forget_locals: group members not followed                    no       h159_creation_locals
C13  _forget_locals: a suspended generator's frame cleared         no       failed_creation_locals
C14  _waits_for: a cycle without me taken for me                   yes      equivalent (e)
I01  settings= of another type accepted                            yes      h232 (init settings)
I02  a key both ways not refused                                   yes      h232 (init settings)
I03  default timeout in settings conflicts with init's             yes      h232 (init settings)
I04  settings' load_classes_from_storage=False ignored             no       settings
I05  a setting passed as a storage option                          no       settings
I06  ObjectStore with options                                      yes      h232 (init settings)
I07  empty signing key accepted                                    yes      h232 (init settings)
I08  env key beats the argument                                    yes      h232 (init settings)
I09  settings' subtask_executor dropped                            yes      h232 (init settings)
I10  settings' storage ignored                                     no       settings
I11  two storages: init's wins silently                            no       settings
I12  two storage options: settings' win silently                   yes      h232 (init settings)
I13  two signing keys: settings' wins silently                     no       settings
I14  $VACTOR_SIGNING_KEY empty accepted                            yes      h232 (init settings)
I15  timeout None written over the settings' timeout               no       settings
I16  settings' storage equal to the default ignored                yes      equivalent (f)
S01  Checkpoints.start: an unmemoized child checkpointed           yes      h232 (another child)
S02  Checkpoints.start: a child's checkpoint written twice         no       subtask_shutdown
S03  Memo.start: positions restart at every launch                 yes      h232 (every launch)
S04  Memo.start: next launch overlaps                              yes      h232 (every launch)
S05  _earlier_actors: first actor's shortcut dropped               yes      equivalent (g)
S06  _earlier_actors: its own incarnation taken as earlier         yes      h232 (made again)
S07  _load: a later launch lists from position 0                   yes      h232 (every launch)
S08  _load: one checkpoint listed                                  no       subtask_shutdown
S09  _load: a checkpoint gone meanwhile fails the call             no       h140_subtask
S10  decode: a newer release's checkpoint ignored                  yes      h232 (newer, undecodable)
S11  decode: position not checked                                  yes      h232 (another position)
S12  decode: kind not checked                                      yes      equivalent (c)
S13  decode: the stored serializer trusted                         yes      h232 (json says pickled)
S14  decode: an undecodable result not an IntegrityError           yes      h232 (newer, undecodable)
S15  decode: fingerprint lost                                      no       subtask_shutdown
S16  store: incarnation not recorded                               yes      h232 (made again)
S17  store: position without the launch's first                    yes      h232 (every launch)
S18  _put: another run's checkpoint not taken                      no       h140_subtask
S19  _put: an earlier actor's checkpoint not replaced              yes      h232 (made again)
S20  _put: transient errors not retried                            yes      h232 (refused once)
S21  checkpoint_written: bare CancelledError                       no       subtask_shutdown
S22  call_pickle: a partial's arguments left out                   yes      h232 (partial, dict)
S23  _shape: dicts not looked into                                 yes      h232 (partial, dict)
S24  fingerprint without the arguments                             no       h198_batch_subtask
S25  _read: a damaged checkpoint raises                            yes      h232 (damaged checkpoint)
S26  load: an earlier actor's checkpoint used                      yes      h232 (made again)
S27  _put: after a replaced one vanished, if-match kept            yes      h232 (gone before replaced)
E01  Runner.submit: a broken shared pool kept                      no       h198_batch_subtask
E02  a thread child without the caller's runtime scope             yes      h232 (own runtime)
E03  run: stopped not set                                          yes      not killed (h)
E04  run: queued children not cancelled                            yes      h232 (sent pickled)
E05  _as_launched: a retry gets what the attempt left of its args  no       h198_batch_subtask
E06  an interrupt a child raised retried                           no       h203_subtask_interrupts
E07  one retry fewer                                               no       subtask
E08  the waiting thread never runs a child itself                  no       subtask
E09  _run_one_here: Ctrl-C taken for the child's failure           yes      equivalent (b)
E10  _run_one_here: child runs inside the actor call               yes      h232 (outside the call)
E11  pool thread does not start the checkpoint                     no       subtask
E12  _call_here: an interrupt becomes the child's failure          yes      equivalent (b)
E13  _shared_pool: a broken pool kept                              no       h198_batch_subtask
E14  executor_spec: Settings.subtask_executor ignored              no       subtask
E15  resolve_executor: unknown name not refused                    no       subtask
E16  _adopt_runtime: a worker in this process inits again          yes      h232 (sent pickled)
E17  function_name of a partial                                    yes      h232 (a partial's name)
E18  _report_success: a cancelled future's result asked            yes      equivalent (i)
L01  CallRecord.to_json: key null written                          yes      h232 (history json)
L02  CallRecord.from_json: ok always                               no       h170_batch_sweep
L03  unrecordable: a surrogate name accepted                       yes      h232 (metadata)
L04  unrecordable: a recursive metadata raises                     yes      h232 (metadata)
L05  StepRecord.decode: kind not checked                           yes      equivalent (c)
L06  StepRecord.decode: Infinity not an IntegrityError             yes      h232 (malformed step)
L07  _outcomes_part: old part in the new encoding accepted         yes      h232 (malformed step)
L08  _outcomes_part: new part not checked                          yes      h232 (malformed step)
L09  classify_late_commit: a step at the watermark accepted        yes      h232 (late commit)
L10  classify_late_commit: unrecorded taken as not committed       no       compaction
L11  decode_gc: recorded_from defaults to the watermark            yes      h232 (earlier release's gc)
L12  encode: legacy part written over a pickle                     yes      equivalent (j)
L13  decode: extra not copied                                      yes      equivalent (k)
A01  _step_record: a step at another number accepted               no       integrity
A02  list_steps: nested key taken for a step                       yes      h232 (nested key)
A03  list_steps: stop at limit dropped                             no       retention_edges
A04  by_value_at_most True taken as 1                              yes      h232 (an actor's objects)
A05  list_dedup_checkpoints: outcome objects listed                no       dedup_outcome_objects
A06  read_dedup_outcome: content hash not checked                  no       dedup_outcome_objects
A07  put_dedup_outcome: serializer mismatch accepted               yes      h232 (an actor's objects)
A08  HEAD kind not checked                                         yes      equivalent (d)
A09  unreadable HEAD: a timeout taken for damage                   yes      h232 (an actor's objects)
A10  advance_head: same step written again                         yes      h232 (an actor's objects)
A11  read_watermark: a newer format reworded as damage             yes      h232 (newer watermark)
A12  _put_own: existing counted as created                         no       dedup_outcome_objects
A13  class body hash not checked                                   yes      h232 (another body)
A14  restore_class: a newer release's body replaced                yes      h232 (another body)
A15  exists: HEAD and steps both needed                            yes      not killed (n)
A16  strays set unbounded                                          yes      not killed (m)
==== ============================================================= ======== ================================

(a) H21: a page never holds more than ``want - given`` entries: the reading adds at most that
    many, and the watermark's filter only removes.
(b) E09, E12: an interrupt (no ``Exception``) taken for a child's outcome is raised by
    ``Runner._settled`` as soon as it takes that outcome, never retried (E06's guard): raised
    all the same, at most after the outcomes of children already finished.
(c) L05, S12: no other kind of object the library writes has a step's fields (``parent``,
    ``class``, ``serializer``, ``writer``, ``calls``, part ``state``) or a checkpoint's
    (``position``, part ``result``): read as one it is refused as malformed, an
    ``IntegrityError`` all the same; and whoever can write the bucket unsigned can write the
    right kind as well.
(d) A08: HEAD is advisory: another kind of object at HEAD that has a step and a class is one
    of the actor's own (``codec`` checks the actor it names), and the step it names is read
    and probed past as any HEAD's; one without them is ignored as before.
(e) C14: a cycle of waits that does not reach this thread cannot form: each thread asks
    ``_waits_for`` before it waits, and the one that would close a cycle is refused.
(f) I16: settings naming the default storage with ``init()`` naming none: the default is
    chosen all the same.
(g) S05: for the id's first actor (``born`` 0) no checkpoint is of an earlier actor: the
    shortcut spares a decode.
(h) E03, not killed: the flag stops a thread-pool child whose future ``run`` never noted
    (Ctrl-C as ``submit`` returned); the children it noted are cancelled (E04). A test needs
    the interrupt at that line (a trace function, as in h153's).
(i) E18: a cancelled future's ``result()`` raises, which the callback catches the same.
(j) L12: ``legacy`` is set only beside outcomes in the per-call encoding (the committer's
    ``encode_outcomes``).
(k) L13: the meta is parsed afresh by each decode: nothing else holds its ``extra``.
(m) H29, A16, not killed: memory only. H29 holds the step's fetched copy while ``state_at``
    waits for read room; A16 lets the set of keys warned about as no step grow past 1024.
(n) A15, not killed: ``ActorObjects.exists`` had no caller (library, CLI or tests); removed.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import pickle
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest
from garbage import full_collection
from store_helpers import init, raw_get, raw_put, retune
from test_failed_creation_locals import _GIVEN, Blob, _check
from test_review_api import SlotsWithState
from test_review_h131_history_pages import DAMAGED, FakeLog, record

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud import history as history_module
from vactor_cloud.cli.bench_harness import RequestTrace
from vactor_cloud.creation import CreationTurns
from vactor_cloud.deletion import DELETE_CALL, DELETED
from vactor_cloud.errors import IntegrityError, RateLimitedError, StorageTimeoutError
from vactor_cloud.history import HistoryEntry, _history, raw_state_at
from vactor_cloud.ids import event_dedup_key, resume_dedup_key
from vactor_cloud.init_settings import settings_for_init
from vactor_cloud.keys import task_key
from vactor_cloud.log_records import (
    OUTCOMES_MAGIC,
    CallRecord,
    ClassRef,
    GcWatermark,
    LateCommit,
    StepRecord,
    classify_late_commit,
    decode_gc,
    unrecordable,
)
from vactor_cloud.runtime import own_runtime
from vactor_cloud.storage import IfMatch, MemoryStore
from vactor_cloud.subtask_checkpoints import fingerprint_of
from vactor_cloud.subtask_executors import function_name
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import CANCEL

#: how many times ``Counted.__init__`` ran, by the actor id it was given
INITS: dict[str, int] = {}


@vc.virtual_actor
class Counted:
    def __init__(self, name: str) -> None:
        INITS[name] = INITS.get(name, 0) + 1
        self.name = name

    @vc.virtual_actor.readonly
    def whose(self) -> str:
        return self.name


#: (the cycle test) set once thread B runs the creation of "cyc-b", and once thread A's
#: creation waits for it
B_CREATES = threading.Event()
A_WAITS = threading.Event()
#: what B's ``__init__`` met when it created "cyc-a"
MET: list[str] = []


@vc.virtual_actor
class CycleB:
    def __init__(self, a_thread: int) -> None:
        if not MET:  # (its first run, on thread B: waits until A waits for it)
            B_CREATES.set()
            assert A_WAITS.wait(30), "A never waited for this creation"
        try:
            CycleA.get_or_create("cyc-a")
            MET.append("created cyc-a")
        except vc.ReentrantCallError:
            MET.append("refused")


@vc.virtual_actor
class CycleA:
    def __init__(self) -> None:
        CycleB.get_or_create("cyc-b", 0)


#: runs of ``Launches.again``'s body, and the children ``double`` ran
RUNS: list[int] = []
DOUBLED: list[int] = []
#: (``Launches.damaged``) a checkpoint of a newer format in place of the damaged one;
#: (``JsonLaunches.once``) one in json that does not decode in place of the pickled one
NEWER: list[bool] = []
#: the call ids of ``Launches.twins``'s runs
CALL_IDS: list[str] = []


def double(x: int) -> int:
    DOUBLED.append(x)
    return 2 * x


LOCK = threading.Lock()


class StartedPool(ThreadPoolExecutor):
    """A thread pool whose ``submit`` returns once a thread of the pool runs the task (so the
    method's waiting thread never takes it to run itself)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        started = threading.Event()

        def run(*args: Any, **kwargs: Any) -> Any:
            started.set()
            return fn(*args, **kwargs)

        future = super().submit(run, *args, **kwargs)
        assert started.wait(30), "the pool never started the task"
        return future


#: set by child 1 of ``Launches.detached``
CHILD_1_RAN = threading.Event()


def outside_the_call(i: int) -> bool:
    if i == 0:
        assert CHILD_1_RAN.wait(30), "child 1 never ran"
    else:
        CHILD_1_RAN.set()
    return vc.current_call() is None


class ForwardingPool(Executor):
    """No ``ThreadPoolExecutor``: children reach it pickled, as a process pool's do (the
    waiting thread runs none), and run in this process on one thread. With ``hold``, the
    tasks after the first are held (not started) until ``release``."""

    def __init__(self, hold: bool = False) -> None:
        self.inner = ThreadPoolExecutor(1)
        self.hold = hold
        self.submitted = 0
        self.held: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        if not self.hold or self.submitted == 1:
            return self.inner.submit(fn, *args)
        future: Future[Any] = Future()
        self.held.append((future, fn, args))
        return future

    def release(self) -> None:
        for future, fn, args in self.held:
            if future.set_running_or_notify_cancel():
                future.set_result(fn(*args))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait)


#: the pool ``Launches.forwarded`` launches on, and the children ``numbered`` ran
FORWARDING: list[ForwardingPool] = []
NUMBERED: list[int] = []


def numbered(i: int) -> int:
    if i == 0 and FORWARDING[0].hold:
        raise SystemExit("child 0 stops the method")
    NUMBERED.append(i)
    return i


def runtime_id() -> int:
    return id(vc.get_runtime())


def double_of(given: dict[str, Any]) -> int:
    return double(given["n"])


@vc.virtual_actor
class Launches:
    def __init__(self) -> None:
        self.got: list[int] = []

    def again(self) -> int:
        """Its first run launches ``double(1)`` and raises; the next launches ``double(2)`` at the
        same position (another child: a body that is not deterministic)."""
        RUNS.append(1)
        value = vc.subtask(double).run(len(RUNS))
        if len(RUNS) == 1:
            raise ConnectionError("after the child")
        return value

    def differs(self, kind: str) -> int:
        """Its first run launches a child and raises; the next launches another child at that
        position, which differs only in a partial's own argument, or in a dict's value beside
        a part that cannot be pickled (a lock)."""
        RUNS.append(1)
        n = len(RUNS)
        if kind == "partial":
            value = vc.subtask(functools.partial(double, n)).run()
        else:
            value = vc.subtask(double_of).run({"lock": LOCK, "n": n})
        if n == 1:
            raise ConnectionError("after the child")
        return value

    def damaged(self) -> int:
        """Its first run raises after its child; the next finds the child's checkpoint damaged
        at rest (its last byte changed)."""
        call_id = vc.current_call().call_id  # type: ignore[union-attr]
        CALL_IDS.append(call_id)
        if len(CALL_IDS) == 2 and NEWER:
            key = task_key("damaged", call_id, 0)
            meta = {"kind": "task", "position": 0, "fingerprint": fingerprint_of(double, (3,), {})}
            raw_put(key, codec.encode(key, meta, {"result": b""}, version=codec.FORMAT_VERSION + 1))
        elif len(CALL_IDS) == 2:
            key = task_key("damaged", call_id, 0)
            data = raw_get(key)
            raw_put(key, data[:-1] + bytes([data[-1] ^ 1]))
        value = vc.subtask(double).run(3)
        if len(CALL_IDS) == 1:
            raise ConnectionError("after the child")
        return value

    def same_runtime(self) -> bool:
        """Whether its child, on a pool's thread, uses the runtime this method uses."""
        mine = id(vc.get_runtime())
        with StartedPool(1) as pool:
            return vc.subtask(runtime_id, executor=pool).run() == mine

    def detached(self) -> list[bool]:
        """Whether each of two children ran outside this call: child 1 runs on this waiting
        thread (the pool's one thread holds child 0 until child 1 ran)."""
        CHILD_1_RAN.clear()
        with ThreadPoolExecutor(1) as pool:
            return vc.subtask(outside_the_call, executor=pool).map(range(2))

    def forwarded(self, children: list[int]) -> list[int]:
        return vc.subtask(numbered, executor=FORWARDING[0]).map(children)

    def two_launches(self) -> list[int]:
        """Two launches of one child each; its first run raises after both."""
        RUNS.append(1)
        values = [vc.subtask(double).run(10), *vc.subtask(double).map([20, 30])]
        if len(RUNS) == 1:
            raise ConnectionError("after the children")
        return values

    def twins(self) -> list[int]:
        """Two children alike (one function, the same argument) at positions 0 and 1; its first
        run raises after them, the next copies checkpoint 0 over checkpoint 1 first."""
        call_id = vc.current_call().call_id  # type: ignore[union-attr]
        CALL_IDS.append(call_id)
        if len(CALL_IDS) == 2:
            raw_put(task_key("twins", call_id, 1), raw_get(task_key("twins", call_id, 0)))
        values = vc.subtask(double).map([5, 5])
        if len(CALL_IDS) == 1:
            raise ConnectionError("after the children")
        return values


@vc.virtual_actor(serializer="json")
class JsonLaunches:
    def __init__(self) -> None:
        self.n = 0

    def once(self) -> int:
        """Its first run raises after its child; the next finds the child's checkpoint replaced
        by one that says it is pickled (a forger's: json actors never unpickle)."""
        call_id = vc.current_call().call_id  # type: ignore[union-attr]
        CALL_IDS.append(call_id)
        if len(CALL_IDS) == 2:
            key = task_key("json-launches", call_id, 0)
            meta = {"kind": "task", "position": 0, "fingerprint": fingerprint_of(double, (7,), {})}
            if NEWER:  # (here: one in json that does not decode)
                raw_put(key, codec.encode(key, {**meta, "serializer": "json"}, {"result": b"{not json"}))
            else:
                raw_put(
                    key, codec.encode(key, {**meta, "serializer": "pickle"}, {"result": pickle.dumps(99)})
                )
        value = vc.subtask(double).run(7)
        if len(CALL_IDS) == 1:
            raise ConnectionError("after the child")
        return value


#: what ``stamp`` returns before its argument, and its runs
STAMP = ["first"]
STAMPED: list[str] = []
#: ``Keyed.stamped`` raises after its child this many more times
FAIL_AFTER_CHILD: list[int] = []


def stamp(x: int) -> str:
    STAMPED.append(STAMP[0])
    return f"{STAMP[0]}:{x}"


@vc.virtual_actor
class Keyed:
    def __init__(self) -> None:
        self.n = 0

    def stamped(self, x: int) -> str:
        value = vc.subtask(stamp).run(x)
        if FAIL_AFTER_CHILD:
            FAIL_AFTER_CHILD.pop()
            raise ConnectionError("after the child")
        return value


#: (the waiter's entry test) the runtime's creation turns, and who each creation waits for
STALE: dict[str, Any] = {}


def _until_waiting(thread: int) -> None:
    """Wait (at most 30 s) until ``thread`` waits for a creation."""
    for _ in range(3000):
        if thread in STALE["turns"]._waiting:
            return
        threading.Event().wait(0.01)


@vc.virtual_actor
class StaleX:
    def __init__(self) -> None:
        if not STALE["x_begun"].is_set():  # (the first creation: until thread W waits for it)
            STALE["x_begun"].set()
            _until_waiting(STALE["w"])
        else:  # (made again after a delete, on the test's thread: needs W's "stale-y")
            StaleY.get_or_create("stale-y")


@vc.virtual_actor
class StaleY:
    def __init__(self) -> None:
        STALE["y_begun"].set()
        _until_waiting(STALE["main"])  # (until the test's thread waits for this creation)


@vc.virtual_actor
class RefusesItImplicitly:
    def __init__(self, blob: Blob) -> None:
        _GIVEN.append(weakref.ref(blob))
        try:
            _check(blob)
        except ValueError:
            raise RuntimeError("the creation failed")  # noqa: B904 (chained as __context__ only)


def _call(
    method: str = "add", *, ok: bool = True, args: str = "1", result: str = "2", key: str | None = None
) -> CallRecord:
    return CallRecord(method, "c1", ok, 0.0, args, result, key)


def test_call_text_says_each_call_in_words() -> None:
    """H01-H04, H06-H08: a call's one line in history, for each kind of call."""
    text = HistoryEntry.call_text
    assert text(_call()) == "add(1) -> 2"
    assert text(_call(result="None")) == "add(1)"
    assert text(_call(result="")) == "add(1)"
    assert text(_call(key="order-7")) == "add(1) -> 2  [key order-7]"
    assert text(_call(ok=False, result="ValueError('no')")) == "add(1) !! ValueError('no')"
    assert text(_call(key=resume_dedup_key(0, "c0"))) == "resumed failed call: add(1) -> 2"
    paid = _call("on_paid", args="5", result="5", key=event_dedup_key("paid", "wh_1"))
    assert text(paid) == "event 'paid' id='wh_1': on_paid(5) -> 5"
    refused = _call(CANCEL, ok=False, args="'later'", result="RuntimeError('gone')")
    assert text(refused) == "timer not cancelled: key='later' !! RuntimeError('gone')"
    assert text(_call(DELETE_CALL, args="", result="")) == "actor deleted"


def _step(*calls: CallRecord, extra: dict[str, object] | None = None) -> StepRecord:
    return StepRecord(
        3, 2, ClassRef("0" * 64, "shop.Cart"), "pickle", b"", "w1", 0.0, calls, extra=extra or {}
    )


def test_history_json_marks_a_tombstone_and_says_what_calls_mean() -> None:
    """H05, H09, H10, H42, L01, L02: ``vactor history --json``'s entry (``to_json``) of a tombstone
    and of a plain step, and its calls read back (``CallRecord.from_json``)."""
    tombstone = HistoryEntry.from_record(
        _step(_call(DELETE_CALL, args="", result=""), extra={DELETED: {"time": 0.0}})
    )
    assert tombstone.deleted
    as_json = tombstone.to_json()
    assert as_json["deleted"] is True
    assert as_json["calls"][0]["meaning"] == "actor deleted"
    plain = HistoryEntry.from_record(_step(_call(ok=False, result="ValueError('no')")))
    assert not plain.deleted
    as_json = plain.to_json()
    assert "deleted" not in as_json
    assert as_json["when"] == "1970-01-01T00:00:00+00:00"  # (an aware UTC time)
    (call,) = as_json["calls"]
    assert "meaning" not in call and "key" not in call  # (nothing to say: no null written)
    assert CallRecord.from_json(call) == _call(ok=False, result="ValueError('no')")


def test_a_creation_that_ended_after_the_caller_looked_is_not_run_again(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C01, C03: thread A looks for the actor (none), then thread B creates it whole before A takes
    its creation turn. A must look again (the creation that ended meanwhile may be this one),
    not run ``__init__`` a second time (its commit then loses to B's: the actor's one
    creation, but a second run of its side effects)."""
    init(spec)
    INITS.clear()
    a_looked, b_created = threading.Event(), threading.Event()
    turn = CreationTurns.turn

    def held_turn(self: CreationTurns, actor_id: str, looked: int) -> Any:
        if threading.current_thread().name == "A" and not a_looked.is_set():
            a_looked.set()
            assert b_created.wait(30), "B never created the actor"
        return turn(self, actor_id, looked)

    monkeypatch.setattr(CreationTurns, "turn", held_turn)
    got: dict[str, str] = {}

    def create(name: str) -> None:
        got[name] = Counted.get_or_create("c-raced", "c-raced").whose.run()

    a = threading.Thread(target=create, args=("A",), name="A")
    a.start()
    assert a_looked.wait(30)
    create("B")
    b_created.set()
    a.join(30)
    assert got == {"A": "c-raced", "B": "c-raced"}
    assert INITS["c-raced"] == 1


@pytest.mark.parametrize("gap", [1, 30])
def test_a_step_missing_below_the_watermark_ends_the_history(gap: int) -> None:
    """H14, H15: compaction raises the watermark, then deletes the oldest steps first: a step
    missing below the watermark is the end of the history (in the read-ahead batch the gap is
    in, or in a later one), and no read-ahead batch is read past it."""
    log = FakeLog({s: record(s) for s in range(gap + 1, 40)}, gc=gap + 1, newest=39)
    entries = _sync.sync(_history(log, None))  # type: ignore[arg-type]
    assert [e.step for e in entries] == list(range(39, gap, -1))
    assert log.reads <= 39 - gap + history_module._READ_AHEAD


@pytest.mark.parametrize("gap", [1, 30])
def test_a_step_missing_above_the_watermark_is_damage_not_the_end(gap: int) -> None:
    """A step missing at or above the watermark (read after the step's read) was deleted by
    something other than a compaction (which raises the watermark before it deletes): the
    history has a gap, not an end. ``history`` raises ``IntegrityError`` naming the step; with
    ``on_damaged``, the step is reported and the older steps are still listed. (Before
    2026-12-08 the history ended there silently, as if compacted: an actor's lost steps
    looked like a retention policy.)"""
    steps = {s: record(s) for s in range(40) if s != gap}
    with pytest.raises(IntegrityError, match=f"step {gap} of actor 'h' is missing") as raised:
        _sync.sync(_history(FakeLog(steps, gc=0, newest=39), None))  # type: ignore[arg-type]
    assert raised.value.key.endswith(f"/steps/{gap:020d}")
    told: list[int] = []
    log = FakeLog(steps, gc=0, newest=39)
    entries = _sync.sync(_history(log, None, lambda step, exc: told.append(step)))  # type: ignore[arg-type]
    assert told == [gap]
    assert [e.step for e in entries] == [s for s in range(39, -1, -1) if s != gap]


def test_a_page_ending_at_the_watermark_ends_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """H18: steps 0-9 below the watermark 10 not deleted yet (a compaction under way): a page
    that ends at step 10 ends the walk, without reading the steps below (they are not history)."""
    monkeypatch.setattr(history_module, "_HISTORY_PAGE", 10)
    log = FakeLog({s: record(s) for s in range(40)}, gc=10, newest=39)
    entries = _sync.sync(_history(log, None))  # type: ignore[arg-type]
    assert [e.step for e in entries] == list(range(39, 9, -1))
    assert log.reads == 29  # (steps 38 to 10)


def test_the_newest_step_read_is_listed_though_a_compaction_passed_it_since() -> None:
    """H17: the newest step was read, then writers went on and a compaction raised the
    watermark past it before the older steps were read: those go (below the watermark), the
    newest as read stays, not an empty history of an actor that has steps."""
    log = FakeLog({s: record(s) for s in range(6)}, gc=10, newest=5)
    assert [e.step for e in _sync.sync(_history(log, None))] == [5]  # type: ignore[arg-type]


def test_a_past_view_of_a_class_with_slots_refuses_changes(spec: StoreSpec) -> None:
    """H30, H31: ``state_at``'s view of a class keeping its state in ``__slots__`` is guarded
    as any other (its subclass adds no slot, so the instance can take it): assigning or
    deleting an attribute raises, and the view keeps the step's value."""
    init(spec)
    handle = SlotsWithState.get_or_create("slotted")
    handle.incr.run()
    handle.incr.run()
    view = handle.state_at(1)
    with pytest.raises(AttributeError, match="read-only view of a past step"):
        view.count = 5
    with pytest.raises(AttributeError, match="read-only view of a past step"):
        del view.count
    assert view.count == 1


def test_a_prefix_reaching_past_an_id_lists_no_actor(spec: StoreSpec) -> None:
    """H34: ``list_actors("a/steps")`` lists the keys of actor ``a`` (``actors/a/steps/...``):
    they are that actor's objects, not an actor whose id starts with the prefix."""
    init(spec)
    SlotsWithState.get_or_create("a")
    assert [i.actor_id for i in vc.list_actors("a")] == ["a"]
    for prefix in ("a/", "a/steps", "a/HEAD"):
        assert vc.list_actors(prefix) == [], prefix


def test_a_deleted_actor_is_not_listed(spec: StoreSpec) -> None:
    """H37: an actor whose newest step is its tombstone is no actor: ``list_actors`` leaves it
    out (its history still reads)."""
    init(spec)
    SlotsWithState.get_or_create("gone")
    SlotsWithState.get_or_create("kept")
    vc.delete_actor("gone")
    assert [i.actor_id for i in vc.list_actors()] == ["kept"]
    assert vc.ActorHandle("gone").history()[0].deleted


def test_a_creation_waiting_through_another_thread_for_its_own_is_refused(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C02: thread B creates "cyc-b"; thread A creates "cyc-a", whose ``__init__`` waits for
    B's creation of "cyc-b"; then "cyc-b"'s ``__init__`` creates "cyc-a", whose creation waits
    (through "cyc-b") for B itself. It raises ``ReentrantCallError`` there, not waits: each
    creation waiting for the other held both threads for good."""
    init(spec)
    MET.clear()
    B_CREATES.clear()
    A_WAITS.clear()
    turns = vc.get_runtime()._turns  # type: ignore[attr-defined]
    turn = CreationTurns.turn

    def noted_turn(self: CreationTurns, actor_id: str, looked: int) -> Any:
        if threading.current_thread().name == "A" and actor_id == "cyc-b":
            me = threading.get_ident()

            def note() -> None:  # (once A is down as waiting for "cyc-b")
                while me not in turns._waiting:
                    A_WAITS.wait(0.01)
                A_WAITS.set()

            threading.Thread(target=note, daemon=True).start()
        return turn(self, actor_id, looked)

    monkeypatch.setattr(CreationTurns, "turn", noted_turn)
    b = threading.Thread(target=CycleB.get_or_create, args=("cyc-b", 0), name="B", daemon=True)
    b.start()
    assert B_CREATES.wait(30), "B never began the creation"
    a = threading.Thread(target=CycleA.get_or_create, args=("cyc-a",), name="A", daemon=True)
    a.start()
    b.join(30)
    a.join(30)
    assert not b.is_alive() and not a.is_alive(), "the two creations wait for each other"
    assert MET == ["refused"]
    assert [e.step for e in vc.ActorHandle("cyc-a").history()] == [0]


def _settings(
    storage: str | None = "s3://bucket/p",
    options: dict[str, Any] | None = None,
    *,
    signing_key: str | bytes | None = None,
    **extra: Any,
) -> vc.Settings:
    """``init()``'s settings, checked: nothing is opened."""
    return settings_for_init(
        storage,
        storage_options=options,
        extra_options=extra,
        signing_key=signing_key,
        load_classes_from_storage=True,
        subtask_executor=None,
    )


def test_init_settings_given_two_ways_are_refused_or_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    """I01-I03, I06-I09, I12, I14: a storage option or a signing key given two ways, an empty key, and
    what ``settings=`` supplies when ``init()`` does not."""
    monkeypatch.delenv("VACTOR_SIGNING_KEY", raising=False)
    with pytest.raises(TypeError, match=r"\['endpoint_url'\] given both in storage_options= and as keywords"):
        _settings(options={"endpoint_url": "http://a"}, endpoint_url="http://b")
    for empty in ("", b""):
        with pytest.raises(ValueError, match="is empty: pass the signing key"):
            _settings(signing_key=empty)
    monkeypatch.setenv("VACTOR_SIGNING_KEY", "")
    with pytest.raises(ValueError, match=r"\$VACTOR_SIGNING_KEY is set but empty"):
        _settings()
    monkeypatch.setenv("VACTOR_SIGNING_KEY", "from-the-environment")
    assert _settings(signing_key="given").signing_key == b"given"
    assert _settings().signing_key == b"from-the-environment"
    given = vc.Settings(subtask_executor="process", storage_options={"endpoint_url": "http://a"})
    assert _settings(settings=given).subtask_executor == "process"
    assert _settings(settings=given, endpoint_url="http://a").storage_options == {"endpoint_url": "http://a"}
    with pytest.raises(TypeError, match=r"storage options are given both to init\(\) \(\['endpoint_url'\]\)"):
        _settings(settings=given, endpoint_url="http://b")
    with pytest.raises(TypeError, match=r"init\(settings=...\) takes a vactor_cloud.Settings, got int"):
        _settings(settings=5)
    with pytest.raises(TypeError, match="an ObjectStore instance takes no storage options"):
        _settings(MemoryStore("h232"), endpoint_url="http://a")  # type: ignore[arg-type]
    timed = settings_for_init(
        "memory://h232",
        storage_options=None,
        extra_options={"settings": vc.Settings()},
        signing_key=None,
        load_classes_from_storage=True,
        subtask_executor=None,
        timeout=7.0,
    )
    assert timed.timeout == 7.0  # (the settings' timeout is the default: not given)


def test_a_checkpoint_of_another_child_is_neither_used_nor_written_over(
    spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """S01: the retry of a call launches another child at a checkpointed position: that child
    runs, its result is returned, one warning says why it is not memoized, and no write of
    its checkpoint is tried (the position is taken: the write failed, and a second warning
    blamed "another run" of the call)."""
    init(spec)
    RUNS.clear()
    DOUBLED.clear()
    handle = Launches.get_or_create("launches")
    caplog.set_level(logging.WARNING, logger="vactor_cloud.subtask")
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        assert handle.again.options(max_retries=1).run() == 4
    assert DOUBLED == [1, 2]
    task_puts = [r.key for r in trace.requests if r.kind == "put" and "/tasks/" in r.key]
    assert len(task_puts) == 1, task_puts
    warned = [r.getMessage() for r in caplog.records if r.name == "vactor_cloud.subtask"]
    assert len(warned) == 1 and "was written for another child" in warned[0], warned


@pytest.mark.parametrize("kind", ["partial", "dict"])
def test_a_checkpoint_of_a_child_that_differs_only_in_a_partials_or_a_dicts_part_is_not_used(
    spec: StoreSpec, kind: str
) -> None:
    """S22, S23: the child at a checkpointed position differs from the one the checkpoint was
    written for in a ``functools.partial``'s own argument, or in a dict's value beside a lock
    (a part that cannot be pickled: digested part by part): its fingerprint differs, so it
    runs and its own result is returned, not the other child's."""
    init(spec)
    RUNS.clear()
    DOUBLED.clear()
    handle = Launches.get_or_create(f"differs-{kind}")
    assert handle.differs.options(max_retries=1).run(kind) == 4
    assert DOUBLED == [1, 2]


def test_a_retry_reads_back_the_children_of_every_launch(spec: StoreSpec) -> None:
    """S03, S04, S07, S17: positions count on across the launches of one run (0, then 1 and 2): the
    retry of the call reads back every child, of the second launch too, and runs none."""
    init(spec)
    RUNS.clear()
    DOUBLED.clear()
    handle = Launches.get_or_create("two-launches")
    assert handle.two_launches.options(max_retries=1).run() == [20, 40, 60]
    assert sorted(DOUBLED) == [10, 20, 30]  # (each child once: the retry ran none)


def test_an_actor_made_again_under_the_id_runs_its_keyed_calls_children_again(spec: StoreSpec) -> None:
    """S06, S16, S19, S26: a keyed call's checkpoint keys are the same on the actor made again
    under a deleted actor's id. The earlier actor's checkpoint is not used (nor, found at the
    position when the new one is written, taken for it): the child runs again and its result
    counts; the new actor's own checkpoint is read back by a retry of its call."""
    init(spec)
    STAMP[0] = "first"
    STAMPED.clear()
    FAIL_AFTER_CHILD.clear()
    assert Keyed.get_or_create("keyed").stamped.options(idempotency_key="k").run(1) == "first:1"
    vc.delete_actor("keyed")
    STAMP[0] = "second"
    FAIL_AFTER_CHILD.append(1)
    again = Keyed.get_or_create("keyed").stamped.options(idempotency_key="k", max_retries=1)
    assert again.run(1) == "second:1"
    assert STAMPED == ["first", "second"]  # (the retry read the new actor's checkpoint back)


def test_a_checkpoint_copied_to_another_position_is_refused(spec: StoreSpec) -> None:
    """S11: on a store without a signing key an object's digest does not bind its key: a
    checkpoint copied to another position (of a child alike, so with the same fingerprint)
    verifies, and is refused by the position it records, not taken for that position's."""
    init(spec)
    CALL_IDS.clear()
    handle = Launches.get_or_create("twins")
    with pytest.raises(vc.IntegrityError, match="not a sub-task checkpoint of this position"):
        handle.twins.options(max_retries=1).run()
    assert len(CALL_IDS) == 2


def test_a_json_actors_checkpoint_that_says_it_is_pickled_is_refused_unread(spec: StoreSpec) -> None:
    """S13: a checkpoint is decoded with its actor class's serializer: one of a json actor that
    says it is pickled is refused (``IntegrityError``) before a byte of it is unpickled."""
    init(spec)
    CALL_IDS.clear()
    handle = JsonLaunches.get_or_create("json-launches")
    with pytest.raises(
        vc.IntegrityError, match="stored with serializer 'pickle', but the actor's class uses 'json'"
    ):
        handle.once.options(max_retries=1).run()
    assert len(CALL_IDS) == 2


def test_a_checkpoint_write_refused_once_in_transit_is_written_again(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S20: the store refuses the first write of a checkpoint with a transient error (rate
    limited): the write is tried again, the call returns, and its child ran once."""
    init(spec)
    RUNS[:] = [1]  # (``again``: no raise after its child)
    DOUBLED.clear()
    store = vc.get_runtime().store
    put = store.put
    refused: list[str] = []

    async def refusing_put(key: str, data: bytes, **kwargs: Any) -> Any:
        if "/tasks/" in key and not refused:
            refused.append(key)
            raise RateLimitedError("slow down")
        return await put(key, data, **kwargs)

    monkeypatch.setattr(store, "put", refusing_put)
    assert Launches.get_or_create("refused-once").again.run() == 4
    assert len(refused) == 1 and DOUBLED == [2]


def test_a_damaged_checkpoint_is_not_used_and_its_child_runs_again(
    spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """S25: documented: a checkpoint that does not verify is not used (no ``IntegrityError``,
    which would fail every later run of the call): its child runs again, a warning names it."""
    init(spec)
    CALL_IDS.clear()
    DOUBLED.clear()
    caplog.set_level(logging.WARNING, logger="vactor_cloud.subtask")
    assert Launches.get_or_create("damaged").damaged.options(max_retries=1).run() == 6
    assert DOUBLED == [3, 3]
    assert any("cannot be used" in r.getMessage() for r in caplog.records)


def test_a_child_on_a_pool_thread_uses_the_runtime_of_its_method_in_an_own_runtime(spec: StoreSpec) -> None:
    """E02: documented (``own_runtime``): the threads vactor_cloud starts for code in a runtime
    of its own, sub-tasks' included, use that runtime, not the process's."""
    init(spec)
    with own_runtime():
        vc.init("memory://h232-own-runtime")
        assert Launches.get_or_create("own").same_runtime.run()


def test_a_child_the_waiting_thread_runs_runs_outside_the_call(spec: StoreSpec) -> None:
    """E10: a child the method's waiting thread runs itself (none of the pool's threads is
    free) runs as a pool's thread runs it: outside the actor call that thread is in (no
    ``current_call()``: a sub-task it launched was checkpointed as the method's own)."""
    init(spec)
    assert Launches.get_or_create("detached").detached.run() == [True, True]


def test_metadata_too_deep_to_encode_is_said_unrecordable() -> None:
    """L03, L04: ``options(metadata=...)`` too deeply nested for ``json.dumps`` (``RecursionError``)
    is a reason the call's metadata cannot be recorded, not an error out of the check."""
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(10_000):
        inner["a"] = inner = {}
    reason = unrecordable(None, deep)
    assert reason is not None and reason.startswith("metadata must be JSON-serializable"), reason
    reason = unrecordable("caf\udce9", None)  # (L03: a name a lone surrogate is in)
    assert reason is not None and reason.startswith("name cannot be recorded as UTF-8"), reason


def test_a_late_commit_is_classified_only_below_the_watermark() -> None:
    """L09: a step at the watermark is not compacted (steps *below* it may be): asking what
    became of it is a caller's mistake, refused, not answered from the record."""
    gc = GcWatermark(5, compacted={4: "w1"}, recorded_from=4)
    assert classify_late_commit(gc, 4, "w1") is LateCommit.COMMITTED
    assert classify_late_commit(gc, 4, "w2") is LateCommit.NOT_COMMITTED
    with pytest.raises(ValueError, match="step 5 is not below the watermark 5"):
        classify_late_commit(gc, 5, "w1")


def test_a_key_nested_under_steps_is_no_step(spec: StoreSpec) -> None:
    """A02: a key one level down under ``steps/`` (``steps/x/steps/<20 digits>``, a copy by
    hand) also ends as a step key does: the listing of the steps passes over it."""
    init(spec)
    handle = SlotsWithState.get_or_create("nested")
    handle.incr.run()
    log = vc.get_runtime().log("nested")
    raw_put(log.steps_prefix + "x/" + log.step_key(7)[len(log.prefix) :], b"not a step")
    assert _sync.sync(log.list_steps()) == [0, 1]


def test_a_watermark_of_a_newer_format_says_upgrade(spec: StoreSpec) -> None:
    """A11: a ``gc`` object a newer release wrote is not "damaged, restore it from a backup"
    (advice that would have an operator replace a sound object): ``FormatVersionError``,
    whose message says to upgrade."""
    init(spec)
    SlotsWithState.get_or_create("newer-gc").incr.run()
    log = vc.get_runtime().log("newer-gc")
    meta = {"kind": "gc", "min_step": 0}
    raw_put(log.gc_key, codec.encode(log.gc_key, meta, {}, version=codec.FORMAT_VERSION + 1))
    with pytest.raises(vc.FormatVersionError, match="upgrade vactor_cloud"):
        vc.ActorHandle("newer-gc").history()


def test_another_bodys_class_object_under_a_sha_is_refused_and_repaired(spec: StoreSpec) -> None:
    """A13, A14: without a signing key an object's digest does not bind its key: a class object
    holding another body than its sha names verifies, and is refused by its content hash
    (read), or replaced by the body whose sha it is (``restore_class``); one in a newer
    release's format is left as it is."""
    init(spec)
    log = vc.get_runtime().log("bodies")
    body, other = b"the body", b"another body"
    sha = hashlib.sha256(body).hexdigest()
    key = log.class_key(sha)
    raw_put(key, log._class_object(key, other, "tests.Other", None))
    with pytest.raises(vc.IntegrityError, match="class body does not match its content hash"):
        _sync.sync(log.read_class(sha))
    repaired = _sync.sync(log.restore_class(sha, body, "tests.Body", None))
    assert repaired == "damaged (class body does not match its content hash)"
    assert _sync.sync(log.read_class(sha))[0] == body
    newer_sha = hashlib.sha256(other).hexdigest()  # (A14: a newer release's object is not ours)
    newer_key = log.class_key(newer_sha)
    newer = codec.encode(newer_key, {"kind": "class"}, {"body": other}, version=codec.FORMAT_VERSION + 1)
    raw_put(newer_key, newer)
    assert _sync.sync(log.restore_class(newer_sha, other, "tests.Other", None)) is None
    assert raw_get(newer_key) == newer


def test_bad_limits_are_refused_and_no_step_below_zero_is_read(spec: StoreSpec) -> None:
    """H11, H13, H38: ``history``'s limit below 0 and ``list_actors``' below 1 are refused
    (not an empty answer); damaged steps left out of a page leave its reading no room to go
    below step 0 (a read of key ``steps/-0000000000000000001``)."""
    log = FakeLog({s: record(s) for s in range(41)}, gc=0, newest=40)
    with pytest.raises(ValueError, match="limit must be >= 0 or None, got -1"):
        _sync.sync(_history(log, -1))  # type: ignore[arg-type]
    log.steps[30] = DAMAGED
    read: list[int] = []
    read_step = log.read_step

    async def noted(step: int) -> Any:
        read.append(step)
        return await read_step(step)

    log.read_step = noted  # type: ignore[method-assign]
    entries = _sync.sync(_history(log, None, lambda step, exc: None))  # type: ignore[arg-type]
    assert len(entries) == 40 and min(read) == 0
    init(spec)
    with pytest.raises(ValueError, match="limit must be >= 1 or None, got 0"):
        vc.list_actors(limit=0)


def test_a_thread_that_waited_for_a_creation_is_not_taken_for_waiting_still(spec: StoreSpec) -> None:
    """C04: thread W waits for the creation of "stale-x" (by thread C), then creates "stale-y".
    Meanwhile "stale-x" is deleted and made again on this thread, and its ``__init__`` gets
    "stale-y": that waits for W's creation (W waits for nothing now). W still noted as waiting
    for "stale-x", whose creation this thread runs, took this thread for waiting for itself:
    ``ReentrantCallError``, and "stale-x" was not made."""
    init(spec)
    STALE.clear()
    STALE.update(turns=vc.get_runtime()._turns, main=threading.get_ident())  # type: ignore[attr-defined]
    STALE.update(x_begun=threading.Event(), y_begun=threading.Event())
    creator = threading.Thread(target=StaleX.get_or_create, args=("stale-x",), daemon=True)

    def waiter() -> None:
        STALE["w"] = threading.get_ident()
        creator.start()
        assert STALE["x_begun"].wait(30), "C never began the creation of stale-x"
        StaleX.get_or_create("stale-x")
        StaleY.get_or_create("stale-y")

    w = threading.Thread(target=waiter, daemon=True)
    w.start()
    assert STALE["y_begun"].wait(30), "W never began the creation of stale-y"
    vc.delete_actor("stale-x")
    StaleX.get_or_create("stale-x")
    w.join(30)
    assert [e.step for e in vc.ActorHandle("stale-x").history()] == [2, 1, 0]


@pytest.mark.parametrize(
    ("newer", "error", "match"),
    [
        (True, vc.FormatVersionError, "upgrade vactor_cloud"),
        (False, vc.IntegrityError, "the checkpointed result cannot be decoded here"),
    ],
)
def test_a_checkpoint_of_a_newer_format_or_whose_result_does_not_decode_fails_the_call(
    spec: StoreSpec, newer: bool, error: type[Exception], match: str
) -> None:
    """S10, S14: documented: a checkpoint of a newer format is not skipped as a damaged one:
    it raises ``FormatVersionError`` ("upgrade"). One that verifies but whose result does not
    decode with the class's serializer fails as ``IntegrityError`` naming it, not as the
    decoder's own error."""
    init(spec)
    CALL_IDS.clear()
    NEWER[:] = [True]
    launch = (
        Launches.get_or_create("damaged").damaged
        if newer
        else JsonLaunches.get_or_create("json-launches").once
    )
    try:
        with pytest.raises(error, match=match):
            launch.options(max_retries=1).run()
    finally:
        NEWER.clear()


def test_a_failed_creation_holds_not_its_arguments_through_an_implicit_chain(spec: StoreSpec) -> None:
    """C11: the failure of a background creation is kept (``ready()`` raises it for as long as
    its handle lives): the frames of the exception it was raised while handling (its
    ``__context__``, no ``from``) are cleared too, so the argument is not held."""
    init(spec)
    retune(wait_for_init=False)
    _GIVEN.clear()
    handle = RefusesItImplicitly.get_or_create("implicit", Blob())
    with pytest.raises(RuntimeError, match="the creation failed"):
        handle.ready().result(30)
    full_collection()
    assert len(_GIVEN) == 1 and _GIVEN[0]() is None, "the failed creation's argument is held"


def test_a_pickled_state_whose_class_is_missing_says_so(spec: StoreSpec) -> None:
    """H27: ``raw_state_at`` of a pickled step whose class cannot be had here (not importable,
    class bodies not loaded from storage) says why (``ActorDefinitionError``), not that the
    step looks forged (without its class a step is read only if it says json)."""
    init(spec, load_classes_from_storage=False)
    SlotsWithState.get_or_create("no-class")
    log = vc.get_runtime().log("no-class")
    missing = ClassRef("f" * 64, "nowhere.Missing")
    step = StepRecord(1, 0, missing, "pickle", pickle.dumps(1), "w", 0.0)
    raw_put(log.step_key(1), step.encode(log.step_key(1), None))
    with pytest.raises(vc.ActorDefinitionError):
        raw_state_at("no-class")


def test_an_earlier_actors_checkpoint_gone_before_its_replacement_is_created_anew(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S27: the new actor's checkpoint replaces the earlier actor's by if-match; that one is
    deleted just before (a compaction): the write creates the checkpoint, it does not keep
    asking to replace an object that is gone (which failed the call)."""
    init(spec)
    STAMP[0] = "first"
    STAMPED.clear()
    FAIL_AFTER_CHILD.clear()
    Keyed.get_or_create("replaced").stamped.options(idempotency_key="k").run(1)
    vc.delete_actor("replaced")
    store = vc.get_runtime().store
    put = store.put
    gone: list[str] = []

    async def compacted_first(key: str, data: bytes, mode: Any = "overwrite", **kwargs: Any) -> Any:
        if "/tasks/" in key and isinstance(mode, IfMatch) and not gone:
            gone.append(key)
            await store.delete(key)
        return await put(key, data, mode=mode, **kwargs)

    monkeypatch.setattr(store, "put", compacted_first)
    STAMP[0] = "second"
    assert Keyed.get_or_create("replaced").stamped.options(idempotency_key="k").run(1) == "second:1"
    assert len(gone) == 1


def test_children_sent_pickled_to_an_executor_in_this_process(spec: StoreSpec) -> None:
    """E04, E16: an executor that is no thread pool gets each child pickled, as a worker
    process would, and runs it here: the worker's side does not start a runtime of its own
    over this process's (``init()`` again, which shut down the one the method ran on). A child
    raising an interrupt ends the method at once, and its siblings not started yet are
    cancelled: they never run (they ran after the call had failed)."""
    init(spec)
    runtime = vc.get_runtime()
    NUMBERED.clear()
    FORWARDING[:] = [ForwardingPool()]
    handle = Launches.get_or_create("forwarded")
    assert handle.forwarded.run([1, 2, 3]) == [1, 2, 3]
    assert vc.get_runtime() is runtime
    FORWARDING[0].shutdown()
    NUMBERED.clear()
    FORWARDING[:] = [pool := ForwardingPool(hold=True)]
    with pytest.raises(SystemExit, match="child 0 stops the method"):
        handle.forwarded.run([0, 1, 2])
    pool.release()
    pool.shutdown()
    assert NUMBERED == [] and len(pool.held) == 2


@pytest.mark.parametrize(
    ("meta", "parts", "reason"),
    [
        ({"step": float("inf")}, {}, "cannot convert float infinity to integer"),
        ({}, {"posted": OUTCOMES_MAGIC + b"..."}, "part 'posted' not a pickle"),
        ({}, {"outcomes": b"\x80..."}, "part 'outcomes' not encoded per call"),
    ],
)
def test_a_malformed_step_object_is_an_integrity_error(
    meta: dict[str, Any], parts: dict[str, bytes], reason: str
) -> None:
    """L06-L08: a step object that verifies but is malformed (a step number of ``Infinity``,
    outcomes under the other encoding's part) is refused as ``IntegrityError``, not as the
    error its decoding met."""
    key = "actors/a/steps/00000000000000000001"
    whole = {"kind": "step", "step": 1, "parent": 0, "class": {"sha": "0" * 64, "name": "t.C"}}
    whole |= {"serializer": "pickle", "writer": "w", "time": 0.0, "calls": [], "extra": {}} | meta
    data = codec.encode(key, whole, {"state": b"", **parts})
    with pytest.raises(vc.IntegrityError, match=f"malformed step object: {reason}"):
        StepRecord.decode(key, data, None)


def test_the_name_of_a_partials_function_is_its_functions() -> None:
    """E17: a ``functools.partial`` child is named (in fingerprints and warnings) by the
    function it wraps."""
    assert function_name(functools.partial(double, 1)) == f"{__name__}.double"


def test_an_earlier_releases_watermark_records_from_its_oldest_compacted_step() -> None:
    """L11: a ``gc`` object without ``recorded_from`` (an earlier release's) covers the steps
    it records from the oldest of them, not from its watermark."""
    key = "actors/a/gc"
    data = codec.encode(key, {"kind": "gc", "min_step": 9}, {"compacted": b'[[3,"w3"],[8,"w8"]]'})
    gc = decode_gc(key, data, None, None)
    assert gc.recorded_from == 3 and classify_late_commit(gc, 3, "w3") is LateCommit.COMMITTED


def test_the_objects_of_an_actor_read_and_written_as_documented(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A04, A07, A09, A10: ``by_value_at_most`` of ``True`` is not a size; an outcome object
    found at its name but stored with another serializer is refused; a HEAD whose read timed
    out is the store's trouble, raised (not a damaged HEAD ignored); HEAD already at a step is
    not written again."""
    init(spec)
    SlotsWithState.get_or_create("objects")
    log = vc.get_runtime().log("objects")
    key = log.dedup_key("c1")
    raw_put(
        key,
        codec.encode(
            key, {"kind": "dedup", "serializer": "pickle", "by_value_at_most": True}, {"table": b""}
        ),
    )
    assert _sync.sync(log.read_dedup_checkpoint_rows("c1"))[2] is None
    outcome = b"an outcome"
    name = f"{1:020d}-{hashlib.sha256(outcome).hexdigest()}"
    _sync.sync(log.put_dedup_outcome(name, outcome, "pickle"))
    with pytest.raises(vc.IntegrityError, match="stored with serializer 'pickle', not 'json'"):
        _sync.sync(log.put_dedup_outcome(name, outcome, "json"))
    ref = _sync.sync(log.read_step(0)).class_ref  # type: ignore[union-attr]
    head = _sync.sync(log.advance_head(0, ref, _sync.sync(log.read_head())))
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        assert _sync.sync(log.advance_head(head.step, head.class_ref, head)) == head
    assert trace.requests == []
    get = log.store.get

    async def timing_out(key: str, *args: Any, **kwargs: Any) -> Any:
        if key == log.head_key:
            raise StorageTimeoutError("the read of HEAD timed out")
        return await get(key, *args, **kwargs)

    monkeypatch.setattr(log.store, "get", timing_out)
    with pytest.raises(StorageTimeoutError, match="the read of HEAD timed out"):
        _sync.sync(log.read_head())
