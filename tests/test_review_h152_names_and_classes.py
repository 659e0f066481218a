"""Review h152, a mutation sweep of ``vactor_cloud/ids.py``, ``keys.py``, ``class_tag.py`` and
``definition.py`` (names a caller may give, the key layout, a class's identity, its method
table and fresh defaults). Each test fails with the mutation its docstring names applied;
the table of the sweep (mutation: killed by / why left) is below.

TABLE
"""

from __future__ import annotations

import pytest

from vactor_cloud.ids import MAX_ID_BYTES, validate_idempotency_key
from vactor_cloud.keys import (
    actor_id_of,
    class_key,
    is_class_key,
    timer_index_entry,
    timer_index_key,
    timer_runner_key,
    timer_runner_of,
)


def test_an_idempotency_key_longer_than_the_limit_is_refused() -> None:
    """Mutation: ``validate_idempotency_key`` without its length check. A key of any length was
    accepted, and recorded in the table of every step of its window and in every call record
    (a 1 MB key, a 1 MB addition to every step for the window)."""
    assert validate_idempotency_key("k" * MAX_ID_BYTES) == "k" * MAX_ID_BYTES
    for key in ("k" * (MAX_ID_BYTES + 1), "é" * (MAX_ID_BYTES // 2 + 1)):  # (bytes of UTF-8, not characters)
        with pytest.raises(ValueError, match="longer than the limit"):
            validate_idempotency_key(key)


def test_a_key_names_an_actor_only_under_its_own_folder() -> None:
    """Mutation: ``actor_id_of`` without its check for the ``/`` after the id. The key
    ``actors/abc`` (no object of the layout: every one lies in the actor's folder) was
    taken for one of actor ``abc``, and an object written there bound to that actor."""
    assert actor_id_of("actors/abc/steps/00000000000000000001") == "abc"
    assert actor_id_of("actors/abc") is None
    assert actor_id_of("actors//steps") is None
    assert actor_id_of("timers/abc/x") is None


def test_a_class_key_is_one_under_an_actors_folder_only() -> None:
    """Mutation: ``is_class_key`` without its ``actors/`` check. A timer's due-index entry of
    the actor ``class`` (``timers/<due>/class/<key>``) was taken for a stored class body: the
    ``vactor`` command, told that key was missing, said a class was missing (import it)
    instead of pointing at the store."""
    assert is_class_key(class_key("a", "0" * 64))
    assert not is_class_key(timer_index_key(1, "class", "tick"))
    assert not is_class_key("actors/a/class/")


def test_only_the_due_index_spelling_is_an_entry() -> None:
    """Mutations: ``timer_index_entry`` accepting a generation spelt with leading zeros, a due
    time not of 20 ASCII digits, or a key of more than three parts after ``timers/``. The
    entry ``timers/<due>-007/a/k`` was parsed as generation 7; its deletion rebuilt the key
    ``...-7/a/k``, deleted nothing, and the stray entry was listed, and fired, again and again."""
    key = timer_index_key(5, "a", "k", 7)
    assert timer_index_entry(key) == (5, "a", "k", 7)
    assert timer_index_entry(timer_index_key(5, "a", "k")) == (5, "a", "k", None)
    assert timer_index_entry(key.replace("-7/", "-007/")) is None
    assert timer_index_entry(key.replace("-7/", "-/")) is None
    # a key with a part more: taken for the entry of (a, k), deleting it would delete that one
    assert timer_index_entry(f"{key}/more") is None
    # a due time of other digits, or fewer: rebuilt, another key
    assert timer_index_entry("timers/5/a/k") is None
    assert timer_index_entry(f"timers/{chr(0x661) * 20}/a/k") is None


def test_a_heartbeat_key_names_a_runner_only_directly_under_its_folder() -> None:
    """Mutation: ``timer_runner_of`` accepting a key with a ``/`` after the folder. A stray
    object at ``timer-runners/a/b`` was counted as a live runner ``a/b`` (an id no runner can
    have), and the actors split among the runners gave it a share nobody served."""
    assert timer_runner_of(timer_runner_key("r1")) == "r1"
    assert timer_runner_of("timer-runners/a/b") is None
    assert timer_runner_of("timer-runners/") is None
