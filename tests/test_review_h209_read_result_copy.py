"""A read-only call whose result's pickling raises (review h209).

A read-only call's result is copied (``batch_apply._read_result``), and a run_async future of it
hands each read its own copy (``future.ActorFuture._by_value``). A result whose ``__reduce__``
raises a plain exception cannot be copied: it is handed over as it is. One whose ``__reduce__``
raises ``SystemExit`` or ``KeyboardInterrupt`` (a Ctrl-C landing in the copy): the caller gets
that, as from the method itself. Either way the actor is not wedged: its next calls, writers
and reads, go on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from actors import OrderLog

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec

#: what ``Unpicklable.__reduce__`` raises, by name
_RAISES: dict[str, type[BaseException]] = {
    "ValueError": ValueError,
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
}


class Unpicklable:
    """Its ``__reduce__`` raises ``_RAISES[kind]``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        raise _RAISES[self.kind](f"no pickle of this ({self.kind})")


@vc.virtual_actor
class Shelf(OrderLog):
    """An order log whose ``odd`` reads one object no pickle copies."""

    @vc.virtual_actor.readonly
    def odd(self, kind: str) -> Unpicklable:
        return Unpicklable(kind)


def _goes_on(shelf: vc.ActorHandle[Shelf], n: int) -> None:
    """The actor's next writer and read answer (nothing wedged)."""
    assert shelf.add.run(f"call {n}") == n
    assert shelf.applied.run()[-1] == f"call {n}"
    assert len(shelf.applied.run_async().result(60)) == n


@pytest.mark.parametrize("kind", sorted(_RAISES))
def test_a_read_only_result_whose_pickling_raises_reaches_its_caller_and_wedges_nothing(
    actor_store: StoreSpec, kind: str
) -> None:
    shelf = Shelf.get_or_create(f"shelf-{kind}")
    _goes_on(shelf, 1)
    error = _RAISES[kind]

    def got(read: Any) -> None:
        if error is ValueError:  # (not copied: the object itself)
            result = read()
            assert type(result) is Unpicklable and result.kind == kind
        else:
            with pytest.raises(error, match="no pickle of this"):
                read()

    got(lambda: shelf.odd.run(kind))
    _goes_on(shelf, 2)
    future = shelf.odd.run_async(kind)
    got(lambda: future.result(60))
    got(lambda: future.result(60))  # (read again: the same)
    _goes_on(shelf, 3)

    async def awaited() -> Any:
        return await shelf.odd.run_async(kind)

    got(lambda: asyncio.run(awaited()))
    _goes_on(shelf, 4)
