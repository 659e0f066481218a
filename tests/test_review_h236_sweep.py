"""Review h236: a mutation sweep of modules not swept as a whole before: ``definition.py`` (what
``@virtual_actor`` makes of a class: its methods, marks, checks, stored body and fresh defaults),
``actor.py`` (``ActorClass``, ``get_actor``, ``delete_actor``), ``settings.py``, ``keys.py`` (the
object layout) and ``class_tag.py``.

121 hand-made mutations, one at a time, each run against the modules that test that code
(memory and local lanes): 51 killed there. Of the 70 left, 10 are killed by modules outside
those sets (a second run), 54 by the tests here (each test's docstring names its mutations),
5 are equivalent, 1 is not killed on this Python (note c). "killed by" names the module
(``test_`` / ``test_review_`` left off) whose test failed first; "h236" a test here, by words
of its name.

Four defects of the unmutated code, each shown by a test here that failed before its fix:
``Settings`` took a storage of another type (``init`` then failed with Python's
``expected str, bytes or os.PathLike object``, naming no setting) and any sub-task executor
(a misspelt ``"threads"`` failed at the first sub-task); a method marked ``on_event`` whose
name starts with ``_`` was no actor method, so no event of its name was ever applied, and of
two methods marked for one event one never ran, all silently (refused at decoration now);
``get_actor_async`` of an actor this process is creating without waiting raised
``ActorNotFoundError`` where ``get_actor`` finds it; an actor class decorated again, or a mark
(``readonly``, ``on_event``) put on a property, failed with a message that did not say what
to do. The fixes' own code was mutated too (9 mutations: a handler check, an executor or
storage check, the pending creation's lookup, each message's condition dropped or changed):
each is killed by a test here.

==== =================================================== ======== =================================
id   mutation                                            survived killed by / why
==== =================================================== ======== =================================
D01  check_arguments: too many args pass the fast path   yes      h236 (cannot bind)
D02  check_arguments: keywords skip binding              no       h152_names_and_classes
D03  check_arguments: message without the method's name  no       h152_names_and_classes
D04  at_step_is_an_option: a writer passes at_step on    yes      h236 (at_step on a writer)
D05  at_step_is_an_option: a method's own at_step taken  yes      h236 (own at_step)
D06  check_step_number: True accepted                    no       h152_names_and_classes
D07  check_step_number: -1 accepted                      no       h152_names_and_classes
D08  check_at_step: a writer accepted                    no       h230_call_surface_sweep
D10  a stored body's step name ignored                   yes      h236 (step name)
D11  a non-class decorated                               yes      h236 (decorator misuse)
D12  unknown serializer accepted                         yes      h236 (decorator misuse)
D13  half a state protocol accepted                      yes      runtime_api
D14  half protocol: present/missing swapped              yes      runtime_api
D15  builtin base without protocol accepted              no       api
D16  __slots__ without protocol accepted                 no       api
D17  serializer option not marked on the class           yes      h236 (serializer kept)
D18  restores never set                                  yes      user_edges
D19  writer_names include read-only methods              yes      review_timers
D20  a stored body with reserved names refused           yes      h236 (reserved now)
D21  reserved method names accepted                      no       call_edges
D22  generator methods accepted                          yes      h165_sweep
D24  __getstate__ keeps the stored body cache            yes      h152_names_and_classes
D25  from_stored: serializer option ignored              yes      h236 (serializer kept)
D26  register: a tag collision accepted                  no       class_tag_collision
D27  body: random tracker ids kept                       yes      h236 (each class as itself)
D28  body: bytecode never noted                          no       class_python_version
D29  __main__ data globals by name                       yes      h236 (no other process)
D30  an ActorClass global by reference                   yes      h236 (code and numbers)
D31  data globals stored by value                        yes      h236 (code and numbers)
D32  numbers stored by name                              yes      h236 (code and numbers)
D33  actor class globals stored by name                  yes      h236 (code and numbers)
D34  _restore_function: a global there overwritten       yes      equivalent (a)
D35  _restore_function: this __main__'s globals taken    yes      h236 (a script's globals)
D36  missing globals warned every load                   yes      h236 (warned once)
D37  missing globals never warned                        yes      h236 (warned once)
D38  by reference: the wrapper not unwrapped             yes      h236 (by reference)
D40  __slots__ = ('__dict__',) refused                   no       api
D42  tracker ids: other classes get the class's own id   yes      h236 (each class as itself)
D43  tracker id rewritten though not found once          yes      equivalent (b)
D44  _private methods collected                          yes      h236 (private method)
D45  static/class methods taken for actor methods        no       actor_class_attributes
D46  a base's method shadowed by an attribute stays      no       h152_names_and_classes
D47  readonly mark of a partial's object ignored         no       h186_partialmethod_marks
D48  _mark: partial's wrapped function not looked at     no       h186_partialmethod_marks
D50  _as_a_method: a callable's first param is self      no       h184_partial_methods
D51  _binds: a partial taken as binding                  yes      not killed (c)
D53  FreshDefaults: an identical copy counted as mutable yes      equivalent (d)
D54  FreshDefaults.of: module objects copied             no       h118
D55  fill: a given keyword overwritten                   no       input_edges
D56  fill: off by one on positional                      no       h118
D57  fill: a given keyword-only overwritten              no       input_edges
D58  fill: the caller's kwargs mutated                   yes      h236 (caller's arguments)
D59  fill: empty defaults passed                         no       h152_names_and_classes
D60  _copy: named module objects copied                  no       h118
D61  _named_objects: a wrapped function's names missed   yes      h236 (sentinel)
D62  _named_objects: nested code missed                  yes      h236 (sentinel)
D63  __init__'s mutable defaults shared                  no       input_edges
D64  with_fresh_defaults: bound method not unwrapped     no       h118
D65  _arity: required counted wrong                      yes      h236 (cannot bind)
D66  _arity: *args method gets an arity                  yes      h236 (cannot bind)
D67  on_event: a name no event can carry accepted        yes      h236 (event name)
D68  superseded never                                    no       h230_call_surface_sweep
D69  on_event: its own empty-name check dropped          yes      equivalent (e)
A01  ActorClass: not registered                          no       pickled_handles
A02  wait_for_init=False ignored                         no       wait_for_init
A03  __getattr__: hint for dunders                       yes      h236 (a dunder)
A04  __getattr__: hint for any name                      no       actor_class_attributes
A05  isinstance(x, ActorClass) False                     no       api
A06  issubclass False                                    no       api
A07  __reduce__: __main__ class by reference             yes      h236 (pickled by value)
A08  __reduce__: a nested class by reference             yes      h236 (pickled by value)
A09  _rebuild_actor_class: serializer dropped            yes      h236 (pickled by value)
A10  get_actor: a pending creation not found             no       wait_for_init
A11  _delete_key: a delete in doubt not reused           no       delete_keys
A12  _delete_key: key not validated                      no       delete_keys
A13  _delete: key kept after not-found                   yes      h211_memory_bounds
A14  _delete: key kept after success                     yes      h236 (a key per delete)
A15  _delete: cache not forgotten                        no       delete_actor
A16  _delete: send_event's existence cache kept          yes      delete_surfaces
A17  _delete: True when deleted already                  no       delete_actor
A18  delete inside own writer not refused                yes      delete_surfaces
A19  delete inside own __init__ not refused              yes      delete_surfaces (g)
A20  delete_actor: pending creation not waited for       yes      h236 (delete waits)
A21  delete_actor_async: pending creation not waited for yes      h236 (delete waits)
A22  @virtual_actor(serializer=) ignored                 yes      h236 (serializer kept)
S01  default_storage: empty $VACTOR_STORAGE taken        yes      h236 (default storage)
S02  default_storage: XDG_DATA_HOME ignored              yes      h236 (default storage)
S03  wait_for_init not checked as a switch               yes      h236 (no sense)
S04  dedup_window length unchecked                       yes      h236 (no sense)
S05  dedup_window[0] a float accepted                    yes      h236 (no sense)
S06  dedup_window[1] 0 refused                           yes      h236 (lowest values)
S07  empty signing key accepted                          yes      h236 (no sense)
S08  signing key error types swapped                     yes      h236 (no sense)
S09  a 32-byte key warned                                yes      h236 (short key)
S10  short key warned every time                         yes      h236 (short key)
S11  storage_options not a mapping accepted              yes      h236 (no sense)
S12  a bool number accepted                              yes      h236 (no sense)
S13  inf/NaN accepted                                    no       settings
S14  an excluded bound accepted                          no       settings
S15  lease_seconds 0 accepted                            yes      h236 (no sense)
S16  max_cache_bytes a float accepted                    yes      h236 (no sense)
S17  head_max_delay 0 refused                            yes      h236 (lowest values)
S19  bound message swapped                               no       settings
S20  max_read_bytes unchecked                            no       settings
K01  actor_id_of: a key without '/' taken                no       h152_names_and_classes
K02  step_of: any 20-digit name a step                   yes      h236 (no key listed as another's)
K03  step_of: length unchecked                           no       names
K04  step_of: non-ASCII digits accepted                  no       names
K05  is_class_key: empty sha accepted                    no       h152_names_and_classes
K06  is_class_key: outside actors/ accepted              no       h152_names_and_classes
K07  timer_index_entry: leading zeros accepted           no       h152_names_and_classes
K08  timer_index_entry: empty id/key accepted            yes      h236 (root name, sorts)
K09  timer_index_entry: due length unchecked             no       h152_names_and_classes
K10  timer_runner_of: nested key taken                   no       h152_names_and_classes
K11  task_key: unpadded positions                        yes      h236 (root name, sorts)
K12  LONGEST_KEY: timer index left out                   yes      equivalent (f)
K13  ROOT_NAMES: mail-key left out                       yes      h236 (root name, sorts)
K14  lease_key under mail/                               no       names
T01  tag_of: the name posted                             no       warm_after_delete
T02  made_for: a tag never matches                       no       class_identity
T04  class_tag: unkeyed hash                             no       class_tag_collision
==== =================================================== ======== =================================

(a) D34: the functions of one loaded body share one globals dict: a name already there was
    restored from the same module dict by an earlier function of the body, to the same value.
(b) D43: the class's own tracker id (32 hex digits) is in every body pickled by value exactly
    once (pickle memoizes the class); the guard is for a cloudpickle that writes it otherwise.
(c) D51, not killed here: up to Python 3.12 a ``functools.partial`` has no ``__get__``, so
    ``_binds`` answers before the mutated line; on 3.13 ``test_review_h184_partial_methods``
    is the test that meets it.
(d) D53: a default whose deep copy is itself (a named module object, a class whose
    ``__deepcopy__`` returns ``self``) is copied to itself again for each call: the same object.
(e) D69: ``validate_event_name`` refuses the same names (empty, not a str), turned into the
    same ``ActorDefinitionError`` with its own message.
(f) K12: the longest due-index key (504 bytes) is shorter than an inbox key (524), which
    ``LONGEST_KEY`` still counts.
(g) A19: killed by a bounded wait (``join(60)``: the delete inside ``__init__`` waits for its
    own creation, for good); the module's run then waits 30 s more in the runtime's shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import pickle
import sys
import threading
import types
from typing import Any

import cloudpickle
import pytest
from store_helpers import init, spec
from test_review_h152_names_and_classes import Counter
from test_wait_for_init import Gated, gate, nowait_store

import vactor_cloud as vc
from vactor_cloud import definition, keys
from vactor_cloud import settings as settings_module
from vactor_cloud.bytecode import BYTECODE
from vactor_cloud.cli.bench_harness import RequestTrace
from vactor_cloud.definition import ActorDefinition, with_fresh_defaults
from vactor_cloud.errors import ActorDefinitionError
from vactor_cloud.ids import MAX_ID_BYTES, MAX_TIMER_KEY_BYTES, validate_actor_id
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")

__all__ = ["gate", "nowait_store", "spec"]  # (the fixtures, imported)

#: a module-level value a stored method reads: data, stored by name (never in the body)
TOKEN = "h236-token-never-stored"
#: a number a stored method reads: stored with the body
LIMIT = 7


@vc.virtual_actor
class Tally(Counter):
    def put(self, amount: int, times: int, note: str = "") -> int:
        self.n += amount * times
        return self.n

    def label(self, *, text: str) -> str:
        return text

    @vc.virtual_actor.readonly
    def peek(self) -> int:
        return self.n


@pytest.mark.parametrize(
    ("method", "args", "message"),
    [
        ("add", (1, "n", 3), r"add\(\): too many positional arguments"),
        ("put", (1,), r"put\(\): missing a required argument: 'times'"),
        ("label", ("x",), r"label\(\): too many positional arguments"),
    ],
    ids=["too many", "too few", "keyword only"],
)
def test_a_call_that_cannot_bind_is_refused_before_it_is_sent(
    spec: StoreSpec, method: str, args: tuple[Any, ...], message: str
) -> None:
    """D01: ``MethodInfo.check_arguments`` taking the fast path for any count of at least the
    fewest arguments; D65: ``_arity`` counting the parameters with defaults as the required
    ones; D66: a method with keyword-only parameters given an arity. Each such call was sent
    (requests to the store) and failed only in the actor, with Python's message naming no
    method."""
    init(spec)
    tally = Tally.get_or_create(f"d01-{method}")
    with RequestTrace(vc.get_runtime().store).installed() as trace, pytest.raises(TypeError, match=message):
        getattr(tally, method).run(*args)
    assert trace.requests == [], "a call that cannot bind was sent"
    assert tally.peek.run() == 0


def test_at_step_on_a_writer_says_it_is_a_writer(spec: StoreSpec) -> None:
    """D04, D08: ``at_step_is_an_option`` false for a writer taking no ``**fields`` (``at_step``
    passed on to the method: "unexpected keyword"), or ``check_at_step`` taking a writer. The
    error is to say what at_step= is for, and what to use instead."""
    init(spec)
    tally = Tally.get_or_create("d04")
    with pytest.raises(ValueError, match=r"add\(\) is a writer method.*handle\.state_at\(0\)"):
        tally.add.run(1, at_step=0)
    assert tally.peek.run() == 0


@vc.virtual_actor
class Dated:
    @vc.virtual_actor.readonly
    def echo(self, at_step: int) -> int:
        return at_step


def test_a_method_declaring_at_step_gets_it_as_its_argument(spec: StoreSpec) -> None:
    """D05: ``at_step_is_an_option`` true for a method with its own ``at_step`` parameter: the
    argument was taken for a step to time-travel to, and the method never got it."""
    init(spec)
    assert Dated.get_or_create("d05").echo.run(at_step=5) == 5


def test_a_stored_body_keeps_the_name_its_steps_give_it() -> None:
    """D10: ``ActorDefinition.from_stored`` naming the class as the rebuilt class spells itself.
    A class defined in a function is rebuilt by cloudpickle under its bare name: its calls were
    made for another class than the one the steps name (each refused as of another class)."""
    loaded = ActorDefinition.from_stored(Tally.cls, name="elsewhere:Tally")
    assert loaded.name == "elsewhere:Tally"
    assert {info.owner for info in loaded.methods.values()} == {"elsewhere:Tally"}
    assert ActorDefinition.from_stored(Tally.cls).name == Tally.name


def _function() -> None:
    return None


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (lambda: vc.virtual_actor(_function), r"@virtual_actor decorates classes, not <function _function"),
        (lambda: vc.virtual_actor(Tally), r"Tally is an actor class already: decorate the class once"),
        (lambda: vc.virtual_actor.readonly(property(_function)), r"readonly marks a method.*not <property"),
        (lambda: vc.virtual_actor.on_event("paid")(property(_function)), r"on_event\('paid'\) marks a "),
        (
            lambda: vc.virtual_actor(serializer="yaml")(Tally.cls),
            r"unknown serializer 'yaml'; choose one of \('pickle', 'json'\)",
        ),
    ],
    ids=["a function", "decorated twice", "readonly property", "event property", "unknown serializer"],
)
def test_a_misuse_of_the_decorator_is_refused_saying_what_to_do(decorate: Any, message: str) -> None:
    """D11: a non-class decorated (a function, the actor class once more) taken; D12: any
    serializer name taken (each state then failed at its first commit, far from the typo).
    A defect, fixed: the actor class decorated again was refused as "not a class", and a mark
    put on a property failed with Python's "'property' object has no attribute
    '__vactor_readonly__'": neither said what to do."""
    with pytest.raises(ActorDefinitionError, match=message):
        decorate()


class Helper:
    """A plain class of this module a stored method uses: pickled by value with the body."""


@vc.virtual_actor
class Reader:
    def token(self) -> str:
        return TOKEN

    def limit(self) -> int:
        return LIMIT

    def helper(self) -> type:
        return Helper

    def other(self) -> Any:
        return Tally


def _stored_body() -> bytes:
    """``Reader``'s body as a first commit stores it (a definition of its own: no cache)."""
    return ActorDefinition(Reader.cls).body()[1]


def test_a_stored_body_holds_code_and_numbers_and_names_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """D31: data globals (a str) stored by value: a token a method reads went into the body
    every reader of the bucket sees. D32, D33, D30: numbers, actor classes stored by name (or an
    actor class by reference): a process whose module lacks them (or has no such module) got a
    ``NameError`` from a method that reads a constant. Loaded as by a process whose module has
    none of them: what the body holds is there, data is not."""
    body = _stored_body()
    assert TOKEN.encode() not in body
    module = sys.modules[__name__]
    for name in ("TOKEN", "LIMIT", "Tally"):
        monkeypatch.delattr(module, name)
    monkeypatch.setattr(definition, "_REPORTED", set())
    loaded = pickle.loads(body)
    instance = loaded()
    assert instance.limit() == 7
    assert isinstance(instance.other(), vc.ActorClass) and instance.other().name.endswith(":Tally")
    with pytest.raises(NameError, match="TOKEN"):
        instance.token()


def test_each_class_of_a_body_is_loaded_as_itself() -> None:
    """D42: every class pickled with the body given the class's own content-derived tracker id
    (no salt): loading it, cloudpickle took ``Helper`` for the actor class itself. D27: the
    random per-process tracker ids kept (each process stored its own copy of an unchanged
    class under a new hash). D28: a body by value not noted as this Python's bytecode."""
    fresh = ActorDefinition(Reader.cls)
    body = fresh.body()[1]
    assert cloudpickle.cloudpickle._get_or_create_tracker_id(Reader.cls).encode() not in body
    assert fresh.bytecode == BYTECODE
    loaded = pickle.loads(body)
    helper = loaded().helper()
    assert helper is not loaded and helper.__name__ == "Helper" and helper.__qualname__ == "Helper"


def test_a_module_value_a_body_lacks_is_warned_of_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """D36, D37: the warning of a module value a loaded body reads and this process does not
    have given at every load, or never (a ``NameError`` later, with no word of why)."""
    body = _stored_body()
    monkeypatch.delattr(sys.modules[__name__], "TOKEN")
    monkeypatch.setattr(definition, "_REPORTED", set())
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        pickle.loads(body)
        pickle.loads(body)
    warned = [r.getMessage() for r in caplog.records if "not stored with the class" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "(TOKEN)" in warned[0] and "import the module before using the actor" in warned[0], warned


@vc.virtual_actor
class Locked:
    GUARD = threading.Lock()

    def ping(self) -> str:
        return "pong"


def test_a_class_that_cannot_be_pickled_is_stored_by_reference_and_loads_as_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """D38: a body stored by reference loaded as what the module holds under the name, the
    ``@virtual_actor`` wrapper: ``TypeError`` ("not a class here") in every process."""
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        body = ActorDefinition(Locked.cls).body()[1]
    warned = [r.getMessage() for r in caplog.records if "stored by reference" in r.getMessage()]
    assert len(warned) == 1 and "Locked.GUARD" in warned[0], warned
    assert pickle.loads(body) is Locked.cls


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("max_batch", True, TypeError, r"Settings\.max_batch must be an integer, got True"),
        ("timeout", False, TypeError, r"Settings\.timeout must be a number, got False"),
        ("max_cache_bytes", 1.5, TypeError, r"Settings\.max_cache_bytes must be an integer"),
        ("lease_seconds", 0, ValueError, r"Settings\.lease_seconds must be > 0, got 0"),
        ("wait_for_init", "False", TypeError, r"Settings\.wait_for_init must be True or False"),
        ("dedup_window", (10, 60.0, 1), TypeError, r"dedup_window must be a tuple \(keys, seconds\)"),
        ("dedup_window", (10.5, 60.0), TypeError, r"Settings\.dedup_window\[0\] must be an integer"),
        ("signing_key", b"", ValueError, r"Settings\.signing_key must be non-empty bytes or None"),
        ("signing_key", "k" * 32, TypeError, r"Settings\.signing_key must be non-empty bytes or None"),
        ("storage_options", None, TypeError, r"Settings\.storage_options must be a mapping, got NoneType"),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_a_setting_of_no_sense_is_refused_naming_the_field(
    field: str, value: Any, error: type, message: str
) -> None:
    """S12 (a bool taken for a number), S16 (a float cache size), S15 (a zero lease: a lease
    nobody can hold), S03 (a switch spelt as a string, truthy), S04, S05 (a dedup window of
    three parts, or of half a key), S07, S08 (an empty key, which must not mean unsigned;
    a str key, a type error), S11: each is refused when the settings are built, naming the field."""
    with pytest.raises(error, match=message):
        vc.Settings(storage="memory://h236", **{field: value})


def test_the_lowest_values_a_setting_allows_are_taken() -> None:
    """S17, S06: an inclusive bound refused (``head_max_delay=0``: move HEAD as soon as it
    lags; ``dedup_window=(0, 0)``: keep no key)."""
    taken = vc.Settings(storage="memory://h236", head_max_delay=0, dedup_window=(0, 0), fresh_window=0)
    assert (taken.head_max_delay, taken.dedup_window, taken.fresh_window) == (0, (0, 0), 0)


def test_a_short_signing_key_is_warned_of_once_and_a_long_enough_one_never(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """S09: a key of the recommended 32 bytes warned of; S10: a short key warned of at every
    ``Settings`` built (``init``, each ``dataclasses.replace``), not once."""
    monkeypatch.setattr(settings_module, "_short_key_warned", False)
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        vc.Settings(storage="memory://h236", signing_key=b"k" * 32)
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        vc.Settings(storage="memory://h236", signing_key=b"k" * 31)
        vc.Settings(storage="memory://h236", signing_key=b"k" * 31)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "31 bytes, shorter than the 32 bytes recommended" in warned[0], warned
    assert "k" * 31 not in warned[0]


def test_the_default_storage_skips_an_empty_variable_and_follows_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """S01: ``$VACTOR_STORAGE`` set but empty taken for the storage (an empty URL); S02:
    ``$XDG_DATA_HOME`` ignored."""
    monkeypatch.setenv("VACTOR_STORAGE", "")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert vc.Settings().storage == str(tmp_path / "vactor_cloud")


_BAD_STORAGE = r"storage must be a storage URL or path \(a str\), or an ObjectStore instance, got 123"
_BAD_EXECUTOR = r"Settings\.subtask_executor must be 'thread', 'process', a concurrent\.futures\.Executor"


@pytest.mark.parametrize(
    ("given", "error", "message", "from_init"),
    [
        ({"storage": 123}, TypeError, rf"Settings\.{_BAD_STORAGE}", rf"init\(\)'s {_BAD_STORAGE}"),
        ({"subtask_executor": "threads"}, ValueError, rf"{_BAD_EXECUTOR}.*, got 'threads'", None),
        ({"subtask_executor": 4}, TypeError, rf"{_BAD_EXECUTOR}.*, got 4", None),
    ],
    ids=["storage", "executor name", "executor"],
)
def test_a_storage_or_executor_of_no_sense_is_refused_when_the_settings_are_built(
    given: dict[str, Any], error: type, message: str, from_init: str | None
) -> None:
    """A defect, fixed: a storage of another type (a number) was taken, and ``init`` then failed
    with Python's ``expected str, bytes or os.PathLike object, not int``, naming no setting;
    a misspelt executor name (``"threads"``) or an object that runs nothing was taken, and
    failed only at the first sub-task an actor method launched, far from the setting."""
    with pytest.raises(error, match=message):
        vc.Settings(**given)
    try:
        with pytest.raises(error, match=from_init or message):
            vc.init(**({"storage": "memory://h236"} | given))
    finally:
        vc.shutdown()  # (what a failure here left running)


def test_the_storages_and_executors_settings_take(tmp_path: Any) -> None:
    """What the refusal above leaves taken: a URL, a path, an ObjectStore; the executor kinds by
    name, an executor object (what has ``submit``), or none (the default)."""
    from concurrent.futures import ThreadPoolExecutor

    from vactor_cloud.storage import MemoryStore

    with ThreadPoolExecutor(1) as pool:
        for given in (
            {"storage": "memory://h236"},
            {"storage": tmp_path},
            {"storage": MemoryStore()},
            {"subtask_executor": "thread"},
            {"subtask_executor": "process"},
            {"subtask_executor": pool},
            {"subtask_executor": None},
        ):
            vc.Settings(**given)


@vc.virtual_actor(serializer="json")
class Note:
    def __init__(self) -> None:
        self.text = ""


def test_a_stored_body_keeps_its_serializer() -> None:
    """A22: ``@virtual_actor(serializer="json")`` making a pickled actor class. D17, D25: the
    class's serializer not marked on it, or not read back from a loaded body:
    a json actor loaded from storage was taken for a pickled one (its steps, and its new
    states, in the other encoding)."""
    assert Note.serializer == Note.definition.serializer == "json"  # (A22: the option dropped)
    body = ActorDefinition(Note.cls, serializer="json").body()[1]
    assert ActorDefinition.from_stored(pickle.loads(body)).serializer == "json"


def test_a_stored_body_is_read_though_its_method_names_are_reserved_now() -> None:
    """D20: a stored body checked as a class being defined: a body stored when a method name was
    not yet the handle's own (``history``, ``timers`` ...) could no longer be loaded; it is read,
    its shadowed methods as before (callable through ``vactor call``)."""

    class Old:
        def history(self) -> str:
            return "mine"

    loaded = ActorDefinition.from_stored(Old, name=f"{__name__}:Old")
    assert "history" in loaded.methods
    with pytest.raises(ActorDefinitionError, match=r"history are taken by the actor handle itself"):
        ActorDefinition(Old)


def test_a_class_of_a_module_no_other_process_has_keeps_its_data_in_the_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D29: the data globals of a module without a spec (``__main__``, a module made at run
    time) stored by name as for an importable module: no other process has that module, so its
    methods found nothing there (``NameError``); they are stored by value where they pickle."""
    module = types.ModuleType("h236_made_at_run_time")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(  # (a class of that module, as ``python script.py`` defines one in ``__main__``)
        "PRICES = {'tea': 3}\nclass Menu:\n    def price(self, item):\n        return PRICES[item]\n",
        vars(module),
    )
    body = ActorDefinition(module.Menu).body()[1]
    monkeypatch.delattr(module, "PRICES")
    assert pickle.loads(body)().price("tea") == 3


def test_a_script_s_class_never_takes_the_globals_of_the_script_loading_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """D35: a body stored from a script (module ``__main__``) restoring the values it could not
    store (a lock) from this process's ``__main__``, another program: its methods silently read
    that program's value of the same name. They are undefined, with a warning that says why."""
    script = types.ModuleType("__main__")  # (the storing program's, not this process's)
    source = (
        "import threading\nGUARD = threading.Lock()\nclass Job:\n    def guard(self):\n        return GUARD\n"
    )
    exec(source, vars(script))
    body = definition._dumps_by_value(script.Job, script)
    monkeypatch.setattr(sys.modules["__main__"], "GUARD", "this program's own", raising=False)
    monkeypatch.setattr(definition, "_REPORTED", set())
    with caplog.at_level(logging.WARNING, logger="vactor_cloud"):
        loaded = pickle.loads(body)
    with pytest.raises(NameError, match="GUARD"):
        loaded().guard()
    warned = [r.getMessage() for r in caplog.records if "not stored with the class" in r.getMessage()]
    assert len(warned) == 1 and "defined in __main__ of another program" in warned[0], warned


#: ids that differ by little (docs/concepts.md: two actors each): a prefix of another, dots, case,
#: NFC and NFD, a trailing space, a %-escape, at the byte limit
_IDS = ["a", "ab", "a.b", "a..", "A", "é", "e\u0301", "日本", "a ", "%61", "a-HEAD"]
_IDS += ["i" * MAX_ID_BYTES, "é" * (MAX_ID_BYTES // 2)]


def _keys_of(actor_id: str) -> dict[str, str]:
    """One key of each kind an actor has (``keys``' layout)."""
    return {
        "step": keys.step_key(actor_id, 12),
        "head": keys.head_key(actor_id),
        "gc": keys.gc_key(actor_id),
        "class": keys.class_key(actor_id, "0" * 64),
        "inbox": keys.inbox_key(actor_id, f"{12:020d}"),  # (an event id spelt as a step)
        "task": keys.task_key(actor_id, "call", 3),
        "failed": keys.failure_key(actor_id, "call"),
        "post": keys.post_key(actor_id, "0123456789ab.x"),
        "lease": keys.lease_key(actor_id),
        "dedup": f"{keys.dedup_prefix(actor_id)}{12:020d}-t",
        "outcome": f"{keys.dedup_outcomes_prefix(actor_id)}{12:020d}-{'0' * 64}",
    }


def test_no_key_of_one_actor_or_kind_is_listed_as_another_s() -> None:
    """K14 (the lease put in the posts' folder: listed, and read, as a post), K02 (``step_of``
    taking a key of 20 digits anywhere for a step): every key of an actor is under its own
    folder and no other actor's, whatever the ids (a prefix of another, dots, case, unicode,
    the byte limit), and under no listed prefix of another kind than its own."""
    listed = {
        "step": keys.steps_prefix,
        "inbox": keys.inbox_prefix,
        "task": keys.tasks_prefix,
        "post": keys.posts_prefix,
        "dedup": keys.dedup_prefix,
    }
    for actor_id in _IDS:
        validate_actor_id(actor_id)
        for kind, key in _keys_of(actor_id).items():
            assert keys.actor_id_of(key) == actor_id, key
            assert (keys.step_of(key) == 12) == (kind == "step"), key
            assert len(key.encode()) <= keys.LONGEST_KEY, key
            for other in _IDS:
                assert (other == actor_id) == key.startswith(keys.actor_prefix(other)), (key, other)
            under = {name for name, prefix in listed.items() if key.startswith(prefix(actor_id))}
            own = {"failed": {"task"}, "outcome": {"dedup"}}.get(kind, {kind} & set(listed))
            assert under == own, (kind, key, under)


def test_every_key_of_the_layout_starts_with_a_root_name_and_sorts_by_number() -> None:
    """K08: a due-index entry with an empty id or timer key taken. K13: ``ROOT_NAMES`` without
    ``mail-key`` (a folder holding only it taken by ``vactor`` for no store). K11: sub-task
    positions unpadded (position 10 listed before 2). Timer index entries read back as
    written, for every id."""
    roots = [
        keys.actor_prefix("a"),
        keys.timer_index_key(1, "a", "k", 2),
        keys.timer_claim_key("a"),
        keys.timer_runner_key("r"),
        keys.mail_seal_key(),
    ]
    assert {key.split("/")[0] for key in roots} == keys.ROOT_NAMES
    assert sorted(keys.task_key("a", "c", n) for n in (10, 2, 999_999, 100)) == [
        keys.task_key("a", "c", n) for n in (2, 10, 100, 999_999)
    ]
    assert sorted(keys.step_key("a", n) for n in (10, 2)) == [keys.step_key("a", 2), keys.step_key("a", 10)]
    due = f"{keys.TIMER_INDEX}{1:020d}-2"
    assert keys.timer_index_entry(f"{due}/a/k") == (1, "a", "k", 2)
    for unwritten in (f"{due}//k", f"{due}/a/", f"{due}//"):  # (no id, or no timer key: none is empty)
        assert keys.timer_index_entry(unwritten) is None, unwritten
    for actor_id in _IDS:
        for timer_key in ("k", "t" * MAX_TIMER_KEY_BYTES):
            for gen in (None, 0, 10**20 - 1):
                key = keys.timer_index_key(10**20 - 1, actor_id, timer_key, gen)
                assert keys.timer_index_entry(key) == (10**20 - 1, actor_id, timer_key, gen)


def _shop_with(handlers: str) -> Any:
    """A class whose methods are ``handlers`` (source lines), decorated as an actor class."""
    namespace: dict[str, Any] = {"vc": vc, "__name__": __name__}
    exec(f"class Shop:\n{handlers}", namespace)
    return vc.virtual_actor(namespace["Shop"])


@pytest.mark.parametrize(
    ("handlers", "message"),
    [
        (
            "    @vc.virtual_actor.on_event('paid')\n    def _on_paid(self, payload): pass\n",
            r"Shop\._on_paid is marked on_event\('paid'\) but its name starts with '_'.*rename it",
        ),
        (
            "    @vc.virtual_actor.on_event('paid')\n    def on_paid(self, payload): pass\n"
            "    @vc.virtual_actor.on_event('paid')\n    def on_payment(self, payload): pass\n",
            r"Shop: methods on_paid, on_payment are all marked on_event\('paid'\).*keep one",
        ),
    ],
    ids=["private", "two for one event"],
)
def test_an_event_handler_that_would_never_run_is_refused_at_definition(handlers: str, message: str) -> None:
    """A defect, fixed: a method marked ``on_event(name)`` whose name starts with ``_`` was left
    out of the actor's methods like any private one, so no event of that name was ever applied
    (``process_events()`` applied none, each stayed in the inbox) and nothing said why; of two
    methods marked for one event, the one defined last handled it, the other never ran."""
    with pytest.raises(ActorDefinitionError, match=message):
        _shop_with(handlers)


#: a default compared by identity (``opts is _ALL``): a call omitting it must get this very list
_ALL: list[str] = []


def _logged(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    return wrapper


@vc.virtual_actor
class Picker:
    __schema__ = 1  # (a dunder of the class's own)

    def __init__(self) -> None:
        self.count = 0

    def _bump(self) -> None:
        self.count += 1

    @_logged
    def wrapped(self, opts: list[str] = _ALL) -> bool:
        return opts is _ALL

    def nested(self, opts: list[str] = _ALL) -> bool:
        def is_all(given: list[str]) -> bool:
            return given is _ALL

        return is_all(opts)

    def seen(self, into: list[int] = [], *, tags: list[str] = []) -> int:  # noqa: B006
        into.append(1)
        return len(into)


def test_a_private_method_is_no_actor_method() -> None:
    """D44: methods whose name starts with one ``_`` collected as actor methods: a writer a
    durable timer could call, listed by ``vactor call`` among the actor's methods."""
    assert set(Picker.methods) == {"wrapped", "nested", "seen"}
    assert "_bump" not in Picker.definition.writer_names


def test_a_dunder_of_the_class_gets_the_plain_error_from_the_wrapper() -> None:
    """A03: the hint (``use Picker.cls.<name>``) given for a dunder the class has, as for its
    other attributes: protocols (pickle, copy, typing) probe dunders on the wrapper, and get
    the plain error, as for one the class lacks."""
    assert Picker.cls.__schema__ == 1
    with pytest.raises(AttributeError, match=r"^'ActorClass' object has no attribute '__schema__'$"):
        Picker.__schema__  # noqa: B018


def test_a_sentinel_default_named_in_a_wrapped_or_nested_function_keeps_its_identity(spec: StoreSpec) -> None:
    """D61, D62: the module objects a method names looked for in the wrapper alone (not the
    function ``functools.wraps`` wraps), or not in its nested functions: the sentinel default
    was copied for each call, and ``opts is _ALL`` was false for a call that omitted it."""
    init(spec)
    picker = Picker.get_or_create("d61")
    assert picker.wrapped.run() is True
    assert picker.nested.run() is True
    assert picker.wrapped.run(["x"]) is False


def test_fresh_defaults_leave_the_caller_s_arguments_as_they_were() -> None:
    """D58: ``FreshDefaults.fill`` writing the copies into the caller's ``kwargs``: a call
    applied again with them (a batch re-applied after a lost race) got the copy the first
    application had mutated, not a fresh one."""
    kwargs: dict[str, Any] = {}
    args, filled = with_fresh_defaults(Picker.cls.seen, (), kwargs)
    assert kwargs == {} and set(filled) == {"into", "tags"}
    assert Picker.cls.seen(None, *args, **filled) == 1
    args, filled = with_fresh_defaults(Picker.cls.seen, (), kwargs)
    assert Picker.cls.seen(None, *args, **filled) == 1


def test_an_event_name_no_event_can_carry_is_refused_at_definition() -> None:
    """D67: ``on_event`` taking a name ``send_event`` refuses (control characters, past the
    byte limit): a handler no event could ever reach."""
    for name in ("a\x00b", "e" * (MAX_ID_BYTES + 1)):
        with pytest.raises(ActorDefinitionError, match=r"on_event\(\): the event name"):
            vc.virtual_actor.on_event(name)


def test_get_actor_async_finds_an_actor_this_process_is_creating_as_get_actor_does(
    nowait_store: StoreSpec, gate: Any
) -> None:
    """A defect, fixed: ``get_actor_async`` of an actor this process is creating without
    waiting (``Settings(wait_for_init=False)``) loaded it from the store, where it is not yet:
    ``ActorNotFoundError``, where ``get_actor`` (whose async twin it is) finds it at once."""
    actor = Gated.get_or_create("async-pending", str(gate))
    assert vc.get_actor("async-pending") == actor
    assert asyncio.run(vc.get_actor_async("async-pending")) == actor
    gate.touch()
    assert actor.add.run(2) == 2


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's registry of actor classes as it was, after the test (its classes gone)."""
    monkeypatch.setattr(definition, "_REGISTRY", dict(definition._REGISTRY))
    monkeypatch.setattr(definition, "_TAGS", dict(definition._TAGS))


@pytest.mark.usefixtures("registry")
def test_an_actor_class_no_other_process_can_import_is_pickled_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A08: an actor class defined in a function pickled by reference (by a name its module
    does not hold: ``PicklingError``, as a pool task's argument); A09: rebuilt from its pickle
    without its serializer (a json actor class taken for a pickled one); A07: a script's actor
    class (module ``__main__``, which no other process has under that name) pickled by
    reference because the script's module holds it."""

    def make() -> Any:
        @vc.virtual_actor(serializer="json")
        class Local:
            pass

        return Local

    local = make()
    loaded = cloudpickle.loads(cloudpickle.dumps(local))
    assert loaded.cls is local.cls and loaded.name == local.name
    assert loaded.serializer == loaded.definition.serializer == "json"

    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("class Script:\n    pass\n", namespace)
    script = vc.virtual_actor(namespace["Script"])
    monkeypatch.setattr(sys.modules["__main__"], "Script", script, raising=False)
    reduced = script.__reduce__()
    assert isinstance(reduced, tuple) and reduced[1] == (script.cls, "pickle"), reduced


@pytest.mark.parametrize("how", ["sync", "async"])
def test_a_delete_waits_for_this_process_s_pending_creation_first(
    nowait_store: StoreSpec, gate: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A20, A21: ``delete_actor`` (or its async twin) not waiting for this process's creation
    still pending (``wait_for_init=False``): the delete, which follows the creation in the
    program, found no actor (``ActorNotFoundError``), and the actor was then created. The
    creation is let go only once the delete waits for it."""
    runtime = vc.get_runtime()
    waited = runtime.wait_created

    def let_go_then_wait(actor_id: str, *args: Any) -> Any:
        gate.touch()
        return waited(actor_id, *args)

    monkeypatch.setattr(runtime, "wait_created", let_go_then_wait)
    Gated.get_or_create(f"del-{how}", str(gate))
    if how == "sync":
        assert vc.delete_actor(f"del-{how}") is True
    else:
        assert asyncio.run(vc.delete_actor_async(f"del-{how}")) is True


def test_each_delete_of_an_id_made_again_has_a_key_of_its_own(spec: StoreSpec) -> None:
    """A14: the key of a delete that committed kept as one left in doubt: the next delete of
    the id (made again since) reused it, was answered as that delete ("deleted already",
    False), and deleted nothing."""
    init(spec)
    for _ in range(2):
        Tally.get_or_create("twice")
        assert vc.delete_actor("twice") is True
    assert vc.get_runtime().delete_keys == {}
