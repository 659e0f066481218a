"""External events (protocol.md, "External events"): an event sent into an actor's inbox, and a
drain that applies the pending ones in inbox order as keyed calls of one step."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .actor_log import Log, Step
from .envelope import encode

#: event name -> (the handling method's name, its body: (state, payload) -> result, changing state)
Handlers = dict[str, tuple[str, Callable[[Any, Any], Any]]]


@dataclass
class Event:
    key: str
    event_id: str
    name: str
    payload: bytes
    serializer: str
    time: float
    sender: str
    seq: int

    @property
    def order(self) -> tuple[float, str, int, str]:
        return (self.time, self.sender, self.seq, self.event_id)

    @property
    def table_key(self) -> str:
        return f"\0event\0{self.name}\0{self.event_id}"

    @property
    def call_id(self) -> str:
        stamp = f"{self.key}\0{self.name}\0{self.time!r}\0{self.sender}\0{self.seq}"
        return uuid.uuid5(uuid.NAMESPACE_URL, stamp).hex

    def value(self) -> Any:
        return json.loads(self.payload) if self.serializer == "json" else cloudpickle.loads(self.payload)


def send(
    log: Log,
    event_id: str,
    name: str,
    payload: Any,
    *,
    sender: str,
    seq: int,
    sent: float,
    serializer: str = "json",
) -> bool:
    """Put the event create-only (a JSON payload, or pickled, or for another ``serializer`` the
    payload's bytes as given); False: an event waits under that id already."""
    key = f"actors/{log.actor}/inbox/{event_id}"
    meta = {"kind": "event", "actor": log.actor, "event_id": event_id, "name": name}
    meta |= {"serializer": serializer, "time": sent, "sender": sender, "seq": seq}
    if serializer == "json":
        data = json.dumps(payload, separators=(",", ":")).encode()
    else:
        data = cloudpickle.dumps(payload) if serializer == "pickle" else payload
    return log.store.create(key, encode(key, meta, {"payload": data}, signing_key=log.signing_key))


def pending(log: Log) -> list[Event]:
    """The inbox's events in inbox order: (sender time, sender, seq), then the id."""
    found = []
    for key in log.store.list(f"actors/{log.actor}/inbox/"):
        obj = log.read(key)
        if obj is None:
            continue  # applied and deleted meanwhile
        m = obj.meta
        assert m["kind"] == "event" and key.endswith("/inbox/" + m["event_id"]), key
        found.append(
            Event(
                key,
                m["event_id"],
                m["name"],
                obj.parts["payload"],
                m["serializer"],
                m["time"],
                m["sender"],
                m["seq"],
            )
        )
    return sorted(found, key=lambda e: e.order)


def recorded(step: Step, error: Exception) -> Any:
    """An exception as the table holds it: itself (pickle), or its type, repr and args (json)."""
    if step.meta["serializer"] != "json":
        return error
    kind = type(error)
    return {"type": f"{kind.__module__}.{kind.__qualname__}", "repr": repr(error), "args": list(error.args)}


def drain(log: Log, base: Step, handlers: Handlers, *, clean: bool = True) -> Step | None:
    """Step ``base + 1`` applying every pending event with a handler, once (its table key is
    recorded with the outcome in the same step), then (``clean``: else as a writer that died
    after its commit) the applied ones deleted, and those the table already knew (applied by
    an earlier step, their objects left behind). None: nothing to apply."""
    table = log.dedup_table(base)
    known = {row[0] for row in table}
    state, now, calls, done = log.state(base), time.time(), [], []
    for event in pending(log):
        if event.table_key in known:
            done.append(event.key)
            continue
        if event.name not in handlers:
            continue  # kept for a class that handles it
        method, body = handlers[event.name]
        before = copy.deepcopy(state)
        try:
            result, ok = body(state, event.value()), True
        except Exception as error:
            result, ok, state = error, False, before
        table.append([event.table_key, now, ok, result if ok else recorded(base, result)])
        known.add(event.table_key)
        calls.append({"method": method, "call_id": event.call_id, "ok": ok, "time": now})
        calls[-1] |= {"key": event.table_key, "args": repr(event.value())[:100], "result": repr(result)[:100]}
        done.append(event.key)
    if not calls:
        return None
    step = log.commit(base, state, calls, table=table)
    assert step is not None, "another writer took the step"
    for key in done if clean else []:
        log.store.delete(key)
    return step
