"""Ray Workflows-compatible facade: ``from vactor_cloud import workflow``.

The seed example of Ray's virtual actors runs unchanged with
``from vactor_cloud import workflow`` and ``import vactor_cloud as ray``.
"""

from __future__ import annotations

from vactor_cloud import get_runtime
from vactor_cloud.definition import virtual_actor
from vactor_cloud.handle import ActorHandle
from vactor_cloud.runtime import init

__all__ = ["get_actor", "init", "virtual_actor"]


def get_actor(workflow_id: str) -> ActorHandle:
    """The actor whose id (Ray: ``workflow_id``) is ``workflow_id``; ``ActorNotFoundError`` if none."""
    return get_runtime().get_actor(workflow_id)
