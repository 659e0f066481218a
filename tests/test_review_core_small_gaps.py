"""Small gaps of the core call path left by review h102, closed by review h107.

1. A step whose bytes fail to encode was never sent: the call fails with that error (not
   applied), not ``CommitOutcomeUnknownError``.
2. ``own_runtime()``'s lock is new in a forked child: a child forked while another thread
   held it used it without waiting for ever.
3. ``run(at_step=N)`` through a stand-in method (a handle unpickled where its class is not
   defined) is refused as a handle of the class refuses it, not passed to the method.
4. A writer calling its own actor's read-only method through a handle is refused with the
   true reason.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import log as log_module
from vactor_cloud import runtime as runtime_module
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def add(self, amount: int) -> int:
        self.n += amount
        return self.n

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n

    def peek_through_handle(self) -> int:
        return int(vc.get_actor(vc.current_call().actor_id).peek.run())


@pytest.fixture
def tally(store_spec: StoreSpec) -> Iterator[Any]:
    vc.shutdown()
    store_spec.init()
    try:
        yield Tally.get_or_create("gaps-tally")
    finally:
        vc.shutdown()


def test_a_step_that_fails_to_encode_fails_the_call_as_not_applied(
    tally: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tally.add.run(1) == 1
    encode = log_module.StepRecord.encode
    failures = []

    def failing(record: Any, key: str, signing_key: bytes | None) -> bytes:
        if not failures:
            failures.append(record.step)
            raise MemoryError("injected: building the step's bytes")
        return encode(record, key, signing_key)

    monkeypatch.setattr(log_module.StepRecord, "encode", failing)
    with pytest.raises(MemoryError, match="injected"):  # before: CommitOutcomeUnknownError
        tally.add.run(10)
    assert failures == [2]
    assert tally.peek.run() == 1  # not applied
    assert tally.add.run(2) == 3
    assert len(list(tally.history())) == 3
