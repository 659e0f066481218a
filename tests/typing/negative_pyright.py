"""What pyright (no plugins) reports: a line marked ``# PE:`` and a text must be
flagged with that text (a substring of the message).

Constructor arguments are checked through ``get_or_create``, and method
calls through ``vc.method(handle, lambda a: a.name)``; ``handle.name`` itself
is ``ActorMethod[..., Any]`` under pyright (not checked), see docs/typing.md.
"""

from __future__ import annotations

import vactor_cloud as vc
from vactor_cloud import workflow


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


@workflow.step
def double(x: int) -> int:
    return 2 * x


def double_it(x: int) -> int:
    return 2 * x


def wrong() -> None:
    Account.get_or_create("a")  # PE: Argument missing for parameter "owner"
    Account.get_or_create("a", 1)  # PE: "Literal[1]" is not assignable to "str"
    h = Account.get_or_create("a", "ann")
    vc.method(h, lambda a: a.depositt)  # PE: Cannot access attribute "depositt" for class "Account"
    deposit = vc.method(h, lambda a: a.deposit)
    deposit.run("5")  # PE: "Literal['5']" is not assignable to "int"
    deposit.run(5, nope=1)  # PE: No parameter named "nope"
    text: str = deposit.run(5)  # PE: "int" is not assignable to "str"
    later: str = vc.get(deposit.run_async(5))  # PE: "int" is not assignable to "str"
    # *args / **kwargs, keyword-only async, read-only (sync and async) methods: checked the same way
    vc.method(h, lambda a: a.tag).run("a", 2)  # PE: "Literal[2]" is not assignable to "str"
    vc.method(h, lambda a: a.tag).run("a", w="1")  # PE: "Literal['1']" is not assignable to "int"
    vc.method(h, lambda a: a.settle).run_async(at="1")  # PE: "Literal['1']" is not assignable to "float"
    settled: str = vc.method(h, lambda a: a.settle).run(at=1.0)  # PE: "int" is not assignable to "str"
    vc.method(h, lambda a: a.peek).run("x")  # PE: "Literal['x']" is not assignable to "float"
    vc.method(h, lambda a: a.peek_later).run("k")  # PE: Expected 0 positional arguments
    peek_later = vc.method(h, lambda a: a.peek_later)
    key: int = vc.get(peek_later.run_async(key="k"))  # PE: "str" is not assignable to "int"
    # The class's name in a type is its ActorClass to pyright, not the class: no ActorHandle[Account].
    named: vc.ActorHandle[Account] = h  # PE: "Account" is not assignable to "ActorClass[type[Account]]"
    # A list of futures gives a list of their results; options can change what run() returns.
    results: list[str] = vc.get([deposit.run_async(1)])  # PE: "list[int]" is not assignable to "list[str]"
    caught: int = deposit.options(catch_exceptions=True).run(1)  # PE: "tuple[int | None, Exceptio
    plain = deposit.options(catch_exceptions=True).options(catch_exceptions=False)
    pair: tuple[int | None, Exception | None] = plain.run(1)  # PE: "int" is not assignable to "tuple[int
    # A subtask's items must fit its function's parameters.
    vc.subtask(double_it).map(["3"])  # PE: parameter "items" of type "Iterable[int]"
    vc.subtask(double_it).map([3], [4])  # PE: No overloads for "map" match the provided arguments
    key: int = deposit.options(delay=60).run(1)  # PE: "str" is not assignable to "int"
    double(2)  # PE: Object of type "StepFunction" is not callable
    h.state_at(1).withdraw(1)  # PE: Cannot access attribute "withdraw" for class "Account"
    h.timers()[0]["due_at"]  # PE: "due_at" is not a defined key in "TimerInfo"
    due: str = h.timers()[0]["due"]  # PE: "float" is not assignable to "str"
    vc.method(h, lambda a: a.peek).run(at_step=3)  # PE: No parameter named "at_step"
    # A method is run, not called; a result is no future; an option must exist.
    deposit(1)  # PE: Object of type "ActorMethod[(amount: int, *, note: str = ""), int]" is not callable
    deposit.runn(1)  # PE: Cannot access attribute "runn" for class "ActorMethod[(amount: int
    vc.get(deposit.run(1))  # PE: No overloads for "get" match the provided arguments
    deposit.options(bogus=1)  # PE: No overloads for "options" match the provided arguments
    vc.fire_due_timers(split="bogus")  # PE: "Literal['bogus']" is not assignable to type "Split | None"


def wrong_errors() -> None:
    try:
        pass
    except vc.CallPendingError as error:
        print(error.never)  # PE: Cannot access attribute "never" for class "CallPendingError"
    except vc.CallNotFoundError as error:
        print(error.call_ids)  # PE: Cannot access attribute "call_ids" for class "CallNotFoundError"


def wrong_call_runtime() -> None:
    context = vc.current_call()
    assert context is not None
    print(context.runtime.setings)  # PE: Cannot access attribute "setings" for class "CallRuntime"


async def wrong_awaits() -> None:
    h = Account.get_or_create("a", "ann")
    deposit = vc.method(h, lambda a: a.deposit)
    await deposit.run(1)  # PE: "int" is not awaitable
    await deposit  # PE: "ActorMethod[(amount: int, *, note: str = "")
    await Account.get_or_create("b", "bob")  # PE: "ActorHandle[Account]" is not awaitable
