"""Child process of test_memory_bound: touch many actors with large states, print the peak RSS.

The store synthesizes every actor's step 0 (a ``size``-byte state) when it is
read, so touching 100,000 actors costs no disk and no memory outside this
runtime's own cache: what the process holds is what the runtime keeps.
"""

from __future__ import annotations

import gc
import json
import pickle
import resource
import sys

import vactor_cloud as vc
from vactor_cloud.keys import actor_id_of, step_key, step_of
from vactor_cloud.log import ClassRef, StepRecord
from vactor_cloud.storage import Blob, MemoryStore, PutMode


@vc.virtual_actor
class Blob1M:
    def __init__(self) -> None:
        self.data = b""

    def touch(self) -> int:
        self.data = self.data[:-1] + b"!"
        return len(self.data)

    @vc.virtual_actor.readonly
    def size(self) -> int:
        return len(self.data)


class SyntheticStore(MemoryStore):
    """Every ``actors/<id>/steps/0`` exists, holding a state of ``size`` bytes; writes are kept."""

    def __init__(self, size: int) -> None:
        super().__init__("synthetic")
        self.size = size

    def _step0(self, actor_id: str) -> bytes:
        record = StepRecord(
            step=0,
            parent=None,
            class_ref=ClassRef("0" * 64, Blob1M.name),
            serializer="pickle",
            state=_state(self.size),
            writer="synthetic",
            time=0.0,
        )
        return record.encode(step_key(actor_id, 0), None)

    async def _get(self, key: str) -> Blob:
        actor_id = actor_id_of(key)
        if actor_id is not None and step_of(key) == 0:
            return Blob(self._step0(actor_id), "v0")
        return await super()._get(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if key.endswith("/HEAD"):
            return "h"  # HEAD moves are not what this measures
        return await super()._put(key, data, mode)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        actor_id = actor_id_of(prefix)
        if actor_id is not None and prefix.endswith("/steps/"):
            keys = [step_key(actor_id, 0), *await super()._list(prefix, start_after, None)]
            keys = sorted(k for k in keys if start_after is None or k > start_after)
            return keys if limit is None else keys[:limit]
        return await super()._list(prefix, start_after, limit)


def _peak_kb() -> int:
    """This process's peak resident set, in KiB.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``execve``, so a child
    started from a big parent (a pytest worker of 300 MB) reports the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _state(size: int) -> bytes:
    return pickle.dumps({"data": b"x" * size})


def main(count: int, size: int, writes_every: int) -> None:
    vc.init(SyntheticStore(size))
    before = _peak_kb()
    for i in range(count):
        handle = vc.get_actor(f"a{i}")
        if writes_every and i % writes_every == 0:
            assert handle.touch.run() == size
        else:
            assert handle.size.run() == size
    gc.collect()
    actors, cached = vc.get_runtime().cached()
    peak = _peak_kb()
    print(json.dumps({"before_kb": before, "peak_kb": peak, "cached_actors": actors, "cached_bytes": cached}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
