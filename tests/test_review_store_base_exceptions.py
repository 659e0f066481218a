"""Exceptions other than storage errors raised by the store layer mid-commit (review h102).

Every one reaches the caller, and says truthfully what became of the call:

* an ``Exception`` that is no storage error (a ``MemoryError`` while the client buffers a
  large body, a backend defect), raised by the step put: the put was sent and may have
  landed. Before, the caller heard the bare error, as for a call that changed nothing,
  though the step had landed (a retry applied it twice); now ``CommitOutcomeUnknownError``,
  the error its cause.
* ``asyncio.CancelledError`` raised by a store request that nobody cancelled (a client
  library letting an inner cancellation out): before, on a store whose requests suspend
  (local, S3, GCS), the caller heard that the runtime had shut down (``RuntimeShutdownError``,
  "retry it (the next call starts a new runtime)") while it ran on; now the error itself,
  as an interrupt is (the commit's note says the calls may have been applied).
* ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``: reach the caller with the
  commit's note (held here).

A store wrapper raises the exception once, before or after the request was applied.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from combining_workers import commit_behind_its_back

import vactor_cloud as vc
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Box:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.n


class RaisesOnce(FaultyStore):
    """Once armed, the next ``operation`` on a key containing ``fragment`` raises ``exc``
    (``after``: once the wrapped store applied it)."""

    def __init__(
        self, inner: Any, exc: BaseException, operation: str, after: bool, fragment: str = "/steps/"
    ) -> None:
        super().__init__(inner, FaultConfig())
        self.armed: BaseException | None = None
        self.exc = exc
        self.operation = operation
        self.after = after
        self.fragment = fragment

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        exc = self.armed
        if exc is not None and operation == self.operation and self.fragment in key:
            self.armed = None
            if self.after:
                await run()
            raise exc
        return await run()


def _outcome(spec: StoreSpec, exc: BaseException, operation: str, after: bool) -> tuple[Any, Box]:
    """The outcome of a writer call whose ``operation`` raised ``exc``, and the actor's handle."""
    spec.init(settings=vc.Settings(storage="", fresh_window=0.0, deadline=5.0))
    runtime = vc.get_runtime()
    store = RaisesOnce(runtime.store, exc, operation, after)
    runtime.store = store
    box = Box.get_or_create("b")
    assert box.add.run() == 1
    store.armed = exc
    try:
        return box.add.run(), box
    except BaseException as raised:  # (the outcome under test)
        assert store.armed is None  # (the injected one, not another)
        return raised, box


@pytest.mark.parametrize("after", [False, True], ids=["not-landed", "landed"])
def test_a_non_storage_error_from_the_step_put_leaves_the_outcome_unknown(
    spec: StoreSpec, after: bool
) -> None:
    outcome, box = _outcome(spec, MemoryError(), "put", after)
    assert isinstance(outcome, vc.CommitOutcomeUnknownError), repr(outcome)
    assert isinstance(outcome.__cause__, MemoryError)
    assert box.get.run() == (2 if after else 1)
    assert box.add.run() == (3 if after else 2)  # the runtime goes on


@pytest.mark.parametrize("operation", ["get", "put"])
def test_a_cancelled_error_from_a_store_request_is_no_shutdown(spec: StoreSpec, operation: str) -> None:
    outcome, box = _outcome(spec, asyncio.CancelledError(), operation, False)
    assert isinstance(outcome, asyncio.CancelledError), repr(outcome)
    # A read before the step's put (its base) says "not applied"; the put's says "may or may not".
    said = (
        "before its step's write was sent: not applied"
        if operation == "get"
        else "may or may not have been applied"
    )
    assert any(said in note for note in outcome.__notes__), outcome.__notes__
    assert box.get.run() == 1
    assert box.add.run() == 2


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, GeneratorExit])
@pytest.mark.parametrize("after", [False, True], ids=["not-landed", "landed"])
def test_an_interrupt_from_the_step_put_reaches_the_caller_with_the_commits_note(
    spec: StoreSpec, kind: type[BaseException], after: bool
) -> None:
    outcome, box = _outcome(spec, kind(), "put", after)
    assert type(outcome) is kind
    assert any("may or may not have been applied" in note for note in outcome.__notes__)
    assert box.get.run() == (2 if after else 1)


class CutByShutdown(FaultyStore):
    """The next read of a step meets shutdown: the runtime stops, and what the request awaited
    is cancelled under it (``Runtime._cancel_tasks``), its ``CancelledError`` raised out."""

    def __init__(self, inner: Any, runtime: Any) -> None:
        super().__init__(inner, FaultConfig())
        self.runtime = runtime
        self.armed = False

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        if self.armed and operation == "get" and "/steps/" in key:
            self.armed = False
            self.runtime.stopped = True
            raise asyncio.CancelledError()
        return await run()


def test_a_cancelled_error_once_shutdown_began_is_the_shutdown(spec: StoreSpec) -> None:
    spec.init(settings=vc.Settings(storage="", fresh_window=0.0, deadline=5.0))
    runtime = vc.get_runtime()
    store = CutByShutdown(runtime.store, runtime)
    runtime.store = store
    box = Box.get_or_create("s")
    assert box.add.run() == 1
    store.armed = True
    with pytest.raises(vc.RuntimeShutdownError):
        box.add.run()


@pytest.mark.parametrize("after", [False, True], ids=["not-landed", "landed"])
def test_a_non_storage_error_from_a_posts_write_leaves_the_call_to_the_fold(
    spec: StoreSpec, after: bool
) -> None:
    """The call lost a race and posted (``combine_after=1``); the post's write raised a
    ``MemoryError``, after landing or not. Before, the caller heard the bare error (as for a
    call not applied) while the post stayed, and this process's next commit folded it: applied
    (the landed case). Now the post is in doubt, as after a storage error: the commit goes on
    and the call's outcome is the fold's (applied once, here by this process's own fold)."""
    spec.init(settings=vc.Settings(storage="", fresh_window=300.0, combine_after=1, deadline=5.0))
    runtime = vc.get_runtime()
    store = RaisesOnce(runtime.store, MemoryError(), "put", after, fragment="/mail/")
    runtime.store = store
    box = Box.get_or_create("p")
    assert box.add.run() == 1
    commit_behind_its_back("p")  # step 2, n == 1: our next put loses, and the batch posts
    store.armed = store.exc
    assert box.add.run() == 2
    assert store.armed is None
    assert box.add.run() == 3
    assert box.get.run() == 3


@pytest.mark.parametrize("after", [False, True], ids=["not-landed", "landed"])
def test_a_non_storage_error_from_a_posts_inline_write_leaves_the_call_to_the_fold(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, after: bool
) -> None:
    """As above, where the post's first write is made on the calling thread (``PostBox.send_now``:
    the memory and local stores): it raised the bare error too."""
    spec.init(settings=vc.Settings(storage="", fresh_window=300.0, combine_after=1, deadline=5.0))
    store = vc.get_runtime().store
    assert store.inline
    box = Box.get_or_create("q")
    assert box.add.run() == 1
    commit_behind_its_back("q")
    put_now = store.put_now
    raised: list[str] = []

    def failing_put_now(key: str, data: bytes, *, mode: Any = "overwrite") -> str:
        if "/mail/" in key and not raised:
            raised.append(key)
            if after:
                put_now(key, data, mode=mode)
            raise MemoryError()
        return put_now(key, data, mode=mode)

    monkeypatch.setattr(store, "put_now", failing_put_now)
    assert box.add.run() == 2
    assert raised
    assert box.add.run() == 3


def test_a_non_storage_error_after_the_batch_was_posted_leaves_the_call_pending(spec: StoreSpec) -> None:
    """The call lost a race and posted; then the read of the folder lease raised a
    ``MemoryError`` (found by the fuzz too). Before, the caller heard the bare error while its
    post stayed, and the next fold applied it. Now ``CallPendingError`` (the error its cause):
    ``call_outcome`` tells what became of it, here applied by this process's next fold."""
    spec.init(settings=vc.Settings(storage="", fresh_window=300.0, combine_after=1, deadline=5.0))
    runtime = vc.get_runtime()
    store = RaisesOnce(runtime.store, MemoryError(), "get", False, fragment="/lease")
    runtime.store = store
    box = Box.get_or_create("l")
    assert box.add.run() == 1
    commit_behind_its_back("l")  # step 2, n == 1: our next put loses, and the batch posts
    store.armed = store.exc
    with pytest.raises(vc.CallPendingError) as raised:
        box.add.run()
    assert store.armed is None
    assert isinstance(raised.value.__cause__, MemoryError)
    (call_id,) = raised.value.call_ids
    assert box.add.run() == 3  # our next commit folds the post first
    assert box.call_outcome(call_id) == 2


class UnprintableError(Exception):
    """An error whose repr and str raise (a defect in a client library's exception)."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_an_unprintable_error_from_the_step_put_leaves_the_outcome_unknown(spec: StoreSpec) -> None:
    outcome, box = _outcome(spec, UnprintableError(), "put", True)
    assert isinstance(outcome, vc.CommitOutcomeUnknownError), type(outcome)
    assert isinstance(outcome.__cause__, UnprintableError)
    assert box.get.run() == 2
