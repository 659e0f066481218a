"""Review h170: a mutation sweep of ``batch.py`` beyond what h138 swept (see below).

(The table is filled in at the end of the sweep.)
"""

from __future__ import annotations

from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory")


class Named:
    """An argument whose ``repr`` holds a lone surrogate (a name decoded with ``surrogateescape``)."""

    def __repr__(self) -> str:
        return "caf\udce9"


def helper() -> int:
    """A plain function, no method of any actor class."""
    return 1


@vc.virtual_actor
class Summed:
    def __init__(self) -> None:
        self.n = 0

    def give(self, value: Any) -> Any:
        self.n += 1
        return value

    def take(self, *items: Any) -> int:
        self.n += 1
        return len(items)

    def fail(self, message: str) -> None:
        self.n += 1
        raise ValueError(message)

    def incr(self) -> int:
        self.n += 1
        return self.n

    def attribute_of_a_method(self) -> Any:
        return self.incr.bogus  # type: ignore[attr-defined]

    def run_of_a_plain_function(self) -> Any:
        return helper.run()  # type: ignore[attr-defined]

    def status_in_a_writer(self) -> str:
        return str(workflow.get_status(vc.current_call().actor_id))  # type: ignore[union-attr]

    @vc.virtual_actor.readonly
    def status_in_a_read(self) -> str:
        return str(workflow.get_status(vc.current_call().actor_id))  # type: ignore[union-attr]


def _newest_call(actor: Any) -> Any:
    return actor.history(limit=1)[0].calls[0]


# -- summaries (history): bounded, valid UTF-8 ---------------------------------------------------


def test_a_result_string_whose_repr_is_long_is_summarised_short(store_spec: StoreSpec) -> None:
    """Mutation: ``_summarize`` returning the ``repr`` of a short string however long that repr
    is (the check of its length dropped): 60 NULs were recorded as 242 characters."""
    store_spec.init()
    actor = Summed.get_or_create("summary-escaped-string")
    assert actor.give.run("\x00" * 60) == "\x00" * 60
    result = _newest_call(actor).result
    assert len(result) <= 60 and "..." in result, result


def test_a_long_integer_result_is_summarised_short(store_spec: StoreSpec) -> None:
    """Mutation: ``_summarize`` keeping the whole ``repr`` of an int however long (the length
    checks of the scalar fast path dropped): a 101-digit result was recorded whole."""
    store_spec.init()
    actor = Summed.get_or_create("summary-long-int")
    actor.give.run(10**100)
    result = _newest_call(actor).result
    assert len(result) <= 40 and "..." in result, result
    actor.give.run(12345)
    assert _newest_call(actor).result == "12345"


def test_many_arguments_are_summarised_within_200_characters(store_spec: StoreSpec) -> None:
    """Mutation: ``_summarize_args`` without its cut at 200 characters: 30 arguments were
    recorded as one line of some 1,500."""
    store_spec.init()
    actor = Summed.get_or_create("summary-many-args")
    items = tuple("x" * 45 for _ in range(30))
    assert actor.take.run(*items) == 30
    args = _newest_call(actor).args
    assert 0 < len(args) <= 200, len(args)


def test_a_keyed_call_that_raised_a_long_message_is_summarised_within_120_characters(
    store_spec: StoreSpec,
) -> None:
    """Mutation: the ``raised ...`` result of a keyed call that raised not cut at 120
    characters: a 1,000-character message was recorded whole in the step."""
    store_spec.init()
    actor = Summed.get_or_create("summary-raised")
    with pytest.raises(ValueError):
        actor.fail.options(idempotency_key="k").run("m" * 1000)
    call = _newest_call(actor)
    assert call.ok is False and call.method == "fail"
    assert call.result.startswith("raised ValueError(") and len(call.result) <= 120, len(call.result)


def test_an_argument_whose_repr_holds_a_lone_surrogate_is_committed_escaped(store_spec: StoreSpec) -> None:
    """Mutations: ``_utf8`` returning the text as it is (its ASCII fast path taken for all):
    the step's UTF-8 meta could not hold the surrogate and the call failed; and ``_utf8``
    with ``"replace"``: history showed ``caf?``, the escaped byte lost."""
    store_spec.init()
    actor = Summed.get_or_create("summary-surrogate")
    actor.take.run(Named())
    assert _newest_call(actor).args == "caf\\udce9"


# -- self.m.<handle's attribute>: a note only where it says the right thing -----------------------


def test_an_attribute_of_a_method_that_no_handle_has_gets_no_note(store_spec: StoreSpec) -> None:
    """Mutation: ``_note_self_call`` without ``exc.name not in _HANDLE_ONLY``: ``self.incr.bogus``
    was told ``.bogus is a handle's, for callers outside the actor``, which it is not."""
    store_spec.init()
    actor = Summed.get_or_create("self-call-bogus")
    with pytest.raises(AttributeError, match="bogus") as raised:
        actor.attribute_of_a_method.run()
    assert not getattr(raised.value, "__notes__", ()), raised.value.__notes__


def test_run_on_a_plain_function_gets_no_note_naming_a_method(store_spec: StoreSpec) -> None:
    """Mutation: ``_note_self_call`` without its check that the function is a method of the
    actor's class: ``helper.run()`` (a module's function) was told to ``call self.helper(...)``,
    a method the actor does not have."""
    store_spec.init()
    actor = Summed.get_or_create("self-call-plain-function")
    with pytest.raises(AttributeError, match="run") as raised:
        actor.run_of_a_plain_function.run()
    assert not getattr(raised.value, "__notes__", ()), raised.value.__notes__


# -- RUNNING: a writer's, not a read's ------------------------------------------------------------


def test_an_actor_is_running_during_a_writer_and_not_during_a_read(store_spec: StoreSpec) -> None:
    """Mutations: ``_invoke`` counting a read-only call as applying (``if not context.readonly``
    dropped), and ``run_readonly`` running the read with a writer's context: an actor read
    looked RUNNING to ``workflow.get_status`` while the read ran."""
    store_spec.init()
    actor = Summed.get_or_create("running-only-in-writers")
    assert actor.status_in_a_writer.run() == "RUNNING"
    assert actor.status_in_a_read.run() == "SUCCESSFUL"
    assert workflow.get_status("running-only-in-writers") == workflow.SUCCESSFUL
