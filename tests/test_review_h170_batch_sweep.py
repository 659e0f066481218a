"""Review h170: a mutation sweep of ``batch.py`` (since split into ``batch``, ``call_bodies`` and
``batch_apply``) beyond what h138 swept (the call context, the self-call note, nested doubts,
async methods and their helper thread and executor guard, forks, RUNNING, stand-ins, timer
markers, history summaries, ``run_readonly``).

Seventy hand-made mutations, one at a time, each run against the tests that cover the function
(memory and local lanes). "killed" names the test that failed; "h170" means a test written here
because the mutation survived. One survivor was a defect, fixed: see the last two tests.

==== ============================================================ ======== ========================
id   mutation                                                     survived killed by / why
==== ============================================================ ======== ========================
M01  invoke: _note_self_call not called                           no       review_api
M02  a nested doubt not translated (bare ``raise``)               no       nested_pending
M03  _DOUBT without NestedCallPendingError                        no       nested_pending
M04  _doubts not looking into nested groups                       no       nested_doubts_group
M05  a NestedCallPendingError's inner calls not passed on         no       nested_pending
M06  the doubt's call ids dropped                                 no       nested_pending
M07  the doubts after the first dropped                           no       nested_doubts_group
M08  current_call() None after invoke (not the previous)          no       review_workflow
M09  a read-only call counted as applying                         no       review_workflow, h170
M10  count_applying keeps a zero count                            no       h138
M11  applying() for every actor (actor id ignored)                yes      h170 (another actor)
M12  a forked child keeps the parent's applying counts            yes      h170 (fork)
M13  a forked child keeps the parent's applying lock              yes      h170 (fork, lock)
M14  invoke's final _end_a_forked_child dropped                   no       h135_fork_in_method
M15  the one before a sub-workflow runs dropped                   no       h141_fork_readonly
M16  the child's message: read-only and writer swapped            no       h141_fork_readonly
M17  _note_self_call: any attribute of a method noted             yes      h170 (bogus attribute)
M18  _note_self_call: a function not of the class noted           yes      h170 (plain function)
M19  the step note and the run note swapped                       no       review_api
M20  the note added however often the error passes                yes      h170 (note once)
M21  the helper thread not given current_call()                   no       outcomes_by_value
M22  the helper's loop not run in the caller's context            yes      h170 (context vars)
M23  _stop_helper never cancels the task                          no       review_cancellation
M24  _stop_helper with no deadline                                yes      h170 (ignores cancel)
M25  its warning logged when the helper did stop                  yes      h170 (ignores cancel)
M26  _on_a_guarded_executor: fork not ended at the coroutine      no       h150_fork_in_thread
M27  an unused guard not unhooked (loop kept to a collection)     yes      h170 (loop freed)
M28  the method's own executor replaced by the guard              no       h150_fork_in_thread
M29  the guard set for an explicit executor, not None's           no       h150_fork_in_thread
M30  unhook() not idempotent                                      no       h150_fork_in_thread
M31  apply_batch: a child the class forked not ended              no       h150_fork_in_state_hooks
M32  run_readonly: the same                                       no       h150_fork_in_state_hooks
M33  _at_step_of_a_stand_in: the pickle's look negated            yes      h170 (stand-in at_step)
M34  at_step_is_an_option() not asked                             no       at_step_reads, h170
M35  check_at_step's ValueError dropped                           yes      h170 (stand-in at_step)
M36  a stand-in's read-only call run as a writer's                no       stand_in_methods
M37  _no_writer_of_the_class: the read given a writer's context   yes      h170 (stand-in read)
M38  CANCEL taken for FIRE                                        no       review_timers
M39  a timer of a method the class lacks fired anyway             no       timer_class_change
M40  a fired call keyed by the timer's key                        yes      h170 (firing in history)
M41  a fired call's id random (sub-tasks not found again)         no       review_timers
M42  a fired call without its "timer <key>" name                  yes      h170 (firing in history)
M43  _fire_report's error not cut at 200                          yes      h170 (long error)
M44  _timer_marker catching ValueError only                       yes      h170 (unstorable args)
M45  an excluded fire's pending_due_ms None                       yes      equivalent: read nowhere
M46  a keyed scheduling call not recorded                         no       timers
M47  _summarize: a short string's long repr kept                  yes      h170 (escaped string)
M48  _utf8 returning the text as it is                            yes      h170 (surrogate)
M49  _utf8 with "replace"                                         yes      h170 (surrogate)
M50  _summarize_args not cut at 200                               yes      h170 (many arguments)
M51  _summarize_args catching TypeError only                      yes      equivalent (below)
M52  a scheduling call not summarised by _schedule_summary        yes      h170 (scheduled args)
M53  a one-argument tuple written ``(5)``                         yes      h170 (scheduled args)
M54  "raised ..." not cut at 120                                  yes      h170 (keyed raise)
M55  _summarize: a long int's repr kept whole                     yes      h170 (long int)
M56  run_readonly: the read given a writer's context              no       h138, h170
M57  schedule(): a function's repr for its name                   no       timers, h170
M58  schedule() in a read: AttributeError, not RuntimeError       yes      h170 (own timers)
M59  swap_current_call returns the context it set                 yes      h170 (sub-task)
M60  step status logged for every call                            yes      h170 (step status)
M61  _method_of: a hiding attribute not refused                   no       review_user_edges
M62  a writer's context without its incarnation                   yes      h170 (after a delete)
M63  cancel_timer() True for a key with no timer                  yes      h170 (own timers)
M64  pending_timers() without the call's own changes              yes      h170 (own timers)
M65  a scheduled call's kwargs summarised as one dict             yes      h170 (scheduled args)
M66  deliver() keeps the future's reference to the core           yes      h170 (future kept)
M67  an ExceptionGroup without doubts translated                  no       review_infra_outcomes
M68  a raising timer's report ``ok``                              yes      h170 (long error)
M69  a fired timer consumed whatever its method raised            no       h140_timers
M70  invoke's scalar fast path dropped                            yes      equivalent: speed only
==== ============================================================ ======== ========================

M51 is equivalent: ``PendingCall.arguments`` raises ``TypeError`` only (``thaw_arguments`` turns
any failure to read the arguments back into one), so the narrower catch catches the same.
M45's ``FireReport.pending_due_ms`` is set in three places and read in none (left alone).

The defect: a history summary raised on an ``int`` longer than ``str()`` converts
(``sys.get_int_max_str_digits()``) and on a raising ``__repr__`` of a type named like one reprlib
summarises itself (``int``, ``list``): the call, applied by its method, failed at the commit
with that error, and so did its batch-mates and a creation. Summaries now never raise.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import forking
import pytest
from child_processes import held_by_another_thread
from garbage import full_collection
from interrupts import Interrupted

import vactor_cloud as vc
from vactor_cloud import batch, batch_apply, call_bodies, workflow
from vactor_cloud.history import HistoryEntry
from vactor_cloud.state import dumps_instance_state
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")


class Named:
    """An argument whose ``repr`` holds a lone surrogate (a name decoded with ``surrogateescape``)."""

    def __repr__(self) -> str:
        return "caf\udce9"


#: a context variable the caller of an async method sets
CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("CALLER", default="unset")

#: the loops ``Summed.note_the_loop`` ran on
LOOPS: list[weakref.ref[asyncio.AbstractEventLoop]] = []

#: gates that hold a writer inside ``Summed.hold``, by actor id
ENTERED: dict[str, threading.Event] = {}
RELEASE: dict[str, threading.Event] = {}


#: set by the sub-task that only its waiting method can run (the pool's one thread waits for it)
CHILD_RAN = threading.Event()


def _child(i: int) -> int:
    """Child 0 holds the pool's only thread until child 1 ran (on the method's waiting thread)."""
    if i == 0:
        assert CHILD_RAN.wait(30), "the waiting method never ran the queued child"
    else:
        CHILD_RAN.set()
    return i


def helper() -> int:
    """A plain function, no method of any actor class."""
    return 1


@vc.virtual_actor
class Summed:
    def __init__(self) -> None:
        self.n = 0

    def give(self, value: Any) -> Any:
        self.n += 1
        return value

    def take(self, *items: Any) -> int:
        self.n += 1
        return len(items)

    def fail(self, message: str) -> None:
        self.n += 1
        raise ValueError(message)

    def incr(self) -> int:
        self.n += 1
        return self.n

    def hold(self) -> None:
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        ENTERED[actor_id].set()
        assert RELEASE[actor_id].wait(60), "the test never released the writer"

    def keep_fields(self, **fields: Any) -> int:
        self.n += len(fields)
        return self.n

    def launch(self) -> str:
        """Launches sub-tasks (one of which this thread runs), then says which call it is in."""
        assert vc.subtask(_child).map(range(2)) == [0, 1]
        return vc.current_call().actor_id  # type: ignore[union-attr]

    def run_of_a_method(self) -> Any:
        return self.incr.run()  # type: ignore[attr-defined]

    def relay_run_of_a_method(self, other: str) -> Any:
        return vc.get_actor(other).run_of_a_method.run()

    async def note_the_loop(self) -> int:
        LOOPS.append(weakref.ref(asyncio.get_running_loop()))
        self.n += 1
        return self.n

    async def callers_variable(self) -> str:
        await asyncio.sleep(0)
        return CALLER.get()

    def attribute_of_a_method(self) -> Any:
        return self.incr.bogus  # type: ignore[attr-defined]

    def run_of_a_plain_function(self) -> Any:
        return helper.run()  # type: ignore[attr-defined]

    def status_in_a_writer(self) -> str:
        return str(workflow.get_status(vc.current_call().actor_id))  # type: ignore[union-attr]

    def plan(self) -> tuple[Any, ...]:
        """Schedules, looks, cancels and looks again, within one call."""
        call = vc.current_call()
        assert call is not None
        key = call.schedule(self.incr, after=100, key="a")
        seen = {k: t.method for k, t in call.pending_timers().items()}
        return key, seen, call.cancel_timer("a"), call.cancel_timer("missing"), call.pending_timers()

    @vc.virtual_actor.readonly
    def plan_in_a_read(self) -> str:
        return vc.current_call().schedule("incr", after=100)  # type: ignore[union-attr]

    @vc.virtual_actor.readonly
    def running_here(self) -> list[int]:
        return sorted(batch.applying(vc.current_call().actor_id))  # type: ignore[union-attr]

    @vc.virtual_actor.readonly
    def status_in_a_read(self) -> str:
        return str(workflow.get_status(vc.current_call().actor_id))  # type: ignore[union-attr]


def _newest_call(actor: Any) -> Any:
    return actor.history(limit=1)[0].calls[0]


# -- summaries (history): bounded, valid UTF-8 ---------------------------------------------------


def test_a_result_string_whose_repr_is_long_is_summarised_short(store_spec: StoreSpec) -> None:
    """Mutation: ``_summarize`` returning the ``repr`` of a short string however long that repr
    is (the check of its length dropped): 60 NULs were recorded as 242 characters."""
    store_spec.init()
    actor = Summed.get_or_create("summary-escaped-string")
    assert actor.give.run("\x00" * 60) == "\x00" * 60
    result = _newest_call(actor).result
    assert len(result) <= 60 and "..." in result, result


def test_a_long_integer_result_is_summarised_short(store_spec: StoreSpec) -> None:
    """Mutation: ``_summarize`` keeping the whole ``repr`` of an int however long (the length
    checks of the scalar fast path dropped): a 101-digit result was recorded whole."""
    store_spec.init()
    actor = Summed.get_or_create("summary-long-int")
    actor.give.run(10**100)
    result = _newest_call(actor).result
    assert len(result) <= 40 and "..." in result, result
    actor.give.run(12345)
    assert _newest_call(actor).result == "12345"


def test_many_arguments_are_summarised_within_200_characters(store_spec: StoreSpec) -> None:
    """Mutation: ``_summarize_args`` without its cut at 200 characters: 30 arguments were
    recorded as one line of some 1,500."""
    store_spec.init()
    actor = Summed.get_or_create("summary-many-args")
    items = tuple("x" * 45 for _ in range(30))
    assert actor.take.run(*items) == 30
    args = _newest_call(actor).args
    assert 0 < len(args) <= 200, len(args)


def test_a_keyed_call_that_raised_a_long_message_is_summarised_within_120_characters(
    store_spec: StoreSpec,
) -> None:
    """Mutation: the ``raised ...`` result of a keyed call that raised not cut at 120
    characters: a 1,000-character message was recorded whole in the step."""
    store_spec.init()
    actor = Summed.get_or_create("summary-raised")
    with pytest.raises(ValueError):
        actor.fail.options(idempotency_key="k").run("m" * 1000)
    call = _newest_call(actor)
    assert call.ok is False and call.method == "fail"
    assert call.result.startswith("raised ValueError(") and len(call.result) <= 120, len(call.result)


def test_an_argument_whose_repr_holds_a_lone_surrogate_is_committed_escaped(store_spec: StoreSpec) -> None:
    """Mutations: ``_utf8`` returning the text as it is (its ASCII fast path taken for all):
    the step's UTF-8 meta could not hold the surrogate and the call failed; and ``_utf8``
    with ``"replace"``: history showed ``caf?``, the escaped byte lost."""
    store_spec.init()
    actor = Summed.get_or_create("summary-surrogate")
    actor.take.run(Named())
    assert _newest_call(actor).args == "caf\\udce9"


# -- self.m.<handle's attribute>: a note only where it says the right thing -----------------------


def test_an_attribute_of_a_method_that_no_handle_has_gets_no_note(store_spec: StoreSpec) -> None:
    """Mutation: ``_note_self_call`` without ``exc.name not in _HANDLE_ONLY``: ``self.incr.bogus``
    was told ``.bogus is a handle's, for callers outside the actor``, which it is not."""
    store_spec.init()
    actor = Summed.get_or_create("self-call-bogus")
    with pytest.raises(AttributeError, match="bogus") as raised:
        actor.attribute_of_a_method.run()
    assert not getattr(raised.value, "__notes__", ()), raised.value.__notes__


def test_run_on_a_plain_function_gets_no_note_naming_a_method(store_spec: StoreSpec) -> None:
    """Mutation: ``_note_self_call`` without its check that the function is a method of the
    actor's class: ``helper.run()`` (a module's function) was told to ``call self.helper(...)``,
    a method the actor does not have."""
    store_spec.init()
    actor = Summed.get_or_create("self-call-plain-function")
    with pytest.raises(AttributeError, match="run") as raised:
        actor.run_of_a_plain_function.run()
    assert not getattr(raised.value, "__notes__", ()), raised.value.__notes__


# -- RUNNING: a writer's, not a read's ------------------------------------------------------------


def test_an_actor_is_running_during_a_writer_and_not_during_a_read(store_spec: StoreSpec) -> None:
    """Mutations: ``invoke`` counting a read-only call as applying (``if not context.readonly``
    dropped), and ``run_readonly`` running the read with a writer's context: an actor read
    looked RUNNING to ``workflow.get_status`` while the read ran."""
    store_spec.init()
    actor = Summed.get_or_create("running-only-in-writers")
    assert actor.status_in_a_writer.run() == "RUNNING"
    assert actor.status_in_a_read.run() == "SUCCESSFUL"
    assert workflow.get_status("running-only-in-writers") == workflow.SUCCESSFUL


def test_a_child_forked_while_a_writer_runs_sees_no_writer_running(store_spec: StoreSpec) -> None:
    """Mutation: batch's after-fork renewal (``forked_child``) keeping the parent's counts:
    in a child forked while a writer ran on another thread of the parent, the actor looked
    RUNNING for the child's life (none of its threads runs that writer)."""
    store_spec.init()
    actor_id = "running-forgotten-in-a-child"
    actor = Summed.get_or_create(actor_id)
    ENTERED[actor_id], RELEASE[actor_id] = threading.Event(), threading.Event()
    held = actor.hold.run_async()
    try:
        assert ENTERED[actor_id].wait(30)
        assert batch.applying(actor_id) == frozenset({0})
        pid = os.fork()
        if pid == 0:
            os._exit(0 if batch.applying(actor_id) == frozenset() else 1)
        assert forking.reaped(pid, within=15) == 0
    finally:
        RELEASE[actor_id].set()
    held.result(timeout=30)
    assert batch.applying(actor_id) == frozenset()


def test_a_child_forked_while_another_thread_counts_writers_can_count() -> None:
    """Mutation: batch's after-fork renewal (``forked_child``) not making the lock anew: a
    child forked while another thread held it hung at its first writer (or its first
    ``get_status``)."""
    with held_by_another_thread(batch._applying_lock, 60):
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = 0 if batch.applying("anyone") == frozenset() else 1
            finally:
                os._exit(code)
        assert forking.reaped(pid, within=15) == 0


@vc.virtual_actor
class Stubborn:
    def __init__(self) -> None:
        self.n = 0

    async def ignore_cancellation(self, token: str) -> int:
        """Runs until the test opens its gate, swallowing every cancellation meanwhile."""
        ENTERED[token].set()
        for _ in range(6000):
            if RELEASE[token].is_set():
                break
            try:
                await asyncio.sleep(0.005)
            except asyncio.CancelledError:
                continue
        self.n += 1
        return self.n


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_on_an_async_method_that_ignores_its_cancellation_returns_and_says_so(
    store_spec: StoreSpec,
    ctrl_c: Callable[[threading.Event], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mutations: ``_stop_helper`` waiting with no deadline (the interrupted caller hung for as
    long as the method ignored its cancellation), and its warning logged when the helper had
    stopped rather than when it had not (silent about the thread left running)."""
    monkeypatch.setattr(call_bodies, "_HELPER_STOP_WAIT", 0.3)
    store_spec.init()
    actor = Stubborn.get_or_create("stubborn")
    token = "stubborn"
    ENTERED[token], RELEASE[token] = threading.Event(), threading.Event()
    ctrl_c(ENTERED[token])

    async def inside_a_loop() -> int:
        return actor.ignore_cancellation.run(token)  # type: ignore[no-any-return]

    try:
        with caplog.at_level(logging.WARNING, logger="vactor_cloud"), pytest.raises(Interrupted):
            asyncio.run(inside_a_loop())
        assert not RELEASE[token].is_set()
        warned = [r.getMessage() for r in caplog.records if "did not stop within" in r.getMessage()]
        assert warned and "ignore_cancellation() of actor 'stubborn'" in warned[0], caplog.text
    finally:
        RELEASE[token].set()


def test_a_self_call_error_passed_on_by_a_caller_of_the_same_class_has_its_note_once(
    store_spec: StoreSpec,
) -> None:
    """Mutation: ``_note_self_call`` adding its note however often the error passes: an actor
    relaying another's ``self.incr.run()`` error (same class, same error object) said it twice."""
    store_spec.init()
    Summed.get_or_create("self-call-inner")
    outer = Summed.get_or_create("self-call-outer")
    with pytest.raises(AttributeError) as raised:
        outer.relay_run_of_a_method.run("self-call-inner")
    notes = getattr(raised.value, "__notes__", [])
    assert len(notes) == 1 and "call self.incr(...)" in notes[0], notes


def test_step_status_is_logged_for_a_named_call_only(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutation: ``step_status`` logging whether or not the call was given a name: every call
    logged ``Step status`` lines at INFO, with ``@None`` for a name."""
    store_spec.init()
    actor = Summed.get_or_create("step-status-named")
    with caplog.at_level(logging.INFO, logger="vactor_cloud"):
        actor.incr.run()
        actor.status_in_a_read.run()
        assert not [r for r in caplog.records if "Step status" in r.getMessage()], caplog.text
        actor.incr.options(name="counted").run()
    lines = [r.getMessage() for r in caplog.records if "Step status" in r.getMessage()]
    assert lines == [
        "Step status [RUNNING]\t[step-status-named@counted]",
        "Step status [SUCCESSFUL]\t[step-status-named@counted]",
    ], lines


def test_an_actor_created_again_after_a_delete_is_running_during_its_writer(store_spec: StoreSpec) -> None:
    """Mutation: the writer's call context made without the incarnation (``born``): the actor
    created again under a deleted one's id never looked RUNNING while its writer ran."""
    store_spec.init()
    actor_id = "running-after-a-delete"
    Summed.get_or_create(actor_id).incr.run()
    vc.delete_actor(actor_id)
    again = Summed.get_or_create(actor_id)
    assert again.status_in_a_writer.run() == "RUNNING"


def test_an_async_method_run_from_inside_an_event_loop_sees_the_callers_context_variables(
    store_spec: StoreSpec,
) -> None:
    """Mutation: ``_run_coroutine`` running the helper's loop in the helper thread's own context
    (``copied.run`` dropped): the method saw none of the calling thread's context variables."""
    store_spec.init()
    actor = Summed.get_or_create("async-context-variables")

    async def inside_a_loop() -> str:
        CALLER.set("the caller's")
        return actor.callers_variable.run()  # type: ignore[no-any-return]

    assert asyncio.run(inside_a_loop()) == "the caller's"


def test_the_loop_of_an_async_call_that_used_no_executor_is_freed_as_the_call_ends(
    store_spec: StoreSpec,
) -> None:
    """Mutation: ``_on_a_guarded_executor`` not unhooking an unused executor guard: the hooks set
    on the call's loop and the loop held each other, each call's loop (and what it refers to)
    kept until the next garbage collection."""
    store_spec.init()
    actor = Summed.get_or_create("async-loop-freed")
    actor.note_the_loop.run()
    LOOPS.clear()
    gc.disable()
    try:
        assert actor.note_the_loop.run() == 2
        assert len(LOOPS) == 1 and LOOPS[0]() is None, "the call's loop outlived it"
    finally:
        gc.enable()


def test_a_writer_running_on_one_actor_leaves_another_actor_not_running(store_spec: StoreSpec) -> None:
    """Mutation: ``applying`` answering for every actor (its ``actor == actor_id`` dropped):
    while a writer of one actor ran, every actor of the process looked RUNNING."""
    store_spec.init()
    busy, idle = "running-busy", "running-idle"
    Summed.get_or_create(idle).incr.run()
    actor = Summed.get_or_create(busy)
    ENTERED[busy], RELEASE[busy] = threading.Event(), threading.Event()
    held = actor.hold.run_async()
    try:
        assert ENTERED[busy].wait(30)
        assert workflow.get_status(busy) == workflow.RUNNING
        assert workflow.get_status(idle) == workflow.SUCCESSFUL
    finally:
        RELEASE[busy].set()
    held.result(timeout=30)


def test_a_fired_timer_whose_method_raised_a_long_message_is_reported_within_200_characters(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutation: ``_fire_report`` not cutting the error at 200 characters: a runner logged (and
    carried) a 1,000-character ``repr`` for a timer whose method raised it."""
    store_spec.init()
    actor = Summed.get_or_create("timer-long-error")
    actor.fail.options(at=time.time() - 1, timer_key="long").run("m" * 1000)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        assert vc.fire_due_timers().fired == 1
    [raised] = [r for r in caplog.records if r.getMessage().startswith("timer long of")]
    error = raised.args[2]  # type: ignore[index]
    assert error.startswith("ValueError('mmm") and len(error) <= 200, len(error)


def _posted_by_a_stand_in(method: str, *args: Any, **kwargs: Any) -> batch.PendingCall:
    """A call as a stand-in of an earlier release posted it: made as a writer's, arguments as given."""
    return batch.PendingCall.by_value(
        method, args, kwargs, readonly=False, future=Future(), call_id="c", for_class=Summed.definition.name
    )


@pytest.mark.parametrize("pickled", [False, True], ids=["plain", "pickled"])
def test_a_stand_in_call_given_at_step_is_refused_as_a_handle_of_the_class_refuses_it(pickled: bool) -> None:
    """Mutations of ``_at_step_of_a_stand_in``: the pickle's look for ``at_step`` negated (a call
    whose arguments were pickled passed ``at_step`` to the method); ``at_step_is_an_option``
    not asked (a writer taking ``**fields`` refused its own keyword); the check's
    ``ValueError`` dropped (a writer given ``at_step`` ran, and committed, as if without it)."""
    methods = Summed.definition.methods
    extra = ([1],) if pickled else ()  # (a list: the arguments are pickled, not kept as they are)
    writer = batch_apply._at_step_of_a_stand_in(
        methods["take"], _posted_by_a_stand_in("take", *extra, at_step=1)
    )
    assert isinstance(writer, ValueError) and "take() is a writer method; at_step=" in str(writer), writer
    read = batch_apply._at_step_of_a_stand_in(
        methods["status_in_a_read"], _posted_by_a_stand_in("status_in_a_read", *extra, at_step=1)
    )
    assert isinstance(read, ValueError) and "unpickled where its class was not defined" in str(read), read
    own = _posted_by_a_stand_in("keep_fields", at_step=1, other=[1])
    assert batch_apply._at_step_of_a_stand_in(methods["keep_fields"], own) is None  # its own keyword
    assert batch_apply._at_step_of_a_stand_in(methods["take"], _posted_by_a_stand_in("take", *extra)) is None


def test_a_stand_in_call_of_a_read_only_method_runs_as_a_read() -> None:
    """Mutation: ``_no_writer_of_the_class`` running a stand-in's call of a read-only method
    with a writer's context: the actor looked RUNNING while the read ran (and a fork in it was
    told the call was a writer's)."""
    definition = Summed.definition
    actor_id, serializer = "stand-in-read", definition.serializer
    state, _ = dumps_instance_state(definition.cls(), serializer, definition.restores, actor_id)
    call = _posted_by_a_stand_in("running_here")
    outcome = batch_apply._no_writer_of_the_class(definition, actor_id, call, state, serializer, None)
    assert outcome.ok and outcome.value == [], outcome


def test_a_fired_timers_call_is_recorded_as_the_timers_firing(store_spec: StoreSpec) -> None:
    """Mutation: the fired call's key the timer's own key, not ``timer_dedup_key(key, due)``:
    history told the firing apart from no other call (no ``timer fired: key=... due ...``)."""
    store_spec.init()
    actor = Summed.get_or_create("timer-fired-in-history")
    actor.incr.options(at=time.time() - 1, timer_key="tick").run()
    assert vc.fire_due_timers().fired == 1
    call = _newest_call(actor)
    assert call.method == "incr" and call.name == "timer tick", call
    text = HistoryEntry.call_text(call)
    assert text.startswith("timer fired: key='tick' due "), text


@vc.virtual_actor(serializer="json")
class JsonTally:
    def __init__(self) -> None:
        self.n = 0

    def hold(self) -> None:
        actor_id = vc.current_call().actor_id  # type: ignore[union-attr]
        ENTERED[actor_id].set()
        assert RELEASE[actor_id].wait(60), "the test never released the writer"

    def take(self, *items: Any) -> int:
        self.n += len(items)
        return self.n


def test_a_timer_scheduled_from_outside_with_arguments_its_actor_cannot_store_fails_alone(
    store_spec: StoreSpec,
) -> None:
    """Mutation: ``_timer_marker`` catching ``ValueError`` only: the scheduling call whose
    arguments a json actor cannot store (``StateSerializationError``, a ``TypeError``) raised out
    of its batch, failing the batch-mate committed with it too."""
    store_spec.init()
    actor_id = "timer-unstorable-arguments"
    actor = JsonTally.get_or_create(actor_id)
    ENTERED[actor_id], RELEASE[actor_id] = threading.Event(), threading.Event()
    held = actor.hold.run_async()
    try:
        assert ENTERED[actor_id].wait(30)
        unstorable = actor.take.options(at=time.time() + 100, timer_key="t").run_async({1, 2})
        mate = actor.take.run_async(1, 2)
    finally:
        RELEASE[actor_id].set()
    held.result(timeout=30)
    with pytest.raises(vc.StateSerializationError, match="cannot store the timer's arguments"):
        unstorable.result(timeout=30)
    assert mate.result(timeout=30) == 2
    assert actor.timers() == []


def test_a_timer_scheduled_from_outside_is_shown_with_its_arguments_as_a_call_shows_them(
    store_spec: StoreSpec,
) -> None:
    """Mutations of the scheduling call's summary: ``_schedule_summary`` not used (its arguments
    summarised as one tuple and one dict, which reprlib cuts at 6 items and 4 keys: history
    showed ``take(0, 1, 2, 3, 4, 5, ...)``); a one-argument tuple written ``(5)``."""
    store_spec.init()
    actor = Summed.get_or_create("timer-scheduled-arguments")
    actor.take.options(delay=100, timer_key="many").run(*range(8))
    many = _newest_call(actor)
    assert many.args.startswith("'take', args=(0, 1, 2, 3, 4, 5, 6, 7), kwargs={}, at="), many.args
    assert HistoryEntry.call_text(many).startswith("timer scheduled: take(0, 1, 2, 3, 4, 5, 6, 7) key='many'")
    actor.keep_fields.options(delay=100, timer_key="named").run(a=1, b=2, c=3, d=4, e=5)
    named = _newest_call(actor)
    assert "kwargs={'a': 1, 'b': 2, 'c': 3, 'd': 4, 'e': 5}, at=" in named.args, named.args
    actor.take.options(delay=100, timer_key="one").run(5)
    assert _newest_call(actor).args.startswith("'take', args=(5,), kwargs={}, at="), _newest_call(actor).args


def test_a_call_schedules_sees_and_cancels_its_own_timers(store_spec: StoreSpec) -> None:
    """Mutations of ``CallContext``: a method given as a function scheduled under its ``repr``
    (refused: no writer of that name); ``pending_timers`` without the call's own changes;
    ``cancel_timer`` True for a key with no timer; a read-only call's ``schedule`` failing as an
    ``AttributeError`` on ``None`` rather than saying it is read-only."""
    store_spec.init()
    actor = Summed.get_or_create("call-context-timers")
    assert actor.plan.run() == ("a", {"a": "incr"}, True, False, {})
    assert actor.timers() == []
    with pytest.raises(RuntimeError, match=r"plan_in_a_read\(\) is read-only: only writer methods"):
        actor.plan_in_a_read.run()


def test_a_method_whose_thread_ran_a_sub_task_is_still_its_own_call(store_spec: StoreSpec) -> None:
    """Mutation: ``swap_current_call`` returning the context it set, not the one it replaced: a
    method whose waiting thread ran a queued sub-task (``reentrancy.run_detached``, caller runs) was
    left outside any call (``current_call()`` None) once the sub-task returned."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="h170-subtask")
    CHILD_RAN.clear()
    store_spec.init(subtask_executor=pool)
    try:
        assert Summed.get_or_create("sub-task-caller-runs").launch.run() == "sub-task-caller-runs"
        assert CHILD_RAN.is_set()
    finally:
        vc.shutdown()
        pool.shutdown(wait=False, cancel_futures=True)


def test_a_future_kept_after_its_call_does_not_keep_the_actors_core(store_spec: StoreSpec) -> None:
    """Mutation: ``PendingCall.deliver`` not dropping the future's way to help (``_help``, which
    refers to the actor's core): a caller keeping a settled future kept the core, its cached
    state with it, after the runtime let it go."""
    store_spec.init()
    actor = Summed.get_or_create("future-lets-the-core-go")
    future = actor.incr.run_async()
    assert future.result(timeout=30) == 1
    core = weakref.ref(vc.get_runtime().core("future-lets-the-core-go"))
    vc.shutdown()
    full_collection()
    assert core() is None, "a settled future kept the actor's core"
    assert future.result() == 1


# -- defect: a summary that raised failed the call (and its batch-mates) --------------------------


def test_a_call_with_an_integer_too_long_for_a_string_is_applied_and_summarised(
    store_spec: StoreSpec,
) -> None:
    """Defect (found by the sweep): an ``int`` of more digits than ``str()`` converts
    (``sys.get_int_max_str_digits()``, 4,300) as an argument, a result or a creation argument,
    bare or in a list, raised ``ValueError`` from its history summary: the call, applied by its
    method, failed at the commit with an error that was not its own, and so did its batch-mates
    and the creation. Summarised now without converting it."""
    store_spec.init()
    huge = 10**5000
    actor = Summed.get_or_create("summary-huge-int")
    assert actor.give.run(huge) == huge
    call = _newest_call(actor)
    assert call.args == call.result == "<int of 16610 bits>", call
    assert actor.take.run([huge, 1]) == 1
    assert _newest_call(actor).args == "[<int of 16610 bits>, 1]"
    assert actor.incr.run() == 3
    created = Created.get_or_create("summary-huge-int-created", huge)
    assert created.history()[-1].calls[0].args == "<int of 16610 bits>"


@vc.virtual_actor
class Created:
    def __init__(self, value: int) -> None:
        self.value = value


def test_a_summary_of_a_value_whose_repr_raises_names_its_type() -> None:
    """reprlib catches a raising ``__repr__`` only for a type it has no method for: one named
    like a builtin it summarises (``int``, ``list``, ...) raised out of the summary."""
    named_like_int = type("int", (), {"__repr__": lambda self: 1 / 0})
    assert batch_apply.summarize(named_like_int()) == "<int (repr failed)>"
    assert batch_apply.summarize([named_like_int(), 2]) == "[<int (repr failed)>, 2]"
