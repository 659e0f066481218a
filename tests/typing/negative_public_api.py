"""Each line marked ``# E:`` and a text must be reported by mypy (with the plugin) with that
text; nothing else may be reported. Wrong arguments and wrong uses of results across the
public API, and the results that options change (``catch_exceptions=True``, timers)."""

from __future__ import annotations

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.runtime import own_runtime
from vactor_cloud.timer_runner import TimerRunner


@vc.virtual_actor
class Account:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0

    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def remind(self) -> None:
        context = vc.current_call()
        assert context is not None
        context.schedule("deposit", after="5")  # E: Argument "after" to "schedule" of "CallContext" has
        print(context.runtime.setings)  # E: "CallRuntime" has no attribute "setings"


def square(x: int) -> float:
    return float(x * x)


def add(x: int, y: str) -> str:
    return f"{x}{y}"


@workflow.step
def double(x: int) -> int:
    return 2 * x


def wrong() -> None:
    vc.init(timeout="3")  # E: Argument "timeout" to "init" has incompatible type "str"
    vc.Settings(timeout="3")  # E: Argument "timeout" to "Settings" has incompatible type "str"
    h = Account.get_or_create("a", "ann")
    vc.delete_actor(h)  # E: Argument 1 to "delete_actor" has incompatible type "ActorHandle[Account]"
    vc.send_event("a")  # E: Missing positional argument "name"
    h.send_event("paid", event_id=1)  # E: Argument "event_id" to "send_event" of "ActorHandle" has
    vc.list_actors(limit="3")  # E: Argument "limit" to "list_actors" has incompatible type "str"
    h.ready().result(timeout="1")  # E: Argument "timeout" to "result" of "ActorFuture" has incompatible
    removed: str = vc.delete_actor("a")  # E: (expression has type "bool", variable has type "str")
    future = h.deposit.run_async(1)
    h.state_at(1).withdraw(1)  # E: "Account" has no attribute "withdraw"
    h.timers()[0]["due_at"]  # E: TypedDict "TimerInfo" has no key "due_at"
    due: str = h.timers()[0]["due"]  # E: (expression has type "float", variable has type "str")
    # (mypy takes a wrong ``list[str]`` context to mean futures of mixed types: ``list[Any]``.)
    first: str = vc.get([future, future])[0]  # E: (expression has type "int", variable has type "str")
    vc.get(future, timeout="1")  # E: No overload variant of "get" matches argument types
    # What run() returns with options that change it: (result, exception), a timer's key.
    caught: int = h.deposit.options(catch_exceptions=True).run(1)  # E: expression has type "tuple[int | None
    plain = h.deposit.options(catch_exceptions=True).options(catch_exceptions=False)
    pair: tuple[int | None, Exception | None] = plain.run(1)  # E: (expression has type "int", variable
    key: int = h.deposit.options(delay=60).run(1)  # E: (expression has type "str", variable has type "int")
    later: int = vc.get(h.deposit.options(at=1.0e9).run_async(1))  # E: (expression has type "str", variable
    h.deposit.options(delay="60")  # E: No overload variant of "options" of "ActorMethod" matches
    task = vc.subtask(square)
    task.run("3")  # E: Argument 1 to "run" of "Subtask" has incompatible type "str"
    squares: list[int] = task.map([1])  # E: (expression has type "list[float]", variable has type
    # The items must fit the function's parameters (the first, second, third of them).
    task.map(["3"])  # E: List item 0 has incompatible type "str"; expected "int"
    vc.subtask(add).map([1], [2])  # E: List item 0 has incompatible type "int"; expected "str"
    task.map([1], [2])  # E: No overload variant of "map" of "Subtask" matches argument types
    with own_runtime(1):  # E: Too many arguments for "own_runtime"
        pass
    workflow.get_status(1)  # E: Argument 1 to "get_status" has incompatible type "int"
    # A step is not called: ``double.step(2)`` builds it (TypeError at runtime).
    double(2)  # E: "StepFunction" not callable
    # A method is run, not called; a result is no future; an option must exist.
    h.deposit(1)  # E: "ActorMethod[[int], int]" not callable
    h.deposit.runn(1)  # E: "ActorMethod[[int], int]" has no attribute "runn"
    vc.get(h.deposit.run(1))  # E: No overload variant of "get" matches argument type "int"
    h.deposit.options(bogus=1)  # E: Unexpected keyword argument "bogus" for overloaded function "options"
    vc.fire_due_timers(split="bogus")  # E: Argument "split" to "fire_due_timers" has incompatible type
    TimerRunner(shard=3)  # E: Argument "shard" to "TimerRunner" has incompatible type "int"
    vc.virtual_actor.readonly(3)  # E: Value of type variable "F" of "readonly" of "VirtualActorDecorator"


def wrong_errors() -> None:
    try:
        pass
    except vc.CallPendingError as error:
        print(error.never)  # E: "CallPendingError" has no attribute "never"
    except vc.CallNotFoundError as error:
        print(error.call_ids)  # E: "CallNotFoundError" has no attribute "call_ids"


async def wrong_awaits() -> None:
    h = Account.get_or_create("a", "ann")
    await h.deposit.run(1)  # E: Incompatible types in "await" (actual type "int"
    await h.deposit  # E: Incompatible types in "await" (actual type "ActorMethod[
    await Account.get_or_create("b", "bob")  # E: "ActorHandle[Account]" has no attribute "__await__"
    print(Account.get_or_create_async("b", "bob").deposit)  # E: "Coroutine[Any, Any, ActorHandle[Account]]"
