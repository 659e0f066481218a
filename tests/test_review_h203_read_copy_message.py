"""A read-only call's settled future whose copied result no longer reads back (its class
reloaded away since the method returned) said "the call was applied ... do not call again for
it": a read applies nothing, and calling it again is what gets a result that reads back. It
says so now; a writer's still says it was applied.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_review_h143_future_reads import Fragile, _rebuildable

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Shelf:
    def __init__(self) -> None:
        self.n = 7

    @vc.virtual_actor.readonly
    def look(self) -> Fragile:
        return Fragile(self.n)


@pytest.fixture
def fragile_reads_back() -> Iterator[None]:
    _rebuildable.set()
    yield
    _rebuildable.set()


@pytest.mark.usefixtures("fragile_reads_back")
def test_a_read_whose_copy_no_longer_reads_back_does_not_say_it_was_applied(actor_store: StoreSpec) -> None:
    shelf = Shelf.get_or_create("fragile-read")
    future = shelf.look.run_async()
    assert future.exception(60) is None  # settled: the method returned, its result read back
    _rebuildable.clear()
    with pytest.raises(TypeError) as caught:
        future.result()
    message = str(caught.value)
    assert "applied" not in message and "do not call again" not in message, message
    assert "read-only" in message and "call it again" in message, message
    assert "Can't get attribute 'Fragile'" in message, message  # (and why, with its cause)
    _rebuildable.set()
    assert future.result().n == 7  # reads back again once it can
