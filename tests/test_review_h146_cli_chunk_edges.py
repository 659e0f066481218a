"""Review h146: the commands that list every actor a chunk at a time (``timers repair``,
``compact --all``, ``events drain``) at their chunk boundaries: ids that sort around ``/``,
exactly a chunk of actors, and a Ctrl-C while the next chunk is listed."""

from __future__ import annotations

import json

import pytest
from actors import Tally
from cli_harness import Vactor, interrupt_the_second_chunk_listing

import vactor_cloud as vc
from vactor_cloud import history
from vactor_cloud.cli import EXIT_INTERRUPTED, EXIT_OK, _chunks
from vactor_cloud.events import send_event

pytestmark = pytest.mark.vactor_lanes("local")

IDS = ["a", "a-b", "a.b", "a b", "a!", "a0", "ab", "é", "日本", "~x"]


def _seed(store: str) -> None:
    vc.init(store)
    try:
        for actor_id in IDS:
            Tally.get_or_create(actor_id).incr.options(delay=3600, timer_key="t").run()
            send_event(actor_id, "nothing-handles-it", 1, event_id=f"e-{actor_id}")
    finally:
        vc.shutdown()


@pytest.mark.parametrize("chunk", [1, 3, len(IDS), len(IDS) + 1])
def test_timers_repair_indexes_every_odd_id_once(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    _seed(store)
    monkeypatch.setattr(_chunks, "CHUNK", chunk)
    monkeypatch.setattr(history, "_ID_PAGE", 3)
    result = vactor("timers", "repair", "--json")
    assert result.code == EXIT_OK, result
    assert json.loads(result.out) == {"indexed": len(IDS)}


@pytest.mark.parametrize(
    "argv", [("timers", "repair"), ("compact", "--all", "--keep-last", "1"), ("events", "drain")]
)
def test_a_ctrl_c_while_the_next_chunk_is_listed(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...]
) -> None:
    _seed(store)
    interrupt_the_second_chunk_listing(monkeypatch, 3)
    result = vactor(*argv)
    assert result.code == EXIT_INTERRUPTED, result
    (line,) = [line for line in result.err.splitlines() if line.startswith("vactor: ")]
    # (what was done before the interrupt, of how many listed so far; and that a rerun finishes)
    assert " of the " in line and "actors listed so far" in line and "run it again" in line, line
