"""Review h135: each read of a ``run_async`` result gets its own copy (``ActorFuture._by_value``).

A copy is made from a pickle kept at the first read. What cannot be copied must still be read
as often as the program reads it: a result that pickles but cannot be read back (a read-only
method's result is handed over as it is, never round-tripped), or one that does not pickle at
all, is handed out as it is again; and an exception that ``catch_exceptions=True`` hands back as
a value is the same exception at every read, as a raised one is (its traceback and cause kept).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import pytest
from test_outcomes_by_value import (  # the fixture: autouse, here too
    TwoArgError,
    _exceptions_pickle_as_python_does,  # noqa: F401
)

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


class Unloadable:
    """Pickles, but its unpickling fails."""

    def __init__(self) -> None:
        self.items = [1, 2]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise ValueError("this object cannot be rebuilt")


#: what the read-only methods hand out, by actor id (a read-only result is not copied)
HANDED: dict[str, Any] = {}


@vc.virtual_actor
class Copies:
    def __init__(self) -> None:
        self.n = 0

    def fail_two_arg(self) -> None:
        self.n += 1
        try:
            raise KeyError("the cause")
        except KeyError as cause:
            raise TwoArgError(7, "declined") from cause

    def listed(self) -> list[int]:
        self.n += 1
        return [self.n]

    @vc.virtual_actor.readonly
    def unloadable(self) -> Any:
        return Unloadable()

    @vc.virtual_actor.readonly
    def lock(self) -> Any:
        return threading.Lock()


def test_a_read_only_result_that_cannot_be_read_back_is_read_twice(actor_store: StoreSpec) -> None:
    # Handed over as it is (never round-tripped): the first read pickled it, the second read
    # unpickled it and raised TypeError, where before it was handed the object again.
    a = Copies.get_or_create("unloadable-read-twice")
    future = a.unloadable.run_async()
    first = vc.get(future)
    assert isinstance(first, Unloadable)
    second = vc.get(future)
    assert isinstance(second, Unloadable)
    assert future.result().items == [1, 2]


def test_a_read_only_result_that_does_not_pickle_is_read_twice(actor_store: StoreSpec) -> None:
    a = Copies.get_or_create("lock-read-twice")
    future = a.lock.run_async()
    first, second = vc.get([future, future])
    assert first is second  # nothing to copy it by: the object itself, as before
    assert future.result() is first


def test_a_caught_exception_is_the_same_exception_at_every_read(actor_store: StoreSpec) -> None:
    # catch_exceptions=True hands the exception back as a value. The second read unpickled the
    # first read's pickle of it: TypeError for an exception that cannot be rebuilt, and for any
    # other, an exception without the traceback and the cause the first read had.
    a = Copies.get_or_create("caught-read-twice")
    future = a.fail_two_arg.options(catch_exceptions=True).run_async()
    value, error = vc.get(future)
    assert value is None and isinstance(error, TwoArgError)
    again, error_again = future.result()
    assert again is None
    assert error_again is error, "a second read of a caught exception is not the exception the call raised"
    assert isinstance(error_again.__cause__, KeyError)
    assert error_again.__traceback__ is not None


def test_a_caught_result_is_still_copied_at_each_read(actor_store: StoreSpec) -> None:
    a = Copies.get_or_create("caught-ok-read-twice")
    future = a.listed.options(catch_exceptions=True).run_async()
    value, error = vc.get(future)
    assert error is None
    value.append("the first reader's own")
    assert future.result() == ([1], None)


def test_threads_reading_one_future_at_once_each_get_their_own_copy(actor_store: StoreSpec) -> None:
    a = Copies.get_or_create("threads-read-one")
    future = a.listed.run_async()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: future.result(30), range(8)))
    assert all(g == [1] for g in got)
    assert len({id(g) for g in got}) == len(got), "two readers were handed one list"
    done, _ = concurrent.futures.wait([future], 5)
    assert done == {future}
    assert [f.result() for f in concurrent.futures.as_completed([future], 5)] == [[1]]


def test_a_writers_result_is_not_pickled_again_at_its_first_read(
    actor_store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The method's result was pickled as it returned (and read back for the caller): the future
    # keeps that pickle for later reads. Pickled again at the first read, a large result cost
    # twice on every run_async.
    from vactor_cloud import future as future_module

    pickled: list[object] = []
    freeze = future_module.freeze

    def counted(value: Any, *args: Any, **kwargs: Any) -> Any:
        pickled.append(value)
        return freeze(value, *args, **kwargs)

    monkeypatch.setattr(future_module, "freeze", counted)
    a = Copies.get_or_create("not-pickled-again")
    future = a.listed.run_async()
    first = vc.get(future)
    assert pickled == [], "the first read pickled the result again"
    first.append("the first reader's own")
    assert future.result() == [1]
    assert future.result() is not future.result()


def test_a_keyed_retry_answered_from_the_table_reads_its_own_result(actor_store: StoreSpec) -> None:
    # The retry's future is settled with the recorded outcome, not a run's: its later reads are
    # copies of that outcome.
    a = Copies.get_or_create("keyed-table")
    assert a.listed.options(idempotency_key="k").run() == [1]
    future = a.listed.options(idempotency_key="k").run_async()
    first = vc.get(future)
    first.append("mine")
    assert future.result() == [1]
