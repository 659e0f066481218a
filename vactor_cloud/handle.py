"""Handles: what ``get_or_create`` and ``get_actor`` return, and their method proxies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vactor_cloud import _sync
from vactor_cloud.batch import PendingCall, current_call
from vactor_cloud.compaction import DEFAULT_MIN_AGE
from vactor_cloud.definition import ActorClass, MethodInfo
from vactor_cloud.errors import VactorError
from vactor_cloud.future import ActorFuture
from vactor_cloud.ids import validate_idempotency_key

if TYPE_CHECKING:
    from vactor_cloud.compaction import CompactionReport
    from vactor_cloud.history import HistoryEntry

__all__ = ["ActorHandle", "ActorMethod", "ReentrantCallError"]


class ReentrantCallError(VactorError, RuntimeError):
    """An actor's writer method called a method of the same actor (it would deadlock)."""


@dataclass(frozen=True, slots=True)
class CallOptions:
    idempotency_key: str | None = None
    at_step: int | None = None


def _get_actor_handle(actor_id: str) -> ActorHandle:
    return ActorHandle(actor_id)


class ActorHandle:
    """A reference to the actor ``actor_id``; cheap, picklable, valid in any process.

    Attribute access gives the actor's methods: ``handle.incr.run(1)``. The
    handle holds no state of its own; it talks to the current runtime, so it
    keeps working after ``fork`` and when sent to another process.
    """

    __slots__ = ("actor_id",)

    def __init__(self, actor_id: str) -> None:
        self.actor_id = actor_id

    def _definition(self) -> ActorClass:
        from vactor_cloud.runtime import get_runtime

        core = get_runtime().core(self.actor_id)
        if core.definition is None:
            _sync.sync(core.ensure_loaded())
        assert core.definition is not None
        return core.definition

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        definition = self._definition()
        info = definition.methods.get(name)
        if info is None:
            raise AttributeError(
                f"{definition.cls.__qualname__} (actor {self.actor_id!r}) has no method {name!r}; "
                f"its methods: {', '.join(sorted(definition.methods)) or 'none'}"
            )
        return ActorMethod(self.actor_id, info)

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Committed steps, newest first (see :func:`vactor_cloud.history.history`)."""
        from vactor_cloud.history import history

        return history(self.actor_id, limit)

    def state_at(self, step: int) -> Any:
        """A read-only instance as it was after ``step`` (see :func:`vactor_cloud.history.state_at`)."""
        from vactor_cloud.history import state_at

        return state_at(self.actor_id, step)

    def compact(self, keep_last: int, *, min_age: float = DEFAULT_MIN_AGE) -> CompactionReport:
        """Delete steps older than the ``keep_last`` newest (see :mod:`vactor_cloud.compaction`).

        Never deletes the newest step, nor a step whose successor is younger
        than ``min_age`` seconds; safe while other processes call the actor.
        """
        from vactor_cloud.compaction import compact_actor

        return _sync.sync(compact_actor(self.actor_id, keep_last, min_age=min_age))

    async def compact_async(self, keep_last: int, *, min_age: float = DEFAULT_MIN_AGE) -> CompactionReport:
        """Async twin of :meth:`compact`; awaitable from any event loop."""
        import asyncio

        from vactor_cloud.compaction import compact_actor

        coro = compact_actor(self.actor_id, keep_last, min_age=min_age)
        return await asyncio.wrap_future(_sync.submit(coro))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_get_actor_handle, (self.actor_id,))

    # -- external events (vactor_cloud.events); these names shadow actor methods of the same name
    def send_event(
        self, name: str, payload: Any = None, *, event_id: str | None = None, serializer: str = "json"
    ) -> str:
        """Send this actor event ``name``; see :func:`vactor_cloud.events.send_event`."""
        from vactor_cloud.events import send_event

        return send_event(self.actor_id, name, payload, event_id=event_id, serializer=serializer)

    async def send_event_async(
        self, name: str, payload: Any = None, *, event_id: str | None = None, serializer: str = "json"
    ) -> str:
        """Async twin of :meth:`send_event`."""
        from vactor_cloud.events import send_event_async

        return await send_event_async(self.actor_id, name, payload, event_id=event_id, serializer=serializer)

    def process_events(self) -> int:
        """Apply pending events now; see :func:`vactor_cloud.events.process_events`."""
        from vactor_cloud.events import process_events

        return process_events(self.actor_id)

    async def process_events_async(self) -> int:
        """Async twin of :meth:`process_events`."""
        from vactor_cloud.events import process_events_async

        return await process_events_async(self.actor_id)

    def wait_for_event(self, name: str, timeout: float | None = None, *, event_id: str | None = None) -> Any:
        """Block until an event ``name`` was applied; see :func:`vactor_cloud.events.wait_for_event`."""
        from vactor_cloud.events import wait_for_event

        return wait_for_event(self.actor_id, name, timeout, event_id=event_id)

    async def wait_for_event_async(
        self, name: str, timeout: float | None = None, *, event_id: str | None = None
    ) -> Any:
        """Async twin of :meth:`wait_for_event`."""
        from vactor_cloud.events import wait_for_event_async

        return await wait_for_event_async(self.actor_id, name, timeout, event_id=event_id)

    def __repr__(self) -> str:
        return f"ActorHandle({self.actor_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other.actor_id == self.actor_id

    def __hash__(self) -> int:
        return hash(("ActorHandle", self.actor_id))


class ActorMethod:
    """One method of one actor: ``run`` blocks, ``run_async`` returns an :class:`ActorFuture`."""

    __slots__ = ("_actor_id", "_info", "_options")

    def __init__(self, actor_id: str, info: MethodInfo, options: CallOptions | None = None) -> None:
        self._actor_id = actor_id
        self._info = info
        self._options = options or CallOptions()

    def options(self, *, idempotency_key: str | None = None, at_step: int | None = None) -> ActorMethod:
        """This method with call options.

        ``idempotency_key``: the first call with this key on this actor
        commits and records its result; every later call with the key (from
        any process, within the dedup window) returns that result, or
        re-raises its exception, without running the method again.

        ``at_step``: run this read-only method on the state as it was right
        after step ``at_step`` (time travel); ``StepNotFoundError`` if that
        step was compacted. ``run(at_step=N)`` is the short form.
        """
        if idempotency_key is not None:
            validate_idempotency_key(idempotency_key)
        if idempotency_key is not None and self._info.readonly:
            raise ValueError(f"{self._info.name} is read-only; idempotency keys apply to writer methods")
        if at_step is not None:
            from vactor_cloud.history import check_at_step

            check_at_step(self._info, at_step)
        return ActorMethod(
            self._actor_id,
            self._info,
            replace(self._options, idempotency_key=idempotency_key, at_step=at_step),
        )

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method and wait for its result (re-raising its exception)."""
        if _sync.in_loop_thread():
            raise RuntimeError(
                f"{self._info.name}.run() was called on vactor_cloud's IO loop; use `await ...run_async()`"
            )
        return self.run_async(*args, **kwargs).result()

    def run_async(self, *args: Any, **kwargs: Any) -> ActorFuture[Any]:
        """Queue the call and return at once; ``await`` the future or call ``.result()``.

        Calls from this process to one actor apply in the order they were
        submitted. ``TypeError`` here, before anything is queued, if the
        arguments do not fit the method.

        ``at_step=N`` (read-only methods) runs on the state after step N;
        when the method has a parameter of its own called ``at_step``, the
        keyword goes to the method and ``options(at_step=N)`` selects the step.
        """
        at_step = self._options.at_step
        if "at_step" in kwargs and "at_step" not in self._info.signature.parameters:
            from vactor_cloud.history import check_at_step

            at_step = kwargs.pop("at_step")
            check_at_step(self._info, at_step)
        return self._submit(args, kwargs, at_step)

    def _submit(self, args: tuple[Any, ...], kwargs: dict[str, Any], at_step: int | None) -> ActorFuture[Any]:
        from vactor_cloud.runtime import get_runtime

        self._info.check_arguments(args, kwargs)
        running = current_call()
        if running is not None and running.actor_id == self._actor_id and not running.readonly:
            raise ReentrantCallError(
                f"{running.method}() of actor {self._actor_id!r} called {self._info.name}() of the same "
                "actor: a writer cannot call its own actor through a handle (it would wait for itself); "
                "call the method directly on self instead"
            )
        future: ActorFuture[Any] = ActorFuture()
        key = self._options.idempotency_key
        call_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self._actor_id}/{key}").hex if key else uuid.uuid4().hex
        call = PendingCall(
            method=self._info.name,
            args=args,
            kwargs=kwargs,
            readonly=self._info.readonly or at_step is not None,
            future=future,
            call_id=call_id,
            idempotency_key=key,
            at_step=at_step,
        )
        get_runtime().core(self._actor_id).submit(call)
        return future

    def __repr__(self) -> str:
        return f"<actor method {self._actor_id}.{self._info.name}>"
