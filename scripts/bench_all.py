"""Run ``vactor bench`` on every test backend: memory, local, moto, LocalStack, fake-gcs-server.

    .venv/bin/python scripts/bench_all.py [--profile quick] [--lanes memory,local,...] [--out DIR]

Servers come from the lanes in ``vactor_cloud.testing`` and bind 127.0.0.1
only. moto runs as its own ``moto_server`` process (the lane's threaded
server would share the benchmark's GIL and distort every number).
LocalStack is attached to, not started: export ``VACTOR_LOCALSTACK_ENDPOINT``
(``bash localstack/start-host.sh`` prints it). Each benchmark runs in a
fresh ``python -m vactor_cloud bench`` process; tables go to stdout and JSON
to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from vactor_cloud.testing._moto import S3EmulatorLane
from vactor_cloud.testing.lanes import Lane, LaneUnavailable, LocalLane, StoreSpec


class MotoProcessLane(S3EmulatorLane):
    """moto's S3 server in a separate process on 127.0.0.1."""

    name = "moto"

    def __init__(self) -> None:
        super().__init__()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100):
            try:
                opener.open(f"{self.endpoint}/moto-api/", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise LaneUnavailable("moto_server did not answer within 10 s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


def lane_named(name: str) -> Lane:
    if name == "local":
        return LocalLane()
    if name == "moto":
        return MotoProcessLane()
    if name == "localstack":
        from vactor_cloud.testing._localstack import LocalStackLane

        return LocalStackLane()
    if name == "fakegcs":
        from vactor_cloud.testing._fakegcs import FakeGCSLane

        return FakeGCSLane()
    raise SystemExit(f"unknown lane {name!r}")


def bench(spec: StoreSpec, profile: str, out: Path, label: str) -> int:
    command = [sys.executable, "-m", "vactor_cloud", "bench", spec.url, "--profile", profile]
    for key, value in spec.options.items():
        command += ["-o", f"{key}={json.dumps(value)}"]
    env = {**os.environ, **spec.env, "COLUMNS": "200"}
    print(f"== {label}: {spec.url}", flush=True)
    # the table, then the same rows as JSON: two runs would measure twice, so JSON only and a table from it
    path = out / f"{label}.json"
    with path.open("w") as sink:
        done = subprocess.run([*command, "--json"], env=env, timeout=3600, check=False, stdout=sink)
    code = done.returncode
    if code == 0:
        for row in json.loads(path.read_text())["rows"]:
            mark = "n/a" if row["ok"] is None else ("ok" if row["ok"] else "MISS")
            print(f"{row['name']:<90} {row['target']:>12} {row['value']:>10} {mark:>4}  {row['note']}")
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--lanes", default="memory,local,moto,localstack,fakegcs")
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name in args.lanes.split(","):
        if name == "memory":
            failures += bench(StoreSpec("memory://bench"), args.profile, out, name) != 0
            continue
        lane = lane_named(name)
        try:
            lane.start()
        except LaneUnavailable as exc:
            print(f"== {name}: unavailable: {exc}", flush=True)
            failures += 1
            continue
        try:
            spec = lane.new_store()
            try:
                failures += bench(spec, args.profile, out, name) != 0
            finally:
                lane.drop_store(spec)
        finally:
            lane.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
