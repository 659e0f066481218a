"""Must type-check cleanly (mypy --strict with the plugin, and pyright strict): a class that
subclasses an actor class (``class Sub(Base)``; at runtime ``ActorClass.__mro_entries__`` makes
it subclass the decorated class itself), decorated or not, with the base's attributes and methods."""

from __future__ import annotations

from typing import assert_type

import vactor_cloud as vc


@vc.virtual_actor
class Counter:
    def __init__(self, start: int) -> None:
        self.n = start

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


@vc.virtual_actor
class Bounded(Counter):
    """Inherits ``__init__`` (so ``get_or_create`` takes ``start``) and ``incr``."""

    def decr(self, by: int) -> int:
        self.n -= by
        return self.n


@vc.virtual_actor(serializer="json")
class Named(Counter):
    def __init__(self, start: int, name: str) -> None:
        super().__init__(start)
        self.name = name

    def incr(self, by: int = 1) -> int:
        return super().incr(by) * 2


class Plain(Counter):
    """Not an actor: a plain subclass of the decorated class."""

    def double(self) -> int:
        return self.n * 2


def typed() -> None:
    b = Bounded.get_or_create("b", 1)
    assert_type(vc.method(b, lambda a: a.decr).run(1), int)
    assert_type(vc.method(b, lambda a: a.incr).run(), int)
    assert_type(vc.method(b, lambda a: a.value).run_async(), vc.ActorFuture[int])
    n = Named.get_or_create("n", 1, "x")
    assert_type(vc.method(n, lambda a: a.incr).run(2), int)
    assert_type(Plain(3).double(), int)
    assert_type(Plain(3).incr(), int)
    assert_type(Bounded(2).decr(1), int)
