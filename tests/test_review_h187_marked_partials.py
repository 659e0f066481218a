"""Review h187: a ``functools.partialmethod`` method marked read-only or as an event
handler, before or after it is wrapped.

h184 made a ``partialmethod`` an actor method, collected as the function its ``__get__``
makes; the marks ``virtual_actor.readonly`` and ``virtual_actor.on_event`` set are on the
``partialmethod`` object (marked after wrapping) or on the function it wraps (marked
before), neither of them that function. A read-only ``partialmethod`` was so a writer: each
call committed a step, and what it changed in the instance was kept (a read-only call's
changes are discarded); one marked as an event handler handled no event.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.events import send_event


def touch(self: Any, amount: int) -> int:
    """Changes the instance: a read-only call's change is discarded, a writer's kept."""
    self.done += amount
    return int(self.done)


@vc.virtual_actor.readonly
def touch_marked(self: Any, amount: int) -> int:
    return touch(self, amount)


@vc.virtual_actor
class MarkedPartials:
    def __init__(self) -> None:
        self.done = 0

    marked_after = vc.virtual_actor.readonly(functools.partialmethod(touch, 5))
    marked_before = functools.partialmethod(touch_marked, 7)
    on_bump = vc.virtual_actor.on_event("bump")(functools.partialmethod(touch))

    @vc.virtual_actor.readonly
    def count(self) -> int:
        return int(self.done)


@pytest.mark.parametrize(("method", "amount"), [("marked_after", 5), ("marked_before", 7)])
def test_a_read_only_partialmethod_keeps_no_change(store: str, method: str, amount: int) -> None:
    vc.init(store)
    handle = MarkedPartials.get_or_create("marked")
    call = getattr(handle, method)
    assert [call.run(), call.run()] == [amount, amount]  # (a writer's: amount, then twice it)


def test_a_partialmethod_marked_as_an_event_handler_handles_the_event(store: str) -> None:
    vc.init(store)
    handle = MarkedPartials.get_or_create("marked")
    send_event("marked", "bump", 3, event_id="e1")
    assert handle.process_events() == 1
    assert handle.count.run() == 3
