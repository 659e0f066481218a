"""Which rules of docs/protocol.md a second implementation must follow, and which it may not.

protocol.md marks each rule *required* (safety: exactly-once, no lost commit, no partial
read, readers never misled) or *advisory* (this library's tuning). The clean room
(``tests/clean_room``, written from that page alone) is the evidence:

* **rule breakers**: a clean-room writer that skips one required rule, beside the library,
  and what then goes wrong (a call applied twice, a commit or a posted call lost) or what
  the library does about it (refuses, reports the outcome unknown). Each is parametrized
  with the rule kept as well, so the test shows the rule is what makes the difference.
* **advisory choices made otherwise**: a clean-room folder that takes no lease, folds one
  post per step, deletes nothing and moves HEAD backward; a lease of another length never
  renewed nor released. The library stays exactly-once beside them.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from clean_room import folder as clean_folder
from clean_room.actor_log import Log, Step, step_key
from clean_room.envelope import encode
from clean_room.folder import Lease, fold, read_posts
from clean_room.posts import Call, Post, write_post
from clean_room.stores import LocalFiles, Through
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.items: list[object] = []

    def add(self, item: object) -> int:
        self.items.append(item)
        return len(self.items)

    @vc.virtual_actor.readonly
    def get(self) -> list[object]:
        return list(self.items)


KEPT = pytest.mark.parametrize("rule", ["kept", "broken"])


@pytest.fixture
def room(spec: StoreSpec) -> Iterator[Through]:
    through = Through(spec.open())
    yield through
    through.close()


def _add(state: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The clean room's own ``Ledger.add``."""
    assert method == "add" and not kwargs
    state["items"].append(*args)
    return len(state["items"])


def _post(sender: str, seq: int, item: str, back_ms: int) -> Post:
    """A post of ``add(item)`` dated ``back_ms`` before now (so it sorts before the post the
    library makes when its next call loses its race)."""
    return Post(sender, seq, [Call("add", (item,))], ms=int(time.time() * 1000) - back_ms)


def _newest(log: Log) -> Step:
    step = log.newest()
    assert step is not None
    return step


class _NoDeletes:
    """The clean room's store with its deletes dropped: a folder that leaves what it folded."""

    def __init__(self, store: Through) -> None:
        self.store = store

    def get(self, key: str) -> tuple[bytes, str] | None:
        return self.store.get(key)

    def create(self, key: str, data: bytes) -> bool:
        return self.store.create(key, data)

    def replace(self, key: str, data: bytes, version: str) -> None:
        self.store.replace(key, data, version)

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return self.store.list(prefix, start_after)

    def delete(self, key: str) -> None:
        pass


# --- rule breakers: a required rule skipped, and what goes wrong -------------------------


@KEPT
def test_rule_breaker_a_step_put_that_overwrites_loses_a_committed_call(
    spec: StoreSpec, room: Through, rule: str
) -> None:
    """RULE BREAKER (Commit, step 3: the step put is create-only). A clean-room racer holding
    step 0 puts its step 1 by plain overwrite: the library's call, reported committed in
    step 1, is gone (a lost commit). Create-only, the racer's put fails and nothing is lost."""
    init(spec)
    ledger = Ledger.get_or_create("overwrite")
    log = Log(room, "overwrite")
    racer_base = _newest(log)  # the racer read step 0 ...
    assert ledger.add.run("committed") == 1  # ... the library commits step 1
    vc.shutdown()
    if rule == "kept":
        assert log.commit(racer_base, {"items": ["racer"]}, []) is None  # lost its race
    else:
        key = f"actors/overwrite/steps/{1:020d}"
        found = room.get(key)
        assert found is not None
        meta = dict(_newest(log).meta, writer=secrets.token_hex(16), calls=[])
        room.replace(key, encode(key, meta, {"state": Log.dumps(racer_base, {"items": ["racer"]})}), found[1])
    init(spec)
    items = Ledger.get_or_create("overwrite").get.run()
    assert items == (["committed"] if rule == "kept" else ["racer"])


@KEPT
def test_rule_breaker_a_step_without_the_post_cursor_lets_a_post_apply_twice(
    spec: StoreSpec, room: Through, rule: str
) -> None:
    """RULE BREAKER (Step objects, ``extra``; The post cursor: every writer carries
    ``post_cursor`` forward). A clean-room folder applies a post and dies before deleting it;
    the next clean-room commit drops the cursor; the library's next fold finds the post
    unapplied and applies it a second time. With the cursor carried, the same fold finds it
    stale and deletes it."""
    init(spec, fresh_window=3600.0, combine_window=60.0)
    ledger = Ledger.get_or_create("cursor")
    ledger.add.run("lib1")
    log = Log(room, "cursor")
    post = _post(secrets.token_hex(8), 1, "posted", 50)
    write_post(log, post)
    base = fold(Log(_NoDeletes(room), "cursor"), _newest(log), read_posts(log), _add)  # type: ignore[arg-type]
    assert base.applied(post.sender, post.seq) and room.list("actors/cursor/mail/")
    extra = base.extra if rule == "kept" else {k: v for k, v in base.extra.items() if k != "post_cursor"}
    assert log.commit(base, log.state(base), [], extra, fresh=True) is not None
    assert ledger.add.run("lib2") == (3 if rule == "kept" else 4)  # lost its race, posted, folded
    vc.shutdown()
    items = log.state(_newest(log))["items"]
    assert items == (["lib1", "posted", "lib2"] if rule == "kept" else ["lib1", "posted", "posted", "lib2"])
    assert room.list("actors/cursor/mail/") == []


@KEPT
def test_rule_breaker_a_step_without_the_idempotency_table_applies_a_keyed_retry_again(
    spec: StoreSpec, room: Through, rule: str
) -> None:
    """RULE BREAKER (Step objects, part ``dedup``: every commit carries the table forward).
    A clean-room commit that drops the table makes the library apply a keyed retry a second
    time; carried (copied unchanged, as a commit that records no keyed call may), the retry
    is answered from the table."""
    init(spec)
    assert Ledger.get_or_create("table").add.options(idempotency_key="k").run("once") == 1
    vc.shutdown()
    log = Log(room, "table")
    base = _newest(log)
    assert "dedup" in base.obj.parts
    assert log.commit(base, log.state(base), [], fresh=rule == "broken", extra=base.extra) is not None
    assert ("dedup" in _newest(log).obj.parts) == (rule == "kept")
    init(spec)
    ledger = Ledger.get_or_create("table")
    assert ledger.add.options(idempotency_key="k").run("once") == (1 if rule == "kept" else 2)
    assert ledger.get.run().count("once") == (1 if rule == "kept" else 2)


@KEPT
def test_rule_breaker_a_fold_that_skips_a_senders_earlier_post_loses_it(
    spec: StoreSpec, room: Through, rule: str
) -> None:
    """RULE BREAKER (The post cursor: a folder that leaves a post out leaves out every later
    post of its sender). A clean-room fold applies a sender's second post without its first:
    the cursor then passes the first, and the library's next fold deletes it as stale, never
    applied (its caller would wait for ever, then be told "not applied"). Leaving the
    later post out instead, the library folds both, in order."""
    init(spec, fresh_window=3600.0, combine_window=60.0)
    ledger = Ledger.get_or_create("order")
    ledger.add.run("lib1")
    log = Log(room, "order")
    sender = secrets.token_hex(8)
    first, second = _post(sender, 1, "first", 60), _post(sender, 2, "second", 50)
    for post in (first, second):
        write_post(log, post)
    posts = read_posts(log)
    assert [p.seq for p in posts] == [1, 2]
    fold(log, _newest(log), [posts[0] if rule == "kept" else posts[1]], _add)
    ledger.add.run("lib2")  # loses its race to the fold, posts, folds what is left
    vc.shutdown()
    items = log.state(_newest(log))["items"]
    if rule == "kept":
        assert items == ["lib1", "first", "second", "lib2"]
    else:
        assert items == ["lib1", "second", "lib2"]  # `first` lost
    assert room.list("actors/order/mail/") == []


@KEPT
def test_rule_breaker_a_fold_without_outcomes_leaves_the_poster_told_unknown_not_misled(
    spec: StoreSpec, room: Through, rule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RULE BREAKER (A folder, step 6: part ``outcomes`` holds the outcome of every call of the
    step). The clean room holds the lease and folds the library's post into a step whose
    ``outcomes`` lack its call: the library's caller gets ``CommitOutcomeUnknownError`` (the
    call was applied, its result is not known), never a made-up result."""
    init(spec, fresh_window=3600.0, combine_window=60.0)
    ledger = Ledger.get_or_create("outcomes")
    ledger.add.run("lib1")
    log = Log(room, "outcomes")
    lease = Lease(log, secrets.token_hex(8))
    lease.take(60.0, 1)
    base = log.commit(_newest(log), {"items": ["lib1", "cr"]}, [])
    assert base is not None  # the library's next call loses its race to it, and posts
    got: list[object] = []

    def call() -> None:
        try:
            got.append(ledger.add.run("lib2"))
        except vc.CommitOutcomeUnknownError as error:
            got.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 30
    while not (posts := read_posts(log)) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert len(posts) == 1
    if rule == "broken":
        monkeypatch.setattr(
            clean_folder, "encode_outcomes", lambda outcomes, pickled=False: b"VOC2" + bytes(4)
        )
    step = fold(log, base, posts, _add)
    caller.join(30)
    lease.release(step.n)
    assert log.state(step)["items"] == ["lib1", "cr", "lib2"]  # applied, once
    if rule == "kept":
        assert got == [3]
    else:
        assert len(got) == 1 and isinstance(got[0], vc.CommitOutcomeUnknownError), got


@KEPT
def test_rule_breaker_a_put_on_old_knowledge_without_the_retention_check_is_lost(
    spec: StoreSpec, room: Through, rule: str
) -> None:
    """RULE BREAKER (Commit, step 5: a put made on old knowledge reads ``gc`` after it). A
    clean-room writer holding step 1 puts step 2 after a library compaction freed that
    number: the put succeeds, and no reader ever sees it (a commit reported, never applied).
    With the check, the writer finds 2 below the watermark and another writer's id recorded
    there, deletes its object and commits again on the newest step."""
    init(spec, fresh_window=0.0)
    ledger = Ledger.get_or_create("late")
    ledger.add.run("a")
    log = Log(room, "late")
    old = _newest(log)  # step 1: the clean room's knowledge from now on
    ledger.add.run("b")
    ledger.add.run("c")
    assert ledger.compact(keep_last=1, min_age=0) is not None
    assert log.watermark() == 3
    mine = log.commit(old, {"items": ["a", "cr"]}, [])
    assert mine is not None and mine.n == 2  # the freed number: the put succeeds
    if rule == "kept":
        record = dict(json.loads(_required(log.read("actors/late/gc")).parts["compacted"]))
        assert mine.n < log.watermark() and record[mine.n] != mine.meta["writer"]  # not ours
        room.delete(step_key("late", mine.n))
        newest = _newest(log)
        assert log.commit(newest, {"items": [*log.state(newest)["items"], "cr"]}, []) is not None
    assert ledger.get.run() == (["a", "b", "c", "cr"] if rule == "kept" else ["a", "b", "c"])


@KEPT
def test_rule_breaker_a_compaction_that_deletes_the_newest_step_loses_the_actor(
    spec: StoreSpec, room: Through, rule: str
) -> None:
    """RULE BREAKER (Retention: never the newest step). A clean-room compaction that passes
    the newest step too leaves a ``gc`` and no step: the actor's history is gone, and the
    library says so (``StepsMissingError``, naming the watermark and the remedies) rather
    than make the actor anew below the watermark (it did: its state read empty, its commits
    failed the retention check). Keeping the newest step, the actor is read whole."""
    init(spec)
    ledger = Ledger.get_or_create("emptied")
    for item in ("a", "b", "c"):
        ledger.add.run(item)
    vc.shutdown()
    log = Log(room, "emptied")
    if rule == "kept":
        assert log.compact(keep_last=1) == 3
    else:
        gc_key = "actors/emptied/gc"
        record = [[n, _required(log.step(n)).meta["writer"]] for n in range(4)]
        meta = {"kind": "gc", "actor": "emptied", "min_step": 4, "recorded_from": 0, "time": time.time()}
        assert room.create(gc_key, encode(gc_key, meta, {"compacted": json.dumps(record).encode()}))
        for n in range(4):
            room.delete(step_key("emptied", n))
    init(spec)
    if rule == "kept":
        assert Ledger.get_or_create("emptied").get.run() == ["a", "b", "c"]
    else:
        with pytest.raises(vc.StepsMissingError, match="watermark 4"):
            Ledger.get_or_create("emptied")
        assert room.list("actors/emptied/steps/") == []  # nothing made below the watermark


class _Tokenless(LocalFiles):
    """A local directory written without the 16-byte write token before each object."""

    def create(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("xb") as file:
            file.write(data)
        return True


@pytest.mark.parametrize("store_lane", ["local"], indirect=True)
@KEPT
def test_rule_breaker_a_local_object_without_its_write_token_is_refused(spec: StoreSpec, rule: str) -> None:
    """RULE BREAKER (Store requirements, write tokens). A clean-room writer on a local directory
    writes a step without the token: the library strips 16 bytes of the envelope, the digest
    fails, and the read is refused (``IntegrityError``), never taken for a step."""
    init(spec)
    Ledger.get_or_create("token").add.run("a")
    vc.shutdown()
    root = spec.url.removeprefix("file://")
    log = Log((LocalFiles if rule == "kept" else _Tokenless)(root), "token")
    assert log.commit(_newest(log), {"items": ["a", "cr"]}, []) is not None
    init(spec)
    if rule == "kept":
        assert Ledger.get_or_create("token").get.run() == ["a", "cr"]
    else:
        with pytest.raises(vc.IntegrityError):
            Ledger.get_or_create("token").get.run()


def _required(found: Any) -> Any:
    assert found is not None
    return found


# --- advisory choices made otherwise: the library does not depend on them ----------------


def test_advisory_a_folder_without_lease_one_post_per_step_no_deletes_head_backward(
    spec: StoreSpec, room: Through
) -> None:
    """ADVISORY (The folder lease; A folder, steps 3 and 7; Commit, step 6). A clean-room
    folder that holds no lease, folds one post per step, deletes none of what it folded, and
    moves HEAD back to step 0: the library, folding after it, applies every post once, in
    order, deletes the leftovers as stale, and reads the newest state."""
    init(spec)
    Ledger.get_or_create("advisory").add.run("lib1")
    vc.shutdown()  # HEAD at step 1
    lazy = Log(_NoDeletes(room), "advisory")  # type: ignore[arg-type]
    sender = secrets.token_hex(8)
    for seq, item in ((1, "p1"), (2, "p2"), (3, "p3")):
        write_post(lazy, _post(sender, seq, item, 90 - 10 * seq))
    posts = read_posts(lazy)
    step = fold(lazy, _newest(lazy), posts[:1], _add)  # one post, no lease, nothing deleted
    step = fold(lazy, step, posts[1:2], _add)
    head_key = "actors/advisory/HEAD"
    found = room.get(head_key)
    assert found is not None
    head = {"kind": "head", "actor": "advisory", "step": 0, "class": step.meta["class"]}
    room.replace(head_key, encode(head_key, head, {}), found[1])  # backward
    init(spec, fresh_window=3600.0, combine_window=60.0)
    ledger = Ledger.get_or_create("advisory")
    assert ledger.get.run() == ["lib1", "p1", "p2"]  # loaded from HEAD 0: the newest all the same
    assert lazy.commit(step, lazy.state(step), []) is not None  # a racer: the library's put loses
    assert len(room.list("actors/advisory/mail/")) == 3
    assert ledger.add.run("lib2") == 5  # lost its race, posted, folded p3 after the others
    vc.shutdown()
    assert log_items(room, "advisory") == ["lib1", "p1", "p2", "p3", "lib2"]
    assert room.list("actors/advisory/mail/") == []  # the leftovers found stale and deleted


def test_advisory_a_lease_of_another_length_never_renewed_nor_released(
    spec: StoreSpec, room: Through
) -> None:
    """ADVISORY (The folder lease: its length, renewal, release). A clean-room process takes a
    0.5 s lease (the library's is 2 s), beats the library's next put, then neither folds nor
    renews nor releases: the library's caller posts, waits for the lease to expire, takes it
    over and folds its own post; applied once."""
    init(spec, fresh_window=3600.0, combine_window=60.0)
    ledger = Ledger.get_or_create("lapsed")
    ledger.add.run("lib1")
    log = Log(room, "lapsed")
    Lease(log, secrets.token_hex(8)).take(0.5, 1)
    assert log.commit(_newest(log), {"items": ["lib1", "cr"]}, []) is not None
    assert ledger.add.run("lib2") == 3
    assert ledger.get.run() == ["lib1", "cr", "lib2"]
    vc.shutdown()
    assert room.list("actors/lapsed/mail/") == []


def test_advisory_a_compaction_that_leaves_head_behind(spec: StoreSpec, room: Through) -> None:
    """ADVISORY (Retention: HEAD moved to the newest step first). A clean-room compaction whose
    HEAD stays below the watermark it raises: the library lists the log instead (a debug
    line, no warning) and reads and writes the newest step."""
    init(spec)
    ledger = Ledger.get_or_create("behind")
    for item in ("a", "b", "c"):
        ledger.add.run(item)
    vc.shutdown()
    log = Log(room, "behind")
    assert log.compact(keep_last=1) == 3
    head_key = "actors/behind/HEAD"
    found = _required(room.get(head_key))
    head = {"kind": "head", "actor": "behind", "step": 1, "class": _newest(log).meta["class"]}
    room.replace(head_key, encode(head_key, head, {}), found[1])
    init(spec)
    ledger = Ledger.get_or_create("behind")
    assert ledger.get.run() == ["a", "b", "c"]
    assert ledger.add.run("d") == 4
    vc.shutdown()
    assert log_items(room, "behind") == ["a", "b", "c", "d"] and _newest(log).n == 4


def log_items(room: Through, actor: str) -> list[object]:
    log = Log(room, actor)
    return list(log.state(_newest(log))["items"])
