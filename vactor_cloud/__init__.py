"""vactor_cloud: durable virtual actors whose state lives on an object store.

A class decorated with :data:`virtual_actor` becomes an actor addressed by
id. Every mutating call restores the state from storage, runs the method and
commits the new state as an immutable step with a create-only conditional
put, so processes on different machines can call the same actor safely.
"""

from __future__ import annotations

import copyreg
import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from vactor_cloud.errors import (
    ActorBusyError,
    ActorClassChangedError,
    ActorDefinitionError,
    ActorDeletedError,
    ActorNotFoundError,
    CallNotFoundError,
    CallPendingError,
    CommitConflictError,
    CommitOutcomeUnknownError,
    FormatVersionError,
    IntegrityError,
    InvalidActorIdError,
    NestedCallPendingError,
    OtherPythonError,
    RuntimeShutdownError,
    StateProtocolError,
    StateSerializationError,
    StepNotFoundError,
    StepsMissingError,
    StorageError,
    StorageNotChosenError,
    StorageTimeoutError,
    VactorError,
    VirtualActorNotInitializedError,
)

if TYPE_CHECKING:
    from vactor_cloud.actor import (
        ActorClass,
        delete_actor,
        delete_actor_async,
        get_actor,
        get_actor_async,
        virtual_actor,
    )
    from vactor_cloud.batch import CallContext, current_call
    from vactor_cloud.counters import stats
    from vactor_cloud.events import send_event, send_event_async
    from vactor_cloud.future import ActorFuture, get
    from vactor_cloud.handle import ActorHandle, ActorMethod, ReentrantCallError
    from vactor_cloud.history import ActorInfo, HistoryEntry, list_actors
    from vactor_cloud.method_select import method
    from vactor_cloud.runtime import get_runtime, init, shutdown
    from vactor_cloud.settings import Settings
    from vactor_cloud.subtask import Subtask, subtask
    from vactor_cloud.timer_report import TickReport
    from vactor_cloud.timer_runner import fire_due_timers, run_timers

__all__ = [
    "ActorBusyError",
    "ActorClass",
    "ActorClassChangedError",
    "ActorDefinitionError",
    "ActorDeletedError",
    "ActorFuture",
    "ActorHandle",
    "ActorInfo",
    "ActorMethod",
    "ActorNotFoundError",
    "CallContext",
    "CallNotFoundError",
    "CallPendingError",
    "CommitConflictError",
    "CommitOutcomeUnknownError",
    "FormatVersionError",
    "HistoryEntry",
    "IntegrityError",
    "InvalidActorIdError",
    "NestedCallPendingError",
    "OtherPythonError",
    "ReentrantCallError",
    "RuntimeShutdownError",
    "Settings",
    "StateProtocolError",
    "StateSerializationError",
    "StepNotFoundError",
    "StepsMissingError",
    "StorageError",
    "StorageNotChosenError",
    "StorageTimeoutError",
    "Subtask",
    "TickReport",
    "VactorError",
    "VirtualActorNotInitializedError",
    "__version__",
    "current_call",
    "delete_actor",
    "delete_actor_async",
    "fire_due_timers",
    "get",
    "get_actor",
    "get_actor_async",
    "get_runtime",
    "init",
    "list_actors",
    "method",
    "run_timers",
    "send_event",
    "send_event_async",
    "shutdown",
    "stats",
    "subtask",
    "virtual_actor",
]

__version__ = "0.1.0"

#: public name -> the module defining it. Imported on first use (PEP 562), so that
#: ``import vactor_cloud`` costs about as much as starting Python: a serverless
#: function pays for asyncio, cloudpickle and the storage clients only when it
#: first uses them.
_LAZY: dict[str, str] = {
    "ActorClass": "vactor_cloud.actor",
    "virtual_actor": "vactor_cloud.actor",
    "delete_actor": "vactor_cloud.actor",
    "delete_actor_async": "vactor_cloud.actor",
    "get_actor": "vactor_cloud.actor",
    "get_actor_async": "vactor_cloud.actor",
    "CallContext": "vactor_cloud.batch",
    "current_call": "vactor_cloud.batch",
    "stats": "vactor_cloud.counters",
    "send_event": "vactor_cloud.events",
    "send_event_async": "vactor_cloud.events",
    "ActorFuture": "vactor_cloud.future",
    "get": "vactor_cloud.future",
    "ActorHandle": "vactor_cloud.handle",
    "ActorMethod": "vactor_cloud.handle",
    "ReentrantCallError": "vactor_cloud.handle",
    "ActorInfo": "vactor_cloud.history",
    "HistoryEntry": "vactor_cloud.history",
    "list_actors": "vactor_cloud.history",
    "method": "vactor_cloud.method_select",
    "Settings": "vactor_cloud.settings",
    "get_runtime": "vactor_cloud.runtime",
    "init": "vactor_cloud.runtime",
    "shutdown": "vactor_cloud.runtime",
    "Subtask": "vactor_cloud.subtask",
    "TickReport": "vactor_cloud.timer_report",
    "fire_due_timers": "vactor_cloud.timer_runner",
    "run_timers": "vactor_cloud.timer_runner",
    "subtask": "vactor_cloud.subtask",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vactor_cloud' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Keeps ``vactor_cloud.subtask`` the function when the module of that name is imported.

    Importing a submodule binds it on its package; with eager imports the
    ``from vactor_cloud.subtask import subtask`` line rebound the name
    afterwards, and lazily nothing would: this does it instead.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


def _reduce_package(module: types.ModuleType) -> tuple[Any, tuple[str]]:
    # Pickled by reference, as pickle and cloudpickle do for plain modules (their
    # dispatch is keyed on the exact type, which is now _Package).
    return importlib.import_module, (module.__name__,)


copyreg.pickle(_Package, _reduce_package)
sys.modules[__name__].__class__ = _Package
