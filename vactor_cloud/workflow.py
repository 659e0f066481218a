"""Ray Workflows-compatible facade: ``from vactor_cloud import workflow``.

The seed example of Ray's virtual actors runs unchanged with
``from vactor_cloud import workflow`` and ``import vactor_cloud as ray``.
"""

from __future__ import annotations

from typing import Any

from vactor_cloud.actor import get_actor as _get_actor
from vactor_cloud.actor import virtual_actor
from vactor_cloud.handle import ActorHandle
from vactor_cloud.runtime import init

__all__ = ["get_actor", "init", "virtual_actor"]


def get_actor(workflow_id: str | None = None, *, actor_id: str | None = None) -> ActorHandle[Any]:
    """The actor whose id (Ray: ``workflow_id`` or ``actor_id``) is given; ``ActorNotFoundError`` if none."""
    if (workflow_id is None) == (actor_id is None):
        raise TypeError("get_actor() takes one of workflow_id= or actor_id=")
    return _get_actor(workflow_id if workflow_id is not None else actor_id)  # type: ignore[arg-type]
