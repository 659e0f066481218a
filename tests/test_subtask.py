"""Issue 6: sub-workflows from actor methods — parallel, durable, memoized children."""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing.context
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter as Tally
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import subtask_workers as workers
from child_processes import run_to_end
from subtask_workers import Counter, Trainer, events, init_from_spec

import vactor_cloud as vc
from vactor_cloud import _sync, codec
from vactor_cloud.subtask import task_key, tasks_prefix
from vactor_cloud.testing.lanes import Lane, StoreSpec

JOIN_TIMEOUT = 180
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def actors(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    """This process's runtime on the lane's store (every lane)."""
    init_from_spec(store_spec)
    try:
        yield store_spec
    finally:
        vc.shutdown()


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    workers.send_by_value()
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=4,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
        silence_logs=40,
    )
    client = distributed.Client(cluster, timeout=60)
    try:
        yield client
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)


def task_keys(actor_id: str) -> list[str]:
    runtime = vc.get_runtime()
    return _sync.sync(runtime.store.list(f"actors/{actor_id}/tasks/"))


def assert_parallel_and_once(log: Path, n: int, tag: str = "") -> None:
    starts = [e for e in events(log, "start") if e["tag"] == tag]
    ends = [e for e in events(log, "end") if e["tag"] == tag]
    assert sorted(e["index"] for e in starts) == list(range(n)), "each child started exactly once"
    assert sorted(e["index"] for e in ends) == list(range(n)), "each side effect happened exactly once"
    # Every child was still running when the last one started: all n ran at the same time.
    assert max(e["time"] for e in starts) < min(e["time"] for e in ends)


# -- in one process, every lane ----------------------------------------------------------------
def test_children_run_in_parallel_and_each_side_effect_happens_once(
    actors: StoreSpec, tmp_path: Path
) -> None:
    log = tmp_path / "events"
    trainer = Trainer.get_or_create("t")
    assert trainer.fan_out.run(8, str(log), together=8) == [i * i for i in range(8)]
    assert_parallel_and_once(log, 8)
    assert len(events(log, "method")) == 1
    assert trainer.run_count.run() == 1
    # One checkpoint per child, under the call's prefix, before the commit.
    keys = task_keys("t")
    assert len(keys) == 8
    call_id = keys[0].split("/")[3]
    assert keys == [task_key("t", call_id, i) for i in range(8)]
    assert all(k.startswith(tasks_prefix("t", call_id)) for k in keys)


def test_a_failing_child_is_retried_up_to_max_retries(actors: StoreSpec, tmp_path: Path) -> None:
    log = tmp_path / "events"
    trainer = Trainer.get_or_create("t")
    assert trainer.retrying.run(str(log), failures=2, max_retries=2) == [0, 1, 2, 3]
    assert Tally(e["index"] for e in events(log, "attempt")) == {0: 1, 1: 3, 2: 1, 3: 1}


class _CheckpointWatch:
    """Children of ``Watcher.launch``: the newest (run by the waiting thread, which takes a
    child no pool thread started) waits for the others' checkpoints while it runs."""

    stolen = threading.Event()

    @staticmethod
    def child(index: int, *, actor_id: str, last: int) -> int:
        if index == 0:  # the pool's one thread: busy until the newest child is running elsewhere
            assert _CheckpointWatch.stolen.wait(30), "the waiting thread never took the newest child"
        if index != last:
            return index
        _CheckpointWatch.stolen.set()
        deadline = time.monotonic() + 10
        while len(task_keys(actor_id)) < last and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(task_keys(actor_id))


@vc.virtual_actor
class Watcher:
    def launch(self, actor_id: str, n: int) -> list[int]:
        with ThreadPoolExecutor(1) as pool:
            child = functools.partial(_CheckpointWatch.child, actor_id=actor_id, last=n - 1)
            return vc.subtask(child, executor=pool).map(range(n))


def test_children_finished_while_the_waiting_thread_runs_one_are_checkpointed_meanwhile(
    actors: StoreSpec,
) -> None:
    # The waiting thread runs a child no pool thread has started (so that a pool whose threads
    # all wait for children of their own cannot deadlock). Checkpoints were written only as the
    # waiting thread took each outcome, so the children that finished on the pool meanwhile were
    # not checkpointed while it ran: a process killed then lost them (the rerun test saw 8
    # checkpoints where it had killed the run at 5, under load, after its 120 s hold).
    _CheckpointWatch.stolen.clear()
    watcher = Watcher.get_or_create("w")
    seen_by_the_last_child = watcher.launch.run("w", 3)[2]
    assert seen_by_the_last_child == 2, "the pool's finished children were checkpointed while the last ran"
    assert len(task_keys("w")) == 3


def test_a_child_failing_past_its_retries_raises_in_the_method_and_nothing_commits(
    actors: StoreSpec, tmp_path: Path
) -> None:
    log = tmp_path / "events"
    trainer = Trainer.get_or_create("t")
    with pytest.raises(ValueError, match="child 1 failed on attempt 2"):
        trainer.retrying.run(str(log), failures=5, max_retries=1)
    assert trainer.run_count.run() == 0
    # The siblings finished and were checkpointed; the failure was not.
    keys = task_keys("t")
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["000000", "000002", "000003"]


def test_methods_and_their_children_call_other_actors(actors: StoreSpec) -> None:
    Counter.get_or_create("counter")
    trainer = Trainer.get_or_create("t")
    results = trainer.via_other_actor.run("counter")
    assert sorted(results) == [101, 102, 103, 104]
    assert vc.get_actor("counter").value.run() == 104


def test_a_writer_calling_its_own_actor_through_a_handle_is_refused(actors: StoreSpec) -> None:
    trainer = Trainer.get_or_create("t")
    with pytest.raises(vc.ReentrantCallError, match="same actor"):
        trainer.count_runs_of.run("t")
    assert Trainer.get_or_create("other").count_runs_of.run("t") == 0


def test_outside_writer_methods_children_run_without_checkpoints(actors: StoreSpec) -> None:
    Trainer.get_or_create("t")
    assert vc.subtask(lambda x: x + 1).map([1, 2, 3]) == [2, 3, 4]
    assert vc.subtask(pow).run(2, 10) == 1024
    assert task_keys("t") == []


def test_process_pool_runs_lambdas_and_returns_results_in_order(actors: StoreSpec) -> None:
    assert vc.subtask(lambda x: (x, os.getpid()), executor="process").map(range(6))[3][0] == 3
    pids = {pid for _, pid in vc.subtask(lambda x: (x, os.getpid()), executor="process").map(range(4))}
    assert os.getpid() not in pids


def test_unknown_executor_is_refused_with_the_choices(actors: StoreSpec) -> None:
    with pytest.raises(ValueError, match="'thread', 'process'"):
        vc.subtask(abs, executor="gpu").run(1)


def test_a_checkpoint_written_for_another_child_is_not_used(
    actors: StoreSpec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "events"
    trainer = Trainer.get_or_create("t")
    call_id = uuid.uuid5(uuid.NAMESPACE_URL, "t/k").hex  # what a call with key "k" gets
    key = task_key("t", call_id, 0)
    meta = {"kind": "task", "position": 0, "fingerprint": "somewhere.else:0", "time": time.time()}
    foreign = codec.encode(key, meta, {"result": cloudpickle.dumps(999)})
    _sync.sync(vc.get_runtime().store.put(key, foreign, mode="create"))
    with caplog.at_level(logging.WARNING, logger="vactor_cloud.subtask"):
        assert trainer.fan_out.options(idempotency_key="k").run(2, str(log)) == [0, 1]
    assert sorted(e["index"] for e in events(log, "start")) == [0, 1]
    assert "written for another child" in caplog.text
    assert sorted(task_keys("t")) == [key, task_key("t", call_id, 1)]


# -- Dask --------------------------------------------------------------------------------------------
def test_dask_cluster_runs_children_in_parallel_once_each(
    actors: StoreSpec, store_lane: Lane, dask_client: Any, tmp_path: Path
) -> None:
    init_from_spec(actors, subtask_executor=dask_client)
    log = tmp_path / "events"
    trainer = Trainer.get_or_create("t")
    assert trainer.fan_out.run(8, str(log), together=8) == [i * i for i in range(8)]
    assert_parallel_and_once(log, 8)
    assert {e["pid"] for e in events(log, "start")}.isdisjoint({os.getpid()}), "children ran on Dask workers"
    assert len(task_keys("t")) == 8
    if store_lane.multiprocess:
        # Children on Dask worker processes open the same storage and call another actor.
        Counter.get_or_create("counter")
        assert sorted(trainer.via_other_actor.run("counter")) == [101, 102, 103, 104]
        assert vc.get_actor("counter").value.run() == 104


# -- across processes ----------------------------------------------------------------------------------
def test_rerun_after_sigkill_runs_only_the_missing_children(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    log, hold = tmp_path / "events", tmp_path / "hold"
    Trainer.get_or_create("t")
    kwargs = {"n": 8, "log_path": str(log), "hold_path": str(hold)}
    first = process_context.Process(
        target=workers.call_fan_out, args=(shared, "t", "job-1", str(tmp_path / "out1"), kwargs)
    )
    first.start()
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while len(task_keys("t")) < 5:
            assert first.is_alive(), f"the first run died on its own (exit code {first.exitcode})"
            assert time.monotonic() < deadline, "5 children never finished"
            time.sleep(0.02)
    finally:
        first.kill()
        first.join(JOIN_TIMEOUT)
    assert first.exitcode == -9
    assert len(task_keys("t")) == 5
    assert sorted(e["index"] for e in events(log, "end")) == [0, 1, 2, 3, 4]
    killed_pid = events(log, "method")[0]["pid"]

    hold.write_text("")
    second = process_context.Process(
        target=workers.call_fan_out, args=(shared, "t", "job-1", str(tmp_path / "out2"), kwargs)
    )
    second.start()
    second.join(JOIN_TIMEOUT)
    if second.is_alive():
        second.kill()
    assert second.exitcode == 0
    assert json.loads((tmp_path / "out2").read_text()) == [i * i for i in range(8)]
    rerun = [e for e in events(log, "start") if e["pid"] != killed_pid]
    assert sorted(e["index"] for e in rerun) == [5, 6, 7], "the re-run ran only the missing children"
    assert sorted(e["index"] for e in events(log, "end")) == list(range(8)), "each child finished once"
    assert vc.get_actor("t").run_count.run() == 1
    assert len(task_keys("t")) == 8


def test_the_losing_attempt_of_a_race_reuses_its_children(
    shared: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    log = tmp_path / "events"
    Trainer.get_or_create("t")
    procs = [
        process_context.Process(
            target=workers.call_fan_out,
            # Each child waits until all 16 children of both processes started: both
            # methods run on the same base step, so one commit must lose and re-run.
            args=(
                shared,
                "t",
                None,
                str(tmp_path / f"out-{tag}"),
                {"n": 8, "log_path": str(log), "tag": tag, "together": 16},
            ),
        )
        for tag in ("a", "b")
    ]
    assert run_to_end(procs) == [0, 0]
    methods = Tally(e["tag"] for e in events(log, "method"))
    assert sorted(methods.values()) == [1, 2], f"one attempt lost the race and ran again: {methods}"
    for tag in ("a", "b"):
        assert_parallel_and_once(log, 8, tag)
        assert json.loads((tmp_path / f"out-{tag}").read_text()) == [i * i for i in range(8)]
    assert vc.get_actor("t").run_count.run() == 2


def test_process_pool_children_call_other_actors(shared: StoreSpec) -> None:
    Counter.get_or_create("counter")
    trainer = Trainer.get_or_create("t")
    assert sorted(trainer.via_other_actor.run("counter", executor="process")) == [101, 102, 103, 104]
    assert vc.get_actor("counter").value.run() == 104


# -- the example -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--dask"]], ids=["threads", "dask"])
def test_train_in_parallel_example_runs(tmp_path: Path, extra: list[str]) -> None:
    storage = tmp_path / f"store-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VACTOR_")}
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_in_parallel.py"), str(storage), *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=JOIN_TIMEOUT,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "trained 8 models" in done.stdout
    assert "best model: model-" in done.stdout
