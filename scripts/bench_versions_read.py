"""What a local store's read costs to remember its version (``LocalStore._remember_version``),
under its bound and past it (the oldest forgotten as others are read): microseconds a read.

    PYTHONPATH=. python scripts/bench_versions_read.py
"""

from __future__ import annotations

import tempfile
import time

from vactor_cloud.storage import _local
from vactor_cloud.storage._local import LocalStore


def per_read(store: LocalStore, keys: list[str]) -> float:
    """The best of five rounds: microseconds a remembered read of ``keys``."""
    identity = (1, 2, 3, 4, 5)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for key in keys:
            store._remember_version(key, identity, "0" * 32)
        best = min(best, (time.perf_counter() - started) / len(keys) * 1e6)
    return best


def main() -> None:
    bound = _local._VERSIONS_READ
    with tempfile.TemporaryDirectory() as root:
        store = LocalStore(root)
        print(f"one key read again:        {per_read(store, ['actors/a/HEAD'] * 100_000):.2f} us")
        under = [f"actors/k{n}/HEAD" for n in range(bound - 1)]
        print(f"{len(under)} keys (under the bound): {per_read(store, under):.2f} us")
        past = [f"actors/k{n}/HEAD" for n in range(bound * 5 // 2)]
        print(f"{len(past)} keys (past the bound):  {per_read(store, past):.2f} us")


if __name__ == "__main__":
    main()
