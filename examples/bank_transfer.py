"""Two bank accounts, many concurrent transfers from several processes, money conserved.

    python examples/bank_transfer.py                # embedded local store
    python examples/bank_transfer.py s3://bucket/p  # or any storage URL ($VACTOR_STORAGE too)

Each account is one actor, so each account's balance is linearizable: every
withdrawal and deposit is a commit of that account's log. A transfer touches
*two* actors, and vactor_cloud has no transaction across actors, so a
transfer is a small saga with a durable record at every step:

1. ``src.withdraw(tid, dst, amount)``: debits and records ``tid`` as
   *in flight* in the source account, atomically with the debit (one commit);
2. ``dst.deposit(tid, amount)``: credits once per ``tid`` (the destination
   remembers the ids it applied);
3. ``src.settle(tid)``: removes ``tid`` from in flight.

What is guaranteed, at every committed step, even if a process dies between
two steps: ``sum(balances) + sum(in-flight amounts) == initial total``; a
transfer is debited at most once and credited at most once; no balance goes
negative. What is *not* guaranteed: that both accounts change at the same
instant. A reader may see money in flight; :func:`recover` (run it after a
crash, or on a schedule) finishes every in-flight transfer, idempotently.
Retried calls also carry idempotency keys, so a caller that lost a response
gets the first call's answer instead of a second attempt.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shlex
import uuid

import vactor_cloud as vc

INITIAL = 1_000
WORKERS = 4
TRANSFERS_PER_WORKER = 15


@vc.virtual_actor
class Account:
    def __init__(self, owner: str, balance: int) -> None:
        self.owner = owner
        self.balance = balance
        self.in_flight: dict[str, list[object]] = {}  # tid -> [dst, amount], debited, not yet settled
        self.settled: list[str] = []  # tids whose saga finished, newest last (bounded below)
        self.received: set[str] = set()  # tids credited here: a deposit applies once per tid

    def withdraw(self, tid: str, dst: str, amount: int) -> str:
        if tid in self.in_flight or tid in self.settled:
            return "debited"  # a retry of a debit that already happened
        if amount > self.balance:
            return "insufficient"
        self.balance -= amount
        self.in_flight[tid] = [dst, amount]
        return "debited"

    def deposit(self, tid: str, amount: int) -> bool:
        if tid in self.received:
            return False
        self.received.add(tid)
        self.balance += amount
        return True

    def settle(self, tid: str) -> None:
        if self.in_flight.pop(tid, None) is not None:
            self.settled = [*self.settled[-999:], tid]

    @vc.virtual_actor.readonly
    def snapshot(self) -> dict[str, object]:
        return {"balance": self.balance, "in_flight": dict(self.in_flight), "received": len(self.received)}


def transfer(src: str, dst: str, amount: int, tid: str, *, crash_after_debit: bool = False) -> str:
    """Move ``amount`` from ``src`` to ``dst``; safe to call again with the same ``tid``."""
    # get_actor cannot know the class, so its methods return Any: say what this one returns.
    debit: str = vc.get_actor(src).withdraw.options(idempotency_key=f"{tid}:debit").run(tid, dst, amount)
    if debit != "debited":
        return debit
    if crash_after_debit:
        return "crashed"  # as if the process died here: recover() finishes the transfer
    vc.get_actor(dst).deposit.options(idempotency_key=f"{tid}:credit").run(tid, amount)
    vc.get_actor(src).settle.options(idempotency_key=f"{tid}:settle").run(tid)
    return "done"


def recover(account_ids: list[str]) -> int:
    """Finish every transfer left in flight (after a crash); returns how many it finished."""
    finished = 0
    for account_id in account_ids:
        pending = vc.get_actor(account_id).snapshot.run()["in_flight"]
        for tid, (dst, amount) in pending.items():
            vc.get_actor(dst).deposit.options(idempotency_key=f"{tid}:credit").run(tid, amount)
            vc.get_actor(account_id).settle.options(idempotency_key=f"{tid}:settle").run(tid)
            finished += 1
    return finished


def worker(storage: str | None, accounts: list[str], seed: int) -> dict[str, int]:
    """One process sending transfers both ways; the last one of worker 0 'crashes' after its debit."""
    vc.init(storage)
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for n in range(TRANSFERS_PER_WORKER):
        src, dst = rng.sample(accounts, 2)
        crash = seed == 0 and n == TRANSFERS_PER_WORKER - 1
        outcome = transfer(
            src, dst, rng.randint(1, 300), f"w{seed}-{n}-{uuid.uuid4().hex[:8]}", crash_after_debit=crash
        )
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    vc.shutdown()
    return outcomes


def main(storage: str | None) -> None:
    vc.init(storage)
    run = uuid.uuid4().hex[:8]
    accounts = [f"alice-{run}", f"bob-{run}"]
    for account_id in accounts:
        Account.get_or_create(account_id, account_id.split("-")[0], INITIAL)

    # Spawned processes: what separate machines (or function instances) would be.
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        results = pool.starmap(worker, [(storage, accounts, seed) for seed in range(WORKERS)])
    totals: dict[str, int] = {}
    for outcomes in results:
        for outcome, count in outcomes.items():
            totals[outcome] = totals.get(outcome, 0) + count
    print(f"transfers: {dict(sorted(totals.items()))}")

    snapshots = [vc.get_actor(a).snapshot.run() for a in accounts]
    in_flight = sum(amount for s in snapshots for _, amount in s["in_flight"].values())
    balances = sum(s["balance"] for s in snapshots)
    assert balances + in_flight == 2 * INITIAL, (balances, in_flight)
    print(f"before recovery: balances {balances} + in flight {in_flight} == {2 * INITIAL}")

    print(f"recovered {recover(accounts)} in-flight transfer(s)")
    snapshots = [vc.get_actor(a).snapshot.run() for a in accounts]
    assert all(not s["in_flight"] for s in snapshots)
    assert all(s["balance"] >= 0 for s in snapshots)
    assert sum(s["balance"] for s in snapshots) == 2 * INITIAL
    assert sum(s["received"] for s in snapshots) == totals.get("done", 0) + totals.get("crashed", 0)
    for account_id, s in zip(accounts, snapshots, strict=True):
        print(f"{account_id}: balance {s['balance']}")
    print(f"invariant holds: total {2 * INITIAL}")
    where = f"--storage {shlex.quote(storage)} " if storage else ""  # not the default: say which store
    print(f"see what happened: vactor {where}history {accounts[0]}")


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
