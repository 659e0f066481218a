"""Small actor classes that many test modules need in the same shape: import one of these
rather than define another like it. Each test opens a store of its own, so modules that share
a class share no actors. A test that needs its class to differ (another state, a method that
blocks or raises) keeps its own."""

from __future__ import annotations

import vactor_cloud as vc


@vc.virtual_actor
class Shelf:
    """A count kept in ``n``: ``add`` writes, ``value`` reads."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.n


@vc.virtual_actor
class Tally:
    """A count kept in ``value`` (tests write states of that shape by hand): ``incr`` writes,
    ``get`` reads."""

    def __init__(self) -> None:
        self.value = 0

    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.value


@vc.virtual_actor
class Total:
    """A count from ``start`` (``get_or_create(id, start)``): ``add`` writes, ``read_total``
    reads. The child-process tests send it (its handles, the class) to spawned workers."""

    def __init__(self, start: int) -> None:
        self.total = start

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    @vc.virtual_actor.readonly
    def read_total(self) -> int:
        return self.total


@vc.virtual_actor
class OrderLog:
    """Appends each call's token (``add``), in commit order; ``applied`` reads the list. The
    tests tell by it which call was lost, applied twice, or out of its caller's order."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)
