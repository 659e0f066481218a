"""The one error tree of vactor_cloud.

Every error is also the builtin it resembles, so ``except FileNotFoundError``
and ``except LookupError`` keep working::

    VactorError
    ├── ActorNotFoundError          (LookupError)
    │   ├── VirtualActorNotInitializedError  created, its __init__ not committed yet (Ray's name)
    │   └── ActorDeletedError       deleted (``delete_actor``); ``get_or_create`` makes a new one
    ├── StepNotFoundError           (LookupError) compacted, or not written yet
    ├── CallNotFoundError           (LookupError) call_outcome found no such posted call
    ├── InvalidActorIdError         (ValueError)
    ├── ActorDefinitionError        (TypeError)
    │   ├── StateProtocolError      (ValueError) only one of __getstate__ / __setstate__
    │   └── ActorClassChangedError  a call named a method of a class the actor under its id is not
    ├── StateSerializationError     (TypeError)
    ├── OtherPythonError            (ImportError) code pickled by value by another Python version
    ├── CommitConflictError
    ├── ReentrantCallError          (RuntimeError) a writer's call would wait for its own actor
    ├── ActorBusyError              (TimeoutError) a queued call waited too long, not applied
    ├── RuntimeShutdownError        (RuntimeError) the runtime shut down before the call ran
    ├── StorageNotChosenError       (RuntimeError) a handle from another process, no init() here
    ├── CommitOutcomeUnknownError   a retried commit raced a compaction
    │   └── CallPendingError        a posted call was not applied yet when its caller stopped waiting
    ├── NestedCallPendingError      a call the method made is in doubt; this call was not applied
    ├── IntegrityError
    │   ├── DamagedObjectError      its bytes do not verify: cut short, altered, another key
    │   ├── FormatVersionError      a newer vactor_cloud wrote this object
    │   └── TruncatedObjectError    (also a StorageError) shorter than the store's own header
    └── StorageError                (OSError)
        ├── NotFoundError           (FileNotFoundError)
        ├── AlreadyExistsError      (FileExistsError)
        ├── PreconditionFailedError
        ├── PermissionDeniedError   (PermissionError) credentials valid, access refused
        │   └── AuthenticationError missing, invalid or expired credentials
        └── RetryableStorageError   safe to retry after a pause
            ├── ConflictError       S3 409 ConditionalRequestConflict
            ├── RateLimitedError    GCS 429, S3 503 SlowDown
            └── StorageTimeoutError (TimeoutError) a request or an operation ran out of time

Storage errors are raised only by ``vactor_cloud.storage``: backends translate
botocore / aiohttp / OS errors once, at that boundary, and carry the key.
"""

from __future__ import annotations

__all__ = [
    "ActorBusyError",
    "ActorClassChangedError",
    "ActorDefinitionError",
    "ActorDeletedError",
    "ActorNotFoundError",
    "AlreadyExistsError",
    "AuthenticationError",
    "CallNotFoundError",
    "CallPendingError",
    "CommitConflictError",
    "CommitOutcomeUnknownError",
    "ConflictError",
    "DamagedObjectError",
    "FormatVersionError",
    "IntegrityError",
    "InvalidActorIdError",
    "NestedCallPendingError",
    "NotFoundError",
    "OtherPythonError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitedError",
    "ReentrantCallError",
    "RetryableStorageError",
    "RuntimeShutdownError",
    "StateProtocolError",
    "StateSerializationError",
    "StepNotFoundError",
    "StepsMissingError",
    "StorageError",
    "StorageNotChosenError",
    "StorageTimeoutError",
    "TruncatedObjectError",
    "VactorError",
    "VirtualActorNotInitializedError",
]


class VactorError(Exception):
    """Base of every error raised by vactor_cloud."""


class ActorNotFoundError(VactorError, LookupError):
    """No actor with this id exists under the storage root."""

    def __init__(self, actor_id: str, root: str) -> None:
        where = root
        if root.lower().startswith("memory://"):
            where += (
                " (it lives in the memory of one process: what another process made there is not in"
                " it; name a directory or a bucket)"
            )
        super().__init__(
            f"no actor {actor_id!r} under {where}; create it with Cls.get_or_create({actor_id!r}, ...)"
            " or check the storage URL"
        )
        self.actor_id = actor_id
        self.root = root

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.actor_id, self.root))


class VirtualActorNotInitializedError(ActorNotFoundError):
    """The actor was called before its ``__init__`` committed (Ray's name for this error).

    Raised only for an actor whose creation was asked not to wait for
    ``__init__``; ``handle.ready()`` waits for it. A ``LookupError``, like
    every actor that cannot be found (yet).
    """

    def __init__(self, actor_id: str, root: str = "") -> None:
        LookupError.__init__(
            self,
            f"actor {actor_id!r} is being created: its __init__ has not committed yet; "
            "wait for handle.ready() before calling it",
        )
        self.actor_id = actor_id
        self.root = root


class ActorDeletedError(ActorNotFoundError):
    """The actor was deleted (``vactor_cloud.delete_actor``): its newest step is a tombstone.

    A ``LookupError`` like every actor that cannot be found; ``step`` is the tombstone's
    number. ``get_or_create`` on the id makes a new actor, as for an id never used.
    """

    def __init__(self, actor_id: str, root: str = "", step: int = -1) -> None:
        where = f" under {root}" if root else ""
        at = f" (its step {step} is a tombstone)" if step >= 0 else ""
        LookupError.__init__(
            self,
            f"actor {actor_id!r}{where} was deleted{at}; calls to it fail. Create a new actor "
            f"under the id with Cls.get_or_create({actor_id!r}, ...) if that is what you want",
        )
        self.actor_id = actor_id
        self.root = root
        self.step = step

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.actor_id, self.root, self.step))


class StepNotFoundError(VactorError, LookupError):
    """A step asked for by number does not exist: it was compacted, or is not written yet.

    ``remaining`` is ``(oldest, newest)``, the steps that can still be read.
    """

    def __init__(self, actor_id: str, step: int, remaining: tuple[int, int], *, compacted: bool) -> None:
        oldest, newest = remaining
        why = (
            "was compacted (deleted by retention)"
            if compacted
            else f"is not written yet (newest is {newest})"
        )
        super().__init__(
            f"actor {actor_id!r}: step {step} {why}; steps {oldest}..{newest} remain, ask for one of those"
        )
        self.actor_id = actor_id
        self.step = step
        self.remaining = remaining
        self.compacted = compacted

    def __reduce__(self) -> tuple[object, ...]:
        return (_step_not_found, (self.actor_id, self.step, self.remaining, self.compacted))


def _step_not_found(
    actor_id: str, step: int, remaining: tuple[int, int], compacted: bool
) -> StepNotFoundError:
    return StepNotFoundError(actor_id, step, remaining, compacted=compacted)


class CallNotFoundError(VactorError, LookupError):
    """``handle.call_outcome(call_id)`` found no posted call ``call_id`` that is applied or
    pending (a ``LookupError``).

    ``never`` is True when the process that posted the call is sure it was not applied and
    never will be: retrying it applies it once. False means "not found" (the asking
    process did not post it, or the actor's calls are never posted): never posted, its post
    expired unapplied, applied in a step older than those walked (or compacted), or a post
    whose write ended in doubt may still land until its poster's ``Settings.deadline`` has
    passed. ``detail`` says which; the message says what to do (``advice``, where the
    default does not fit: an actor whose calls are never posted has no post to wait for).
    """

    def __init__(
        self, actor_id: str, call_id: str, detail: str, *, never: bool = False, advice: str | None = None
    ) -> None:
        if advice is None:
            advice = (
                "retrying it applies it once"
                if never
                else "if it was posted less than the poster's Settings.deadline (30 s by default) ago, "
                "ask again after that; still not found, it was never posted, expired unapplied, or "
                "was applied long ago: retry it with the same idempotency key (applied at most once), "
                "or unkeyed only if it cannot have been applied"
            )
        super().__init__(f"actor {actor_id!r}: {detail}; {advice}")
        self.actor_id = actor_id
        self.call_id = call_id
        self.detail = detail
        self.never = never
        self.advice = advice

    def __reduce__(self) -> tuple[object, ...]:
        return (_call_not_found, (self.actor_id, self.call_id, self.detail, self.never, self.advice))


def _call_not_found(
    actor_id: str, call_id: str, detail: str, never: bool, advice: str | None = None
) -> CallNotFoundError:
    return CallNotFoundError(actor_id, call_id, detail, never=never, advice=advice)


class InvalidActorIdError(VactorError, ValueError):
    """The actor id cannot be used as part of an object key."""


class ActorDefinitionError(VactorError, TypeError):
    """The decorated class cannot be a virtual actor as written."""


class StateProtocolError(ActorDefinitionError, ValueError):
    """The class defines only one of ``__getstate__`` / ``__setstate__`` (Ray raised ``ValueError``)."""


class ActorClassChangedError(ActorDefinitionError):
    """A call named a method of one class, and the actor under its id is of another: the id
    was deleted and made again, with another class, since this process last saw it (its
    handle came from ``Cls.get_or_create``, or found the old actor, warm). Nothing was
    applied. Get the actor again: ``Cls.get_or_create(id)`` then raises this error's parent,
    ``ActorDefinitionError``; ``vc.get_actor(id)`` gives the actor as it is now.

    ``at_step``: for a read of a past step (``run(at_step=N)``), N, and ``now`` is that
    step's class (the id's class now may be another); None for a call on the actor as it is."""

    def __init__(self, actor_id: str, method: str, was: str, now: str, at_step: int | None = None) -> None:
        # (``was`` is "" for a posted call: its post names its class by a tag alone)
        of = f"a method of {was}" if was else "a method of another class"
        if at_step is None:
            message = (
                f"{method}() was called as {of}, and actor {actor_id!r} is now an instance of {now} "
                f"(deleted and made again since the caller last read it): the call was not applied. "
                f"Call the actor as it is now through vc.get_actor({actor_id!r}), or use another id "
                f"for the old class"
            )
        else:
            message = (
                f"{method}() was called as {of} to read step {at_step} of actor {actor_id!r}, and "
                f"that step is a state of {now}: the id held an actor of another class then (it was "
                f"deleted and made again between that step and the actor the handle was made "
                f"for). Nothing was run. handle.state_at({at_step}) reads that step, as an "
                f"instance of {now}"
            )
        TypeError.__init__(self, message)
        self.actor_id = actor_id
        self.method = method
        self.was = was
        self.now = now
        self.at_step = at_step

    def __reduce__(self) -> tuple[object, ...]:
        # (A refusal a fold records for a poster carries no ``at_step``: pickled with the four
        # arguments a release before ``at_step`` takes, its posters read it.)
        args = (self.actor_id, self.method, self.was, self.now)
        return (type(self), args if self.at_step is None else (*args, self.at_step))


class StateSerializationError(VactorError, TypeError):
    """The actor's state (or a call's result) could not be serialized; nothing was committed."""


class OtherPythonError(VactorError, ImportError):
    """An object holds code pickled by value (a lambda, a function or class of a script's
    ``__main__``, a class defined in a function) that another Python version compiled: run, it
    would go wrong or crash this interpreter, so it is not loaded. The object is whole: a process
    of that Python version loads it (see ``vactor_cloud/bytecode.py``)."""


class CommitConflictError(VactorError):
    """Other writers kept winning the race for the next step; nothing was committed."""

    def __init__(self, actor_id: str, attempts: int, reason: str | None = None) -> None:
        why = reason if reason is not None else f"gave up after {attempts} conflicting commit attempts"
        super().__init__(f"actor {actor_id!r}: {why}; nothing was committed, the call can be retried")
        self.actor_id = actor_id
        self.attempts = attempts
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.actor_id, self.attempts, self.reason))


class CommitOutcomeUnknownError(VactorError):
    """A commit's step number was compacted before the writer learned its outcome.

    The put landed (or its outcome was ambiguous) but the writer learned it
    only after a compaction had deleted that step number, and the retention
    watermark no longer records whose step it deleted there: the calls may or
    may not have been applied. Raised instead of retrying (which could apply
    the calls twice) or reporting success (which could be false).
    """

    #: why the outcome is unknown, when it is not the case above (None: that case)
    reason: str | None = None
    #: for a ``delete_actor`` left in doubt, its key: pass it to ``delete_actor`` again
    #: (``idempotency_key=``), from any process (None for a call's commit)
    idempotency_key: str | None = None

    def __init__(
        self, actor_id: str, step: int, reason: str | None = None, idempotency_key: str | None = None
    ) -> None:
        super().__init__(
            f"actor {actor_id!r}: {reason}"
            if reason is not None
            else f"actor {actor_id!r}: the commit of step {step} was answered late (a stall, or a retry "
            "after an ambiguous storage error) and a compaction deleted that step number meanwhile; the "
            "calls may or may not have been applied: check the actor's state (or use an idempotency key) "
            "before retrying"
        )
        self.actor_id = actor_id
        self.step = step
        self.reason = reason
        self.idempotency_key = idempotency_key

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.actor_id, self.step, self.reason, self.idempotency_key))


class IntegrityError(VactorError):
    """A stored object is corrupt, truncated, unsigned or signed with another key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.reason))


class StepsMissingError(IntegrityError):
    """The actor's steps are gone while its retention watermark (``gc``) remains.

    Left by steps deleted by hand, a compaction that deleted the newest step too, or a
    restore from a backup that brought ``gc`` back without the steps. The id holds neither
    the old actor nor room for a new one (a step 0 made there would lie below the
    watermark), so nothing is created: the message names the remedies.
    """

    def __init__(
        self, actor_id: str, watermark: int, newest: int | None, gc_key: str, steps_prefix: str
    ) -> None:
        found = "no step" if newest is None else f"no step at or above it (the newest is {newest})"
        super().__init__(
            steps_prefix,
            f"actor {actor_id!r} has a retention watermark {watermark} ({gc_key}) and {found}: its "
            "steps were deleted (by hand, by a compaction that deleted the newest step, or by a "
            "restore that brought back the watermark without them); nothing was created in its "
            "place. Restore the steps from a backup (the newest at least) to get the actor back; "
            f"or, to start the id afresh with its history gone, delete {gc_key} and whatever is "
            f"left under {steps_prefix}",
        )
        self.actor_id = actor_id
        self.watermark = watermark
        self.newest = newest
        self.gc_key = gc_key
        self.steps_prefix = steps_prefix

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.actor_id, self.watermark, self.newest, self.gc_key, self.steps_prefix))


class DamagedObjectError(IntegrityError):
    """The bytes read do not verify: cut short, or not matching their checksum or signature.

    Damaged at rest, altered, signed with another key, or cut short or damaged on the way (a
    body that ended early where nothing in HTTP said so). Only reading again tells the last
    from the others, so the runtime reads such an object again, a few times, before it raises
    this (its message then says how often it was read)."""


class FormatVersionError(IntegrityError):
    """The object was written by a newer vactor_cloud; upgrade to read it."""


class StorageError(VactorError, OSError):
    """An object-store operation failed. ``key`` names the object."""

    def __init__(self, message: str, key: str = "") -> None:
        OSError.__init__(self, message)
        self.key = key

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.key))


class TruncatedObjectError(IntegrityError, StorageError):
    """An object is shorter than the write token the store puts in front of every object (S3,
    local): a write torn by a crash (an unsynced mailbox file on the local store) or bytes
    vactor_cloud did not write. Both an :class:`IntegrityError` (damaged: never data) and a
    :class:`StorageError` (raised by a store, naming the key)."""

    def __init__(self, message: str, key: str = "") -> None:
        StorageError.__init__(self, message, key)
        self.reason = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.key))


class NotFoundError(StorageError, FileNotFoundError):
    """The object does not exist."""


class AlreadyExistsError(StorageError, FileExistsError):
    """A create-only put found the key already taken."""


class PreconditionFailedError(StorageError):
    """An if-match put found another version (or no object) at the key."""


class PermissionDeniedError(StorageError, PermissionError):
    """The store refused the request: the credentials lack a permission (S3 AccessDenied, GCS 403).

    Not transient: retrying does not help; the message says what to check.
    """


class AuthenticationError(PermissionDeniedError):
    """The store did not accept the credentials: missing, unknown, expired or mis-signed.

    Distinct from an unreachable store (a :class:`RetryableStorageError`):
    the server answered, and said who you are is not known to it.
    """


class RetryableStorageError(StorageError):
    """A transient refusal; the operation may or may not have been applied."""


class ConflictError(RetryableStorageError):
    """S3 answered 409 ConditionalRequestConflict: a concurrent conditional write is in flight."""


class RateLimitedError(RetryableStorageError):
    """The store asked us to slow down (GCS 429 on one object, S3 503 SlowDown)."""


class StorageTimeoutError(RetryableStorageError, TimeoutError):
    """A storage request (``Settings.timeout``) or a whole operation (``Settings.deadline``)
    took too long: the endpoint stalled, is unreachable, or kept failing (its message says
    what it last answered, when something did).

    ``write_in_flight`` is True when a write had been sent and not answered:
    only then may it have been applied (its message says so).
    """

    def __init__(self, message: str, key: str = "", write_in_flight: bool = False) -> None:
        super().__init__(message, key)
        self.write_in_flight = write_in_flight

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.key, self.write_in_flight))


class CallPendingError(CommitOutcomeUnknownError):
    """A call posted under contention (see ``vactor_cloud.posting``) was not applied within
    ``Settings.commit_timeout``. It may still be applied, at most once, by a later commit:
    ``handle.call_outcome(call_id)`` tells whether it was, and its result."""

    def __init__(self, actor_id: str, call_ids: list[str]) -> None:
        VactorError.__init__(
            self,
            f"actor {actor_id!r}: calls {call_ids} were posted and not applied yet; they may still "
            "be applied (at most once): ask handle.call_outcome(call_id) later",
        )
        self.actor_id = actor_id
        self.step = -1
        self.call_ids = call_ids

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.actor_id, self.call_ids))


class NestedCallPendingError(VactorError):
    """A method failed because a call it made (to another actor, a delete; or one made by an
    actor it called) ended with its outcome not known yet (``CallPendingError``,
    ``CommitOutcomeUnknownError``: that error is the ``__cause__``). This call's own outcome
    is known: its method raised, so it was not applied. The nested call may still apply (at
    most once): a retry of this call makes it again, so give the nested call an idempotency
    key derived from ``vc.current_call().call_id`` (the same in every retry of a keyed call).

    ``actor_id`` and ``call_id`` name this call; ``nested_actor_id`` and ``nested_call_ids``
    the one in doubt (``nested_call_ids`` empty when it was not posted), ``detail`` its
    message. ``nested`` lists every call in doubt as ``(actor_id, call_ids, detail)``, that
    one first: a ``TaskGroup`` of nested calls may leave several."""

    def __init__(
        self,
        actor_id: str,
        call_id: str,
        nested_actor_id: str,
        nested_call_ids: list[str],
        detail: str,
        more: list[tuple[str, list[str], str]] | None = None,
    ) -> None:
        #: every call in doubt, ``(actor_id, call_ids, detail)``
        self.nested = [(nested_actor_id, nested_call_ids, detail), *(more or [])]
        doubts = "; ".join(f"{other!r}{f' {ids}' if ids else ''} ({why})" for other, ids, why in self.nested)
        made = (
            f"a call made in it to actor {doubts} has an outcome"
            if len(self.nested) == 1
            else f"{len(self.nested)} calls made in it have outcomes (to actors {doubts})"
        )
        super().__init__(
            f"actor {actor_id!r}: call {call_id} was not applied: {made} not known yet; retry this "
            "call (the nested call may still apply: key it from vc.current_call().call_id so that "
            "the retry does not apply it twice)"
        )
        self.actor_id = actor_id
        self.call_id = call_id
        self.nested_actor_id = nested_actor_id
        self.nested_call_ids = nested_call_ids
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        first = (self.actor_id, self.call_id, self.nested_actor_id, self.nested_call_ids, self.detail)
        # One doubt: pickled as before ``nested`` (a folded call's outcome reaches older releases).
        return (type(self), (*first, self.nested[1:]) if len(self.nested) > 1 else first)


class ReentrantCallError(VactorError, RuntimeError):
    """A call would wait for an actor whose writer method is running on this very thread:
    the writer called its own actor, directly or through other actors (A -> B -> A).
    It would deadlock; it is refused before anything is queued."""


class ActorBusyError(VactorError, TimeoutError):
    """A queued call waited longer than ``max(Settings.deadline, Settings.commit_timeout)``
    for the actor's writer, held all that time by another thread that made no progress (a
    method running that long, or a cycle of calls across threads). It was withdrawn before
    it started: it was not applied, and can be retried."""


class RuntimeShutdownError(VactorError, RuntimeError):
    """The runtime was shut down (``vc.shutdown()``, or ``init()`` again) before the call
    started: it was not applied. A new runtime starts on the next use; retry there."""


class StorageNotChosenError(VactorError, RuntimeError):
    """A handle sent from a process whose store was ``origin`` (pickled: a multiprocessing or
    executor task's argument) was used in a process that chose no store (no ``vc.init()``, no
    ``$VACTOR_STORAGE``), whose embedded default store ``current`` does not hold its actor.
    Nothing was read or written there: call ``vc.init()`` in this process first."""

    def __init__(self, actor_id: str, origin: str, current: str) -> None:
        fix = (
            "a memory store lives in one process: use a store other processes reach (a directory, "
            "s3://, gs://) in both"
            if origin.startswith("memory:")
            else f"call vc.init({origin!r}) in this process (with the same signing_key and storage "
            "options: a handle carries no settings) before using the handle; in a pool, from "
            "the worker's initializer"
        )
        super().__init__(
            f"the handle of actor {actor_id!r} comes from a process whose store is {origin}, but "
            "this process never called vc.init() (nor set $VACTOR_STORAGE) and uses the "
            f"embedded default store {current}: {fix}"
        )
        self.actor_id = actor_id
        self.origin = origin
        self.current = current

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.actor_id, self.origin, self.current))
