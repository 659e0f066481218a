"""Hostile review of the user-facing API: what a user hits with unusual classes and calls.

Each test here failed before its fix (or is marked xfail with the fix it needs).
"""

from __future__ import annotations

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


# -- state: __slots__ ---------------------------------------------------------------------------
def test_a_class_keeping_attributes_in_slots_without_a_state_protocol_is_refused() -> None:
    # The state is the instance __dict__: slot values were silently dropped at the first commit
    # (with "__dict__" among the slots), or every call failed with a bare AttributeError.
    with pytest.raises(vc.StateProtocolError, match=r"__slots__ \(count\).*__getstate__ and __setstate__"):

        @vc.virtual_actor
        class SlotsOnly:
            __slots__ = ("count",)

            def __init__(self) -> None:
                self.count = 0

    with pytest.raises(vc.StateProtocolError, match=r"__slots__ \(kept\)"):

        @vc.virtual_actor
        class SlotsAndDict:
            __slots__ = ("__dict__", "kept")

            def __init__(self) -> None:
                self.kept = 0


@vc.virtual_actor
class SlotsWithState:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __getstate__(self) -> int:
        return self.count

    def __setstate__(self, state: int) -> None:
        self.count = state

    def incr(self) -> int:
        self.count += 1
        return self.count


def test_a_class_with_slots_and_a_state_protocol_keeps_its_slots(actor_store: StoreSpec) -> None:
    counter = SlotsWithState.get_or_create("slots-ok")
    assert [counter.incr.run() for _ in range(3)] == [1, 2, 3]
