"""A timer scheduled by one version of a class and due under the next (a deploy renamed or removed
the method it calls): kept, with an error saying what to do, as an event without a handler is."""

from __future__ import annotations

import time

import pytest

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import list_index

#: the version of the class that schedules the timer (defined again by each run of the test:
#: a run on one lane deploys the next version, and pytest runs the other lanes in this process)
FIRST_VERSION = """
@vc.virtual_actor
class Shifting:
    def __init__(self) -> None:
        self.n = 0

    def arm(self) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("remind", after=0, key="k")

    def remind(self) -> None:
        self.n += 1
"""


#: the next version of the class (as a deploy's module defines it): ``remind`` is ``nudge`` now
NEXT_VERSION = """
@vc.virtual_actor
class Shifting:
    def __init__(self) -> None:
        self.n = 0

    def arm(self) -> None:
        pass

    def nudge(self) -> None:
        self.n += 1

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return self.n
"""


def test_a_timer_whose_method_the_next_class_version_lacks_stays_pending_with_an_error_saying_what_to_do(
    actor_store: StoreSpec,
) -> None:
    """Before, the fire ran as raising AttributeError ("'Shifting' object has no attribute
    'remind'"), which consumed the timer: after a deploy that renamed a method, every pending
    timer calling it was gone, with a log line only. Now it stays pending with its index entry
    (as an event without a handler stays), and the runner's error names the method, the key and
    what to do."""
    if actor_store.url.startswith("memory:"):
        pytest.skip("a memory store does not outlive its runtime (the deploy restarts it)")
    exec(FIRST_VERSION, globals())
    Shifting.get_or_create("s1").arm.run()  # noqa: F821 (defined by the exec above)
    vc.shutdown()
    exec(NEXT_VERSION, globals())  # the deploy
    actor_store.init()
    time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass
    report = vc.fire_due_timers(split="none")
    assert report.fired == 0 and len(report.errors) == 1, report
    error = report.errors[0]
    assert "'remind'" in error and "Shifting" in error, error
    assert "cancel_timer('k')" in error, error
    assert [t["key"] for t in vc.get_actor("s1").timers()] == ["k"]
    assert [e.key for e in _sync.sync(list_index(vc.get_runtime().store))] == ["k"]


@vc.virtual_actor
class Bailing:
    def __init__(self) -> None:
        self.n = 0

    def arm(self) -> None:
        call = vc.current_call()
        assert call is not None
        call.schedule("bail", after=0, key="b")

    def bail(self) -> None:
        raise SystemExit(3)


def test_a_long_running_runner_says_at_once_that_a_timer_cannot_be_fired(
    actor_store: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, ``run_timers`` (``vactor timers run``, whose log is its output) kept a timer it
    could not fire among the errors of its totals only: tried at every poll for days, unsaid
    until the runner stopped. Now the first failure of each timer is logged as a warning, with
    what to do; the next ones of the same timer are not (one line, not one a poll)."""
    import logging
    import threading

    Bailing.get_or_create("q1").arm.run()
    time.sleep(0.01)  # due now, in ms rounded up: let that millisecond pass
    stop = threading.Event()
    ticks = 0

    def on_tick(report: object) -> None:
        nonlocal ticks
        ticks += 1
        if ticks >= 6:  # several polls: the timer was tried more than once
            stop.set()

    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        total = vc.run_timers(poll=0.05, split="none", stop=stop, on_tick=on_tick)
    assert total.error_count >= 1, total
    said = [r.getMessage() for r in caplog.records if "q1/b" in r.getMessage()]
    assert len(said) == 1, said
    assert "SystemExit(3)" in said[0] and "cancel_timer('b')" in said[0], said
