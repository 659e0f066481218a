"""Review h228: a mutation sweep of the workflow layer (``workflow_steps.py``, ``workflow.py``).

114 hand-made mutations, one at a time, each run (memory and local lanes, ``-x``) against the
workflow tests (workflow_steps, review_workflow, h140, h150, h158, h213, h215, h220 x2), and
a survivor against deleted_leftovers, retention, h211, outcomes_events and small; a survivor
of those against combined, names, signed_store_forgeries, hangs, delete_surfaces,
infra_outcomes, cancellation and h198, then against this module. "surv" says whether it
survived the first two sets; the last column names the module (``test_review_`` dropped) whose
test failed, "h228" a test written here.

Three defects, shown by a failing test first, fixed, and each fix reverted to see its test fail
again: a re-run by ``resume`` ran the body on the record's own argument objects (frozen now:
a call failing again was recorded with what its body made of its arguments); a node put among
its own inputs looped ``_run_dag`` for good (a ``ValueError`` now); ``_replace`` gave a named
tuple as a list and an ``OrderedDict``/``defaultdict`` as a dict (S39, S40: types kept now).

Equivalent or left: S20 (``_run_dag`` never returns a node: ``_finish`` runs any node a step
returns); S50 (NaN fails the round-trip check, NaN != NaN; infinities read back as written);
S55 (recorded arguments are only spread, ``*args``); F09 (a resume of an actor deleted behind
the process's back still raises ``ActorDeletedError``, from a later check). F05: one more
probe, only when a method of an earlier actor under the id runs here. F17, F19, F22: a second
re-run of a call in one process, which the call's resume key answers (nothing applied twice;
a lookup more). F34, F35, F36 (``_ran_ok_where_applied`` at the watermark, the carried copy,
an undecodable part) and F39 (the re-check of a post after its HEAD, a race window): each needs
a crafted history (steps compacted at an exact watermark, a carried outcome) not built here.
F42: the resume key without the incarnation; no two incarnations' records were made to share a
call id. F21 hung (``move_to_end`` of a key never added, in a done callback: a re-run's future
never settles); tests that wait with a bound fail with ``TimeoutError`` after 60 s.

==== ============================================================== ==== ================================
id   mutation                                                       surv killed by / why
==== ============================================================== ==== ================================
S01  StepOptions accepts max_retries=-1                             yes  h228 (options)
S02  metadata values not checked for JSON                           no   workflow_steps
S03  options(max_retries=) ignored                                  yes  h228 (options)
S04  options(catch_exceptions=) ignored                             no   workflow_steps
S05  options(checkpoint=) ignored                                   yes  h228 (options)
S06  options() drops earlier ray options                            yes  h228 (options)
S07  options(name=) ignored                                         no   workflow_steps
S08  a step called directly runs                                    no   workflow_steps
S09  node.options() on a method step not refused                    yes  h228 (method-step options)
S10  dependencies: keyword arguments not searched                   yes  h228 (keyword)
S11  a read-only call's failure recorded                            yes  h228 (a read)
S12  a keyed call's failure recorded                                no   workflow_steps
S13  a recorded failure not noted in _recorded                      no   workflow
S14  a retried call that succeeds keeps its record                  no   workflow
S15  a keyed posted call deletes a record                           yes  h228 (posted, counted)
S16  a posted call that succeeds keeps another folder's record      yes  combined
S17  the record of a call that now succeeds not deleted             no   workflow
S18  _recorded not discarded after success                          yes  h228 (record first)
S19  a resume key counted as the caller's                           no   h215_resume_across_processes
S20  evaluate: one round only                                       yes  equivalent: _finish runs nodes
S21  functions ready with a method step wait a round (method first) yes  h228 (round order)
S22  a method step without fresh defaults                           yes  h228 (fresh default)
S23  a method step returning a node: node kept as the value         yes  h228 (relayed)
S24  a function step returning a node: node kept as the value       yes  h228 (relayed)
S25  post order right to left                                       no   h140_workflow_steps
S26  a shared node visited twice (order lists it twice)             yes  h228 (given twice)
S27  one launch per node, not per function                          no   workflow_steps
S28  a function step's inputs not copied                            no   workflow
S29  checkpoint option inverted                                     no   workflow_steps
S30  launch results in group order                                  yes  h228 (interleaved)
S31  one retry too many                                             no   workflow_steps
S32  retries counted two at a time                                  yes  h228 (retry count)
S33  catch_exceptions: error in the value slot                      no   workflow_steps
S34  catch_exceptions: success not a pair                           yes  h228 (caught)
S35  step fingerprint by __name__                                   yes  h228 (qualified name)
S36  _nodes_in: dicts not searched                                  yes  h228 (keyword)
S37  _nodes_in: lists/tuples not searched                           yes  h228 (keyword, interleaved)
S38  _replace: dicts not replaced                                   yes  h228 (keyword)
S39  _replace: a tuple subclass rebuilt from one list               yes  DEFECT: types lost; h228 (types)
S40  _replace: a tuple becomes a list                               yes  DEFECT: types lost; h228 (types)
S41  _recorded drops the newest                                     yes  h228 (table)
S42  _recorded: a re-added call not moved to the end                yes  h228 (table)
S43  resuming() notes nothing                                       yes  h228 (record first)
S44  a json actor's call recorded pickled                           yes  names
S45  unpicklable args: only TypeError caught                        yes  h228 (pickled twice)
S46  a record without its post                                      yes  combined
S47  a record without its incarnation                               no   deleted_leftovers
S48  a failed record PUT raised (replaces the call's error)         yes  h228 (put refused)
S49  a failed record DELETE swallowed                               yes  h228 (delete refused)
S50  JSON record allows NaN                                         yes  equivalent (below)
S51  JSON record not checked for a round trip                       yes  h228 (json types)
S52  _same_json: types not compared                                 yes  h228 (json types)
S53  _same_json: dict keys not compared                             yes  h228 (json types)
S54  a pickled record unpickled when unpickle=False                 yes  names
S55  a JSON record's args given as a list                           yes  equivalent: only spread
S56  list_failures drops the current actor's records                no   workflow_steps
S57  a record under another call's key listed                       yes  signed_store_forgeries
S58  records not in failure order                                   no   h140_workflow_steps
S59  a record's post never parsed                                   yes  combined
S60  list_failures: a record gone between LIST and GET raises       yes  h228 (gone)
S61  has_failures reads records of the id's first actor too         yes  h228 (status, counted)
S62  has_failures: current actor's record not counted               no   deleted_leftovers
S63  has_failures: a bad record not counted                         no   deleted_leftovers
S64  a method's own step attribute overwritten                      yes  h228 (own step)
S65  @workflow.virtual_actor(...) without method steps              yes  h228 (own step)
S66  @workflow.step(catch_exceptions=True) ignored                  yes  h228 (options, caught)
F01  get_actor takes both ids                                       no   workflow_steps
F02  RUNNING for an earlier actor's method                          no   deleted_leftovers
F03  get_status of a deleted actor with records: no error           yes  h228 (deleted behind)
F04  FAILED for an earlier actor's records                          no   deleted_leftovers
F05  a second probe when RUNNING's was made                         yes  left: cost only (below)
F06  a single string filter iterated                                no   workflow_steps
F07  list_all filter inverted                                       no   workflow_steps
F08  resume unpickles for a json actor                              yes  names
F09  resume of a deleted actor: no error                            yes  equivalent: raised later (below)
F10  resume lists an earlier actor's records                        no   deleted_leftovers
F11  resume: applied elsewhere not checked                          yes  combined
F12  a listing never ended                                          no   h213_resume_races
F13  resume's end forgets no re-run                                 no   h213_resume_races
F14  combined settled twice                                         yes  h228 (settles once)
F15  combined cancellable                                           yes  h228 (cancel)
F16  combined: no caller-runs help                                  yes  h228 (caller runs)
F17  _forget_done_reruns: newest listing, not oldest                yes  left: masked (below)
F18  _forget_done_reruns: keeps the wrong ones                      no   h158_workflow_resume
F19  a re-run under way not shared                                  yes  left: masked (below)
F20  a re-run done before the listing given (not run again)         no   h213_resume_races
F21  an ended re-run not remembered                                 hang HANG (below)
F22  _rerun_done drops the newest                                   yes  left: masked (below)
F23  an ended re-run stays 'under way'                              no   h158_workflow_resume
F24  a re-run that failed to start stays under way                  no   small
F25  shared re-run: no caller-runs help                             yes  h228 (caller runs)
F26  a re-run's exception swallowed                                 no   h158_workflow_resume
F27  _applied_elsewhere for an unposted call                        no   workflow_steps
F28  _applied_elsewhere: own re-run not exempt                      yes  h228 (own posted re-run)
F29  record gone: still run                                         yes  combined
F30  a record of a failed fold run deleted as stale                 no   h150_resume_stray_step
F31  a stale record kept                                            yes  combined
F32  _ran_ok: any outcome counts as ok                              no   h150_resume_stray_step
F33  _ran_ok: a stray step below gc taken                           no   h150_resume_stray_step
F34  _ran_ok: step at the watermark not taken                       yes  left (below)
F35  _ran_ok: the carried copy not read                             yes  left (below)
F36  _ran_ok: an undecodable part skipped                           yes  left (below)
F37  _post_pending: first applied check dropped                     yes  h228 (own posted re-run)
F38  _post_pending: a post gone counts as pending                   yes  h228 (post gone)
F39  _post_pending: no re-check after the HEAD                      yes  left (below)
F40  a pending post's call run by resume                            no   small
F41  a re-run without its resume key                                no   h220_resume_and_compaction
F42  resume key without the incarnation                             yes  left (below)
F43  resume answers before its delete                               no   h220_resume_and_compaction
F44  resuming() not called                                          yes  h228 (record first)
F45  a re-run: no caller-runs help                                  yes  h228 (caller runs)
F46  a re-run under a new call id                                   no   workflow_steps
F47  re-runs in reverse order                                       no   h140_workflow_steps
F48  a pending post's re-run answered None                          yes  combined
==== ============================================================== ==== ================================
"""

from __future__ import annotations

import collections
import enum
import logging
import pickle
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_combining import foreign_box, init_switchable
from test_review_combined import (
    Till,
    _a_posted_deposit_failed_in_a_folder_that_died,
    _fold_posts_here,
    _forget_the_failed_runs_of_this_process,
    _price_failures_left,
    a_posted_deposit_whose_fold_committed_its_failure,
)
from test_review_h140_workflow_steps import _gate_closed, gate  # (closed: gate raises)
from test_review_h158_workflow_resume import Publisher, broken  # noqa: F401 - the fixture
from test_review_h213_resume_races import resume_held_after_listing

import vactor_cloud as vc
from vactor_cloud import _sync, codec, deletion, keys, workflow, workflow_steps
from vactor_cloud.cli.request_trace import RequestTrace
from vactor_cloud.errors import NotFoundError, StorageError
from vactor_cloud.posting import PostedCall
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.workflow_steps import MethodStep, StepFunction, StepOptions, _RecordedFailures

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: every run of ``counted``, by its argument
_counted_runs: list[Any] = []


@workflow.step
def counted(x: Any) -> Any:
    _counted_runs.append(x)
    return x


@workflow.step
def chain(x: Any) -> Any:
    return gate.step(x)  # a function step that returns a sub-workflow


@workflow.step(max_retries=2)
def hopeless(x: Any) -> Any:
    _counted_runs.append(x)
    raise ConnectionError(f"attempt {len(_counted_runs)}")


Point = collections.namedtuple("Point", "x y")


class Row(list[Any]):
    """A list of its own type."""


class Pair(tuple[Any, ...]):
    """A tuple of its own type, not a named one."""


class Level(enum.IntEnum):
    LOW = 1


@workflow.virtual_actor(serializer="json")
class JsonLedger:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def typed(self, value: Any) -> Any:
        return self.keep.step(gate.step(f"{type(value).__name__} {sorted(map(type, value), key=str)}"))

    def keep(self, kind: str) -> str:
        self.kinds.append(kind)
        return kind


def _thawed_once() -> Once:
    return Once(thawed=True)


class Once:
    """An argument that pickles once (the call's copy of it) and refuses a second pickle."""

    def __init__(self, thawed: bool = False) -> None:
        self.thawed = thawed

    def __reduce__(self) -> Any:
        if self.thawed:
            raise ValueError("pickled a second time")
        return (_thawed_once, ())


class Steps:
    """A namespace: its step's qualified name is not its name."""

    @workflow.step(catch_exceptions=True)
    def caught(x: Any) -> Any:
        return x


#: ``held`` says it started, then waits for ``_held["go"]``
_held = {"reached": threading.Event(), "go": threading.Event()}


@workflow.step
def held(x: Any) -> Any:
    _held["reached"].set()
    assert _held["go"].wait(60), "never let go"
    return x


@workflow.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def grow(self, items: list[int]) -> Any:
        items.append(len(items))  # the body changes its own copy of the argument
        return self.keep.step(gate.step(list(items)))

    def keep(self, x: Any) -> Any:
        self.seen.append(x)
        return x

    def knot(self) -> Any:
        box: list[Any] = []
        node = gate.step(box)
        box.append(node)  # the node is among its own arguments: it waits for itself
        return node

    def by_keyword(self) -> Any:
        return self.keep.step(x=gate.step(x=[5]))

    def same_round(self) -> Any:
        # Both ready at once: the function step takes (a copy of) ``self.seen`` as it is first.
        return self.pair.step(self.keep.step(7), gate.step(self.seen))

    def pair(self, a: Any, b: Any) -> list[Any]:
        return [a, b]

    def tally(self, x: int, acc: list[int] = []) -> list[int]:  # noqa: B006 (the point)
        acc.append(x)
        self.seen.append(list(acc))
        return acc

    def relay(self, x: Any) -> Any:
        return gate.step(x)  # a method step that returns a sub-workflow

    def through_relay(self, x: Any) -> Any:
        return self.keep.step(self.relay.step(x))

    def through_chain(self, x: Any) -> Any:
        return self.keep.step(chain.step(x))

    def shared_input(self) -> Any:
        node = counted.step("shared")
        return self.pair.step(node, node)

    def interleaved(self) -> Any:
        return self.keep.step([counted.step("a"), gate.step("b"), counted.step("c")])

    def hopeless_step(self) -> Any:
        return hopeless.step("try")

    def in_a_dict(self) -> Any:
        return self.keep.step({"k": [gate.step("v")]})

    def caught_step(self, x: Any) -> Any:
        return Steps.caught.step(x)

    def kinds(self, *values: Any) -> list[tuple[str, Any]]:
        return [(type(v).__name__, v) for v in values]

    def typed(self) -> Any:
        return self.kinds.step(
            Point(1, 2),
            Point(gate.step(1), 2),
            collections.OrderedDict(a=1),
            collections.defaultdict(list, a=[gate.step(1)]),
            counted.step(Point(1, gate.step(2))),
            Row([gate.step(3)]),
            Pair((4, 5)),
        )

    def with_once(self, once: Once) -> Any:
        return gate.step(1)

    def through_gate_then_held(self, x: Any) -> Any:
        return self.keep.step(held.step(gate.step(x)))

    def resume_of(self, actor_id: str) -> Any:
        return vc.get(workflow.resume(actor_id))  # (an unbounded wait, on a pool thread)

    def tally_step(self, x: int) -> Any:
        return self.tally.step(x)

    @workflow.virtual_actor.readonly
    def peek(self) -> Any:
        return gate.step(list(self.seen))

    @workflow.virtual_actor.readonly
    def view(self) -> list[Any]:
        return list(self.seen)


@pytest.fixture
def gate_closed() -> Any:
    _gate_closed[:] = [True]
    yield
    _gate_closed.clear()


def test_a_resumed_call_whose_body_changes_its_arguments_is_recorded_with_the_arguments_it_was_called_with(
    actor_store: StoreSpec, gate_closed: None
) -> None:
    """Arguments are by value: every run of a call's body gets its own copy. A call re-run by
    ``resume`` whose sub-workflow failed again is recorded again for the next resume: with the
    arguments it was called with, not with what its body made of them."""
    ledger = Ledger.get_or_create("grow")
    with pytest.raises(ConnectionError):
        ledger.grow.run([])
    with pytest.raises(ConnectionError):
        vc.get(workflow.resume("grow"), timeout=60)
    with pytest.raises(ConnectionError):
        vc.get(workflow.resume("grow"), timeout=60)
    _gate_closed.clear()
    assert vc.get(workflow.resume("grow"), timeout=60) == [[0]]
    assert ledger.view.run() == [[0]]


def test_a_sub_workflow_whose_step_waits_for_itself_fails_its_call(actor_store: StoreSpec) -> None:
    """A step among its own inputs (put there after it was made) can never be ready: the call
    fails with ``ValueError``, and the actor takes its next call."""
    ledger = Ledger.get_or_create("knot")
    future = ledger.knot.run_async()
    with pytest.raises(ValueError, match="cycle"):
        future.result(timeout=60)  # (a bound for a hang, not a measure: it fails at once)
    assert ledger.view.run() == []


def _double(x: int) -> int:
    return 2 * x


def test_step_options_change_what_they_name_and_keep_the_rest() -> None:
    """``f.options(...)`` (Ray's) sets the options it is given and keeps every other one, the
    resource requests merged; ``@workflow.step(...)`` keeps what it is given; a negative
    ``max_retries`` is refused."""
    base = workflow.step(name="base", max_retries=1, catch_exceptions=True, checkpoint=False, num_cpus=2)(
        _double
    )
    assert base.step_options == StepOptions("base", None, 1, True, False, {"num_cpus": 2})
    changed = base.options(name="other", metadata={"a": 1}, max_retries=4, checkpoint=True, num_gpus=1)
    assert changed.step_options == StepOptions(
        "other", {"a": 1}, 4, True, True, {"num_cpus": 2, "num_gpus": 1}
    )
    assert base.options(catch_exceptions=False).step_options == StepOptions(
        "base", None, 1, False, False, {"num_cpus": 2}
    )
    assert base.options().step_options == base.step_options
    for wrong in (-1, 1.5):
        with pytest.raises(ValueError, match="max_retries"):
            workflow.step(max_retries=wrong)  # type: ignore[arg-type]
    assert workflow.step(max_retries=0)(_double).step_options.max_retries == 0


def test_options_of_a_method_step_node_are_refused() -> None:
    """Step options are a function step's: ``self.method.step(...).options(...)`` raises
    ``TypeError`` (a method step runs on the instance, with none of them)."""
    node = Ledger.methods["keep"].function.step(1)
    with pytest.raises(TypeError, match="function steps"):
        node.options(max_retries=1)
    target = gate.step(1).options(max_retries=2).target
    assert isinstance(target, StepFunction) and target.step_options.max_retries == 2


def test_a_step_given_as_a_keyword_argument_runs_first(actor_store: StoreSpec) -> None:
    """Nodes among keyword arguments are dependencies too: run first, their value passed."""
    ledger = Ledger.get_or_create("keyword")
    assert ledger.by_keyword.run() == [5]
    assert ledger.in_a_dict.run() == {"k": ["v"]}  # (and inside a dict's values)
    assert ledger.view.run() == [[5], {"k": ["v"]}]


def test_a_read_whose_sub_workflow_fails_leaves_nothing_to_resume(
    actor_store: StoreSpec, gate_closed: None
) -> None:
    """A read-only call changes nothing: its failed sub-workflow is not recorded for resume
    (resumed, it would run as a writer)."""
    ledger = Ledger.get_or_create("read")
    with pytest.raises(ConnectionError):
        ledger.peek.run()
    assert workflow.get_status("read") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("read"), timeout=60) == []


def test_function_steps_ready_with_a_method_step_launch_before_it(actor_store: StoreSpec) -> None:
    """In each round of a sub-workflow the ready function steps launch first (their inputs
    copied then), then the ready method steps run: a method step does not change what a
    function step of its round gets."""
    ledger = Ledger.get_or_create("round")
    assert ledger.same_round.run() == [7, []]
    assert ledger.view.run() == [7]


def test_a_method_step_gets_a_fresh_mutable_default_each_run(actor_store: StoreSpec) -> None:
    """A method step is called as the method is: each run gets its own copy of a mutable
    default it omits."""
    ledger = Ledger.get_or_create("tally")
    assert ledger.tally_step.run(1) == [1]
    assert ledger.tally_step.run(2) == [2]
    assert ledger.view.run() == [[1], [2]]


def test_a_method_step_returning_a_sub_workflow_passes_on_its_result(actor_store: StoreSpec) -> None:
    """A method step that returns a sub-workflow has that sub-workflow's result as its value,
    and that is what a step depending on it gets (not the node)."""
    ledger = Ledger.get_or_create("relay")
    assert ledger.through_relay.run(3) == 3
    assert ledger.through_chain.run(4) == 4  # (a function step's likewise)
    assert ledger.view.run() == [3, 4]


def test_a_step_given_twice_runs_once(actor_store: StoreSpec) -> None:
    """A node that is an input of a step twice (or of two steps) is one step: it runs once,
    at one checkpoint position, and both places get its result."""
    _counted_runs.clear()
    ledger = Ledger.get_or_create("twice")
    assert ledger.shared_input.run() == ["shared", "shared"]
    assert _counted_runs == ["shared"]


def test_steps_of_two_functions_launched_together_each_get_their_own_result(actor_store: StoreSpec) -> None:
    """Ready steps of one function launch together, function after function; each node still
    gets its own step's result, in the places it was given."""
    ledger = Ledger.get_or_create("interleaved")
    assert ledger.interleaved.run() == ["a", "b", "c"]


def test_a_raising_step_runs_once_plus_max_retries_times(actor_store: StoreSpec) -> None:
    """``max_retries=2``: a step that always raises runs three times, then its last exception
    fails the call."""
    _counted_runs.clear()
    ledger = Ledger.get_or_create("hopeless")
    with pytest.raises(ConnectionError, match="attempt 3"):
        ledger.hopeless_step.run()
    assert _counted_runs == ["try"] * 3


def test_a_caught_step_that_succeeds_gives_a_pair_and_is_checkpointed_under_its_qualified_name(
    actor_store: StoreSpec,
) -> None:
    """``catch_exceptions=True``: a step that succeeds gives ``(value, None)``. Its checkpoint's
    fingerprint names the function as ``module.qualname`` (two functions of one name in two
    namespaces are two functions)."""
    ledger = Ledger.get_or_create("caught")
    assert ledger.caught_step.run(1) == (1, None)
    store = vc.get_runtime().store
    keys = _sync.sync(store.list("actors/caught/tasks/"))
    fingerprints = [str(codec.decode(k, _sync.sync(store.get(k)).data).meta["fingerprint"]) for k in keys]
    assert len(fingerprints) == 1
    assert fingerprints[0].startswith(f"{__name__}.Steps.caught:")


def test_a_steps_arguments_keep_their_types(actor_store: StoreSpec) -> None:
    """A step gets its arguments as given, of their own types (a named tuple, an
    ``OrderedDict``, a ``defaultdict``, subclasses of list and tuple), with or without a node
    inside to replace by its result."""
    ledger = Ledger.get_or_create("typed")
    got = ledger.typed.run()
    assert [kind for kind, _ in got] == [
        "Point",
        "Point",
        "OrderedDict",
        "defaultdict",
        "Point",
        "Row",
        "Pair",
    ]
    assert [value for _, value in got] == [
        Point(1, 2),
        Point(1, 2),
        collections.OrderedDict(a=1),
        {"a": [1]},
        Point(1, 2),
        [3],
        (4, 5),
    ]
    assert got[3][1].default_factory is list


def test_failed_calls_remembered_are_the_newest_and_a_call_noted_again_is_new() -> None:
    """The calls whose failure this process recorded are kept up to a limit: the oldest noted
    go first, and a call noted again counts as noted last."""
    recorded = _RecordedFailures(limit=2)
    for call in ("a", "b", "a", "c"):
        recorded.add("actor", call)
    assert [recorded.has("actor", c) for c in ("a", "b", "c")] == [True, False, True]
    recorded.discard("actor", "a")
    assert not recorded.has("actor", "a") and not recorded.has("other", "c")


def test_a_resumed_call_deletes_its_record_before_its_step_is_written(
    actor_store: StoreSpec, gate_closed: None
) -> None:
    """A re-run by ``resume`` whose sub-workflow succeeds deletes the call's record before it
    commits (deleted after, a failed DELETE left a committed call to apply again), in a
    process that did not record the failure itself too."""
    ledger = Ledger.get_or_create("order")
    with pytest.raises(ConnectionError):
        ledger.through_relay.run(9)
    _gate_closed.clear()
    _forget_the_failed_runs_of_this_process()  # (as a process that resumes what another recorded)
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        assert vc.get(workflow.resume("order"), timeout=60) == [9]
    kinds = [(r.kind, "failed" if r.key.endswith("/failed") else r.key.split("/")[2]) for r in trace.requests]
    deleted = kinds.index(("delete", "failed"))
    assert ("put", "steps") in kinds[deleted:], kinds  # (HEAD hints aside)
    # Committed, the call is no longer one whose failure this process holds recorded.
    call_id = trace.requests[kinds.index(("delete", "failed"))].key.split("/")[3]
    assert not workflow_steps._recorded.has("order", call_id)


def test_a_call_whose_arguments_cannot_be_recorded_fails_with_its_own_error(
    actor_store: StoreSpec, gate_closed: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed sub-workflow whose call cannot be pickled for its record (whatever the error)
    is not recorded, with a warning: the caller gets the sub-workflow's exception."""
    ledger = Ledger.get_or_create("once")
    with pytest.raises(ConnectionError):
        ledger.with_once.run(Once())
    assert "cannot record the failed call" in caplog.text
    assert workflow.get_status("once") == workflow.SUCCESSFUL


@pytest.mark.usefixtures("runtime_off", "gate_closed")
def test_a_failure_record_that_cannot_be_written_leaves_the_call_its_own_error(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refusing a failure record's put: the call still fails with its sub-workflow's
    exception (not the store's), with a warning that it is not recorded."""
    store = init_switchable(store_spec)
    ledger = Ledger.get_or_create("unrecorded")
    store.fail = lambda operation, key: (
        StorageError(f"{key}: refused (test)") if operation == "put" and key.endswith("/failed") else None
    )
    with pytest.raises(ConnectionError):
        ledger.through_relay.run(1)
    assert "could not record the failed call for resume" in caplog.text


@pytest.mark.usefixtures("runtime_off", "gate_closed")
def test_a_resumed_call_whose_record_cannot_be_deleted_commits_nothing(store_spec: StoreSpec) -> None:
    """The store refusing the DELETE of the record of a resumed call whose sub-workflow now
    succeeds fails the re-run: nothing commits and the call stays recorded; the next resume
    applies it once."""
    store = init_switchable(store_spec)
    ledger = Ledger.get_or_create("undeleted")
    with pytest.raises(ConnectionError):
        ledger.through_relay.run(2)
    _gate_closed.clear()
    store.fail = lambda operation, key: (
        StorageError(f"{key}: refused (test)") if operation == "delete" and key.endswith("/failed") else None
    )
    with pytest.raises(StorageError, match="could not delete the failure record"):
        vc.get(workflow.resume("undeleted"), timeout=60)
    assert ledger.view.run() == []
    assert workflow.get_status("undeleted") == workflow.FAILED
    store.fail = lambda operation, key: None
    assert vc.get(workflow.resume("undeleted"), timeout=60) == [2]
    assert ledger.view.run() == [2]


@pytest.mark.usefixtures("runtime_off", "gate_closed")
def test_a_record_gone_between_the_listing_and_its_read_is_not_resumed(store_spec: StoreSpec) -> None:
    """A record listed, then gone when read (another resume ran the call, or compaction took
    it): resume has nothing to run, and says so with ``[]``."""
    store = init_switchable(store_spec)
    ledger = Ledger.get_or_create("gone")
    with pytest.raises(ConnectionError):
        ledger.through_relay.run(2)
    store.fail = lambda operation, key: (
        NotFoundError(f"{key}: gone (test)") if operation == "get" and key.endswith("/failed") else None
    )
    assert vc.get(workflow.resume("gone"), timeout=60) == []
    assert ledger.view.run() == []


def test_the_status_of_the_ids_first_actor_reads_no_record(actor_store: StoreSpec, gate_closed: None) -> None:
    """``FAILED`` for the id's first actor (incarnation 0: every record under the id is its)
    takes the LIST of its records, not a read of each."""
    ledger = Ledger.get_or_create("status")
    with pytest.raises(ConnectionError):
        ledger.through_relay.run(2)
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        assert workflow.get_status("status") == workflow.FAILED
    assert [r.kind for r in trace.requests if r.key.endswith("/failed")] == []
    assert [r.kind for r in trace.requests if "/tasks/" in r.key] == ["list"]


@pytest.mark.usefixtures("runtime_off")
def test_a_posted_call_that_succeeds_deletes_a_failure_record_only_when_unkeyed(
    store_spec: StoreSpec,
) -> None:
    """A posted call whose sub-workflow succeeds deletes the failure record another folder may
    have left (one DELETE); a keyed one has none to delete (a keyed call's failure is its
    key's outcome, never recorded), and makes no DELETE."""
    init_switchable(store_spec, combine_window=60.0)
    _price_failures_left.clear()
    till = Till.get_or_create("till")
    till.view.run()
    unkeyed = PostedCall("deposit", pickle.dumps(((5,), {})), uuid.uuid4().hex)
    keyed = PostedCall("deposit", pickle.dumps(((7,), {})), uuid.uuid4().hex, idempotency_key="seven")
    box = foreign_box("till")
    _sync.sync(box.send(box.prepare((unkeyed, keyed))))
    with RequestTrace(vc.get_runtime().store).installed() as trace:
        _fold_posts_here("till", till)
    assert till.view.run() == 12
    deleted = [r.key for r in trace.requests if r.kind == "delete" and r.key.endswith("/failed")]
    assert deleted == [workflow_steps.failure_key("till", unkeyed.call_id)]


def test_a_methods_own_step_attribute_is_kept() -> None:
    """``workflow.virtual_actor`` (``(...)`` too) gives each method ``.step`` unless the function
    has one."""

    class Own:
        def mine(self) -> None:
            pass

        mine.step = "the method's own"  # type: ignore[attr-defined]

        def other(self) -> None:
            pass

    made = workflow.virtual_actor(Own)
    assert made.methods["mine"].function.step == "the method's own"
    assert isinstance(made.methods["other"].function.step, MethodStep)

    class Spelled:  # (decorated with options: the same)
        def other(self) -> None:
            pass

    spelled = workflow.virtual_actor(serializer="json")(Spelled)
    assert isinstance(spelled.methods["other"].function.step, MethodStep)


def test_the_status_of_an_actor_deleted_behind_this_processs_back_is_an_error(
    actor_store: StoreSpec, gate_closed: None
) -> None:
    """An actor with a failed call, deleted by another process (this one's cache still has it
    alive; the record is there): ``get_status`` and ``resume`` raise ``ActorDeletedError``."""
    ledger = Ledger.get_or_create("deleted")
    with pytest.raises(ConnectionError):
        ledger.through_relay.run(2)
    core = vc.get_runtime().load("deleted")
    assert core.record is not None
    tombstone = deletion._tombstone(core.log, core.record, [], time.time(), "elsewhere")
    _sync.sync(core.log.put_step(tombstone))  # (the other process's delete, its clean-up not yet run)
    with pytest.raises(vc.ActorDeletedError):
        workflow.get_status("deleted")
    with pytest.raises(vc.ActorDeletedError):
        workflow.resume("deleted")  # (raised by the call, before any re-run)


@pytest.mark.parametrize("value", [(1, 2), {1: "a"}, [Level.LOW]], ids=["tuple", "int-key", "int-enum"])
def test_a_json_actors_resumed_call_gets_arguments_of_their_own_types(
    actor_store: StoreSpec, gate_closed: None, value: Any
) -> None:
    """A json actor's failed call is recorded as JSON only when JSON gives the arguments back
    as they are (else pickled): resumed, the method gets a tuple, a dict's int key, an
    ``IntEnum``, not what JSON would make of them (a list, a string key, an int)."""
    ledger = JsonLedger.get_or_create("json")
    with pytest.raises(ConnectionError):
        ledger.typed.run(value)
    _gate_closed.clear()
    (kind,) = vc.get(workflow.resume("json"), timeout=60)
    assert kind == f"{type(value).__name__} {sorted(map(type, value), key=str)}"


def test_a_resumes_future_under_way_cannot_be_cancelled(actor_store: StoreSpec, gate_closed: None) -> None:
    """The future of ``workflow.resume`` is running from the start: ``cancel()`` on it returns
    ``False`` while a re-run is under way, and the re-run's result comes."""
    ledger = Ledger.get_or_create("uncancelled")
    with pytest.raises(ConnectionError):
        ledger.through_gate_then_held.run(3)
    _gate_closed.clear()
    _held["reached"].clear()
    _held["go"].clear()
    try:
        future = workflow.resume("uncancelled")
        assert _held["reached"].wait(60), "the re-run never started"
        assert not future.cancel()
    finally:
        _held["go"].set()
    assert vc.get(future, timeout=60) == [3]


@pytest.mark.usefixtures("runtime_off", "gate_closed")
def test_a_method_waiting_for_a_resume_on_the_only_pool_thread_runs_the_rerun_itself(
    store_spec: StoreSpec,
) -> None:
    """A writer method on the pool's one thread (``max_workers=1``) waiting, unbounded, for a
    resume of another actor: the re-run is applied by that waiting thread (caller runs), not
    left for a pool thread that is the waiter itself."""
    store_spec.init(settings=vc.Settings(storage="", max_workers=1))
    ledger = Ledger.get_or_create("waited-for")
    with pytest.raises(ConnectionError):
        ledger.through_relay.run(4)
    _gate_closed.clear()
    waiter = Ledger.get_or_create("waiter").resume_of.run_async("waited-for")
    assert waiter.result(timeout=60) == [4]  # (a bound for a hang: it returns at once)
    assert ledger.view.run() == [4]


def test_a_resume_given_only_reruns_done_already_settles_once(
    actor_store: StoreSpec,
    broken: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Resume B lists two failed calls and waits; resume A re-runs both. B, let go, is given
    A's two re-runs, done already: its future settles once, with both results, and nothing is
    logged of a callback that failed (settling it a second time)."""
    job = Publisher.get_or_create("done-twice")
    for x in (1, 2):
        with pytest.raises(RuntimeError, match="publish is down"):
            job.run.run(x)
    broken.unlink()
    with resume_held_after_listing(monkeypatch, "done-twice") as answers:
        assert vc.get(workflow.resume("done-twice"), timeout=60) == [2, 3]
    assert answers == [[2, 3]]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.usefixtures("runtime_off")
def test_a_resume_that_listed_a_posted_call_its_process_then_reran_gives_that_reruns_result(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A posted call whose sub-workflow failed in the fold that applied its post: resume B
    lists it and waits; resume A re-runs it (its record deleted, its step written). B, let go,
    finds the post applied and the record gone, which for another process's run means "applied
    elsewhere"; the re-run is this process's own: B gives its result, not ``[]``."""
    init_switchable(store_spec, combine_window=60.0)
    till = a_posted_deposit_whose_fold_committed_its_failure("posted-rerun")
    assert workflow.get_status("posted-rerun") == workflow.FAILED
    with (
        resume_held_after_listing(monkeypatch, "posted-rerun", at="_applied_elsewhere") as answers,
        RequestTrace(vc.get_runtime().store).installed() as trace,
    ):
        assert vc.get(workflow.resume("posted-rerun"), timeout=60) == [5]
    assert answers == [[5]]
    assert till.view.run() == 5
    # The newest step shows the post applied: whether it is still pending takes no HEAD of it.
    assert [r.key for r in trace.requests if r.kind == "head" and "/mail/" in r.key] == []


@pytest.mark.usefixtures("runtime_off")
def test_a_posted_call_whose_post_is_gone_unapplied_is_resumed(store_spec: StoreSpec) -> None:
    """A posted call whose fold died before its step landed, and whose post is then gone
    unapplied (expired, deleted): no fold can apply it any more, so resume runs it."""
    till, _ = _a_posted_deposit_failed_in_a_folder_that_died(store_spec)
    runtime = vc.get_runtime()
    (failed,) = _sync.sync(workflow_steps.list_failures(runtime.store, "till", runtime.settings.signing_key))
    assert failed.post is not None and failed.post[0] in _sync.sync(
        runtime.store.list(keys.posts_prefix("till"))
    )
    _sync.sync(runtime.store.delete(failed.post[0]))
    assert vc.get(workflow.resume("till"), timeout=60) == [5]
    assert till.view.run() == 5
