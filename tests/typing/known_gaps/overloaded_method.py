"""Known gap (mypy with the plugin): an overloaded actor method is ``ActorMethod[..., Any]``,
so its calls are unchecked and return ``Any``. Must check cleanly once fixed."""

from __future__ import annotations

from typing import assert_type, overload

import vactor_cloud as vc


@vc.virtual_actor
class Echo:
    @overload
    def echo(self, x: int) -> int: ...
    @overload
    def echo(self, x: str) -> str: ...
    def echo(self, x: int | str) -> int | str:
        return x


def typed() -> None:
    h = Echo.get_or_create("e")
    assert_type(h.echo.run(1), int)
    assert_type(h.echo.run("s"), str)
