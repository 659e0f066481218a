"""Each line marked ``# E:`` and a text must be reported by mypy (with the plugin) with that
text; nothing else may be reported. A dataclass or attrs actor (``@dataclass`` or
``@attrs.define`` under ``@virtual_actor``): ``get_or_create`` takes the parameters of the
``__init__`` it makes (made by mypy's dataclasses or attrs plugin after this plugin's hook ran:
every argument was "too many" before). And
what the plugin adds leaves the class's own alone: a class attribute named ``cls`` keeps its
type inside the class (``Account.cls`` outside is the ActorClass's, the class)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar, assert_type

import attrs

import vactor_cloud as vc

T = TypeVar("T")


@vc.virtual_actor
@dataclass
class Tally:
    n: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, name: str) -> int:
        self.names.append(name)
        return len(self.names)


@vc.virtual_actor
@dataclass(kw_only=True)
class Levels:
    level: int
    tag: str = "x"


@vc.virtual_actor
@dataclass
class Holder(Generic[T]):
    item: T

    @vc.virtual_actor.readonly
    def get(self) -> T:
        return self.item


@vc.virtual_actor
@dataclass
class NamedTally(Tally):
    label: str = ""


@vc.virtual_actor
@attrs.define
class Meter:
    reading: float
    unit: str = "kWh"

    def add(self, amount: float) -> float:
        self.reading += amount
        return self.reading


@vc.virtual_actor
class Styled:
    cls: ClassVar[str] = "bold"

    def css(self) -> str:
        return self.cls.upper()


def right() -> None:
    assert_type(Tally.get_or_create("t", 3, ["a"]), vc.ActorHandle[Tally])
    assert_type(Tally.get_or_create("t", n=3).add.run("b"), int)
    assert_type(Levels.get_or_create("l", level=2, tag="y"), vc.ActorHandle[Levels])
    assert_type(Holder.get_or_create("h", 3), vc.ActorHandle[Holder[int]])
    assert_type(Holder.get_or_create("h", "s").get.run(at_step=1), str)
    assert_type(NamedTally.get_or_create("n", 1, [], "label"), vc.ActorHandle[NamedTally])
    assert_type(Meter.get_or_create("m", 1.5, unit="MWh").add.run(2), float)
    # Dunders read through the decorated name are the ActorClass's, as at runtime: no error.
    assert_type(Tally.__module__, str)
    assert_type(Tally.__doc__, str | None)


async def right_async() -> None:
    assert_type(await Tally.get_or_create_async("t", 3), vc.ActorHandle[Tally])


def wrong() -> None:
    Tally.get_or_create("t", "three")  # E: Argument 2 to "get_or_create" of "Tally" has incompatible
    Tally.get_or_create("t", 1, [], 5)  # E: Too many arguments for "get_or_create" of "Tally"
    Levels.get_or_create("l", 2)  # E: Too many positional arguments for "get_or_create" of "Levels"
    Levels.get_or_create("l")  # E: Missing named argument "level" for "get_or_create" of "Levels"
    Meter.get_or_create("m", "1.5")  # E: Argument 2 to "get_or_create" of "Meter" has incompatible
    Meter.get_or_create("m")  # E: Missing positional argument "reading" in call to "get_or_create" of "Meter"
    NamedTally.get_or_create("n", 1, [], 2)  # E: Argument 4 to "get_or_create" of "NamedTally"


async def wrong_async() -> None:
    await Tally.get_or_create_async("t", n="3")  # E: Argument "n" to "get_or_create_async" of "Tally"
