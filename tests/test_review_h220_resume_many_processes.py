"""Hostile review h220: ``workflow.resume`` of one actor from four processes at once.

Every process lists the failed call before any re-run deletes its record. One re-run's commit
lands but its response is lost (or never lands, its outcome in doubt); two more re-run the
call after it; one more ran its method
before that commit and fails again once the others ended (its record written anew, after they
deleted it). The call applies once, every resume returns the call's result, and no record is
left.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from forking import read_until_closed, reaped
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.errors import StorageError
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec

HANG = 60.0
NEEDS_FORK = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

#: what ``record`` does first (each process sets its own after the fork)
BEFORE_RECORD: list[Callable[[], None]] = []


@workflow.step(max_retries=0)
def publish(y: int) -> int:
    return y + 1


@workflow.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.done: list[int] = []

    def run(self, x: int) -> object:
        return self.record.step(publish.step(x))

    def record(self, value: int) -> int:
        for hook in BEFORE_RECORD:
            hook()
        self.done.append(value)
        return value

    @workflow.virtual_actor.readonly
    def recorded(self) -> list[int]:
        return list(self.done)


def _down() -> None:
    raise RuntimeError("record is down")


def _store_fault() -> None:
    raise StorageError("the store is down (a fault, not the call's answer)")


def _said(resume: Callable[[], Any]) -> bytes:
    try:
        return f"ok {resume()!r}".encode()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".encode()


def _fork(use: Callable[[], bytes]) -> tuple[int, int]:
    """A child running ``use``; its pid, and the pipe it writes its answer to. Every path of
    the child ends in ``os._exit``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read)
            os.write(write, use()[:2000])
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


#: the fault on ``lost``'s step puts, and what its resume says
LOST_RESPONSE = (
    FaultRule("lost_response", key_contains="/steps/", at=(1,), retryable=False),
    re.escape("ok [2]"),
)
#: every step put times out unsent: its commit ends in doubt, and another process applies the call
IN_DOUBT = (
    FaultRule("timeout_before", key_contains="/steps/", probability=1.0),
    "StorageTimeoutError: .*/steps/0+1: put got no answer within its timeout .*"
    r"\(the write may or may not have been applied\)",
)


@pytest.mark.vactor_lanes("local", "moto")
@NEEDS_FORK
@pytest.mark.parametrize(
    ("again_raises", "lost"),
    [(_down, LOST_RESPONSE), (_store_fault, LOST_RESPONSE), (_down, IN_DOUBT)],
    ids=["outcome", "fault", "in-doubt"],
)
def test_four_processes_resuming_at_once_apply_the_call_once_and_each_says_what_happened(
    actor_store: StoreSpec,
    monkeypatch: pytest.MonkeyPatch,
    again_raises: Callable[[], None],
    lost: tuple[FaultRule, str],
) -> None:
    """``again`` runs its method first and waits in it; ``lost`` re-runs next (its step lands,
    its response is lost: its commit finds its own step; or in doubt: it never lands, and
    the resume raises the put's error, which says so); then ``plain`` and this process re-run
    (their commit finds the key, or one applies the call). Then ``again``'s method raises, its
    record written anew after every other re-run deleted it. Its method ran on the step before
    the call's: whether it raised an exception of its own (an outcome) or a fault of the store
    (none), its batch is applied again on that step, where the key answers it, and its resume
    deletes the record again."""
    BEFORE_RECORD[:] = [_down]
    try:
        with pytest.raises(RuntimeError, match="record is down"):
            Ledger.get_or_create("four").run.run(1)
    finally:
        BEFORE_RECORD.clear()
    vc.shutdown()  # each process starts its own runtime after the fork

    fork = multiprocessing.get_context("fork")
    listed = fork.Barrier(4, timeout=HANG)
    again_running, lost_done, others_done = fork.Event(), fork.Event(), fork.Event()
    # (the order: "again" runs its method first, and waits; "lost" commits; "plain" and this
    # process re-run after it; then "again" fails)
    wait_for: dict[str, Any] = {"again": None, "lost": again_running, "plain": lost_done, "parent": lost_done}
    rerun_once = workflow._rerun_once
    role = ["parent"]

    def held(runtime: Any, failed: Any, listing: int) -> Any:
        listed.wait()  # every process has listed the record: none deleted it yet
        before = wait_for[role[0]]
        if before is not None:
            assert before.wait(HANG), f"{role[0]}: the re-run before it never ended"
        return rerun_once(runtime, failed, listing)

    monkeypatch.setattr(workflow, "_rerun_once", held)

    def child(name: str, setup: Callable[[], str] = str, then: Any = None) -> Callable[[], bytes]:
        def use() -> bytes:
            role[0] = name
            init(actor_store)
            noted = setup()
            said = _said(lambda: vc.get(workflow.resume("four"), timeout=HANG))
            if then is not None:
                then.set()
            vc.shutdown()
            return said + noted().encode() if callable(noted) else said

        return use

    def fault_the_step_puts() -> Callable[[], str]:
        store = install(FaultConfig(seed=1, rules=(lost[0],), name="lost"))
        return lambda: f" (injected {dict(store.injected)})"

    def fail_once_the_others_ended() -> str:
        def hook() -> None:
            again_running.set()
            assert others_done.wait(HANG), "the other re-runs never ended"
            again_raises()

        BEFORE_RECORD.append(hook)
        return ""

    plain_done = fork.Event()
    children = [
        _fork(child("lost", fault_the_step_puts, lost_done)),
        _fork(child("plain", then=plain_done)),
        _fork(child("again", fail_once_the_others_ended)),
    ]
    init(actor_store)
    answers: list[bytes] = []

    def parent() -> None:
        answers.append(_said(lambda: vc.get(workflow.resume("four"), timeout=HANG)))
        if plain_done.wait(HANG):
            others_done.set()

    here = threading.Thread(target=parent)
    here.start()
    said: dict[str, bytes] = {}
    try:
        for name, (_, read) in zip(("lost", "plain", "again"), children, strict=True):
            said[name] = read_until_closed(read)
    finally:
        for pid, read in children:
            os.close(read)
            reaped(pid)
        here.join(HANG)
    said["parent"] = answers[0] if answers else b"<no answer>"
    assert said["plain"] == said["parent"] == b"ok [2]", said
    assert re.fullmatch(lost[1] + r" \(injected \{'[a-z_]+': [0-9]+\}\)", said["lost"].decode()), said
    history = vc.get_actor("four").history()
    assert [c.method for entry in history for c in entry.calls].count("run") == 1, history
    # ("again" ran its method on the step before "lost"'s: its commit, or, excluded by the
    # fault, its batch, is applied again on "lost"'s step, where the key answers it)
    assert said["again"] == b"ok [2]", said
    assert workflow.get_status("four") == workflow.SUCCESSFUL
    assert vc.get(workflow.resume("four"), timeout=HANG) == []
    history = vc.get_actor("four").history()
    assert [c.method for entry in history for c in entry.calls].count("run") == 1, history
    assert Ledger.get_or_create("four").recorded.run() == [2]
