"""A serverless-style handler: every invocation may be a cold start in a fresh process.

    python examples/serverless_handler.py                # embedded local store
    python examples/serverless_handler.py s3://bucket/p  # or any storage URL ($VACTOR_STORAGE too)

``handler(event, context)`` has the shape of an AWS Lambda handler: it gets
an actor by id, calls one method and returns. Nothing lives in the process
between invocations except what the platform keeps warm (here: the runtime
created at import, reused by warm invocations). The platform may retry an
invocation whose response it lost; the request id is the idempotency key,
so a retried "add" is applied exactly once and answers with the first
result.

Running this file plays the platform: it starts a fresh Python process per
invocation (a cold start each time), retries one of them, and checks the
total. On AWS Lambda, deploy ``handler`` as is and set ``VACTOR_STORAGE``
(for example ``s3://my-bucket/actors``) in the function's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import uuid
from typing import Any

import vactor_cloud as vc

# At import, once per cold start: choose the store. $VACTOR_STORAGE comes from
# the function's configuration; credentials from the platform's role.
vc.init(os.environ.get("VACTOR_STORAGE"))


@vc.virtual_actor
class Visits:
    def __init__(self) -> None:
        self.count = 0
        self.by_page: dict[str, int] = {}

    def add(self, page: str) -> int:
        self.count += 1
        self.by_page[page] = self.by_page.get(page, 0) + 1
        return self.count

    @vc.virtual_actor.readonly
    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "by_page": dict(self.by_page)}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda-style entry point: ``{"site": ..., "page": ..., "request_id": ...}`` -> response."""
    site = Visits.get_or_create(event["site"])
    if event.get("op") == "summary":
        return {"statusCode": 200, "body": site.summary.run()}
    # The platform's request id makes a retried invocation exactly-once.
    count = site.add.options(idempotency_key=event["request_id"]).run(event["page"])
    return {"statusCode": 200, "body": {"count": count}}


def invoke_cold(event: dict[str, Any], storage: str | None) -> dict[str, Any]:
    """Run ``handler(event)`` in a brand-new Python process, as a cold-started function would."""
    env = dict(os.environ)
    if storage:
        env["VACTOR_STORAGE"] = storage
    done = subprocess.run(
        [sys.executable, __file__, "--invoke", json.dumps(event)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    response: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return response


def main(storage: str | None) -> None:
    site = f"shop-{uuid.uuid4().hex[:8]}"
    pages = ["/", "/cart", "/", "/checkout"]
    events = [{"site": site, "page": p, "request_id": f"req-{n}"} for n, p in enumerate(pages)]
    for event in events:
        print("invocation", event["request_id"], "->", invoke_cold(event, storage)["body"])
    # The platform lost the response of req-2 and retries it: same answer, applied once.
    print("retry      req-2 ->", invoke_cold(events[2], storage)["body"])
    summary = invoke_cold({"site": site, "op": "summary"}, storage)["body"]
    print("summary", summary)
    assert summary == {"count": 4, "by_page": {"/": 2, "/cart": 1, "/checkout": 1}}, summary
    where = f"--storage {shlex.quote(storage)} " if storage else ""  # not the default: say which store
    print(f"exactly once across {len(events) + 2} cold starts; inspect: vactor {where}history {site}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--invoke":
        print(json.dumps(handler(json.loads(sys.argv[2]))))
    else:
        parser = argparse.ArgumentParser(
            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        parser.add_argument(
            "storage",
            nargs="?",
            default=os.environ.get("VACTOR_STORAGE"),
            help="storage URL or path (default: $VACTOR_STORAGE, else the embedded store)",
        )
        url = parser.parse_args().storage
        if url and url.lower().startswith("memory:"):  # each process would have a store of its own
            parser.error(
                "memory:// is this process's memory only, and this example runs several processes: "
                "give it a path or a bucket URL"
            )
        if url:
            vc.init(url)
        main(url)
