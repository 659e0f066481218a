"""Class bodies in storage: processes without the class, upgraded classes, concurrent creation."""

from __future__ import annotations

import json
import multiprocessing.context
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import runtime_workers as workers
from child_processes import run_python

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.lanes import Lane, StoreSpec

V1 = """
import vactor_cloud as vc

@vc.virtual_actor
class Tally:
    def __init__(self, start):
        self.total = start

    def add(self, n):
        self.total += n
        return self.total

    @vc.virtual_actor.readonly
    def read(self):
        return {"total": self.total, "version": 1}
"""

# v2 stores a dict state and still reads the states v1 wrote (an int under "total").
V2 = """
import vactor_cloud as vc

@vc.virtual_actor
class Tally:
    def __init__(self, start):
        self.total = start
        self.adds = 0

    def add(self, n):
        self.total += n
        self.adds += 1
        return self.total

    @vc.virtual_actor.readonly
    def read(self):
        return {"total": self.total, "version": 2, "adds": self.adds}

    def __getstate__(self):
        return {"v": 2, "total": self.total, "adds": self.adds}

    def __setstate__(self, state):
        if state.get("v") == 2:
            self.total, self.adds = state["total"], state["adds"]
        else:  # a v1 step: the instance __dict__
            self.total, self.adds = state["total"], 0
"""

SCRIPT = """
import json, os, sys
sys.path[:0] = [p for p in os.environ.get("EXTRA_PATH", "").split(os.pathsep) if p]
import vactor_cloud as vc
spec = json.loads(os.environ["SPEC"])
os.environ.update(spec["env"])
vc.init(spec["url"], **spec["options"])
action = sys.argv[1]
if action == "create":
    from tally_mod import Tally
    Tally.get_or_create("t", 10).add.run(1)
    print(json.dumps(vc.get_actor("t").read.run()))
elif action == "add":
    if os.environ["EXTRA_PATH"]:
        import tally_mod
    h = vc.get_actor("t")
    h.add.run(5)
    print(json.dumps(h.read.run()))
elif action == "read":
    if os.environ["EXTRA_PATH"]:
        import tally_mod  # classes are only taken from modules this process imported (never by name)
    print(json.dumps(vc.get_actor("t").read.run()))
vc.shutdown()
"""


@pytest.fixture
def spec(store_spec: StoreSpec, store_lane: Lane) -> Iterator[StoreSpec]:
    if not store_lane.multiprocess:
        pytest.skip(f"{store_lane.name} stores live in one process")
    yield store_spec


def run_script(spec: StoreSpec, action: str, module_dir: Path | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["SPEC"] = json.dumps({"url": spec.url, "options": spec.options, "env": spec.env})
    env["EXTRA_PATH"] = str(module_dir) if module_dir else ""
    out = run_python(["-c", SCRIPT, action], env=env, cwd="/")
    return dict(json.loads(out.strip().splitlines()[-1]))


def write_module(directory: Path, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tally_mod.py").write_text(textwrap.dedent(source))
    return directory


def test_a_process_that_cannot_import_the_class_loads_it_from_storage(
    spec: StoreSpec, tmp_path: Path
) -> None:
    v1 = write_module(tmp_path / "v1", V1)
    assert run_script(spec, "create", v1) == {"total": 11, "version": 1}
    # No tally_mod on this process's path: the class body comes from storage.
    assert run_script(spec, "add", None) == {"total": 16, "version": 1}
    assert run_script(spec, "read", None) == {"total": 16, "version": 1}


def test_an_upgraded_class_takes_over_from_the_next_commit(spec: StoreSpec, tmp_path: Path) -> None:
    v1 = write_module(tmp_path / "v1", V1)
    v2 = write_module(tmp_path / "v2", V2)
    run_script(spec, "create", v1)
    # A process with v2 reads v1's state with v2's code, and commits v2 state.
    assert run_script(spec, "read", v2) == {"total": 11, "version": 2, "adds": 0}
    assert run_script(spec, "add", v2) == {"total": 16, "version": 2, "adds": 1}
    # From then on, a process without the module runs v2, loaded from storage.
    assert run_script(spec, "read", None) == {"total": 16, "version": 2, "adds": 1}


def create_and_report(spec: StoreSpec, out_file: str) -> None:
    workers.init_from_spec(spec)
    handle = workers.Counter.get_or_create("once", 0)
    total = handle.incr.run(1)
    with open(out_file, "w") as f:
        f.write(str(total))
    vc.shutdown()


def test_concurrent_get_or_create_from_many_processes_creates_once(
    spec: StoreSpec, process_context: multiprocessing.context.ForkServerContext, tmp_path: Path
) -> None:
    outs = [tmp_path / f"out{i}" for i in range(6)]
    procs = [process_context.Process(target=create_and_report, args=(spec, str(o))) for o in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    # Every caller incremented the same actor: results are 1..6 in some order.
    assert sorted(int(o.read_text()) for o in outs) == list(range(1, 7))
    workers.init_from_spec(spec)
    try:
        log = vc.get_runtime().core("once").log
        step0 = _sync.sync(log.read_step(0))
        assert step0 is not None and step0.calls[0].method == "__init__"
        steps = _sync.sync(log.list_steps())
        assert steps == list(range(len(steps)))  # no gap
        # Six increments, each applied once; under contention several may share a step (posting).
        records = [_sync.sync(log.read_step(s)) for s in steps[1:]]
        assert sum(1 for r in records if r is not None for c in r.calls if c.method == "incr") == 6
    finally:
        vc.shutdown()
