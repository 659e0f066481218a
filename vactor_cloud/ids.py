"""What a caller may name things: actor ids, event ids and names, idempotency keys.

One module decides, so that every backend accepts exactly the same names:
a name that one store could hold and another could not (or could hold but
not list) is refused up front, with a message that says why.

* Actor and event ids become object keys (``actors/<id>/...``,
  ``actors/<id>/inbox/<event_id>``): no slash or backslash, no ``.``/``..``,
  no control characters, at most 255 bytes of UTF-8 (one file name on the
  local store), valid UTF-8 (a lone surrogate cannot be encoded), and no
  leading ``.``: the local store keeps its own files (temp files, locks)
  under dot-names and does not list dot-names, so an id ``.x`` would be
  stored but never listed there. Refused on every backend, not only local.
* Event names and idempotency keys live in the step's idempotency table
  together. An event's entry is ``"\\x00event\\x00<name>\\x00<event_id>"``;
  idempotency keys may not start with NUL and event names and ids may not
  contain control characters, so no idempotency key can ever equal an
  event's entry (and no two events' entries can collide). ``workflow.resume`` commits a
  re-run under a key of the same reserved namespace, ``"\\x00resume\\x00<born>\\x00<call_id>"``
  (:func:`resume_dedup_key`): no caller's key can equal it either. An idempotency key is
  held to :data:`MAX_ID_BYTES` too: it is recorded in the table of every step of
  its window (a longer one is best replaced by its digest).
"""

from __future__ import annotations

from vactor_cloud.errors import InvalidActorIdError

__all__ = [
    "EVENT_KEY_PREFIX",
    "MAX_ID_BYTES",
    "MAX_TIMER_KEY_BYTES",
    "RESUME_KEY_PREFIX",
    "event_dedup_key",
    "is_resume_key",
    "resume_dedup_key",
    "validate_actor_id",
    "validate_event_id",
    "validate_event_name",
    "validate_idempotency_key",
    "validate_runner_id",
    "validate_timer_key",
]

#: one file name on the local store
MAX_ID_BYTES = 255
#: a timer key's limit: the due index's key holds the actor id as well (``keys.timer_index_key``)
MAX_TIMER_KEY_BYTES = 200
#: what a refusal of a long name suggests instead
_SHORTEN = "use a shorter one, or a digest of it: hashlib.sha256(name.encode()).hexdigest() (64 characters)"
#: the namespace of event entries in the idempotency table; no idempotency key starts with it
EVENT_KEY_PREFIX = "\x00event\x00"
#: the namespace of ``workflow.resume``'s re-runs in the idempotency table (no caller's key)
RESUME_KEY_PREFIX = "\x00resume\x00"


def _utf8_length(text: str) -> int | None:
    """Length in UTF-8, or ``None`` if ``text`` cannot be encoded (a lone surrogate)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _too_long(what: str, size: int, limit: int) -> str:
    return f"{what} is {size} bytes in UTF-8, longer than the limit of {limit}; {_SHORTEN}"


def _key_component_problem(value: str, what: str, limit: int = MAX_ID_BYTES) -> str | None:
    """Why ``value`` cannot be one component of an object key on every backend, or ``None``."""
    if "/" in value or "\\" in value:
        return f"{what} {value!r} contains a slash; use another separator"
    if value in (".", ".."):
        return f"{what} {value!r} is a path component"
    if value.startswith("."):
        return (
            f"{what} {value!r} starts with '.', which the local store reserves for its own files "
            "(it would be stored but not listed); refused on every backend"
        )
    if _has_control(value):
        return f"{what} {value!r} contains control characters"
    size = _utf8_length(value)
    if size is None:
        return f"{what} {value!r} is not valid Unicode (a lone surrogate cannot be stored)"
    if size > limit:
        return (
            _too_long(what, size, limit)
            + " (a name must be one file name on the local store and fit an S3 or GCS object key)"
        )
    return None


def validate_actor_id(actor_id: object) -> None:
    """``InvalidActorIdError`` unless ``actor_id`` can name objects on every backend."""
    if not isinstance(actor_id, str):
        raise InvalidActorIdError(f"actor ids are strings, got {type(actor_id).__name__}")
    if not actor_id:
        raise InvalidActorIdError("the actor id is empty")
    problem = _key_component_problem(actor_id, "actor id")
    if problem is not None:
        raise InvalidActorIdError(problem)


def validate_event_id(event_id: object) -> str:
    """``ValueError`` unless ``event_id`` can name an inbox object on every backend."""
    if not isinstance(event_id, str) or not event_id:
        raise ValueError(f"event_id must be a non-empty string, got {event_id!r}")
    problem = _key_component_problem(event_id, "event_id")
    if problem is not None:
        raise ValueError(problem)
    return event_id


def validate_runner_id(runner_id: object) -> str:
    """``ValueError`` unless ``runner_id`` can name a timer runner's heartbeat object
    (``timer-runners/<runner_id>``) on every backend: the rules of actor ids."""
    if not isinstance(runner_id, str) or not runner_id:
        raise ValueError(f"a runner id must be a non-empty string, got {runner_id!r}")
    problem = _key_component_problem(runner_id, "runner id")
    if problem is not None:
        raise ValueError(problem)
    return runner_id


def validate_timer_key(key: object) -> str:
    """``ValueError`` unless ``key`` can name a timer's due-index entry on every backend: the
    rules of actor ids, at most :data:`MAX_TIMER_KEY_BYTES`."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"a timer key must be a non-empty string, got {key!r}")
    problem = _key_component_problem(key, "timer key", MAX_TIMER_KEY_BYTES)
    if problem is not None:
        raise ValueError(problem)
    return key


def validate_event_name(name: object) -> str:
    """``ValueError`` unless ``name`` is a non-empty string without control characters, valid
    UTF-8, at most :data:`MAX_ID_BYTES`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"the event name must be a non-empty string, got {name!r}")
    if _has_control(name):
        raise ValueError(f"the event name {name!r} contains control characters")
    size = _utf8_length(name)
    if size is None:
        raise ValueError(f"the event name {name!r} is not valid Unicode (a lone surrogate)")
    if size > MAX_ID_BYTES:
        # (recorded with the event id in the table of every step of its window)
        raise ValueError(_too_long("the event name", size, MAX_ID_BYTES))
    return name


def validate_idempotency_key(key: object) -> str:
    """``ValueError`` unless ``key`` is a usable idempotency key outside the events' namespace."""
    if not isinstance(key, str) or not key:
        raise ValueError("idempotency_key must be a non-empty string")
    if key.startswith("\x00"):
        raise ValueError(
            "idempotency_key may not start with a NUL character: that namespace belongs to "
            "external events, whose application the same table records"
        )
    size = _utf8_length(key)
    if size is None:
        raise ValueError(f"idempotency_key {key!r} is not valid Unicode (a lone surrogate)")
    if size > MAX_ID_BYTES:
        # (recorded in the table of every step of its window, and in every call record)
        raise ValueError(_too_long("idempotency_key", size, MAX_ID_BYTES))
    return key


def event_dedup_key(name: str, event_id: str) -> str:
    """The idempotency-table key recording that event ``event_id`` (named ``name``) was applied.

    Unambiguous: ``name`` and ``event_id`` contain no control characters
    (validated when the event is sent), and no idempotency key starts with NUL.
    """
    return f"{EVENT_KEY_PREFIX}{name}\x00{event_id}"


def resume_dedup_key(born: int, call_id: str) -> str:
    """The idempotency-table key a ``workflow.resume`` re-run of the failed call ``call_id`` (of
    the actor of incarnation ``born``) commits under: recorded only when the re-run succeeds, so
    another re-run of that call (another process's resume that listed its record too, or a
    record put back) is answered with that outcome instead of applying the call again."""
    return f"{RESUME_KEY_PREFIX}{born}\x00{call_id}"


def is_resume_key(key: str | None) -> bool:
    """Whether ``key`` is a ``workflow.resume`` re-run's (:func:`resume_dedup_key`), not a caller's."""
    return key is not None and key.startswith(RESUME_KEY_PREFIX)
