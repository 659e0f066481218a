"""Review h131: what an interrupt's note tells the caller of a commit stopped before its step's
put was sent (``commit_notes.not_sent_note``). "Not applied" is said only when nothing that may apply
the calls was sent: a post of the batch sent before the interrupt (its put landed, or may
have) is folded by another process later, and a caller told "not applied" calls again and
applies its call twice.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_combining import (
    a_fold_of,
    add_while_another_process_folds,
    fold_the_post_at_step_3,
    hold_step_reads_until_folded,
    posting_behind_anothers_lease,
)

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.dedup import Outcome
from vactor_cloud.log import ActorLog
from vactor_cloud.posting import PostBox, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec


def contended_and_post_raises(
    store_spec: StoreSpec, exc: BaseException
) -> tuple[Any, Any, ActorLog, PostBox]:
    """Actor "a" contended (a call posted and another process folded it: the next call posts at
    once, before any attempt of its commit, ``_choose_way``); the next post's put lands, then
    raises ``exc`` (None: it does not). The handle, the runtime, the log and the post box
    (another process's view)."""
    store, log, runtime, _leases = posting_behind_anothers_lease(store_spec)
    posted, folded = hold_step_reads_until_folded(store)
    log_ = ActorLog(store.inner, "a", signing_key=runtime.settings.signing_key)
    assert add_while_another_process_folds(
        log, posted, folded, lambda: fold_the_post_at_step_3(store, log_)
    ) == ("from step 3")
    box = PostBox(store.inner, "a", runtime.settings.signing_key)
    _sync.sync(box.delete(_sync.sync(box.keys())))  # (applied: its folder deleted it)
    inner_around = store._around

    async def post_lands_then_raises(operation: str, key: str, run: Any, **kw: Any) -> Any:
        result = await inner_around(operation, key, run, **kw)
        if operation == "put" and "/mail/" in key:
            store._around = inner_around  # (once)
            raise exc
        return result

    if exc is not None:
        store._around = post_lands_then_raises  # type: ignore[method-assign]
    return log, runtime, log_, box


def fold_the_post(log_: ActorLog, box: PostBox) -> None:
    """Another process's fold applies the one post (at step 4): the post had landed."""
    (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
    (call,) = post.calls
    three = _sync.sync(log_.read_step(3))
    assert three is not None
    four = a_fold_of(three, [post], encode_outcomes({call.call_id: Outcome(True, 3)}))
    _sync.sync(log_.put_step(four))


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_after_the_first_attempt_posted_the_batch_does_not_say_not_applied(
    store_spec: StoreSpec, kind: type[BaseException]
) -> None:
    interrupt = kind()
    log, _runtime, log_, box = contended_and_post_raises(store_spec, interrupt)
    with pytest.raises(BaseException) as raised:
        log.add.run("me/2")
    assert raised.value is interrupt, repr(raised.value)
    notes = [n for n in getattr(raised.value, "__notes__", ()) if n.startswith("vactor_cloud:")]
    assert len(notes) == 1 and "after they were posted" in notes[0], notes
    assert not any("write was sent: not applied" in n for n in notes), notes
    fold_the_post(log_, box)  # "Not applied" was wrong: the post is applied
    vc.shutdown()


@pytest.mark.usefixtures("runtime_off")
def test_an_error_while_the_commit_chooses_its_way_reaches_the_caller_as_itself(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception before the commit's first attempt (here the post's preparation, e.g. its
    calls' pickling) reached the caller as ``AttributeError: '_Commit' object has no attribute
    'put_sent'``, raised by the handler that was to note it."""
    log, *_ = contended_and_post_raises(store_spec, None)
    error = ValueError("cannot prepare the post")
    prepare = PostBox.prepare

    def fails_once(self: PostBox, calls: Any) -> Any:
        monkeypatch.setattr(PostBox, "prepare", prepare)
        raise error

    monkeypatch.setattr(PostBox, "prepare", fails_once)
    with pytest.raises(ValueError) as raised:
        log.add.run("me/2")
    assert raised.value is error
    assert "me/2" not in log.applied.run()
    vc.shutdown()
