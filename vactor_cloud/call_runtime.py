"""What a call reads of the runtime it runs in (``vc.current_call().runtime``).

:class:`CallRuntime` is what :class:`~vactor_cloud.batch.CallContext` gives as its
``runtime``: the store and the settings, and what the library's own helpers of a running
call (sub-task checkpoints, failed-call records) use. The runtime
(:class:`~vactor_cloud.actor_runtime.Runtime`) has it; it is named here, by what is read of
it, because the runtime's module imports the module that runs the calls.
"""

from __future__ import annotations

from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from vactor_cloud.definition import ActorDefinition
from vactor_cloud.settings import Settings
from vactor_cloud.storage import ObjectStore

__all__ = ["CallRuntime", "CoreOfCall"]

T = TypeVar("T")


class CoreOfCall(Protocol):
    """What a call reads of its actor's core in this process."""

    @property
    def definition(self) -> ActorDefinition | None:
        """The actor's class as this process loaded it (None before it is loaded)."""
        ...


class CallRuntime(Protocol):
    """The runtime a call runs in, as the call sees it."""

    @property
    def store(self) -> ObjectStore:
        """The object store the actor lives on."""
        ...

    @property
    def settings(self) -> Settings:
        """The runtime's settings."""
        ...

    def run(self, coro: Coroutine[Any, Any, T], *, hint: str = "") -> T:
        """Run ``coro`` on the IO loop and wait, at most ``settings.deadline`` (then
        ``StorageTimeoutError``, ending with ``hint``)."""
        ...

    def background(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the IO loop without waiting for it."""
        ...

    async def bounded(self, coro: Coroutine[Any, Any, T], *, hint: str = "") -> T:
        """On the IO loop: await ``coro``, at most ``settings.deadline``."""
        ...

    def core(self, actor_id: str) -> CoreOfCall:
        """This process's core of ``actor_id``."""
        ...
