"""Review h186: the marks of a method made with ``functools.partialmethod`` (h184 collects one
as the function it makes, a new function taking the instance first).

``@virtual_actor.readonly`` and ``@virtual_actor.on_event(name)`` set an attribute on the
function they decorate; the function a partialmethod makes has none of them, so a mark on
the partialmethod's function, or on the partialmethod itself, was not seen: the read-only
method committed a step each call, and the event handler handled nothing.

A test that failed before its fix names it in its docstring.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from test_runtime_api import steps_of

import vactor_cloud as vc


def _peek(self: Any, extra: int) -> int:
    return self.n + extra


def _on_payment(self: Any, kind: str, payload: Any) -> int:
    self.seen.append((kind, payload))
    return len(self.seen)


@vc.virtual_actor
class Marked:
    def __init__(self) -> None:
        self.n = 5
        self.seen: list[tuple[str, Any]] = []

    #: the function marked, then made a partialmethod
    peek_ten = functools.partialmethod(vc.virtual_actor.readonly(_peek), 10)
    #: the partialmethod marked
    peek_one = vc.virtual_actor.readonly(functools.partialmethod(_peek, 1))
    #: a partialmethod of a partial of the marked function
    peek_two = functools.partialmethod(functools.partial(vc.virtual_actor.readonly(_peek)), extra=2)
    on_paid = vc.virtual_actor.on_event("paid")(functools.partialmethod(_on_payment, "paid"))
    on_refunded = functools.partialmethod(vc.virtual_actor.on_event("refunded")(_on_payment), "refunded")

    def bump(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def view(self) -> list[tuple[str, Any]]:
        return self.seen


@pytest.mark.parametrize(("method", "expected"), [("peek_ten", 15), ("peek_one", 6), ("peek_two", 7)])
def test_a_readonly_partialmethod_commits_no_step(store: str, method: str, expected: int) -> None:
    """Before: each call of the read-only method committed a step."""
    vc.init(store)
    handle = Marked.get_or_create("m")
    handle.bump.run()
    before = steps_of("m")
    assert getattr(handle, method).run() == expected + 1
    assert steps_of("m") == before


@pytest.mark.parametrize("event", ["paid", "refunded"])
def test_an_event_handler_made_with_partialmethod_handles_its_event(store: str, event: str) -> None:
    """Before: no method handled the event (its mark was on the partialmethod, or on the
    function it wraps, not on the function collected)."""
    vc.init(store)
    handle = Marked.get_or_create("m")
    handle.send_event(event, {"amount": 3})
    handle.process_events()
    assert handle.view.run() == [(event, {"amount": 3})]
