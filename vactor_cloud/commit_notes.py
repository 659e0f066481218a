"""What an exception that ended (or interrupted) a commit, or a wait for one, tells its catcher
about the calls it stopped: sent or not, applied or perhaps, and what to do before calling
again. Added as notes (``BaseException.add_note``) by :class:`~vactor_cloud.core.ActorCore`.
"""

from __future__ import annotations

from vactor_cloud.batch import PendingCall
from vactor_cloud.ids import is_resume_key

__all__ = [
    "interrupted_note",
    "not_sent_note",
    "noted_interrupted",
    "noted_sent",
    "sent_note",
    "started_elsewhere_note",
]


def sent_note(actor_id: str, step: int) -> str:
    """What a storage error that ended a commit after its step's put was sent tells its catcher."""
    return (
        f"vactor_cloud: the write of step {step} of actor {actor_id!r} was sent before this "
        "error: the calls may or may not have been applied (look at handle.history(), or use "
        "an idempotency key, before calling again)"
    )


def noted_sent(exc: BaseException, actor_id: str) -> bool:
    """Whether ``exc`` carries :func:`sent_note` about ``actor_id`` already."""
    return any(
        n.startswith("vactor_cloud: the write of step ") and f" of actor {actor_id!r} was sent " in n
        for n in getattr(exc, "__notes__", ())
    )


def not_sent_note(actor_id: str, batch: list[PendingCall]) -> str:
    """What an interrupt that stopped a commit before its step's put was sent tells its catcher."""
    methods = ", ".join(sorted({call.method for call in batch}))
    return (
        f"vactor_cloud: this interrupted the commit of {len(batch)} call(s) to actor {actor_id!r} "
        f"({methods}) before its step's write was sent: not applied; they can be called again"
    )


def noted_interrupted(exc: BaseException, actor_id: str) -> bool:
    """Whether ``exc`` carries a commit's note about ``actor_id`` already."""
    head = "vactor_cloud: this interrupted the commit of "
    return any(n.startswith(head) and f"to actor {actor_id!r} " in n for n in getattr(exc, "__notes__", ()))


def interrupted_note(actor_id: str, batch: list[PendingCall]) -> str:
    """What an interrupt that stopped a commit tells its catcher (and its traceback)."""
    methods = ", ".join(sorted({call.method for call in batch}))
    if any(call.posted is not None for call in batch):
        # Posted under contention: not withdrawn. History does not show such a call until a
        # fold applies it, so "look at history before calling again" applied it twice.
        ids = ", ".join(call.call_id for call in batch[:_NOTE_IDS])
        if len(batch) > _NOTE_IDS:
            ids += f" and {len(batch) - _NOTE_IDS} more"
        return (
            f"vactor_cloud: this interrupted the commit of {len(batch)} call(s) to actor "
            f"{actor_id!r} ({methods}) after they were posted under contention: the post stays, "
            "and any process's fold may still apply them (at most once, after this process's "
            "earlier calls to the actor, before its later ones) until it expires (30 min); "
            f"handle.call_outcome(call_id) tells what became of each (call ids: {ids}): do not "
            "call again before it says not applied, unless the call has an idempotency key"
        )
    # (A resumed call's key is none of its caller's to retry with.)
    keyed = all(
        call.idempotency_key is not None and not is_resume_key(call.idempotency_key) for call in batch
    )
    retry = (
        "a retry with the same idempotency key applies each at most once"
        if keyed
        else "look at handle.history() before calling again (calls with an idempotency key "
        "can be retried safely)"
    )
    return (
        f"vactor_cloud: this interrupted the commit of {len(batch)} call(s) to actor "
        f"{actor_id!r} ({methods}): they may or may not have been applied (a step put already "
        f"sent may land); {retry}"
    )


#: call ids an interrupt's note names at most
_NOTE_IDS = 8


def started_elsewhere_note(actor_id: str) -> str:
    """What an interrupt tells whose call another thread was already committing."""
    return (
        f"vactor_cloud: this interrupted a wait for a call to actor {actor_id!r} that another "
        "thread of this process had already taken into the batch it commits: that thread goes "
        "on, so the call may be applied (look at the actor before calling again, or use an "
        "idempotency key)"
    )
