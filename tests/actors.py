"""Small actor classes that many test modules need in the same shape: import one of these
rather than define another like it. Each test opens a store of its own, so modules that share
a class share no actors. A test that needs its class to differ (another state, a method that
blocks or raises) keeps its own."""

from __future__ import annotations

import threading

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


class OrderChildren:
    """What the children of :class:`Orders` did in this process, and the gate of its
    ``place_slowly``: module-level, as a child's run leaves no other trace a test can read."""

    def __init__(self) -> None:
        #: each child's run, in order (a child read back from its checkpoint is not run)
        self.run: list[str] = []
        #: each try of ``place_slowly`` (a retry starts from the state before the call)
        self.tries: list[str] = []
        #: set by ``place_slowly``'s first try once its child is checkpointed
        self.checkpointed = threading.Event()
        #: set by the test to let that first try go on (it then fails)
        self.compacted = threading.Event()

    def reset(self) -> None:
        self.run.clear()
        self.tries.clear()
        self.checkpointed.clear()
        self.compacted.clear()


order_children = OrderChildren()


def allocate(order: str) -> str:
    """A child (``vc.subtask``) that counts its runs: ``order#<runs so far>``."""
    order_children.run.append(order)
    return f"{order}#{len(order_children.run)}"


@vc.virtual_actor
class Orders:
    """Places orders through a sub-task child (``allocate``), so that a test tells by
    ``order_children.run`` whether a child ran again or was read back from its checkpoint."""

    def __init__(self) -> None:
        self.placed: list[str] = []

    def place(self, order: str) -> str:
        (ticket,) = vc.subtask(allocate).map([order])
        self.placed.append(ticket)
        return ticket

    def place_slowly(self, order: str) -> str:
        """``place``, whose first try stops after its child's checkpoint until the test sets
        ``order_children.compacted``, then raises: the retry (``max_retries``) needs that
        checkpoint."""
        (ticket,) = vc.subtask(allocate).map([order])
        order_children.tries.append(order)
        if len(order_children.tries) == 1:
            order_children.checkpointed.set()
            assert order_children.compacted.wait(60), "the test never let the first try go on"
            raise RuntimeError("first run fails after its child ran")
        self.placed.append(ticket)
        return ticket

    def touch(self) -> None:
        self.placed.append("-")
