"""A batch job: a Dask cluster of worker processes updating shared actors.

    python examples/batch_dask.py                # embedded local store
    python examples/batch_dask.py s3://bucket/p  # or any storage URL ($VACTOR_STORAGE too)

The job counts words in many documents. Each Dask task handles one
document and adds its counts to one of a few shard actors (``words-0`` ..
``words-3``, by hash of the word). Tasks on different workers commit to the
same shards concurrently; the commit protocol serializes them per actor, and
each task passes an idempotency key (its document id), so a task that Dask
re-runs after a worker is lost does not count its document twice.

Here the cluster is a ``LocalCluster`` of separate processes on this
machine; with a ``distributed.Client`` pointed at a real scheduler the code
is the same, as long as every worker can reach the storage URL.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shlex
import sys
import uuid
import zlib
from typing import Any, cast

import vactor_cloud as vc

try:
    from distributed import WorkerPlugin
except ModuleNotFoundError as exc:  # (the README's install has no Dask: say which extra has it)
    sys.exit(f"examples/batch_dask.py needs Dask ({exc}): pip install 'vactor_cloud[dask]'")

SHARDS = 4
DOCUMENTS = 40
WORDS = ["actor", "bucket", "commit", "step", "head", "log", "task", "dask", "lambda", "state"]


@vc.virtual_actor
class WordCounts:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.documents = 0

    def add(self, counts: dict[str, int]) -> int:
        for word, n in counts.items():
            self.counts[word] = self.counts.get(word, 0) + n
        self.documents += 1
        return self.documents

    @vc.virtual_actor.readonly
    def totals(self) -> dict[str, int]:
        return dict(self.counts)


def shard_of(word: str) -> int:
    return zlib.crc32(word.encode()) % SHARDS


def make_document(n: int) -> str:
    rng = random.Random(n)
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))


class VactorInit(WorkerPlugin):
    """Runs ``vc.init(storage)`` once in every worker process, before it runs tasks."""

    def __init__(self, storage: str | None) -> None:
        self.storage = storage

    def setup(self, worker: Any) -> None:
        vc.init(self.storage)


def count_document(run: str, doc_id: int) -> int:
    """One Dask task: count one document's words and add them to the shard actors."""
    words = collections.Counter(make_document(doc_id).split())
    by_shard: dict[int, dict[str, int]] = collections.defaultdict(dict)
    for word, n in words.items():
        by_shard[shard_of(word)][word] = n
    for shard, counts in by_shard.items():
        actor = vc.get_actor(f"words-{run}-{shard}")
        actor.add.options(idempotency_key=f"doc-{doc_id}").run(counts)
    return sum(words.values())


def main(storage: str | None) -> None:
    from distributed import Client, LocalCluster

    vc.init(storage)
    run = uuid.uuid4().hex[:8]
    for shard in range(SHARDS):
        WordCounts.get_or_create(f"words-{run}-{shard}")

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",  # never listen beyond this machine
        dashboard_address="127.0.0.1:0",
    )
    try:
        with Client(cluster) as client:
            client.register_plugin(VactorInit(storage))
            futures = client.map(count_document, [run] * DOCUMENTS, range(DOCUMENTS))
            words_counted = sum(cast("list[int]", client.gather(futures)))  # dask's gather is untyped
    finally:
        cluster.close()

    expected: collections.Counter[str] = collections.Counter()
    for n in range(DOCUMENTS):
        expected.update(make_document(n).split())
    found: dict[str, int] = {}
    for shard in range(SHARDS):
        found.update(vc.get_actor(f"words-{run}-{shard}").totals.run())
    assert found == dict(expected), (found, expected)
    assert sum(found.values()) == words_counted
    print(f"{DOCUMENTS} documents, {words_counted} words counted by 2 Dask worker processes")
    for word, n in sorted(found.items(), key=lambda item: -item[1])[:5]:
        print(f"  {word:<8} {n}")
    where = f"--storage {shlex.quote(storage)} " if storage else ""  # not the default: say which store
    print(f"totals match; inspect a shard: vactor {where}history words-{run}-0")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "storage",
        nargs="?",
        default=os.environ.get("VACTOR_STORAGE"),
        help="storage URL or path (default: $VACTOR_STORAGE, else the embedded store)",
    )
    storage = parser.parse_args().storage
    if storage and storage.lower().startswith("memory:"):  # each process would have a store of its own
        parser.error(
            "memory:// is this process's memory only, and this example runs several processes: "
            "give it a path or a bucket URL"
        )
    main(storage)
