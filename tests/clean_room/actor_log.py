"""An actor's step log (protocol.md, "Object layout", "Step objects", "Commit", "Reads")."""

from __future__ import annotations

import hashlib
import json
import pickle
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

import cloudpickle

from .envelope import Object, Refused, decode, encode


class Store(Protocol):
    def get(self, key: str) -> tuple[bytes, str] | None: ...
    def create(self, key: str, data: bytes) -> bool: ...
    def replace(self, key: str, data: bytes, version: str) -> None: ...
    def list(self, prefix: str, start_after: str | None = None) -> list[str]: ...
    def delete(self, key: str) -> None: ...


def step_key(actor: str, n: int) -> str:
    return f"actors/{actor}/steps/{n:020d}"


def is_step_name(name: str) -> bool:
    return len(name) == 20 and name.isascii() and name.isdigit()


@dataclass
class Step:
    n: int
    obj: Object

    @property
    def meta(self) -> dict[str, Any]:
        return self.obj.meta

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.meta.get("extra") or {})

    def loads(self, data: bytes) -> Any:
        return json.loads(data) if self.meta["serializer"] == "json" else cloudpickle.loads(data)

    def applied(self, sender: str, seq: int) -> bool:
        entry = self.extra.get("post_cursor", {}).get(sender)
        return entry is not None and entry[0] >= seq


class Log:
    @staticmethod
    def dumps(step: Step, value: Any) -> bytes:
        """``value`` in ``step``'s serializer."""
        if step.meta["serializer"] == "json":
            return json.dumps(value).encode()
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def __init__(self, store: Store, actor: str, *, signing_key: bytes | None = None) -> None:
        self.store, self.actor, self.signing_key = store, actor, signing_key

    def read(self, key: str) -> Object | None:
        found = self.store.get(key)
        return None if found is None else decode(key, found[0], signing_key=self.signing_key)

    def step(self, n: int) -> Step | None:
        obj = self.read(step_key(self.actor, n))
        if obj is None:
            return None
        if obj.meta.get("kind") != "step" or obj.meta.get("step") != n:
            raise Refused(f"step {n}: meta names step {obj.meta.get('step')}")
        return Step(n, obj)

    def watermark(self) -> int:
        gc = self.read(f"actors/{self.actor}/gc")
        return 0 if gc is None else int(gc.meta["min_step"])

    def newest(self) -> Step | None:
        """HEAD is where to start, the steps are the truth (Commit, step 1)."""
        head = self.read(f"actors/{self.actor}/HEAD")
        if head is not None and head.meta["step"] >= self.watermark():
            found = self.step(head.meta["step"])
            while found is not None:
                after = self.step(found.n + 1)
                if after is None:
                    return found
                found = after
        prefix = f"actors/{self.actor}/steps/"
        numbers = [int(k[len(prefix) :]) for k in self.store.list(prefix) if is_step_name(k[len(prefix) :])]
        return self.step(max(numbers)) if numbers else None

    def state(self, step: Step) -> Any:
        """The state a step holds (checking the class body it names, if stored by value)."""
        body = self.read(f"actors/{self.actor}/class/{step.meta['class']['sha']}")
        if body is not None and hashlib.sha256(body.parts["body"]).hexdigest() != step.meta["class"]["sha"]:
            raise Refused("class body does not match its sha")
        return step.loads(step.obj.parts["state"])

    def dedup_table(self, step: Step) -> list[list[Any]]:
        """The idempotency table: format 1 whole; format 2 a checkpoint plus a delta."""
        table = step.loads(step.obj.parts["dedup"]) if "dedup" in step.obj.parts else []
        if step.obj.version == 2:
            checkpoint = self.read(f"actors/{self.actor}/dedup/{step.meta['dedup_base']}")
            if checkpoint is None:
                raise Refused("a step names a missing checkpoint")
            table = [self.by_value(step, row) for row in step.loads(checkpoint.parts["table"])] + table
        merged: dict[str, list[Any]] = {}
        for row in table:  # a key in both: the later entry, in its place
            merged.pop(row[0], None)
            merged[row[0]] = list(row)
        return list(merged.values())

    def by_value(self, step: Step, row: list[Any]) -> list[Any]:
        """A checkpoint's row; one naming an outcome object ([key, time, ok, null, name], format
        3: "Outcome objects") as the row [key, time, ok, value] the object holds."""
        if len(row) != 5:
            return list(row)
        obj = self.read(f"actors/{self.actor}/dedup/outcomes/{row[4]}")
        if obj is None:
            raise Refused(f"a checkpoint names a missing outcome object {row[4]}")
        part = obj.parts["outcome"]
        if hashlib.sha256(part).hexdigest() != row[4].rpartition("-")[2] or obj.meta["kind"] != "outcome":
            raise Refused(f"outcome object {row[4]}: not what its name is the SHA-256 of")
        if obj.meta["serializer"] != step.meta["serializer"]:
            raise Refused(f"outcome object {row[4]}: another serializer")
        [(key, _, ok, value)] = step.loads(part)
        if key != "":
            raise Refused(f"outcome object {row[4]}: not one outcome")
        return [row[0], row[1], ok, value]

    def compact(self, keep_last: int) -> int:
        """Retention (protocol.md, "Retention"): HEAD to the newest step L, the ``gc`` watermark
        raised to L-keep_last+1 with the writers of the steps it passes recorded, then those
        steps deleted, oldest first. The new watermark."""
        newest = self.newest()
        assert newest is not None
        head_key, gc_key = f"actors/{self.actor}/HEAD", f"actors/{self.actor}/gc"
        head = {"kind": "head", "actor": self.actor, "step": newest.n, "class": newest.meta["class"]}
        self._put(head_key, encode(head_key, head, {}, signing_key=self.signing_key))
        old = self.watermark()
        watermark = max(old, newest.n - keep_last + 1)
        found = self.read(gc_key)
        record = json.loads(found.parts.get("compacted", b"[]")) if found else []
        for n in range(old, watermark):
            if (step := self.step(n)) is not None:
                record.append([n, step.meta["writer"]])
        record = sorted(record)[-512:]
        meta = {"kind": "gc", "actor": self.actor, "min_step": watermark, "time": time.time()}
        meta["recorded_from"] = record[0][0] if record else watermark
        compacted = json.dumps(record).encode()
        self._put(gc_key, encode(gc_key, meta, {"compacted": compacted}, signing_key=self.signing_key))
        for n in range(old, watermark):
            self.store.delete(step_key(self.actor, n))
        return watermark

    def _put(self, key: str, data: bytes) -> None:
        found = self.store.get(key)
        if found is None:
            assert self.store.create(key, data)
        else:
            self.store.replace(key, data, found[1])

    def create(
        self,
        class_name: str,
        state: Any,
        *,
        serializer: str = "pickle",
        after: Step | None = None,
        **extra: Any,
    ) -> Step | None:
        """Step 0 of a new actor of ``class_name`` (``module:QualName``), or the step after
        tombstone ``after``, with ``extra`` alone; its class stored by reference: a pickle
        (written by hand, protocol 2) of the call that imports it by name."""
        module, qualname = class_name.split(":")
        body = b"\x80\x02cvactor_cloud.definition\n_load_class_by_name\n"
        for text in (module, qualname):
            body += b"X" + len(text.encode()).to_bytes(4, "little") + text.encode()
        body += b"\x86R."
        sha = hashlib.sha256(body).hexdigest()
        key = f"actors/{self.actor}/class/{sha}"
        meta: dict[str, Any] = {"kind": "class", "name": class_name, "actor": self.actor}
        self.store.create(key, encode(key, meta, {"body": body}, signing_key=self.signing_key))
        call = {"method": "__init__", "call_id": secrets.token_hex(16), "ok": True, "time": time.time()}
        root = {"kind": "step", "class": {"sha": sha, "name": class_name}, "serializer": serializer}
        parent = Step(-1 if after is None else after.n, Object(root, {}, 1))
        return self.commit(parent, state, [call], extra, fresh=True)

    def commit(
        self,
        parent: Step,
        state: Any,
        calls: list[dict[str, Any]],
        extra: dict[str, Any] | None = None,
        parts: dict[str, bytes] | None = None,
        table: list[list[Any]] | None = None,
        fresh: bool = False,
    ) -> Step | None:
        """Put step parent+1 create-only, carrying the parent's class, ``extra`` (updated by
        ``extra``) and table (or ``table``, whole: format 1), with ``parts`` beside the state;
        ``fresh``: ``extra`` alone and no table (a tombstone, the creation after one). None:
        another writer has that number."""
        n = parent.n + 1
        meta = {
            "kind": "step",
            "step": n,
            "actor": self.actor,
            "parent": None if parent.n < 0 else parent.n,
            "class": parent.meta["class"],
            "serializer": parent.meta["serializer"],
            "writer": secrets.token_hex(16),
            "time": time.time(),
            "calls": calls,
            "extra": dict(extra or {}) if fresh else {**parent.extra, **(extra or {})},
        }
        parts = {"state": self.dumps(parent, state), **(parts or {})}
        version = parent.obj.version
        if table is not None and not fresh:  # "Step objects", part dedup: whole, in format 1
            if "dedup_base" in parent.meta:
                raise Refused("this clean room writes no checkpoint: a format-2 parent's table stays")
            parts["dedup"], version = self.dumps(parent, [tuple(row) for row in table]), 1
        elif not fresh and "dedup" in parent.obj.parts:
            parts["dedup"] = parent.obj.parts["dedup"]
        if not fresh and table is None and "dedup_base" in parent.meta:
            meta["dedup_base"] = parent.meta["dedup_base"]
        version = 1 if fresh else version
        key = step_key(self.actor, n)
        data = encode(key, meta, parts, version=version, signing_key=self.signing_key)
        if not self.store.create(key, data):
            step = self.step(n)
            if step is None or step.meta["writer"] != meta["writer"]:
                return None
        return Step(n, decode(key, data, signing_key=self.signing_key))
