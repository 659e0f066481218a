"""Review h165: a mutation sweep of the small modules (bytecode, method_select, call_queue,
child_reports, tracing, counters), the mypy plugin and the typed handle.

TABLE

The call queue's and the child reports' tests are modules of their own
(``test_review_h165_call_queue``, ``test_review_h165_child_reports``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import threading
import types
from collections.abc import Iterator
from typing import Any

import forking
import pytest

import vactor_cloud as vc
from vactor_cloud import bytecode, counters, tracing
from vactor_cloud.errors import CommitOutcomeUnknownError, StorageError
from vactor_cloud.log import StepTakenError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")


# -- bytecode: code of another Python refused, saying which ---------------------------------------


def test_code_of_another_python_is_refused_naming_that_python_and_the_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refusal's text ends with the Python to load it with, quotes of the ``AttributeError``'s
    text cut off, and keeps the ``AttributeError`` as its cause. (Mutations: the quote kept, the
    cause dropped.)"""
    monkeypatch.setattr(bytecode, "_CONSTRUCTOR", bytecode._checked_constructor("cpython-99"))
    data = bytecode.dumps([lambda x: x + 1])
    with pytest.raises(vc.OtherPythonError) as caught:
        bytecode.loads(data)
    message = str(caught.value)
    assert message.startswith("CodeType compiled by cpython-99: "), message
    assert message.endswith("load it with cpython-99"), message
    assert isinstance(caught.value.__cause__, AttributeError)
    with pytest.raises(AttributeError) as plain:
        pickle.loads(data)
    assert str(bytecode.other_python(plain.value)) == message


def test_an_attribute_error_of_the_objects_own_is_raised_as_it_is() -> None:
    broken = b"cbuiltins\nno_such_name\n."  # (a global of a module that has none of that name)
    with pytest.raises(AttributeError) as caught:
        bytecode.loads(broken)
    assert not isinstance(caught.value, vc.OtherPythonError)
    assert bytecode.other_python(caught.value) is caught.value


# -- method_select: vc.method(h, lambda a: a.name) is h.name -------------------------------------


@vc.virtual_actor
class Ledger:
    def __init__(self) -> None:
        self.total = 0

    def addEntry(self, amount: int) -> int:  # (a user's camelCase name)
        self.total += amount
        return self.total

    def addentry(self, amount: int) -> int:
        return -1

    @vc.virtual_actor.readonly
    def Total(self) -> int:
        return self.total


def test_method_selects_the_method_of_the_exact_name(actor_store: StoreSpec) -> None:
    """(Mutation: the name looked up changed on the way, here lower-cased: another method ran.)"""
    ledger = Ledger.get_or_create("l")
    assert vc.method(ledger, lambda a: a.addEntry).run(5) == 5
    assert vc.method(ledger, lambda a: a.Total).run() == 5
    assert vc.method(ledger, lambda a: a.addEntry).run_async(2).result(30) == 7


# -- tracing: spans say what happened, and cost nothing until a provider is configured ---------


class _RecordedSpan:
    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.attributes = attributes
        self.exceptions: list[BaseException] = []
        self.status: tuple[Any, str] | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def record_exception(self, exc: BaseException) -> None:
        self.exceptions.append(exc)

    def set_status(self, code: Any, description: str) -> None:
        self.status = (code, description)


class _Tracer:
    """A configured tracer (not OpenTelemetry's proxy): each span, and the options it got."""

    def __init__(self) -> None:
        self.spans: list[_RecordedSpan] = []
        self.options: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def start_as_current_span(
        self, name: str, attributes: dict[str, Any] | None = None, **options: Any
    ) -> Iterator[_RecordedSpan]:
        span = _RecordedSpan(name, dict(attributes or {}))
        self.spans.append(span)
        self.options.append(options)
        yield span


async def _answer(value: Any) -> Any:
    if isinstance(value, BaseException):
        raise value
    return value


def _attempt(tracer: _Tracer, put: Any) -> Any:
    return asyncio.run(tracing.commit_attempt(_answer(put), "a", 4, 2))


def _step_taken() -> StepTakenError:
    taken = StepTakenError.__new__(StepTakenError)
    Exception.__init__(taken, "step 4 was committed by writer w")
    return taken


@pytest.mark.parametrize(
    ("put", "outcome", "recorded"),
    [
        (7, "committed", False),
        (_step_taken(), "conflict", False),  # a lost race is the protocol working: no error
        (StorageError("the store said no", "a/steps/4"), "error", True),
        (asyncio.CancelledError(), "error", True),  # a commit cut short (a deadline, shutdown)
    ],
    ids=["committed", "conflict", "storage-error", "cancelled"],
)
def test_a_commit_span_says_its_outcome_and_records_only_errors(
    monkeypatch: pytest.MonkeyPatch, put: Any, outcome: str, recorded: bool
) -> None:
    """(Mutations: the error branch catching ``Exception`` only, a cancelled commit's span left
    with no outcome; the exception and error status not recorded; no "committed".)"""
    tracer = _Tracer()
    monkeypatch.setattr(tracing, "_tracer", tracer)
    if isinstance(put, BaseException):
        with pytest.raises(type(put)):
            _attempt(tracer, put)
    else:
        assert _attempt(tracer, put) == put
    [span] = tracer.spans
    assert span.name == "vactor.commit"
    assert span.attributes == {
        "vactor.actor_id": "a",
        "vactor.step": 4,
        "vactor.attempt": 2,
        "vactor.outcome": outcome,
    }
    # The span itself records nothing (a conflict would be an error): commit_attempt does.
    assert tracer.options == [{"record_exception": False, "set_status_on_exception": False}]
    assert span.exceptions == ([put] if recorded else [])
    assert (span.status is not None) == recorded
    if recorded:
        assert span.status == (tracing._ERROR, str(put))


def test_spans_are_skipped_until_a_tracer_provider_is_configured_then_it_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenTelemetry's API alone (its proxy provider) records nothing: no span is made. Once a
    provider is configured it stays, and is not asked again. (Mutations: the proxy provider
    taken for a configured one; the provider asked on every commit.) The OpenTelemetry here
    lacks the private global that is peeked at first, as another version may."""
    trace = pytest.importorskip("opentelemetry.trace")
    assert tracing.enabled()
    asked: list[object] = []
    provider: list[object] = [trace.ProxyTracerProvider()]

    def get_tracer_provider() -> object:
        asked.append(provider[0])
        return provider[0]

    api = types.SimpleNamespace(
        get_tracer_provider=get_tracer_provider, ProxyTracerProvider=trace.ProxyTracerProvider
    )
    monkeypatch.setattr(tracing, "_otel_trace", api)
    monkeypatch.setattr(tracing, "_provider_seen", False)
    assert not tracing.live()
    with tracing.span("vactor.read", actor_id="a") as current:
        assert current is None
    provider[0] = object()  # the application configured one
    assert tracing.live()
    assert tracing.live()
    assert len(asked) == 3  # (twice before it was configured, once after)


# -- counters: counted once, as documented, in a forked child too --------------------------------


def test_a_child_forked_while_another_thread_counts_can_count() -> None:
    """The child of a fork made while another thread held the counters' lock counts (its own
    lock). (Mutation: the lock not replaced after a fork: the child's first count hung.)"""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with counters._lock:
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(60)
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                counters.count("reads")
                code = 0 if counters.stats()["reads"] >= 1 else 1
            finally:
                os._exit(code)
        assert forking.reaped(pid, within=15) == 0
    finally:
        release.set()
        thread.join()


@pytest.mark.parametrize(
    ("exc", "put_sent", "unknown"),
    [
        (StorageError("no answer", "a/steps/1"), True, True),
        (StorageError("refused", "a/steps/1"), False, False),  # sent nothing: certainly not applied
        (ValueError("the method raised"), True, False),  # not the store's: the outcome is known
        (CommitOutcomeUnknownError("a", 1), False, True),
    ],
    ids=["storage-error-put-sent", "storage-error-before-put", "method-error", "runtime-said-so"],
)
def test_a_commit_error_counts_outcome_unknown_only_when_it_is(
    caplog: pytest.LogCaptureFixture, exc: BaseException, put_sent: bool, unknown: bool
) -> None:
    """(Mutation: ``put_sent or`` a storage error: an error before the put was counted unknown.)"""
    counters.reset()
    with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
        counters.commit_error("a", exc, put_sent)
    stats = counters.stats()
    assert (stats["commit_errors"], stats["outcome_unknown"]) == (1, int(unknown))
    [record] = caplog.records
    assert record.levelno == (logging.WARNING if unknown else logging.DEBUG)


def test_a_posted_batchs_commit_error_is_pending_not_unknown(caplog: pytest.LogCaptureFixture) -> None:
    """Its caller is told the calls are pending (``call_outcome`` learns theirs). (Mutation: the
    posted branch fell through: counted ``outcome_unknown`` and logged twice.)"""
    counters.reset()
    with caplog.at_level(logging.DEBUG, logger="vactor_cloud"):
        counters.commit_error("a", StorageError("no answer", "a/steps/1"), True, posted=True)
    stats = counters.stats()
    assert (stats["commit_errors"], stats["outcome_unknown"]) == (1, 0)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "they are pending" in record.getMessage()


# -- definition: a method's kind is its own class's word, as the MRO says ------------------------


class _Base:
    def __init__(self) -> None:
        self.count = 0

    @vc.virtual_actor.readonly
    def look(self) -> int:
        return self.count

    def bump(self) -> int:
        self.count += 1
        return self.count

    def ping(self) -> str:
        return "base"


@vc.virtual_actor
class Overriding(_Base):
    def look(self) -> int:  # a writer now: what it changes is committed
        self.count += 10
        return self.count

    @vc.virtual_actor.readonly
    def bump(self) -> int:  # read-only now: what it changes is discarded
        self.count += 100
        return self.count

    @staticmethod
    def ping() -> str:  # no actor method any more (a handle calls only methods taking self)
        return "static"


def test_an_override_takes_its_kind_from_the_subclass_not_the_base(actor_store: StoreSpec) -> None:
    """A base's read-only method overridden by a writer writes; a base's writer overridden by a
    read-only method does not. (Mutation: the MRO walked from the subclass down, so the base's
    kind won: the writer override ran read-only and its change was silently lost.)"""
    actor = Overriding.get_or_create("o")
    assert actor.look.run() == 10
    assert actor.look.run() == 20  # committed: the second call saw the first's change
    assert actor.bump.run() == 120
    assert actor.bump.run() == 120  # discarded: read-only
    methods = sorted(call.method for entry in actor.history() for call in entry.calls)
    assert methods == ["__init__", "look", "look"]


def test_a_base_method_shadowed_by_a_staticmethod_is_no_actor_method(actor_store: StoreSpec) -> None:
    """(Mutation: the base's method kept in the table when a subclass shadows it with a
    staticmethod: ``h.ping`` ran a method the class no longer has.)"""
    actor = Overriding.get_or_create("o")
    with pytest.raises(AttributeError, match="ping"):
        actor.ping  # noqa: B018


def test_an_async_generator_method_is_refused_at_definition() -> None:
    """(Mutation: only plain generators refused: an ``async def`` with ``yield`` was accepted, and
    each call ran none of its body.)"""

    class Streams:
        async def numbers(self) -> Any:
            yield 1

    with pytest.raises(vc.ActorDefinitionError, match="numbers are generators"):
        vc.virtual_actor(Streams)
