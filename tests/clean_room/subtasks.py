"""Sub-task checkpoints (subworkflows.md, "Storage layout and cleanup"; protocol.md, "Object
layout"): a keyed call's id, a child's fingerprint, and its memoized result."""

from __future__ import annotations

import hashlib
import pickle
import time
import uuid
from typing import Any

import cloudpickle

from .actor_log import Log
from .envelope import Object, encode


def keyed_call_id(actor: str, idempotency_key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{actor}/{idempotency_key}").hex


def fingerprint(function: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``function`` is ``module.QualName``; the digest is of the pickle of (None, args, kwargs)."""
    return f"{function}:{hashlib.sha256(cloudpickle.dumps((None, args, kwargs))).hexdigest()[:16]}"


def task_key(actor: str, call_id: str, position: int) -> str:
    return f"actors/{actor}/tasks/{call_id}/{position:06d}"


def checkpoint(log: Log, call_id: str, method: str, position: int, print_: str, value: Any) -> bool:
    """Memoize a pickle actor's child result; False: a checkpoint is there already."""
    key = task_key(log.actor, call_id, position)
    meta = {"kind": "task", "actor": log.actor, "call_id": call_id, "method": method}
    meta |= {"position": position, "fingerprint": print_, "serializer": "pickle", "time": time.time()}
    result = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return log.store.create(key, encode(key, meta, {"result": result}, signing_key=log.signing_key))


def read_checkpoint(log: Log, call_id: str, position: int) -> tuple[Object, Any] | None:
    obj = log.read(task_key(log.actor, call_id, position))
    if obj is None:
        return None
    assert obj.meta["kind"] == "task" and obj.meta["position"] == position
    return obj, cloudpickle.loads(obj.parts["result"])
