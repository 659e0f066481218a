"""Process-wide counters of the runtime's notable events, and the log records that go with them.

Every commit, lost race, transient retry, lost response, eviction and timeout
is counted here (``vactor_cloud.stats()`` returns a snapshot) and, where it
is worth a line, logged on the ``vactor_cloud`` logger: DEBUG for routine
events (a lost race), INFO for notable ones (a lost response resolved),
WARNING when an outcome is unknown or a limit was hit.

The bottom layer: it imports only :mod:`vactor_cloud.errors`, so the storage
backends, the log and the runtime can all report here. Counting is
thread-safe (one lock, held for an addition) and costs about a microsecond.
Counters are per process and start at zero; they are not persisted.
"""

from __future__ import annotations

import collections
import logging
import threading

from vactor_cloud.errors import CommitOutcomeUnknownError, IntegrityError, StorageError
from vactor_cloud.forked_child import renew_in_a_forked_child

__all__ = [
    "COUNTERS",
    "commit_conflict",
    "commit_error",
    "committed",
    "count",
    "deadline_timeout",
    "evicted",
    "lost_response_resolved",
    "reset",
    "stats",
    "storage_timeout",
    "transient_retry",
]

logger = logging.getLogger("vactor_cloud")

#: every counter, with what it counts (docs/observability.md says more); a snapshot lists them all
COUNTERS: dict[str, str] = {
    "commits": "steps committed (one per successful create-only put of a step)",
    "commit_conflicts": "commit attempts that lost the race for a step number to another writer",
    "commit_retries_transient": "commit attempts retried after a storage error (before the put was sent, "
    "or while a posted batch waits)",
    "commit_errors": "commits that failed with an error other than losing races",
    "lost_responses_resolved": "step puts whose response was lost and a read-back found our own object",
    "outcome_unknown": "commits whose put was sent but whose outcome could not be learned",
    "reads": "read-only calls run",
    "folded_events": "external events applied by committed steps",
    "evictions": "idle actors dropped from the cache (max_cached_actors / max_cache_bytes)",
    "storage_timeouts": "storage requests that ran out of Settings.timeout (unanswered, or answered "
    "only with failures tried again)",
    "deadline_timeouts": "operations that did not finish within Settings.deadline",
    "posted_calls": "calls a writer that lost a race posted for any writer to fold into its commit",
    "folded_calls": "posted calls (this process's or others') applied by steps this process committed",
}

_lock = threading.Lock()
_counts: collections.Counter[str] = collections.Counter()


renew_in_a_forked_child(globals(), "_lock")  # (the counts stay: a forked child counts on from them)


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to the counter ``name``."""
    with _lock:
        _counts[name] += n


def stats() -> dict[str, int]:
    """This process's counters of notable events since it started (or since :func:`reset`).

    Every documented counter is present, zero if nothing happened::

        >>> vc.stats()["commit_conflicts"]
        0

    See :data:`COUNTERS` and the Observability guide for what each counts.
    """
    with _lock:
        counts = dict(_counts)
    return {name: counts.pop(name, 0) for name in COUNTERS} | dict(sorted(counts.items()))


def reset() -> None:
    """Set every counter back to zero (for tests and benchmarks)."""
    with _lock:
        _counts.clear()


# -- the events: each counts and, where worth it, logs --------------------------------------


def committed(folded_calls: int) -> None:
    """A step was committed; ``folded_calls`` of its calls came from posts (contention combining)."""
    with _lock:
        _counts["commits"] += 1
        _counts["folded_calls"] += folded_calls


def commit_conflict(actor_id: str, step: int, attempt: int) -> None:
    count("commit_conflicts")
    logger.debug("actor %r: lost the race for step %d (attempt %d)", actor_id, step, attempt)


def transient_retry(actor_id: str, exc: BaseException) -> None:
    count("commit_retries_transient")
    logger.debug("actor %r: storage error before the commit's put, retrying: %s", actor_id, exc)


def commit_error(actor_id: str, exc: BaseException, put_sent: bool, *, posted: bool = False) -> None:
    """A commit failed (not by losing races). Its outcome is unknown when the put was sent
    and the error came from storage, or the runtime said so. A ``posted`` batch's is not:
    its post (a put) was sent, the step put of our fold carrying it only if ``put_sent``,
    and its caller is told the calls are pending (``call_outcome`` learns their outcome)."""
    count("commit_errors")
    if posted:
        step_put = "and so was our fold's step put" if put_sent else "no step put"
        logger.warning(
            "actor %r: commit failed with its calls posted (the post was sent; %s): they are "
            "pending, call_outcome tells whether they were applied: %s",
            actor_id,
            step_put,
            exc,
        )
        return
    unknown = isinstance(exc, CommitOutcomeUnknownError) or (
        put_sent and isinstance(exc, (StorageError, IntegrityError))
    )
    if unknown:
        count("outcome_unknown")
        logger.warning("actor %r: commit outcome unknown (the put was sent): %s", actor_id, exc)
    else:
        logger.debug("actor %r: commit failed: %s", actor_id, exc)


def lost_response_resolved(key: str, error: BaseException | None) -> None:
    count("lost_responses_resolved")
    cause = error if error is not None else "a retry met our own object"
    logger.info("%s: the response to our put was lost (%s); read back, the object is ours", key, cause)


def evicted(actor_id: str) -> None:
    count("evictions")
    logger.debug("actor %r: evicted from the cache", actor_id)


def storage_timeout(what: str, key: str, timeout: float, answered: str | None = None) -> None:
    """A request that ran out of ``timeout``; ``answered``: what the endpoint answered meanwhile
    (each answer a failure tried again), ``None`` when nothing did. The line says what the
    error says: it gave up after the timeout, or it got no answer."""
    count("storage_timeouts")
    if answered is None:
        logger.warning("%s %s: got no answer within %g s (Settings.timeout)", what, key, timeout)
    else:
        logger.warning("%s %s: gave up after %g s (Settings.timeout); %s", what, key, timeout, answered)


def deadline_timeout(where: str, deadline: float, why: str = "") -> None:
    """An operation that ran out of ``Settings.deadline``; ``why``: what its error says met it
    (its text after "(Settings.deadline)", separator included)."""
    count("deadline_timeouts")
    logger.warning(
        "an operation on %s did not finish within %g s (Settings.deadline)%s", where, deadline, why
    )
