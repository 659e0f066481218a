"""Must type-check cleanly under mypy --strict (with the plugin) and pyright strict: a user's
calls across the public API (``vactor_cloud.__all__``, ``vactor_cloud.workflow``,
``runtime.own_runtime``), each with the type a checker can know."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, assert_type

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.compaction import CompactionReport
from vactor_cloud.inbox import EventInDoubtError
from vactor_cloud.runtime import own_runtime
from vactor_cloud.storage import ObjectStore
from vactor_cloud.timer_runner import TimerRunner
from vactor_cloud.timers import Timer


@vc.virtual_actor
class Account:
    def __init__(self, owner: str, balance: int = 0) -> None:
        self.owner = owner
        self.balance = balance

    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def label(self) -> str:
        return self.owner

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.balance

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, payload: dict[str, int]) -> int:
        return payload["amount"]

    def remind(self) -> str:
        context = vc.current_call()
        assert context is not None
        assert_type(context.actor_id, str)
        assert_type(context.method, str)
        assert_type(context.runtime.settings, vc.Settings)
        assert_type(context.runtime.settings.signing_key, bytes | None)
        assert_type(context.runtime.store, ObjectStore)
        key = context.schedule("deposit", after=5.0, args=(1,))
        assert_type(key, str)
        assert_type(context.cancel_timer(key), bool)
        assert_type(context.pending_timers(), dict[str, Timer])
        return key


@vc.virtual_actor(serializer="json")
class Note:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self) -> str:
        return self.text


def square(x: int) -> float:
    return float(x * x)


def scaled(x: int, factor: int = 2, *, shift: int = 0) -> int:
    return x * factor + shift


def joined(x: int, y: str, z: bytes = b"") -> str:
    return f"{x}{y}{z!r}"


def total(*xs: int) -> int:
    return sum(xs)


def handles_and_calls() -> None:
    vc.init("memory://typing")
    vc.init(settings=vc.Settings(timeout=2.0, wait_for_init=False))
    h = Account.get_or_create("a", "ann")
    deposit = vc.method(h, lambda a: a.deposit)
    assert_type(deposit.run(1), int)
    future = deposit.run_async(1)
    assert_type(future, vc.ActorFuture[int])
    assert_type(future.result(), int)
    assert_type(future.result(timeout=1.0), int)
    assert_type(future.exception(), BaseException | None)
    assert_type(vc.get(future, timeout=1.0), int)
    # A list of futures of one type: a list of results of that type.
    assert_type(vc.get([future, deposit.run_async(2)]), list[int])
    assert_type(vc.get(f for f in [future]), list[int])
    label = vc.method(h, lambda a: a.label).run_async()
    mixed: list[concurrent.futures.Future[Any]] = [future, label]
    assert_type(vc.get(mixed), list[Any])
    # catch_exceptions=True delivers (result, None) or (None, exception) instead of raising.
    caught = deposit.options(catch_exceptions=True)
    assert_type(caught.run(1), tuple[int | None, Exception | None])
    assert_type(caught.run_async(1), vc.ActorFuture[tuple[int | None, Exception | None]])
    assert_type(deposit.options(catch_exceptions=False).run(1), int)
    # A later option replaces an earlier one: catch_exceptions=False undoes True.
    assert_type(caught.options(catch_exceptions=False).run(1), int)
    assert_type(caught.options(catch_exceptions=False).run_async(1), vc.ActorFuture[int])
    assert_type(caught.options(name="n").run(1), tuple[int | None, Exception | None])
    assert_type(caught.options(catch_exceptions=True).run(1), tuple[int | None, Exception | None])
    assert_type(caught.options(catch_exceptions=False, delay=60.0).run(1), str)
    assert_type(deposit.options(max_retries=2, name="n", metadata={"k": 1}).run(1), int)
    # delay= / at= schedule a durable timer: run() returns the timer's key.
    assert_type(deposit.options(delay=60.0).run(1), str)
    assert_type(deposit.options(at=1.0e9, timer_key="k", every=60.0).run_async(1), vc.ActorFuture[str])
    assert_type(deposit.options(delay=60).options(idempotency_key="k").run(1), str)
    assert_type(vc.method(h, lambda a: a.peek).options(at_step=3).run(), int)
    assert_type(vc.method(h, lambda a: a.peek).options(at_step=3).run_async(), vc.ActorFuture[int])
    # An event handler is a method too (called with the payload).
    assert_type(vc.method(h, lambda a: a.on_paid).run({"amount": 1}), int)
    assert_type(vc.method(Note.get_or_create("n", "text"), lambda n: n.read).run(), str)
    # A handle of a class is one of its base classes (ActorHandle is covariant).
    general: vc.ActorHandle[object] = h
    # The handle's own methods.
    assert_type(h.actor_id, str)
    assert_type(h.ready(), vc.ActorFuture[None])
    assert_type(h.call_outcome("c-1"), Any)
    assert_type(h.history(limit=3), list[vc.HistoryEntry])
    # The state after a step: an instance of the actor's class (read-only).
    assert_type(h.state_at(2).balance, int)
    assert_type(h.state_at(2).label(), str)
    assert_type(vc.get_actor("a").state_at(2), Any)
    assert_type(h.send_event("paid", {"amount": 1}, event_id="e-1"), str)
    assert_type(h.process_events(), int)
    assert_type(h.wait_for_event("paid", timeout=1.0), Any)
    # A pending timer as handle.timers() lists it: its keys' types are known.
    (timer,) = h.timers()
    assert_type(timer["key"], str)
    assert_type(timer["due"], float)
    assert_type(timer["method"], str)
    assert_type(timer["args"], tuple[Any, ...])
    assert_type(timer["kwargs"], dict[str, Any])
    assert_type(timer["every"], float | None)
    assert_type(h.cancel_timer("k"), bool)
    assert_type(h.compact(keep_last=1).deleted_steps, int)


def module_functions() -> None:
    assert_type(vc.get_actor("a"), vc.ActorHandle[Any])
    assert_type(vc.delete_actor("a"), bool)
    assert_type(vc.delete_actor("a", idempotency_key="k"), bool)
    assert_type(vc.send_event("a", "paid", {"amount": 1}, create=True), str)
    infos = vc.list_actors(prefix="a", limit=10)
    assert_type(infos, list[vc.ActorInfo])
    assert_type(infos[0].step, int)
    assert_type(vc.stats(), dict[str, int])
    assert_type(vc.get_runtime().settings, vc.Settings)
    report = vc.fire_due_timers(lease=10.0)
    assert_type(report, vc.TickReport)
    assert_type(report.fired, int)
    assert_type(report.errors, list[str])
    assert_type(report.error_count, int)
    assert_type(report.max_lateness, float | None)
    assert_type(vc.fire_due_timers(shard=(0, 2), split="claims", stop=threading.Event()), vc.TickReport)
    runner = TimerRunner(split="none", poll=0.5)
    assert_type(runner.tick(), vc.TickReport)
    assert_type(runner.run(threading.Event(), on_tick=print), vc.TickReport)
    assert_type(vc.run_timers(poll=0.1, stop=threading.Event(), on_tick=print), vc.TickReport)
    with own_runtime():
        vc.init("memory://own")
    vc.shutdown()


def subtasks() -> None:
    task = vc.subtask(square, max_retries=2)
    assert_type(task.run(3), float)
    assert_type(task.map([1, 2]), list[float])
    assert_type(task.map(range(3)), list[float])
    # Parameters with defaults or keyword-only are left to their defaults; iterables are zipped.
    assert_type(vc.subtask(scaled).map([1, 2]), list[int])
    assert_type(vc.subtask(scaled).map([1, 2], [3, 4]), list[int])
    assert_type(vc.subtask(joined).map([1], ["a"]), list[str])
    assert_type(vc.subtask(joined).map([1], ["a"], [b"z"]), list[str])
    assert_type(vc.subtask(total).map([1], [2], [3], [4], [5]), list[int])
    assert_type(task.options(executor="thread").run(x=4), float)


def exceptions() -> None:
    try:
        vc.get_actor("a")
    except vc.CallPendingError as error:
        assert_type(error.call_ids, list[str])
        assert_type(error.actor_id, str)
    except vc.CallNotFoundError as error:
        assert_type(error.never, bool)
        assert_type(error.call_id, str)
        assert_type(error.advice, str)
    except vc.NestedCallPendingError as error:
        assert_type(error.nested, list[tuple[str, list[str], str]])
        assert_type(error.nested_call_ids, list[str])
    except vc.ActorClassChangedError as error:
        assert_type(error.at_step, int | None)
    except vc.StepsMissingError as error:
        assert_type(error.newest, int | None)
    except EventInDoubtError as error:
        assert_type(error.event_id, str)
    except vc.ActorDeletedError as error:
        assert_type(error.step, int)
        assert_type(error.root, str)
    except vc.StepNotFoundError as error:
        assert_type(error.remaining, tuple[int, int])
        assert_type(error.compacted, bool)
    except vc.CommitConflictError as error:
        assert_type(error.attempts, int)
        assert_type(error.reason, str | None)
    except vc.CommitOutcomeUnknownError as error:
        assert_type(error.step, int)
    except vc.StorageNotChosenError as error:
        assert_type(error.origin, str)
    except vc.IntegrityError as error:
        assert_type(error.key, str)
    except vc.StorageTimeoutError as error:
        assert_type(error.write_in_flight, bool)


async def async_api() -> None:
    h = await Account.get_or_create_async("a", "ann")
    assert_type(await vc.get_actor_async("a"), vc.ActorHandle[Any])
    assert_type(await vc.delete_actor_async("a"), bool)
    assert_type(await vc.send_event_async("a", "paid"), str)
    assert_type(await h.send_event_async("paid"), str)
    assert_type(await h.process_events_async(), int)
    assert_type(await h.wait_for_event_async("paid"), Any)
    assert_type(await h.compact_async(1), CompactionReport)
    deposit = vc.method(h, lambda a: a.deposit)
    assert_type(await deposit.run_async(1), int)
    assert_type(await asyncio.wrap_future(deposit.run_async(1)), int)


@workflow.virtual_actor
class Counter:
    def __init__(self, init_val: int) -> None:
        self._val = init_val

    def incr(self, val: int = 1) -> None:
        self._val += val

    @workflow.virtual_actor.readonly
    def value(self) -> int:
        return self._val


@workflow.step
def double(x: int) -> int:
    return 2 * x


@workflow.step(max_retries=1, name="halve")
def halve(x: int) -> float:
    return x / 2


def ray_spelling() -> None:
    workflow.init("memory://ray")
    counter = Counter.get_or_create("counter", 0)
    assert_type(vc.method(counter, lambda a: a.value).run(), int)
    assert_type(workflow.get_actor(actor_id="counter"), vc.ActorHandle[Any])
    assert_type(workflow.get_status("counter"), workflow.WorkflowStatus)
    assert_type(workflow.list_all(workflow.FAILED), list[tuple[str, workflow.WorkflowStatus]])
    assert_type(workflow.resume("counter"), vc.ActorFuture[list[Any]])
    assert_type(double.step(2), workflow.StepNode)
    assert_type(halve.options(max_retries=2).step(x=3), workflow.StepNode)
    assert_type(double.step(halve.step(4)), workflow.StepNode)
