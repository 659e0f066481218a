"""The suite's known-long tests start first under ``--dist worksteal``, one share per worker
(``slow_first``, called from conftest's ``pytest_collection_modifyitems``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from slow_first import DURATIONS_FILE, known_durations, load_known_durations, slow_first, worksteal_slices
from xdist.scheduler import WorkStealingScheduling


@dataclass(eq=False)
class _Node:
    """What worksteal's scheduler asks of a worker: the tests it was sent, in order."""

    gateway: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(id="gw"))
    shutting_down: bool = False
    sent: list[int] = field(default_factory=list)

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += indices

    def shutdown(self) -> None:  # (no more tests for it: it runs what it was sent)
        pass


class _TxConfig:
    def __init__(self, workers: int) -> None:
        self.workers = workers

    def getvalue(self, name: str) -> list[str]:
        assert name == "tx"
        return [f"{self.workers}*popen"]


@pytest.mark.parametrize(("count", "workers"), [(6470, 7), (100, 7), (10, 3), (5, 7), (13, 2)])
def test_the_slices_are_those_the_installed_worksteal_hands_out(count: int, workers: int) -> None:
    scheduler = WorkStealingScheduling(_TxConfig(workers))
    nodes = [_Node() for _ in range(workers)]
    collection = [f"t{i}" for i in range(count)]
    for node in nodes:
        scheduler.add_node(node)
        scheduler.add_node_collection(node, collection)
    scheduler.schedule()
    assert [len(node.sent) for node in nodes] == worksteal_slices(count, workers)
    assert [i for node in nodes for i in node.sent] == list(range(count))  # contiguous, in order


def test_the_longest_tests_lead_the_slices_and_every_other_test_keeps_its_order() -> None:
    ids = [f"t{i:02d}" for i in range(30)]
    seconds = {"t29": 50.0, "t03": 40.0, "t17": 30.0, "t08": 20.0, "t11": 15.0, "t20": 5.0, "gone": 99.0}
    order = slow_first(ids, ids, seconds, 3)
    assert sorted(order) == ids  # the same tests, each once
    slices, start = [], 0
    for size in worksteal_slices(30, 3):
        slices.append(order[start : start + size])
        start += size
    # longest first, each to the least loaded slice: 50 | 40 | 30 + 20; then 15 to the 40, 5 to the 50
    assert [piece[:2] for piece in slices] == [["t29", "t20"], ["t03", "t11"], ["t17", "t08"]]
    rest = [i for i in order if i not in seconds]
    assert rest == [i for i in ids if i not in seconds]
    for piece in slices:  # the known ones lead
        flags = [i in seconds for i in piece]
        assert flags == sorted(flags, reverse=True)


def test_a_modules_long_tests_stay_together_on_one_worker() -> None:
    """(Spread over the workers, a module's fixtures would be made on each: its module-scoped
    ones, its lane's server.)"""
    ids = [f"tests/test_{m}.py::test_{i}" for m in "abcdef" for i in range(10)]
    seconds = {ids[1]: 10.0, ids[5]: 30.0, ids[12]: 25.0, ids[25]: 20.0, ids[28]: 1.0}
    seconds |= {ids[30]: 40.0, ids[40]: 40.0, ids[50]: 40.0}
    order = slow_first(ids, ids, seconds, 2)
    assert sorted(order) == sorted(ids)
    # a, d, e, f: 40 s each, b: 25, c: 21 -> a, e, b to the first slice; d, f, c to the second
    assert order[:5] == [ids[1], ids[5], ids[40], ids[12], ids[0]]
    assert order[30:34] == [ids[30], ids[50], ids[25], ids[28]]


def test_a_module_holding_most_of_the_long_tests_is_spread_in_pieces() -> None:
    """(All of a run's long tests in one module, as when one file is run: on one worker, they
    would run one after the other while the others stole only short tests.)"""
    ids = [f"tests/test_a.py::test_{i}" for i in range(20)]
    seconds = dict.fromkeys(ids[:8], 10.0)
    order = slow_first(ids, ids, seconds, 2)  # pieces of at most 80 / 4 = 20 s: two tests each
    assert sorted(order) == sorted(ids)
    assert [order[:4], order[10:14]] == [ids[0:2] + ids[4:6], ids[2:4] + ids[6:8]]


def test_more_known_tests_than_a_slice_holds_still_places_each_once() -> None:
    ids = [f"t{i}" for i in range(5)]
    order = slow_first(ids, ids, {i: float(n) for n, i in enumerate(ids)}, 7)
    assert sorted(order) == ids
    assert order == ["t4", "t3", "t2", "t1", "t0"]  # slices of 0 and 1: longest first across them


def test_durations_lines_sum_their_phases_and_skip_the_rest() -> None:
    text = (
        "# a comment\n"
        "12.50s call     tests/test_a.py::test_x[moto-a b]\n"
        " 0.50s setup    tests/test_a.py::test_x[moto-a b]\n"
        "3.00s teardown tests/test_b.py::test_y\n"
        "=== slowest 3 durations ===\n"
    )
    expected = {"tests/test_a.py::test_x[moto-a b]": 13.0, "tests/test_b.py::test_y": 3.0}
    assert known_durations(text) == expected


def test_the_suites_list_names_its_long_tests() -> None:
    known = load_known_durations()
    assert len(known) >= 100, DURATIONS_FILE
    assert all(test_id.startswith("tests/") and "::" in test_id for test_id in known)


@dataclass
class _Item:
    nodeid: str


class _WorkerConfig:
    """The suite's config as an xdist worker (``workerinput``) or not (None) sees it: its own
    ``--dist`` is "no" whatever the run's."""

    def __init__(self, real: pytest.Config, workerinput: dict[str, object] | None) -> None:
        self.real = real
        self.workerinput = workerinput
        self.hook = real.hook

    def getoption(self, name: str, default: object = None) -> object:
        return "no" if name == "dist" else self.real.getoption(name, default)

    def getini(self, name: str) -> object:
        return self.real.getini(name)


def _our_conftest(config: pytest.Config) -> Any:
    """tests/conftest.py as pytest loaded it: ``import conftest`` gave, in some workers,
    tests/ray_compat/conftest.py (the one a worker had loaded last under that name)."""
    path = Path(__file__).with_name("conftest.py").resolve()
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) and Path(plugin.__file__).resolve() == path:
            return plugin
    raise AssertionError(f"pytest has not loaded {path}")


def test_each_worker_is_told_the_runs_dist_mode(pytestconfig: pytest.Config) -> None:
    conftest = _our_conftest(pytestconfig)
    workerinput: dict[str, object] = {"workercount": 7}
    options = {"dist": "worksteal"}
    node = SimpleNamespace(workerinput=workerinput, config=SimpleNamespace(getoption=options.get))
    conftest.pytest_configure_node(node)
    assert workerinput == {"workercount": 7, "vactor_dist": "worksteal"}


@pytest.mark.parametrize(
    "workerinput",
    [
        {"workercount": 4, "vactor_dist": "worksteal"},
        {"workercount": 4, "vactor_dist": "load"},
        {"workercount": 4},
        None,
    ],
    ids=["worksteal", "load", "mode-not-passed", "no-xdist"],
)
def test_the_collection_hook_reorders_only_worksteal_workers_collections(
    pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch, workerinput: dict[str, object] | None
) -> None:
    longest = max(load_known_durations().items(), key=lambda kv: kv[1])[0]
    items = [_Item(f"tests/test_nowhere.py::test_{i}") for i in range(20)] + [_Item(longest)]
    monkeypatch.setenv("VACTOR_LANES", "memory")
    given = list(items)
    _our_conftest(pytestconfig).pytest_collection_modifyitems(_WorkerConfig(pytestconfig, workerinput), items)  # type: ignore[arg-type]
    if workerinput is not None and workerinput.get("vactor_dist") == "worksteal":
        assert items[0] == _Item(longest)
        assert items[1:] == given[:-1]
    else:
        assert items == given
