"""Must type-check cleanly (mypy --strict with the plugin): an overloaded actor method
(``@typing.overload``) keeps its overloads through the handle, ``run`` and ``run_async`` each."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, assert_type, overload

import vactor_cloud as vc

T = TypeVar("T")


@vc.virtual_actor
class Echo:
    @overload
    def echo(self, x: int) -> int: ...
    @overload
    def echo(self, x: str, *, loud: bool = False) -> str: ...
    def echo(self, x: int | str, *, loud: bool = False) -> int | str:
        return x.upper() if isinstance(x, str) and loud else x

    @overload
    async def fetch(self, key: int) -> bytes: ...
    @overload
    async def fetch(self, key: str) -> list[str]: ...
    async def fetch(self, key: int | str) -> bytes | list[str]:
        return b"" if isinstance(key, int) else [key]

    @overload
    def peek(self) -> None: ...
    @overload
    def peek(self, items: list[T]) -> T: ...
    @vc.virtual_actor.readonly
    def peek(self, items: list[T] | None = None) -> T | None:
        return None if items is None else items[0]


class Mixin:
    @overload
    def size(self, x: str) -> int: ...
    @overload
    def size(self, x: bytes) -> float: ...
    def size(self, x: str | bytes) -> int | float:
        return len(x)


@vc.virtual_actor
class Box(Mixin, Generic[T]):
    def __init__(self, item: T) -> None:
        self.item = item

    @overload
    def get(self) -> T: ...
    @overload
    def get(self, default: T) -> T: ...
    @overload
    def get(self, default: None, strict: bool) -> T | None: ...
    def get(self, default: T | None = None, strict: bool = False) -> T | None:
        return self.item


def typed() -> None:
    h = Echo.get_or_create("e")
    assert_type(h.echo.run(1), int)
    assert_type(h.echo.run("s"), str)
    assert_type(h.echo.run("s", loud=True), str)
    assert_type(h.echo.run(x=2), int)
    assert_type(h.echo.run_async(1), vc.ActorFuture[int])
    assert_type(h.echo.run_async("s"), vc.ActorFuture[str])
    assert_type(vc.get(h.echo.run_async("s")), str)
    # .options() keeps the overloads.
    assert_type(h.echo.options(idempotency_key="k").run(1), int)
    assert_type(h.echo.options(max_retries=1).options(name="n").run_async("s"), vc.ActorFuture[str])
    # async def items: the runtime awaits them, so run() gives their result.
    assert_type(h.fetch.run(1), bytes)
    assert_type(h.fetch.run("k"), list[str])
    assert_type(h.fetch.run_async("k"), vc.ActorFuture[list[str]])
    # A generic item binds its type variables per call; a read-only implementation is fine.
    assert_type(h.peek.run(), None)
    assert_type(h.peek.run([1.5]), float)
    assert_type(h.peek.run_async(["a"]), vc.ActorFuture[str])
    assert_type(h.peek.run([1.5], at_step=2), float)  # each item of a read-only method takes at_step=
    # Bound methods keep the overloads too.
    run = h.echo.run
    assert_type(run("s"), str)
    # Still an ActorMethod.
    method: vc.ActorMethod[..., Any] = h.echo
    assert_type(method.run(1), Any)


def typed_generic(b: vc.ActorHandle[Box[int]]) -> None:
    # The actor class's own type variables are those of the handle's type.
    assert_type(b.get.run(), int)
    assert_type(b.get.run(3), int)
    assert_type(b.get.run(None, True), int | None)
    assert_type(b.get.run_async(None, strict=False), vc.ActorFuture[int | None])
    # An overloaded method inherited from a plain base class.
    assert_type(b.size.run("s"), int)
    assert_type(b.size.run(b"s"), float)
