"""The object-key layout under a store root, owned here and nowhere else (DESIGN.md §3)::

    actors/<id>/class/<sha256>               class body, content-addressed, create-only
    actors/<id>/steps/<N:020d>               immutable step objects, create-only; step 0 = creation
    actors/<id>/HEAD                         advisory pointer to a recent step; forward-only
    actors/<id>/gc                           retention low-watermark
    actors/<id>/dedup/<N:020d>-<token>       idempotency-table checkpoints, create-only
    actors/<id>/dedup/outcomes/<N:020d>-<sha256>   large recorded outcomes, create-only
    actors/<id>/inbox/<event_id>             external events, create-only
    actors/<id>/tasks/<call_id>/<pos:06d>    memoized sub-task results
    actors/<id>/mail/<name>                  calls posted under contention, create-only
    actors/<id>/lease                        advisory folder lease under contention (a hint)
    mail-key                                 the key that seals posts carried by their names
    timers/<due_ms:020d>-<gen>/<id>/<key>    due index of durable timers, create-only (a hint);
                                             timers/<due_ms:020d>/<id>/<key> before generations
    timer-claims/<id>                        a timer runner's lease on one actor's due timers
    timer-runners/<runner_id>                a live timer runner's heartbeat (its expiry)

Every other module asks this one for a key; none spells a path itself.
"""

from __future__ import annotations

from vactor_cloud.ids import MAX_ID_BYTES, MAX_TIMER_KEY_BYTES

__all__ = [
    "ACTORS",
    "FAILED_CALL",
    "LONGEST_KEY",
    "ROOT_NAMES",
    "STEP_DIGITS",
    "TIMER_CLAIMS",
    "TIMER_INDEX",
    "TIMER_RUNNERS",
    "actor_id_of",
    "actor_prefix",
    "class_key",
    "dedup_outcomes_prefix",
    "dedup_prefix",
    "failure_key",
    "gc_key",
    "head_key",
    "inbox_key",
    "inbox_prefix",
    "is_class_key",
    "lease_key",
    "mail_seal_key",
    "post_key",
    "posts_prefix",
    "step_key",
    "step_of",
    "steps_prefix",
    "task_key",
    "tasks_prefix",
    "timer_claim_key",
    "timer_index_entry",
    "timer_index_key",
    "timer_runner_key",
    "timer_runner_of",
]

#: the prefix every actor's objects live under
ACTORS = "actors/"
#: step numbers are zero-padded so that keys sort in step order
STEP_DIGITS = 20


def actor_prefix(actor_id: str) -> str:
    return f"{ACTORS}{actor_id}/"


def actor_id_of(key: str) -> str | None:
    """The actor id a key under ``actors/`` belongs to, or ``None`` for any other key."""
    if not key.startswith(ACTORS):
        return None
    actor_id, sep, _ = key[len(ACTORS) :].partition("/")
    return actor_id if sep and actor_id else None


def steps_prefix(actor_id: str) -> str:
    return f"{actor_prefix(actor_id)}steps/"


def step_key(actor_id: str, step: int) -> str:
    return f"{steps_prefix(actor_id)}{step:0{STEP_DIGITS}d}"


def step_of(key: str) -> int | None:
    """The step number a step key names, or ``None`` if ``key`` is not one."""
    head, _, tail = key.rpartition("/")
    # ASCII digits only: int() also reads other scripts' digits ("\u0661" is 1), and a key
    # spelling a number so is no step key (steps are read by the key step_key spells)
    if not head.endswith("/steps") or len(tail) != STEP_DIGITS or not (tail.isascii() and tail.isdigit()):
        return None
    return int(tail)


def class_key(actor_id: str, sha: str) -> str:
    return f"{actor_prefix(actor_id)}class/{sha}"


def is_class_key(key: str) -> bool:
    """Whether ``key`` names a stored class body (``actors/<id>/class/<sha>``)."""
    head, _, sha = key.rpartition("/")
    return key.startswith(ACTORS) and head.endswith("/class") and bool(sha)


def head_key(actor_id: str) -> str:
    return f"{actor_prefix(actor_id)}HEAD"


def gc_key(actor_id: str) -> str:
    return f"{actor_prefix(actor_id)}gc"


def inbox_prefix(actor_id: str) -> str:
    return f"{actor_prefix(actor_id)}inbox/"


def inbox_key(actor_id: str, event_id: str) -> str:
    return f"{inbox_prefix(actor_id)}{event_id}"


def tasks_prefix(actor_id: str, call_id: str | None = None) -> str:
    """All sub-task checkpoints of an actor, or those of one call."""
    base = f"{actor_prefix(actor_id)}tasks/"
    return base if call_id is None else f"{base}{call_id}/"


#: positions a run of a method numbers its sub-tasks with: six digits, so that the keys of
#: one call's checkpoints sort as their positions do (a listing finds a launch's range)
TASK_POSITIONS = 1_000_000


def task_key(actor_id: str, call_id: str, position: int) -> str:
    return f"{tasks_prefix(actor_id, call_id)}{position:06d}"


#: the last part of a failed call's record for resume, beside its sub-task checkpoints
FAILED_CALL = "failed"


def failure_key(actor_id: str, call_id: str) -> str:
    """Where the failure of one call is recorded (for ``workflow.resume``): beside its checkpoints."""
    return f"{tasks_prefix(actor_id, call_id)}{FAILED_CALL}"


#: the due index of durable timers: entries sort by due time (milliseconds since the epoch)
TIMER_INDEX = "timers/"
#: runners' leases on one actor's due timers
TIMER_CLAIMS = "timer-claims/"
_DUE_DIGITS = 20


def timer_index_key(due_ms: int, actor_id: str, key: str, gen: int | None = None) -> str:
    """The due-index entry of one timer occurrence; ``gen`` is the step that scheduled it (None:
    the name written before generations, which names no particular occurrence)."""
    due = f"{due_ms:0{_DUE_DIGITS}d}" if gen is None else f"{due_ms:0{_DUE_DIGITS}d}-{gen}"
    return f"{TIMER_INDEX}{due}/{actor_id}/{key}"


def timer_index_entry(key: str) -> tuple[int, str, str, int | None] | None:
    """(due_ms, actor_id, timer key, generation or None) of a due-index key, or ``None`` if ``key``
    is not one. Only the spelling :func:`timer_index_key` writes is one: an entry is deleted by
    the key rebuilt from these parts."""
    if not key.startswith(TIMER_INDEX):
        return None
    parts = key[len(TIMER_INDEX) :].split("/")
    if len(parts) != 3 or not all(parts[1:]):
        return None
    due, dash, gen = parts[0].partition("-")
    if len(due) != _DUE_DIGITS or not (due.isascii() and due.isdigit()):
        return None
    if not dash:
        return int(due), parts[1], parts[2], None
    if not (gen.isascii() and gen.isdigit()) or str(int(gen)) != gen:
        return None
    return int(due), parts[1], parts[2], int(gen)


def timer_claim_key(actor_id: str) -> str:
    return f"{TIMER_CLAIMS}{actor_id}"


#: heartbeats of live timer runners: the members among which they split the actors
TIMER_RUNNERS = "timer-runners/"


def timer_runner_key(runner_id: str) -> str:
    return f"{TIMER_RUNNERS}{runner_id}"


def timer_runner_of(key: str) -> str | None:
    """The runner id a heartbeat key names, or ``None`` if ``key`` is not one."""
    if not key.startswith(TIMER_RUNNERS):
        return None
    runner_id = key[len(TIMER_RUNNERS) :]
    return runner_id if runner_id and "/" not in runner_id else None


def posts_prefix(actor_id: str) -> str:
    """Calls posted to the actor by processes under contention (``vactor_cloud.posting``).

    (``mail/``, not the ``posts/`` of the first posting format: those used long keys, costly
    on the local store's chunked layout; a process of that release neither reads nor deletes
    these.)
    """
    return f"{actor_prefix(actor_id)}mail/"


def post_key(actor_id: str, name: str) -> str:
    """A post: ``name`` is 12 base-32 characters, the time (ms) then 3 random characters, then
    for a small post ``"."`` and the post itself (``vactor_cloud.post_objects.inline_name``)."""
    return f"{posts_prefix(actor_id)}{name}"


def mail_seal_key() -> str:
    """The store's key that seals (encrypts) the posts carried by their names, create-only:
    object names reach where bodies do not (access logs, inventories), this key does not."""
    return "mail-key"


def lease_key(actor_id: str) -> str:
    """The advisory folder lease of a contended actor (``vactor_cloud.lease``): never the truth."""
    return f"{actor_prefix(actor_id)}lease"


def dedup_prefix(actor_id: str) -> str:
    """Idempotency-table checkpoints (``vactor_cloud.dedup``): ``dedup/<N:020d>-<token>``."""
    return f"{actor_prefix(actor_id)}dedup/"


def dedup_outcomes_prefix(actor_id: str) -> str:
    """Large recorded outcomes the checkpoints name (``vactor_cloud.dedup``), content-addressed
    and of the step that first wrote them: ``dedup/outcomes/<N:020d>-<sha256>``."""
    return f"{dedup_prefix(actor_id)}outcomes/"


#: The longest key this layout spells (UTF-8 bytes), every name at its limit (``vactor_cloud.ids``):
#: an event in an inbox, ``actors/<id>/inbox/<event_id>``. A store must hold keys this long
#: (``ObjectStore.max_key_bytes``; S3 and GCS under a long prefix may not).
LONGEST_KEY = max(
    len(inbox_key("i" * MAX_ID_BYTES, "e" * MAX_ID_BYTES)),
    len(timer_index_key(10**20 - 1, "i" * MAX_ID_BYTES, "k" * MAX_TIMER_KEY_BYTES, 10**20 - 1)),
    len(post_key("i" * MAX_ID_BYTES, "n" * MAX_ID_BYTES)),
)


#: the first component of every key a store holds: a directory whose entries are none of these
#: holds no store (the ``vactor`` command refuses it rather than take it for an empty store)
ROOT_NAMES = frozenset(
    name.rstrip("/") for name in (ACTORS, TIMER_INDEX, TIMER_CLAIMS, TIMER_RUNNERS, mail_seal_key())
)
