"""Each line marked ``# E:`` and a text must be reported by mypy (with the plugin) with that
text; nothing else may be reported. An overloaded actor method: a call that matches no
overload item is an error, and each item's result has that item's type, not the union."""

from __future__ import annotations

from typing import overload

import vactor_cloud as vc


@vc.virtual_actor
class Echo:
    @overload
    def echo(self, x: int) -> int: ...
    @overload
    def echo(self, x: str, *, loud: bool = False) -> str: ...
    def echo(self, x: int | str, *, loud: bool = False) -> int | str:
        return x

    @overload
    async def fetch(self, key: int) -> bytes: ...
    @overload
    async def fetch(self, key: str) -> list[str]: ...
    async def fetch(self, key: int | str) -> bytes | list[str]:
        return b""


def wrong() -> None:
    h = Echo.get_or_create("e")
    h.echo.run(1.5)  # E: No overload variant of "run" matches argument type "float"
    h.echo.run(1, loud=True)  # E: No overload variant of "run" matches argument types "int", "bool"
    h.echo.run()  # E: All overload variants of "run" require at least one argument
    h.echo.run_async(b"x")  # E: No overload variant of "run_async" matches argument type "bytes"
    h.echo.options(idempotency_key="k").run(None)  # E: No overload variant of "run" matches
    h.echo.options(nope=1)  # E: Unexpected keyword argument "nope" for overloaded function "options"
    h.echoo.run(1)  # E: Actor class "Echo" has no method "echoo"
    # Each overload item's own result type, not the union of them:
    as_str: str = h.echo.run(1)  # E: (expression has type "int", variable has type "str")
    as_int: int = h.echo.run("s")  # E: (expression has type "str", variable has type "int")
    later: int = vc.get(h.echo.run_async("s"))  # E: (expression has type "str", variable has type "int")
    future: vc.ActorFuture[str] = h.echo.run_async(1)  # E: expression has type "ActorFuture[int]"
    # async def items give their result, not a coroutine:
    data: str = h.fetch.run(1)  # E: (expression has type "bytes", variable has type "str")
    keys: bytes = h.fetch.run("k")  # E: (expression has type "list[str]", variable has type "bytes")
