"""What a call hears when shutdown stops its commit between two attempts.

The commit loop looks at the runtime before each attempt; once shutdown began it starts none
and fails the batch. After a first attempt whose put lost a race, the method's body has run:
"shut down ... before this call started" (what it said) is false, and tells the caller the
body never ran (its side effects outside the actor's state did happen).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest
from test_combining import init_switchable

import vactor_cloud as vc
from vactor_cloud.errors import RuntimeShutdownError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

RAN: list[str] = []


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def add(self, who: str) -> int:
        RAN.append(who)
        self.n += 1
        return self.n


@pytest.mark.usefixtures("runtime_off")
def test_a_commit_stopped_by_shutdown_after_its_body_ran_does_not_say_the_call_never_started(
    store_spec: StoreSpec,
) -> None:
    store = init_switchable(store_spec, combine=False)
    tally = Tally.get_or_create("t")
    assert tally.add.run("first") == 1
    runtime = vc.get_runtime()
    RAN.clear()
    lost: list[str] = []
    inner_around = store._around
    shutting: list[threading.Thread] = []

    async def lose_then_shut_down(operation: str, key: str, run: Any, **kw: Any) -> Any:
        if operation == "put" and "/steps/" in key and not lost:
            lost.append(key)
            core = runtime.core("t")
            mine = core.record
            assert mine is not None
            theirs = dataclasses.replace(mine, step=mine.step + 1, parent=mine.step, writer="someone-else")
            await core.log.put_step(theirs)  # another writer's: our put loses this race
            shutdown = threading.Thread(target=vc.shutdown)
            shutdown.start()
            shutting.append(shutdown)
            while not runtime.closed:  # (bounded by the shutdown's own start)
                await asyncio.sleep(0.005)
        return await inner_around(operation, key, run, **kw)

    store._around = lose_then_shut_down  # type: ignore[method-assign]
    with pytest.raises(RuntimeShutdownError) as stopped:
        tally.add.run("second")
    for thread in shutting:
        thread.join(30)
        assert not thread.is_alive()
    assert lost and RAN == ["second"], (lost, RAN)
    message = str(stopped.value)
    assert "before this call started" not in message, message
    assert "while this call ran" in message and "not applied" in message, message
