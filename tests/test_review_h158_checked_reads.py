"""Review h158: a mutation sweep of ``checked_read.py`` (reads of an object whose check fails
as a body cut short would, read again up to ``READS`` GETs in all).

The h142/h143/h145 tests reach it through the stores (a step, a lease, a checkpoint cut short
once), on the async ``read_checked`` path, with ``DamagedObjectError`` only. These hold it
directly, with a scripted store, on both paths. Table (mutation: survived the h142, h143, h145
cut-short tests and ``test_integrity``?, killed by):

* C1 ``read_checked`` giving up after 4 GETs: killed, h142 damaged-at-rest
* C2 ``read_checked_now`` giving up after 4 GETs: survived; ``..._read_three_times_in_all``
* C3 ``TruncatedObjectError`` not read again: survived; ``..._truncated_once_on_the_way_...``
* C4 an always-torn object's error a ``DamagedObjectError``: survived; ``..._keeps_its_kind``
* C5 the error built from the first failure: survived; ``..._names_the_last_and_says_the_first``
* C6 "the same each time" said of failures that differed: survived; the same test
* C7 ``read_checked`` retrying any ``IntegrityError``: killed, ``test_integrity`` newer format
* C8 ``read_checked_now`` retrying any ``IntegrityError``: survived;
  ``..._other_integrity_errors_are_raised_after_one_read``
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest

from vactor_cloud.checked_read import READS, read_checked, read_checked_now
from vactor_cloud.errors import DamagedObjectError, FormatVersionError, TruncatedObjectError
from vactor_cloud.storage import Blob, ObjectStore

KEY = "actors/a/steps/0"


class ScriptedStore:
    """Answers GETs of any key from ``answers`` in order (an exception is raised); counts them."""

    inline = True

    def __init__(self, answers: Sequence[Blob | Exception]) -> None:
        self.answers = list(answers)
        self.gets = 0

    def get_now(self, key: str) -> Blob:
        self.gets += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def get(self, key: str) -> Blob:
        return self.get_now(key)


def _damaged(reason: str = "digest mismatch") -> DamagedObjectError:
    return DamagedObjectError(KEY, reason)


def _torn() -> TruncatedObjectError:
    return TruncatedObjectError(f"{KEY}: 3 bytes, shorter than its write token", KEY)


GOOD = Blob(b"payload", "v1")


def _read(now: bool, store: ScriptedStore, check: Callable[[Blob], Any] = lambda blob: blob.data) -> Any:
    objects = cast(ObjectStore, store)
    if now:
        return read_checked_now(objects, KEY, check)
    import asyncio

    return asyncio.run(read_checked(objects, KEY, check))


READERS = pytest.mark.parametrize("now", [False, True], ids=["read_checked", "read_checked_now"])


@READERS
def test_an_object_that_never_verifies_is_read_three_times_in_all(now: bool) -> None:
    """Mutation: ``read_checked_now`` stopped after ``len(failures) > READS`` (4 GETs, and a
    fourth answer the store never had)."""
    store = ScriptedStore([_damaged()] * (READS + 1))
    with pytest.raises(DamagedObjectError, match=f"read {READS} times"):
        _read(now, store)
    assert store.gets == READS


@READERS
def test_an_object_cut_short_on_its_last_allowed_read_but_one_is_still_read(now: bool) -> None:
    store = ScriptedStore([_damaged()] * (READS - 1) + [GOOD])
    assert _read(now, store) == b"payload"
    assert store.gets == READS


@READERS
def test_an_object_truncated_once_on_the_way_is_read_again(now: bool) -> None:
    """Mutation: only ``DamagedObjectError`` retried: the start of a body cut short (shorter
    than the write token, the store's ``TruncatedObjectError``) failed the read at once."""
    store = ScriptedStore([_torn(), GOOD])
    assert _read(now, store) == b"payload"
    assert store.gets == 2


@READERS
def test_an_object_torn_every_time_keeps_its_kind(now: bool) -> None:
    """Mutation: the error of a read failing every time always a ``DamagedObjectError``: a
    caller catching ``StorageError`` (what a torn object is, too) no longer did."""
    store = ScriptedStore([_torn()] * READS)
    with pytest.raises(TruncatedObjectError, match=f"read {READS} times, failing the same each time") as err:
        _read(now, store)
    assert err.value.key == KEY


@READERS
def test_failures_that_differ_names_the_last_and_says_the_first(now: bool) -> None:
    """Mutations: the error raised built from the first failure (its reason, its kind); or
    "the same each time" said of failures that differed."""
    store = ScriptedStore([_damaged("first cut"), _damaged("second cut"), _damaged("third cut")])
    with pytest.raises(DamagedObjectError) as err:
        _read(now, store)
    assert err.value.reason.startswith("third cut")
    assert "each time (first: first cut)" in err.value.reason
    assert "the same each time" not in err.value.reason


@READERS
def test_other_integrity_errors_are_raised_after_one_read(now: bool) -> None:
    """Mutation: every ``IntegrityError`` read again: an object of a newer format (which no
    read makes readable) read three times, and its error said "the object is so as stored"
    as if it were damaged."""

    def newer(blob: Blob) -> bytes:
        raise FormatVersionError(KEY, "format 9, newer than this vactor_cloud")

    store = ScriptedStore([GOOD] * READS)
    with pytest.raises(FormatVersionError) as err:
        _read(now, store, newer)
    assert store.gets == 1
    assert "read" not in err.value.reason
