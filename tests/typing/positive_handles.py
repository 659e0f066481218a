"""Must type-check cleanly (mypy --strict with the plugin): the types of a handle's methods."""

from __future__ import annotations

import functools
from typing import Any, Generic, TypeVar, assert_type

import vactor_cloud as vc
from vactor_cloud import workflow

T = TypeVar("T")


@vc.virtual_actor
class Account:
    def __init__(self, owner: str, balance: int = 0) -> None:
        self.owner = owner
        self.balance = balance

    def deposit(self, amount: int, *, note: str = "") -> int:
        self.balance += amount
        return self.balance

    @vc.virtual_actor.readonly
    def summary(self) -> dict[str, int]:
        return {"balance": self.balance}

    async def audit(self, strict: bool) -> list[str]:
        return []

    def first(self, items: list[T]) -> T:
        return items[0]

    @classmethod
    def limit(cls) -> int:
        return 10


@vc.virtual_actor
class Savings(Account):
    """A subclass actor with its own ``__init__``: no false override error on ``get_or_create``."""

    def __init__(self, owner: str, rate: float) -> None:
        super().__init__(owner)
        self.rate = rate

    def accrue(self) -> int:
        return self.balance


@vc.virtual_actor(serializer="json")
class Empty:
    pass


class Holder(Generic[T]):
    def __init__(self, item: T, items: list[T] | None = None) -> None:
        self.item = item

    def get(self) -> T:
        return self.item


@vc.virtual_actor
class Box(Holder[T]):
    """A generic actor class: get_or_create binds its type variables from the arguments."""


@vc.virtual_actor
class IntBox(Holder[int]):
    """Inherits ``__init__`` with ``T`` bound: ``get_or_create`` takes an ``int``."""


@vc.virtual_actor
class StrBox(Box[str]):
    """Subclasses the generic actor class subscripted (its class's alias at runtime)."""


class Adder:
    def __call__(self, amount: int) -> int:
        return amount


def _scale(self: Tools, factor: int, *, note: str = "") -> float:
    return float(factor)


def _ratio(self: Tools, of: int) -> float:
    return of / 2


@vc.virtual_actor
class Tools:
    """Methods that are callable class attributes, as the runtime takes them (docs/concepts.md):
    a callable object (called without ``self``), a function assigned in the class body, a
    ``functools.partialmethod``; read-only when marked on the way (``at_step=``)."""

    def _peek(self, k: int) -> int:
        return k

    add = Adder()
    scale = _scale
    ratio = vc.virtual_actor.readonly(_ratio)
    peek = functools.partialmethod(vc.virtual_actor.readonly(_peek), 10)


def pay(h: vc.ActorHandle[Account]) -> int:
    """Takes a handle of any actor class that is an Account (ActorHandle is covariant)."""
    return h.deposit.run(1)


def typed() -> None:
    h = Account.get_or_create("a", "ann")
    assert_type(h, vc.ActorHandle[Account])
    assert_type(Account.get_or_create("b", "bob", balance=3), vc.ActorHandle[Account])
    assert_type(h.deposit.run(5), int)
    assert_type(h.deposit.run(5, note="x"), int)
    assert_type(h.deposit.run_async(5), vc.ActorFuture[int])
    assert_type(vc.get(h.deposit.run_async(5)), int)
    assert_type(h.deposit.options(idempotency_key="k").run(5), int)
    assert_type(h.summary.run(), dict[str, int])
    # A read-only method also takes at_step= (its state after that step), as the runtime does.
    assert_type(h.summary.run(at_step=3), dict[str, int])
    assert_type(h.summary.run_async(at_step=3), vc.ActorFuture[dict[str, int]])
    assert_type(h.summary.options(at_step=3).run(), dict[str, int])
    # A read-only method's options: all but the writers' (idempotency keys, timers).
    assert_type(h.summary.options(name="n", max_retries=1).options(at_step=2).run(), dict[str, int])
    caught = h.summary.options(catch_exceptions=True)
    assert_type(caught.run(), tuple[dict[str, int] | None, Exception | None])
    assert_type(caught.options(catch_exceptions=False).run(), dict[str, int])
    summary: vc.ActorMethod[[], dict[str, int]] = h.summary.options(metadata={"k": 1})
    assert_type(summary.run(), dict[str, int])
    assert_type(h.audit.run(True), list[str])
    assert_type(h.audit.run_async(strict=False), vc.ActorFuture[list[str]])
    assert_type(Empty.get_or_create("e"), vc.ActorHandle[Empty])
    assert_type(Box.get_or_create("b", 3), vc.ActorHandle[Box[int]])
    assert_type(Box.get_or_create("b", "s", ["t"]).get.run(), str)
    assert_type(IntBox.get_or_create("i", 3).get.run(), int)
    assert_type(StrBox.get_or_create("s", "x").get.run(), str)
    # A generic method's type variables are bound per call.
    assert_type(h.first.run([1, 2]), int)
    assert_type(h.first.run_async(["a"]), vc.ActorFuture[str])
    s = Savings.get_or_create("s", "sue", 0.5)
    assert_type(s, vc.ActorHandle[Savings])
    assert_type(s.deposit.run(1), int)
    assert_type(s.accrue.run(), int)
    assert_type(pay(s), int)
    assert_type(s.summary.run(at_step=1), dict[str, int])  # read-only in the base class
    # The handle's own methods are still there.
    assert_type(h.state_at(1), Account)
    assert_type(s.state_at(1), Savings)
    assert_type(h.actor_id, str)
    h.ready().result()
    # A plain instance, as the runtime gives (unit tests).
    assert_type(Account("ann"), Account)
    # The decorated class itself, and its class-level attributes through it.
    assert_type(Account.cls, type[Account])
    assert_type(Account.cls.limit(), int)
    assert_type(Savings.cls.limit(), int)
    t = Tools.get_or_create("t")
    assert_type(t.add.run(1), int)
    assert_type(t.add.run_async(amount=1), vc.ActorFuture[int])
    assert_type(t.scale.run(2, note="n"), float)
    assert_type(t.peek.run(), int)
    assert_type(t.peek.run(at_step=1), int)
    assert_type(t.ratio.run(4, at_step=1), float)


async def typed_async() -> None:
    h = await Account.get_or_create_async("a", "ann")
    assert_type(h, vc.ActorHandle[Account])
    assert_type(await h.deposit.run_async(1), int)


def untyped_but_usable() -> None:
    g = vc.get_actor("a")
    assert_type(g, vc.ActorHandle[Any])
    assert_type(g.anything.run(1, 2, x=3), Any)
    known: vc.ActorHandle[Account] = vc.get_actor("a")
    assert_type(known.deposit.run(1), int)
    w = workflow.get_actor("a")
    assert_type(w.deposit.run_async(), vc.ActorFuture[Any])
