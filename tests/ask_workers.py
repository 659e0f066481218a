"""Child-process entry points of review h181's tests of ``call_outcome`` asked by several
processes (``test_review_h181_ask_processes``): importable, so ``spawn``-started and
fork-server children find them.

Each child asks ``handle.call_outcome(call_id)`` again and again and writes each answer as one
line (``os.write`` on an ``O_APPEND`` descriptor: a SIGKILL loses no line written).
"""

from __future__ import annotations

import os
import time
from typing import Any

from child_processes import report_stacks_on_request, wait_for_start

import vactor_cloud as vc
from vactor_cloud.errors import CallPendingError
from vactor_cloud.testing.faults import FaultConfig, install
from vactor_cloud.testing.lanes import StoreSpec

report_stacks_on_request()

#: how long a child asks before it calls the call pending for good (it ends at its answers)
ASKING = 90.0
#: answers asked for after the first one that is not "pending": each must be the same
AGAIN = 3


def answer(handle: vc.ActorHandle[Any], call_id: str) -> str:
    """One ask, as a line: ``pending``, ``outcome <repr>``, or ``<error type> <message>``."""
    try:
        return f"outcome {handle.call_outcome(call_id)!r}"
    except CallPendingError:
        return "pending"
    except Exception as exc:  # (LookupError or any other: the test reads which)
        return f"{type(exc).__name__} {exc}"


def ask_until_answered(
    spec: StoreSpec,
    actor_id: str,
    call_id: str,
    out_path: str,
    faults: str | None,
    ready: Any,
    start: Any,
    who: str,
) -> None:
    """Ask until ``AGAIN + 1`` answers other than pending came (or ``ASKING`` passed), pausing
    50 ms after each pending one. ``faults``: a :class:`FaultConfig` (JSON) to install first
    (a ``crash_*`` rule ends the child with SIGKILL where it says). ``ready``/``start``: see
    ``child_processes.start_together``."""
    spec.init()
    if faults is not None:
        install(FaultConfig.from_json(faults))
    handle = vc.get_actor(actor_id)
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        ready.put(who)
        wait_for_start(start)
        answered = 0
        give_up = time.monotonic() + ASKING
        while answered <= AGAIN and time.monotonic() < give_up:
            line = answer(handle, call_id)
            os.write(out, (line.replace("\n", " ") + "\n").encode())
            if line == "pending":
                time.sleep(0.05)
            else:
                answered += 1
    finally:
        os.close(out)
        vc.shutdown()
