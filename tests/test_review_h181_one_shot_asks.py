"""``call_outcome`` asked once by processes that then exit (review h181).

A script, or a function's invocation, asks once and ends: pending, and its ask queued the
background fold (``ActorCore._fold_given_up_posts_soon``). The exit's shutdown cancelled that
fold before it ran, so no asker of that kind ever folded the post: asked by one such process
after another, the call stayed pending for good (an uncontended call to the actor does not
fold posts either; nor does expiry delete a post nobody folds). The exit hook now lets a
queued fold run first, as it lets the calls queued with ``run_async`` run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from actors import OrderLog
from test_combining import foreign_box, post_adds

import vactor_cloud as vc
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("local", "moto")

#: a process that asks once and exits (argv[4] "exit": no shutdown of its own, the exit hook's;
#: "shutdown": ``vc.shutdown()``, then ended with no exit hook run, as a function's sandbox is
#: frozen or killed once its handler returned)
_ASK_ONCE = """
import json, os, sys
import vactor_cloud as vc
from vactor_cloud.errors import CallPendingError
url, options, call_id, end = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
vc.init(url, **options)
try:
    print(repr(vc.get_actor("a").call_outcome(call_id)))
except CallPendingError:
    print("pending")
if end == "shutdown":
    vc.shutdown()
    sys.stdout.flush()
    os._exit(0)
"""


def run_in_a_process(spec: StoreSpec, script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``script`` run in a new process (``python -c``; its argv: ``spec``'s url and options as
    JSON, then ``argv``), to its end (120 s at most); its output as text."""
    return subprocess.run(
        [sys.executable, "-c", script, spec.url, json.dumps(spec.options), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **spec.env, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )


def ask_once_in_a_process(spec: StoreSpec, call_id: str, end: str = "exit") -> str:
    """What ``call_outcome(call_id)`` answers in a new process that then ends as ``end`` says
    (see ``_ASK_ONCE``)."""
    out = run_in_a_process(spec, _ASK_ONCE, call_id, end)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_processes_that_ask_once_and_exit_get_the_outcome(shared: StoreSpec) -> None:
    """Another sender's post waits, nobody folds it. A process asks once and exits: pending
    (its fold ran at its exit). The next such process: the outcome. Applied once."""
    vc.shutdown()
    shared.init(settings=Settings(storage=shared.url, fresh_window=300.0, combine_after=1))
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    (call_id,) = post_adds(foreign_box("a"), ["other/1"])
    vc.shutdown()
    assert ask_once_in_a_process(shared, call_id) == "pending"
    assert ask_once_in_a_process(shared, call_id) == "2"
    shared.init()
    assert vc.get_actor("a").applied.run() == ["me/0", "other/1"]
