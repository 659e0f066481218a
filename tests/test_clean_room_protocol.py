"""docs/protocol.md is enough for a second implementation: ``tests/clean_room``, written from
that page alone, reads what the library writes, and the library reads, folds and refuses what it
writes (issue 13: "specifies the posting and folding protocol precisely enough for a second
implementation").

Each test has the library and the clean room share one store; the clean room reaches it through
the ``ObjectStore`` interface, and on the local lane also through the files themselves.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from clean_room.actor_log import Log, step_key
from clean_room.envelope import Refused, decode, encode
from clean_room.folder import Lease, fold, read_posts
from clean_room.posts import Call, Post, class_tag, find_outcome, write_post
from clean_room.stores import LocalFiles, RawS3, Through
from store_helpers import init

import vactor_cloud as vc
from vactor_cloud.storage._base import Blob, ObjectStore
from vactor_cloud.testing.faults import FaultConfig, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

CLASS_NAME = f"{__name__}:Tally"


@vc.virtual_actor
class Tally:
    def __init__(self) -> None:
        self.items: list[object] = []

    def add(self, item: object) -> int:
        self.items.append(item)
        return len(self.items)

    def fail(self, message: str) -> None:
        raise ValueError(message)

    @vc.virtual_actor.readonly
    def get(self) -> list[object]:
        return list(self.items)


@vc.virtual_actor(serializer="json")
class Plain:
    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total


@vc.virtual_actor
class Echo:
    def __init__(self) -> None:
        self.runs = 0

    def echo(self, value: str) -> str:
        self.runs += 1
        return value


class Recording(FaultyStore):
    """The library's store, with the keys it GETs written down."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, FaultConfig())
        self.got: list[str] = []

    async def _get(self, key: str) -> Blob:
        self.got.append(key)
        return await super()._get(key)


@pytest.fixture
def room(spec: StoreSpec) -> Iterator[Through]:
    through = Through(spec.open())
    yield through
    through.close()


def dated_back(ms: int = 50) -> int:
    """A post's time ``ms`` before now: it sorts before the post the library makes when its
    call, made after it, loses its race (dated by the same clock, a few ms later at most:
    a name's random part decides between two of one millisecond)."""
    return int(time.time() * 1000) - ms


def logs(spec: StoreSpec, room: Through, actor: str, signing_key: bytes | None = None) -> list[Log]:
    """The clean room's views of one actor's log: through the interface, and on a local
    directory through its files too."""
    views = [Log(room, actor, signing_key=signing_key)]
    if (root := local_root(spec)) is not None:
        views.append(Log(LocalFiles(root), actor, signing_key=signing_key))
    if spec.url.startswith("s3://"):
        o = spec.options
        s3 = RawS3(spec.url, o["endpoint_url"], o["key"], o["secret"], o["client_kwargs"]["region_name"])
        views.append(Log(s3, actor, signing_key=signing_key))
    return views


def local_root(spec: StoreSpec) -> str | None:
    """The directory of a local store; None for any other."""
    if spec.url.startswith("file://"):
        return spec.url.removeprefix("file://")
    return None if "://" in spec.url else spec.url


def test_the_clean_room_reads_what_the_library_wrote(spec: StoreSpec, room: Through) -> None:
    init(spec)
    tally = Tally.get_or_create("read-me")
    tally.add.run("a")
    tally.add.options(idempotency_key="k1").run("b")
    tally.add.run("c")
    vc.shutdown()  # HEAD moved
    for log in logs(spec, room, "read-me"):
        newest = log.newest()
        assert newest is not None and newest.n == 3
        assert log.state(newest) == {"items": ["a", "b", "c"]}
        assert [row[0] for row in log.dedup_table(newest)] == ["k1"]
        assert [c["method"] for c in newest.meta["calls"]] == ["add"]
        past = log.step(1)
        assert past is not None and log.state(past) == {"items": ["a"]}
        assert newest.meta["class"]["name"] == CLASS_NAME
    assert len(logs(spec, room, "read-me")) == (1 if spec.url.startswith("memory://") else 2)

    init(spec, fresh_window=0.0)
    report = Tally.get_or_create("read-me").compact(keep_last=1, min_age=0)
    assert report is not None
    for log in logs(spec, room, "read-me"):
        newest = log.newest()
        assert newest is not None and newest.n == 3 and log.state(newest)["items"] == ["a", "b", "c"]
        assert log.watermark() > 0 and log.step(log.watermark() - 1) is None


@pytest.mark.parametrize("store_lane", ["local"], indirect=True)
@pytest.mark.parametrize("actor", ["é-ü-9", "a+", "ab.", "abcd.", "abc..", "x.y"])
def test_the_clean_room_finds_the_files_of_any_actor_id(spec: StoreSpec, room: Through, actor: str) -> None:
    """Local layout (protocol.md, "A local directory"): an id's chunks, odd and even lengths, and
    the last chunk that would be "." or ".." (no file may have that name)."""
    root = local_root(spec)
    assert root is not None
    init(spec)
    Tally.get_or_create(actor).add.run("a")
    vc.shutdown()
    files = LocalFiles(root)
    assert files.list(f"actors/{actor}/steps/") == [step_key(actor, 0), step_key(actor, 1)]
    newest = Log(files, actor).newest()
    assert newest is not None and newest.n == 1


def test_the_clean_room_reads_a_tombstone_and_the_creation_after_it(spec: StoreSpec, room: Through) -> None:
    """Deleting an actor: the tombstone's ``extra`` and empty state, its delete key's digest,
    and the next actor's incarnation (``born``)."""
    init(spec)
    Tally.get_or_create("again").add.run("old")
    assert vc.delete_actor("again", idempotency_key="bye") is True
    log = Log(room, "again")
    tombstone = log.newest()
    assert tombstone is not None and tombstone.n == 2 and "deleted" in tombstone.extra
    assert tombstone.obj.parts["state"] == b"" and "dedup" not in tombstone.obj.parts
    assert tombstone.extra["delete_keys"] == [hashlib.sha256(b"bye").hexdigest()[:32]]
    assert tombstone.meta["calls"][0]["method"] == "__vactor_delete__"
    Tally.get_or_create("again").add.run("new")
    vc.shutdown()
    newest = log.newest()
    assert newest is not None and newest.n == 4 and log.state(newest) == {"items": ["new"]}
    creation = log.step(3)
    assert creation is not None and creation.meta["parent"] == 2 and creation.extra["born"] == 3
    assert newest.extra["born"] == 3 and newest.extra["delete_keys"] == tombstone.extra["delete_keys"]


def test_a_step_the_clean_room_commits_is_read_and_continued(spec: StoreSpec, room: Through) -> None:
    init(spec)
    tally = Tally.get_or_create("commit-me")
    assert tally.add.options(idempotency_key="k1").run("a") == 1
    tally.add.options(delay=3600, timer_key="later").run("timer")
    log = Log(room, "commit-me")
    parent = log.newest()
    assert parent is not None and parent.n == 2 and "later" in parent.extra["timers"]
    call = {"method": "add", "call_id": secrets.token_hex(16), "ok": True, "time": 0.0}  # the required fields
    mine = log.commit(parent, {"items": ["a", "cr"]}, [call])
    assert mine is not None and mine.n == 3
    assert log.commit(parent, {"items": ["lost"]}, []) is None  # create-only: the number is taken

    vc.shutdown()
    init(spec)
    tally = Tally.get_or_create("commit-me")
    assert tally.get.run() == ["a", "cr"]
    assert [t["key"] for t in tally.timers()] == ["later"]  # extra came along whole
    assert tally.add.options(idempotency_key="k1").run("again") == 1  # the table came along
    assert tally.add.run("b") == 3
    after = log.newest()
    assert after is not None and after.n == 4 and after.meta["parent"] == 3
    assert log.state(after) == {"items": ["a", "cr", "b"]}
    assert [c.method for e in tally.history(limit=2) for c in e.calls] == ["add", "add"]


def test_an_actor_the_clean_room_creates_is_the_librarys_to_call(spec: StoreSpec, room: Through) -> None:
    log = Log(room, "made-by-us")
    made = log.create(CLASS_NAME, {"items": ["made"]})
    assert made is not None and made.n == 0
    init(spec)
    assert Tally.get_or_create("made-by-us").add.run("x") == 2
    assert vc.get_actor("made-by-us").get.run() == ["made", "x"]


def test_a_head_the_clean_room_moves_is_used_and_one_it_forges_is_pulled_back(
    spec: StoreSpec, room: Through
) -> None:
    init(spec)
    Tally.get_or_create("head").add.run("a")
    vc.shutdown()
    log = Log(room, "head")
    parent = log.newest()
    assert parent is not None
    mine = log.commit(parent, {"items": ["a", "cr"]}, [])
    assert mine is not None
    key = "actors/head/HEAD"

    def move_head(step: int) -> None:
        head = encode(key, {"kind": "head", "actor": "head", "step": step, "class": parent.meta["class"]}, {})
        found = room.get(key)
        room.replace(key, head, found[1]) if found else room.create(key, head)

    move_head(mine.n)
    init(spec)
    assert vc.get_actor("head").get.run() == ["a", "cr"]
    vc.shutdown()
    move_head(99)  # ahead of the log: no step 99 was ever committed
    init(spec)
    assert vc.get_actor("head").get.run() == ["a", "cr"]
    vc.shutdown()
    head = log.read(key)
    assert head is not None and head.meta["step"] == mine.n  # pulled back to the newest


def test_the_clean_room_compacts_and_the_library_goes_on(spec: StoreSpec, room: Through) -> None:
    init(spec)
    tally = Tally.get_or_create("compact-me")
    for item in "abcd":
        tally.add.run(item)
    vc.shutdown()
    log = Log(room, "compact-me")
    assert log.compact(keep_last=2) == 3
    assert room.list("actors/compact-me/steps/") == [step_key("compact-me", 3), step_key("compact-me", 4)]
    init(spec)
    tally = Tally.get_or_create("compact-me")
    with pytest.raises(vc.StepNotFoundError, match=r"steps 3\.\.4 remain"):  # our watermark, read
        tally.get.run(at_step=1)
    assert tally.get.run(at_step=3) == ["a", "b", "c"]
    assert tally.add.run("e") == 5
    assert [e.step for e in tally.history()] == [5, 4, 3]


def test_a_json_state_and_a_table_kept_as_checkpoint_and_delta(spec: StoreSpec, room: Through) -> None:
    init(spec)
    assert Plain.get_or_create("plain").add.run(5) == 5
    big = Tally.get_or_create("big-table")
    keys = [f"{i:03d}-" + "k" * 120 for i in range(30)]  # 30 rows of ~150 bytes: past 2 KB
    for key in keys:
        big.add.options(idempotency_key=key).run(key[:3])
    vc.shutdown()
    for log in logs(spec, room, "plain"):
        newest = log.newest()
        assert (
            newest is not None and newest.meta["serializer"] == "json" and log.state(newest) == {"total": 5}
        )
    log = Log(room, "big-table")
    newest = log.newest()
    assert newest is not None and newest.obj.version == 2 and "dedup_base" in newest.meta
    assert [row[0] for row in log.dedup_table(newest)] == keys

    # A step of the clean room's on a format-2 step keeps its table: a retry is answered from it.
    assert log.commit(newest, {"items": [*log.state(newest)["items"], "cr"]}, []) is not None
    init(spec)
    big = Tally.get_or_create("big-table")
    assert big.add.options(idempotency_key=keys[0]).run("again") == 1
    assert big.get.run()[-1] == "cr"


def test_a_signed_store(spec: StoreSpec, room: Through) -> None:
    secret = "a clean room's secret"
    spec.init(signing_key=secret, settings=vc.Settings(storage="", fresh_window=3600.0))
    tally = Tally.get_or_create("signed")
    tally.add.run("lib1")
    log = Log(room, "signed", signing_key=secret.encode())
    parent = log.newest()
    assert parent is not None and log.state(parent) == {"items": ["lib1"]}
    if room.get("mail-key") is None:
        mail_key = encode(
            "mail-key", {"kind": "mail-key"}, {"key": secrets.token_bytes(32)}, signing_key=log.signing_key
        )
        room.create("mail-key", mail_key)
    sender = secrets.token_hex(8)
    first, second = Call("add", ("posted",), tag=class_tag(CLASS_NAME)), Call("add", ("sealed",))
    posts = [Post(sender, 1, [first], ms=dated_back()), Post(sender, 2, [second], ms=dated_back(49))]
    write_post(log, posts[0], carry="format1")
    write_post(log, posts[1], carry="format2")
    assert log.commit(parent, {"items": ["lib1", "cr"]}, []) is not None
    tally.add.run("lib2")
    assert find_outcome(log, 2, posts[0], first.call_id) == (log.step(3), True, 3)
    assert find_outcome(log, 2, posts[1], second.call_id) == (log.step(3), True, 4)
    with pytest.raises(Refused):
        Log(room, "signed").newest()  # unsigned reader, signed objects


def _lost_race_fold(
    spec: StoreSpec,
    room: Through,
    actor: str,
    write: list[tuple[Post, str]],
    extra: dict[str, Any] | None = None,
) -> tuple[Log, Recording]:
    """The library's cache holds step 1; the clean room writes ``write`` (posts, how carried)
    and commits step 2 (on a local directory, as files); the library's next call loses its
    race for step 2, posts, takes the free lease and folds every post listed into step 3."""
    runtime = init(spec, fresh_window=3600.0, combine_window=60.0)
    recording = Recording(runtime.store)
    runtime.store = recording
    tally = Tally.get_or_create(actor)
    tally.add.run("lib1")
    log = logs(spec, room, actor)[-1]  # on a local directory: its files
    parent = log.newest()
    assert parent is not None and parent.n == 1
    for post, carry in write:
        write_post(log, post, carry=carry)
    assert log.commit(parent, {"items": ["lib1", "cr"]}, [], extra) is not None
    tally.add.run("lib2")
    return log, recording


@pytest.mark.parametrize("carry", ["body", "format1", "format2"])
def test_a_post_of_the_clean_room_is_folded_once_and_its_outcome_found(
    spec: StoreSpec, room: Through, carry: str
) -> None:
    log = Log(room, f"post-{carry}")
    if carry == "format2" and log.store.get("mail-key") is None:
        key = encode("mail-key", {"kind": "mail-key"}, {"key": secrets.token_bytes(32)})
        log.store.create("mail-key", key)
    # every field of a call in a name: a class tag, an id that is no hex, a key, a name
    call = Call("add", ("posted",), call_id="not-hex-Ω", idempotency_key="ik", name="named")
    call.tag = class_tag(CLASS_NAME)
    post = Post(secrets.token_hex(8), 7, [call], ms=dated_back())
    log, recording = _lost_race_fold(spec, room, f"post-{carry}", [(post, carry)])

    found = find_outcome(log, 2, post, call.call_id)
    assert found is not None
    step, ok, value = found
    assert (step.n, ok, value) == (3, True, 3)
    assert log.state(step)["items"] == ["lib1", "cr", "posted", "lib2"]
    assert [row[0] for row in log.dedup_table(step)] == ["ik"]
    assert [c.get("name") for c in step.meta["calls"]] == ["named", None]
    if carry != "body":  # read from its name: no GET of the post
        assert not [k for k in recording.got if "/mail/" in k]
    vc.shutdown()
    assert room.list(f"actors/post-{carry}/mail/") == []  # the folder deleted it


def test_two_copies_of_one_post_apply_once_and_other_outcomes_are_found(
    spec: StoreSpec, room: Through
) -> None:
    sender = secrets.token_hex(8)
    twice = Call("add", ("twice",))
    post = Post(sender, 1, [twice], ms=dated_back())
    failing = Call("fail", ("boom",), idempotency_key="fk")
    wrong_class = Call("add", ("never",), tag=class_tag("elsewhere:Other"))
    later = Post(sender, 2, [failing, wrong_class], ms=post.ms + 5)
    expired = Post(secrets.token_hex(8), 1, [Call("add", ("expired",))], ms=post.ms - 1_900_000)
    writes = [(expired, "body"), (post, "body"), (post, "format1"), (later, "body")]
    log, _ = _lost_race_fold(spec, room, "copies", writes)
    newest = log.newest()
    assert newest is not None and log.state(newest)["items"] == ["lib1", "cr", "twice", "lib2"]
    assert find_outcome(log, 2, post, twice.call_id) is not None
    found = find_outcome(log, 2, later, failing.call_id)
    assert found is not None and not found[1] and isinstance(found[2], ValueError)
    assert [row[0::2] for row in log.dedup_table(newest)] == [["fk", False]]  # a keyed failure
    found = find_outcome(log, 2, later, wrong_class.call_id)
    assert found is not None and not found[1] and isinstance(found[2], vc.ActorClassChangedError)
    assert find_outcome(log, 2, expired, expired.calls[0].call_id) is None

    write_post(log, post)  # a copy of an applied post, again: stale by the cursor
    again = Post(secrets.token_hex(8), 1, [Call("add", ("again",))], ms=dated_back())
    write_post(log, again)
    assert Tally.get_or_create("copies").add.run("lib3") == 6  # a fold: it lists the mailbox
    vc.shutdown()
    assert log.state(log.newest())["items"] == ["lib1", "cr", "twice", "lib2", "again", "lib3"]  # type: ignore[arg-type]
    assert room.list("actors/copies/mail/") == []  # the expired post and the copies deleted

    # Step 4 folded a post: it carries step 3's outcomes, found there once step 3 is compacted.
    newest = log.newest()
    assert newest is not None and log.compact(keep_last=newest.n - 3) == 4
    found = find_outcome(log, 2, post, twice.call_id)
    assert found is not None and found[0].n == 4 and found[1:] == (True, 3)


def test_a_post_dated_at_or_before_the_post_floor_is_expired(spec: StoreSpec, room: Through) -> None:
    """ "Stale and expired posts": a post whose time is at or before the ``post_floor`` of the step
    the folder builds on is deleted unapplied, however young; one after it is applied."""
    floor = dated_back(100)
    before = Post(secrets.token_hex(8), 1, [Call("add", ("before",))], ms=floor)
    after = Post(secrets.token_hex(8), 1, [Call("add", ("after",))], ms=floor + 1)
    log, _ = _lost_race_fold(
        spec, room, "floor", [(before, "body"), (after, "body")], {"post_floor": floor / 1000}
    )
    newest = log.newest()
    assert newest is not None and log.state(newest)["items"] == ["lib1", "cr", "after", "lib2"]
    assert newest.extra["post_floor"] == floor / 1000  # carried
    vc.shutdown()
    assert room.list("actors/floor/mail/") == []


def _add(state: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The clean room's own ``Tally.add`` (a second implementation runs the methods itself)."""
    assert method == "add" and not kwargs
    state["items"].append(*args)
    return len(state["items"])


def test_the_clean_room_holds_the_lease_and_folds_the_librarys_posts(spec: StoreSpec, room: Through) -> None:
    """The other direction: the clean room holds the folder lease, so the library posts its calls
    (from the second on, sealed in their names) and waits; the clean room folds them with
    the cursor and outcomes as the doc says, and the library's callers get their results."""
    init(spec, fresh_window=3600.0, combine_window=60.0)
    tally = Tally.get_or_create("folded-by-us")
    tally.add.run("lib1")
    log = logs(spec, room, "folded-by-us")[-1]
    if log.store.get("mail-key") is None:
        log.store.create(
            "mail-key", encode("mail-key", {"kind": "mail-key"}, {"key": secrets.token_bytes(32)})
        )
    lease = Lease(log, secrets.token_hex(8))
    lease.take(60.0, 1)
    base = log.commit(log.newest(), {"items": ["lib1", "cr"]}, [])  # type: ignore[arg-type]
    assert base is not None  # the library's next call loses its race to it, and posts
    carried = 0
    for n in range(3):
        results: list[int] = []
        caller = threading.Thread(target=lambda n=n, out=results: out.append(tally.add.run(f"lib{n + 2}")))
        caller.start()
        deadline = time.monotonic() + 30
        while not (posts := read_posts(log)) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert len(posts) == 1
        carried += "." in posts[0].key.rsplit("/", 1)[1]
        base = fold(log, base, posts, _add)
        caller.join(30)
        assert results == [len(log.state(base)["items"])]
    assert carried >= 1  # the library's names were read, and agreed with the bodies
    lease.release(base.n)
    assert tally.add.run("last") == 6  # the library takes the released lease, or commits
    assert tally.get.run() == ["lib1", "cr", "lib2", "lib3", "lib4", "last"]


def _library_step(spec: StoreSpec, actor: str) -> None:
    init(spec)
    Tally.get_or_create(actor).add.run("a")
    vc.shutdown()


def test_the_library_refuses_damaged_and_moved_steps(spec: StoreSpec, room: Through) -> None:
    for actor in ("flipped", "moved", "other-actor"):
        _library_step(spec, actor)
    # a step whose bytes changed at rest
    key = step_key("flipped", 1)
    data = bytearray(room.get(key)[0])  # type: ignore[index]
    data[-40] ^= 1
    room.delete(key)
    room.create(key, bytes(data))
    # a sound step copied to the next number of its own log, and to another actor's
    room.create(step_key("moved", 2), room.get(step_key("moved", 1))[0])  # type: ignore[index]
    room.create(step_key("other-actor", 2), room.get(step_key("moved", 1))[0])  # type: ignore[index]
    for actor in ("flipped", "moved", "other-actor"):
        with pytest.raises(Refused):
            Log(room, actor).step(2 if actor != "flipped" else 1)
    # a step whose call lacks a required field ("Step objects": method, call_id, ok, time)
    _library_step(spec, "no-time")
    log = Log(room, "no-time")
    parent = log.newest()
    assert parent is not None
    assert log.commit(parent, {"items": []}, [{"method": "add", "call_id": "c1", "ok": True}]) is not None
    for actor in ("flipped", "moved", "other-actor", "no-time"):
        init(spec)
        with pytest.raises(vc.IntegrityError):
            Tally.get_or_create(actor).get.run()
        vc.shutdown()


def test_a_damaged_post_is_skipped_and_left_and_a_damaged_name_falls_back_to_the_body(
    spec: StoreSpec, room: Through
) -> None:
    """A post whose body fails its digest ends a fold's list until, 2 s after the first such
    fold, it is skipped; it is never applied and stays ("A folder", step 2). A name whose
    digest fails is not read: the body is (Posts carried by their names, "Reading")."""
    by_body = Post(secrets.token_hex(8), 1, [Call("add", ("by-body",))], ms=dated_back())
    damaged = Post(secrets.token_hex(8), 1, [Call("add", ("damaged",))], ms=by_body.ms - 1)  # sorts first
    init(spec, fresh_window=3600.0)
    tally = Tally.get_or_create("damaged")
    tally.add.run("lib1")
    log = Log(room, "damaged")
    parent = log.newest()
    assert parent is not None

    bad = write_post(log, damaged)
    data = room.get(bad)[0]  # type: ignore[index]
    room.delete(bad)
    room.create(bad, data[:-1] + bytes([data[-1] ^ 1]))
    named = write_post(log, by_body, carry="format1")
    room.delete(named)
    head, inline = named.rsplit(".", 1)
    forged = f"{head}.{'B' if inline[0] == 'A' else 'A'}{inline[1:]}"
    room.create(forged, by_body.body(forged))

    assert log.commit(parent, {"items": ["lib1", "cr"]}, []) is not None
    tally.add.run("lib2")
    newest = log.newest()
    assert newest is not None and log.state(newest)["items"] == ["lib1", "cr", "by-body", "lib2"]
    assert bad in room.list("actors/damaged/mail/")


def test_the_clean_room_refuses_what_the_doc_says_to_refuse() -> None:
    good = encode(
        "actors/a/steps/00000000000000000001", {"kind": "step", "step": 1, "actor": "a"}, {"state": b"x"}
    )
    assert decode("actors/a/steps/00000000000000000001", good).parts == {"state": b"x"}
    with pytest.raises(Refused):
        decode("actors/b/steps/00000000000000000001", good)  # another actor's
    with pytest.raises(Refused):
        decode("actors/a/steps/00000000000000000001", good[:-1] + bytes([good[-1] ^ 1]))
    signed = encode("actors/a/HEAD", {"kind": "head"}, {}, signing_key=b"k")
    with pytest.raises(Refused):
        decode("actors/a/HEAD", signed)  # signed, and we have no key
    with pytest.raises(Refused):
        decode("actors/a/gc", signed, signing_key=b"k")  # the MAC binds the key
    assert decode("actors/a/HEAD", signed, signing_key=b"k").meta["kind"] == "head"


def test_the_clean_room_reads_a_large_outcome_its_table_names(spec: StoreSpec, room: Through) -> None:
    """protocol.md "Outcome objects": a keyed result over 64 KB is held by an object the
    checkpoint names (a five-element row, format 3); read from the spec, it is the result."""
    init(spec)
    echo = Echo.get_or_create("echo")
    value = "v" * 100_000
    assert echo.echo.options(idempotency_key="big").run(value) == value
    assert echo.echo.options(idempotency_key="small").run("s") == "s"
    vc.shutdown()
    for log in logs(spec, room, "echo"):
        newest = log.newest()
        assert newest is not None and newest.obj.version == 2
        checkpoint = log.read(f"actors/echo/dedup/{newest.meta['dedup_base']}")
        assert checkpoint is not None and checkpoint.version == 3
        assert len(checkpoint.meta["outcomes"]) == 1
        rows = log.dedup_table(newest)
        assert [(row[0], row[2], row[3]) for row in rows] == [("big", True, value), ("small", True, "s")]
