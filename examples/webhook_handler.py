"""A serverless-style webhook handler that applies a retried webhook exactly once.

Payment providers deliver webhooks at least once: when your function times
out, crashes, or its response is lost, the same delivery comes again. Here
every delivery is handled in a fresh process (as a serverless platform would),
the first one dies after receiving the event but before answering, and the
platform retries twice. The payment is applied once, and every answer that
gets through reports the same balance.

    python examples/webhook_handler.py            # embedded store (~/.local/share/vactor_cloud)
    python examples/webhook_handler.py s3://bucket/prefix
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import uuid
from typing import Any

import vactor_cloud as vc
from vactor_cloud import virtual_actor
from vactor_cloud.runtime import default_storage


@virtual_actor
class Invoice:
    def __init__(self, amount_due: int) -> None:
        self.amount_due = amount_due
        self.paid = 0
        self.payments: list[str] = []

    @virtual_actor.on_event("payment.succeeded")
    def on_payment(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.paid += payload["amount"]
        self.payments.append(payload["payment_id"])
        return {"paid": self.paid, "due": self.amount_due - self.paid}

    @virtual_actor.readonly
    def status(self) -> dict[str, Any]:
        return {"paid": self.paid, "due": self.amount_due - self.paid, "payments": list(self.payments)}


def handle_webhook(request: dict[str, Any]) -> dict[str, Any]:
    """The function the platform invokes, once per delivery attempt.

    The provider's delivery id is the event id: a redelivery is stored once
    and applied once, so nothing here needs to remember what it already saw.
    """
    body = json.loads(request["body"])
    invoice_id = body["invoice_id"]
    vc.send_event(invoice_id, "payment.succeeded", body, event_id=request["headers"]["Webhook-Id"])
    if request.get("crash_before_answering"):
        os._exit(1)  # the platform sees a timeout and will deliver again
    result = vc.get_actor(invoice_id).wait_for_event(
        "payment.succeeded", timeout=30, event_id=request["headers"]["Webhook-Id"]
    )
    return {"status": 200, "body": json.dumps(result)}


def _invocation(storage: str, request: dict[str, Any], answers: Any) -> None:
    vc.init(storage)  # a cold start: a new process, nothing cached
    answers.put(handle_webhook(request))
    vc.shutdown()


def main(storage: str | None = None) -> dict[str, Any]:
    storage = storage or default_storage()
    vc.init(storage)
    invoice_id = f"invoice-{uuid.uuid4().hex[:8]}"
    Invoice.get_or_create(invoice_id, 120)
    request = {
        "headers": {"Webhook-Id": f"wh_{uuid.uuid4().hex[:12]}"},
        "body": json.dumps({"invoice_id": invoice_id, "payment_id": "pay_1", "amount": 120}),
    }
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    for attempt in range(3):
        delivery = dict(request, crash_before_answering=attempt == 0)
        proc = context.Process(target=_invocation, args=(storage, delivery, answers))
        proc.start()
        proc.join(120)
        outcome = "crashed before answering" if proc.exitcode != 0 else answers.get(timeout=10)
        print(f"delivery {attempt + 1}: {outcome}")
    status: dict[str, Any] = Invoice.get_or_create(invoice_id, 120).status.run()
    print(f"{invoice_id}: {status}")
    assert status["payments"] == ["pay_1"], "the payment was applied more than once"
    print(f"the event, applied in one step: vactor --storage {shlex.quote(storage)} history {invoice_id}")
    vc.shutdown()
    return status


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
