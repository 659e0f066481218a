"""Review h145: a timeout raised by what a store forwards to is its own, not this request's.

``ObjectStore._bounded`` took every ``TimeoutError`` leaving a request for the expiry of the
request's own ``Settings.timeout``: a ``StorageTimeoutError`` raised at once by a wrapped
store (an injected ``timeout_before``, an inner store's own timeout) was replaced by "got no
answer within 10 s: is the endpoint reachable?", its own message lost, and counted (and
logged) a second time.
"""

from __future__ import annotations

import asyncio

from vactor_cloud import counters
from vactor_cloud.errors import StorageTimeoutError
from vactor_cloud.storage import MemoryStore
from vactor_cloud.testing.faults import FaultConfig, FaultRule, FaultyStore


def test_a_timeout_raised_inside_a_request_goes_up_as_it_was() -> None:
    rule = FaultRule("timeout_before", operations=frozenset({"get", "put"}), probability=1.0)
    store = FaultyStore(MemoryStore(name="h145-passed-through"), FaultConfig(seed=1, rules=(rule,)))
    store.request_timeout = 10.0
    before = counters.stats().get("storage_timeouts", 0)

    async def both() -> tuple[BaseException, BaseException]:
        errors: list[BaseException] = []
        for request in (store.get("k"), store.put("k", b"x")):
            try:
                await request
            except StorageTimeoutError as exc:
                errors.append(exc)
        return errors[0], errors[1]

    read, write = asyncio.run(both())
    assert "(injected)" in str(read) and "10 s" not in str(read), str(read)
    assert "(injected)" in str(write) and isinstance(write, StorageTimeoutError) and write.write_in_flight
    assert counters.stats().get("storage_timeouts", 0) == before, "counted as this request's own timeout"
