"""Entry points of the child processes of tests/test_review_callers.py (spawned: importable)."""

from __future__ import annotations

from typing import Any

from child_processes import report_stacks_on_request

import vactor_cloud as vc

report_stacks_on_request()


def add_one(handle: vc.ActorHandle[Any]) -> tuple[str, Any]:
    """``handle.add.run(1)`` in this process: ("ok", result) or (error type, message)."""
    try:
        return ("ok", handle.add.run(1))
    except Exception as exc:
        return (type(exc).__name__, str(exc))
    finally:
        vc.shutdown()


def create_and_add(actor_class: vc.ActorClass[Any], actor_id: str) -> int:
    """``actor_class.get_or_create(actor_id, 0).add.run(1)`` here (a class as a task's argument)."""
    return actor_class.get_or_create(actor_id, 0).add.run(1)
