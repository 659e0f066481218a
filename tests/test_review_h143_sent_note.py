"""Review h143: the note a storage error that ends a commit after its step's put was sent
carries (``commit_notes.sent_note``: the calls may or may not have been applied).

It is added once, to an error that does not say so itself. A step put that got no answer
(``StorageTimeoutError`` with ``write_in_flight``: "the write may or may not have been
applied"), raised when every create of the step timed out, said it twice: the timeout's own
words and the note. A group commit's callers share one error, noted once.
"""

from __future__ import annotations

import threading
import time

import vactor_cloud as vc
from vactor_cloud.errors import StorageError, StorageTimeoutError
from vactor_cloud.storage import Blob, ObjectStore, PutMode
from vactor_cloud.testing.lanes import StoreSpec

_SENT = "was sent before this error"

#: what a held method waits for
_GATE = threading.Event()


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def hold(self) -> None:
        assert _GATE.wait(60)

    @vc.virtual_actor.readonly
    def total(self) -> int:
        return self.n


class StepPutsFail(ObjectStore):
    """Forwards to ``inner``; once armed, every put of step ``step`` fails with ``fail(key)``
    (``applied``: after it landed, the first time)."""

    def __init__(self, inner: ObjectStore, step: int, fail: type[StorageError], applied: bool) -> None:
        super().__init__(inner.url)
        self.take_capabilities_of(inner)
        self.inner = inner
        self.suffix = f"/steps/{step:020d}"
        self.fail = fail
        self.applied = applied
        self.failed = 0
        self.blind = False

    async def _get(self, key: str) -> Blob:
        if self.blind and key.endswith(self.suffix):
            raise StorageError("injected: read failed", key)
        return await self.inner.get(key)

    async def _head(self, key: str) -> str | None:
        return await self.inner.head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key.endswith(self.suffix):
            if self.applied and not self.failed:
                await self.inner.put(key, data, mode=mode)
            self.failed += 1
            if self.fail is StorageTimeoutError:
                raise StorageTimeoutError(
                    f"put {key} got no answer (the write may or may not have been applied)",
                    key,
                    write_in_flight=True,
                )
            raise self.fail(f"injected: connection reset after the put of {key}", key)
        return await self.inner.put(key, data, mode=mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return await self.inner.list(prefix, start_after=start_after, limit=limit)

    async def _delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def close(self) -> None:
        await self.inner.close()


def _failing(step: int, fail: type[StorageError], applied: bool) -> StepPutsFail:
    runtime = vc.get_runtime()
    store = StepPutsFail(runtime.store, step, fail, applied)
    runtime.store = store  # before any actor core exists, so every log uses it
    return store


def test_a_step_put_that_never_got_an_answer_says_so_once(actor_store: StoreSpec) -> None:
    store = _failing(2, StorageTimeoutError, applied=False)
    t = Tally.get_or_create("timed-out")
    assert t.add.run(1) == 1
    try:
        t.add.run(2)
    except StorageTimeoutError as exc:
        error: BaseException = exc
    else:
        raise AssertionError("every put of the step timed out, and the call returned")
    assert store.failed >= 2
    assert "may or may not have been applied" in str(error)
    notes = getattr(error, "__notes__", [])
    assert not [n for n in notes if _SENT in n], notes  # (its own words say it: not twice)
    assert t.total.run() == 1


def test_the_callers_of_a_group_commit_share_one_note(actor_store: StoreSpec) -> None:
    store = _failing(3, StorageError, applied=True)
    t = Tally.get_or_create("grouped")
    assert t.add.run(1) == 1
    _GATE.clear()
    held = t.hold.run_async()  # (step 2: the adds queue behind it, and commit as step 3)
    time.sleep(0.3)
    futures = [t.add.run_async(k) for k in (10, 20, 30)]
    store.blind = True
    _GATE.set()
    held.result(60)
    errors = [f.exception(60) for f in futures]
    assert all(isinstance(e, StorageError) for e in errors), errors
    for error in errors:
        notes = getattr(error, "__notes__", [])
        assert len([n for n in notes if _SENT in n]) == 1, notes
    store.blind = False
    assert t.total.run() in (1, 61)
