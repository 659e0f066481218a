"""Must type-check cleanly under mypy (with the plugin) and pyright:
``vc.method(handle, lambda a: a.name)``, the typed form for checkers without plugins.
(mypy without the plugin knows no ``get_or_create``, see docs/typing.md: not checked here.)"""

from __future__ import annotations

from typing import assert_type

import vactor_cloud as vc


@vc.virtual_actor
class Account:
    def __init__(self, owner: str, balance: int = 0) -> None:
        self.owner = owner
        self.balance = balance

    def deposit(self, amount: int, *, note: str = "") -> int:
        self.balance += amount
        return self.balance

    async def audit(self, strict: bool) -> list[str]:
        return []


def typed() -> None:
    h = Account.get_or_create("a", "ann")
    deposit = vc.method(h, lambda a: a.deposit)
    assert_type(deposit.run(5), int)
    assert_type(deposit.run(5, note="x"), int)
    assert_type(deposit.run_async(5), vc.ActorFuture[int])
    assert_type(vc.get(deposit.run_async(5)), int)
    assert_type(deposit.options(idempotency_key="k").run(5), int)
    assert_type(vc.method(h, lambda a: a.audit).run(True), list[str])
