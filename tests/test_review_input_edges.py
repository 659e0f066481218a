"""A hostile review of inputs at the edges: ids, method defaults and sizes. Each case pins a
guarantee an outside reviewer tried to break.

* Actor ids are compared as they are spelt (code points): the NFC and NFD forms of one text
  are two actors on every lane, each listed by ``vactor ls`` as written; one starting with
  ``-`` is named after ``--`` on the command line (and the usage error says so); on a file
  system that does not tell two ids apart, the refusal says that; an actor named ``mail``
  is synced like any other on the local store.
* A method's (and ``__init__``'s) mutable default (``def add(self, x, seen=[])``) is a fresh
  copy for every call: a default one call mutated leaked into the next call, and into other
  actors' calls and states, so a call's result depended on which process ran it (a posted
  call is folded by another).
* An envelope around a large state is built with one copy of it, and read back with one;
  the local store reads a large object with one copy of it (docs/concepts.md, "Large states");
  a keyed call's large recorded result is warned about; ``vactor history`` of a compacted
  actor says the older steps were compacted; ``vactor ls`` escapes invisible characters.
* The local store sweeps stale temp files inside chain directories starting with ``.``.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
import unicodedata
from typing import Any

import pytest
from cli_harness import Vactor

import vactor_cloud as vc
from vactor_cloud import codec, workflow
from vactor_cloud.cli import EXIT_OK, EXIT_USAGE
from vactor_cloud.testing.lanes import StoreSpec

#: a sentinel default, compared by identity: never copied
_MISSING: Any = object()


@vc.virtual_actor
class Defaults:
    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.calls = 0

    def add(self, x: int, seen: list[int] = []) -> list[int]:  # noqa: B006 - the point of the test
        seen.append(x)
        self.calls += 1
        return seen

    def keyword(self, x: int, *, table: dict[str, int] = {}) -> dict[str, int]:  # noqa: B006
        table[str(x)] = x
        return table

    def positional(self, x: int, marks: set[int] = set(), /) -> list[int]:  # noqa: B006
        marks.add(x)
        return sorted(marks)

    def fail_after(self, x: int, seen: list[int] = []) -> None:  # noqa: B006
        seen.append(x)
        raise ValueError("after mutating its default")

    def sentinel(self, value: Any = _MISSING) -> bool:
        return value is _MISSING

    @vc.virtual_actor.readonly
    def peek(self, x: int, seen: list[int] = []) -> list[int]:  # noqa: B006
        seen.append(x)
        return seen


@workflow.virtual_actor
class Chain:
    def __init__(self) -> None:
        self.out: list[int] = []

    def go(self, x: int) -> Any:
        return self.keep.step(x)

    def keep(self, x: int, seen: list[int] = []) -> list[int]:  # noqa: B006
        seen.append(x)
        self.out = list(seen)
        return seen

    def pair(self, first: int, more: list[int] = [], /) -> list[int]:  # noqa: B006
        more.append(first)
        return more


@vc.virtual_actor
class Journal:
    def __init__(self, lines: list[str] = [], *, tags: dict[str, int] = {}) -> None:  # noqa: B006
        lines.append("created")
        tags["n"] = tags.get("n", 0) + 1
        self.lines = lines
        self.tags = tags

    @vc.virtual_actor.readonly
    def get(self) -> tuple[list[str], dict[str, int]]:
        return self.lines, self.tags


@vc.virtual_actor
class Box:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    @vc.virtual_actor.readonly
    def get(self) -> str:
        return self.tag


# -- actor ids: one spelling, one actor ------------------------------------------------------------

NFC = unicodedata.normalize("NFC", "caf\u00e9")
NFD = unicodedata.normalize("NFD", "caf\u00e9")
#: ids an outside reviewer tries: each its own actor on every lane, listed as written
ODD_IDS = [NFC, NFD, " lead", "trail ", "%41", "A", "%2F", "#frag", "q?x=1", "*", "a+", "ab+", "ab.c", "x.."]
ODD_IDS += ["-x", "a\u00a0b", "\ufeffbom", "\uffff", "\U0010ffff", "\u2028", "\x85"]


def test_nfc_and_nfd_spellings_and_url_like_ids_are_distinct_actors_listed_as_written(
    actor_store: StoreSpec,
) -> None:
    """Ids are not normalized (Unicode, case, percent-escapes): two spellings are two actors,
    whatever the backend, and each comes back from the listing as written."""
    assert NFC != NFD
    for index, actor_id in enumerate(ODD_IDS):
        Box.get_or_create(actor_id, f"t{index}")
    for index, actor_id in enumerate(ODD_IDS):
        assert vc.get_actor(actor_id).get.run() == f"t{index}", actor_id
    listed = [info.actor_id for info in vc.list_actors()]
    assert sorted(listed) == sorted(ODD_IDS)


@vc.virtual_actor
class Inbox:
    def __init__(self) -> None:
        self.total = 0

    @vc.virtual_actor.on_event("paid")
    def on_paid(self, amount: int) -> int:
        self.total += amount
        return self.total

    def later(self) -> None:
        pass

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.total


#: 255 bytes of UTF-8 (4-byte characters): the longest actor id, event id; a timer key at 200
LONGEST_ID = "\U0001f600" * 63 + "xyz"
LONGEST_EVENT_ID = "\u00e9" * 127 + "e"
LONGEST_TIMER_KEY = "\U0001f600" * 50


def test_ids_at_their_byte_limits_work_and_are_listed_on_every_lane(actor_store: StoreSpec) -> None:
    """The longest key vactor_cloud writes (``actors/<id>/inbox/<event_id>``, both at 255 bytes
    of 4-byte and 2-byte characters) and a timer key at its 200-byte limit: stored, applied,
    listed and cancelled alike on every lane; one byte more is refused up front naming the limit."""
    from vactor_cloud.errors import InvalidActorIdError
    from vactor_cloud.events import process_events, send_event

    assert len(LONGEST_ID.encode()) == len(LONGEST_EVENT_ID.encode()) == 255
    assert len(LONGEST_TIMER_KEY.encode()) == 200
    handle = Inbox.get_or_create(LONGEST_ID)
    send_event(LONGEST_ID, "paid", 5, event_id=LONGEST_EVENT_ID)
    send_event(LONGEST_ID, "paid", 5, event_id=LONGEST_EVENT_ID)  # (the same event: applied once)
    assert process_events(LONGEST_ID) == 1
    assert handle.get.run() == 5
    handle.later.options(delay=3600, timer_key=LONGEST_TIMER_KEY).run()
    assert [timer["key"] for timer in handle.timers()] == [LONGEST_TIMER_KEY]
    assert handle.cancel_timer(LONGEST_TIMER_KEY) is True
    assert handle.timers() == []
    assert [info.actor_id for info in vc.list_actors()] == [LONGEST_ID]
    with pytest.raises(InvalidActorIdError, match="255"):
        Inbox.get_or_create(LONGEST_ID + "a")
    with pytest.raises(ValueError, match="255"):
        send_event(LONGEST_ID, "paid", 1, event_id=LONGEST_EVENT_ID + "a")
    with pytest.raises(ValueError, match="200"):
        handle.later.options(delay=3600, timer_key=LONGEST_TIMER_KEY + "a").run()


def test_vactor_ls_json_gives_back_nfc_and_nfd_ids_as_written(vactor: Vactor, store: str) -> None:
    vc.init(store)
    Box.get_or_create(NFC, "composed")
    Box.get_or_create(NFD, "decomposed")
    vc.shutdown()
    result = vactor("ls", "--json")
    assert result.code == EXIT_OK, result
    listed = {entry["actor_id"] for entry in json.loads(result.out)}
    assert listed == {NFC, NFD}
    for actor_id, tag in ((NFC, "composed"), (NFD, "decomposed")):
        shown = vactor("show", "--json", actor_id)
        assert shown.code == EXIT_OK, shown
        assert tag in shown.out, shown.out


@pytest.mark.parametrize(
    "argv",
    [("history", "-x"), ("show", "-x"), ("call", "-x", "get"), ("--json", "show", "-x")],
    ids=["history", "show", "call", "option-first"],
)
def test_an_id_starting_with_a_dash_is_refused_with_how_to_name_it(
    vactor: Vactor, store: str, argv: tuple[str, ...]
) -> None:
    """``vactor ls`` lists an actor ``-x``; ``vactor history -x`` said only "the following
    arguments are required: ID" (argparse took the id for an option). The error says how:
    after ``--``, as ``vactor history -- -x``."""
    vc.init(store)
    Box.get_or_create("-x", "dashed")
    vc.shutdown()
    assert "-x" in vactor("ls").out
    refused = vactor(*argv)
    assert refused.code == EXIT_USAGE, refused
    assert "'--'" in refused.err and "-- -x" in refused.err, refused.err
    assert len(refused.err.splitlines()) == 1, refused.err
    command = [word for word in argv if word != "--json"]
    shown = vactor(*command[:1], "--", *command[1:])
    assert shown.code == EXIT_OK, shown
    assert "dashed" in shown.out, shown.out


def test_a_usage_error_without_a_dashed_word_gets_no_dash_hint(vactor: Vactor, store: str) -> None:
    for argv in (("history",), ("call", "a"), ("ls", "--limit", "-1"), ("--storage=/nowhere", "show")):
        refused = vactor(*argv)
        assert refused.code == EXIT_USAGE, refused
        assert "'--'" not in refused.err, refused.err


# -- mutable defaults: a fresh copy per call --------------------------------------------------------


def test_a_mutable_default_does_not_leak_across_calls_or_actors(actor_store: StoreSpec) -> None:
    """A default list one call appended to was the next call's default, on this actor and on
    every other actor of the class in this process (not in another process: a posted call
    folded elsewhere saw another list). Each call now gets a copy of the default as defined."""
    first, second = Defaults.get_or_create("d1"), Defaults.get_or_create("d2")
    assert first.add.run(1) == [1]
    assert first.add.run(2) == [2]
    assert second.add.run(3) == [3]
    assert first.keyword.run(4) == {"4": 4}
    assert second.keyword.run(5) == {"5": 5}
    assert first.positional.run(6) == [6]
    assert first.positional.run(7) == [7]
    assert first.peek.run(8) == [8]
    assert first.peek.run(9) == [9]
    with pytest.raises(ValueError, match="after mutating"):
        first.fail_after.run(10)
    assert first.fail_after.run_async(11).exception(30) is not None
    assert first.add.run(12) == [12]


def test_a_mutable_default_of_init_does_not_leak_into_other_actors_states(actor_store: StoreSpec) -> None:
    """``__init__`` mutating its default list: each actor created in this process stored the
    lines of every creation before it (["created", "created"] for the second), a leak into
    durable state. Each creation gets the default as defined."""
    assert Journal.get_or_create("j1").get.run() == (["created"], {"n": 1})
    assert Journal.get_or_create("j2").get.run() == (["created"], {"n": 1})
    assert Journal.get_or_create("j3", ["given"]).get.run() == (["given", "created"], {"n": 1})


def test_a_method_run_as_a_workflow_step_gets_a_fresh_default_too(actor_store: StoreSpec) -> None:
    chain = Chain.get_or_create("w")
    assert chain.go.run(1) == [1]
    assert chain.go.run(2) == [2]
    assert Chain.get_or_create("w2").go.run(3) == [3]


def test_a_call_omitting_a_required_positional_only_argument_still_fails_to_bind(
    actor_store: StoreSpec,
) -> None:
    chain = Chain.get_or_create("p")
    assert chain.pair.run(1) == [1]
    assert chain.pair.run(2) == [2]
    with pytest.raises(TypeError, match="pair"):
        chain.pair.run()


def test_an_argument_given_is_passed_as_given_and_a_sentinel_default_keeps_its_identity(
    actor_store: StoreSpec,
) -> None:
    handle = Defaults.get_or_create("d")
    assert handle.add.run(1, [0]) == [0, 1]
    assert handle.add.run(2, seen=[5]) == [5, 2]
    assert handle.keyword.run(3, table={"a": 1}) == {"a": 1, "3": 3}
    assert handle.positional.run(4, {9}) == [4, 9]
    assert handle.sentinel.run() is True
    assert handle.sentinel.run(None) is False


def test_the_class_itself_keeps_python_semantics_outside_actors() -> None:
    """The decorator leaves the class untouched: called directly, a default is Python's own."""
    plain = Defaults.cls()
    assert plain.add(1) == [1]
    assert plain.add(2) == [1, 2]
    Defaults.cls.add.__defaults__[0].clear()  # type: ignore[attr-defined]


# -- sizes: one copy of a large state per envelope -------------------------------------------------

_MB = 2**20


def _peak_allocated(run: Any) -> tuple[Any, int]:
    """``run()``'s result and the most bytes it held allocated at once beyond what it returned
    and what was allocated before (``tracemalloc``: a count, not a timing)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - before


@pytest.mark.parametrize("signing_key", [None, b"k" * 32], ids=["checksum", "signed"])
def test_an_envelope_of_a_large_part_is_built_and_read_with_one_copy_of_it(signing_key: bytes | None) -> None:
    """Encoding a 16 MB state joined its parts (one copy), then appended the digest to that
    (a second); decoding sliced the digest off (a copy) and then the part out of that (a
    second). A commit of a large state held two transient copies more than it needs to, and
    so did every cold read of it. Now: the envelope is the only copy made, and so is the part."""
    key = "actors/big/steps/00000000000000000001"
    part = bytes(16 * _MB)
    data, encode_peak = _peak_allocated(
        lambda: codec.encode(key, {"kind": "step"}, {"state": part}, signing_key=signing_key)
    )
    assert len(data) > len(part)
    assert encode_peak < 1.25 * len(part), f"encode held {encode_peak / _MB:.1f} MB for a 16 MB part"
    envelope, decode_peak = _peak_allocated(lambda: codec.decode(key, data, signing_key=signing_key))
    assert envelope.parts["state"] == part and envelope.meta["kind"] == "step"
    assert type(envelope.parts["state"]) is bytes
    assert decode_peak < 1.25 * len(part), f"decode held {decode_peak / _MB:.1f} MB for a 16 MB part"


def test_the_local_store_reads_a_large_object_with_one_copy_of_it(tmp_path: Any) -> None:
    """A read took the file whole (its 16-byte version token and the object), then sliced the
    token off: a second copy of the object, held with the first."""
    from vactor_cloud import _sync
    from vactor_cloud.storage import open_store

    store = open_store(str(tmp_path / "store"))
    part = bytes(16 * _MB)
    _sync.sync(store.put("actors/big/steps/00000000000000000001", part))
    blob, peak = _peak_allocated(lambda: _sync.sync(store.get("actors/big/steps/00000000000000000001")))
    assert blob.data == part
    assert peak < 1.25 * len(part), f"the read held {peak / _MB:.1f} MB for a 16 MB object"


@pytest.mark.parametrize(
    "key",
    ["actors/mail/gc", "actors/mail/steps/00000000000000000001", "timers/00000001700000000000-3/mail/tick"],
    ids=["gc", "step", "timer-index"],
)
def test_an_actor_named_mail_has_its_objects_synced_like_any_other(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """The local store writes an actor's mailbox (``actors/<id>/mail/<post>``) without fsync: a
    post lives for milliseconds. It took any key whose second-to-last component is ``mail``
    for a post, so an actor named ``mail`` had its retention watermark (``actors/mail/gc``)
    and its timers' due-index entries written unsynced too: lost or torn by a power cut."""
    from vactor_cloud import _sync
    from vactor_cloud.storage import _local, open_store

    synced: list[int] = []
    real_fsync = _local.os.fsync
    monkeypatch.setattr(_local.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    store = open_store(str(tmp_path / "store"))
    _sync.sync(store.put("actors/other/gc", b"warm the layout marker"))
    synced.clear()
    _sync.sync(store.put(key.replace("mail", "elsewhere"), b"x"))
    expected = len(synced)
    synced.clear()
    _sync.sync(store.put(key, b"x"))
    assert expected >= 1 and len(synced) == expected, (key, expected, synced)
    synced.clear()
    _sync.sync(store.put("actors/mail/mail/0123456789ab", b"a post"))
    assert synced == []  # (a post of the actor named mail: unsynced, as every post)
    assert _sync.sync(store.get(key)).data == b"x"


@pytest.mark.parametrize("other", ["a", NFD], ids=["case", "normalization"])
def test_an_object_of_an_id_differing_only_in_case_or_form_names_the_file_system(other: str) -> None:
    """On a case-insensitive or normalizing file system (macOS's APFS) the local store cannot
    hold "A" beside "a", nor NFC beside NFD: the second id's reads find the first's objects,
    refused as "copied from another actor's keys", which sent the operator looking for a copy.
    The refusal says what is likelier: the file system does not tell the two ids apart."""
    from vactor_cloud.errors import IntegrityError

    first = "A" if other == "a" else NFC
    data = codec.encode(f"actors/{first}/steps/00000000000000000000", {"kind": "step"})
    with pytest.raises(IntegrityError, match="file system") as info:
        codec.decode(f"actors/{other}/steps/00000000000000000000", data)
    assert repr(first) in str(info.value) and repr(other) in str(info.value)
    with pytest.raises(IntegrityError, match="copied from another actor") as copied:
        codec.decode("actors/b/steps/00000000000000000000", data)
    assert "file system" not in str(copied.value)


@vc.virtual_actor
class Tick:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


def test_vactor_history_of_a_compacted_actor_says_older_steps_were_compacted(
    vactor: Vactor, store: str
) -> None:
    """After many calls and a compaction, ``vactor history`` ended at the oldest step left (8 of
    10) with nothing said: it read as an actor created at step 8. A line on stderr says the
    older steps were compacted; stdout (one line per call) is unchanged."""
    vc.init(store, settings=vc.Settings(fresh_window=0.0))
    tick = Tick.get_or_create("t")
    for _ in range(10):
        tick.incr.run()
    assert tick.compact(keep_last=3, min_age=0).watermark == 8
    vc.shutdown()
    shown = vactor("history", "t")
    assert shown.code == EXIT_OK, shown
    assert [line.split()[0] for line in shown.out.splitlines()[1:]] == ["10", "9", "8"]
    assert "compacted" in shown.err and "8" in shown.err, shown.err
    limited = vactor("history", "t", "--limit", "2")
    assert "compacted" not in limited.err, limited.err  # (older steps shown by --limit all)


def test_vactor_history_of_an_uncompacted_actor_says_nothing_of_compaction(
    vactor: Vactor, store: str
) -> None:
    vc.init(store)
    Tick.get_or_create("t").incr.run()
    vc.shutdown()
    shown = vactor("history", "t")
    assert shown.code == EXIT_OK and shown.err == "", shown


@vc.virtual_actor
class Heavy:
    def __init__(self, size: int) -> None:
        self.blob = bytes(size)
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


@pytest.mark.parametrize("store_lane", ["memory", "local"], indirect=True)
def test_a_commit_beside_a_large_state_holds_two_copies_of_it_at_most(actor_store: StoreSpec) -> None:
    """A call that changes a counter beside 16 MB of state pickles the state (one copy) and wraps
    it in its step (a second); the envelope copied it a third time (the digest appended). (The
    S3 store adds one of its own: its object is a version token followed by the step.)"""
    heavy = Heavy.get_or_create("heavy", 16 * _MB)
    heavy.bump.run()  # (warm: the actor cached, its first commit's own costs paid)
    result, peak = _peak_allocated(heavy.bump.run)
    assert result == 2
    assert peak < 2.5 * 16 * _MB, f"a commit held {peak / _MB:.1f} MB beside a 16 MB state"


@vc.virtual_actor
class Exporter:
    def __init__(self) -> None:
        self.n = 0

    def export(self, size: int) -> bytes:
        self.n += 1
        return bytes(size)


def test_large_results_recorded_for_idempotency_keys_are_written_once_not_in_every_checkpoint(
    actor_store: StoreSpec,
) -> None:
    """A keyed call's result is recorded in the idempotency table, and the table is written again
    whole at each checkpoint (about one per 2 KB of keys) while the key is in the window: a 5 MB
    result followed by 119 small keyed calls wrote 42 MB of checkpoints (a warning said so, once
    per method in a process). A result over ``dedup.OUTCOME_OBJECT_BYTES`` is written once, as
    an object the checkpoints name: two 2 MB results and a run of small keyed calls write
    about 4 MB in all."""
    from vactor_cloud import _sync, dedup

    exporter = Exporter.get_or_create("exp")
    runtime = vc.get_runtime()
    assert len(exporter.export.options(idempotency_key="k1").run(2 * _MB)) == 2 * _MB
    assert len(exporter.export.options(idempotency_key="k2").run(2 * _MB + 1)) == 2 * _MB + 1
    for i in range(40):
        assert len(exporter.export.options(idempotency_key=f"s{i}").run(600)) == 600
    log = runtime.log("exp")
    checkpoints = _sync.sync(log.list_dedup_checkpoints())
    assert len(checkpoints) >= 5
    sizes = [len(_sync.sync(log.store.get(log.dedup_key(name))).data) for name in checkpoints]
    assert max(sizes) < dedup.OUTCOME_OBJECT_BYTES, sizes
    assert len(_sync.sync(log.list_dedup_outcomes())) == 2
    assert len(exporter.export.options(idempotency_key="k1").run(1)) == 2 * _MB
    assert exporter.export.options(idempotency_key="k1").run(1) == bytes(2 * _MB)


#: ids that print like other ids: a zero-width space, a no-break space, a line separator, an
#: invisible tag character, a soft hyphen
LOOKALIKE_IDS = {"e\u200bf": "e\\u200bf", "g\u00a0h": "g\\xa0h", "a\u2028b": "a\\u2028b"}
LOOKALIKE_IDS |= {"t\U000e0041g": "t\\U000e0041g", "s\u00adh": "s\\xadh"}


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "piped"])
def test_vactor_ls_escapes_invisible_characters_so_lookalike_ids_differ(
    vactor: Vactor, store: str, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    """Ids with a zero-width space, a no-break space, a line separator (which splits a row for
    ``str.splitlines``), an invisible tag character or a soft hyphen printed as they are: an
    actor ``e\\u200bf`` showed as ``ef``, beside the actor ``ef``. Every character ``repr`` would
    escape (not ``str.isprintable``) is shown as ``repr`` shows it; ``--json`` keeps the ids."""
    vc.init(store)
    for actor_id in [*LOOKALIKE_IDS, "ef", "gh"]:
        Box.get_or_create(actor_id, "x")
    vc.shutdown()
    if terminal:
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.setenv("NO_COLOR", "1")
    shown = vactor("ls")
    assert shown.code == EXIT_OK, shown
    for actor_id, escaped in LOOKALIKE_IDS.items():
        assert actor_id not in shown.out and escaped in shown.out, (actor_id, shown.out)
    assert "\u2028" not in shown.out and "\u200b" not in shown.out, shown.out
    listed = vactor("ls", "--json")
    assert {entry["actor_id"] for entry in json.loads(listed.out)} == {*LOOKALIKE_IDS, "ef", "gh"}


def test_stale_temp_files_are_swept_inside_a_chain_directory_starting_with_a_dot(tmp_path: Any) -> None:
    """The event id ``ab.cd`` is stored as ``ab+/.c+/d``: a writer killed while writing it leaves
    its temp file in ``.c+``, a directory the sweep of an actor's stale temp files skipped (it
    skipped every directory starting with ``.``, taking them for the store's own), so that
    file stayed for ever."""
    import os
    import time

    from vactor_cloud import _sync
    from vactor_cloud.storage import open_store

    store = open_store(str(tmp_path / "store"))
    key = "actors/a/inbox/ab.cd"
    _sync.sync(store.put(key, b"event"))
    directory = os.path.dirname(store._fspath(key))  # type: ignore[attr-defined]
    assert os.path.basename(directory) == ".c+"
    stale = os.path.join(directory, ".tmp-killedwriter0")
    with open(stale, "wb") as f:
        f.write(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert _sync.sync(store.remove_stale_temp_files("actors/a/", older_than=3600)) == 1
    assert not os.path.exists(stale)
    assert _sync.sync(store.get(key)).data == b"event"
