"""Durable timers (protocol.md, "Timers"): the table in ``extra["timers"]``, the due index, and a
runner that fires one due entry."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .actor_log import Log, Step, Store

#: (state, method, args, kwargs) -> result, changing state in place
Apply = Callable[[Any, str, tuple[Any, ...], dict[str, Any]], Any]


def due_ms(due: float) -> int:
    return math.ceil(due * 1000)


def index_key(due: float, actor: str, key: str, gen: int | None) -> str:
    """The entry of one occurrence; ``gen`` None: the name before generations."""
    return f"timers/{due_ms(due):020d}{'' if gen is None else f'-{gen}'}/{actor}/{key}"


def schedule(
    log: Log,
    base: Step,
    key: str,
    method: str,
    args: tuple[Any, ...],
    due: float,
    *,
    every: float | None = None,
    gen: bool = True,
) -> Step:
    """Commit step ``base + 1`` arming a timer (recurring ``every`` seconds, if given), then
    index it (``gen`` False: as a writer from before generations)."""
    generation = base.n + 1 if gen else None
    if base.meta["serializer"] == "json":
        p = json.dumps([list(args), {}])
    else:
        p = base64.b64encode(cloudpickle.dumps((args, {}))).decode()
    row = {"due": due, "method": method, "p": p, "at": time.time()} | ({"g": generation} if gen else {})
    if every is not None:
        row["every"] = every
    call = {
        "method": "__vactor_schedule_timer__",
        "call_id": secrets.token_hex(16),
        "ok": True,
        "time": time.time(),
    }
    step = log.commit(base, log.state(base), [call], {"timers": {**base.extra.get("timers", {}), key: row}})
    assert step is not None, "another writer took the step"
    assert log.store.create(index_key(due, log.actor, key, generation), b"")
    return step


@dataclass
class Entry:
    key: str
    due_ms: int
    actor: str
    timer: str
    gen: int | None


def entries(store: Store) -> list[Entry]:
    """The due index, earliest first (both spellings: with the generation, and without)."""
    found = []
    for key in store.list("timers/"):
        parts = key.split("/")
        if len(parts) != 4:
            continue
        due, _, gen = parts[1].partition("-")
        if len(due) == 20 and due.isdigit() and (gen == "" or gen.isdigit()):
            found.append(Entry(key, int(due), parts[2], parts[3], int(gen) if gen else None))
    return found


def fire(log: Log, entry: Entry, apply: Apply) -> Step | None:
    """Fire the occurrence ``entry`` names if the newest step holds it due: one step removes the
    timer (a recurring one: moves it to its first occurrence after now, indexed after the
    commit) and runs its method. The entry is deleted unless the occurrence is still to come.
    The firing step, or None."""
    newest = log.newest()
    assert newest is not None
    timers = dict(newest.extra.get("timers", {}))
    row = timers.get(entry.timer)
    if row is None or due_ms(row["due"]) != entry.due_ms or row.get("g") != entry.gen:
        log.store.delete(entry.key)  # fired, cancelled or rescheduled: stale
        return None
    now = time.time()
    if row["due"] > now:
        return None  # not due yet
    if newest.meta["serializer"] == "json":
        args, kwargs = json.loads(row["p"])
    else:
        args, kwargs = cloudpickle.loads(base64.b64decode(row["p"]))
    state = log.state(newest)
    try:
        result, ok = apply(state, row["method"], tuple(args), dict(kwargs)), True
    except Exception as error:
        result, ok, state = error, False, log.state(newest)
    del timers[entry.timer]
    if "every" in row:
        skipped = math.floor(max(0.0, now - row["due"]) / row["every"]) + 1
        timers[entry.timer] = {**row, "due": row["due"] + skipped * row["every"], "g": newest.n + 1}
    table_key = f"\0timer\0{entry.timer}\0{entry.due_ms}"
    call = {
        "method": row["method"],
        "call_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{table_key}\0{row['at']!r}").hex,
        "ok": ok,
        "time": now,
        "key": table_key,
        "name": f"timer {entry.timer}",
        "result": repr(result)[:100],
    }
    step = log.commit(newest, state, [call], {"timers": timers})
    if step is not None:
        if "every" in row:
            again = timers[entry.timer]
            log.store.create(index_key(again["due"], log.actor, entry.timer, again["g"]), b"")
        log.store.delete(entry.key)
    return step


def owner(actor: str, runners: list[str]) -> str:
    """Rendezvous hashing: the runner of the highest weight (then the highest id) fires ``actor``."""

    def weight(runner: str) -> tuple[int, str]:
        digest = hashlib.blake2b(f"{actor}\0{runner}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big"), runner

    return max(runners, key=weight)


def heartbeat(store: Store, runner: str, lease: float) -> None:
    """Join the runners of no shard (``timer-runners/<id>``: plain JSON, no envelope)."""
    body = {"runner": runner, "until": time.time() + lease, "lease": lease, "group": "all"}
    assert store.create(f"timer-runners/{runner}", json.dumps(body).encode())


def claim(store: Store, actor: str, runner: str, lease: float) -> bool:
    body = {"runner": runner, "until": time.time() + lease}
    return store.create(f"timer-claims/{actor}", json.dumps(body).encode())
