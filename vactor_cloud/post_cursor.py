"""The post cursor: which posts a step (or an earlier one) applied, so that each applies once.

Exactly once, with no table that grows with the traffic: every step carries
the **post cursor**, ``extra["post_cursor"] = {sender: [seq, time]}``, the
newest seq applied per sender. A folder applies a post only if its seq is
above the sender's cursor, and advances the cursor in the same create-only
put that commits the calls. A post left behind (its folder died before
deleting it) has ``seq <= cursor`` and is deleted unapplied. Senders silent
for ``SENDER_TTL`` leave the cursor; a post older than half that is never
applied (its poster stopped waiting long before), nor one dated at or before
the newest entry time ever dropped (``extra["post_floor"]``, whatever the
folder's clock says), so a forgotten sender cannot have a post applied twice.
"""

from __future__ import annotations

import math
from typing import Any

from vactor_cloud.post_objects import Post

__all__ = [
    "POST_CURSOR",
    "POST_FLOOR",
    "SENDER_TTL",
    "advance_cursor",
    "applied",
    "cannot_tell",
    "cursor_of",
    "expired",
    "floor_of",
]

#: ``StepRecord.extra`` key of the post cursor
POST_CURSOR = "post_cursor"
#: ``StepRecord.extra`` key of the post floor: the latest ``time`` of a cursor entry ever
#: dropped; a post dated at or before it is expired, whatever the folder's clock says
POST_FLOOR = "post_floor"
#: a sender silent this long leaves the cursor (seconds); posts older than half of it are expired
SENDER_TTL = 3600.0


def cursor_of(extra: dict[str, Any]) -> dict[str, list[float]]:
    """The post cursor a step carries: sender -> [newest applied seq, when]."""
    raw = extra.get(POST_CURSOR)
    return dict(raw) if isinstance(raw, dict) else {}


def applied(extra: dict[str, Any], sender: str, seq: int) -> bool:
    """Whether the step with this ``extra`` (or an earlier one) applied post ``seq`` of ``sender``."""
    entry = cursor_of(extra).get(sender)
    return entry is not None and int(entry[0]) >= seq


def floor_of(extra: dict[str, Any]) -> float:
    """The post floor a step carries (``-inf``: none, or not a finite number)."""
    raw = extra.get(POST_FLOOR)
    try:
        floor = float(raw) if isinstance(raw, (int, float)) else -math.inf
    except OverflowError:
        return -math.inf
    return floor if math.isfinite(floor) else -math.inf


def advance_cursor(extra: dict[str, Any], posts: list[Post], now: float) -> dict[str, Any]:
    """``extra`` with the cursor moved past ``posts`` and silent senders dropped.

    Dropping a sender raises the post floor to its entry's time: every post of that sender
    the cursor recorded applied is dated at or before it (below), so a copy left behind is
    expired by the floor, not by the clock of whoever folds next. (By clocks alone, a
    writer whose clock ran an hour ahead dropped the entry of a sender whose applied post
    an honest folder, its clock an hour behind that writer's, found young and applied again.)"""
    old = cursor_of(extra)
    cursor = {s: e for s, e in old.items() if now - float(e[1]) < SENDER_TTL}
    dropped = [float(e[1]) for s, e in old.items() if s not in cursor and math.isfinite(float(e[1]))]
    for post in posts:
        # Never before the post's own time (its poster's clock): the entry must outlive the
        # post's expiry (SENDER_TTL / 2 after that time), or a copy left behind by a folder
        # that died would be applied again once the entry was dropped, whatever clock skew.
        seq, since = cursor.get(post.sender, [-1, 0.0])
        cursor[post.sender] = [max(post.seq, int(seq)), max(now, post.time, float(since))]
    out = dict(extra)
    if dropped:
        out[POST_FLOOR] = max(floor_of(extra), *dropped)
    if cursor:
        out[POST_CURSOR] = cursor
    else:
        out.pop(POST_CURSOR, None)
    return out


def cannot_tell(call_id: str, step: int) -> str:
    """Why the outcome of a posted call the cursor forgot is unknown: a step compacted since
    (or a stray where it was) may have applied it, or none did. A writer drops a sender
    ``SENDER_TTL`` after its last post by its own clock: that long passed since the post (an
    ask that late, no clock skew needed), or that writer's clock runs ahead."""
    ttl = f"{SENDER_TTL / 3600:g} h (SENDER_TTL)"
    return (
        f"call {call_id} was posted, and its sender has left the cursor: a writer drops a sender "
        f"{ttl} after its last post, by the writer's clock (that long has passed since the post, "
        "or that writer's clock runs ahead): whether a step compacted since applied it cannot be "
        f"told (by step {step} it is applied, or never will be); read the actor's state before "
        f"calling again (applied at most once either way), and ask within {ttl} of a post to be "
        "told"
    )


def expired(post: Post, now: float) -> bool:
    """Too old to apply: its poster stopped waiting long ago, and its sender may have left the cursor."""
    return now - post.time > SENDER_TTL / 2
