"""Review h145: a timer runner's heartbeat read cut short (h142, ``checked_read.py``).

Another runner's heartbeat (``timer-runners/<id>``) decides whether that runner is alive, and
so who fires which actors' timers (``timer_membership.Membership``). It was read with one GET: cut
short on the way where nothing in HTTP said so (its digest, or, unsigned, its JSON, fails), a
live runner was counted dead until its heartbeat was read again a lease later, and the others
fired its actors meanwhile (work done twice, not a timer fired twice: claims still hold).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from test_review_h142_reads_cut_short import CutsFirstReads

from vactor_cloud.storage import MemoryStore
from vactor_cloud.timer_runner import Membership


@pytest.mark.parametrize("signing_key", [None, b"k" * 32], ids=["plain", "signed"])
def test_a_live_runners_heartbeat_read_cut_short_is_read_again_and_counted(signing_key: bytes | None) -> None:
    async def scenario() -> tuple[tuple[str, ...], int]:
        inner = MemoryStore(name=f"h145-{uuid.uuid4().hex}")
        await Membership(inner, "runner-1", 60.0, "all", signing_key).beat()
        cutting = CutsFirstReads(inner, only="timer-runners/")
        live = await Membership(cutting, "runner-2", 60.0, "all", signing_key).refresh()
        return live, cutting.requests["get"]

    live, gets = asyncio.run(scenario())
    assert live == ("runner-1", "runner-2"), "a live runner, its heartbeat read cut short, was counted dead"
    assert gets == 2


@pytest.mark.parametrize("signing_key", [None, b"k" * 32], ids=["plain", "signed"])
def test_a_heartbeat_damaged_as_stored_is_read_three_times_and_not_counted(signing_key: bytes | None) -> None:
    async def scenario() -> tuple[tuple[str, ...], int]:
        inner = MemoryStore(name=f"h145-{uuid.uuid4().hex}")
        await Membership(inner, "runner-1", 60.0, "all", signing_key).beat()
        cutting = CutsFirstReads(inner, cuts=99, only="timer-runners/")
        live = await Membership(cutting, "runner-2", 60.0, "all", signing_key).refresh()
        return live, cutting.requests["get"]

    live, gets = asyncio.run(scenario())
    assert live == ("runner-2",)
    assert gets == 3
