"""Review h78: the call semantics the seed promises, on the posting path.

Arguments and results by value through a fold, and a ``SystemExit`` or ``KeyboardInterrupt``
raised by a folded call's method reaching its own caller alone (recorded as its outcome),
never the folder nor another caller. Another process is played by a
``PostBox`` of the test's own (its sender id), as in ``test_combining``.
"""

from __future__ import annotations

import pickle
import time
import uuid
from typing import Any

import pytest
from chaos_workers import read_chain
from combining_workers import commit_behind_its_back
from test_combining import foreign_box, init_switchable, wait_for_no_posts

import vactor_cloud as vc
from vactor_cloud import _sync
from vactor_cloud.posting import PostBox, PostedCall, decode_outcomes
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Exits:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    def exit(self) -> None:
        self.tokens.append("exit")
        raise SystemExit(3)

    def interrupt(self) -> None:
        self.tokens.append("interrupt")
        raise KeyboardInterrupt

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


def post(box: PostBox, method: str, *args: Any) -> str:
    call = PostedCall(method, pickle.dumps((args, {})), uuid.uuid4().hex)
    _sync.sync(box.send(box.prepare((call,))))
    # Posts of two senders in one millisecond sort by their random suffixes: without this, the
    # caller's own post (made next) could sort before this one and be folded first (a test
    # expecting "other/1" before "me/1" failed so, often on a fast store). A sender's next
    # name is at most 1 ms ahead of the clock, so 3 ms later is a later millisecond.
    time.sleep(0.003)
    return call.call_id


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("method", ["exit", "interrupt"])
def test_a_folded_calls_system_exit_reaches_neither_the_folder_nor_another_caller(
    store_spec: StoreSpec, method: str
) -> None:
    init_switchable(store_spec, combine_window=60.0)
    actor = Exits.get_or_create("x")
    actor.add.run("me/0")
    box = foreign_box("x")
    theirs = post(box, method)
    after = post(box, "add", "other/1")
    commit_behind_its_back("x")  # our next call loses the race, posts, folds theirs and ours
    assert actor.add.run("me/1") == 3
    assert actor.applied.run() == ["me/0", "other/1", "me/1"]
    outcomes = {}
    for record in read_chain("x"):
        outcomes.update(decode_outcomes(record.posted))
    assert outcomes[after].ok and outcomes[after].value == 2
    assert not outcomes[theirs].ok
    assert type(outcomes[theirs].value) is (SystemExit if method == "exit" else KeyboardInterrupt)
    assert wait_for_no_posts("x") == []


@vc.virtual_actor
class Lists:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def extend(self, more: list[Any]) -> list[Any]:
        self.items.extend(more)
        self.items.append(more)  # the argument object itself, kept in the state
        return self.items  # the live list itself

    @vc.virtual_actor.readonly
    def read(self) -> list[Any]:
        return self.items


@pytest.mark.usefixtures("runtime_off")
def test_arguments_and_results_of_folded_calls_are_copies(store_spec: StoreSpec) -> None:
    """By value through a fold: an argument mutated after ``run_async``, one object given to two
    calls, and results mutated by their callers change nothing in the actor nor each other."""
    init_switchable(store_spec, combine_window=60.0)
    actor = Lists.get_or_create("l")
    actor.extend.run([0])
    post(foreign_box("l"), "extend", [9])
    commit_behind_its_back("l")
    shared = [1]
    first = actor.extend.run_async(shared)  # loses the race, posts, folds
    shared.append("mutated after run_async")
    second = actor.extend.run_async(shared)
    one, two = first.result(60), second.result(60)
    assert one == [0, [0], 9, [9], 1, [1]]
    one[-1].append("caller's")
    one.append("caller's")
    assert two == [0, [0], 9, [9], 1, [1], 1, "mutated after run_async", [1, "mutated after run_async"]]
    assert actor.read.run() == two


def _outcomes_of(actor_id: str, call_ids: list[str], seconds: float = 60.0) -> dict[str, Any]:
    """The recorded outcomes of ``call_ids`` once every one is in a step (bounded wait)."""
    deadline = time.monotonic() + seconds
    while True:
        found: dict[str, Any] = {}
        for record in read_chain(actor_id):
            found.update(decode_outcomes(record.posted))
        if all(c in found for c in call_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("method", ["exit", "interrupt"])
def test_the_background_lease_holder_folds_on_after_a_folded_call_raised_system_exit(
    store_spec: StoreSpec, method: str
) -> None:
    """With no call of ours waiting, the lease holder's background rounds fold others' posts.
    One whose method raises SystemExit or KeyboardInterrupt is recorded as that call's outcome;
    the holder's rounds go on and fold the next post (a round that died with it left the
    posts to wait for the lease to lapse)."""
    init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0)
    actor = Exits.get_or_create("x")
    actor.add.run("me/0")
    commit_behind_its_back("x")
    assert actor.add.run("me/1") == 2  # loses, posts, takes the lease, folds: we hold it now
    box = foreign_box("x")
    theirs = post(box, method)
    after = post(box, "add", "other/1")
    outcomes = _outcomes_of("x", [theirs, after])
    assert theirs in outcomes and after in outcomes, "the holder stopped folding"
    assert type(outcomes[theirs].value) is (SystemExit if method == "exit" else KeyboardInterrupt)
    assert (outcomes[after].ok, outcomes[after].value) == (True, 3)
    assert actor.add.run("me/2") == 4
