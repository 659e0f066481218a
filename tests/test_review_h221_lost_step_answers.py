"""The ask's fold whose step put lands and whose answer the store itself loses (its request's
``Settings.timeout`` run out on a loaded host; a client's retry answered "already exists" by
its own first attempt), beneath a test's wrapper over the step puts: the fold reads the step
back, finds it its own and commits; the post is applied once. A wrapper that loses step put
answers counts that answer lost (it saw an error, not the answer); a hook that runs once the
first step put has ended runs after that error as after an answer.

Also the premise of the tests that install a fault after ``give_up_on_me_1()``: nothing of this
process folds the given-up post until it is asked (no lease held, no round of serving, no fold
task queued)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from test_combining import Switchable, init_switchable
from test_review_h178_orphaned_post import ask_until_known, give_up_at_the_first_lost_race, give_up_on_me_1
from test_review_h179_given_up_fold import after_the_first_step_put, lose_step_put_answers

import vactor_cloud as vc
from vactor_cloud.errors import AlreadyExistsError, StorageError, StorageTimeoutError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

_ENDINGS: dict[str, type[StorageError]] = {"timeout": StorageTimeoutError, "exists": AlreadyExistsError}


def the_store_loses_the_next_step_put_answer(store: Switchable, ending: str) -> list[str]:
    """The next step put lands, then its request ends in an error of the store's own
    (``ending``: "timeout", its ``Settings.timeout`` ran out; "exists", a retry of it met its own
    first attempt). The key, once it landed so."""
    around = store._around
    landed: list[str] = []

    async def lands_then_raises(operation: str, key: str, run: Any, **kw: Any) -> Any:
        answer = await around(operation, key, run, **kw)
        if operation == "put" and "/steps/" in key and not landed:
            landed.append(key)
            if ending == "timeout":
                raise StorageTimeoutError(f"{key}: no answer within the request's timeout", key, True)
            raise AlreadyExistsError(f"{key}: already exists (a retry met its own first attempt)", key)
        return answer

    store._around = lands_then_raises  # type: ignore[method-assign]
    return landed


def counting_lost_answers(store: Switchable) -> Callable[[], bool]:
    """``lose_step_put_answers`` over ``store``: whether it counted an answer lost."""
    lost = lose_step_put_answers(store)
    return lambda: lost[0] > 0


def hooked_after_the_first_step_put(store: Switchable) -> Callable[[], bool]:
    """``after_the_first_step_put`` over ``store`` (as a test holds the answer of the fold's step
    put, or lands a post once it is in): whether its hook ran, once, after that put."""
    ran: list[str] = []

    async def note(key: str) -> None:
        ran.append(key)

    ended = after_the_first_step_put(store, note)
    return lambda: ran == ended != []


_WRAPPERS = {"counting": counting_lost_answers, "hooked": hooked_after_the_first_step_put}


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("wrapper", sorted(_WRAPPERS))
@pytest.mark.parametrize("ending", sorted(_ENDINGS))
def test_a_step_put_answer_the_store_itself_loses_is_seen_by_a_wrapper_over_it_and_applies_once(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch, ending: str, wrapper: str
) -> None:
    store = init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    landed = the_store_loses_the_next_step_put_answer(store, ending)
    saw = _WRAPPERS[wrapper](store)  # (over the store's own loss: it sees the error)
    assert ask_until_known(call_id)[0] == 2
    assert landed, "the ask's fold put no step"
    assert saw(), "the wrapper did not see the step put the store ended in an error"
    assert log.applied.run() == ["me/0", "me/1"]


@pytest.mark.usefixtures("runtime_off")
def test_nothing_of_this_process_folds_a_given_up_post_until_it_is_asked(store_spec: StoreSpec) -> None:
    """A fold needs the folder lease (a round of serving holds it), an ask's fold task, or a
    call of ours to the actor: none of them after ``give_up_on_me_1()``."""
    init_switchable(store_spec)
    with pytest.MonkeyPatch.context() as monkeypatch:
        give_up_at_the_first_lost_race(monkeypatch)
        give_up_on_me_1()
    core = vc.get_runtime().core("a")
    assert core._held_until == -math.inf, "the given-up call took the folder lease"
    assert not (core._serving or core._serve_queued), "a round of serving runs or is queued"
    assert not (core._orphans_queued or core._asked_held), "a fold task is queued unasked"
    assert core.queued_futures() == []
