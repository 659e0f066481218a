"""Two CLI gaps, review h109.

1. ``vactor ls --json`` on the parent of a store printed ``[]`` and nothing else, where the
   table form names the stores below the URL: it now says so on stderr, stdout still JSON.
2. ``vactor compact`` where the writers' ``fresh_window`` is above the 3600 s floor of
   ``--min-age``: the command cannot know it (a setting of theirs, stored nowhere; ``-o``
   refuses settings), took it for the default 5 s, and ``--min-age 3600`` deleted steps such
   writers could re-create unnoticed. ``--fresh-window`` now gives it, and a ``--min-age``
   below the default day needs it (or ``--force``); a second pass is not waited for when that
   window is long.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pytest
from cli_harness import Vactor
from test_review_retention import _age_all_steps
from test_review_user_gaps import _seed_below, _storage_args

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.testing.lanes import StoreSpec


@pytest.mark.parametrize("store_lane", ["local", "moto"], indirect=True)
def test_ls_json_above_a_store_names_the_store_below_on_stderr(
    vactor: Vactor, store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: stdout ``[]``, stderr empty."""
    below = _seed_below(store_spec, monkeypatch, "app")
    if store_spec.url.startswith("file://"):  # (an empty store: one holding none is a usage error)
        os.makedirs(os.path.join(store_spec.url.removeprefix("file://"), "actors"), exist_ok=True)
    result = vactor(*_storage_args(store_spec, store_spec.url), "ls", "--json")
    assert result.code == 0 and json.loads(result.out) == [], result
    hint = result.err.partition(" below it at ")[2].replace("file://", "")
    assert f"--storage {below.removeprefix('file://')})" in hint, result
    found = vactor(*_storage_args(store_spec, below), "ls", "--json")
    assert [row["actor_id"] for row in json.loads(found.out)] == ["p1"] and found.err == "", found


@pytest.mark.parametrize("store_lane", ["local"], indirect=True)
def test_ls_json_that_finds_nothing_with_no_store_below_prints_only_the_empty_list(
    vactor: Vactor, store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    below = _seed_below(store_spec, monkeypatch, "app")
    with_prefix = vactor(*_storage_args(store_spec, below), "ls", "--json", "nobody")
    assert with_prefix.code == 0 and json.loads(with_prefix.out) == [], with_prefix
    assert with_prefix.err == "", with_prefix
    empty = os.path.join(store_spec.url.removeprefix("file://"), "empty")
    os.makedirs(os.path.join(empty, "actors"))
    alone = vactor(*_storage_args(store_spec, empty), "ls", "--json")
    assert alone.code == 0 and json.loads(alone.out) == [] and alone.err == "", alone


# -- vactor compact with the writers' fresh_window above the 3600 s floor -----------------------------


@vc.virtual_actor
class Jot:
    def __init__(self) -> None:
        self.n = 0

    def jot(self) -> None:
        self.n += 1


def _idle_actor(store: str, actor_id: str, *, spread: bool = False) -> None:
    """An actor of 4 steps written by writers with ``fresh_window=7200`` (a setting of theirs,
    stored nowhere), in a burst 9000 s ago; ``spread``: step k 9000 - 1000 k s ago instead."""
    vc.init(store, settings=vc.Settings(fresh_window=7200.0))
    try:
        for _ in range(3):
            Jot.get_or_create(actor_id).jot.run()
        log = vc.get_runtime().core(actor_id).log
        _age_all_steps(log, 9000.0)
        if spread:
            for step in (1, 2, 3):
                _redate(log, step, 1000.0 * step)
    finally:
        vc.shutdown()


def _redate(log: Any, step: int, later: float) -> None:
    record = _sync.sync(log.read_step(step))
    moved = dataclasses.replace(record, time=record.time + later)
    _sync.sync(log.store.put(log.step_key(step), moved.encode(log.step_key(step), log.signing_key)))


def _steps_left(store: str, actor_id: str) -> list[int]:
    vc.init(store)
    try:
        return sorted(entry.step for entry in vc.ActorHandle(actor_id).history())
    finally:
        vc.shutdown()


def test_compact_refuses_a_min_age_below_the_writers_fresh_window_it_is_given(
    store: str, vactor: Vactor
) -> None:
    """Writers with ``fresh_window=7200`` trust a cache that long without reading the retention
    watermark. The command cannot know it (a setting of theirs, stored nowhere, and ``-o`` is
    refused for settings): ``--min-age 3600`` passed its checks (the floor, and its own
    ``fresh_window`` of 5 s), and deleted steps such a writer could re-create unnoticed. Before:
    no way to say so (``--fresh-window`` was an unknown argument)."""
    _idle_actor(store, "jot-1")
    refused = vactor("compact", "jot-1", "--keep-last", "1", "--min-age", "3600", "--fresh-window", "7200")
    assert refused.code == 2, refused
    assert "below the writers' fresh_window of 7200 s" in refused.err, refused
    assert _steps_left(store, "jot-1") == [0, 1, 2, 3]


def test_compact_with_a_long_fresh_window_does_not_wait_it_for_a_second_pass(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second pass over actors idle since a burst waits the writers' ``fresh_window``: two
    hours here. It is not made then: the command says to run again that much later."""
    _idle_actor(store, "jot-2")
    waits: list[float] = []
    monkeypatch.setattr(_sync, "sleep", waits.append)
    result = vactor("compact", "jot-2", "--keep-last", "1", "--min-age", "7200", "--fresh-window", "7200")
    assert result.code == 0, result
    assert waits == [], waits
    assert "run vactor compact again in 7200 s" in result.err, result
    assert _steps_left(store, "jot-2") == [0, 1, 2, 3]  # (held: no writer's step shows them old)


def test_compact_below_a_day_without_the_writers_fresh_window_is_refused_saying_to_give_it(
    store: str, vactor: Vactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``--min-age 3600`` ran, taking the writers' ``fresh_window`` for the default 5 s;
    with theirs at 7200 it deleted steps they could re-create unnoticed. Below the default of a
    day (``compaction.DEFAULT_MIN_AGE``) it now needs ``--fresh-window`` (or ``--force``)."""
    _idle_actor(store, "jot-3", spread=True)  # (steps 0 and 1 old enough for --min-age 3600)
    waits: list[float] = []
    monkeypatch.setattr(_sync, "sleep", waits.append)
    refused = vactor("compact", "jot-3", "--keep-last", "1", "--min-age", "3600")
    assert refused.code == 2, refused
    assert "--fresh-window" in refused.err and "stored nowhere" in refused.err, refused
    assert _steps_left(store, "jot-3") == [0, 1, 2, 3]  # (before: [2, 3])
    by_default = vactor("compact", "jot-3", "--keep-last", "1")  # (a day: no --fresh-window needed)
    assert by_default.code == 0 and _steps_left(store, "jot-3") == [0, 1, 2, 3], by_default
    given = vactor("compact", "jot-3", "--keep-last", "1", "--min-age", "3600", "--fresh-window", "5")
    assert given.code == 0 and _steps_left(store, "jot-3") == [2, 3], given  # (writers at 5 s: safe)
