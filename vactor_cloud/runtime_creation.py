"""Creating actors through a runtime: ``get_or_create`` on this thread (:meth:`Creator.create`)
or started on a pool thread (:meth:`Creator.create_nowait`), and the waits for a creation
pending in this process.

:class:`Creator` is the part of :class:`~vactor_cloud.actor_runtime.Runtime` (a mixin, over
:class:`~vactor_cloud.runtime_work.WorkRunner`) that runs ``__init__`` and commits step 0. It
takes its turns and records its pending creations with :mod:`vactor_cloud.creation`
(:class:`~vactor_cloud.creation.CreationTurns`, :class:`~vactor_cloud.creation.Creation`);
what it needs of the runtime (its cache of cores, its turns, its pending creations) is
declared at the top of the class.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from vactor_cloud.batch_apply import summarize
from vactor_cloud.byvalue import Frozen, freeze_arguments, thaw_arguments
from vactor_cloud.core import ActorCore
from vactor_cloud.creation import Creation, CreationTurns
from vactor_cloud.definition import ActorDefinition, with_fresh_defaults
from vactor_cloud.errors import (
    ActorDefinitionError,
    ActorNotFoundError,
    ReentrantCallError,
    RuntimeShutdownError,
)
from vactor_cloud.fork_guard import end_a_forked_child, forks_now
from vactor_cloud.runtime_work import WorkRunner
from vactor_cloud.state import capture_state, dumps_state

__all__ = ["Creator"]

logger = logging.getLogger("vactor_cloud")


class Creator(WorkRunner):
    """A runtime as the creator of actors: ``__init__`` run once per creation in this process,
    its step 0 committed; creations started without waiting, and the waits for them."""

    if TYPE_CHECKING:
        # Of the runtime (vactor_cloud.actor_runtime.Runtime): its cache of cores, the
        # creations of this process, and the keys of deletes left in doubt.
        closed: bool
        delete_keys: dict[str, str]
        _lock: threading.Lock
        _turns: CreationTurns
        _creations: dict[str, Creation]

        def core(self, actor_id: str) -> ActorCore: ...
        def load(self, actor_id: str) -> ActorCore: ...

    def create(
        self, definition: ActorDefinition, actor_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[ActorCore, bool]:
        """The actor, created with ``cls(*args, **kwargs)`` if it does not exist (on this thread).

        True with it when this call created it. The arguments are copied first (by value,
        as a method call's are): ``__init__`` never gets the caller's own objects, and an
        argument that cannot be copied is refused here with ``TypeError``. An existing actor
        of another class: ``ActorDefinitionError``.
        """
        return self._create(definition, actor_id, freeze_arguments(args, kwargs))

    def _create(self, definition: ActorDefinition, actor_id: str, frozen: Frozen) -> tuple[ActorCore, bool]:
        if self.closed:  # (a creation started by a waiter after shutdown began: not started)
            raise self._shutdown_error()
        with self._work.working():  # (shutdown waits for a creation running, ``__init__`` too)
            return self._create_now(definition, actor_id, frozen)

    def _create_now(
        self, definition: ActorDefinition, actor_id: str, frozen: Frozen
    ) -> tuple[ActorCore, bool]:
        core = self.core(actor_id)
        while True:
            looked = self._turns.ended
            with contextlib.suppress(ActorNotFoundError):  # (and deleted: created again)
                self.run(core.ensure_exists())
                _check_class(actor_id, core.definition, definition)
                return core, False
            with self._turns.turn(actor_id, looked) as ours:
                if ours:
                    return self._create_here(core, definition, actor_id, frozen)

    def _create_here(
        self, core: ActorCore, definition: ActorDefinition, actor_id: str, frozen: Frozen
    ) -> tuple[ActorCore, bool]:
        """Run ``__init__`` and commit step 0 (this process's one creation of ``actor_id`` now)."""
        args, kwargs = thaw_arguments(frozen)
        init_args = ", ".join(
            [summarize(a) for a in args] + [f"{k}={summarize(v)}" for k, v in kwargs.items()]
        )
        # A mutable default of __init__ fresh for each creation, as for any method (FreshDefaults).
        # (getattr: mypy refuses __init__ read from a class object)
        init = getattr(definition.cls, "__init__")  # noqa: B009
        args, kwargs = with_fresh_defaults(init, args, kwargs)
        forks = forks_now()
        try:
            instance = definition.cls(*args, **kwargs)
        finally:
            _end_a_child_forked_in_init(forks, actor_id, definition)
        try:
            state = dumps_state(
                capture_state(instance),
                definition.serializer,
                restore=definition.restores,
                actor=(actor_id, definition.cls),
            )
        finally:
            _end_a_child_forked_in_init(forks, actor_id, definition, "__getstate__ (or its state's pickling)")
        created = self.run(core.create(definition, state, init_args[:200]))
        if created:
            # (A delete of the id here left in doubt is settled: the actor this made is new, and
            # the next delete here without a key means it, not that one.)
            self.delete_keys.pop(actor_id, None)
            logger.info(
                'Workflow job created. [id="%s", storage_url="%s"]. Type: virtual actor %s.',
                actor_id,
                self.store.describe(),
                definition.name,
            )
        else:
            # Another creator won the race: its actor may be of another class (the core did
            # not take ours for it then). Decided by the stored step, never by a shared field
            # another thread may be changing.
            # (The step it loaded, not ``core.record``: another thread may drop that cache.)
            stored = self.run(core.ensure_exists()).class_ref.name
            if stored != definition.name:
                raise _other_class(actor_id, stored, definition)
            _check_class(actor_id, core.definition, definition)
        return core, created

    def create_nowait(
        self, definition: ActorDefinition, actor_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Creation | None:
        """Start :meth:`create` on a pool thread unless the actor exists; return at once (Ray's way).

        See :meth:`creating` for what calls do until it commits. The arguments are copied
        here, before this returns (later changes to them do not reach the actor). Returns the
        creation (this one, or one of this process's already pending), None if the actor exists.
        """
        frozen = freeze_arguments(args, kwargs)
        with contextlib.suppress(ActorNotFoundError):
            core = self.load(actor_id)
            _check_class(actor_id, core.definition, definition)
            return None
        creation = Creation(definition, self.store.describe())
        with self._lock:
            pending = self._creations.get(actor_id)
            if pending is None:
                self._creations[actor_id] = creation
        if pending is not None:
            _check_class(actor_id, pending.definition, definition)
            return pending

        def finish(error: BaseException | None) -> None:
            try:
                creation.settle(error)
            finally:  # (an interrupt in a hand-over: done all the same, or its waiters hang)
                with self._lock:
                    if self._creations.get(actor_id) is creation:
                        del self._creations[actor_id]
                creation.start = _nothing_to_start  # (lets go of the arguments: handles keep it)
                creation.done.set()

        def start() -> None:
            if not creation.claim():
                return
            error: BaseException | None = None
            try:
                self._create(definition, actor_id, frozen)
            except BaseException as exc:
                error = exc
                if not isinstance(exc, RuntimeShutdownError):
                    _say_creation_failed(actor_id, definition, exc)
            finish(error)

        def shut_down(error: BaseException) -> None:
            if creation.claim():
                finish(error)

        # The pool runs it, or whoever waits for it first (caller runs): a method on the pool
        # waiting for a creation queued behind it and its like would wait for it forever.
        creation.start = start
        self.spawn(start, on_shutdown=shut_down)
        return creation

    def creating(self, actor_id: str) -> Creation | None:
        """This process's pending creation of ``actor_id`` (``create_nowait``), if any."""
        creation = self._creations.get(actor_id)
        return None if creation is None or creation.settled else creation

    def creation_listed(self, actor_id: str) -> Creation | None:
        """This process's creation of ``actor_id`` (``create_nowait``) that has not been recorded
        in full yet: pending, or settled a moment ago (:meth:`creating` says None for that one)."""
        return self._creations.get(actor_id)

    def wait_created(self, actor_id: str, creation: Creation | None = None) -> BaseException | None:
        """Wait for this process's pending creation of ``actor_id``, if any (running it on this
        thread if no thread has started it); its exception, if it failed. ``creation``: that
        creation, looked up earlier by the caller (it may have been recorded in full since).

        ``ReentrantCallError`` when the creation runs on this thread (this is its ``__init__``, or
        one it waits for): the wait would be for itself, for good."""
        creation = creation or self._creations.get(actor_id)
        if creation is None:
            return None
        self.refuse_own_creation(actor_id, "wait for its creation")
        return creation.wait()

    def refuse_own_creation(self, actor_id: str, what: str) -> None:
        """``ReentrantCallError`` if this thread runs the creation of ``actor_id`` (see
        :meth:`wait_created`); ``what``: what the caller was about to do."""
        if self._turns.created_by_me(actor_id):
            raise ReentrantCallError(
                f"actor {actor_id!r} is being created on this thread (this is its __init__, or the "
                f"__init__ of an actor it creates): to {what} here would wait for itself. Do it "
                "after the creation, from the code that called get_or_create"
            )


def _other_class(actor_id: str, stored: str, requested: ActorDefinition) -> ActorDefinitionError:
    return ActorDefinitionError(
        f"actor {actor_id!r} already exists as an instance of {stored}, not {requested.name}: "
        f"get_or_create never changes an actor's class; call the existing actor with "
        f"vc.get_actor({actor_id!r}), or choose another id for a new {requested.cls.__qualname__}"
    )


def _end_a_child_forked_in_init(
    forks: int, actor_id: str, definition: ActorDefinition, part: str = "__init__"
) -> None:
    """In a child that ``__init__`` forked (``os.fork()`` there, then returned or raised in the
    child too), end the child at once (``fork_guard``), on the caller's thread as on a pool's
    (``wait_for_init=False``): the creation is the parent's, which commits step 0. Let the child
    go on and it would commit through a runtime whose threads it does not have, then return to
    its caller as though it were the parent. ``part``: the class's code that ran (the state's
    capture after ``__init__`` is the class's code too)."""
    if forks_now() == forks:
        return  # (the common case: nothing formatted)
    what = f"the {part} of actor {actor_id!r} ({definition.cls.__qualname__})"
    whose = (
        "the creation is the parent's, which commits it if its __init__ returns; this child "
        "created nothing and"
    )
    end_a_forked_child(forks, what, whose)


def _nothing_to_start() -> None:
    """(``Creation.start`` once the creation has settled.)"""


def _say_creation_failed(actor_id: str, definition: ActorDefinition, error: BaseException) -> None:
    """Log a creation ``create_nowait`` started that failed: its exception reaches the calls made
    while it was pending and ``ready()`` on the handles it gave, and nothing else; one that
    failed before any was made (or with none made) was said nowhere, and every later call
    found no actor (``ActorNotFoundError``)."""
    logger.warning(
        "vactor_cloud: the creation of actor %r (%s, get_or_create with wait_for_init=False) "
        "failed: %s: %s; calls made while it was pending, and ready() on the handles it gave, "
        "raise it; later calls find no actor",
        actor_id,
        definition.name,
        type(error).__name__,
        str(error),  # (not the error: a record kept by a handler kept its frames, and their locals)
    )


def _check_class(actor_id: str, found: ActorDefinition | None, requested: ActorDefinition) -> None:
    """``ActorDefinitionError`` if the existing actor's class is not the one asked for."""
    if found is not None and found.name != requested.name:
        raise _other_class(actor_id, found.name, requested)
