"""``vactor call``: each ARG (and ``--kwargs``) is read as the JSON value it spells."""

from __future__ import annotations

import pytest
from actors import Tally
from cli_harness import Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_OK, EXIT_USAGE


@pytest.mark.parametrize(
    "argv",
    [("1e400",), ("--", "-1.5e309"), ("--kwargs", '{"by": 2e308}')],
    ids=["arg", "negative", "kwargs"],
)
def test_call_refuses_a_number_beyond_a_floats_range(
    vactor: Vactor, store: str, argv: tuple[str, ...]
) -> None:
    """Before, ``vactor call t incr 1e400`` (a JSON number no float holds: Python's json module
    reads it as ``inf``) was applied: ``inf`` went into the actor's durable state, a value the
    user never typed (``Infinity``, typed, is still taken). It is now a usage error naming the
    number, and nothing is applied."""
    vc.init(store)
    try:
        Tally.get_or_create("t")
    finally:
        vc.shutdown()
    result = vactor("call", "t", "incr", *argv)
    assert result.code == EXIT_USAGE, result
    line = one_line_error(result)
    assert "beyond a float's range" in line and argv[-1].split()[-1].strip("}") in line, line
    assert vactor("call", "t", "get").out.strip() == "0"
    applied = vactor("call", "t", "incr", "2.5e3")
    assert applied.code == EXIT_OK and applied.out.strip() == "2500.0", applied
