"""Review h153: ``repair_index`` raised one of its actors' failures with a note naming every actor
that failed, added to the exception itself. An exception can be raised to several callers: a
core's failed load is given to each caller that waited behind it (``ActorCore.ensure_loaded``),
so two repairs of one damaged actor, running at once, raised the same object: each added its
note to it (two notes, one naming the other repair's actors). Each repair now raises a copy of
its own (the type, message, attributes, cause and notes before kept), the shared one untouched."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vactor_cloud.errors import ActorNotFoundError, DamagedObjectError, NotFoundError
from vactor_cloud.storage import MemoryStore
from vactor_cloud.timers import repair_index

pytestmark = pytest.mark.vactor_lanes("memory")


class DamagedActor(LookupError):
    def __init__(self, actor_id: str) -> None:
        super().__init__(f"actor {actor_id!r} is damaged")
        self.actor_id = actor_id


def test_two_repairs_failing_on_one_shared_exception_each_raise_their_own_note() -> None:
    shared = DamagedActor("x")
    shared.add_note("a note of the failure itself")
    cause = OSError("the read that failed")
    shared.__cause__ = cause

    async def read_extra(actor_id: str) -> dict[str, Any]:
        if actor_id == "x":
            await asyncio.sleep(0)  # (both repairs are under way before either raises)
            raise shared
        return {}

    async def both() -> list[Any]:
        store = MemoryStore()
        return await asyncio.gather(
            repair_index(store, ["a", "x"], read_extra),
            repair_index(store, ["x", "b", "c"], read_extra),
            return_exceptions=True,
        )

    first, second = asyncio.run(both())
    for error, total in ((first, 2), (second, 3)):
        assert isinstance(error, DamagedActor) and str(error) == "actor 'x' is damaged"
        assert error.actor_id == "x" and error.__cause__ is cause
        notes = error.__notes__
        assert notes[0] == "a note of the failure itself" and len(notes) == 2, notes
        assert f"failed for 1 of {total} actors: 'x' (DamagedActor)" in notes[1], notes
    assert first is not second
    assert shared.__notes__ == ["a note of the failure itself"]  # (before: both repairs' notes added)


@pytest.mark.parametrize(
    "shared",
    [
        NotFoundError("actors/x/steps/1 is gone", "actors/x/steps/1"),
        ActorNotFoundError("x", "memory://here"),
        DamagedObjectError("actors/x/steps/1", "its checksum does not match"),
        FileNotFoundError(2, "No such file", "/tmp/x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_failure_a_repair_raises_is_the_shared_one_in_all_but_its_note(shared: BaseException) -> None:
    async def read_extra(actor_id: str) -> dict[str, Any]:
        raise shared

    with pytest.raises(type(shared)) as caught:
        asyncio.run(repair_index(MemoryStore(), ["x"], read_extra))
    error = caught.value
    assert error is not shared and type(error) is type(shared)
    assert (
        str(error) == str(shared)
        and repr(error) == repr(shared)
        and vars(error) == vars(shared) | {"__notes__": error.__notes__}
    )
    assert len(error.__notes__) == 1 and not hasattr(shared, "__notes__")
