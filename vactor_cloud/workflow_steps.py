"""Ray's sub-workflows: ``@workflow.step`` functions, lazy ``.step(...)`` nodes, continuations.

Ray Workflows let an actor method *return* a workflow instead of a value::

    @workflow.step
    def double(s):
        return 2 * s

    @workflow.virtual_actor
    class Actor:
        def double(self, update):
            step = double.step(self.val)              # a lazy node: nothing runs yet
            return self.update.step(step) if update else step

        def update(self, v):
            self.val = v
            return self.val

The method's result is then the result of that workflow (its *continuation*).
Here it runs inside the same call, before the call commits:

* Function steps (``f.step(...)``) run as children of the call on the
  ``vactor_cloud.subtask`` executor; steps whose inputs are ready run in
  parallel, each on its own copy of its inputs (by value, as Ray passes them:
  a step that changes an input changes neither the instance nor what another
  step gets). Each finished step is checkpointed under
  ``actors/<id>/tasks/<call_id>/<position>`` before the call can commit, so a
  re-run of the call (a conflict retry, a ``workflow.resume``, the same
  idempotency key after a crash) reads finished steps back instead of running
  them again. Steps are numbered in a deterministic order (dependencies
  first, then left to right), so every run of the call launches the same
  steps at the same positions.
* Actor-method steps (``self.method.step(...)``) run on the call's own
  instance, in the calling thread, one after another. They are writer code:
  like the method itself they are replayed from the committed state on a
  re-run, never memoized.
* The whole call, continuation included, commits as one step: all or
  nothing. (Ray committed every actor-method step of a sub-workflow on its
  own, so readers could see intermediate states; here they cannot.)
* A continuation that raises fails the call (nothing is committed) and, unless
  the call has an idempotency key (whose table then holds the exception, the
  call's final outcome; or, for a fault of the store or the runtime that no key
  records, ``dedup.is_outcome``, the caller retries with its key), leaves a
  *failure record* at ``actors/<id>/tasks/<call_id>/failed`` holding the call
  (method and arguments). ``workflow.resume(actor_id)`` runs the recorded calls
  again with their original call ids, which is what lets them
  reuse the checkpoints of the steps that had finished; the record is
  deleted once the re-run's sub-workflow succeeds, before its step is
  written (a delete that fails fails the re-run: nothing is committed and
  the call stays recorded, so no later resume applies it twice). A re-run
  commits under a key of its own (``ids.resume_dedup_key``), recorded only when it
  succeeds: another re-run of the call (another process's resume that listed the
  record too, the record put back) is answered with its outcome within the window.
  A call that this process runs again itself (``options(max_retries=N)``, or its
  batch applied again after a lost commit race) and whose sub-workflow then succeeds deletes its record
  before it commits, so resume does not apply it a second time. So does a
  posted call (written for any process's fold to apply) whose sub-workflow
  succeeds, whichever process runs it: its failure may have been recorded by
  another folding process whose step never landed (it died, or lost the
  lease); that costs one DELETE per such call. Compaction deletes records
  older than its ``min_age`` along with the checkpoints.

Function steps run with Ray's defaults: ``max_retries=3`` (a raising step is
run again up to three times), ``catch_exceptions=False`` (with ``True`` the
step's result is ``(value, None)`` or ``(None, exception)``).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, overload

from vactor_cloud import _sync, bytecode, codec
from vactor_cloud.actor import ActorClass, VirtualActorDecorator
from vactor_cloud.batch import CallContext, PendingCall
from vactor_cloud.byvalue import freeze_arguments, thaw_arguments
from vactor_cloud.checked_read import read_envelope
from vactor_cloud.definition import with_fresh_defaults
from vactor_cloud.errors import IntegrityError, NotFoundError, StorageError
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.ids import is_resume_key
from vactor_cloud.incarnation import BORN, born_in
from vactor_cloud.keys import FAILED_CALL, failure_key
from vactor_cloud.subtask import Subtask
from vactor_cloud.subtask_checkpoints import actor_serializer

if TYPE_CHECKING:
    from vactor_cloud.storage import ObjectStore

__all__ = [
    "FailedCall",
    "MethodStep",
    "StepFunction",
    "StepNode",
    "StepOptions",
    "WorkflowVirtualActorDecorator",
    "delete_failure",
    "failure_key",
    "failure_keys",
    "list_failures",
    "resuming",
    "step",
]

_K = TypeVar("_K", bound=type)

logger = logging.getLogger("vactor_cloud.workflow_steps")

#: Ray's default: a raising step runs again up to three times
DEFAULT_MAX_RETRIES = 3
_FAILED = FAILED_CALL
#: the part of a failed-call record holding the call as JSON (a json actor's, when JSON carries it)
_JSON_CALL = "call.json"


@dataclasses.dataclass(frozen=True, slots=True)
class StepOptions:
    """How a function step runs (Ray's ``step.options(...)``)."""

    name: str | None = None
    metadata: dict[str, Any] | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    catch_exceptions: bool = False
    #: Ray's per-step checkpoint switch; False runs the step without a checkpoint
    checkpoint: bool = True
    #: Ray's resource requests (num_cpus, ...): kept for repr, no meaning on a subtask executor
    ray_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError("max_retries must be an int >= 0")
        if self.metadata is not None:
            if not isinstance(self.metadata, dict):
                raise ValueError("metadata must be a dict")
            for key, value in self.metadata.items():
                try:
                    json.dumps(value)
                except TypeError as exc:
                    raise ValueError(f"metadata values must be JSON serializable; {key!r}: {exc}") from None


class StepFunction:
    """A function decorated with ``@workflow.step``: ``f.step(...)`` builds a lazy node."""

    def __init__(self, fn: Callable[..., Any], options: StepOptions | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"@workflow.step decorates functions, not {fn!r}")
        self.fn: Callable[..., Any] = fn
        self.step_options: StepOptions = options or StepOptions()
        self.__name__: str = getattr(fn, "__name__", type(fn).__name__)
        self.__qualname__: str = getattr(fn, "__qualname__", self.__name__)
        self.__doc__: str | None = getattr(fn, "__doc__", None)

    def step(self, *args: Any, **kwargs: Any) -> StepNode:
        """A node that will run ``fn(*args, **kwargs)``; nodes among the arguments run first."""
        return StepNode(self, args, kwargs)

    def options(
        self,
        *,
        max_retries: int | None = None,
        catch_exceptions: bool | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        checkpoint: bool | None = None,
        **ray_options: Any,
    ) -> StepFunction:
        """This step with other options; unspecified ones keep their current value."""
        current = self.step_options
        return StepFunction(
            self.fn,
            StepOptions(
                name=current.name if name is None else name,
                metadata=current.metadata if metadata is None else metadata,
                max_retries=current.max_retries if max_retries is None else max_retries,
                catch_exceptions=current.catch_exceptions if catch_exceptions is None else catch_exceptions,
                checkpoint=current.checkpoint if checkpoint is None else checkpoint,
                ray_options={**current.ray_options, **ray_options},
            ),
        )

    if not TYPE_CHECKING:  # for type checkers a step is not callable, as at runtime

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            # Ray refused direct calls the same way: a step only runs as part of a workflow.
            raise TypeError(
                f"workflow steps cannot be called directly: instead of {self.__name__}(), "
                f"use {self.__name__}.step() and return it from an actor method"
            )

    def __repr__(self) -> str:
        return f"<workflow step {self.step_options.name or self.__qualname__}>"


class MethodStep:
    """``self.method.step(...)`` inside an actor: a node that runs ``method`` on the same instance.

    ``workflow.virtual_actor`` sets this as the ``step`` attribute of every
    method function, so the bound method ``self.incr`` finds it. It is
    module-level, hence pickled by reference with a class body.
    """

    __slots__ = ("method",)

    def __init__(self, method: str) -> None:
        self.method: str = method

    def __call__(self, *args: Any, **kwargs: Any) -> StepNode:
        return StepNode(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<actor method step {self.method}>"


@dataclasses.dataclass(eq=False)
class StepNode:
    """One lazy step of a sub-workflow: what ``f.step(...)`` / ``self.m.step(...)`` return.

    Returning a node from an actor method makes the node's result the call's
    result (see the module docstring).
    """

    target: StepFunction | MethodStep
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def options(self, **options: Any) -> StepNode:
        """This node with other step options (function steps only)."""
        if not isinstance(self.target, StepFunction):
            raise TypeError(f"{self.target!r}: options() applies to function steps")
        return StepNode(self.target.options(**options), self.args, self.kwargs)

    def dependencies(self) -> list[StepNode]:
        """Nodes among the arguments (also inside lists, tuples and dicts), left to right."""
        found: list[StepNode] = []
        for value in (*self.args, *self.kwargs.values()):
            found.extend(_nodes_in(value))
        return found

    def __vactor_continue__(self, instance: Any, call: PendingCall, context: CallContext) -> Any:
        """The call's result: run this sub-workflow (``call_bodies.invoke`` calls this hook)."""
        try:
            value = evaluate(self, instance, context)
        except Exception:
            # A keyed call's outcome is what its idempotency key recorded (the exception):
            # running it again under resume would contradict what a retry with the key answers.
            # A fault the key does not record (dedup.is_outcome) is retried with the key: resume
            # would run the call without it, and that retry would apply it a second time.
            if not context.readonly and not _keyed_by_its_caller(call):
                _record_failure(context, call)
                _recorded.add(context.actor_id, context.call_id)
            raise
        if _recorded.has(context.actor_id, context.call_id) or (
            call.posted is not None and not _keyed_by_its_caller(call)
        ):
            # An earlier run of this very call recorded its failure, and this run (a retry by
            # ``max_retries``, or the batch applied again after a lost race) got through: the
            # call now commits with this result, and resume must not apply it a second time.
            # A posted call may have had that earlier run in another process (a folder that
            # died, or lost the lease, before its step landed): its record is deleted too.
            _forget_failure(context)
            _recorded.discard(context.actor_id, context.call_id)
        return value

    def __repr__(self) -> str:
        return f"<step node {self.target!r}>"


def _keyed_by_its_caller(call: PendingCall) -> bool:
    """Whether ``call`` has an idempotency key of its caller's (a timer's and an event's count):
    a re-run by ``workflow.resume`` carries a key of its own (``ids.resume_dedup_key``), and
    is otherwise an unkeyed call: its failure is recorded again, for the next resume."""
    return call.idempotency_key is not None and not is_resume_key(call.idempotency_key)


# -- evaluation ----------------------------------------------------------------------------------


def evaluate(node: StepNode, instance: Any, context: CallContext | None) -> Any:
    """Run the sub-workflow ``node`` (and any sub-workflow a step returns) and return its result."""
    value: Any = node
    while isinstance(value, StepNode):
        value = _run_dag(value, instance, context)
    return value


def _run_dag(root: StepNode, instance: Any, context: CallContext | None) -> Any:
    order = _post_order(root)
    results: dict[int, Any] = {}
    pending = order
    while pending:
        ready = [n for n in pending if all(id(d) in results for d in n.dependencies())]
        if not ready:  # (a node put among its own inputs after it was made: never ready)
            raise ValueError(f"{pending[0]!r}: the sub-workflow's steps wait for each other in a cycle")
        functions = [n for n in ready if isinstance(n.target, StepFunction)]
        if functions:
            for node, value in zip(functions, _launch(functions, results), strict=True):
                results[id(node)] = _finish(value, instance, context)
        for node in ready:
            if isinstance(node.target, MethodStep):
                method = getattr(instance, node.target.method)
                arguments = _replace(node.args, results), _replace(node.kwargs, results)
                args, kwargs = with_fresh_defaults(method, *arguments)
                value = method(*args, **kwargs)
                results[id(node)] = _finish(value, instance, context)
        pending = [n for n in pending if id(n) not in results]
    return results[id(root)]


def _finish(value: Any, instance: Any, context: CallContext | None) -> Any:
    """A step's value; a step that returned a sub-workflow has that sub-workflow's result."""
    return evaluate(value, instance, context) if isinstance(value, StepNode) else value


def _post_order(root: StepNode) -> list[StepNode]:
    """Every node of the DAG once, dependencies before dependents, left to right (deterministic)."""
    seen: set[int] = set()
    order: list[StepNode] = []
    stack: list[tuple[StepNode, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((dep, False) for dep in reversed(node.dependencies()) if id(dep) not in seen)
    return order


def _launch(nodes: list[StepNode], results: dict[int, Any]) -> list[Any]:
    """Run ready function steps; one checkpoint position each, in a deterministic order.

    Nodes of one step function run in parallel as one subtask launch; launches
    of different functions follow each other in order of first appearance.
    (One launch per function keeps a checkpoint's fingerprint to the
    function's name and the step's arguments: a function pickled by value,
    a closure or one of ``__main__``, may pickle to other bytes in another
    process, and a re-run there must still find its checkpoints.)
    """
    values: dict[int, Any] = {}
    groups: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        groups.setdefault(id(node.target), []).append(index)
    for indices in groups.values():
        target = nodes[indices[0]].target
        assert isinstance(target, StepFunction)
        runner = _StepCall(target)
        # By value, as Ray's object store passes them: a step runs on another thread (and is
        # memoized), so it must not share an object with the instance or with another step.
        inputs = [
            _by_value(_replace(nodes[i].args, results), _replace(nodes[i].kwargs, results)) for i in indices
        ]
        args = [a for a, _ in inputs]
        kwargs = [k for _, k in inputs]
        if target.step_options.checkpoint:
            outputs = Subtask(runner).map(args, kwargs)
        else:
            # checkpoint=False (Ray's option): such steps run again on every re-run of the call.
            outputs = [runner(a, k) for a, k in zip(args, kwargs, strict=True)]
        values.update(zip(indices, outputs, strict=True))
    return [values[i] for i in range(len(nodes))]


class _StepCall:
    """One step function as a subtask child: Ray's retries and ``catch_exceptions`` around it.

    It is named after the user's function (``__module__`` / ``__qualname__``),
    which is what a checkpoint's fingerprint records.
    """

    def __init__(self, target: StepFunction) -> None:
        self.fn = target.fn
        self.max_retries = target.step_options.max_retries
        self.catch = target.step_options.catch_exceptions
        self.__module__ = getattr(target.fn, "__module__", None) or "?"
        self.__qualname__ = target.__qualname__

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        attempt = 0
        while True:
            try:
                value = self.fn(*args, **kwargs)
            except Exception as exc:
                if attempt < self.max_retries:
                    attempt += 1
                    logger.info("step %s failed (attempt %d): %r; retrying", self.__qualname__, attempt, exc)
                    continue
                if self.catch:
                    return (None, exc)
                raise
            return (value, None) if self.catch else value


def _by_value(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A function step's own copy of its inputs (``TypeError`` if they cannot be copied)."""
    return thaw_arguments(freeze_arguments(args, kwargs))


def _nodes_in(value: Any) -> Iterator[StepNode]:
    if isinstance(value, StepNode):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _nodes_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nodes_in(item)


@overload
def _replace(value: tuple[Any, ...], results: dict[int, Any]) -> tuple[Any, ...]: ...
@overload
def _replace(value: dict[str, Any], results: dict[int, Any]) -> dict[str, Any]: ...
@overload
def _replace(value: Any, results: dict[int, Any]) -> Any: ...
def _replace(value: Any, results: dict[int, Any]) -> Any:
    """``value`` with each node inside (``_nodes_in``) replaced by its result; lists and dicts
    rebuilt, tuples too when a node is inside, each of its own type (a named tuple, an
    ``OrderedDict``, a ``defaultdict`` with its factory)."""
    if isinstance(value, StepNode):
        return results[id(value)]
    if isinstance(value, dict):
        mapping = copy.copy(value)
        for key, item in value.items():
            mapping[key] = _replace(item, results)
        return mapping
    if isinstance(value, list):
        sequence = copy.copy(value)
        sequence[:] = [_replace(item, results) for item in value]
        return sequence
    if isinstance(value, tuple) and next(_nodes_in(value), None) is not None:
        items = [_replace(item, results) for item in value]
        make = getattr(type(value), "_make", None)  # a named tuple's
        if make is not None:
            return make(items)
        return tuple(items)  # (another subclass of tuple holding a node: a tuple)
    return value


# -- failure records (what workflow.resume runs again) ----------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FailedCall:
    """A writer call whose sub-workflow raised: enough to run it again under its own call id."""

    actor_id: str
    call_id: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    time: float
    #: ``(key, sender, seq)`` of the post the call came in, if it was posted: while that post
    #: may still be applied by a fold, resume must not run the call (it would apply twice)
    post: tuple[str, str, int] | None = None
    #: the incarnation of the actor that recorded it (``vactor_cloud.incarnation``; 0: the id's first)
    born: int = 0


class _RecordedFailures:
    """The calls whose failure a run in this process recorded, until a later run of the same
    call (same actor and call id: a retry, a batch applied again, a posted call folded again)
    gets through. The most recent ``limit`` only: those runs follow each other closely."""

    def __init__(self, limit: int = 4096) -> None:
        self._calls: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def add(self, actor_id: str, call_id: str) -> None:
        with self._lock:
            self._calls[(actor_id, call_id)] = None
            self._calls.move_to_end((actor_id, call_id))
            while len(self._calls) > self._limit:
                self._calls.popitem(last=False)

    def has(self, actor_id: str, call_id: str) -> bool:
        return (actor_id, call_id) in self._calls

    def discard(self, actor_id: str, call_id: str) -> None:
        with self._lock:
            self._calls.pop((actor_id, call_id), None)


_recorded = _RecordedFailures()
renew_in_a_forked_child(vars(_recorded), "_lock")  # (the calls recorded stay recorded in a child)


def resuming(actor_id: str, call_id: str) -> None:
    """A run of the recorded failed call ``call_id`` is about to start (``workflow.resume``).

    Once its sub-workflow succeeds, its failure record is deleted *before* its step is
    written, as for a call this process recorded itself: deleted after the commit (resume's
    own delete), one failed DELETE (a 503, a crash) left the record of a committed call, and
    the next resume, from a process that knows nothing of this run, applied it again. Deleted
    before, a failed delete fails the run: nothing commits, the call stays resumable.
    """
    _recorded.add(actor_id, call_id)


def _record_failure(context: CallContext, call: PendingCall) -> None:
    runtime = context.runtime
    key = failure_key(context.actor_id, context.call_id)
    args, kwargs = call.arguments()
    parts = {}
    if actor_serializer(context) == "json":
        # A json actor's process may refuse to unpickle anything from storage: its call is
        # recorded as JSON whenever JSON carries the arguments exactly as they are.
        parts = _call_as_json(call.method, args, kwargs)
    if not parts:
        try:
            parts = {"call": bytecode.dumps((call.method, args, kwargs))}
        except Exception as exc:
            logger.warning(
                "%s: cannot record the failed call for resume (arguments not picklable: %s)", key, exc
            )
            return
    meta: dict[str, Any] = {
        "kind": "failed-call",
        "actor": context.actor_id,
        "call_id": context.call_id,
        "method": call.method,
        "time": time.time(),
    }
    if call.posted is not None:
        meta["post"] = list(call.posted)
    if context.born:  # (the id's first actor names none: records as before incarnations)
        meta[BORN] = context.born
    data = codec.encode(key, meta, parts, signing_key=runtime.settings.signing_key)
    try:
        _sync.sync(runtime.store.put(key, data))
    except StorageError as exc:
        logger.warning("%s: could not record the failed call for resume: %s", key, exc)


def _forget_failure(context: CallContext) -> None:
    key = failure_key(context.actor_id, context.call_id)
    try:
        _sync.sync(context.runtime.store.delete(key))
    except StorageError as exc:
        # Left behind, resume would run a call that commits now a second time: fail this run
        # (nothing is committed; the caller may retry) rather than leave it.
        raise StorageError(
            f"{key}: could not delete the failure record of a call that now succeeds: {exc}"
        ) from exc


def _call_as_json(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, bytes]:
    """The part ``call.json`` recording ``method(*args, **kwargs)``, or ``{}`` when JSON would not
    give back these very arguments (a tuple inside, a set, a float NaN, a dict's int key)."""
    row = {"method": method, "args": list(args), "kwargs": kwargs}
    try:
        data = json.dumps(row, separators=(",", ":"), allow_nan=False).encode("utf-8")
        if not _same_json(json.loads(data), row):
            return {}
    except (TypeError, ValueError, RecursionError):  # (a pickle then: deep nesting included)
        return {}
    return {_JSON_CALL: data}


def _same_json(decoded: Any, value: Any) -> bool:
    """``decoded`` (JSON's reading) is ``value`` with the very types (``1 == 1.0 == True`` aside)."""
    if type(decoded) is not type(value):
        return False
    if isinstance(value, dict):
        return decoded.keys() == value.keys() and all(_same_json(decoded[k], value[k]) for k in value)
    if isinstance(value, list):
        return len(decoded) == len(value) and all(
            _same_json(d, v) for d, v in zip(decoded, value, strict=True)
        )
    return bool(decoded == value)


def _recorded_call(
    key: str, parts: dict[str, bytes], unpickle: bool
) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """``(method, args, kwargs)`` of a failed-call record; a pickled one only if ``unpickle``."""
    if _JSON_CALL in parts:
        try:
            row = json.loads(parts[_JSON_CALL].decode("utf-8"))
            method, args, kwargs = row["method"], row["args"], row["kwargs"]
            if not isinstance(method, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
                raise TypeError("not {method: str, args: list, kwargs: dict}")
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise IntegrityError(key, f"malformed failed-call record: {exc!r}") from None
        return method, tuple(args), kwargs
    if "call" not in parts:
        raise IntegrityError(key, "not a failed-call record")
    if not unpickle:
        raise IntegrityError(
            key,
            "this failed call is recorded pickled (its arguments are not plain JSON data, or an earlier "
            "release wrote it), and this process never unpickles storage for a json actor "
            "(load_classes_from_storage=False); resume it from a process that trusts the store "
            "(load_classes_from_storage=True), or delete the record to give the call up",
        )
    try:
        method, args, kwargs = bytecode.loads(parts["call"])
    except Exception as exc:
        raise IntegrityError(key, f"the recorded call cannot be unpickled here: {exc}") from exc
    return method, tuple(args), dict(kwargs)


async def list_failures(
    store: ObjectStore, actor_id: str, signing_key: bytes | None, *, unpickle: bool = True, born: int = 0
) -> list[FailedCall]:
    """The recorded failed calls of ``actor_id``, oldest first. ``unpickle=False`` (a json actor
    in a process that loads no class body from storage) refuses a record held as a pickle.
    ``born``: the incarnation of the actor now under the id (``vactor_cloud.incarnation``); a
    record of an earlier actor under the id (one deleted: a call that raced its delete wrote it
    after the delete's clean-up) is not listed, nor read past its envelope."""
    prefix = f"actors/{actor_id}/tasks/"
    keys = [k for k in await store.list(prefix) if k.endswith(f"/{_FAILED}")]

    async def read(key: str) -> FailedCall | None:
        try:
            envelope = await read_envelope(store, key, signing_key)
        except NotFoundError:  # resumed or compacted meanwhile
            return None
        meta = envelope.meta
        if meta.get("kind") != "failed-call" or not {"call", _JSON_CALL} & envelope.parts.keys():
            raise IntegrityError(key, "not a failed-call record")
        recorded_by = _record_born(key, meta)
        if recorded_by < born:
            return None
        # The call its key names (a record copied under another call's key, unsigned, verifies:
        # resumed, it re-ran the call it names and deleted that call's record, never this one)
        # and its time, before anything is unpickled.
        call_id = key[len(prefix) : -len(f"/{_FAILED}")]
        try:
            named, when = str(meta["call_id"]), float(meta["time"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(key, f"malformed failed-call record: {exc!r}") from None
        if named != call_id:
            raise IntegrityError(key, f"names call {named!r}, not the call {call_id!r} its key names")
        method, args, kwargs = _recorded_call(key, envelope.parts, unpickle)
        post = meta.get("post")
        ref = None
        if isinstance(post, list) and len(post) == 3:
            try:
                ref = (str(post[0]), str(post[1]), int(post[2]))
            except (TypeError, ValueError, OverflowError) as exc:
                raise IntegrityError(key, f"malformed failed-call record: post {exc!r}") from None
        return FailedCall(actor_id, call_id, method, args, kwargs, when, ref, recorded_by)

    found = [f for f in await asyncio.gather(*(read(k) for k in keys)) if f is not None]
    return sorted(found, key=lambda f: f.time)


async def failure_keys(store: ObjectStore, actor_id: str) -> list[str]:
    """The keys of ``actor_id``'s failed-call records, any actor's under the id; one LIST."""
    return [k for k in await store.list(f"actors/{actor_id}/tasks/") if k.endswith(f"/{_FAILED}")]


async def has_failures(
    store: ObjectStore,
    actor_id: str,
    signing_key: bytes | None = None,
    *,
    born: int = 0,
    keys: list[str] | None = None,
) -> bool:
    """Whether ``actor_id`` has a recorded failed call (Ray's FAILED status); one LIST (none when
    ``keys``, from :func:`failure_keys`, are given). For an actor created after a delete
    (``born`` > 0) the records listed are read too (a GET each), and only those of this actor
    count (see ``list_failures``)."""
    if keys is None:
        keys = await failure_keys(store, actor_id)
    if not keys or born == 0:
        return bool(keys)

    async def ours(key: str) -> bool:
        try:
            envelope = await read_envelope(store, key, signing_key)
            return _record_born(key, envelope.meta) >= born
        except NotFoundError:  # resumed or compacted meanwhile
            return False
        except IntegrityError:  # counted, as a LIST counts it: resume says what is wrong with it
            return True

    return any(await asyncio.gather(*(ours(k) for k in keys)))


def _record_born(key: str, meta: dict[str, Any]) -> int:
    """The incarnation a failed-call record names (0: none, the id's first actor)."""
    try:
        return born_in(meta)
    except ValueError as exc:
        raise IntegrityError(key, f"malformed failed-call record: {exc}") from None


async def delete_failure(store: ObjectStore, actor_id: str, call_id: str) -> None:
    """Forget a failed call once its re-run succeeded."""
    await store.delete(failure_key(actor_id, call_id))


# -- the Ray-spelled decorators ------------------------------------------------------------------


@overload
def step(fn: Callable[..., Any], /) -> StepFunction: ...
@overload
def step(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    catch_exceptions: bool = False,
    checkpoint: bool = True,
    **ray_options: Any,
) -> Callable[[Callable[..., Any]], StepFunction]: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    catch_exceptions: bool = False,
    checkpoint: bool = True,
    **ray_options: Any,
) -> StepFunction | Callable[[Callable[..., Any]], StepFunction]:
    """``@workflow.step`` or ``@workflow.step(name=..., max_retries=..., catch_exceptions=...)``."""
    options = StepOptions(name, metadata, max_retries, catch_exceptions, checkpoint, dict(ray_options))

    def decorate(function: Callable[..., Any]) -> StepFunction:
        return StepFunction(function, options)

    return decorate if fn is None else decorate(fn)


class WorkflowVirtualActorDecorator(VirtualActorDecorator):
    """``workflow.virtual_actor``: ``vc.virtual_actor`` plus ``self.method.step(...)`` on every method."""

    @overload
    def __call__(self, cls: _K, /, *, serializer: str = ...) -> ActorClass[_K]: ...

    @overload
    def __call__(self, cls: None = None, /, *, serializer: str = ...) -> Callable[[_K], ActorClass[_K]]: ...

    def __call__(self, cls: Any = None, /, *, serializer: str = "pickle") -> Any:
        made = super().__call__(cls, serializer=serializer)
        if isinstance(made, ActorClass):
            return _with_method_steps(made)

        def decorate(klass: type) -> ActorClass[Any]:
            return _with_method_steps(made(klass))

        return decorate


def _with_method_steps(definition: ActorClass[Any]) -> ActorClass[Any]:
    for info in definition.methods.values():
        if getattr(info.function, "step", None) is None:
            try:
                info.function.step = MethodStep(info.name)  # type: ignore[attr-defined]
            except (AttributeError, TypeError):  # a builtin or slotted callable: no step spelling
                continue
    return definition
