"""Posts that carry themselves in their names (docs/protocol.md, "Post objects").

A small post's name is its 12-character prefix, ``"."`` and the base64url of the
post with its digest (the envelope's digest, bound to the name's prefix): a
folder learns it from the LIST and GETs nothing. A big one keeps the bare
prefix and is read by GET. A name that does not authenticate is never applied
from the name: the folder reads the body, which authenticates it or not as for
any post.
"""

from __future__ import annotations

import asyncio
import base64
import pickle
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from actors import OrderLog
from test_combining import Switchable, commit_behind_its_back, init_switchable, wait_for_no_posts

import vactor_cloud as vc
from vactor_cloud import _sync, codec, mailkey, post_objects, posting
from vactor_cloud.errors import NotFoundError
from vactor_cloud.keys import mail_seal_key, post_key, posts_prefix
from vactor_cloud.post_cursor import POST_CURSOR
from vactor_cloud.post_objects import INLINE_NAME_LIMIT
from vactor_cloud.posting import Post, PostBox, PostedCall, identity, inline_name, read_name
from vactor_cloud.storage import MemoryStore, ObjectStore
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")

KEY = b"correct horse battery staple"


def calls_of(*tokens: Any) -> tuple[PostedCall, ...]:
    return tuple(PostedCall("add", pickle.dumps(((t,), {})), uuid.uuid4().hex) for t in tokens)


def init_signed(spec: StoreSpec) -> Switchable:
    """``init_switchable`` with the runtime signing with ``KEY``."""
    spec.init(
        signing_key=KEY,
        settings=vc.Settings(storage="", combine_after=1, combine_window=60.0, post_names=True),
    )
    runtime = vc.get_runtime()
    assert runtime.settings.signing_key == KEY
    store = Switchable(runtime.store)
    runtime.store = store
    return store


def named(store: ObjectStore, actor_id: str, signing_key: bytes | None) -> PostBox:
    """A PostBox that writes sealed names (the store's mail key loaded, made if need be)."""
    box = PostBox(store, actor_id, signing_key, names=True)
    assert _sync.sync(box.mail.load(create=True)) is not None
    return box


def name_of(key: str) -> str:
    return key.rpartition("/")[2]


def post_adds(box: PostBox, tokens: list[Any]) -> Post:
    post = _sync.sync(box.send(box.prepare(calls_of(*tokens))))
    time.sleep(0.003)  # the next post gets a later millisecond
    return post


# -- the name, alone ----------------------------------------------------------------------------
@pytest.mark.parametrize("signing_key", [None, KEY])
def test_a_small_post_carries_itself_in_its_name_and_a_big_one_does_not(signing_key: bytes | None) -> None:
    box = named(MemoryStore(f"inline-names-{signing_key is None}"), "a", signing_key)
    small = box.prepare(calls_of(1))
    name = name_of(small.key)
    assert len(name) > 13 and name[12] == "." and len(name.encode()) <= INLINE_NAME_LIMIT
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    assert identity(small.key) == small.time
    assert read_name(small.key, signing_key, box.mail.key) == small
    big = box.prepare(calls_of("x" * INLINE_NAME_LIMIT))
    assert len(name_of(big.key)) == 12 and read_name(big.key, signing_key, box.mail.key) is None
    assert identity(big.key) == big.time
    # Calls the compact encoding does not hold (metadata) are read from the body.
    meta = box.prepare((PostedCall("add", b"x", uuid.uuid4().hex, metadata={"k": 1}),))
    assert len(name_of(meta.key)) == 12
    # Idempotency keys, names, retries and call ids of any form ride along.
    odd = box.prepare(
        (PostedCall("add", b"\x00\xff", "call-1", idempotency_key="k\u00e9", name="n", max_retries=3),)
    )
    assert len(name_of(odd.key)) > 12 and read_name(odd.key, signing_key, box.mail.key) == odd


def test_a_senders_posts_sort_in_seq_order_whatever_their_sizes() -> None:
    box = named(MemoryStore("inline-order"), "a", None)
    posts = [box.prepare(calls_of("x" * (300 * (i % 3 == 1)) or i)) for i in range(60)]
    assert {len(name_of(p.key)) == 12 for p in posts} == {True, False}
    assert [p.seq for p in sorted(posts, key=lambda p: p.key)] == list(range(60))


def test_identity_reads_the_time_of_both_name_forms_and_nothing_else() -> None:
    assert identity("actors/a/mail/000000001000") == 0.001  # 1 ms, random digits 000
    assert identity("actors/a/mail/00000000w000") is None  # not a base-32 digit
    assert identity("actors/a/mail/000000001000.anything") is not None
    assert identity("actors/a/mail/000000001000-x") is None
    assert identity("actors/a/mail/00000000100") is None


@pytest.mark.parametrize("signing_key", [None, KEY])
def test_a_damaged_forged_or_moved_name_is_not_read(signing_key: bytes | None) -> None:
    box = named(MemoryStore(f"inline-forged-{signing_key is None}"), "a", signing_key)
    post = box.prepare(calls_of(1))
    head, prefix, encoded = post.key.rpartition("/")[0], name_of(post.key)[:12], name_of(post.key)[13:]
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    seal = box.mail.key
    assert seal is not None and read_name(post.key, signing_key, seal) == post
    # The wrong key, or none where one is configured (and the other way round).
    assert read_name(post.key, b"another key", seal) is None
    assert read_name(post.key, None if signing_key else KEY, seal) is None
    # Sealed with another mail key, or no mail key at hand: the body is read instead.
    assert read_name(post.key, signing_key, bytes(32)) is None
    assert read_name(post.key, signing_key, None) is None
    # Every single changed character of the encoding.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(encoded)):
        other = alphabet[(alphabet.index(encoded[i]) + 1) % 64]
        damaged = f"{head}/{prefix}.{encoded[:i]}{other}{encoded[i + 1 :]}"
        assert read_name(damaged, signing_key, seal) is None, i
    # Truncated, or with an extra character.
    assert read_name(post.key[:-1], signing_key, seal) is None
    assert read_name(post.key + "A", signing_key, seal) is None
    if signing_key is not None:
        # Replayed under another time or another actor: the digest binds both.
        later = posting.post_name(int(post.time * 1000) + 1, 0)
        assert read_name(f"{head}/{later}.{encoded}", signing_key, seal) is None
        assert read_name(f"{posts_prefix('b')}{prefix}.{encoded}", signing_key, seal) is None
    # A payload changed by someone without the key, its digest made with the wrong one.
    forged = inline_name("a", prefix, box.sender, 0, calls_of(666), b"guessed key")
    assert forged is not None and read_name(f"{head}/{forged}", signing_key or b"x", seal) is None
    # Not the canonical spelling of its bytes: padding.
    assert len(raw) % 3 != 0
    assert read_name(f"{post.key}=", signing_key, seal) is None


# -- folds: requests ------------------------------------------------------------------------------
def _keys(box: PostBox) -> list[str]:
    return box.keys_now() if box.store.inline else _sync.sync(box.keys())


def _read(box: PostBox, keys: list[str]) -> list[Post]:
    return box.read_now(keys) if box.store.inline else _sync.sync(box.read(keys))


@pytest.mark.usefixtures("runtime_off")
def test_a_folder_learns_small_posts_from_the_listing_with_no_get(store_spec: StoreSpec) -> None:
    store_spec.init(signing_key=KEY)
    store: ObjectStore = vc.get_runtime().store
    sender = named(store, "a", KEY)
    small = [post_adds(sender, [i]) for i in range(3)]
    big = post_adds(sender, ["x" * INLINE_NAME_LIMIT])
    last = post_adds(sender, [3])
    folder = named(store, "a", KEY)
    store.requests.reset()
    keys = _keys(folder)
    assert store.requests.snapshot() == {"list": 1}
    posts = _read(folder, keys)
    assert store.requests.snapshot() == {"list": 1, "get": 1}  # the big one only
    assert [p.seq for p in posts] == [0, 1, 2, 3, 4]
    assert [p.calls for p in posts] == [p.calls for p in [*small, big, last]]
    assert keys == [p.key for p in [*small, big, last]]
    store.requests.reset()
    _read(folder, _keys(folder))  # all known now: read before, or carried by their names
    assert store.requests.snapshot() == {"list": 1}


# -- the mail key: sealed names ---------------------------------------------------------------------
SECRET_CALL = PostedCall("transfer_funds", pickle.dumps((("acct-4242-secret",), {})), uuid.uuid4().hex)


def _revealed(name: str) -> list[bytes]:
    """The method name and argument of ``SECRET_CALL`` that ``name`` shows, in its text or in
    the bytes its base64 spells."""
    encoded = name[13:]
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    return [t for t in (b"transfer_funds", b"acct-4242-secret") if t in name.encode() or t in raw]


def test_a_sealed_name_shows_neither_the_method_nor_the_arguments() -> None:
    """What names reach (access logs, inventories, LIST) holds no method name nor argument;
    a name in the clear (format 1, what snapshots before the mail key wrote) holds both."""
    box = named(MemoryStore("sealed-names"), "a", None)
    post = box.prepare((SECRET_CALL,))
    assert posting.sealed(post.key) and _revealed(name_of(post.key)) == []
    assert read_name(post.key, None, box.mail.key) == post
    clear = inline_name("a", name_of(post.key)[:12], box.sender, 0, (SECRET_CALL,), None)
    assert clear is not None and not posting.sealed(clear)
    assert _revealed(clear) == [b"transfer_funds", b"acct-4242-secret"]
    # Two posts of the same call look unrelated (a fresh nonce each).
    again = box.prepare((SECRET_CALL,))
    assert name_of(post.key)[13 + 8 :] != name_of(again.key)[13 + 8 :]


def test_the_mail_key_is_made_once_and_read_once_per_process() -> None:
    store = MemoryStore("sealed-once")
    first = named(store, "a", None)  # makes the key: a GET (missing) and a create-only PUT
    assert store.requests.snapshot() == {"get": 1, "put": 1}
    store.requests.reset()
    other = named(store, "b", None)  # another actor of this process: no request
    assert store.requests.total() == 0 and other.mail.key == first.mail.key
    # Another process (another store object on the same bucket) reads the one there.
    elsewhere = PostBox(MemoryStore("sealed-once"), "a", None, names=True)
    assert _sync.sync(elsewhere.mail.load(create=True)) == first.mail.key


class _AllReadFirst(FaultyStore):
    """A reader of the mail key that found none waits (bounded) until ``readers`` have."""

    def __init__(
        self, inner: ObjectStore, found_none: list[int], readers: int, rules: tuple[FaultRule, ...]
    ) -> None:
        super().__init__(inner, FaultConfig(seed=1, rules=rules))
        self.found_none, self.readers = found_none, readers

    async def _around(self, operation: str, key: str, run: Any, *, batch: tuple[str, ...] = ()) -> Any:
        try:
            return await super()._around(operation, key, run, batch=batch)
        except NotFoundError:
            if operation == "get" and key == mail_seal_key():
                self.found_none.append(1)  # (list.append: atomic across threads)
                deadline = time.monotonic() + 30
                while len(self.found_none) < self.readers and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)  # (on the IO loop every store shares: never block it)
            raise


@pytest.mark.usefixtures("runtime_off")
def test_processes_racing_to_make_the_mail_key_all_use_the_one_that_landed(store_spec: StoreSpec) -> None:
    """Eight first posters at once, each its own store object (as many processes), one of
    them losing the answer to its create-only PUT: one key, the same for all of them."""
    store_spec.init()
    # Every one reads "no key yet" before any makes one (each then puts): without that, the
    # one losing its answer may read the key another made and never put (the premise failed
    # so once on moto, in CI).
    found_none: list[int] = []
    lose = FaultRule("lost_response", key_contains=mail_seal_key(), at=(1,))
    stores: list[ObjectStore] = [
        _AllReadFirst(store_spec.open(), found_none, 8, (lose,) if i == 0 else ()) for i in range(8)
    ]
    boxes = [PostBox(store, "a", None, names=True) for store in stores]
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda box: _sync.sync(box.mail.load(create=True)), boxes))
    assert stores[0].injected  # type: ignore[attr-defined]
    assert keys[0] is not None and set(keys) == {keys[0]}
    there = _sync.sync(vc.get_runtime().store.get(mail_seal_key())).data
    assert mailkey._decode(there, None) == keys[0]
    for store in stores:
        _sync.sync(store.close())


class GatedKey(Switchable):
    """Requests for the mail key wait until ``gate`` is set (a stalled endpoint, for that key)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.gate = threading.Event()

    async def _around(self, operation: str, key: str, run: Any, **batch: Any) -> Any:
        while key == mail_seal_key() and not self.gate.is_set():
            await asyncio.sleep(0.005)
        return await super()._around(operation, key, run, **batch)


@pytest.mark.usefixtures("runtime_off")
def test_a_post_does_not_wait_for_the_mail_key(store_spec: StoreSpec) -> None:
    """The key is read (or made) in the background: while its requests stall, a process's post
    goes out under a bare name and its call returns; once the key is at hand, posts are sealed."""
    store_spec.init(settings=vc.Settings(storage="", combine_after=1, combine_window=60.0))
    runtime = vc.get_runtime()
    store = GatedKey(runtime.store)
    runtime.store = store
    puts: list[str] = []
    store.fail = lambda op, key: puts.append(key) if op == "put" and "/mail/" in key else None  # type: ignore[func-returns-value]
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    commit_behind_its_back("a")
    log.add.run("me/1")  # loses the race, posts, folds its post
    assert puts and [len(name_of(k)) for k in puts] == [12] * len(puts)
    box = runtime.core("a")._posts()
    assert box.mail.key is None  # still waiting behind the gate
    store.gate.set()
    give_up = time.monotonic() + 30
    while box.mail.key is None and time.monotonic() < give_up:
        time.sleep(0.01)
    assert box.mail.key is not None
    assert posting.sealed(box.prepare(calls_of("x")).key)
    assert log.applied.run() == ["me/0", "me/1"]


def test_a_reader_with_another_mail_key_reads_the_body() -> None:
    """The mail-key object deleted and made anew: names sealed with the old key are read by
    GET (their bodies carry the same posts), never unsealed into noise."""
    sender = named(MemoryStore("sealed-rekeyed"), "a", None)
    post = _sync.sync(sender.send(sender.prepare((SECRET_CALL,))))
    store = MemoryStore("sealed-rekeyed")  # another process
    _sync.sync(store.delete(mail_seal_key()))
    folder = named(store, "a", None)
    assert folder.mail.key != sender.mail.key
    assert read_name(post.key, None, folder.mail.key) is None
    # The key id, not luck, keeps another key's noise out (one in many parses as a post):
    # with a "cipher" that any key undoes, the name is still not read under another key.
    with pytest.MonkeyPatch.context() as m:
        m.setattr(post_objects.mailkey, "seal", lambda key, nonce, data: data)
        clear = sender.prepare((SECRET_CALL,))
        assert read_name(clear.key, None, sender.mail.key) == clear
        assert read_name(clear.key, None, folder.mail.key) is None
    store.requests.reset()
    assert _read(folder, _keys(folder)) == [post]
    assert store.requests.snapshot() == {"list": 1, "get": 1}


def test_a_folder_that_writes_bare_names_reads_sealed_ones() -> None:
    """``post_names=False`` is about writing: such a process reads the mail key when it first
    lists a sealed name (a GET, never a PUT) and learns the posts from the listing."""
    sender = named(MemoryStore("sealed-reader"), "a", None)
    posts = [post_adds(sender, [i]) for i in range(3)]
    store = MemoryStore("sealed-reader")
    folder = PostBox(store, "a", None, names=False)
    assert len(name_of(folder.prepare(calls_of(1)).key)) == 12
    store.requests.reset()
    assert _read(folder, _keys(folder)) == posts
    assert store.requests.snapshot() == {"list": 1, "get": 1}  # the key's GET, no post's
    # No key there: nothing is made by a reader; it reads bodies. The same process's first
    # post then makes one at once (not after the 30 s a failed load waits).
    store = MemoryStore("sealed-reader-none")
    plain = PostBox(store, "a", None, names=False)
    assert _sync.sync(plain.mail.load(create=False)) is None
    assert _sync.sync(store.list("")) == []
    poster = PostBox(store, "b", None, names=True)
    assert _sync.sync(poster.mail.load(create=True)) is not None
    assert _sync.sync(store.list("")) == [mail_seal_key()]


def test_a_damaged_mail_key_leaves_bare_names_and_says_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore("sealed-damaged")
    _sync.sync(store.put(mail_seal_key(), b"not a key", mode="create"))
    box = PostBox(store, "a", None, names=True)
    with caplog.at_level("WARNING", logger="vactor_cloud.mailkey"):
        assert _sync.sync(box.mail.load(create=True)) is None
    assert "delete it" in caplog.text and mail_seal_key() in caplog.text
    assert len(name_of(box.prepare(calls_of(1)).key)) == 12
    # Not asked again at every post: after RETRY_AFTER seconds.
    store.requests.reset()
    assert _sync.sync(box.mail.load(create=True)) is None
    assert store.requests.total() == 0
    assert _sync.sync(store.get(mail_seal_key())).data == b"not a key"  # left for the operator


def test_a_sealed_name_is_built_byte_for_byte_as_the_protocol_page_specifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/protocol.md ("Posts carried by their names", format 2), built by hand."""
    import hashlib

    seal_key, nonce = bytes(range(32)), bytes(range(100, 112))
    calls = (PostedCall("add", b"\x80\x05N.", "0123456789abcdef0123456789abcdef"),)
    inner = (
        b"\x01" + bytes.fromhex("00112233445566ff") + b"\x05" + b"\x01"
        + b"\x01" + b"\x03add" + b"\x04\x80\x05N." + bytes.fromhex(calls[0].call_id) + b"\x00"
    )  # fmt: skip
    stream = hashlib.blake2b(nonce + b"\0\0\0\0", key=seal_key, digest_size=64, person=b"vactor-post-name")
    sealed_bytes = bytes(a ^ b for a, b in zip(inner, stream.digest(), strict=False))
    key_id = hashlib.blake2b(b"", key=seal_key, digest_size=4, person=b"vactor-mail-kid").digest()
    payload = b"\x02" + key_id + nonce + sealed_bytes
    expected = "000000001000." + base64.urlsafe_b64encode(
        payload + hashlib.sha256(payload).digest()
    ).decode().rstrip("=")
    monkeypatch.setattr(post_objects.secrets, "token_bytes", lambda n: nonce)
    assert inline_name("a", "000000001000", "00112233445566ff", 5, calls, None, seal_key) == expected
    read = read_name(f"actors/a/mail/{expected}", None, seal_key)
    assert read == Post(f"actors/a/mail/{expected}", "00112233445566ff", 5, 0.001, calls)


@pytest.mark.usefixtures("runtime_off")
def test_a_fold_of_small_posts_gets_no_post(store_spec: StoreSpec) -> None:
    store = init_switchable(store_spec, combine_window=60.0)
    seen: list[tuple[str, str]] = []
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = named(store, "a", None)
    for i in range(3):
        post_adds(box, [f"other/{i}"])
    commit_behind_its_back("a")  # our next commit loses the race, posts, and folds

    store.fail = lambda op, key: seen.append((op, key))  # type: ignore[func-returns-value]
    assert log.add.run("me/1") == 5
    assert log.applied.run() == ["me/0", "other/0", "other/1", "other/2", "me/1"]
    assert [k for op, k in seen if op == "list" and "/mail/" in k]
    assert [k for op, k in seen if op == "get" and "/mail/" in k] == []
    assert wait_for_no_posts("a") == []


# -- folds: forged, damaged, replayed --------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_forged_name_is_never_applied_and_does_not_stop_the_folds(store_spec: StoreSpec) -> None:
    """Someone without the signing key writes a mail/ object whose name carries a call (its
    digest made up) and a body copied from a real post: the name does not authenticate, so the
    folder reads the body, which does not either (it binds the real key): like a damaged
    post, it ends a few folds, then is skipped for good, never applied."""
    store = init_signed(store_spec)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    honest = named(store.inner, "a", KEY)
    real = post_adds(honest, ["other/0"])
    body = _sync.sync(store.inner.get(real.key)).data
    prefix = posting.post_name(int(time.time() * 1000) - 1000, 7)  # sorts before everything
    forged = inline_name("a", prefix, "f" * 16, 0, calls_of("forged/0"), b"a guess")
    assert forged is not None
    _sync.sync(store.inner.put(post_key("a", forged), body, mode="create"))
    reads: list[str] = []
    store.fail = lambda op, key: reads.append(key) if op == "get" and "/mail/" in key else None  # type: ignore[func-returns-value]
    for i in range(1, 6):
        commit_behind_its_back("a")
        log.add.run(f"me/{i}")
    applied = log.applied.run()
    assert "forged/0" not in applied
    assert applied.count("other/0") == 1
    assert reads and set(reads) == {post_key("a", forged)}  # the forged one by GET, the real one not


@pytest.mark.usefixtures("runtime_off")
def test_without_a_signing_key_a_damaged_name_falls_back_to_its_body(store_spec: StoreSpec) -> None:
    """Unsigned, the body's checksum does not bind its key: a post whose name was damaged
    (its body intact) is read by GET and applied from the body, once."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = named(store.inner, "a", None)
    post = box.prepare(calls_of("other/0"))
    data = post_objects.encode_post(post.key, post, None)
    damaged = post.key[:-3] + ("AAA" if not post.key.endswith("AAA") else "BBB")
    assert read_name(damaged, None, box.mail.key) is None
    _sync.sync(store.inner.put(damaged, data, mode="create"))
    time.sleep(0.003)  # our post gets a later millisecond: it sorts after this one
    commit_behind_its_back("a")
    log.add.run("me/1")
    assert log.applied.run() == ["me/0", "other/0", "me/1"]
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_an_applied_posts_name_written_again_with_another_body_is_deleted_unapplied(
    store_spec: StoreSpec,
) -> None:
    """The name authenticates the post it carries, not the body: a name that reads is applied
    from the name, never the body. Replayed after its fold (whatever the body), the cursor
    has passed its seq: deleted unapplied, with no GET."""
    store = init_signed(store_spec)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = named(store.inner, "a", KEY)
    post = post_adds(box, ["other/0"])
    commit_behind_its_back("a")
    log.add.run("me/1")
    assert wait_for_no_posts("a") == []
    other = box.prepare(calls_of("other/1"))
    _sync.sync(store.inner.put(post.key, post_objects.encode_post(other.key, other, KEY), mode="create"))
    reads: list[str] = []
    store.fail = lambda op, key: reads.append(key) if op == "get" and "/mail/" in key else None  # type: ignore[func-returns-value]
    log.add.run("me/2")
    assert log.applied.run() == ["me/0", "other/0", "me/1", "me/2"]
    assert wait_for_no_posts("a") == []
    assert reads == []
    assert vc.get_runtime().core("a").record.extra[POST_CURSOR][box.sender][0] == 0  # type: ignore[union-attr]


# -- mixed versions -------------------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_folder_that_ignores_names_reads_the_bodies_and_one_that_reads_them_folds_bare_names(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body of a post is the same whatever its name: a folder that does not read names
    (the previous release reads every post by GET) folds name-carrying posts by their bodies;
    posts under bare 12-character names (the previous release's, or big ones) are read by GET."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = named(store.inner, "a", None)
    post_adds(box, ["other/0"])
    with monkeypatch.context() as m:
        m.setattr(post_objects, "INLINE_NAME_LIMIT", 0)  # posted as before
        post_adds(box, ["other/1"])
    post_adds(box, ["other/2"])
    assert [len(name_of(k)) == 12 for k in _sync.sync(store.inner.list(posts_prefix("a")))] == [
        False,
        True,
        False,
    ]
    with monkeypatch.context() as m:
        m.setattr(posting, "read_name", lambda *args: None)  # names not read
        reads: list[str] = []
        store.fail = lambda op, key: reads.append(key) if op == "get" and "/mail/" in key else None  # type: ignore[func-returns-value]
        commit_behind_its_back("a")
        log.add.run("me/1")
        assert len(reads) == 3
    assert log.applied.run() == ["me/0", "other/0", "other/1", "other/2", "me/1"]
    assert wait_for_no_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_a_name_taken_by_another_post_is_posted_again_under_a_new_name(store_spec: StoreSpec) -> None:
    """The "already exists" read-back of send() with a name that carries the post: our own
    earlier attempt = posted; another object there = posted again under a new name."""
    store_spec.init()
    store = vc.get_runtime().store
    box = named(store, "a", None)
    post = box.prepare(calls_of("other/0"))
    assert _sync.sync(box.send(post)) == post
    assert _sync.sync(box.send(post)) == post  # its earlier attempt landed
    taken = box.prepare(calls_of("other/1"))
    squatter = named(store, "a", None).prepare(calls_of("x"))
    _sync.sync(store.put(taken.key, post_objects.encode_post(taken.key, squatter, None), mode="create"))
    moved = _sync.sync(box.send(taken))
    assert moved.key != taken.key and moved.seq == taken.seq and moved.calls == taken.calls
    assert read_name(moved.key, None, box.mail.key) == moved
    assert moved.key > taken.key  # later, so the sender's order holds


@pytest.mark.parametrize("size", ["small", "big"])
@pytest.mark.usefixtures("runtime_off")
def test_an_idle_folder_deletes_a_post_left_behind_whatever_its_size(
    store_spec: StoreSpec, size: str
) -> None:
    """A post left behind after its fold (its folder died before the delete) is deleted by
    the lease holder's next listing, with no call to fold: known stale from its name (small)
    or from its body (big). (lease_seconds: the holder folds in the background only while its
    lease, not renewed while it folds nothing, has time left: 1.5 s by default, too short for
    the steps below on a loaded emulator.)"""
    store = init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = named(store.inner, "a", None)
    token = "other/0" if size == "small" else "x" * INLINE_NAME_LIMIT
    post = post_adds(box, [token])
    assert (len(name_of(post.key)) == 12) == (size == "big")
    data = _sync.sync(store.inner.get(post.key)).data
    commit_behind_its_back("a")
    log.add.run("me/1")  # folds it; this process holds the lease and keeps folding for others
    assert wait_for_no_posts("a") == []
    _sync.sync(store.inner.put(post.key, data, mode="create"))
    assert wait_for_no_posts("a") == []
    assert log.applied.run() == ["me/0", token, "me/1"]


@pytest.mark.parametrize("signing_key", [None, KEY])
def test_the_name_is_built_byte_for_byte_as_the_protocol_page_specifies(signing_key: bytes | None) -> None:
    """docs/protocol.md ("Posts carried by their names"), built by hand: a second implementation
    that follows the page writes the same names and reads ours."""
    import hashlib
    import hmac

    calls = (
        PostedCall("add", b"\x80\x05N.", "0123456789abcdef0123456789abcdef"),
        PostedCall("m\u00e9", b"", "not-hex", idempotency_key="k", name="n", max_retries=300),
    )
    raw_id = bytes.fromhex("0123456789abcdef0123456789abcdef")
    payload = (
        b"\x01"  # format
        + bytes.fromhex("00112233445566ff")  # sender
        + b"\x05"  # seq
        + b"\x02"  # two calls
        + b"\x01" + b"\x03add" + b"\x04\x80\x05N." + raw_id + b"\x00"
        + b"\x06" + b"\x03m\xc3\xa9" + b"\x00" + b"\x07not-hex" + b"\x01k" + b"\x01n" + b"\xac\x02"
    )  # fmt: skip
    k = "actors/a/mail/000000001000"
    digest = (
        hashlib.sha256(payload).digest()
        if signing_key is None
        else hmac.new(signing_key, k.encode() + b"\0" + payload, hashlib.sha256).digest()
    )
    expected = "000000001000." + base64.urlsafe_b64encode(payload + digest).decode().rstrip("=")
    assert inline_name("a", "000000001000", "00112233445566ff", 5, calls, signing_key) == expected
    read = read_name(f"actors/a/mail/{expected}", signing_key)
    assert read == Post(f"actors/a/mail/{expected}", "00112233445566ff", 5, 0.001, calls)
    # The same call id spelt as text though it is hex (flag bit 0 clear): not the one spelling.
    other = payload.replace(
        b"\x01\x03add\x04\x80\x05N." + raw_id,
        b"\x00\x03add\x04\x80\x05N.\x200123456789abcdef0123456789abcdef",
    )
    assert other != payload
    forged_digest = (
        hashlib.sha256(other).digest()
        if signing_key is None
        else hmac.new(signing_key, k.encode() + b"\0" + other, hashlib.sha256).digest()
    )
    spelt = "000000001000." + base64.urlsafe_b64encode(other + forged_digest).decode().rstrip("=")
    assert read_name(f"actors/a/mail/{spelt}", signing_key) is None


@pytest.mark.usefixtures("runtime_off")
def test_by_default_a_small_post_carries_itself_sealed_and_with_names_off_keeps_the_bare_name(
    store_spec: StoreSpec,
) -> None:
    """``Settings.post_names`` is on by default: a small post's name carries it, sealed with the
    store's mail key (made by the first poster). Off (beside pre-release snapshots that delete
    longer names unread), or before the key is at hand, the name is the bare 12 characters."""
    store_spec.init()
    store = vc.get_runtime().store
    assert vc.get_runtime().settings.post_names is True
    assert vc.get_runtime().core("a")._posts().names is True
    bare = PostBox(store, "a", None, names=False)
    assert len(name_of(bare.prepare(calls_of("x")).key)) == 12
    box = PostBox(store, "a", None, names=True)
    if box.mail.key is None:  # (another test of this session's store may have loaded it)
        assert len(name_of(box.prepare(calls_of("x")).key)) == 12
    _sync.sync(box.mail.load(create=True))
    post = box.prepare(calls_of("x"))
    assert posting.sealed(post.key) and read_name(post.key, None, box.mail.key) == post


# -- the class a call was made for ------------------------------------------------------------------
def test_a_call_carries_the_tag_of_its_class_after_its_retries_as_the_protocol_page_specifies() -> None:
    """docs/protocol.md: call flag bit 3 (``0x08``), then the tag's 4 bytes after
    ``max_retries``; the tag is BLAKE2b-32 of the class's name, personalised ``vactor-class``."""
    import hashlib

    from vactor_cloud.class_tag import class_tag

    name = "shop.actors:Till"
    tag = hashlib.blake2b(name.encode(), digest_size=4, person=b"vactor-class").hexdigest()
    assert class_tag(name) == tag
    raw_id = bytes.fromhex("0123456789abcdef0123456789abcdef")
    calls = (PostedCall("add", b"\x80\x05N.", raw_id.hex(), max_retries=2, for_class=tag),)
    payload = (
        b"\x01" + bytes.fromhex("00112233445566ff") + b"\x05" + b"\x01"
        + b"\x09" + b"\x03add" + b"\x04\x80\x05N." + raw_id + b"\x02" + bytes.fromhex(tag)
    )  # fmt: skip
    assert post_objects._inline_payload("00112233445566ff", 5, calls) == payload
    expected = inline_name("a", "000000001000", "00112233445566ff", 5, calls, None)
    assert expected is not None
    read = read_name(f"actors/a/mail/{expected}", None)
    assert read is not None and read.calls == calls
    # A tag that is not 4 bytes of hex is not carried by the name (nor any other string).
    odd = (PostedCall("add", b"", raw_id.hex(), for_class="shop.actors:Till"),)
    assert post_objects._inline_payload("00112233445566ff", 5, odd) is None


@pytest.mark.parametrize("signing_key", [None, KEY])
def test_a_post_body_keeps_its_calls_classes_in_its_meta(signing_key: bytes | None) -> None:
    """The body's rows stay 7 fields (a reader of an earlier release reads them as before and
    ignores the meta's ``classes``); a post without them names no class; ``classes`` that do
    not match the calls make the post malformed, never applied."""
    from vactor_cloud.errors import IntegrityError

    key = "actors/a/mail/000000001000"
    calls = (
        PostedCall("add", b"x", uuid.uuid4().hex, for_class="0a1b2c3d"),
        PostedCall("add", b"y", uuid.uuid4().hex),
    )
    post = Post(key, "00112233445566ff", 3, 1.0, calls)
    data = post_objects.encode_post(key, post, signing_key)
    assert post_objects.decode_post(key, data, signing_key) == post
    rows = pickle.loads(codec_parts(key, data, signing_key)["calls"])
    assert [len(row) for row in rows] == [7, 7]
    plain = Post(
        key, "00112233445566ff", 3, 1.0, tuple(PostedCall(c.method, c.arguments, c.call_id) for c in calls)
    )
    assert "classes" not in codec_meta(key, post_objects.encode_post(key, plain, signing_key), signing_key)
    for classes in (["0a1b2c3d"], ["0a1b2c3d", "shop:Till"], "0a1b2c3d"):
        meta = {"kind": "post", "sender": post.sender, "seq": 3, "time": 1.0, "classes": classes}
        forged = codec.encode(key, meta, codec_parts(key, data, signing_key), signing_key=signing_key)
        with pytest.raises(IntegrityError, match="malformed post"):
            post_objects.decode_post(key, forged, signing_key)


def codec_parts(key: str, data: bytes, signing_key: bytes | None) -> dict[str, bytes]:
    return dict(codec.decode(key, data, signing_key=signing_key).parts)


def codec_meta(key: str, data: bytes, signing_key: bytes | None) -> dict[str, Any]:
    return dict(codec.decode(key, data, signing_key=signing_key).meta)
