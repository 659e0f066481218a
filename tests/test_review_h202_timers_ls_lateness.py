"""``vactor timers ls``: the LATE column in units a reader takes in at a glance."""

from __future__ import annotations

import re

from actors import Tally
from cli_harness import Vactor, timers_ls_cells

import vactor_cloud as vc

DAY = 86400.0


def test_timers_ls_says_how_late_in_the_largest_units_that_fit_in_one_field(
    vactor: Vactor, store: str
) -> None:
    """Before, LATE was seconds alone: a timer due in an hour ``-3599.874s``, one due in a
    month ``-2591999.874s``, one long overdue ``+1796500123.456s``: a count of digits to
    read. It is now ``-59m59s``, ``-29d23h``, ``+20792d11h`` (one field still, for ``awk``;
    under a minute the seconds to the millisecond, as before); ``--json``'s ``late_s`` keeps
    the seconds."""
    vc.init(store)
    try:
        Tally.get_or_create("soon").incr.options(delay=0.001).run()
        Tally.get_or_create("hour").incr.options(delay=3600).run()
        Tally.get_or_create("month").incr.options(delay=30 * DAY).run()
        Tally.get_or_create("overdue").incr.options(at=1.0).run()
    finally:
        vc.shutdown()
    late = {cells[2]: cells[1] for cells in timers_ls_cells(vactor)}
    assert len(late) == 4, late
    assert re.fullmatch(r"\+\d+\.\d{3}s", late["soon"]), late
    assert re.fullmatch(r"-59m[0-5]\ds", late["hour"]), late
    assert late["month"] == "-29d23h", late
    assert re.fullmatch(r"\+\d{5}d\d\dh", late["overdue"]), late
    as_json = vactor("--json", "timers", "ls").json()
    assert isinstance(as_json, list)
    seconds = {entry["actor"]: entry["late_s"] for entry in as_json}
    assert -3600 < seconds["hour"] < -3500 and seconds["overdue"] > 1e9, seconds
