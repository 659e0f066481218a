"""States, arguments and outcomes that hold code pickled by value, read by another Python version.

cloudpickle stores a lambda, a function or class of a script's ``__main__`` and a class defined
in a function by value, with their bytecode. A state holding an instance of a script's
dataclass, written by Python 3.11 and read by 3.12, crashed the reader (SIGSEGV) the first
time one of its methods ran; 3.13 raised ``SystemError: unknown opcode 135``. Class bodies
already recorded their Python; states, arguments, outcomes, events and timers did not. Now each
code object loads only on the Python that compiled it (``vactor_cloud/bytecode.py``): another
raises :class:`vc.OtherPythonError` before any of its code exists.

Another Python is simulated by pickling under another tag (``bytecode._CONSTRUCTOR``); the
real thing runs when ``VACTOR_OTHER_PYTHON`` names an interpreter of another version with this
project's dependencies (the last test).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import vactor_cloud as vc
from vactor_cloud import _sync, bytecode, codec
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


def _local_class() -> type:
    @dataclass
    class Item:  # defined in a function: pickled by value, with its methods' code
        qty: int

        def total(self, price: int) -> int:
            return self.qty * price

    return Item


Item = _local_class()


@pytest.fixture
def other_python(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pickles made in the block are another Python's (``cpython-99``)."""
    monkeypatch.setattr(bytecode, "_CONSTRUCTOR", bytecode._checked_constructor("cpython-99"))
    yield


def test_code_pickled_by_another_python_is_refused_before_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bytecode.loads(bytecode.dumps(Item(3))).total(2) == 6  # this Python's: loads and runs
    monkeypatch.setattr(bytecode, "_CONSTRUCTOR", bytecode._checked_constructor("cpython-99"))
    data = bytecode.dumps([Item(3), lambda x: x + 1])
    with pytest.raises(vc.OtherPythonError) as caught:
        bytecode.loads(data)
    assert isinstance(caught.value, ImportError)  # "not loadable here", as a class this process lacks
    message = str(caught.value)
    assert "cpython-99" in message and "__main__" in message, message
    # An earlier release (plain pickle.loads) is refused too, with the same words.
    with pytest.raises(AttributeError, match="CodeType compiled by cpython-99"):
        pickle.loads(data)


def test_plain_data_pickles_as_cloudpickle_does_and_code_costs_one_constructor() -> None:
    plain = {"a": [1, 2.5, "x", None], "b": (b"y", {3})}
    assert bytecode.dumps(plain) == cloudpickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)
    functions = [eval(f"lambda x: x + {i}") for i in range(20)]  # twenty code objects
    stock = cloudpickle.dumps(functions, protocol=pickle.HIGHEST_PROTOCOL)
    grown = len(bytecode.dumps(functions)) - len(stock)
    assert 0 < grown < 1024, grown  # the checked constructor, once (pickle's memo)
    assert [f(1) for f in bytecode.loads(bytecode.dumps(functions))] == list(range(1, 21))


@vc.virtual_actor
class Cart:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, qty: int) -> int:
        self.items.append(Item(qty))
        return len(self.items)

    def add_item(self, item: Any) -> int:
        self.items.append(item)
        return len(self.items)

    @vc.virtual_actor.readonly
    def total(self) -> int:
        return sum(item.total(2) for item in self.items)


def _as_written_by_another_python(actor_id: str, step: int) -> None:
    """Step ``step`` of ``actor_id`` written again as a Python whose tag is ``cpython-999`` would."""
    store = vc.get_runtime().store
    key = vc.get_runtime().log(actor_id).step_key(step)
    raw = _sync.sync(store.get(key)).data
    env = codec.decode(key, raw)
    mine = str(sys.implementation.cache_tag).encode()
    other = b"cpython-" + b"9" * (len(mine) - len(b"cpython-"))  # (same length: pickle counts bytes)
    assert mine in env.parts["state"]
    parts = {name: data.replace(mine, other) for name, data in env.parts.items()}
    meta = {k: v for k, v in env.meta.items() if k not in ("parts", "actor")}
    _sync.sync(store.put(key, codec.encode(key, meta, parts, version=int.from_bytes(raw[4:6], "big"))))


def test_a_state_written_by_another_python_is_refused_not_run(spec: StoreSpec) -> None:
    spec.init()
    cart = Cart.get_or_create("cart")
    assert cart.add.run(3) == 1  # the state holds the code of Item's methods
    steps = [entry.step for entry in cart.history()]
    _as_written_by_another_python("cart", max(steps))

    vc.shutdown()
    spec.init()  # a process of this Python, cold
    cart = Cart.get_or_create("cart")
    with pytest.raises(vc.OtherPythonError, match="cpython-9"):
        cart.total.run()
    with pytest.raises(vc.OtherPythonError, match="cpython-9"):
        cart.add.run(1)
    assert [entry.step for entry in cart.history()] == steps  # nothing applied


def test_an_argument_or_outcome_of_another_python_is_refused(
    spec: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec.init()
    cart = Cart.get_or_create("keyed")
    monkeypatch.setattr(bytecode, "_CONSTRUCTOR", bytecode._checked_constructor("cpython-99"))
    frozen = bytecode.dumps(((Item(3),), {}))
    monkeypatch.undo()
    with pytest.raises(vc.OtherPythonError):
        bytecode.loads(frozen)
    # This Python's own keyed outcome holding code loads again from the table (cold).
    assert cart.add_item.options(idempotency_key="k").run(Item(2)) == 1
    vc.shutdown()
    spec.init()
    assert Cart.get_or_create("keyed").add_item.options(idempotency_key="k").run(Item(2)) == 1
    assert Cart.get_or_create("keyed").total.run() == 4


WRITER = """
import sys
from dataclasses import dataclass
import vactor_cloud as vc

@dataclass
class Item:
    qty: int
    def total(self, price):
        return sum(i for i in range(self.qty)) + [self.qty * price for _ in range(2)][0]

@vc.virtual_actor
class Cart:
    def __init__(self):
        self.items = []
    def add(self, item):
        self.items.append(item)
        return len(self.items)
    @vc.virtual_actor.readonly
    def total(self):
        return sum(item.total(2) for item in self.items)

vc.init(sys.argv[2])
cart = Cart.get_or_create("cart")
if sys.argv[1] == "write":
    cart.add.run(Item(3))
try:
    print(cart.total.run())
except vc.OtherPythonError as exc:
    print("refused:", exc)
"""


@pytest.mark.skipif(not os.environ.get("VACTOR_OTHER_PYTHON"), reason="VACTOR_OTHER_PYTHON names none")
def test_a_script_state_read_by_a_real_other_python(tmp_path: Path) -> None:
    other = os.environ["VACTOR_OTHER_PYTHON"]
    script = tmp_path / "cart.py"
    script.write_text(WRITER)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    store = f"file://{tmp_path / 'store'}"

    def run(python: str, verb: str) -> subprocess.CompletedProcess[str]:
        command = [python, str(script), verb, store]
        return subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120)

    wrote = run(sys.executable, "write")
    assert wrote.returncode == 0 and wrote.stdout.strip() == "9", wrote
    read = run(other, "read")
    # before: the reader died of SIGSEGV (3.12) or raised SystemError (3.13)
    assert read.returncode == 0, read
    assert read.stdout.startswith("refused:") and str(sys.implementation.cache_tag) in read.stdout, read
