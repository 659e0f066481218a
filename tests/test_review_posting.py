"""The posting and folding path, from a hostile review (review-h1): each test failed on the code
it was written against. Helpers come from test_combining (imported by name, no tests)."""

from __future__ import annotations

import dataclasses
import datetime
import pickle
import sys
import time
import types
import uuid
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest
from actors import OrderLog
from store_helpers import retune
from test_combining import a_fold_of, commit_behind_its_back, foreign_box, init_switchable, pending_posts

import vactor_cloud as vc
from vactor_cloud import _sync, codec, compaction, post_cursor, posting
from vactor_cloud.batch import PendingCall
from vactor_cloud.core import ActorCore
from vactor_cloud.dedup import Outcome
from vactor_cloud.errors import CallPendingError, CommitOutcomeUnknownError, RetryableStorageError
from vactor_cloud.keys import post_key
from vactor_cloud.lease import LeaseStore
from vactor_cloud.log import ActorLog, ClassRef, StepRecord
from vactor_cloud.posting import Post, PostBox, PostedCall, advance_cursor, decode_outcomes, encode_outcomes
from vactor_cloud.testing.lanes import StoreSpec
from vactor_cloud.timers import CANCEL

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _post_add(box: Any, token: str, **fields: Any) -> str:
    call = PostedCall("add", pickle.dumps(((token,), {})), uuid.uuid4().hex, **fields)
    _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)  # the next post gets a later millisecond
    return call.call_id


# -- 1. metadata that pickles but is not JSON: one poster's post poisons every fold --------------
@pytest.mark.usefixtures("runtime_off")
def test_a_post_whose_metadata_is_not_json_does_not_fail_the_folders_calls_nor_later_folds(
    store_spec: StoreSpec,
) -> None:
    """``options(metadata=...)`` is documented JSON-serializable but was not checked. A post
    carries the metadata pickled (a ``datetime`` pickles), and the folder records it in its
    step's JSON meta: the step's encoding raised ``TypeError``, the fold failed, the folder's
    own innocent calls failed with it, and the post stayed, so every later fold of any process
    failed the same way until the post expired (30 min)."""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    box = foreign_box("a")
    _post_add(box, "bad/0", metadata={"when": datetime.datetime(2026, 1, 1)})
    _post_add(box, "other/1")
    commit_behind_its_back("a")  # our next commit loses the race, posts, and folds
    assert log.add.run("me/1") >= 3
    assert log.add.run("me/2") >= 4
    applied = log.applied.run()
    assert applied.count("me/1") == 1 and applied.count("me/2") == 1
    assert applied.count("other/1") == 1


@pytest.mark.usefixtures("runtime_off")
def test_metadata_that_is_not_json_is_refused_when_the_call_is_made(store_spec: StoreSpec) -> None:
    """The same, in the calling process: refused at ``options()`` (``TypeError``), before it
    can reach a post, a batch or a step (it used to fail its batch-mates' commit too)."""
    store_spec.init(settings=vc.Settings(storage=""))
    log = OrderLog.get_or_create("a")
    with pytest.raises(TypeError, match="JSON"):
        log.add.options(metadata={"when": datetime.datetime(2026, 1, 1)})
    assert log.add.options(metadata={"ok": [1, "x", None]}).run("me/0") == 1
    assert pending_posts("a") == []


@pytest.mark.usefixtures("runtime_off")
def test_a_post_whose_name_is_not_utf8_does_not_fail_the_folders_calls(store_spec: StoreSpec) -> None:
    """The same with ``options(name=...)`` holding a lone surrogate (a ``str``, so it passed
    the type check): the step's meta did not encode as UTF-8 and the fold failed."""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    _post_add(foreign_box("a"), "bad/0", name="step \udc80")
    commit_behind_its_back("a")
    assert log.add.run("me/1") == 3
    assert log.applied.run() == ["me/0", "bad/0", "me/1"]
    with pytest.raises(ValueError, match="UTF-8"):
        log.add.options(name="step \udc80")


# -- 2. a post's key written again by another sender after its fold ----------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_post_under_the_key_of_an_applied_post_this_process_had_read_is_applied_not_deleted(
    store_spec: StoreSpec,
) -> None:
    """A bare name is 9 digits of milliseconds and 15 random bits: two senders (clocks apart
    by the time a fold takes) can draw the same one, the second after the first's post was
    applied and deleted (the create-only put then succeeds). A process that had read the
    first post (a fold of its that lost its race) and listed nothing since kept it cached by
    key, took the new post for the applied one (stale by the cursor) and deleted it unapplied:
    a lost call (its caller waits out ``commit_timeout``, and its sender's next post passes
    its seq, so the cursor says it was applied)."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    core = vc.get_runtime().core("a")
    first = foreign_box("a")
    _post_add(first, "A/0")
    core._read_posts(core._post_keys())  # a fold of ours read it (and lost its race)
    (key,) = pending_posts("a")
    fold_the_post_at_step_2(store.inner, key)  # another process's fold applies and deletes it
    second = foreign_box("a")
    call = PostedCall("add", pickle.dumps((("B/0",), {})), uuid.uuid4().hex)
    theirs = Post(key, second.sender, 0, posting.identity(key) or 0.0, (call,))
    _sync.sync(second.send(theirs))  # the same name, drawn by another sender
    assert pending_posts("a") == [key]
    log.add.run("me/1")  # our put loses to step 2: we post and fold
    assert log.applied.run() == ["me/0", "A/0", "B/0", "me/1"]


def fold_the_post_at_step_2(store: Any, key: str) -> None:
    """Another process's fold of the post at ``key``: step 2 applies it, and it is deleted."""
    runtime = vc.get_runtime()
    log_ = ActorLog(store, "a", signing_key=runtime.settings.signing_key)
    box = PostBox(store, "a", runtime.settings.signing_key)
    (post,) = _sync.sync(box.read([key]))
    (call,) = post.calls
    one = _sync.sync(log_.read_step(1))
    assert one is not None
    state = pickle.loads(one.state)
    state["tokens"] = [*state["tokens"], "A/0"]
    two = a_fold_of(one, [post], encode_outcomes({call.call_id: Outcome(True, 2)}), state=pickle.dumps(state))
    _sync.sync(log_.put_step(two))
    _sync.sync(store.delete(key))


# -- 3. another caller's result that this process cannot load -----------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_poster_gets_its_result_when_another_callers_result_in_the_step_does_not_load_here(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Processes sharing an actor need not share every module: a caller in another service
    gets a result of a class only it (and the folder) can import. A poster of this process
    whose call the same fold applied could not decode the step's ``posted`` part (one pickle
    of every outcome): its call, applied, ended with ``CallPendingError`` (caused by
    ``ModuleNotFoundError``), and ``call_outcome`` failed the same way for good. Each outcome
    is pickled on its own now (part ``outcomes``) and loaded only by the call's own reader."""
    log, ids = _fold_with_a_result_this_process_cannot_load(store_spec, monkeypatch)
    assert log.add.run("me/1") == "from step 3"
    assert vc.get_actor("a").call_outcome(ids["ours"]) == "from step 3"
    with pytest.raises(ModuleNotFoundError):  # theirs does not load here, and says so
        vc.get_actor("a").call_outcome(ids["theirs"])


def _fold_with_a_result_this_process_cannot_load(
    store_spec: StoreSpec,
    monkeypatch: pytest.MonkeyPatch,
    *,
    unloadable: str | None = "theirs",
    encode: Callable[[dict[str, Outcome]], bytes] = encode_outcomes,
) -> tuple[Any, dict[str, str]]:
    """Our next call posts and waits; before its first look, another process's fold applies it
    in step 3 beside another service's call; the result of one (``unloadable``: ``"theirs"``
    or ``"ours"``; None: neither) is of a class this process lacks, the others are ``"from
    step 3"`` (ours) and ``7`` (theirs). Also the call ids (``"ours"``, ``"theirs"``), once
    the fold ran."""
    store_spec.init(
        settings=vc.Settings(storage="", combine_after=1, combine_window=60.0, commit_timeout=2.0)
    )
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    _hold_lease_elsewhere("a")
    commit_behind_its_back("a")  # step 2: our next put loses, we post and wait
    module = types.ModuleType("review_h1_only_in_the_other_service")
    exec("class Receipt:\n    pass\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    real_poll = ActorCore._poll_steps
    looks = 0
    ids: dict[str, str] = {}

    def poll(self: ActorCore, *args: Any, **kwargs: Any) -> bool:
        nonlocal looks
        looks += 1
        if looks == 1:  # the holder folds our post and another service's call in step 3
            runtime = vc.get_runtime()
            log_ = ActorLog(runtime.store, "a", signing_key=runtime.settings.signing_key)
            box = PostBox(runtime.store, "a", runtime.settings.signing_key)
            (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
            two = _sync.sync(log_.read_step(2))
            assert two is not None
            ids.update(ours=post.calls[0].call_id, theirs=uuid.uuid4().hex)
            outcomes = {ids["ours"]: Outcome(True, "from step 3"), ids["theirs"]: Outcome(True, 7)}
            if unloadable is not None:
                outcomes[ids[unloadable]] = Outcome(True, module.Receipt())
            three = a_fold_of(two, [post], encode(outcomes))
            _sync.sync(log_.put_step(three))
            del sys.modules[module.__name__]  # this process has no such module
        return real_poll(self, *args, **kwargs)

    monkeypatch.setattr(ActorCore, "_poll_steps", poll)
    return log, ids


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_whose_outcome_does_not_load_gets_call_pending_not_a_raw_error(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever ends a poster's wait unexpectedly (here its own outcome, which does not load
    here), its caller must not get that error raw: an ordinary exception says the call failed,
    and this one was applied (a caller that retries it applies it twice). The wait ran outside
    ``_commit``'s handlers: ``ModuleNotFoundError`` reached the caller (and the draining
    thread, whichever caller's it was). Documented: ``CallPendingError``, the failure as its
    cause; ``call_outcome`` raises that failure (the other call's outcome still loads)."""
    log, ids = _fold_with_a_result_this_process_cannot_load(store_spec, monkeypatch, unloadable="ours")
    with pytest.raises(CallPendingError) as caught:
        log.add.run("me/1")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    assert caught.value.call_ids == [ids["ours"]]
    with pytest.raises(ModuleNotFoundError):
        vc.get_actor("a").call_outcome(ids["ours"])
    assert vc.get_actor("a").call_outcome(ids["theirs"]) == 7


def _one_pickle(outcomes: dict[str, Outcome]) -> bytes:
    """A step's outcomes as written before they were encoded per call: one pickle of them all."""
    rows = {call_id: (o.ok, o.value) for call_id, o in outcomes.items()}
    return bytes(cloudpickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))


@pytest.mark.usefixtures("runtime_off")
def test_a_poster_reads_its_result_from_a_step_written_as_one_pickle(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps written before outcomes were encoded per call hold them in part ``posted`` (one
    pickle of ``{call_id: (ok, value)}``): read still, by posters and ``call_outcome``."""
    log, ids = _fold_with_a_result_this_process_cannot_load(
        store_spec, monkeypatch, unloadable=None, encode=_one_pickle
    )
    assert log.add.run("me/1") == "from step 3"
    runtime = vc.get_runtime()
    log_ = ActorLog(runtime.store, "a", signing_key=runtime.settings.signing_key)
    three = codec.decode(
        log_.step_key(3),
        _sync.sync(runtime.store.get(log_.step_key(3))).data,
        signing_key=runtime.settings.signing_key,
    )
    assert "posted" in three.parts and "outcomes" not in three.parts
    assert vc.get_actor("a").call_outcome(ids["theirs"]) == 7


def test_outcomes_encoded_per_call_go_in_parts_a_reader_of_the_one_pickle_does_not_know() -> None:
    """A reader of the one pickle unpickles parts ``posted`` and ``carried`` whole: outcomes
    encoded per call go in ``outcomes`` and ``carried_outcomes`` (it finds no outcomes there,
    never takes the bytes for a pickle). A pickle (a parent's, carried) keeps its old name."""
    new = encode_outcomes({"a": Outcome(True, 1), "b": Outcome(False, ValueError("no"))})
    old = _one_pickle({"c": Outcome(True, [3])})
    for posted, carried, names in [
        (new, new, {"outcomes", "carried_outcomes"}),
        (new, old, {"outcomes", "carried"}),
        (old, old, {"posted", "carried"}),
    ]:
        record = StepRecord(
            3, 2, ClassRef("0" * 64, "m:C"), "pickle", b"s", "w", 1.0, posted=posted, carried=carried
        )
        data = record.encode("actors/a/steps/3", None)
        assert set(codec.decode("actors/a/steps/3", data, signing_key=None).parts) == {"state"} | names
        back = StepRecord.decode("actors/a/steps/3", data, None)
        assert (back.posted, back.carried) == (posted, carried)
    outcomes = decode_outcomes(new)
    assert list(outcomes) == ["a", "b"] and outcomes["a"] == Outcome(True, 1)
    assert not outcomes["b"].ok and str(outcomes["b"].value) == "no"
    assert dict(decode_outcomes(old)) == {"c": Outcome(True, [3])}


def _hold_lease_elsewhere(actor_id: str, seconds: float = 60.0) -> None:
    """Another process holds the folder lease: our contended calls post and wait."""
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, actor_id, runtime.settings.signing_key)
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, seconds, 1)) is not None


# -- 4. a post whose calls do not load in the folder ------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_post_whose_calls_do_not_load_here_is_not_applied_and_does_not_fail_the_fold(
    store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post's ``calls`` part is a pickle; one that passes its digest but does not load in the
    folder (its metadata holds an object of a module the folder lacks: a process of another
    service, or of a release before metadata was checked) raised ``ModuleNotFoundError`` out
    of the post's decoding, which only turned ``KeyError``/``ValueError``/``TypeError``/
    ``UnpicklingError`` into "malformed": the fold failed, the folder's own calls with it, at
    every fold until the post expired. Documented: a post that does not decode is never
    applied (and is left in place)."""
    init_switchable(store_spec, combine_window=60.0, lease_seconds=30.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    module = types.ModuleType("review_h1_only_in_the_poster")
    exec("class Tag:\n    pass\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    box = foreign_box("a")
    _post_add(box, "bad/0", metadata={"tag": module.Tag()})
    del sys.modules[module.__name__]  # the folder has no such module
    _post_add(foreign_box("a"), "other/0")
    commit_behind_its_back("a")  # our next commit loses the race, posts, and folds
    assert vc.get(log.add.run_async("me/1"), timeout=30) == 3
    assert log.applied.run() == ["me/0", "other/0", "me/1"]


# -- 5. a posted call whose history line does not encode --------------------------------------------
class Sneaky:
    """An argument whose ``repr`` holds a lone surrogate (a name decoded with
    ``surrogateescape``, shown as is by a custom ``__repr__``)."""

    def __repr__(self) -> str:
        return "<file \udcff>"


@pytest.mark.usefixtures("runtime_off")
def test_a_posted_call_whose_argument_repr_is_not_utf8_does_not_fail_the_fold(store_spec: StoreSpec) -> None:
    """A step records each call's arguments and result as ``repr`` summaries in its JSON meta;
    a summary holding a lone surrogate did not encode as UTF-8 and failed the whole commit: a
    fold including such a post failed (the folder's own calls with it) at every try, until
    the post expired; committed directly, it failed its batch-mates."""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    call = PostedCall("add", pickle.dumps(((Sneaky(),), {})), uuid.uuid4().hex)
    box = foreign_box("a")
    _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)
    commit_behind_its_back("a")
    assert log.add.run("me/1") == 3
    assert [c.args for e in log.history() for c in e.calls if "udcff" in c.args] == ["<file \\udcff>"]


# -- 6. an internal batch behind a post of ours that never landed ----------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_an_internal_batch_does_not_wait_forever_behind_a_post_of_ours_that_never_landed(
    store_spec: StoreSpec,
) -> None:
    """Our post's every write failed (``PostInDoubtError``: it may exist) and its caller got
    ``CallPendingError``. A later batch holding an internal call (a timer's cancel here) waits
    until that post is applied, folding it itself when the lease is free. But the post never
    landed: no fold can apply it and the cursor never passes it. With the lease free, the
    wait folded, found nothing, and folded again at once: a busy loop of LISTs that never
    reached its ``commit_timeout`` check (the caller hung; with the lease held elsewhere, every
    such batch failed with ``CommitConflictError`` until an ordinary call cleared it). Once
    no write of it may land (``Settings.deadline`` after the attempt) and the object is not
    there, it never will be applied (what ``call_outcome`` concludes too): the batch goes on."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    retune(commit_timeout=0.5, deadline=0.5)  # (after the setup: a loaded host's may pass 0.5 s)
    _hold_lease_elsewhere("a")  # a stalled holder: we post and wait
    commit_behind_its_back("a")  # step 2
    store.fail = lambda op, key: (
        RetryableStorageError("injected: the post's write failed", key)
        if op == "put" and "/mail/" in key
        else None
    )
    with pytest.raises(CallPendingError) as raised:
        log.add.run("me/1")
    store.fail = lambda op, key: None
    assert pending_posts("a") == []
    _hold_lease_elsewhere("a", 0.0)  # the holder is gone: we may fold
    time.sleep(0.6)  # past Settings.deadline: no write of the post may land any more
    with pytest.raises(LookupError):
        vc.get_actor("a").call_outcome(raised.value.call_ids[0])  # "never": agreed
    core = vc.get_runtime().core("a")
    cancel = PendingCall(CANCEL, ("no-such-timer",), {}, False, vc.ActorFuture(), uuid.uuid4().hex)
    core._enqueue(cancel)
    log.add.run("me/2")
    assert log.applied.run() == ["me/0", "me/2"]


# -- 7. BaseException in a folded call, and results by value across a fold (coverage) -------------
@vc.virtual_actor
class Interrupting:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, token: str) -> list[str]:
        self.tokens.append(token)
        return self.tokens  # the live list: the caller must get a copy

    def interrupt(self, kind: str) -> None:
        self.tokens.append("partial")
        raise {"ki": KeyboardInterrupt, "se": SystemExit}[kind](kind)

    @vc.virtual_actor.readonly
    def applied(self) -> list[str]:
        return list(self.tokens)


@pytest.mark.usefixtures("runtime_off")
def test_a_folded_call_raising_a_base_exception_fails_alone_and_results_travel_by_value(
    store_spec: StoreSpec,
) -> None:
    """(Coverage: no posting test had a folded call raise a ``BaseException``, nor mutated a
    result a fold delivered.) Another process's posted calls raise ``KeyboardInterrupt`` and
    ``SystemExit`` inside our fold: each is that call's outcome alone (recorded for its poster,
    its partial change dropped); the folder goes on, and its own caller gets a copy of its
    result, whose mutation reaches neither the actor nor the recorded outcomes."""
    init_switchable(store_spec, combine_window=60.0)
    handle = Interrupting.get_or_create("i")
    handle.add.run("me/0")
    box = foreign_box("i")
    ids = [
        _post_call(box, "interrupt", "ki"),
        _post_call(box, "add", "other/0"),
        _post_call(box, "interrupt", "se"),
    ]
    commit_behind_its_back("i")
    mine = handle.add.run("me/1")
    assert mine == ["me/0", "other/0", "me/1"]
    mine.append("mutated by the caller")
    assert handle.applied.run() == ["me/0", "other/0", "me/1"]
    assert handle.add.run("me/2") == ["me/0", "other/0", "me/1", "me/2"]
    three = _sync.sync(vc.get_runtime().core("i").log.read_step(3))
    assert three is not None
    posted = decode_outcomes(three.posted)
    assert [(posted[i].ok, type(posted[i].value)) for i in ids] == [
        (False, KeyboardInterrupt),
        (True, list),
        (False, SystemExit),
    ]
    assert posted[ids[1]].value == ["me/0", "other/0"]


def _post_call(box: Any, method: str, arg: str) -> str:
    call = PostedCall(method, pickle.dumps(((arg,), {})), uuid.uuid4().hex)
    _sync.sync(box.send(box.prepare((call,))))
    time.sleep(0.003)
    return call.call_id


# -- 8. reads beside a waiting poster (coverage) -----------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_read_only_call_does_not_wait_behind_a_poster_waiting_for_the_fold(store_spec: StoreSpec) -> None:
    """(Coverage: no posting test read while a poster waited.) A poster holds this process's
    writer for as long as it waits for another process's fold (here a stalled holder: until
    ``commit_timeout``); a read-only call on another thread answers at once, from the newest
    step."""
    init_switchable(store_spec, combine_window=60.0, commit_timeout=10.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")
    _hold_lease_elsewhere("a")  # a holder that does not fold
    commit_behind_its_back("a")
    future = log.add.run_async("me/1")  # loses, posts, waits
    assert wait_for_post("a")
    started = time.monotonic()
    assert log.applied.run() == ["me/0"]
    # Behind the poster, the read would answer only once the poster gave up (10 s after its
    # post: the future done by then). The bounds are that gap, not a speed (0.5 s against a
    # 3 s wait: a loaded host's scheduling could close it).
    assert time.monotonic() - started < 5
    assert not future.done()
    # Checked. The holder gives its lease up (rather than the poster waiting out its 10 s):
    # the poster folds its own call.
    runtime = vc.get_runtime()
    leases = LeaseStore(runtime.store, "a", runtime.settings.signing_key)
    assert _sync.sync(leases.write(_sync.sync(leases.read()), "f" * 16, 0.0, 2)) is not None
    assert vc.get(future, timeout=60) == 2


def wait_for_post(actor_id: str, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not pending_posts(actor_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(pending_posts(actor_id))


# -- 9. a post from a clock far ahead, left behind by its fold ---------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_post_left_behind_from_a_clock_far_ahead_is_not_applied_again_once_an_hour_passed(
    store_spec: StoreSpec,
) -> None:
    """A post expires ``SENDER_TTL / 2`` after the time its name spells (the poster's clock);
    its sender's cursor entry was dropped ``SENDER_TTL`` after the fold that applied it (the
    folder's clock). A post left behind (its folder died before deleting it) was safe only
    while the poster's clock ran less than 30 min ahead of the folders': a poster 45 min
    ahead, applied at t, left behind, its sender silent, had its entry dropped by a fold at
    t + 60 min while its post expired only at t + 75 min: the next fold applied it again.
    The entry's time is now never before the time of the post it records."""
    store = init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    box = foreign_box("a")
    ahead_ms = int((time.time() + 45 * 60) * 1000)  # its clock runs 45 min ahead
    call = PostedCall("add", pickle.dumps((("late/0",), {})), uuid.uuid4().hex)
    late = Post(post_key("a", posting.post_name(ahead_ms, 7)), box.sender, 0, ahead_ms / 1000, (call,))
    _sync.sync(box.send(late))
    store.fail = lambda op, key: (
        RetryableStorageError("injected: the folder died before deleting it", key)
        if op in ("delete", "delete_many") and key == late.key
        else None
    )
    commit_behind_its_back("a")  # step 2
    assert log.add.run("me/1") == 2  # step 3 folds me/1 and late/0; the post is left behind
    assert log.applied.run() == ["me/0", "me/1", "late/0"]
    core = vc.get_runtime().core("a")
    three = core.record
    assert three is not None and three.step == 3
    # An hour later another process's fold (of nothing of this sender's) writes the cursor:
    later = dataclasses.replace(
        three,
        step=4,
        parent=3,
        writer="an-hour-later",
        extra=advance_cursor(three.extra, [], time.time() + post_cursor.SENDER_TTL + 1),
        posted=b"",
        carried=b"",
    )
    _sync.sync(core.log.put_step(later))
    assert pending_posts("a") != []  # still left behind, not expired by its name's time
    log.add.run("me/2")  # loses to step 4, posts, folds what is pending
    assert log.applied.run().count("late/0") == 1, log.applied.run()


# -- a stray step below the watermark, read by a walk back to a posted call's outcome -------------
@pytest.mark.usefixtures("runtime_off")
def test_call_outcome_never_takes_a_result_from_a_stray_step_below_the_watermark(
    store_spec: StoreSpec,
) -> None:
    """A caller gave up waiting (``CallPendingError``); another process's fold applied its call
    later, and compaction deleted that step. A stalled folder's late put then re-created the
    freed step number (a stray: its outcome is not the history's). ``call_outcome`` walked
    back from the newest step, read the stray like a step of the history and returned the
    stray's result. A step below the watermark is no step of the history: the result of the
    call is compacted, and ``call_outcome`` says so (``CommitOutcomeUnknownError``).
    (Compaction's ``min_age=0`` here, past a short ``fresh_window``; a real one waits far longer.)"""
    init_switchable(store_spec, combine_window=60.0)
    log = OrderLog.get_or_create("a")
    log.add.run("me/0")  # step 1
    retune(commit_timeout=0.5, deadline=0.5)  # (after the setup: a loaded host's may pass 0.5 s)
    _hold_lease_elsewhere("a")  # a stalled holder: we post and wait
    commit_behind_its_back("a")  # step 2
    with pytest.raises(CallPendingError) as raised:
        log.add.run("me/1")
    (call_id,) = raised.value.call_ids
    # Short from here on, not before: with 0.3 s from the start, a loaded host's setup outlasted
    # it, me/1 read the actor afresh before its put, found step 2 and committed: no race lost.
    retune(fresh_window=0.3)
    runtime = vc.get_runtime()
    log_ = ActorLog(runtime.store, "a", signing_key=runtime.settings.signing_key)
    box = PostBox(runtime.store, "a", runtime.settings.signing_key)
    (post,) = _sync.sync(box.read(_sync.sync(box.keys())))
    two = _sync.sync(log_.read_step(2))
    assert two is not None

    def fold(step: int, parent: dict[str, Any], result: str, writer: str) -> Any:
        return dataclasses.replace(
            two,
            step=step,
            parent=step - 1,
            writer=writer,
            extra=advance_cursor(parent, [post], time.time()),
            posted=encode_outcomes({call_id: Outcome(True, result)}),
            carried=b"",
        )

    three = fold(3, two.extra, "from the history", "folder")
    _sync.sync(log_.put_step(three))  # the holder's fold applies our call
    _sync.sync(runtime.store.delete(post.key))
    parent = three
    for step in (4, 5, 6):  # more of the holder's steps, applying nothing of ours
        parent = dataclasses.replace(parent, step=step, parent=step - 1, posted=b"", carried=b"")
        _sync.sync(log_.put_step(parent))
    time.sleep(0.35)  # past fresh_window: our cache may predate a compaction
    _sync.sync(compaction.compact(log_, keep_last=3, min_age=0, fresh_window=0.0))
    assert _sync.sync(log_.read_gc()) == 4
    assert _sync.sync(log_.read_step(3)) is None  # compacted
    stray = fold(3, two.extra, "from a stray", "stalled-folder")
    _sync.sync(
        runtime.store.put(
            log_.step_key(3), stray.encode(log_.step_key(3), runtime.settings.signing_key), mode="create"
        )
    )
    retune(deadline=vc.Settings.deadline)  # (0.5 s was me/1's; this walks back through 5 steps)
    with pytest.raises(CommitOutcomeUnknownError):
        vc.get_actor("a").call_outcome(call_id)


# -- a fold's outcomes, as a reader of the earlier encoding finds them ------------------------------
@vc.virtual_actor
class Echo:
    def __init__(self) -> None:
        self.calls = 0

    def echo(self, value: str) -> str:
        self.calls += 1
        return value


def _read_as_before(parts: dict[str, bytes]) -> dict[str, Outcome]:
    """What a process of a release before per-call outcomes reads: part ``posted``, one pickle."""
    rows = pickle.loads(parts["posted"]) if "posted" in parts else {}
    return {call_id: Outcome(bool(ok), value) for call_id, (ok, value) in rows.items()}


@pytest.mark.usefixtures("runtime_off")
def test_a_fold_also_writes_small_outcomes_in_the_encoding_earlier_releases_read(
    store_spec: StoreSpec,
) -> None:
    """During a rolling upgrade, a process of the earlier release posts to an actor and a
    process of this one folds its call: it reads part ``posted`` only, and with outcomes
    encoded per call (part ``outcomes``) it found none, so its caller got
    ``CommitOutcomeUnknownError`` for an applied call. A fold writes the one pickle too, as
    ``posted``, when it is small (4 KB at most: large results stay in one part only); this
    release reads ``outcomes`` when both are there."""
    init_switchable(store_spec, combine_window=60.0)
    echo = Echo.get_or_create("a")
    echo.echo.run("me/0")  # step 1
    runtime = vc.get_runtime()
    log_ = ActorLog(runtime.store, "a", signing_key=runtime.settings.signing_key)

    def fold_a_post_of(value: str, *, first: bool) -> tuple[str, dict[str, bytes]]:
        """Another process posts ``echo(value)``; we fold it: the first time our next call
        loses its race and folds; then we hold the lease, and our calls (or our pool thread,
        folding while they are quiet) fold it."""
        call_id = _post_call(foreign_box("a"), "echo", value)
        if first:
            commit_behind_its_back("a")
        deadline = time.monotonic() + 30
        while True:
            assert echo.echo.run("me") == "me"
            if not pending_posts("a") or time.monotonic() > deadline:
                break
        record = vc.get_runtime().core("a").record
        assert record is not None
        for step in range(record.step, 0, -1):  # (we hold the lease: we may have folded it alone)
            key = log_.step_key(step)
            data = _sync.sync(runtime.store.get(key)).data
            parts = codec.decode(key, data, signing_key=runtime.settings.signing_key).parts
            if "outcomes" in parts and call_id in decode_outcomes(parts["outcomes"]):
                return call_id, parts
        raise AssertionError(f"no step applied {value!r}")

    small, parts = fold_a_post_of("old/0", first=True)
    assert {"outcomes", "posted"} <= set(parts)
    assert _read_as_before(parts)[small] == Outcome(True, "old/0")
    assert decode_outcomes(parts["outcomes"])[small] == Outcome(True, "old/0")
    three = _sync.sync(log_.read_step(3))
    assert three is not None and three.posted == parts["outcomes"]  # this release reads ``outcomes``
    large, parts = fold_a_post_of("x" * 5000, first=False)  # too large for the earlier encoding's copy
    assert "posted" not in parts
    assert decode_outcomes(parts["outcomes"])[large] == Outcome(True, "x" * 5000)
