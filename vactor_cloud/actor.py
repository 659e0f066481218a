"""``@virtual_actor`` and what it makes of a class: an :class:`ActorClass`.

The decorator leaves the user's class untouched (it can still be
instantiated and unit-tested directly) and marks methods with plain
attributes, so that a class body loaded back from storage is understood the
same way as the local one.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from vactor_cloud import _sync
from vactor_cloud.definition import (
    PROCESS_ONLY_MODULES,
    ActorDefinition,
    MethodInfo,
    mark_event_handler,
    mark_readonly,
)
from vactor_cloud.deletion import delete, delete_again
from vactor_cloud.errors import ActorNotFoundError, ReentrantCallError
from vactor_cloud.events import forget_existing
from vactor_cloud.handle import ActorHandle
from vactor_cloud.ids import validate_idempotency_key
from vactor_cloud.reentrancy import call_cycle
from vactor_cloud.runtime import Runtime, get_runtime

__all__ = ["ActorClass", "VirtualActorDecorator", "get_actor", "get_actor_async", "virtual_actor"]

T = TypeVar("T")
P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])
#: the decorated class, ``type[Account]``; read only, hence covariant. Not bound to ``type``:
#: the methods match it against ``Callable[P, T]`` to read the constructor's signature.
C_co = TypeVar("C_co", covariant=True)
#: what ``@virtual_actor`` decorates: a class
K = TypeVar("K", bound=type)

if TYPE_CHECKING:
    # For type checkers an ActorClass is a class object of ``C_co`` (an instance of a ``type``
    # subclass): pyright then takes ``class Sub(Account)`` as subclassing ``Account`` itself, as
    # ``__mro_entries__`` does at runtime. Only for type checkers: at runtime it is a plain object.
    _ClassObject = type
else:
    _ClassObject = object


class ActorClass(Generic[C_co], _ClassObject):
    """A class decorated with ``@virtual_actor``: call ``get_or_create(actor_id, ...)`` on it.

    ``C_co`` is the decorated class (``ActorClass[type[Account]]``), for type
    checkers: ``get_or_create`` takes its constructor's parameters and
    returns ``ActorHandle[Account]``. For type checkers only, it derives from
    ``type`` (``_ClassObject``), so that pyright takes ``class Sub(Account)``
    for a subclass of ``Account``; at runtime it is a plain object.
    """

    if TYPE_CHECKING:  # else type checkers take ``ActorClass(cls)`` for ``type.__new__``'s 1 or 3 arguments

        def __new__(cls, klass: C_co, *, serializer: str = "pickle") -> ActorClass[C_co]: ...

    def __init__(self, cls: C_co, *, serializer: str = "pickle") -> None:
        self.definition: ActorDefinition = ActorDefinition(cls, serializer=serializer)  # type: ignore[arg-type]
        self.definition.register()
        self.cls: C_co = cls
        self.serializer: str = serializer
        self.name: str = self.definition.name
        self.methods: dict[str, MethodInfo] = self.definition.methods
        self.__doc__ = cls.__doc__
        self.__name__: str = getattr(cls, "__name__", self.name)
        self.__qualname__: str = getattr(cls, "__qualname__", self.name)
        self.__module__: str = cls.__module__

    def get_or_create(
        self: ActorClass[Callable[P, T]], actor_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> ActorHandle[T]:
        """The actor ``actor_id``, created with ``cls(*args, **kwargs)`` if it does not exist.

        Exactly one of any number of concurrent creators (in any process)
        creates it; the others, and later callers, get the existing actor and
        their arguments are ignored. ``__init__`` runs on this thread.

        With ``Settings(wait_for_init=False)`` (Ray's behaviour) it returns at
        once and ``__init__`` runs on a pool thread: until the creation
        commits, this process's writer calls wait for it (and raise its
        exception if it failed), read-only calls raise
        ``VirtualActorNotInitializedError``; ``handle.ready()`` resolves when
        it has committed.
        """
        runtime = get_runtime()
        if runtime.settings.wait_for_init:
            runtime.create(self.definition, actor_id, args, kwargs)
            return ActorHandle._of_class(actor_id, self.definition)
        creation = runtime.create_nowait(self.definition, actor_id, args, kwargs)
        return ActorHandle._of_class(actor_id, self.definition, creation)

    async def get_or_create_async(
        self: ActorClass[Callable[P, T]], actor_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> ActorHandle[T]:
        """Async twin of :meth:`get_or_create`; awaitable from any event loop (runs in a thread)."""
        return await asyncio.to_thread(self.get_or_create, actor_id, *args, **kwargs)

    def __call__(self: ActorClass[Callable[P, T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """A plain, non-durable instance of the class (useful in unit tests)."""
        return self.cls(*args, **kwargs)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        """``class Sub(DecoratedClass)`` subclasses the decorated class itself (PEP 560): ``Sub``
        is a plain class, an actor class once decorated with ``@virtual_actor`` in turn."""
        return (self.cls,)  # type: ignore[return-value]

    if not TYPE_CHECKING:  # (type checkers subscript the class itself: for mypy it is the class)

        def __getitem__(self, params: Any) -> Any:
            """``Box[int]`` for a generic actor class: the decorated class's alias, as type
            checkers read it (in an annotation evaluated at runtime; ``class IntBox(Box[int])``
            subclasses the class itself, as ``class Sub(Box)`` does)."""
            return self.cls[params]

        def __getattr__(self, name: str) -> Any:
            """The decorated name is this wrapper, not the class: ``Job.LIMIT`` and ``Job.parse()``
            are ``Job.cls.LIMIT`` and ``Job.cls.parse()`` (the mypy plugin says so too); the
            error says which, where the class has the attribute."""
            cls = self.__dict__.get("cls")  # (absent while pickle rebuilds the wrapper)
            message = f"{type(self).__name__!r} object has no attribute {name!r}"
            if cls is not None and not name.startswith("__") and hasattr(cls, name):
                message += (
                    f": {self.__qualname__} is the actor class; the class itself is "
                    f"{self.__qualname__}.cls (use {self.__qualname__}.cls.{name})"
                )
            raise AttributeError(message)

    def __instancecheck__(self, instance: Any) -> bool:
        """``isinstance(x, DecoratedClass)`` asks about the decorated class, as type checkers
        read it (for them it is that class); a handle is not an instance."""
        return isinstance(instance, self.cls)  # type: ignore[arg-type]

    def __subclasscheck__(self, subclass: type) -> bool:
        """``issubclass(Sub, DecoratedClass)``: about the decorated class (see ``__instancecheck__``)."""
        return issubclass(subclass, self.cls)  # type: ignore[arg-type]

    def __reduce__(self) -> str | tuple[Any, ...]:
        # By default pickle copied the wrapper's attributes, among them the decorated class,
        # which it looked up by name and found to be this wrapper: "not the same object", so
        # the class could not be a pool task's argument. By reference, as classes are; by
        # value (cloudpickle pickles the class itself so) where no other process has the module.
        if self.__module__ not in PROCESS_ONLY_MODULES and _module_attribute(self) is self:
            return str(self.__qualname__)
        return (_rebuild_actor_class, (self.cls, self.serializer))

    def __repr__(self) -> str:
        # getattr: a traceback shows the repr of an instance whose __init__ refused the class.
        return f"<virtual actor class {getattr(self, 'name', '(not defined)')}>"


def _module_attribute(actor_class: ActorClass[Any]) -> Any:
    """What the decorated class's module holds under its qualified name (None if nothing)."""
    target: Any = sys.modules.get(actor_class.__module__)
    for part in actor_class.__qualname__.split("."):
        target = getattr(target, part, None)
    return target


def _rebuild_actor_class(cls: Any, serializer: str) -> ActorClass[Any]:
    return ActorClass(cls, serializer=serializer)


def get_actor(actor_id: str) -> ActorHandle[Any]:
    """The existing actor ``actor_id``; ``ActorNotFoundError`` if there is none.

    Works in a process that cannot import the actor's class: the class body
    is then loaded from storage (unless ``init(load_classes_from_storage=False)``).
    An actor this process is creating without waiting (``wait_for_init=False``) is found at once.
    """
    runtime = get_runtime()
    if runtime.creating(actor_id) is None:
        runtime.load(actor_id)
    return ActorHandle(actor_id)


async def get_actor_async(actor_id: str) -> ActorHandle[Any]:
    """Async twin of :func:`get_actor`; awaitable from any event loop."""
    runtime = get_runtime()
    if runtime.creating(actor_id) is None:
        await asyncio.wrap_future(_sync.submit(runtime.load_async(actor_id)))
    return ActorHandle(actor_id)


def delete_actor(actor_id: str, *, idempotency_key: str | None = None) -> bool:
    """Delete the actor ``actor_id``: True when this call deleted it, False when it was deleted
    already; ``ActorNotFoundError`` for an id that never held an actor.

    Commits a tombstone after the actor's newest step with the create-only put every commit
    makes, so it is safe while other processes call the actor: a call racing the delete
    either committed before it or fails with ``ActorDeletedError``, as every later load,
    read and call does. Calls posted under contention and still waiting fail with it too.
    ``get_or_create`` on the id then makes a new actor. The old steps stay until a
    compaction (``handle.compact(keep_last=1)``, ``vactor compact``) deletes them; the
    tombstone stays (see docs/concepts.md, "Deleting an actor").

    ``idempotency_key`` names this delete (else one is made up, and an error that leaves the
    delete in doubt, ``CommitOutcomeUnknownError`` or a timeout, names it): a delete with a
    key whose delete committed returns False, from any process, even once the actor was
    created again since (then left as it is), until 8 later deletes of the id have committed
    (the id keeps the keys of its last 8). A delete without a key after one of this process's
    was left in doubt uses that one's key.

    Refused with ``ReentrantCallError`` (nothing deleted) inside a writer method of the actor
    itself: delete it after the method returns. A creation of the actor this process has
    pending (``Settings(wait_for_init=False)``) is waited for first, as writer calls wait.
    """
    runtime = _may_delete(actor_id)
    key = _delete_key(runtime, actor_id, idempotency_key)
    # This process's creation still pending (wait_for_init=False) comes first, as for a
    # writer call: the delete follows it in the program, so it deletes what it created.
    runtime.wait_created(actor_id)
    # (Ctrl-C: the delete stops, and gives back a folder lease it took over, before the
    # interrupt goes on: the program it ends shuts the runtime down next.)
    hint = delete_again(actor_id, key)
    return runtime.run(_delete(runtime, actor_id, key), hint=hint, settle=_SETTLE)


async def delete_actor_async(actor_id: str, *, idempotency_key: str | None = None) -> bool:
    """Async twin of :func:`delete_actor`; awaitable from any event loop.

    Cancelled by its awaiting task, the delete stops (giving back a folder lease it took
    over) before the cancel reaches the awaiter: it makes no request after. A tombstone put
    already sent may have landed: ``delete_actor`` again (with the same key, or none, in this
    process) returns False if it did."""
    runtime = _may_delete(actor_id)
    key = _delete_key(runtime, actor_id, idempotency_key)
    await asyncio.to_thread(runtime.wait_created, actor_id)  # (as delete_actor: see there)
    deleting = runtime.bounded(_delete(runtime, actor_id, key), hint=delete_again(actor_id, key))
    return await _sync.until_stopped(deleting, _SETTLE)


def _delete_key(runtime: Runtime, actor_id: str, given: str | None) -> str:
    """The key of a delete of ``actor_id``: ``given``, else that of this process's last delete
    of it left in doubt, else a new one."""
    if given is not None:
        return validate_idempotency_key(given)
    return runtime.delete_keys.get(actor_id) or uuid.uuid4().hex


def _may_delete(actor_id: str) -> Runtime:
    """The runtime, once sure a delete of ``actor_id`` from this thread cannot wait for itself:
    ``ReentrantCallError`` inside a writer method of the actor, or its ``__init__`` (a creation
    this thread runs). (Checked on the caller's thread: an async delete waits elsewhere.)"""
    _refuse_own_writer(actor_id)
    runtime = get_runtime()
    runtime.refuse_own_creation(actor_id, "delete it")
    return runtime


async def _delete(runtime: Runtime, actor_id: str, key: str) -> bool:
    """(IO loop) Commit ``actor_id``'s tombstone; whether this call did (False: deleted already).
    Until it returns, ``key`` is this process's delete of the actor in doubt."""
    core = runtime.core(actor_id)
    runtime.delete_keys[actor_id] = key
    try:
        tombstone = await delete(core.log, runtime.settings, keep=runtime.keep, key=key)
        runtime.delete_keys.pop(actor_id, None)
    except ActorNotFoundError:
        # A sure answer (no actor, nothing written), not a delete in doubt: no key to keep (one
        # kept per id deleted so, for the process's life, grew with every such id)
        runtime.delete_keys.pop(actor_id, None)
        raise
    finally:
        core.forget()  # this process's cache: the next call reloads and meets the tombstone
        forget_existing(runtime, actor_id)  # and the next send_event
    return tombstone is not None


#: how long an interrupted delete_actor waits for the delete to stop (its lease given back)
_SETTLE = 5.0


def _refuse_own_writer(actor_id: str) -> None:
    """``ReentrantCallError`` when a writer method of ``actor_id`` runs on this thread: the
    tombstone would commit before the method's own step, which then fails with
    ``ActorDeletedError`` (its effects lost, the delete done)."""
    cycle = call_cycle(actor_id)
    if cycle is not None:
        raise ReentrantCallError(
            f"delete_actor() of actor {actor_id!r} was called while a writer method of it runs on "
            f"this same thread (a call cycle {cycle}): the delete would commit before the method's "
            "own step, which would then fail with ActorDeletedError; nothing was deleted. Delete "
            "the actor after the method has returned (from its caller, or from a read-only method)"
        )


class VirtualActorDecorator:
    """``@virtual_actor``, ``@virtual_actor(serializer="json")``, ``@virtual_actor.readonly``."""

    @overload
    def __call__(self, cls: K, /, *, serializer: str = ...) -> ActorClass[K]: ...

    @overload
    def __call__(self, cls: None = None, /, *, serializer: str = ...) -> Callable[[K], ActorClass[K]]: ...

    def __call__(
        self, cls: K | None = None, /, *, serializer: str = "pickle"
    ) -> ActorClass[K] | Callable[[K], ActorClass[K]]:
        def decorate(klass: K) -> ActorClass[K]:
            return ActorClass(klass, serializer=serializer)

        return decorate if cls is None else decorate(cls)

    @staticmethod
    def readonly(method: F) -> F:
        """Mark a method read-only: it runs on the newest committed state and writes nothing.

        Read-only calls skip the log, so they are cheap and run concurrently
        with writers; any change they make to the instance is discarded.
        """
        return mark_readonly(method)

    @staticmethod
    def on_event(name: str) -> Callable[[F], F]:
        """Mark a method as the handler of external events called ``name``."""
        return mark_event_handler(name)


virtual_actor: VirtualActorDecorator = VirtualActorDecorator()
