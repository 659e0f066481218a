"""A process whose cache of an actor is warm while another process deletes the actor (and
perhaps creates it again, and compacts it). Process A is this test's runtime, with a long
``fresh_window`` (its cache is trusted without a probe: "inside fresh_window") or none
("after fresh_window"); process B is a runtime of its own (``own_runtime``) on the same store.

What A must see, by docs/concepts.md ("Deleting an actor", "Read-only calls") and
docs/idempotency.md: after a delete, every call, keyed retries and calls that raise included,
fails with ``ActorDeletedError``; after a delete and a creation, calls run on the new actor (a
key the deleted actor recorded runs again there), and nothing is decided by the deleted
actor's state or table. Tests whose docstring begins "Held" passed on the code they were
written against (they pin what the attack found holding); the others failed before their fix.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from actors import OrderLog
from store_helpers import retune
from test_combining import (
    commit_behind_its_back,
    foreign_box,
    give_up_on_a_post,
    heal_and_fold,
    init_switchable,
)

import vactor_cloud as vc
from vactor_cloud import _sync, poster
from vactor_cloud.class_tag import class_tag
from vactor_cloud.posting import Post, PostBox, PostedCall
from vactor_cloud.runtime import own_runtime
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

#: "inside fresh_window": A trusts its cache this long without a probe
WARM = 600.0


@vc.virtual_actor
class Till:
    def __init__(self, start: int) -> None:
        self.total = start

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total

    def spend(self, amount: int) -> int:
        """Raises, changing nothing, when the total is below ``amount``."""
        if self.total < amount:
            raise ValueError(f"total {self.total} is below {amount}")
        return self.total

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.total


@pytest.fixture
def spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    vc.shutdown()
    yield store_spec
    vc.shutdown()


def as_a(spec: StoreSpec, fresh_window: float) -> None:
    """Start process A (this test's runtime) with ``fresh_window``."""
    spec.init(settings=vc.Settings(storage="", fresh_window=fresh_window))


def as_b(spec: StoreSpec, action: Callable[[], Any]) -> Any:
    """Run ``action`` as process B: a runtime of its own on the same store, closed after."""
    with own_runtime():
        spec.init(settings=vc.Settings(storage="", fresh_window=0.0))
        return action()


def warm_till(actor_id: str) -> vc.ActorHandle[Till]:
    """A's handle of ``actor_id``, warm: created with 1, read, written (total 2), and a keyed
    call ``k1`` recorded (total 12)."""
    till = Till.get_or_create(actor_id, 1)
    assert till.get.run() == 1
    assert till.add.run(1) == 2
    assert till.add.options(idempotency_key="k1").run(10) == 12
    return till


def delete(actor_id: str) -> Callable[[], None]:
    def action() -> None:
        assert vc.delete_actor(actor_id) is True

    return action


def delete_and_create(actor_id: str, start: int = 1000) -> Callable[[], None]:
    def action() -> None:
        assert vc.delete_actor(actor_id) is True
        Till.get_or_create(actor_id, start)

    return action


def read_as_b(spec: StoreSpec, actor_id: str) -> int:
    """The actor's total, read by process B (a fresh cache)."""

    def read() -> int:
        return int(vc.ActorHandle(actor_id).get.run())

    return int(as_b(spec, read))


# -- inside fresh_window: a delete elsewhere ------------------------------------------------------
def test_a_keyed_retry_on_a_warm_cache_after_a_delete_elsewhere_says_deleted(spec: StoreSpec) -> None:
    """A retries the keyed call ``k1`` after B deleted the actor. It was answered from A's
    cached table (12, a call on a deleted actor that returned), with no request made: an
    attempt that commits nothing (every call answered from the table, or raising) never
    learned of the tombstone. Now such an attempt probes once before it answers."""
    as_a(spec, WARM)
    till = warm_till("wd-key")
    as_b(spec, delete("wd-key"))
    with pytest.raises(vc.ActorDeletedError, match="wd-key"):
        till.add.options(idempotency_key="k1").run(10)


def test_a_raising_call_on_a_warm_cache_after_a_delete_elsewhere_says_deleted(spec: StoreSpec) -> None:
    """A's call raises on its cached state after B deleted the actor: the caller got the
    method's ``ValueError``, decided by the deleted actor's state, not "deleted"."""
    as_a(spec, WARM)
    till = warm_till("wd-raise")
    as_b(spec, delete("wd-raise"))
    with pytest.raises(vc.ActorDeletedError, match="wd-raise"):
        till.spend.run(500)


def test_held_reads_and_writes_on_a_warm_cache_after_a_delete_elsewhere_say_deleted(spec: StoreSpec) -> None:
    """Held: a read probes past the cache (sees the tombstone); a write's put loses to the
    tombstone; neither commits anything on it. A warm ``get_or_create`` makes no request
    (documented): its handle's next call says deleted, and ``get_or_create`` again creates."""
    as_a(spec, WARM)
    reader = warm_till("wd-read")
    writer = warm_till("wd-write")
    creator = warm_till("wd-create")
    as_b(spec, delete("wd-read"))
    as_b(spec, delete("wd-write"))
    as_b(spec, delete("wd-create"))
    with pytest.raises(vc.ActorDeletedError):
        reader.get.run()
    with pytest.raises(vc.ActorDeletedError):
        writer.add.run(100)
    with pytest.raises(vc.ActorDeletedError):
        writer.get.run()
    again = Till.get_or_create("wd-create", 77)
    with pytest.raises(vc.ActorDeletedError):
        again.get.run()
    assert Till.get_or_create("wd-create", 77).get.run() == 77
    assert creator.add.run(1) == 78
    with pytest.raises(vc.ActorDeletedError):
        read_as_b(spec, "wd-write")


@pytest.mark.parametrize("fresh_window", [WARM, 0.0])
def test_held_a_warm_get_actor_after_a_delete_elsewhere_hands_back_a_handle_whose_call_says_deleted(
    spec: StoreSpec, fresh_window: float
) -> None:
    """Held: ``vc.get_actor`` on a warm cache makes no request, as ``get_or_create`` (now said
    in docs/concepts.md): no ``ActorDeletedError`` from it, but from its handle's next call;
    ``get_actor`` then says deleted itself (the cache holds the tombstone)."""
    as_a(spec, fresh_window)
    warm_till("wd-get")
    as_b(spec, delete("wd-get"))
    handle = vc.get_actor("wd-get")
    with pytest.raises(vc.ActorDeletedError):
        handle.get.run()
    with pytest.raises(vc.ActorDeletedError):
        vc.get_actor("wd-get")


# -- inside fresh_window: a delete and a creation elsewhere -----------------------------------------
def test_a_keyed_retry_on_a_warm_cache_after_the_actor_was_made_again_runs_on_the_new_actor(
    spec: StoreSpec,
) -> None:
    """B deleted the actor and made it again (total 1000). A's retry of ``k1``, a key the
    deleted actor recorded, returned that actor's result (12) from A's cached table: the
    previous incarnation answered. It runs again on the new actor (docs/idempotency.md)."""
    as_a(spec, WARM)
    till = warm_till("wr-key")
    as_b(spec, delete_and_create("wr-key"))
    assert till.add.options(idempotency_key="k1").run(10) == 1010
    assert till.add.options(idempotency_key="k1").run(10) == 1010
    assert read_as_b(spec, "wr-key") == 1010


def test_a_raising_call_on_a_warm_cache_after_the_actor_was_made_again_runs_on_the_new_actor(
    spec: StoreSpec,
) -> None:
    """A's ``spend(500)`` raised on the deleted actor's cached state (12 < 500); the actor
    the id holds now has 1000."""
    as_a(spec, WARM)
    till = warm_till("wr-raise")
    as_b(spec, delete_and_create("wr-raise"))
    assert till.spend.run(500) == 1000


def test_held_reads_writes_and_get_or_create_on_a_warm_cache_after_the_actor_was_made_again(
    spec: StoreSpec,
) -> None:
    """Held: a read probes past the cache and reads the new actor; a write loses its put to
    the tombstone, probes past it and applies to the new actor (never to the deleted state);
    a warm ``get_or_create`` with other arguments creates nothing (the id holds an actor)."""
    as_a(spec, WARM)
    reader = warm_till("wr-read")
    writer = warm_till("wr-write")
    warm_till("wr-create")
    for actor_id in ("wr-read", "wr-write", "wr-create"):
        as_b(spec, delete_and_create(actor_id))
    assert reader.get.run() == 1000
    assert writer.add.run(100) == 1100
    assert Till.get_or_create("wr-create", 77).get.run() == 1000
    assert read_as_b(spec, "wr-write") == 1100


def test_a_raising_call_on_a_warm_cache_is_decided_by_the_newest_step(spec: StoreSpec) -> None:
    """No delete: B adds 1000 to the actor A holds warm. A's ``spend(500)``, made after B's
    commit was acknowledged, raised on A's cached 12 (an outcome from a state older than a
    commit acknowledged before the call began: not linearizable, docs/concepts.md)."""
    as_a(spec, WARM)
    till = warm_till("wn-raise")
    as_b(spec, lambda: vc.ActorHandle("wn-raise").add.run(1000))
    assert till.spend.run(500) == 1012


# -- after fresh_window, a compaction too --------------------------------------------------------
@pytest.mark.parametrize("op", ["keyed", "raise", "read", "write", "get_or_create"])
def test_held_after_fresh_window_a_made_again_and_compacted_actor_is_the_new_one(
    spec: StoreSpec, op: str
) -> None:
    """Held: A's cache is older than its ``fresh_window`` (0) when B deletes, creates again,
    writes and compacts to one step (A's cached step and the tombstone gone): each of A's
    calls probes, reads the watermark, reloads, and meets the new actor only."""
    as_a(spec, 0.0)
    actor_id = f"wc-{op}"
    till = warm_till(actor_id)

    def made_again_and_compacted() -> None:
        delete_and_create(actor_id)()
        handle = vc.ActorHandle(actor_id)
        handle.add.run(0)
        assert handle.compact(keep_last=1, min_age=0).deleted_steps > 0

    as_b(spec, made_again_and_compacted)
    if op == "keyed":
        assert till.add.options(idempotency_key="k1").run(10) == 1010
    elif op == "raise":
        assert till.spend.run(500) == 1000
    elif op == "read":
        assert till.get.run() == 1000
    elif op == "write":
        assert till.add.run(100) == 1100
    else:
        assert Till.get_or_create(actor_id, 77).get.run() == 1000
    assert read_as_b(spec, actor_id) == {"keyed": 1010, "write": 1100}.get(op, 1000)


@pytest.mark.parametrize("op", ["keyed", "raise", "read", "write", "get_or_create"])
def test_held_after_fresh_window_a_deleted_and_compacted_actor_says_deleted(spec: StoreSpec, op: str) -> None:
    """Held: B deletes and compacts to one step (the tombstone alone; A's cached step gone).
    Each of A's calls says deleted; a warm ``get_or_create`` hands back the old handle (no
    request, documented), whose call says deleted; ``get_or_create`` again creates."""
    as_a(spec, 0.0)
    actor_id = f"wdc-{op}"
    till = warm_till(actor_id)

    def deleted_and_compacted() -> None:
        delete(actor_id)()
        assert vc.ActorHandle(actor_id).compact(keep_last=1, min_age=0).deleted_steps > 0

    as_b(spec, deleted_and_compacted)
    with pytest.raises(vc.ActorDeletedError, match=actor_id):
        if op == "keyed":
            till.add.options(idempotency_key="k1").run(10)
        elif op == "raise":
            till.spend.run(500)
        elif op == "read":
            till.get.run()
        elif op == "write":
            till.add.run(100)
        else:
            Till.get_or_create(actor_id, 77).get.run()
    assert Till.get_or_create(actor_id, 77).get.run() == 77


# -- call_outcome of a call posted before the delete ------------------------------------------------
@pytest.mark.parametrize("then", ["delete", "delete_and_create"])
def test_held_call_outcome_of_a_post_left_pending_before_a_delete_elsewhere_says_deleted(
    spec: StoreSpec, then: str
) -> None:
    """Held: A's call ``me/1`` was posted, and its caller gave up (``CallPendingError``) with
    the post pending (A's step puts still refused, so that A's own fold cannot apply it); B
    deletes the actor (and makes it again). The delete took the post and failed it in its
    tombstone: A's ``call_outcome`` says deleted, even with the new actor
    under the id, and the new actor never applies it."""
    store = init_switchable(spec, combine_window=60.0, fresh_window=WARM)
    log, raised = give_up_on_a_post(store, commit_timeout=0.3)
    (call_id,) = raised.call_ids

    def delete_it() -> None:
        assert vc.delete_actor("a") is True
        if then == "delete_and_create":
            assert OrderLog.get_or_create("a").applied.run() == []

    as_b(spec, delete_it)
    store.fail = lambda operation, key: None  # (only now: A's own fold could apply it first)
    retune(commit_timeout=60.0)
    with pytest.raises(vc.ActorDeletedError):
        log.call_outcome(call_id)
    if then == "delete_and_create":
        assert log.add.run("me/2") == 1
        assert log.applied.run() == ["me/2"]


@pytest.mark.parametrize("then", ["delete", "delete_and_create"])
def test_held_call_outcome_of_a_post_applied_before_a_delete_elsewhere_is_its_result(
    spec: StoreSpec, then: str
) -> None:
    """Held: A's given-up call ``me/1`` was applied by a later fold (its result 2) before B
    deleted the actor (and made it again): ``call_outcome`` still gives that result, read
    from the deleted actor's step (history until a compaction), not the new actor's."""
    store = init_switchable(spec, combine_window=60.0, fresh_window=WARM)
    log, raised = give_up_on_a_post(store, commit_timeout=0.3)
    assert heal_and_fold(store, log) == 3
    (call_id,) = raised.call_ids

    def delete_it() -> None:
        assert vc.delete_actor("a") is True
        if then == "delete_and_create":
            OrderLog.get_or_create("a").add.run("new/0")

    as_b(spec, delete_it)
    assert log.call_outcome(call_id) == 2


# -- a warm get_or_create after a delete and a creation of another class elsewhere ------------------
@vc.virtual_actor
class Basket:
    def __init__(self) -> None:
        self.items: list[int] = []

    def add(self, item: int) -> int:
        self.items.append(item)
        return len(self.items)

    @vc.virtual_actor.readonly
    def get(self) -> list[int]:
        return list(self.items)


@pytest.mark.parametrize("fresh_window", [WARM, 0.0])
def test_a_warm_get_or_create_never_hands_back_an_actor_of_another_class_made_elsewhere(
    spec: StoreSpec, fresh_window: float
) -> None:
    """B deletes A's warm ``Till`` and makes a ``Basket`` under the id. A's
    ``Till.get_or_create(id, 5)`` returns at once (its cache says ``Till``: no request), and
    its ``add(7)`` ran ``Basket.add`` on B's basket, where a cold process gets
    ``ActorDefinitionError`` from that ``get_or_create``. A call names a method of a class:
    it now runs on no actor of another class (``ActorClassChangedError``, nothing applied),
    and A then knows the id's class: ``get_or_create`` refuses as a cold one does, and
    ``vc.get_actor`` calls the basket."""
    as_a(spec, fresh_window)
    warm_till("wk-class")

    def basket_now() -> None:
        assert vc.delete_actor("wk-class") is True
        Basket.get_or_create("wk-class")

    as_b(spec, basket_now)
    with pytest.raises(vc.ActorClassChangedError, match="Basket") as raised:
        Till.get_or_create("wk-class", 5).add.run(7)
    assert (raised.value.method, raised.value.was.endswith(":Till")) == ("add", True)

    def basket_items() -> list[int]:
        return list(vc.ActorHandle("wk-class").get.run())

    assert as_b(spec, basket_items) == []
    with pytest.raises(vc.ActorDefinitionError, match=r"already exists as an instance of .*Basket"):
        Till.get_or_create("wk-class", 5)
    assert vc.get_actor("wk-class").add.run(3) == 1
    assert as_b(spec, basket_items) == [3]


@pytest.mark.parametrize("fresh_window", [WARM, 0.0])
def test_a_read_through_a_warm_handle_never_runs_a_method_of_the_class_made_since(
    spec: StoreSpec, fresh_window: float
) -> None:
    """The read-only twin: ``Till.get`` through A's warm handle, after B made a ``Basket``
    under the id, read the basket with ``Basket.get`` (a method of the same name) and handed
    back its list where the caller's type says ``int``."""
    as_a(spec, fresh_window)
    till = warm_till("wk-read")

    def basket_now() -> None:
        assert vc.delete_actor("wk-read") is True
        Basket.get_or_create("wk-read").add.run(9)

    as_b(spec, basket_now)
    with pytest.raises(vc.ActorClassChangedError, match="get"):
        till.get.run()
    assert vc.get_actor("wk-read").get.run() == [9]


def test_a_warm_untyped_handle_refuses_once_then_calls_the_actor_as_it_is(spec: StoreSpec) -> None:
    """``vc.get_actor`` (a handle of no class) looks a method up in the class the process
    knows: the first call after the class changed elsewhere was made for ``Till.add`` and is
    refused; the handle's next lookup finds ``Basket.add`` and runs it, as a cold process's
    would. Before, the first call already ran ``Basket.add`` with ``Till.add``'s arguments."""
    as_a(spec, WARM)
    warm_till("wk-any")
    handle = vc.get_actor("wk-any")

    def basket_now() -> None:
        assert vc.delete_actor("wk-any") is True
        Basket.get_or_create("wk-any")

    as_b(spec, basket_now)
    with pytest.raises(vc.ActorClassChangedError):
        handle.add.run(4)
    assert handle.add.run(5) == 1
    assert handle.get.run() == [5]


@vc.virtual_actor
class Tally:
    """Another class with an ``add(token)``, as ``OrderLog`` has."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return 100 + len(self.tokens)

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


def test_a_post_made_for_the_class_before_the_id_was_made_again_is_refused_by_the_fold(
    spec: StoreSpec,
) -> None:
    """Another process, whose cache still held the id's ``OrderLog``, posted ``add`` calls made
    for it after the id was deleted and made again as a ``Tally`` (a post is made from the
    cache: under contention a poster does not read the step first). The fold on the
    ``Tally`` ran ``Tally.add`` with them. A post now carries each call's class tag: the fold
    answers such a call ``ActorClassChangedError`` (its poster reads that, and so does
    ``call_outcome``), applies the calls of the same class and those of a post naming none (an
    earlier release's), and the new actor is untouched by the refused one."""
    init_switchable(spec, combine_window=60.0)
    OrderLog.get_or_create("a").add.run("me/0")
    assert vc.delete_actor("a") is True
    tally = Tally.get_or_create("a")
    box = foreign_box("a")

    def post(token: str, for_class: str | None) -> str:
        call = PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex, for_class=for_class)
        _sync.sync(box.send(box.prepare((call,))))
        time.sleep(0.003)  # the next post gets a later millisecond: post order is key order
        return call.call_id

    stale = post("stale/0", class_tag(OrderLog.name))
    same = post("same/0", class_tag(Tally.name))
    untagged = post("untagged/0", None)
    commit_behind_its_back("a")  # our next commit loses the race, posts, and folds
    assert tally.add.run("me/1") == 103
    assert tally.applied.run() == ["same/0", "untagged/0", "me/1"]
    with pytest.raises(vc.ActorClassChangedError, match="another class") as raised:
        tally.call_outcome(stale)
    assert raised.value.now == Tally.name
    assert (tally.call_outcome(same), tally.call_outcome(untagged)) == (101, 102)


def test_a_post_names_the_class_of_each_call_by_its_tag(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the fold above checks, a poster writes: its calls' class tags (a call made for
    ``OrderLog`` posts ``class_tag(OrderLog.name)``), in the name and in the body."""
    init_switchable(spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    prepared: list[Post] = []
    prepare = PostBox.prepare

    def recording(self: PostBox, calls: tuple[PostedCall, ...]) -> Post:
        post = prepare(self, calls)
        prepared.append(post)
        return post

    monkeypatch.setattr(PostBox, "prepare", recording)
    commit_behind_its_back("a")  # our next commit loses the race, posts, and folds
    assert log.add.run("me/1") == 2  # (the step behind its back copied me/0's state)
    assert [c.for_class for p in prepared for c in p.calls] == [class_tag(OrderLog.name)]


def test_the_class_changed_error_travels_by_value() -> None:
    """It crosses processes (a pool's result, a posted call's outcome) with its fields."""
    import pickle

    error = vc.ActorClassChangedError("a", "add", "m:Till", "m:Basket")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.was, copy.now) == (type(error), str(error), "m:Till", "m:Basket")
    assert isinstance(copy, vc.ActorDefinitionError) and isinstance(copy, TypeError)


# -- under contention: A holds the folder lease ----------------------------------------------------
def test_a_keyed_retry_by_the_folder_lease_holder_after_the_actor_was_made_again_runs_on_the_new_actor(
    spec: StoreSpec,
) -> None:
    """A lost a race, posted and folded: it holds the folder lease (contended: its next call
    folds, it does not race). B deletes the actor and makes it again (its tombstone put wins
    at once: it takes no lease over). A's retry of ``k1`` folds no post: it commits nothing,
    and was answered from A's cached table (12). It runs on the new actor."""
    init_switchable(spec, combine_window=60.0, lease_seconds=60.0, fresh_window=WARM)
    till = warm_till("wl-key")
    core = vc.get_runtime().core("wl-key")
    record = core.record
    assert record is not None
    _sync.sync(core.log.put_step(dataclasses.replace(record, step=record.step + 1, parent=record.step)))
    assert till.add.run(5) == 17  # lost its put to the step above, posted, took the lease, folded
    assert core._holding()
    as_b(spec, delete_and_create("wl-key"))
    assert till.add.options(idempotency_key="k1").run(10) == 1010
    assert read_as_b(spec, "wl-key") == 1010


# -- a tombstone has no incarnation: call_outcome asked by a process that did not post the call -----
def test_call_outcome_after_the_newest_actor_was_deleted_never_answers_from_an_earlier_actor(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's posted call ``me/1`` was applied on the id's first actor (result 2). B deletes it,
    makes it again (its actor 2), and a process that did not post the call asks its outcome:
    ``LookupError`` (looked for in the newest actor's steps alone). B then deletes actor 2:
    the same question was answered 2, the first actor's outcome, for the newest actor's call
    (its tombstone records no incarnation ("born"), read as 0: the walk went on below the
    tombstone that ended the first actor). A, which posted it, still gets its result."""
    store = init_switchable(spec, combine_window=60.0, fresh_window=WARM)
    log, raised = give_up_on_a_post(store, commit_timeout=0.3)
    assert heal_and_fold(store, log) == 3
    (call_id,) = raised.call_ids

    def asked_elsewhere() -> Any:
        """B's ``call_outcome``, as a process that did not post it (none of A's posts known)."""
        with monkeypatch.context() as patch:
            patch.setattr(poster, "_GAVE_UP", OrderedDict())
            return vc.ActorHandle("a").call_outcome(call_id)

    def delete_create_ask() -> None:
        assert vc.delete_actor("a") is True
        OrderLog.get_or_create("a").add.run("second/0")
        with pytest.raises(LookupError, match="no posted call"):
            asked_elsewhere()
        assert vc.delete_actor("a") is True

    as_b(spec, delete_create_ask)
    with pytest.raises(LookupError, match="no posted call"):
        as_b(spec, asked_elsewhere)
    assert log.call_outcome(call_id) == 2
