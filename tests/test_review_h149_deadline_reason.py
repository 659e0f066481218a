"""Review h149: what an operation that ran out of ``Settings.deadline`` says met it, and whose.

h145 made the deadline's error name what the store's requests met meanwhile: the store kept the
last transient failure of any request, so an operation that only waited (a stalled request)
was told "requests to it failed meanwhile (the last: ...)" with another operation's failure,
as if its own requests had failed. The store now tells an operation's own failures from the
others': the error says "its requests failed" only of its own, and words another's as such.
The warning logged with the error said only that the deadline passed: it now carries the
same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import pytest

import vactor_cloud as vc
from vactor_cloud.errors import RetryableStorageError
from vactor_cloud.storage import ObjectStore
from vactor_cloud.testing.faults import FaultConfig, FaultRule, install
from vactor_cloud.testing.lanes import StoreSpec

#: the deadline under test: short for the suite, long enough for a first request when loaded
DEADLINE = 1.5
#: the longest any operation here may take before it is called a hang
HANG = 60.0
FAILING = FaultRule("rate_limited", operations=frozenset({"get"}), key_contains="failing", probability=1.0)
STALLED = FaultRule(
    "delay", operations=frozenset({"get"}), key_contains="stalled", probability=1.0, delay=1000
)


async def _retrying(store: ObjectStore, key: str) -> None:
    """Reads ``key`` again and again, each failure tried again (as posters and folds do)."""
    while True:
        with contextlib.suppress(RetryableStorageError):
            await store.get(key)
        await asyncio.sleep(0.05)


def _deadline_errors(store_spec: StoreSpec) -> tuple[str, str]:
    """The deadline errors of two operations run at once on one store: one whose requests kept
    failing, one whose single request stalled; their messages."""
    store_spec.init(settings=vc.Settings(storage="", deadline=DEADLINE, timeout=10.0))
    store = install(FaultConfig(seed=1, rules=(FAILING, STALLED)))
    runtime = vc.get_runtime()
    errors: dict[str, BaseException] = {}

    def run(name: str, coro: object) -> None:
        try:
            runtime.run(coro)  # type: ignore[arg-type]
        except BaseException as exc:
            errors[name] = exc

    threads = [
        threading.Thread(target=run, args=("failing", _retrying(store, "failing")), daemon=True),
        threading.Thread(target=run, args=("stalled", store.get("stalled")), daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
        assert not thread.is_alive(), "an operation hangs"
    for name in ("failing", "stalled"):
        assert isinstance(errors.get(name), vc.StorageTimeoutError), errors
        assert "Settings.deadline" in str(errors[name]), str(errors[name])
    return str(errors["failing"]), str(errors["stalled"])


@pytest.mark.usefixtures("runtime_off")
def test_an_operation_whose_requests_failed_says_its_requests_failed(store_spec: StoreSpec) -> None:
    failing, _ = _deadline_errors(store_spec)
    assert "its requests failed meanwhile" in failing, failing
    assert "503 SlowDown (injected)" in failing and "failing" in failing, failing


@pytest.mark.usefixtures("runtime_off")
def test_an_operation_that_only_waited_does_not_take_anothers_failure_for_its_own(
    store_spec: StoreSpec,
) -> None:
    """Before: "...did not finish within 1.5 s (Settings.deadline); requests to it failed
    meanwhile (the last: .../failing: ... 503 SlowDown (injected)...)"."""
    _, stalled = _deadline_errors(store_spec)
    assert "its requests failed meanwhile" not in stalled, stalled
    assert "requests to it failed" not in stalled, stalled
    assert "none of its requests failed" in stalled, stalled
    assert "other requests to the store failed meanwhile" in stalled, stalled


@pytest.mark.usefixtures("runtime_off")
def test_the_deadlines_warning_says_what_its_error_says(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: "an operation on ... did not finish within 1.5 s (Settings.deadline)", no reason."""
    store_spec.init(settings=vc.Settings(storage="", deadline=DEADLINE, timeout=10.0))
    store = install(FaultConfig(seed=1, rules=(FAILING,)))
    with (
        caplog.at_level(logging.WARNING, logger="vactor_cloud"),
        pytest.raises(vc.StorageTimeoutError) as info,
    ):
        vc.get_runtime().run(_retrying(store, "failing"))
    lines = [r.getMessage() for r in caplog.records if "Settings.deadline" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "its requests failed meanwhile" in lines[0] and "503 SlowDown (injected)" in lines[0], lines
    # the error's reason, word for word (the error adds what to do: its hint)
    reason = str(info.value).split("(Settings.deadline)", 1)[1]
    assert reason and reason in lines[0], (reason, lines)


@pytest.mark.usefixtures("runtime_off")
def test_the_deadlines_warning_of_an_operation_that_only_waited_says_so(
    store_spec: StoreSpec, caplog: pytest.LogCaptureFixture
) -> None:
    store_spec.init(settings=vc.Settings(storage="", deadline=DEADLINE, timeout=10.0))
    store = install(FaultConfig(seed=1, rules=(STALLED,)))
    with (
        caplog.at_level(logging.WARNING, logger="vactor_cloud"),
        pytest.raises(vc.StorageTimeoutError),
    ):
        vc.get_runtime().run(store.get("stalled"))
    lines = [r.getMessage() for r in caplog.records if "Settings.deadline" in r.getMessage()]
    assert len(lines) == 1 and "too slow, kept failing, or is unreachable" in lines[0], lines


@pytest.mark.usefixtures("runtime_off")
def test_an_operation_bounded_on_the_loop_tells_its_own_failures_too(store_spec: StoreSpec) -> None:
    """``Runtime.bounded`` (an async twin's bound, on the IO loop) as ``run`` does."""
    store_spec.init(settings=vc.Settings(storage="", deadline=DEADLINE, timeout=10.0))
    store = install(FaultConfig(seed=1, rules=(FAILING, STALLED)))
    runtime = vc.get_runtime()
    failing = asyncio.run_coroutine_threadsafe(runtime.bounded(_retrying(store, "failing")), runtime.loop)
    stalled = asyncio.run_coroutine_threadsafe(runtime.bounded(store.get("stalled")), runtime.loop)
    with pytest.raises(vc.StorageTimeoutError, match="its requests failed meanwhile"):
        failing.result(HANG)
    with pytest.raises(vc.StorageTimeoutError, match="none of its requests failed, but other requests"):
        stalled.result(HANG)
