"""``call_outcome`` asked by a process that did not post, with unreadable posts in the inbox
(review h181).

Such an ask looks for the call in the inbox (``Poster._pending_elsewhere``): one LIST, then a
GET of each post its name does not carry. A read that fails its digest was passed over as if
the post were not there: a post damaged on the way (one read) was "not found" while it waited
and was then folded (a caller retrying on "not found" applies it twice). A post forged (signed
with another key, unsigned where a key is configured, a damaged sealed name over a forged
body) must never be applied, and must not keep the ask pending for good: as in the fold, it
waits while its reads may be failing in transit, and is skipped once taken for forged
(``posting.DAMAGED_READS`` reads over ``posting.DAMAGED_SECONDS``).
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import time
import uuid
from collections.abc import Callable

import pytest
from actors import OrderLog
from test_combining import HANG, foreign_box, init_switchable, pending_posts, post_adds, wait_for_no_posts
from test_posting import outcome_once_folded
from test_review_h180_outcome_elsewhere import _as_a_new_process

from vactor_cloud import _sync, post_objects
from vactor_cloud.errors import CallPendingError, DamagedObjectError
from vactor_cloud.keys import posts_prefix
from vactor_cloud.posting import PostBox, PostedCall, bare, read_name, sealed
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

_KEY = b"h181-the-store-key-0123456789abcdef"


def _not_found_after_pending(ask: Callable[[], object]) -> LookupError:
    """``ask`` until it no longer says pending (bounded: pending for good fails); it must
    then say "not found" (``LookupError``, not an outcome, not another error)."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            outcome = ask()
        except CallPendingError:
            assert time.monotonic() < deadline, f"pending after {HANG} s: a forgery kept the ask waiting"
            time.sleep(0.05)
            continue
        except LookupError as exc:
            return exc
        raise AssertionError(f"a call only a forgery names has an outcome: {outcome!r}")


def test_a_post_read_damaged_on_the_way_is_pending_not_not_found(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first GET of another sender's pending post arrives damaged (in transit: the next
    reads are clean). The ask says pending, not "not found"; then the outcome, applied once."""
    store = init_switchable(store_spec, fresh_window=300.0)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    (call_id,) = post_adds(foreign_box("a"), ["other/1"])
    (key,) = pending_posts("a")
    assert bare(key)  # (its body is read: a GET)
    damaged = itertools.count()
    store.fail = lambda operation, at: (
        DamagedObjectError(at, "checksum mismatch (in transit)")
        if operation == "get" and at == key and next(damaged) == 0
        else None
    )
    _as_a_new_process(monkeypatch)
    with pytest.raises(CallPendingError):
        handle.call_outcome(call_id)
    assert next(damaged) > 0  # (the damaged read happened)
    assert outcome_once_folded(handle, call_id) == 2
    assert handle.applied.run() == ["me/0", "other/1"]


def _forge(box: PostBox, call_id: str, signing_key: bytes | None, **changes: object) -> str:
    """Write, as ``box``'s next post (``changes`` to its fields), one ``add`` call named
    ``call_id``, its body signed with ``signing_key`` (None: unsigned); its key."""
    calls = (PostedCall("add", pickle.dumps((("forged",), {})), call_id),)
    post = dataclasses.replace(box.prepare(calls), **changes)
    _sync.sync(box.store.put(post.key, post_objects.encode_post(post.key, post, signing_key), mode="create"))
    time.sleep(0.003)  # (the next post gets a later millisecond: post order is key order)
    return post.key


def _damaged_name(key: str) -> str:
    """``key`` with one character of the post its name carries changed (its HMAC fails)."""
    head, _, name = key.rpartition("/")
    at = len(name) - 5
    return f"{head}/{name[:at]}{'B' if name[at] == 'A' else 'A'}{name[at + 1 :]}"


def test_forged_posts_are_never_applied_nor_pending_for_good(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a signing key: posts signed with another key, unsigned, and under a damaged
    sealed name (its body forged), one of them claiming the real sender's seq, all naming a
    call only they name, wait in the inbox ahead of a real pending post. A new process asks:
    the forged call comes to "not found" (pending only while a fold would wait for them too),
    never to an outcome; the real call to its outcome. Nothing forged is applied."""
    store = init_switchable(store_spec, fresh_window=300.0, signing_key=_KEY)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    real = foreign_box("a")
    forged = uuid.uuid4().hex
    _forge(PostBox(store, "a", b"another key, not the store's"), forged, b"another key, not the store's")
    _forge(PostBox(store, "a", None), forged, None)
    # (the real sender's first seq, that of its post below: seqs start at 0)
    _forge(foreign_box("a"), forged, b"another key", sender=real.sender, seq=0)
    named = foreign_box("a")
    named.names = True
    _sync.sync(named.mail.load(create=True))
    sealed_post = named.prepare((PostedCall("add", pickle.dumps((("forged",), {})), forged),))
    assert sealed(sealed_post.key) and read_name(sealed_post.key, _KEY, named.mail.key) is not None
    key = _damaged_name(sealed_post.key)
    assert sealed(key) and read_name(key, _KEY, named.mail.key) is None
    post = dataclasses.replace(sealed_post, key=key)
    _sync.sync(store.put(key, post_objects.encode_post(key, post, b"another key"), mode="create"))
    time.sleep(0.003)
    (real_call,) = post_adds(real, ["other/1"])
    assert len(pending_posts("a")) == 5
    _as_a_new_process(monkeypatch)
    assert "nor pending" in str(_not_found_after_pending(lambda: handle.call_outcome(forged)))
    assert outcome_once_folded(handle, real_call) == 2
    assert handle.applied.run() == ["me/0", "other/1"]
    assert len(wait_for_no_posts("a", leaving=4)) == 4  # (forgeries: skipped, deleted once expired)


def test_without_a_key_a_post_copied_from_another_actor_is_not_taken(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a signing key (docs/security.md: the digest is a checksum, each post records its
    actor): actor b's post copied by hand into a's inbox is refused there. Asked of by a new
    process on a, its call comes to "not found", never applied to a."""
    store = init_switchable(store_spec, fresh_window=300.0)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    OrderLog.get_or_create("b")
    (call_id,) = post_adds(foreign_box("b"), ["copied/1"])
    (b_key,) = pending_posts("b")
    copy = posts_prefix("a") + b_key[len(posts_prefix("b")) :]
    _sync.sync(store.put(copy, _sync.sync(store.get(b_key)).data, mode="create"))
    _sync.sync(store.delete(b_key))  # (b's own fold would apply it there)
    _as_a_new_process(monkeypatch)
    assert "nor pending" in str(_not_found_after_pending(lambda: handle.call_outcome(call_id)))
    handle.add.run("me/1")  # (a fold of a's inbox: the copy is passed over, not applied)
    assert handle.applied.run() == ["me/0", "me/1"]
