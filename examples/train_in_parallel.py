"""Train models in parallel from an actor method: the seed's sub-workflow use case.

    python examples/train_in_parallel.py                      # embedded store, thread pool
    python examples/train_in_parallel.py --dask               # local Dask cluster, worker processes
    python examples/train_in_parallel.py s3://bucket/prefix   # any storage URL (or a path)

The ``Experiment`` actor's ``sweep`` method fans out one child per
hyper-parameter setting with ``vactor_cloud.subtask``. Each finished child's
result is checkpointed under the actor before the sweep commits, and the call
carries an idempotency key: if this script is killed mid-sweep, running it
again trains only the models that had not finished.
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import Any

import vactor_cloud as vc


def train(config: dict[str, Any]) -> dict[str, Any]:
    """Fit y = w*x + b to noisy data by gradient descent; a stand-in for real training."""
    rng = random.Random(config["seed"])
    data = [(x / 50, 3.0 * x / 50 + 1.0 + rng.gauss(0, 0.1)) for x in range(-50, 51)]
    w = b = 0.0
    for _ in range(config["epochs"]):
        grad_w = sum(2 * (w * x + b - y) * x for x, y in data) / len(data)
        grad_b = sum(2 * (w * x + b - y) for x, y in data) / len(data)
        w -= config["rate"] * grad_w
        b -= config["rate"] * grad_b
    loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
    return {**config, "w": round(w, 3), "b": round(b, 3), "loss": loss}


@vc.virtual_actor
class Experiment:
    def __init__(self) -> None:
        self.trials: list[dict[str, Any]] = []

    def sweep(self, configs: list[dict[str, Any]]) -> dict[str, Any]:
        # The children run in parallel on the executor chosen at init (threads by default).
        results = vc.subtask(train, max_retries=2).map(configs)
        self.trials.extend(results)
        return min(results, key=lambda r: r["loss"])

    @vc.virtual_actor.readonly
    def leaderboard(self, top: int = 3) -> list[dict[str, Any]]:
        return sorted(self.trials, key=lambda r: r["loss"])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("storage", nargs="?", help="storage URL or path (default: the embedded store)")
    parser.add_argument("--dask", action="store_true", help="run the children on a local Dask cluster")
    parser.add_argument("--experiment", default="lr-sweep", help="actor id of the experiment")
    args = parser.parse_args()

    client = cluster = None
    if args.dask:
        try:
            from dask.distributed import Client, LocalCluster
        except ModuleNotFoundError as exc:  # (the README's install has no Dask: say which extra has it)
            sys.exit(f"--dask needs Dask ({exc}): pip install 'vactor_cloud[dask]'")

        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",  # scheduler, workers and dashboard on loopback only
            dashboard_address="127.0.0.1:0",
        )
        client = Client(cluster, timeout=60)
    vc.init(args.storage, subtask_executor=client)
    try:
        experiment = Experiment.get_or_create(args.experiment)
        configs = [
            {"name": f"model-{i}", "rate": rate, "epochs": epochs, "seed": i}
            for i, (rate, epochs) in enumerate((r, e) for r in (0.01, 0.05, 0.2, 0.5) for e in (20, 80))
        ]
        # The key makes the call's id stable: a re-run after a crash reuses finished children.
        best = experiment.sweep.options(idempotency_key=f"{args.experiment}-round-1").run(configs)
        print(f"trained {len(configs)} models on {'Dask' if client else 'threads'}")
        print(
            f"best model: {best['name']} (rate={best['rate']}, epochs={best['epochs']})",
            f"loss={best['loss']:.4f}",
        )
        for row in experiment.leaderboard.run():
            print(f"  {row['name']}: w={row['w']} b={row['b']} loss={row['loss']:.4f}")
    finally:
        vc.shutdown()
        if client is not None and cluster is not None:
            client.close(timeout=30)
            cluster.close(timeout=30)


if __name__ == "__main__":
    main()
