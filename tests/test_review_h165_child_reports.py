"""Review h165: ``child_reports.take_report``, which no test ran (the benches use it).

A bench waits for each worker process's report; a worker that died without one must be said
at once (with its exit code), never waited out to the end of the timeout, and a report that
is already on its way must still be taken. The queue and processes here are stand-ins that
say what each ``get`` asked for: no real process, no sleeping past a few slices.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from vactor_cloud import child_reports
from vactor_cloud.child_reports import take_report

#: more ``get`` calls than any of these waits makes: past it, the wait went on after it should
#: have ended (the stand-in queue fails the wait instead of letting it spin to its timeout)
_TOO_MANY_GETS = 200


class _Child:
    """A stand-in ``multiprocessing.Process``: ``exitcode`` None while it runs."""

    def __init__(self, exitcode: int | None = None) -> None:
        self.exitcode = exitcode


class _Reports:
    """A stand-in ``multiprocessing.Queue``: each ``get`` is recorded, and answered with the
    report once ``ready`` says so (``ready(call_number, timeout)``), else ``queue.Empty`` at once
    (nothing sleeps, unless ``pace``: then a ``get`` waits up to that long before its Empty)."""

    def __init__(self, ready: Any = None, report: Any = "report", pace: float = 0.0) -> None:
        self.timeouts: list[float] = []
        self._ready = ready or (lambda number, timeout: False)
        self._report = report
        self._pace = pace

    def get(self, timeout: float) -> Any:
        self.timeouts.append(timeout)
        number = len(self.timeouts)
        assert number < _TOO_MANY_GETS, "the wait went on past the point where it should have ended"
        if self._ready(number, timeout):
            return self._report
        if self._pace:
            threading.Event().wait(min(timeout, self._pace))
        raise queue.Empty


def _in_a_thread(call: Any) -> Any:
    """``call()`` on a thread of its own (not the main thread, which waits in slices anyway):
    what it returned, or raised."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("returned", call()))
        except BaseException as exc:
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "take_report did not return"
    kind, value = outcome[0]
    if kind == "raised":
        raise value
    return value


def test_a_report_on_the_queue_is_returned() -> None:
    reports = _Reports(ready=lambda number, timeout: True, report={"ops": 3})
    assert take_report(reports, 30, [_Child()]) == {"ops": 3}


def test_a_child_that_exited_with_code_0_without_reporting_is_said_at_once() -> None:
    """(Mutation: a child counted gone only with a nonzero exit code: one that returned
    without reporting was waited for until the whole timeout ran out.)"""
    reports = _Reports()
    with pytest.raises(ChildProcessError, match="exited with code 0 before it reported"):
        take_report(reports, 3600, [_Child(exitcode=0)])
    assert len(reports.timeouts) == 2  # the wait, then the grace for a report in the pipe


def test_a_child_that_crashed_is_said_with_its_exit_code() -> None:
    with pytest.raises(ChildProcessError, match="exited with code -9 before it reported"):
        take_report(_Reports(), 3600, [_Child(), _Child(exitcode=-9)])


def test_a_report_still_in_the_pipe_when_its_child_is_seen_gone_is_taken() -> None:
    """The child put its report and exited; the parent sees the exit before the report is
    readable. (Mutation: the grace read of the pipe made with no timeout: the report was lost
    and the bench stopped on a child that had reported.)"""
    child = _Child()

    def ready(number: int, timeout: float) -> bool:
        if number == 1:
            child.exitcode = 0  # gone while its report is still on its way
            return False
        return timeout >= child_reports.GRACE  # readable to a read that waits for it

    reports = _Reports(ready=ready)
    assert take_report(reports, 3600, [child]) == "report"
    assert reports.timeouts[1] == child_reports.GRACE


def test_no_report_and_no_child_gone_is_queue_empty_at_the_timeout() -> None:
    """(Mutations: the end of the timeout not checked, a wait that never ended; the wait's
    False ignored, an ``IndexError`` instead of ``queue.Empty``.)"""
    reports = _Reports(pace=0.05)
    with pytest.raises(queue.Empty):
        _in_a_thread(lambda: take_report(reports, 0.3, [_Child()]))
    with pytest.raises(queue.Empty):  # on the main thread too (waited in slices there)
        take_report(_Reports(pace=0.05), 0.3, [_Child()])


def test_a_long_wait_asks_the_queue_a_second_at_a_time_to_see_a_child_exit() -> None:
    """A child's exit is seen within a second, however long the timeout, off the main thread
    too (where the wait is not sliced for signals). (Mutation: one ``get`` for the whole
    timeout: a child that died was seen only when the timeout ran out.)"""
    child = _Child()

    def ready(number: int, timeout: float) -> bool:
        child.exitcode = 1
        return False

    reports = _Reports(ready=ready)
    with pytest.raises(ChildProcessError, match="code 1"):
        _in_a_thread(lambda: take_report(reports, 3600, [child]))
    assert reports.timeouts[0] <= 1.0
