"""A script's own actor class, used by the processes of a ``multiprocessing`` pool it starts.

A child started by ``spawn`` (the default on macOS and Windows) or ``forkserver`` imports the
script again as ``__mp_main__``, so its classes spell another module than the parent's
``__main__``: each child's ``Counter.get_or_create`` raised ``ActorDefinitionError``
("already exists as an instance of __main__:Counter, not __mp_main__:Counter") on the actor
its parent made. Runs the script for real (a child process of the test), on the local store.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from child_processes import run_python

SCRIPT = """
import multiprocessing, sys
import vactor_cloud as vc


@vc.virtual_actor
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    @vc.virtual_actor.readonly
    def get(self) -> int:
        return self.n


def work(root: str) -> int:
    vc.init(root)
    Counter.get_or_create("c").incr.run()
    return vc.get_actor("c").incr.run()


if __name__ == "__main__":
    method, root = sys.argv[1], sys.argv[2]
    vc.init(root)
    Counter.get_or_create("c").incr.run()
    with multiprocessing.get_context(method).Pool(2) as pool:
        pool.map(work, [root] * 3)
    print(Counter.get_or_create("c").get.run())
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_scripts_actor_class_is_one_class_in_its_pools_children(tmp_path: Path, method: str) -> None:
    script = tmp_path / "counting.py"
    script.write_text(SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    out = run_python([str(script), method, (tmp_path / "store").as_uri()], env=env, cwd=tmp_path)
    assert out.split()[-1] == "7"
