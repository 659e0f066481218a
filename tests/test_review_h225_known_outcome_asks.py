"""What an ask whose answer is known costs: ``call_outcome`` queues its background fold
(``ActorCore._fold_given_up_posts_soon``) only when it answers pending (docs/protocol.md, "What
``call_outcome`` answers"). Asked again once the outcome is known, it reads the steps; asked of
a call never posted, it also lists the inbox once (its own look for the post); nothing more: no
fold task, whose LIST of the inbox would come on top, and no lease read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from test_combining import init_switchable
from test_review_h178_orphaned_post import ask_until_known, give_up_at_the_first_lost_race, give_up_on_me_1
from test_review_h182_ask_fold_costs import kinds, wait_until_quiet

import vactor_cloud as vc
from vactor_cloud.cli.request_trace import Request, RequestTrace
from vactor_cloud.errors import CallNotFoundError
from vactor_cloud.testing.lanes import StoreSpec

#: Request counts of this process's own protocol: memory and local suffice.
pytestmark = pytest.mark.vactor_lanes("memory", "local")

ASKS = 5


def traced_asks(store: Any, ask: Callable[[], None]) -> tuple[list[Request], Counter[tuple[str, str]]]:
    """``ask`` run ``ASKS`` times, traced until the process is quiet (a fold task the asks
    queued has listed the inbox by then); nothing may address the lease nor write."""
    with RequestTrace(store).installed() as trace:
        for _ in range(ASKS):
            ask()
        wait_until_quiet(store)
    counted = kinds(trace.requests)
    assert [r for r in trace.requests if r.key.endswith("/lease")] == [], counted
    assert {r.kind for r in trace.requests} <= {"get", "head", "list"}, counted
    return trace.requests, counted


@pytest.mark.usefixtures("runtime_off")
def test_asks_whose_answer_is_known_read_the_steps_and_queue_no_fold(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``me/1`` given up and folded by its ask's fold; once the process is quiet, asks of it
    (applied: its result) read the steps alone, and asks of a call never posted (not found)
    add their own LIST of ``mail/`` (procedure B looks for its post), one each. A fold queued
    on such an ask costs one more LIST (a fold task lists the inbox first)."""
    store = init_switchable(store_spec)
    give_up_at_the_first_lost_race(monkeypatch)
    log, call_id = give_up_on_me_1()
    assert ask_until_known(call_id)[0] == 2
    wait_until_quiet(store)
    handle = vc.get_actor("a")

    def applied() -> None:
        assert handle.call_outcome(call_id) == 2

    def not_found() -> None:
        with pytest.raises(CallNotFoundError):
            handle.call_outcome("never-posted")

    requests, counted = traced_asks(store, applied)
    assert [r for r in requests if r.kind == "list"] == [], counted
    requests, counted = traced_asks(store, not_found)
    assert counted[("list", "mail")] == ASKS, counted
    assert not vc.get_runtime().core("a")._orphans_queued
    assert log.applied.run() == ["me/0", "me/1"]
