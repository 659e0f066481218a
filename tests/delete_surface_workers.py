"""Entry points of the child processes of tests/test_delete_surfaces.py (spawned: importable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from child_processes import report_stacks_on_request

import vactor_cloud as vc

report_stacks_on_request()


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def use_deleted(handle: vc.ActorHandle[Any]) -> dict[str, tuple[str, Any]]:
    """What a worker that got ``handle`` (pickled before the delete) sees of the deleted actor."""
    try:
        return {
            "past": _outcome(lambda: handle.read_total.run(at_step=1)),
            "read": _outcome(lambda: handle.read_total.run()),  # noqa: PLW0108 (looked up in the try)
            "write": _outcome(lambda: handle.add.run(1)),
            "event": _outcome(lambda: vc.send_event(handle.actor_id, "ping")),
            "history": _outcome(lambda: [entry.deleted for entry in handle.history()]),
        }
    finally:
        vc.shutdown()
