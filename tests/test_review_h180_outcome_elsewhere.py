"""``call_outcome`` asked by a process that did not post the call (review h180).

A serverless function gets ``CallPendingError`` in one invocation and asks ``call_outcome`` in
the next: a new process, to which ``poster._GAVE_UP`` (in-process) knows no post. The ask
walked the newest steps and, not finding the call there, raised ``LookupError`` ("not applied
and never will be", the docstring said) while the post still waited in the inbox: a caller
that retried on that answer applied the call twice once the post was folded.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict

import pytest
from actors import OrderLog
from test_combining import foreign_box, init_switchable, pending_posts, post_adds
from test_posting import Tally, _give_up_on_c, outcome_once_folded, spec

import vactor_cloud as vc
from vactor_cloud import _sync, poster
from vactor_cloud.errors import CallPendingError
from vactor_cloud.posting import bare
from vactor_cloud.settings import Settings
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


def _as_a_new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new process knows of posts given up on: none (``_GAVE_UP`` is module-level)."""
    monkeypatch.setattr(poster, "_GAVE_UP", OrderedDict())


@pytest.mark.usefixtures(spec.__name__)
def test_a_new_runtime_asking_of_a_pending_post_is_told_pending_then_the_outcome(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The post of the call given up on waits (nobody folds it); a new runtime (a new
    process: no post known) asks: pending, not ``LookupError``; then, folded (the ask queues
    the background fold), its outcome. Applied once. (``spec``: test_posting's settings.)"""
    _, call_id = _give_up_on_c(store_spec)
    vc.shutdown()
    _as_a_new_process(monkeypatch)
    store_spec.init(settings=Settings(storage=store_spec.url, fresh_window=300.0, combine_after=1))
    handle = vc.get_actor("slow")
    with pytest.raises(CallPendingError) as pending:
        handle.call_outcome(call_id)
    assert pending.value.call_ids == [call_id]
    assert outcome_once_folded(handle, call_id) == ["a", "b", "c"]
    assert handle.get.run() == ["a", "b", "c"]  # applied once


@pytest.mark.parametrize("names", [False, True], ids=["body", "name"])
def test_another_senders_pending_post_is_found_in_the_inbox(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, names: bool
) -> None:
    """A post of another process's (its body read, or its name carrying it) is pending: the
    ask says so; folded by a later call of ours, the ask gives its outcome."""
    init_switchable(store_spec, fresh_window=300.0)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    box = foreign_box("a")
    box.names = names
    if names:
        _sync.sync(box.mail.load(create=True))
    (call_id,) = post_adds(box, ["other/1"])
    (key,) = pending_posts("a")
    assert bare(key) is not names  # (a bare name: its body is read)
    _as_a_new_process(monkeypatch)
    with pytest.raises(CallPendingError):
        handle.call_outcome(call_id)
    assert outcome_once_folded(handle, call_id) == 2
    assert handle.applied.run() == ["me/0", "other/1"]


def test_a_call_posted_nowhere_is_still_a_lookup_error_that_says_what_it_means(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither among the steps walked nor pending: ``LookupError``, whose message says it was
    looked for in the inbox too (and what "not found" means to a process that did not post)."""
    store_spec.init(settings=Settings(storage=store_spec.url))
    tally = Tally.get_or_create("t")
    tally.add.run("a")
    _as_a_new_process(monkeypatch)
    with pytest.raises(LookupError, match=r"no posted call .* nor pending") as raised:
        tally.call_outcome(uuid.uuid4().hex)
    assert not isinstance(raised.value, CallPendingError)


def test_another_senders_post_behind_a_tombstone_comes_to_an_answer(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post made after the actor was deleted (by a process that had not seen the delete): a
    new process's ask says pending, then comes to an answer (the fold it queues fails the
    call on the tombstone: ``ActorDeletedError``), not pending for good. (Before: no fold was queued on a
    tombstone, and the post stayed.)"""
    init_switchable(store_spec, fresh_window=300.0)
    handle = OrderLog.get_or_create("a")
    handle.add.run("me/0")
    box = foreign_box("a")
    vc.delete_actor("a")  # (a post pending then is failed by the delete: ActorDeletedError)
    (call_id,) = post_adds(box, ["other/1"])  # a process that did not see the delete
    _as_a_new_process(monkeypatch)
    with pytest.raises(LookupError) as raised:
        outcome_once_folded(vc.get_actor("a"), call_id)
    assert isinstance(raised.value, vc.ActorDeletedError), raised.value  # (the fold's outcome)
