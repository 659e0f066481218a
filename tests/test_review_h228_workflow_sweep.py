"""Review h228: a mutation sweep of the workflow layer (``workflow_steps.py``, ``workflow.py``).

TABLE
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
)
from test_review_h158_workflow_resume import Publisher, broken  # noqa: F401 - the fixture
from test_review_h213_resume_races import resume_held_after_listing

import vactor_cloud as vc
from vactor_cloud import _sync, codec, deletion, keys, workflow, workflow_steps
from vactor_cloud.cli.bench_harness import RequestTrace
from vactor_cloud.errors import NotFoundError, StorageError
from vactor_cloud.posting import PostedCall
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.workflow_steps import MethodStep, StepFunction, StepOptions, _RecordedFailures

pytestmark = pytest.mark.vactor_lanes("memory", "local")

#: closed: ``gate`` raises (the sub-workflow fails, the call is recorded for resume)
_gate_closed: list[bool] = []


@workflow.step(max_retries=0)
def gate(x: Any) -> Any:
    if _gate_closed:
        raise ConnectionError("the gate is closed")
    return x


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
    alive; the record is there): ``get_status`` raises ``ActorDeletedError``, not a status."""
    ledger = Ledger.get_or_create("deleted")
    with pytest.raises(ConnectionError):
        ledger.through_relay.run(2)
    core = vc.get_runtime().load("deleted")
    assert core.record is not None
    tombstone = deletion._tombstone(core.log, core.record, [], time.time(), "elsewhere")
    _sync.sync(core.log.put_step(tombstone))  # (the other process's delete, its clean-up not yet run)
    with pytest.raises(vc.ActorDeletedError):
        workflow.get_status("deleted")


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
    till = Till.get_or_create("posted-rerun")
    till.view.run()
    box = foreign_box("posted-rerun")
    _sync.sync(box.send(box.prepare((PostedCall("deposit", pickle.dumps(((5,), {})), uuid.uuid4().hex),))))
    _price_failures_left[:] = [1]
    _fold_posts_here("posted-rerun", till)  # applied: its outcome is the ConnectionError
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
