"""Review h152, a mutation sweep of ``vactor_cloud/ids.py``, ``keys.py``, ``class_tag.py`` and
``definition.py`` (names a caller may give, the key layout, a class's identity, its method
table and fresh defaults). Each test fails with the mutation its docstring names applied;
the table of the sweep (mutation: killed by / why left) is below.

The sweep (54 mutations, run against the names, class identity, API and input-edge modules on
memory and local). Killed by the suite already: ids (a backslash, a leading dot, the byte limit
off by one, a NUL-led idempotency key, control characters in event names, the timer key's own
limit, runner and event ids unchecked, lone surrogates; DEL and a non-str id only by
``test_integrity``, outside the subset); step keys of other digits or lengths; the class tag
(its key, ``tag_of``) and its collision check; a call's class not checked in a fold, a batch or
a read, calls made for no class (``test_review_class_identity``, ``test_clean_room_protocol``);
fresh defaults (``test_review_input_edges``; a named object's identity by
``test_review_h118``); the state protocol checks at decoration; a class redefined; reserved
names; ``__mp_main__`` (``test_main_script_children``). Survivors, each killed by a test here:
an idempotency key of any length; ``actor_id_of``, ``is_class_key``, ``timer_index_entry``
(leading zeros, other digits, a part more) and ``timer_runner_of`` taking keys the layout never
writes; defaults appended for an omitted positional-only parameter without one; the arity fast
path with keywords; a definition's copy keeping its cached body; a bool as a step number; a
base's method overridden by a non-method kept; ``at_step`` passed to a reader taking
``**fields``.

Left, equivalent: ``"."``/``".."`` (refused as a leading dot anyway); ``made_for`` without
its ``None`` case (every caller checks ``None`` first) or its ``:`` test (a name never equals
a tag); a copied default compared with the default (a named object copies to itself); the tag
registry keyed by a changed tag (the same collisions, under other keys).
"""

from __future__ import annotations

import pytest

import vactor_cloud as vc
from vactor_cloud.definition import ActorDefinition, check_step_number
from vactor_cloud.ids import MAX_ID_BYTES, validate_idempotency_key
from vactor_cloud.keys import (
    actor_id_of,
    class_key,
    is_class_key,
    timer_index_entry,
    timer_index_key,
    timer_runner_key,
    timer_runner_of,
)
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def test_an_idempotency_key_longer_than_the_limit_is_refused() -> None:
    """Mutation: ``validate_idempotency_key`` without its length check. A key of any length was
    accepted, and recorded in the table of every step of its window and in every call record
    (a 1 MB key, a 1 MB addition to every step for the window)."""
    assert validate_idempotency_key("k" * MAX_ID_BYTES) == "k" * MAX_ID_BYTES
    for key in ("k" * (MAX_ID_BYTES + 1), "é" * (MAX_ID_BYTES // 2 + 1)):  # (bytes of UTF-8, not characters)
        with pytest.raises(ValueError, match="longer than the limit"):
            validate_idempotency_key(key)


def test_a_key_names_an_actor_only_under_its_own_folder() -> None:
    """Mutation: ``actor_id_of`` without its check for the ``/`` after the id. The key
    ``actors/abc`` (no object of the layout: every one lies in the actor's folder) was
    taken for one of actor ``abc``, and an object written there bound to that actor."""
    assert actor_id_of("actors/abc/steps/00000000000000000001") == "abc"
    assert actor_id_of("actors/abc") is None
    assert actor_id_of("actors//steps") is None
    assert actor_id_of("timers/abc/x") is None


def test_a_class_key_is_one_under_an_actors_folder_only() -> None:
    """Mutation: ``is_class_key`` without its ``actors/`` check. A timer's due-index entry of
    the actor ``class`` (``timers/<due>/class/<key>``) was taken for a stored class body: the
    ``vactor`` command, told that key was missing, said a class was missing (import it)
    instead of pointing at the store."""
    assert is_class_key(class_key("a", "0" * 64))
    assert not is_class_key(timer_index_key(1, "class", "tick"))
    assert not is_class_key("actors/a/class/")


def test_only_the_due_index_spelling_is_an_entry() -> None:
    """Mutations: ``timer_index_entry`` accepting a generation spelt with leading zeros, a due
    time not of 20 ASCII digits, or a key of more than three parts after ``timers/``. The
    entry ``timers/<due>-007/a/k`` was parsed as generation 7; its deletion rebuilt the key
    ``...-7/a/k``, deleted nothing, and the stray entry was listed, and fired, again and again."""
    key = timer_index_key(5, "a", "k", 7)
    assert timer_index_entry(key) == (5, "a", "k", 7)
    assert timer_index_entry(timer_index_key(5, "a", "k")) == (5, "a", "k", None)
    assert timer_index_entry(key.replace("-7/", "-007/")) is None
    assert timer_index_entry(key.replace("-7/", "-/")) is None
    # a key with a part more: taken for the entry of (a, k), deleting it would delete that one
    assert timer_index_entry(f"{key}/more") is None
    # a due time of other digits, or fewer: rebuilt, another key
    assert timer_index_entry("timers/5/a/k") is None
    assert timer_index_entry(f"timers/{chr(0x661) * 20}/a/k") is None


def test_a_heartbeat_key_names_a_runner_only_directly_under_its_folder() -> None:
    """Mutation: ``timer_runner_of`` accepting a key with a ``/`` after the folder. A stray
    object at ``timer-runners/a/b`` was counted as a live runner ``a/b`` (an id no runner can
    have), and the actors split among the runners gave it a share nobody served."""
    assert timer_runner_of(timer_runner_key("r1")) == "r1"
    assert timer_runner_of("timer-runners/a/b") is None
    assert timer_runner_of("timer-runners/") is None


@vc.virtual_actor
class Positional:
    """``__init__`` with a positional-only parameter without a default before one with a
    mutable default."""

    def __init__(self, name: str, tags: list[str] = [], /) -> None:  # noqa: B006
        self.name = name
        self.tags = tags

    @vc.virtual_actor.readonly
    def label(self) -> str:
        return f"{self.name}:{self.tags}"


def test_a_creation_omitting_a_required_positional_only_argument_fails(actor_store: StoreSpec) -> None:
    """Mutation: ``FreshDefaults.fill`` appending the defaults of omitted positional-only
    parameters when one of them has none. ``Positional.get_or_create(id)`` (``name`` omitted)
    then ran ``__init__`` with ``inspect.Parameter.empty`` for ``name`` and stored the actor,
    instead of failing as Python does (``TypeError``: a missing argument)."""
    with pytest.raises(TypeError):
        Positional.get_or_create("h152-positional").ready()
    made = Positional.get_or_create("h152-positional-2", "n")
    assert made.label.run() == "n:[]"


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, by: int, note: str = "") -> int:
        self.n += by
        return self.n


@vc.virtual_actor
class UsesCounter:
    """A class whose stored body holds a copy of ``Counter``'s definition (its method names it)."""

    def make(self, actor_id: str) -> str:
        return Counter.get_or_create(actor_id).actor_id


def test_a_call_with_an_unknown_keyword_is_refused_before_it_is_queued() -> None:
    """Mutation: ``MethodInfo.check_arguments`` taking the fast path (positional count only) for
    a call with keywords too. ``add(1, bogus=2)`` was queued (posted, under contention: written
    to the store) and failed only when run, far from the caller's line."""
    info = Counter.definition.methods["add"]
    info.check_arguments((1,), {})
    info.check_arguments((1,), {"note": "x"})
    with pytest.raises(TypeError, match=r"add\(\): .*bogus"):
        info.check_arguments((1,), {"bogus": 2})


def test_a_stored_body_does_not_depend_on_whether_a_class_it_uses_was_stored_first() -> None:
    """Mutation: ``ActorDefinition.__getstate__`` keeping this process's cached body and hash.
    The body of ``UsesCounter`` (which holds ``Counter``'s definition) then held ``Counter``'s
    own bytes once this process had stored ``Counter``: the same unchanged class got another
    hash in every process, each storing its own copy."""
    Counter.definition._ref = Counter.definition._body = None
    before = ActorDefinition(UsesCounter.cls).body()
    Counter.definition.body()  # (stored, as a first call on a Counter would)
    after = ActorDefinition(UsesCounter.cls).body()
    assert before == after, "the body changed with what this process had stored before"


def test_a_bool_is_no_step_number() -> None:
    """Mutation: ``check_step_number`` without its ``bool`` check. ``at_step=True`` (a flag
    passed where a number belongs) was taken for step 1."""
    check_step_number(0)
    check_step_number(7)
    for bad in (True, False, -1, 1.0, "1"):
        with pytest.raises(ValueError, match="a step number"):
            check_step_number(bad)


class _Sizable:
    def size(self) -> int:
        return 1

    def helper(self) -> int:
        return 2


class Fixed(_Sizable):
    size = 3  # (a method of the base, overridden by a constant)

    @staticmethod
    def helper() -> int:  # (overridden by a static method: no actor method)
        return 4


def test_a_method_overridden_by_a_non_method_leaves_the_method_table() -> None:
    """Mutation: ``_collect_methods`` keeping a base's method that the class overrides with a
    constant or a static method. ``handle.size`` was then an actor method whose call ran
    ``self.size(...)`` on an ``int``, failing far from the class's line."""
    methods = ActorDefinition(Fixed).methods
    assert "size" not in methods and "helper" not in methods
    assert set(ActorDefinition(_Sizable).methods) == {"size", "helper"}


@vc.virtual_actor
class Filtered:
    def __init__(self) -> None:
        self.value = 0

    def set(self, value: int) -> None:
        self.value = value

    @vc.virtual_actor.readonly
    def look(self, **fields: int) -> tuple[int, dict[str, int]]:
        return self.value, fields


def test_at_step_selects_a_step_for_a_reader_taking_any_keyword(actor_store: StoreSpec) -> None:
    """Mutation: ``at_step_is_an_option`` answering ``readonly and not takes_any``. A read-only
    method taking ``**fields`` then got ``at_step=1`` among its fields and ran on the newest
    state, where the docs promise a read of the past state (only a method declaring
    ``at_step`` itself receives it)."""
    filtered = Filtered.get_or_create("h152-filtered")
    filtered.set.run(5)
    filtered.set.run(9)
    assert filtered.look.run(at_step=1, colour=2) == (5, {"colour": 2})
    assert filtered.look.run(colour=2) == (9, {"colour": 2})
