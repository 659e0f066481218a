"""Handles: what ``get_or_create`` and ``get_actor`` return, and their method proxies.

A handle holds the actor id (and the class it was made for, sent to another process by
name); it talks to the current runtime, so it keeps working after ``fork`` and when sent to
another process. Calls go by
value: arguments are copied when the call is made (an unpicklable argument
fails here, at the call site) and results reach the caller as copies.

This module holds :class:`ActorHandle` (what the handle is, how it pickles, how it finds its
methods, and the actor-wide operations it offers) and :class:`ActorMethod` (its ``options``,
``run`` and ``run_async``, how it pickles), with the functions a pickle of either names. Their
parts below this module:

* :mod:`vactor_cloud.method_calls`: :class:`~vactor_cloud.method_calls.MethodCalls`, the part
  of ``ActorMethod`` (a mixin) that makes a call and applies or queues it;
* :mod:`vactor_cloud.pooled_reads`: a read-only ``run_async`` call on the read pool, and the
  waiters that may run it instead;
* :mod:`vactor_cloud.stand_ins`: the methods of a class this process does not define, for a
  handle unpickled here.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, Self, TypeVar, overload

from vactor_cloud import _sync
from vactor_cloud.batch import _NO_OPTIONS, CallOptions, current_call
from vactor_cloud.commit_notes import started_elsewhere_note
from vactor_cloud.compaction import DEFAULT_MIN_AGE, CompactionReport, compact_actor
from vactor_cloud.creation import Creation
from vactor_cloud.definition import (
    ActorDefinition,
    MethodInfo,
    check_step_number,
    lookup_local_class,
    superseded,
)
from vactor_cloud.errors import (
    ActorClassChangedError,
    ActorDeletedError,
    ActorNotFoundError,
    ReentrantCallError,
    StorageNotChosenError,
    VirtualActorNotInitializedError,
)
from vactor_cloud.events import (
    process_events,
    process_events_async,
    send_event,
    send_event_async,
    wait_for_event,
    wait_for_event_async,
)
from vactor_cloud.future import ActorFuture, CallFuture
from vactor_cloud.handle_timers import cancel_timer, list_timers
from vactor_cloud.history import HistoryEntry, check_at_step, history, state_at
from vactor_cloud.ids import validate_idempotency_key
from vactor_cloud.log_records import unrecordable
from vactor_cloud.method_calls import MethodCalls
from vactor_cloud.reentrancy import WaitingInsideWriter
from vactor_cloud.runtime import Runtime, get_runtime, storage_chosen, store_in_use
from vactor_cloud.stand_ins import _is_stand_in, _stand_in
from vactor_cloud.timers import TimerInfo

__all__ = ["ActorHandle", "ActorMethod", "ReentrantCallError"]

#: the actor's class of a handle; covariant: a handle of ``Savings(Account)`` is a handle of an ``Account``
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")
R = TypeVar("R")


#: what a compaction cut off by ``Settings.deadline`` tells its caller to do
_COMPACT_AGAIN = (
    "compacting again is safe and goes on where this one stopped; raise Settings.deadline for an "
    "actor with many steps to delete"
)


def _unpickled_method(
    handle: ActorHandle[Any], name: str, options: CallOptions, timer: dict[str, Any] | None
) -> ActorMethod[..., Any]:
    method: ActorMethod[..., Any] = ActorMethod.__new__(ActorMethod)
    method._actor_id = handle.actor_id
    method._handle = (handle, name)
    method._options = options
    method._timer = timer
    return method


def _get_actor_handle(actor_id: str, origin: str | tuple[str | None, str] | None = None) -> ActorHandle[Any]:
    """An unpickled handle (``ActorHandle.__reduce__``): ``origin`` is the store it was pickled
    with, or, for a handle made for a class, ``(store, the class's name)``."""
    handle: ActorHandle[Any] = ActorHandle(actor_id)
    if isinstance(origin, tuple):
        origin, handle._class_name = origin
    handle._origin = origin
    return handle


class ActorHandle(Generic[T_co]):
    """A reference to the actor ``actor_id``; cheap, picklable, valid in any process.

    Attribute access gives the actor's methods: ``handle.incr.run(1)``.
    ``T_co`` is the actor's class, for type checkers.
    """

    __slots__ = ("_class", "_class_name", "_creation", "_origin", "actor_id")

    def __init__(self, actor_id: str) -> None:
        self.actor_id: str = actor_id
        #: (an unpickled handle, until its first use) the store of the process that pickled it
        self._origin: str | None = None
        #: the class it was made for (``Cls.get_or_create``): its methods are that class's,
        #: and run on no actor of another class; None (``vc.get_actor``): the actor's class
        self._class: ActorDefinition | None = None
        #: (an unpickled handle) the name of the class it was made for, as ``_class`` is
        self._class_name: str | None = None
        #: the background creation (``wait_for_init=False``) that gave this handle: ``ready()``
        #: raises its exception if it failed, however long after (as Ray's did)
        self._creation: Creation | None = None

    @classmethod
    def _of_class(
        cls, actor_id: str, definition: ActorDefinition, creation: Creation | None = None
    ) -> ActorHandle[Any]:
        """A handle made for the class ``definition`` (by ``creation``, when it was one)."""
        handle: ActorHandle[Any] = cls(actor_id)
        handle._class = definition
        handle._creation = creation
        return handle

    def _creation_on(self, runtime: Runtime) -> Creation | None:
        """The creation this handle came from, if it ran on ``runtime``'s store: after ``init``
        of another store, its failure is not why that one has no actor."""
        creation = self._creation
        if creation is None or creation.store != runtime.store.describe():
            return None
        return creation

    def _made_for(self) -> str | None:
        """The name (``module:QualName``) of the class the handle was made for, or None."""
        return self._class.name if self._class is not None else self._class_name

    def _runtime(self) -> Runtime:
        """The current runtime; ``StorageNotChosenError`` on the first use of a handle sent from a
        process with another store, here where no store was chosen (its actor is not in the
        embedded default store: without this, an ``ActorNotFoundError`` there, or a
        ``get_or_create`` that silently made a second actor)."""
        runtime = get_runtime()
        origin = self._origin
        if origin is not None:
            current = runtime.store.describe()
            if origin != current and not storage_chosen():
                raise StorageNotChosenError(self.actor_id, origin, current)
            self._origin = None
        return runtime

    def _definition(self) -> ActorDefinition:
        runtime = self._runtime()
        creation = runtime.creating(self.actor_id)
        if creation is not None:
            return creation.definition
        try:
            definition = runtime.load(self.actor_id).definition
            if definition is not None and superseded(definition):  # (defined again: see ``superseded``)
                definition = lookup_local_class(definition.name)
        except ActorDeletedError:
            # Its methods are still looked up, in the class of its tombstone: a read-only one
            # runs on a step before the delete (``run(at_step=N)``, as ``state_at(N)`` reads
            # it); every call on its present fails with this error, where the call is made.
            definition = runtime.core(self.actor_id).definition
            if definition is None:
                raise
        assert definition is not None
        return definition

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> ActorMethod[..., Any]:
            if name.startswith("_"):  # no I/O here: pickle, copy and notebooks probe such names
                if name.startswith("__") and name.endswith("__"):
                    raise AttributeError(name)
                raise AttributeError(
                    f"{name!r}: a method whose name starts with '_' is private to the actor's class "
                    f"(its other methods may call it); a handle calls public methods only"
                )
            definition = self._definition()
            made_for = self._made_for()
            if made_for is not None and definition.name != made_for:
                # The id was made again with another class, as this process knows (its cache
                # may be behind): the call is made for the handle's class all the same, and
                # refused where it runs on an actor of another class.
                own = self._class or lookup_local_class(made_for)
                if own is None:  # unpickled where that class is not defined: by its name alone
                    return ActorMethod(self.actor_id, _stand_in(made_for, name))
                definition = own
            info = definition.methods.get(name)
            if info is None:
                raise AttributeError(
                    f"{definition.cls.__qualname__} (actor {self.actor_id!r}) has no method {name!r}"
                    f"{_not_a_method(definition.cls, name)}; "
                    f"its methods: {', '.join(sorted(definition.methods)) or 'none'}"
                )
            return ActorMethod(self.actor_id, info)

    else:

        def __getattr__(self, name: str) -> ActorMethod[..., Any]:
            raise AttributeError(name)

    def ready(self) -> ActorFuture[None]:
        """A future that resolves once the actor exists and its ``__init__`` has committed
        (Ray's ``actor.ready()``); ``ActorNotFoundError`` through it if there is no such actor,
        or, instead, the exception of the creation this handle came from (``get_or_create``
        with ``wait_for_init=False``, on the store in use; a copy of the handle too, not a
        pickled one), or of this process's creation of
        it pending at this call, if that failed (every time, until an actor is created under
        the id);
        ``ReentrantCallError`` when asked in its own ``__init__`` (or one that creation waits
        for): waited for there, it would wait for itself."""
        future: ActorFuture[None] = ActorFuture()
        runtime = self._runtime()
        claims = itertools.count()  # the pool thread and a waiter may both try: one checks
        # Looked up now, not when the check runs: by then the failure may have been recorded in
        # full, the creation unlisted, and the check met no actor (ActorNotFoundError).
        creation = runtime.creation_listed(self.actor_id) or self._creation_on(runtime)
        try:
            # Asked in the creation's own __init__ (or one it waits for), the check, run on
            # another thread, waited for the creation, which waited for the check: refused now.
            runtime.refuse_own_creation(self.actor_id, "wait until it is ready")
        except ReentrantCallError as exc:
            future.set_running_or_notify_cancel()
            future.set_exception(exc)
            return future

        def check() -> None:
            if next(claims) != 0 or not future.set_running_or_notify_cancel():
                return
            try:
                failed = runtime.wait_created(self.actor_id, creation)
                try:
                    runtime.load(self.actor_id)
                except ActorNotFoundError:
                    if failed is None:
                        raise
                    # The failure is why there is none (an actor created since is ready): given
                    # as it is (raised here ``from None``, it lost its own cause, for everyone).
                    future.set_exception(failed)
                    return
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)

        def shut_down(error: BaseException) -> None:
            if next(claims) == 0 and future.set_running_or_notify_cancel():
                future.set_exception(error)

        # A waiter (one without a timeout: see ActorFuture) checks itself, running a creation
        # pending here that no thread has started.
        future._help = lambda _timeout: check()
        runtime.spawn(check, on_shutdown=shut_down)
        return future

    def call_outcome(self, call_id: str) -> Any:
        """The outcome of a call whose caller got ``CallPendingError`` (posted under
        contention, not applied while it waited; ``error.call_ids`` names the calls): its
        result is returned, or its exception raised (``ActorDeletedError`` if a delete failed
        the call). Otherwise it raises, saying what to do:

        * ``CallPendingError``: posted, not applied yet. Ask again after a pause (if no
          process folds the post, this one folds it in the background: no other call is
          needed; a process that exits right after asking folds it at its exit).
        * ``CallNotFoundError`` (a ``LookupError``) with ``never`` true, only in the process
          that posted the call: not applied, and never will be. Retrying applies it once.
        * ``CallNotFoundError`` with ``never`` false: not found, not a sure "never". A process
          that did not post the call (a serverless function's next invocation) looks for it
          among the newest 1000 steps and the actor's pending posts (one LIST of its inbox);
          it was never posted, expired unapplied, or was applied long ago, or its post, its
          write in doubt, may still land until its poster's ``Settings.deadline`` has passed:
          ask again after that; still not found, retry it with the same idempotency key.
          Final for an actor whose serializer is ``"json"`` (its calls are never posted).
        * ``CommitOutcomeUnknownError`` (not a ``CallPendingError``): applied, but the step
          holding its outcome was compacted (or, its message says, whether it was applied
          cannot be told). Read the actor's state before calling again.
        * ``StorageTimeoutError``: the store did not answer within ``Settings.deadline``:
          not known yet, ask again later.

        ``CallPendingError`` is a ``CommitOutcomeUnknownError``: catch it first. When each
        answer is given, and what it costs: docs/protocol.md, "Outcomes and
        ``CallPendingError``".
        """
        return self._runtime().core(self.actor_id).call_outcome(call_id).unwrap()

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Committed steps, newest first (see :func:`vactor_cloud.history.history`)."""
        self._refuse_before_init()
        return history(self.actor_id, limit)

    def state_at(self, step: int) -> T_co:
        """A read-only instance as it was after ``step`` (see :func:`vactor_cloud.history.state_at`):
        of the actor's class (``T_co``), as type checkers see it."""
        self._refuse_before_init()
        state: T_co = state_at(self.actor_id, step)
        return state

    def _refuse_before_init(self) -> None:
        """``VirtualActorNotInitializedError`` while this process creates the actor
        (``Settings(wait_for_init=False)``), as for a read-only call then: no step is committed
        yet, and one is coming. (Read, the store said ``ActorNotFoundError``: none coming.)"""
        runtime = self._runtime()
        if runtime.creating(self.actor_id) is not None:
            raise VirtualActorNotInitializedError(self.actor_id, runtime.store.describe())

    def compact(self, keep_last: int, *, min_age: float = DEFAULT_MIN_AGE) -> CompactionReport:
        """Delete steps older than the ``keep_last`` newest (see :mod:`vactor_cloud.compaction`).

        Never deletes the newest step, nor a step whose successor is younger
        than ``min_age`` seconds; safe while other processes call the actor.
        """
        coro = compact_actor(self.actor_id, keep_last, min_age=min_age)
        return get_runtime().run(coro, hint=_COMPACT_AGAIN)

    async def compact_async(self, keep_last: int, *, min_age: float = DEFAULT_MIN_AGE) -> CompactionReport:
        """Async twin of :meth:`compact`; awaitable from any event loop."""
        coro = compact_actor(self.actor_id, keep_last, min_age=min_age)
        return await asyncio.wrap_future(_sync.submit(get_runtime().bounded(coro, hint=_COMPACT_AGAIN)))

    def __copy__(self) -> Self:
        """The same reference as this one, its creation kept: ``ready()`` on a copy raises the
        failure of the creation that gave this handle, as on this one. (``copy`` went through
        ``__reduce__``, a pickle's way, which cannot carry it to another process: the copy's
        ``ready()`` raised ``ActorNotFoundError``.)"""
        handle = type(self)(self.actor_id)
        for name in ActorHandle.__slots__:
            setattr(handle, name, getattr(self, name))
        return handle

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        # (Nothing in it to copy deeply: an id, and the class and creation it shares with this.)
        return self.__copy__()

    def __reduce__(self) -> tuple[Any, ...]:
        # The store this process uses, or uses again after ``shutdown()``: pickled after a
        # shutdown, the handle carried none, and a process that chose no store looked for the
        # actor in its embedded default store (``ActorNotFoundError``, not what to do). A
        # handle received and not used here yet passes on the store it came with.
        origin = self._origin or store_in_use()
        made_for = self._made_for()
        if made_for is not None:
            # The class goes by name (docs/protocol.md, "Handles in pickles"). An earlier release
            # (whose handles carried no class) takes the pair for the store, then the pickle's
            # state (slot values, set after the call) puts the store in its place: there it
            # loads a handle of no class.
            return (_get_actor_handle, (self.actor_id, (origin, made_for)), (None, {"_origin": origin}))
        if origin is None:
            return (_get_actor_handle, (self.actor_id,))
        return (_get_actor_handle, (self.actor_id, origin))

    # -- external events (vactor_cloud.events); these names shadow actor methods of the same name
    def send_event(
        self, name: str, payload: Any = None, *, event_id: str | None = None, serializer: str = "json"
    ) -> str:
        """Send this actor event ``name``; see :func:`vactor_cloud.events.send_event`."""
        return send_event(self.actor_id, name, payload, event_id=event_id, serializer=serializer)

    async def send_event_async(
        self, name: str, payload: Any = None, *, event_id: str | None = None, serializer: str = "json"
    ) -> str:
        """Async twin of :meth:`send_event`."""
        return await send_event_async(self.actor_id, name, payload, event_id=event_id, serializer=serializer)

    def process_events(self) -> int:
        """Apply pending events now; see :func:`vactor_cloud.events.process_events`."""
        return process_events(self.actor_id)

    async def process_events_async(self) -> int:
        """Async twin of :meth:`process_events`."""
        return await process_events_async(self.actor_id)

    def wait_for_event(self, name: str, timeout: float | None = None, *, event_id: str | None = None) -> Any:
        """Block until an event ``name`` was applied; see :func:`vactor_cloud.events.wait_for_event`."""
        return wait_for_event(self.actor_id, name, timeout, event_id=event_id)

    async def wait_for_event_async(
        self, name: str, timeout: float | None = None, *, event_id: str | None = None
    ) -> Any:
        """Async twin of :meth:`wait_for_event`."""
        return await wait_for_event_async(self.actor_id, name, timeout, event_id=event_id)

    # -- durable timers (vactor_cloud.handle_timers); these names shadow actor methods of the same name
    def timers(self) -> list[TimerInfo]:
        """The actor's pending timers (key, due, method, args, kwargs, every), earliest first:
        each a :class:`~vactor_cloud.timers.TimerInfo`, a plain ``dict`` at runtime."""
        return list_timers(self.actor_id)

    def cancel_timer(self, key: str) -> bool:
        """Cancel the pending timer ``key`` (one commit); False if there was none (then one read
        of the newest step and no commit, unless this process has calls of the actor to apply
        first: see :func:`vactor_cloud.handle_timers.cancel_timer`)."""
        return cancel_timer(self.actor_id, key)

    def __repr__(self) -> str:
        return f"ActorHandle({self.actor_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other.actor_id == self.actor_id

    def __hash__(self) -> int:
        return hash(("ActorHandle", self.actor_id))


class ActorMethod(MethodCalls[P, R]):
    """One method of one actor: ``run`` blocks, ``run_async`` returns an :class:`ActorFuture`."""

    __slots__ = ("_actor_id", "_handle", "_info", "_options", "_timer")

    #: (an unpickled method, until its first use) the handle and the method's name
    _handle: tuple[ActorHandle[Any], str]

    def __init__(
        self,
        actor_id: str,
        info: MethodInfo,
        options: CallOptions | None = None,
        timer: dict[str, Any] | None = None,
    ) -> None:
        self._actor_id = actor_id
        self._info = info
        self._options = options or _NO_OPTIONS
        #: ``options(delay=/at=)``: calls schedule a durable timer instead of running now
        self._timer = timer

    # For type checkers, what ``run`` then returns: the method's result, ``(result, exception)``
    # with ``catch_exceptions=True`` (a ``_CatchingActorMethod``, which ``catch_exceptions=False``
    # turns back), a timer's key with ``delay=`` or ``at=``; ``Any`` when a flag or a time is
    # known only at runtime. (An option not given keeps its earlier value:
    # ``m.options(delay=60).options(name="n")`` is still a timer, its result still a key.)
    @overload
    def options(
        self,
        *,
        idempotency_key: str | None = None,
        at_step: int | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_retries: int | None = None,
        catch_exceptions: Literal[False] | None = None,
        delay: None = None,
        at: None = None,
        timer_key: str | None = None,
        every: float | None = None,
    ) -> ActorMethod[P, R]: ...

    @overload
    def options(
        self,
        *,
        idempotency_key: str | None = None,
        at_step: int | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_retries: int | None = None,
        catch_exceptions: Literal[True],
        delay: None = None,
        at: None = None,
        timer_key: None = None,
        every: None = None,
    ) -> _CatchingActorMethod[P, R]: ...

    @overload
    def options(
        self,
        *,
        idempotency_key: str | None = None,
        at_step: None = None,
        name: None = None,
        metadata: None = None,
        max_retries: None = None,
        catch_exceptions: None = None,
        delay: float,
        at: None = None,
        timer_key: str | None = None,
        every: float | None = None,
    ) -> ActorMethod[P, str]: ...

    @overload
    def options(
        self,
        *,
        idempotency_key: str | None = None,
        at_step: None = None,
        name: None = None,
        metadata: None = None,
        max_retries: None = None,
        catch_exceptions: None = None,
        delay: None = None,
        at: float,
        timer_key: str | None = None,
        every: float | None = None,
    ) -> ActorMethod[P, str]: ...

    @overload
    def options(
        self,
        *,
        idempotency_key: str | None = None,
        at_step: int | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_retries: int | None = None,
        catch_exceptions: bool | None = None,
        delay: float | None = None,
        at: float | None = None,
        timer_key: str | None = None,
        every: float | None = None,
    ) -> ActorMethod[P, Any]: ...

    def options(
        self,
        *,
        idempotency_key: str | None = None,
        at_step: int | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_retries: int | None = None,
        catch_exceptions: bool | None = None,
        delay: float | None = None,
        at: float | None = None,
        timer_key: str | None = None,
        every: float | None = None,
    ) -> ActorMethod[P, Any]:
        """This method with call options.

        ``idempotency_key``: the first call with this key on this actor
        commits and records its result; every later call with the key (from
        any process, within the dedup window) returns that result, or
        re-raises its exception, without running the method again. A fault of
        the store, the runtime or the process, or an interrupt, is not recorded
        (``dedup.is_outcome``): a later call with the key runs the method.

        ``at_step``: run this read-only method on the state as it was right
        after step ``at_step`` (time travel); ``StepNotFoundError`` if that
        step was compacted. ``run(at_step=N)`` is the short form.

        Ray's step options: ``name`` and ``metadata`` (JSON-serializable) are
        recorded with the call in history; ``max_retries`` runs a raising
        body again up to that many times (each retry starts from the state
        before the call); ``catch_exceptions=True`` delivers ``(result, None)``
        or ``(None, exception)`` instead of raising an ``Exception`` (an interrupt,
        ``KeyboardInterrupt`` or ``SystemExit``, is still raised).

        Durable timers: ``delay`` (seconds) or ``at`` (epoch seconds) makes
        ``run``/``run_async`` *schedule* the call instead (one small commit)
        and return the timer's key (``timer_key``, else a generated one);
        ``every`` repeats it. A timer runner fires it (docs/timers.md).

        Chained calls add up: ``m.options(delay=60).options(idempotency_key="k")``
        keeps the delay (an option not given keeps its earlier value; ``at=`` and
        ``delay=`` replace each other).
        """
        current = self._options
        idempotency_key = current.idempotency_key if idempotency_key is None else idempotency_key
        at_step = current.at_step if at_step is None else at_step
        name = current.name if name is None else name
        metadata = current.metadata if metadata is None else metadata
        max_retries = current.max_retries if max_retries is None else max_retries
        catch_exceptions = current.catch_exceptions if catch_exceptions is None else catch_exceptions
        earlier = self._timer
        if earlier is not None:
            if delay is None and at is None:
                delay, at = earlier["delay"], earlier["at"]
            timer_key = earlier["key"] if timer_key is None else timer_key
            every = earlier["every"] if every is None else every
        if idempotency_key is not None:
            validate_idempotency_key(idempotency_key)
        if idempotency_key is not None and self._info.readonly:
            raise ValueError(f"{self._info.name} is read-only; idempotency keys apply to writer methods")
        if at_step is not None and _is_stand_in(self._info):
            check_step_number(at_step)  # (the rest once called, the method known: _as_its_class)
        elif at_step is not None:
            check_at_step(self._info, at_step)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        why = unrecordable(name, metadata)
        if why is not None:  # it would fail the commit of every call batched (or folded) with it
            raise (TypeError if metadata is not None and "metadata" in why else ValueError)(why)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        timer = None
        if delay is not None or at is not None or timer_key is not None or every is not None:
            if (delay is None) == (at is None):
                raise ValueError("a timer takes exactly one of delay= or at=")
            for label, number in (("delay", delay), ("at", at), ("every", every)):
                if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
                    raise TypeError(f"{label}= takes seconds as a number, got {number!r}")
            if self._info.readonly:
                raise ValueError(f"{self._info.name} is read-only; timers call writer methods")
            dropped = [
                label
                for label, given in (
                    ("max_retries", max_retries),
                    ("name", name is not None),
                    ("metadata", metadata is not None),
                    ("catch_exceptions", catch_exceptions),
                )
                if given
            ]
            if dropped:  # the timer stores the method and its arguments only: it would fire without them
                raise ValueError(
                    f"{', '.join(dropped)} cannot be given with a timer (delay=/at=): it fires without"
                )
            timer = {"delay": delay, "at": at, "key": timer_key, "every": every}
        return ActorMethod(
            self._actor_id,
            self._info,
            replace(
                self._options,
                idempotency_key=idempotency_key,
                at_step=at_step,
                name=name,
                metadata=metadata,
                max_retries=max_retries,
                catch_exceptions=bool(catch_exceptions),
            ),
            timer,
        )

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the method and wait for its result (re-raising its exception).

        The work runs on this thread when the actor is idle here (caller runs).
        """
        if _sync.in_loop_thread():
            raise RuntimeError(
                f"{self._info.name}.run() was called on vactor_cloud's IO loop; use `await ...run_async()`"
            )
        runtime = get_runtime()
        # The future stays here (nobody else waits on it): a light one, unless a creation
        # is pending, whose queued calls are helped along by whoever waits on their futures.
        # (One look: failed and unlisted before a second, the call met no actor.) A creation
        # settled and still listed may still be handing its queued calls over: a writer goes
        # after them (``_after_creation``), a read on as usual.
        creating = runtime.creation_listed(self._actor_id)
        call = self._make_call(args, kwargs, CallFuture() if creating is None else ActorFuture(), waits=True)
        if creating is not None and creating.settled and call.readonly:
            creating = None
        core = runtime.core(self._actor_id)
        if current_call() is None:  # not inside an actor method: no writer of ours to keep listed
            return self._run(runtime, core, call, creating)
        with WaitingInsideWriter():  # a call back into this writer's actor is refused meanwhile
            return self._run(runtime, core, call, creating)

    def run_async(self, *args: P.args, **kwargs: P.kwargs) -> ActorFuture[R]:
        """Queue the call and return at once; ``await`` the future or call ``.result()``.

        Calls from this process to one actor apply in the order they were
        submitted. ``TypeError`` here, before anything is queued, if the
        arguments do not fit the method or cannot be copied.

        ``at_step=N`` (read-only methods) runs on the state after step N;
        when the method has a parameter of its own called ``at_step`` (or is a
        writer taking ``**kwargs``), the keyword goes to the method and
        ``options(at_step=N)`` selects the step.
        """
        call = self._make_call(args, kwargs, ActorFuture(), waits=False)
        future = call.future
        assert isinstance(future, ActorFuture)
        try:
            return self._queue(call, future)
        except BaseException as exc:
            # Interrupted (Ctrl-C) before the future was handed back: nobody could see the
            # call's outcome, so a call not started is withdrawn (behind this process's pending
            # creation of the actor too, where ``core.submit``'s own withdrawal does not reach).
            if not future.done() and not future.cancel() and not isinstance(exc, Exception):
                note = started_elsewhere_note(self._actor_id)
                if not call.readonly and note not in getattr(exc, "__notes__", ()):
                    exc.add_note(note)
            raise

    def _as_its_class(self) -> ActorMethod[P, R]:
        """(A stand-in given ``at_step``, which it cannot tell from an argument of the method)
        This method as its class defines it, from the class's stored body, where the actor
        holds that class now; ``ActorClassChangedError`` where it holds another (nothing run)."""
        info = self._info
        definition = get_runtime().core(self._actor_id).definition_of_newest()
        if definition.name != info.owner:
            raise ActorClassChangedError(self._actor_id, info.name, info.owner, definition.name)
        found = definition.methods.get(info.name)
        if found is None:
            raise AttributeError(
                f"{definition.cls.__qualname__} (actor {self._actor_id!r}) has no method {info.name!r}"
                f"{_not_a_method(definition.cls, info.name)}; "
                f"its methods: {', '.join(sorted(definition.methods)) or 'none'}"
            )
        if self._options.at_step is not None:
            check_at_step(found, self._options.at_step)
        return ActorMethod(self._actor_id, found, self._options, self._timer)

    def __reduce__(self) -> tuple[Any, ...]:
        # By default pickle took the method's function along, by a name its module does not
        # have (the module holds the decorated class's wrapper): ``pool.map(h.add.run, items)``
        # failed. The method is looked up again by name where it is used, through a handle made
        # for the method's class (a method of a ``vc.get_actor`` handle too: its call is made
        # for the class the handle found).
        return (_unpickled_method, (*self._pickled_as(), self._options, self._timer))

    def _pickled_as(self) -> tuple[ActorHandle[Any], str]:
        """The handle and method name a pickle of the method carries, without looking up an
        unpickled method's MethodInfo (no I/O)."""
        try:
            info = object.__getattribute__(self, "_info")
        except AttributeError:  # unpickled, not used yet: as it came
            handle, name = object.__getattribute__(self, "_handle")
            return handle, name
        handle = ActorHandle(self._actor_id)
        handle._class_name = info.owner or None
        return handle, info.name

    def _name(self) -> str:
        """The method's name, without looking up an unpickled method's MethodInfo (no I/O)."""
        try:
            return str(object.__getattribute__(self, "_info").name)
        except AttributeError:  # unpickled, not used yet
            return str(object.__getattribute__(self, "_handle")[1])

    if not TYPE_CHECKING:  # for type checkers an ActorMethod stays not callable

        def __getattr__(self, name: str) -> Any:
            # An unpickled method (see __reduce__) finds its MethodInfo on first use: only then
            # is this process's runtime asked (the process may call vc.init() after unpickling).
            if name != "_info":
                raise AttributeError(name)
            handle, method_name = object.__getattribute__(self, "_handle")
            info = getattr(handle, method_name)._info
            self._info = info
            return info

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            name = self._info.name
            raise TypeError(
                f"actor methods are not called directly: {name}.run(...) calls actor "
                f"{self._actor_id!r} and waits for the result, {name}.run_async(...) returns a future"
            )

    def __repr__(self) -> str:
        return f"<actor method {self._actor_id}.{self._name()}>"


if TYPE_CHECKING:
    RunF = TypeVar("RunF", bound=Callable[..., Any])
    AsyncF = TypeVar("AsyncF", bound=Callable[..., Any])

    # Only the overloads of ``ActorMethod.options`` name this class: not a runtime class.
    class _CatchingActorMethod(ActorMethod[P, tuple[R | None, Exception | None]]):
        """What ``options(catch_exceptions=True)`` makes of an ``ActorMethod[P, R]``: ``run``
        returns ``(result, exception)``, and a later ``options(catch_exceptions=False)`` gives
        back the method's own result type (as at runtime, where the later option replaces the
        earlier). For type checkers only: at runtime the object is an :class:`ActorMethod`.

        (Its ``options`` returns ``ActorMethod[P, R]`` where ``ActorMethod``'s says
        ``ActorMethod[P, tuple[...]]``: the override is incompatible on purpose, the base's
        ``R`` being the pair.)
        """

        @overload  # type: ignore[override]
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: Literal[True] | None = None,
            delay: None = None,
            at: None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> Self: ...

        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: Literal[False],
            delay: None = None,
            at: None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[P, R]: ...

        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: None = None,
            name: None = None,
            metadata: None = None,
            max_retries: None = None,
            catch_exceptions: Literal[False],
            delay: float,
            at: None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[P, str]: ...

        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: None = None,
            name: None = None,
            metadata: None = None,
            max_retries: None = None,
            catch_exceptions: Literal[False],
            delay: None = None,
            at: float,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[P, str]: ...

        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: bool | None = None,
            delay: float | None = None,
            at: float | None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[P, Any]: ...

        def options(  # pyright: ignore[reportIncompatibleMethodOverride]
            self,
            *,
            idempotency_key: str | None = None,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: bool | None = None,
            delay: float | None = None,
            at: float | None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[P, Any]: ...

    # Only the mypy plugin names this class (by its full name): not a runtime class.
    class _ReadOnlyActorMethod(ActorMethod[P, R]):  # pyright: ignore[reportUnusedClass]
        """What the mypy plugin makes of a read-only method (``@virtual_actor.readonly``): its
        ``options`` have no ``idempotency_key``, ``delay``, ``at``, ``timer_key`` or ``every``,
        which are for writer methods (a ``ValueError`` at runtime). For type checkers only: at
        runtime the object is an :class:`ActorMethod`.

        (The override leaves keywords of ``ActorMethod.options`` out: incompatible on purpose.)
        """

        @overload  # type: ignore[override]
        def options(
            self,
            *,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: Literal[False] | None = None,
        ) -> Self: ...

        @overload
        def options(
            self,
            *,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: Literal[True],
        ) -> _CatchingActorMethod[P, R]: ...

        @overload
        def options(
            self,
            *,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: bool | None = None,
        ) -> ActorMethod[P, Any]: ...

        def options(  # pyright: ignore[reportIncompatibleMethodOverride]
            self,
            *,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: bool | None = None,
        ) -> ActorMethod[P, Any]: ...

    # Only the mypy plugin names this class (by its full name): not a runtime class.
    class _OverloadedActorMethod(  # pyright: ignore[reportUnusedClass]
        ActorMethod[..., Any], Generic[RunF, AsyncF]
    ):
        """What the mypy plugin makes of an overloaded actor method (``@typing.overload``).

        ``run`` and ``run_async`` are overloaded like the method: the plugin passes both
        ``Overloaded`` types as the arguments (one item per overload; ``run_async``'s return
        ``ActorFuture``s). For type checkers only: at runtime the object is an
        :class:`ActorMethod`. ``options`` keeps ``ActorMethod.options``'s keywords and overloads
        (mypy's override check fails if they part) and returns the same type, overloads
        included, unless the options change what ``run`` returns.
        """

        run: RunF  # pyright: ignore[reportIncompatibleMethodOverride]
        run_async: AsyncF  # pyright: ignore[reportIncompatibleMethodOverride]

        # With ``catch_exceptions=True`` or a timer (``delay=``/``at=``) ``run`` returns no
        # overload's result: what ``ActorMethod.options`` says then, for any of the overloads.
        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: Literal[False] | None = None,
            delay: None = None,
            at: None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> Self: ...

        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: Literal[True],
            delay: None = None,
            at: None = None,
            timer_key: None = None,
            every: None = None,
        ) -> _CatchingActorMethod[..., Any]: ...

        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: None = None,
            name: None = None,
            metadata: None = None,
            max_retries: None = None,
            catch_exceptions: None = None,
            delay: float,
            at: None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[..., str]: ...

        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: None = None,
            name: None = None,
            metadata: None = None,
            max_retries: None = None,
            catch_exceptions: None = None,
            delay: None = None,
            at: float,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[..., str]: ...

        @overload
        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: bool | None = None,
            delay: float | None = None,
            at: float | None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[..., Any]: ...

        def options(
            self,
            *,
            idempotency_key: str | None = None,
            at_step: int | None = None,
            name: str | None = None,
            metadata: dict[str, Any] | None = None,
            max_retries: int | None = None,
            catch_exceptions: bool | None = None,
            delay: float | None = None,
            at: float | None = None,
            timer_key: str | None = None,
            every: float | None = None,
        ) -> ActorMethod[..., Any]: ...


def _not_a_method(cls: type, name: str) -> str:
    """What ``name`` is on ``cls`` where it is no actor method (a static or class method, a
    property): said, as a user who defined it is told why a handle does not call it."""
    kind = type(inspect.getattr_static(cls, name, None))
    what = {staticmethod: "a staticmethod", classmethod: "a classmethod", property: "a property"}.get(kind)
    if what is None:
        return ""
    return f" ({name!r} is {what}: an actor method takes self, and a handle calls only those)"
