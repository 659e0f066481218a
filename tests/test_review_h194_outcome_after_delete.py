"""``call_outcome`` edges left by h188, h191 and h193 (review h194).

1. A post that lands after its actor's delete, asked of by a process that did not post it
   (procedure B): it is still applied, by a fold on the tombstone (which fails it with
   ``ActorDeletedError``) or by an actor made again under the id; so it is pending, and the
   ask queues the background fold (on a tombstone too) that resolves it to
   ``ActorDeletedError``.
2. The walk since the first walk cut short by ``scan``: never "not found" for an applied call.
"""

from __future__ import annotations

import pickle
import uuid

import pytest
from actors import OrderLog
from quiet_runtime import HANG
from test_combining import foreign_box, init_switchable
from test_review_h183_outcome_not_found import _a_new_process

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.errors import CallPendingError
from vactor_cloud.posting import PostedCall
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = [pytest.mark.vactor_lanes("memory", "local", "moto"), pytest.mark.usefixtures("runtime_off")]


def _post_add(actor_id: str, token: str) -> str:
    """Another process posts ``add(token)`` to ``actor_id``; the call's id."""
    calls = (PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex),)
    box = foreign_box(actor_id)
    _sync.sync(box.send(box.prepare(calls)))
    return calls[0].call_id


# -- 1. a post landing after the delete ---------------------------------------------------------
def test_a_post_landing_after_the_delete_is_pending_then_failed_by_the_fold_the_ask_queues(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Actor "a" is deleted; then another process's post to it lands (its poster read "a" before the
    delete) and its caller gives up. A new process asks: pending (a fold on the tombstone, or
    an actor made again, still applies it), and the ask queues the background fold, which
    folds it on the tombstone: asked again, ``ActorDeletedError`` (the call's outcome), not
    pending until the post expires."""
    init_switchable(store_spec)
    OrderLog.get_or_create("a").add.run("me/0")
    assert vc.delete_actor("a")
    call_id = _post_add("a", "late/1")
    _a_new_process(store_spec, monkeypatch)
    with pytest.raises(CallPendingError):
        vc.ActorHandle("a").call_outcome(call_id)
    core = vc.get_runtime().core("a")
    assert core.asked_fold_idle.wait(HANG), "no fold was queued (or it never ended)"
    with pytest.raises(vc.ActorDeletedError):
        vc.ActorHandle("a").call_outcome(call_id)
