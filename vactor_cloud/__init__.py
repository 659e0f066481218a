"""vactor_cloud: durable virtual actors whose state lives on an object store.

A class decorated with :data:`virtual_actor` becomes an actor addressed by
id. Every mutating call restores the state from storage, runs the method and
commits the new state as an immutable step with a create-only conditional
put, so processes on different machines can call the same actor safely.
"""

from __future__ import annotations

from vactor_cloud.actor import ActorClass, get_actor, get_actor_async, virtual_actor
from vactor_cloud.batch import CallContext, current_call
from vactor_cloud.errors import (
    ActorDefinitionError,
    ActorNotFoundError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    FormatVersionError,
    IntegrityError,
    InvalidActorIdError,
    StateSerializationError,
    StepNotFoundError,
    StorageError,
    StorageTimeoutError,
    VactorError,
)
from vactor_cloud.events import send_event, send_event_async
from vactor_cloud.future import ActorFuture, get
from vactor_cloud.handle import ActorHandle, ActorMethod, ReentrantCallError
from vactor_cloud.history import ActorInfo, HistoryEntry, list_actors
from vactor_cloud.runtime import get_runtime, init, shutdown
from vactor_cloud.settings import Settings
from vactor_cloud.subtask import Subtask, subtask
from vactor_cloud.timer_runner import TickReport, fire_due_timers

__all__ = [
    "ActorClass",
    "ActorDefinitionError",
    "ActorFuture",
    "ActorHandle",
    "ActorInfo",
    "ActorMethod",
    "ActorNotFoundError",
    "CallContext",
    "CommitConflictError",
    "CommitOutcomeUnknownError",
    "FormatVersionError",
    "HistoryEntry",
    "IntegrityError",
    "InvalidActorIdError",
    "ReentrantCallError",
    "Settings",
    "StateSerializationError",
    "StepNotFoundError",
    "StorageError",
    "StorageTimeoutError",
    "Subtask",
    "TickReport",
    "VactorError",
    "__version__",
    "current_call",
    "fire_due_timers",
    "get",
    "get_actor",
    "get_actor_async",
    "get_runtime",
    "init",
    "list_actors",
    "send_event",
    "send_event_async",
    "shutdown",
    "subtask",
    "virtual_actor",
]

__version__ = "0.1.0"
