"""Two CLI gaps, review h109.

1. ``vactor ls --json`` on the parent of a store printed ``[]`` and nothing else, where the
   table form names the stores below the URL: it now says so on stderr, stdout still JSON.
2. ``vactor gc`` and ``vactor compact`` with a ``fresh_window`` above the 3600 s floor of
   ``--min-age`` (see the second part, below).
"""

from __future__ import annotations

import json
import os

import pytest
from cli_harness import Vactor
from test_review_user_gaps import _seed_below, _storage_args

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
