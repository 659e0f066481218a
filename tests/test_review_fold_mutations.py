"""Guarantees of the posting and folding path that no test held, from a mutation sweep
(review-h122): each test here was written against a small change to the library (named in its
docstring) that the rest of the suite let pass, and fails with that change applied."""

from __future__ import annotations

import time

from vactor_cloud import posting
from vactor_cloud.posting import POST_CURSOR, POST_FLOOR, SENDER_TTL, Post, advance_cursor


def test_the_post_cursor_never_moves_a_sender_back() -> None:
    """The cursor holds the newest seq applied per sender: a post with a lower seq folded
    later (a copy, a refactor that folds out of order) must not make the sender's applied posts
    look pending again. (Mutation: ``advance_cursor`` taking ``post.seq`` without ``max``.)"""
    now = time.time()
    extra = {POST_CURSOR: {"a" * 16: [5, now - 1.0]}}
    out = advance_cursor(extra, [Post("actors/x/mail/k", "a" * 16, 3, now, ())], now)
    assert out[POST_CURSOR]["a" * 16][0] == 5
    assert posting.applied(out, "a" * 16, 5)


def test_the_post_floor_never_goes_down() -> None:
    """A sender dropped from the cursor raises the floor to its entry's time; a later drop of
    an entry older than the floor must not lower it, or a post left behind between the two
    times (applied under the sender dropped first) is applied again.
    (Mutation: ``out[POST_FLOOR] = max(dropped)``, the step's own floor left out.)"""
    now = time.time()
    floor = now - SENDER_TTL - 10.0
    extra = {POST_FLOOR: floor, POST_CURSOR: {"b" * 16: [1, now - SENDER_TTL - 100.0]}}
    out = advance_cursor(extra, [], now)
    assert POST_CURSOR not in out
    assert posting.floor_of(out) == floor
