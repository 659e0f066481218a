"""Known gap (pyright): subclassing an actor class works at runtime (``ActorClass.__mro_entries__``)
but pyright reports "Argument to class must be a base class". Must check cleanly once fixed."""

from __future__ import annotations

from typing import Any

import vactor_cloud as vc


@vc.virtual_actor
class Base:
    def __init__(self, n: int) -> None:
        self.n = n


@vc.virtual_actor
class Sub(Base):
    def decr(self, by: int) -> int:
        return self.n - by


def typed() -> None:
    s: vc.ActorHandle[Any] = Sub.get_or_create("s", 1)
    s.decr.run(1)
