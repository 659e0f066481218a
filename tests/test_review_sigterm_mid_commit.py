"""SIGTERM to a process in the middle of a commit, on the local store (review h111).

Python's default SIGTERM handler ends the process where it stands: nothing of vactor_cloud
runs. What holds is the local store's write path: a step's bytes go to a temp file (fsynced),
which is linked into place only once whole. A process killed half way through writing them
leaves that temp file behind (never listed, never read, swept by compaction), and the actor
reads as it was before the call: no partial step is ever read, and the next call commits.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

import vactor_cloud as vc
from vactor_cloud.storage import open_store
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [
    pytest.mark.vactor_lanes("local"),
    pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals"),
]

#: a bound on any wait here (a hang fails the test instead of the run)
HANG = 60.0

SCRIPT = """
import os, sys, time

import vactor_cloud as vc
from vactor_cloud.storage import _local


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.entries = []

    def add(self, entry: str) -> int:
        self.entries.append(entry + os.urandom(200_000).hex())  # a step of a few hundred KB
        return len(self.entries)

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return len(self.entries)


class TearingWrites:
    '''The local store's ``os``, whose write of a large buffer (a step's bytes) writes half of
    it, says so on stdout, and waits for the signal that ends the process.'''

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        if len(data) > 100_000:
            os.write(fd, bytes(data[: len(data) // 2]))
            print("torn", flush=True)
            time.sleep(600)
        return os.write(fd, data)


vc.init(sys.argv[1])
ledger = Ledger.get_or_create("ledger")
print(ledger.add.run("a"), flush=True)
_local.os = TearingWrites()
ledger.add.run("b")
print("the second add returned", flush=True)
"""


def _lines_of(stream: IO[str]) -> queue.SimpleQueue[str]:
    """The lines ``stream`` gives, as they come (a thread of its own reads them), then ``"<end>"``."""
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read() -> None:
        for line in stream:
            lines.put(line.strip())
        lines.put("<end>")

    threading.Thread(target=read, daemon=True).start()
    return lines


def _next(lines: queue.SimpleQueue[str]) -> str:
    try:
        return lines.get(timeout=HANG)
    except queue.Empty:
        return "<nothing within the bound>"


def test_a_process_killed_by_sigterm_half_way_through_writing_a_step_leaves_no_partial_step(
    tmp_path: Path, store_spec: StoreSpec
) -> None:
    script = tmp_path / "torn.py"
    script.write_text(SCRIPT)
    repo = str(Path(__file__).resolve().parent.parent)
    child = subprocess.Popen(
        [sys.executable, str(script), store_spec.url],
        env=dict(os.environ, PYTHONPATH=repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines = _lines_of(child.stdout)
    try:
        assert _next(lines) == "1"
        assert _next(lines) == "torn"
        child.send_signal(signal.SIGTERM)
        assert child.wait(HANG) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(HANG)
    assert child.stderr is not None
    err = child.stderr.read()
    assert _next(lines) == "<end>", err  # (not "the second add returned")
    root = Path(store_spec.url.removeprefix("file://"))
    leftovers = [p for p in root.rglob(".tmp-*") if p.stat().st_size > 100_000]
    assert leftovers, "the child was not killed while writing the step's bytes"
    store = open_store(store_spec.url)
    assert not [key for key in store.list_now("actors/ledger/") if ".tmp-" in key]
    vc.shutdown()
    store_spec.init()
    try:
        ledger = vc.get_actor("ledger")
        assert ledger.count.run() == 1  # the step being written when the process died is not there
        assert ledger.add.run("c") == 2  # and its number is free
        assert [entry.step for entry in ledger.history()] == [2, 1, 0]
    finally:
        vc.shutdown()
