"""A script that ends with calls made by ``run_async`` it never waited for (the seed's
"non-blocking execution": ``counter.incr.run_async(10)``), without ``vc.shutdown()``.

The exit hook shut the runtime down at once, and a shutdown fails every call not yet started
(``RuntimeShutdownError``, not applied): with nobody left to hear it, the calls queued behind
the batch running at exit were dropped without a word (a script making 30 applied 1 or 2).
The exit hook now lets the calls the program made finish first, within the bound it waits for
the program's threads. Run for real: a child process of the test, on the local store and on
an S3 emulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vactor_cloud.testing.lanes import Lane, StoreSpec

SCRIPT = """
import sys, time
import vactor_cloud as vc


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.seen = []

    def add(self, tag: str) -> int:
        time.sleep(0.02)  # a batch still runs while the script makes its other calls
        self.seen.append(tag)
        return len(self.seen)

    @vc.virtual_actor.readonly
    def tags(self) -> list:
        return self.seen


vc.init(sys.argv[1])
tally = Tally.get_or_create("t")
if sys.argv[2] == "read":
    print(",".join(tally.tags.run()))
else:
    tally.add.run("first")
    for n in range(30):
        tally.add.run_async(f"a{n}")  # never waited for
"""


def _run(script: Path, spec: StoreSpec, what: str) -> subprocess.CompletedProcess[str]:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, str(script), spec.url, what],
        cwd=script.parent,
        env=dict(os.environ, PYTHONPATH=here, **spec.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_calls_a_script_made_and_never_waited_for_are_applied_at_its_exit(
    tmp_path: Path, store_spec: StoreSpec, store_lane: Lane
) -> None:
    if not store_lane.multiprocess:
        pytest.skip(f"{store_lane.name} stores live in one process")
    script = tmp_path / "fire_and_forget.py"
    script.write_text(SCRIPT)
    made = _run(script, store_spec, "call")
    assert made.returncode == 0, made.stderr[-2000:]
    assert made.stderr == ""
    read = _run(script, store_spec, "read")
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.split()[-1].split(",") == ["first"] + [f"a{n}" for n in range(30)]
