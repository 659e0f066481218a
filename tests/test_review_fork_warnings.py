"""Warnings said once per process are said once in a forked child too (review h116).

A child made by ``os.fork`` is another process with a log of its own (a worker, often), but
it inherited the sets and flags that remember which warnings the parent already gave: a short
signing key, a stored class's module values missing here, a stray key
under ``steps/``. The child never gave them. Each is now forgotten at fork, like the module
locks. (A large keyed result was one too, until such a result was stored once, as an object
of its own: ``tests/test_dedup_outcome_objects.py``, nothing to warn about.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pytest
from child_processes import fork_and_report

from vactor_cloud import actor_objects, definition, settings

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.vactor_lanes("memory"),
    pytest.mark.usefixtures("forked_children_reaped"),  # (no zombie left: see forking.children_reaped)
]

HANG = 30.0  # (a bound on a hang, not a measure)


def _warnings_of(say: Callable[[], None]) -> list[str]:
    """The warnings logger ``vactor_cloud`` gives while ``say`` runs."""
    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                said.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("vactor_cloud")
    logger.addHandler(handler)
    try:
        say()
    finally:
        logger.removeHandler(handler)
    return said


def _short_key() -> None:
    settings._warn_short_key(8)


@pytest.mark.parametrize("say", [_short_key], ids=["short-key"])
def test_a_warning_the_parent_gave_is_given_once_in_a_forked_child(say: Callable[[], None]) -> None:
    _warnings_of(say)  # the parent's own (once, whenever it was)
    assert _warnings_of(say) == []  # not twice here

    def in_the_child() -> bytes:
        return b"%d %d" % (len(_warnings_of(say)), len(_warnings_of(say)))

    assert fork_and_report(in_the_child, HANG) == b"1 0"


def test_the_sets_of_other_warnings_said_once_are_empty_in_a_forked_child() -> None:
    """A stored class's missing module values, a stray key under steps/: remembered by key."""
    definition._REPORTED.add(("tests.gone", ("TOKEN",)))
    actor_objects._STRAYS_SEEN.add("actors/a/steps/stray")
    try:

        def in_the_child() -> bytes:
            return repr((len(definition._REPORTED), len(actor_objects._STRAYS_SEEN))).encode()

        assert fork_and_report(in_the_child, HANG) == b"(0, 0)"
    finally:
        definition._REPORTED.discard(("tests.gone", ("TOKEN",)))
        actor_objects._STRAYS_SEEN.discard("actors/a/steps/stray")
