"""Deleting an actor (protocol.md, "Deleting an actor"): the tombstone, its clean-up, and the
creation after it."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from .actor_log import Log, Step
from .folder import advance, deleted_error, encode_outcomes, pending, read_posts
from .timers import index_key


def digest(delete_key: str) -> str:
    return hashlib.sha256(delete_key.encode()).hexdigest()[:32]


def kept_extra(step: Step, *names: str) -> dict[str, Any]:
    return {name: step.extra[name] for name in names if name in step.extra}


def delete(log: Log, delete_key: str, *, clean: bool = True) -> bool:
    """Commit a tombstone after the newest step (False: deleted already, by this key or any),
    failing the calls of the posts pending (a post that fails its digest is not handled here),
    then delete those posts, and (``clean``: else as a deleter that died after its commit)
    the due-index entries of the timers pending in the deleted actor's last step. (A delete
    that loses its race takes the folder lease over: not done here.)"""
    newest = log.newest()
    if newest is None:
        raise LookupError(f"{log.actor}: no actor")
    keys = newest.extra.get("delete_keys")
    keys = [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
    if "deleted" in newest.extra or digest(delete_key) in keys:
        return False
    posts = read_posts(log)
    taken, _ = pending(newest, posts)
    now = time.time()
    extra = kept_extra(newest, "post_floor")
    extra |= {"deleted": {"time": now}, "delete_keys": [*keys, digest(delete_key)][-8:]}
    if cursor := advance(newest.extra.get("post_cursor", {}), taken, now):
        extra["post_cursor"] = cursor
    failed = [row[3] for post in taken for row in post.rows]
    calls = [{"method": "__vactor_delete__", "call_id": secrets.token_hex(16), "ok": True, "time": now}]
    calls += [
        {"method": row[0], "call_id": row[3], "ok": False, "time": now} for post in taken for row in post.rows
    ]
    value = deleted_error(log.actor, newest.n + 1)
    parts = {"state": b"", "outcomes": encode_outcomes([(c, False, value) for c in failed], pickled=True)}
    tombstone = log.commit(newest, None, calls, extra, parts=parts, fresh=True)
    if tombstone is None:
        return delete(log, delete_key, clean=clean)  # lost the race: start again from the newest step
    for post in posts:
        log.store.delete(post.key)
    for key, row in newest.extra.get("timers", {}).items() if clean else []:
        log.store.delete(index_key(row["due"], log.actor, key, row.get("g")))
    return True


def create_after(
    log: Log, tombstone: Step, class_name: str, state: Any, serializer: str = "pickle"
) -> Step | None:
    """The next actor under the id, of any class: step T+1 after tombstone T, its ``extra``
    T's cursor, floor and delete keys, and its incarnation ``born``."""
    assert "deleted" in tombstone.extra
    extra = kept_extra(tombstone, "post_cursor", "post_floor", "delete_keys") | {"born": tombstone.n + 1}
    return log.create(class_name, state, serializer=serializer, after=tombstone, **extra)
