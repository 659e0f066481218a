"""Each line marked ``# E:`` and a text must be reported by mypy with that text
(a substring of the message); nothing else may be reported."""

from __future__ import annotations

from typing import Generic, TypeVar

import vactor_cloud as vc

T = TypeVar("T")


@vc.virtual_actor
class Account:
    def __init__(self, owner: str, balance: int = 0) -> None:
        self.owner = owner
        self.balance = balance

    def deposit(self, amount: int, *, note: str = "") -> int:
        self.balance += amount
        return self.balance

    def tag(self, *tags: str, **weights: int) -> list[str]:
        return list(tags)

    async def settle(self, *, at: float) -> int:
        return self.balance

    @vc.virtual_actor.readonly
    def peek(self, scale: float = 1.0) -> float:
        return self.balance * scale

    @vc.virtual_actor.readonly
    async def peek_later(self, *, key: str) -> str:
        return key

    async def audit(self, strict: bool) -> list[str]:
        return []

    @vc.virtual_actor.readonly
    def own_step(self, at_step: int) -> int:
        """Its own ``at_step`` parameter: the keyword goes to the method, typed as it says."""
        return at_step

    def _private(self) -> None:
        pass

    def first(self, items: list[T]) -> T:
        return items[0]

    @property
    def label(self) -> str:
        return self.owner

    RATE = 3

    @classmethod
    def make(cls) -> int:
        return cls.RATE  # cls is the class itself: fine

    @staticmethod
    def util(x: int) -> int:
        return x

    def uses_its_name(self) -> int:
        return Account.util(1)  # E: Actor class "Account" has no attribute "util"


class Holder(Generic[T]):
    def __init__(self, item: T, items: list[T] | None = None) -> None:
        self.item = item

    def get(self) -> T:
        return self.item


@vc.virtual_actor
class Box(Holder[T]):
    pass


@vc.virtual_actor
class IntBox(Holder[int]):
    pass


def wrong() -> None:
    Account.get_or_create("a")  # E: Missing positional argument "owner"
    Account.get_or_create("a", 1)  # E: Argument 2 to "get_or_create" of "Account" has incompatible
    Account.get_or_create(1, "ann")  # E: Argument 1 to "get_or_create" of "Account" has incompatible
    IntBox.get_or_create("i", "s")  # E: Argument 2 to "get_or_create" of "IntBox" has incompatible type "str"
    Box.get_or_create("b", 1, ["s"])  # E: Cannot infer value of type parameter "T" of "get_or_create"
    boxed: str = Box.get_or_create("b", 1).get.run()  # E: (expression has type "int", variable
    h = Account.get_or_create("a", "ann")
    h.depositt.run(5)  # E: Actor class "Account" has no method "depositt"
    h.owner.run()  # E: Actor class "Account" has no method "owner"
    h._private.run()  # E: Actor class "Account" has no method "_private"
    h.deposit.run("5")  # E: Argument 1 to "run" of "ActorMethod" has incompatible type "str"
    h.deposit.run()  # E: Missing positional argument "amount"
    h.deposit.run(5, 6)  # E: Too many positional arguments
    h.deposit.run(5, nope=1)  # E: Unexpected keyword argument "nope"
    h.deposit.options(idempotency_key="k").run("5")  # E: incompatible type "str"
    h.deposit.run_async("5")  # E: incompatible type "str"
    text: str = h.deposit.run(5)  # E: (expression has type "int", variable has type "str")
    later: str = vc.get(h.deposit.run_async(5))  # E: (expression has type "int", variable has type "str")
    audit: int = h.audit.run(True)  # E: expression has type "list[str]"
    h.label.run()  # E: Actor class "Account" has no method "label"
    h.first.run(1)  # E: Argument 1 to "run" of "ActorMethod" has incompatible type "int"
    first: str = h.first.run([1])  # E: (expression has type "int", variable has type "str")
    h.options(idempotency_key="k")  # E: Actor class "Account" has no method "options"
    # *args / **kwargs, keyword-only async, read-only (sync and async) methods: checked the same way
    h.tag.run("a", 2)  # E: Argument 2 to "run" of "ActorMethod" has incompatible type "int"
    h.tag.run("a", w="1")  # E: Argument "w" to "run" of "ActorMethod" has incompatible type "str"
    h.settle.run(1.0)  # E: Too many positional arguments
    h.settle.run_async(at="1")  # E: Argument "at" to "run_async" of "ActorMethod" has incompatible type
    settled: str = h.settle.run(at=1.0)  # E: (expression has type "int", variable has type "str")
    h.peek.run("x")  # E: Argument 1 to "run" of "ActorMethod" has incompatible type "str"
    peeked: int = h.peek.run()  # E: (expression has type "float", variable has type "int")
    h.peek_later.run("k")  # E: Too many positional arguments
    h.peek.run(at_step="1")  # E: Argument "at_step" to "run" of "ActorMethod" has incompatible type "str"
    h.peek_later.run_async(key="k", at_step=None)  # E: Argument "at_step" to "run_async" of "ActorMethod"
    h.deposit.run(1, at_step=2)  # E: Unexpected keyword argument "at_step"
    h.own_step.run(at_step="s")  # E: Argument "at_step" to "run" of "ActorMethod" has incompatible type "str"
    later_key: int = vc.get(h.peek_later.run_async(key="k"))  # E: (expression has type "str", variable
    # Timers and idempotency keys are for writers (a ValueError at runtime).
    h.peek.options(delay=60)  # E: Unexpected keyword argument "delay" for overloaded function "options"
    h.peek.options(at=1.0e9, timer_key="k")  # E: Unexpected keyword arguments "at", "timer_key" for
    h.peek_later.options(idempotency_key="k")  # E: Unexpected keyword argument "idempotency_key" for
    h.peek.options(name="n").options(every=5.0)  # E: Unexpected keyword argument "every" for overloaded


def wrong_class_attributes() -> None:
    # The decorated name is the ActorClass (AttributeError at runtime), the class is .cls
    Account.make()  # E: Actor class "Account" has no attribute "make"
    Account.util(1)  # E: Actor class "Account" has no attribute "util"
    rate = Account.RATE  # E: Actor class "Account" has no attribute "RATE"
    Account.deposit(Account("ann"), 1)  # E: Actor class "Account" has no attribute "deposit"
    Account.cls.make()  # the class itself
    Account.get_or_create("a", "ann")
    name: str = Account.__name__


def wrong_settings() -> None:
    vc.init("memory://x", settings=vc.Settings(storage=""))  # the right type passes
    vc.init("memory://x", settings={"timeout": 2})  # E: Argument "settings" to "init" has incompatible type


class Halver:
    def __call__(self, amount: int) -> float:
        return amount / 2


def _twice(x: int) -> int:
    return 2 * x


@vc.virtual_actor
class Tools:
    half = Halver()
    limit = 3
    label: str = "tools"
    # Callable, but no method at runtime: a static or class method, a class.
    twice = staticmethod(_twice)
    make = classmethod(lambda cls: 1)
    kind = Halver


def wrong_callable_attributes() -> None:
    t = Tools.get_or_create("t")
    t.half.run("1")  # E: Argument 1 to "run" of "ActorMethod" has incompatible type "str"
    halved: int = t.half.run(1)  # E: (expression has type "float", variable has type "int")
    t.half.run(1, at_step=2)  # E: Unexpected keyword argument "at_step" for "run" of "ActorMethod"
    t.limit.run()  # E: Actor class "Tools" has no method "limit"
    t.label.run()  # E: Actor class "Tools" has no method "label"
    t.twice.run(1)  # E: Actor class "Tools" has no method "twice"
    t.make.run()  # E: Actor class "Tools" has no method "make"
    t.kind.run()  # E: Actor class "Tools" has no method "kind"
