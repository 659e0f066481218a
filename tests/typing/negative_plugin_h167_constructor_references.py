"""Each line marked ``# E:`` and a text must be reported by mypy (with the plugin) with that
text; nothing else may be reported (review-h167). A dataclass or attrs actor's
``get_or_create`` taken as a value (``make = Tally.get_or_create``, a callback handed to
``Executor.submit``) takes the parameters of the ``__init__`` mypy's dataclasses or attrs plugin
makes, as a direct call does: it took none (the late ``__init__`` was read only at direct
calls), every argument "too many"."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar, assert_type

import attrs

import vactor_cloud as vc

T = TypeVar("T")


@vc.virtual_actor
@dataclass
class Tally:
    n: int = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


@vc.virtual_actor
@dataclass
class Holder(Generic[T]):
    item: T


@vc.virtual_actor
@attrs.define
class Meter:
    reading: float


def right() -> None:
    make = Tally.get_or_create
    assert_type(make("t", 3), vc.ActorHandle[Tally])
    assert_type(make("t", n=3).add.run(1), int)
    with ThreadPoolExecutor() as pool:
        pool.submit(Tally.get_or_create, "t", 3)
        pool.submit(Meter.get_or_create, "m", 1.5)
    hold = Holder.get_or_create
    assert_type(hold("h", 3), vc.ActorHandle[Holder[int]])
    assert_type(Holder.get_or_create("h", "s"), vc.ActorHandle[Holder[str]])


async def right_async() -> None:
    make = Tally.get_or_create_async
    assert_type(await make("t", 3), vc.ActorHandle[Tally])


def wrong() -> None:
    make = Tally.get_or_create
    make("t", "three")  # E: Argument 2 has incompatible type "str"; expected "int"
    meter = Meter.get_or_create
    meter("m")  # E: Too few arguments
