"""A method whose ``ExceptionGroup`` (a ``TaskGroup`` of nested calls) holds several nested
calls' doubts: its caller's ``NestedCallPendingError`` names every one (review h102).

Before, it named the first doubt found alone: a caller told to look at ``[id1]`` had no word
of ``id2`` on another actor, which may also still apply. Now ``nested`` lists every doubt as
``(actor_id, call_ids, detail)`` (call ids empty for a commit whose put was sent and not
answered: it was not posted, and its caller was given no id), and the message names each;
``nested_actor_id``, ``nested_call_ids`` and ``detail`` stay the first's.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import vactor_cloud as vc
from vactor_cloud.errors import CallPendingError, CommitOutcomeUnknownError, NestedCallPendingError
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@vc.virtual_actor
class Fan:
    def __init__(self) -> None:
        self.n = 0

    def spread(self) -> int:
        """What a TaskGroup of three nested calls raises when two are in doubt and one failed
        (nested groups too), the first doubt inside a group of its own."""
        self.n += 1
        inner = ExceptionGroup("inner", [CallPendingError("left", ["id-l1", "id-l2"])])
        unknown = CommitOutcomeUnknownError("right", 7, "the put of step 7 got no answer")
        raise ExceptionGroup("tasks", [inner, ValueError("no"), unknown])

    @vc.virtual_actor.readonly
    def read(self) -> int:
        return self.n


def test_a_group_of_nested_doubts_names_every_call_in_doubt(spec: StoreSpec) -> None:
    spec.init()
    fan = Fan.get_or_create("fan")
    with pytest.raises(NestedCallPendingError) as raised:
        fan.spread.run()
    error = raised.value
    assert (error.nested_actor_id, error.nested_call_ids) == ("left", ["id-l1", "id-l2"])
    assert [(a, ids) for a, ids, _ in error.nested] == [("left", ["id-l1", "id-l2"]), ("right", [])]
    text = str(error)
    for word in ("'left'", "id-l1", "id-l2", "'right'", "step 7"):
        assert word in text, text
    copy: Any = pickle.loads(pickle.dumps(error))  # (as a folded call's outcome travels)
    assert (str(copy), copy.nested) == (text, error.nested)
    assert fan.read.run() == 0


def test_an_error_naming_one_doubt_pickles_as_before_it_had_nested() -> None:
    """Outcomes travel to other processes (a fold's), maybe of an earlier release, whose
    ``NestedCallPendingError`` takes five arguments: one doubt is pickled with those five."""
    error = NestedCallPendingError("a", "c1", "b", ["x"], "why")
    assert error.nested == [("b", ["x"], "why")]
    _, args = error.__reduce__()[:2]
    assert args == ("a", "c1", "b", ["x"], "why")
    copy: Any = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.nested) == (str(error), error.nested)
