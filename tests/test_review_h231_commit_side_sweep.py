"""Review h231: a mutation sweep of the commit-side modules (``holding.py``, ``head_flusher.py``,
``reentrancy.py``, ``step_outcomes.py``, ``post_cursor.py``, ``core.py``).

TABLE
"""

from __future__ import annotations

import pytest
from interrupts import Interrupted, InterruptOnce
from test_review_cancellation import HANG, Gate

import vactor_cloud as vc
from vactor_cloud import holding
from vactor_cloud.call_queue import CallQueue
from vactor_cloud.commit_notes import started_elsewhere_note
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")


# -- holding: a run() interrupted (Ctrl-C) around its wait -------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_just_after_a_run_settled_adds_no_note_that_another_thread_has_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in ``run()`` once its call has its outcome (applied on this thread), before
    ``run()`` returns: the interrupt reaches the caller as it is, with no note that another
    thread took the call (none did: its outcome is known)."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    settled_then_interrupted = InterruptOnce(holding.Holder.help, after=True)
    monkeypatch.setattr(holding.Holder, "help", settled_then_interrupted)
    with pytest.raises(Interrupted) as info:
        gate.add.run("applied")
    assert settled_then_interrupted.fired
    assert started_elsewhere_note("g") not in getattr(info.value, "__notes__", []), info.value.__notes__
    assert gate.applied.run() == ["applied"]


@pytest.mark.usefixtures("runtime_off")
def test_ctrl_c_before_a_run_was_queued_fails_it_with_no_note_that_another_thread_has_it(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in ``run()`` as its call is being queued, before it is in the queue: the call
    is failed with the interrupt (nobody will run it) and the interrupt says nothing of another
    thread; the actor's next call is applied, the interrupted one never."""
    store_spec.init()
    gate = Gate.get_or_create("g")
    not_queued = InterruptOnce(CallQueue.append)
    monkeypatch.setattr(CallQueue, "append", not_queued)
    with pytest.raises(Interrupted) as info:
        gate.add.run("lost")
    assert not_queued.fired
    assert started_elsewhere_note("g") not in getattr(info.value, "__notes__", []), info.value.__notes__
    assert gate.add.run_async("after").result(HANG) == 1
    assert gate.applied.run() == ["after"]
