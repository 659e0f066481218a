"""Ray-spelled sub-workflows (``@workflow.step``, actor methods returning steps) and Ray's management
calls for actors (``resume``, ``list_all``, ``get_status``), beyond what Ray's own tests check."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.errors import ActorDefinitionError, StateProtocolError
from vactor_cloud.workflow_steps import list_failures


def _count(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


def _bump(path: Path) -> None:
    path.write_text(str(_count(path) + 1))


def test_resume_reads_finished_steps_back_instead_of_running_them_again(actor_store, tmp_path):
    runs_a, runs_b, broken = tmp_path / "a", tmp_path / "b", tmp_path / "broken"

    @workflow.step
    def fetch(x):
        _bump(runs_a)
        return x * 10

    @workflow.step(max_retries=0)
    def publish(y):
        _bump(runs_b)
        if broken.exists():
            raise RuntimeError("publish is down")
        return y + 1

    @workflow.virtual_actor
    class Job:
        def __init__(self):
            self.done = []

        def run(self, x):
            return self.record.step(publish.step(fetch.step(x)))

        def record(self, value):
            self.done.append(value)
            return value

        @workflow.virtual_actor.readonly
        def results(self):
            return self.done

    job = Job.get_or_create("job")
    broken.touch()
    with pytest.raises(RuntimeError, match="publish is down"):
        job.run.run(4)
    assert (_count(runs_a), _count(runs_b)) == (1, 1)
    assert job.results.run() == []
    assert workflow.get_status("job") == workflow.FAILED
    assert workflow.list_all(workflow.FAILED) == [("job", workflow.FAILED)]

    broken.unlink()
    assert vc.get(workflow.resume("job")) == [41]
    assert (_count(runs_a), _count(runs_b)) == (1, 2)  # fetch was read back from its checkpoint
    assert job.results.run() == [41]
    assert workflow.get_status("job") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("job")) == []
    runtime = vc.get_runtime()
    assert vc._sync.sync(list_failures(runtime.store, "job", None)) == []


_CRASHING_CHILD = """
import os, sys
import vactor_cloud as vc
from vactor_cloud import workflow

vc.init({url!r}, **{options!r})
counter = {counter!r}

@workflow.step
def first(x):
    with open(counter, "a") as f:
        f.write("first\\n")
    return x + 1

@workflow.step
def second(y):
    if os.environ.get("CRASH_IN_SECOND"):
        os._exit(3)          # the process dies mid-sub-workflow, after `first` was checkpointed
    return y * 2

@workflow.virtual_actor
class Pipeline:
    def __init__(self):
        self.out = None

    def go(self, x):
        return self.store.step(second.step(first.step(x)))

    def store(self, value):
        self.out = value
        return value

p = Pipeline.get_or_create("pipeline")
print(p.go.options(idempotency_key="go-1").run(20))
"""


def test_a_crashed_keyed_call_sent_again_from_a_new_process_skips_finished_steps(shared, tmp_path):
    counter = tmp_path / "runs"
    script = _CRASHING_CHILD.format(url=shared.url, options=shared.options, counter=str(counter))
    env = {**os.environ, **shared.env, "PYTHONPATH": os.pathsep.join(sys.path)}
    crashed = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "CRASH_IN_SECOND": "1"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == 3, crashed.stderr.decode()
    assert counter.read_text() == "first\n"
    again = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr.decode()
    assert again.stdout.decode().split() == ["42"]
    assert counter.read_text() == "first\n"  # not run again: its checkpoint was found
    assert vc.get_actor("pipeline").history(limit=1)[0].calls[0].result == "42"


def test_step_options_follow_ray(actor_store, tmp_path):
    attempts = tmp_path / "attempts"

    @workflow.step
    def flaky():
        _bump(attempts)
        if _count(attempts) < 3:
            raise OSError("not yet")
        return "ok"

    @workflow.step
    def broken():
        raise KeyError("x")

    @workflow.virtual_actor
    class A:
        def retried(self):
            return flaky.step()  # Ray's default max_retries=3

        def caught(self):
            return broken.options(catch_exceptions=True, max_retries=0).step()

        def node_options(self):
            return broken.step().options(catch_exceptions=True, max_retries=1)

    a = A.get_or_create("a")
    assert a.retried.run() == "ok"
    assert _count(attempts) == 3
    value, error = a.caught.run()
    assert value is None
    assert isinstance(error, KeyError)
    assert a.node_options.run()[0] is None


def _wait_for(path: Path, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_steps_whose_inputs_are_ready_run_in_parallel(actor_store, tmp_path):
    # Files, not threading primitives: the class body (and what it refers to) is pickled for storage.
    @workflow.step(max_retries=0)
    def meet(i):
        (tmp_path / str(i)).touch()
        if not all(_wait_for(tmp_path / str(j)) for j in range(3)):
            raise TimeoutError("the steps did not run at the same time")
        return i

    @workflow.step
    def join(*parts):
        return sum(parts)

    @workflow.virtual_actor
    class Fan:
        def go(self):
            return join.step(*[meet.step(i) for i in range(3)])

    assert Fan.get_or_create("fan").go.run() == 3


def test_list_all_reports_a_running_writer_of_this_process(actor_store, tmp_path):
    entered, leave = tmp_path / "entered", tmp_path / "leave"

    @workflow.virtual_actor
    class Slow:
        def __init__(self):
            self.n = 0

        def work(self):
            entered.touch()
            _wait_for(leave)
            self.n += 1
            return self.n

    slow = Slow.get_or_create("slow")
    Slow.get_or_create("idle")
    assert workflow.list_all() == [("idle", workflow.SUCCESSFUL), ("slow", workflow.SUCCESSFUL)]
    future = slow.work.run_async()
    assert _wait_for(entered)
    try:
        assert workflow.list_all() == [("idle", workflow.SUCCESSFUL), ("slow", workflow.RUNNING)]
        assert workflow.list_all("RUNNING") == [("slow", workflow.RUNNING)]
        assert workflow.list_all({workflow.FAILED}) == []
    finally:
        leave.touch()
    assert vc.get(future) == 1
    assert workflow.get_status("slow") == "SUCCESSFUL"


def test_get_actor_takes_rays_actor_id_or_its_documented_workflow_id(actor_store):
    @workflow.virtual_actor
    class Box:
        def __init__(self):
            self.v = 1

    Box.get_or_create("box")
    assert (
        workflow.get_actor(actor_id="box")
        == workflow.get_actor(workflow_id="box")
        == workflow.get_actor("box")
    )
    with pytest.raises(TypeError):
        workflow.get_actor()
    with pytest.raises(TypeError):
        workflow.get_actor("box", actor_id="box")
    with pytest.raises(vc.ActorNotFoundError):
        workflow.get_status("nobody")


def test_a_read_only_method_may_return_a_step_and_leaves_no_checkpoint(actor_store):
    @workflow.step
    def double(x):
        return 2 * x

    @workflow.virtual_actor
    class R:
        def __init__(self):
            self.v = 21

        @workflow.virtual_actor.readonly
        def doubled(self):
            return double.step(self.v)

    assert R.get_or_create("r").doubled.run() == 42
    store = vc.get_runtime().store
    assert vc._sync.sync(store.list("actors/r/tasks/")) == []


def test_one_sided_state_protocol_is_refused_with_a_value_error():
    with pytest.raises(ValueError, match="__getstate__ but not __setstate__") as caught:

        @workflow.virtual_actor
        class OnlyGet:
            def __getstate__(self):
                return 1

    assert isinstance(caught.value, StateProtocolError)
    assert isinstance(caught.value, ActorDefinitionError)
    assert isinstance(caught.value, TypeError)


def test_the_repr_of_a_half_built_actor_class_does_not_raise():
    half = vc.ActorClass.__new__(vc.ActorClass)
    assert "virtual actor class" in repr(half)


def test_a_step_is_not_called_directly_and_its_metadata_is_json():
    @workflow.step
    def f():
        return 1

    with pytest.raises(TypeError, match=r"f\.step\(\)"):
        f()
    with pytest.raises(ValueError):
        f.options(metadata={"when": object()})
    assert isinstance(f.step(), workflow.StepNode)
    assert f.options(name="named").step_options.name == "named"


def test_workflow_status_constants_are_rays_strings():
    assert [
        workflow.RUNNING,
        workflow.SUCCESSFUL,
        workflow.FAILED,
        workflow.CANCELED,
        workflow.RESUMABLE,
    ] == [
        "RUNNING",
        "SUCCESSFUL",
        "FAILED",
        "CANCELED",
        "RESUMABLE",
    ]
    assert workflow.WorkflowStatus("FAILED") is workflow.FAILED


def test_a_keyed_call_whose_sub_workflow_failed_is_not_resumed(actor_store):
    @workflow.step(max_retries=0)
    def boom():
        raise RuntimeError("boom")

    @workflow.virtual_actor
    class K:
        def go(self):
            return boom.step()

    k = K.get_or_create("k")
    with pytest.raises(RuntimeError):
        k.go.options(idempotency_key="once").run()
    # The key keeps the exception as the call's outcome; resume must not contradict it.
    assert workflow.get_status("k") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("k")) == []
    with pytest.raises(RuntimeError):
        k.go.options(idempotency_key="once").run()
