"""An S3 endpoint that ignores a delete's condition, silently, is found out before it is trusted.

LocalStack (2026.3) answers ``DeleteObject`` with ``If-Match`` 501 NotImplemented, which the
store took as "no conditional deletes" (review h156); but it deletes the objects of a
``DeleteObjects`` whatever ETag each names, answering as if all was well: the inbox's batched
conditional deletes were plain deletes there, and the conformance cases of ``delete_unchanged``
failed on the LocalStack lane. Before it trusts a kind of conditional delete (one object, or a
batch), the store now deletes, under a condition, a key that does not exist (one request, once
per store and kind, counted as a ``"probe"``): an endpoint honouring the condition says the key
is not there, one ignoring it says it was deleted.

Runs on the moto lane (which honours conditions); LocalStack's way is played at the transport.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_s3_backend import with_store as _run

from vactor_cloud.storage import ObjectStore, open_store
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("moto")


def _ignoring_batch_conditions(store: Any) -> list[str]:
    """Make ``store``'s endpoint delete a ``DeleteObjects``' objects whatever their ETags say, as
    LocalStack does (quietly: no error for a key that was not there). The keys it deleted so."""
    real = store._transport.call
    ignored: list[str] = []

    async def call(method: str, params: dict[str, Any]) -> Any:
        if method == "delete_objects":
            objects = params["Delete"]["Objects"]
            ignored.extend(item["Key"] for item in objects if "ETag" in item)
            plain = [{"Key": item["Key"]} for item in objects]
            return await real(method, {"Delete": {**params["Delete"], "Objects": plain}})
        return await real(method, params)

    store._transport.call = call
    return ignored


def test_a_batch_delete_ignoring_etags_is_found_out_before_it_deletes_a_new_object(
    store_spec: StoreSpec,
) -> None:
    """Before: the batch deleted ``k`` created again since its version was read."""

    async def body(store: ObjectStore) -> None:
        ignored = _ignoring_batch_conditions(store)
        first = await store.put("k", b"a", mode="create")
        other = await store.put("j", b"b", mode="create")
        await store.delete("k")
        again = await store.put("k", b"a", mode="create")
        await store.delete_unchanged({"k": first, "j": other})
        assert await store.head("k") == again, "a delete whose condition was ignored took the new object"
        assert await store.head("j") is None
        assert store.conditional_deletes is False
        assert ignored  # (the probe met the endpoint's way)

    _run(store_spec, body)


@pytest.mark.parametrize("keys", [1, 3])
def test_an_endpoint_honouring_conditions_is_probed_once(store_spec: StoreSpec, keys: int) -> None:
    """moto honours them: one probe request, then conditional deletes alone (no HEAD first). (One
    key or several: the store sends a DeleteObjects either way.)"""

    async def body(store: ObjectStore) -> None:
        for round_ in range(3):
            versions = {
                f"r{round_}/{i}": await store.put(f"r{round_}/{i}", b"x", mode="create") for i in range(keys)
            }
            before = store.requests.snapshot()
            await store.delete_unchanged(versions)
            after = store.requests.snapshot()
            spent = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after}
            assert spent.get("probe", 0) == (1 if round_ == 0 else 0), spent
            assert spent.get("delete", 0) == 1 and spent.get("head", 0) == 0, spent
            assert await store.list(f"r{round_}/") == []
        assert store.conditional_deletes is True

    _run(store_spec, body)


def test_a_probe_failing_in_transit_is_tried_again_at_the_next_delete(store_spec: StoreSpec) -> None:
    """A transient failure of the probe fails that delete (left for the next fold) and decides
    nothing: the next conditional delete probes again."""

    async def body(store: Any) -> None:
        real = store._transport.call
        failures = [ConnectionResetError("reset by the test")]

        async def call(method: str, params: dict[str, Any]) -> Any:
            probed = method == "delete_objects" and ".vactor-probe" in str(params["Delete"]["Objects"])
            if probed and failures:
                raise failures.pop()
            return await real(method, params)

        store._transport.call = call
        version = await store.put("k", b"x", mode="create")
        with pytest.raises(Exception, match=r"reset by the test"):
            await store.delete_unchanged({"k": version})
        assert await store.head("k") == version
        await store.delete_unchanged({"k": version})
        assert await store.head("k") is None
        assert store.conditional_deletes is True

    _run(store_spec, body)


def test_open_store_unused_names_no_probe() -> None:
    """Nothing is probed before a conditional delete is asked for (a store only read sends none)."""
    store = open_store("s3://probe-bucket/p", endpoint_url="http://127.0.0.1:9", key="k", secret="s")
    assert store.requests.snapshot() == {}


@pytest.mark.parametrize("refused", ["its-key", "the-request"])
def test_a_probe_refused_by_a_policy_turns_the_store_to_the_fallback_not_to_failing_deletes(
    store_spec: StoreSpec, refused: str
) -> None:
    """A policy denying deletes of the probe's key (an IAM statement scoped to ``actors/``, say)
    answered every conditional delete with the probe's AccessDenied: the inbox's applied events
    were never deleted, and once past the dedup window they apply again. Such a refusal now
    decides as a condition ignored would: the read-first fallback, logged once. Refused as the
    answer for its one key, or as the whole request's (403: this case failed before)."""
    import botocore.exceptions

    async def body(store: Any) -> None:
        real = store._transport.call

        async def call(method: str, params: dict[str, Any]) -> Any:
            if method == "delete_objects" and ".vactor-probe" in str(params["Delete"]["Objects"]):
                if refused == "its-key":
                    return {
                        "Errors": [{"Key": params["Delete"]["Objects"][0]["Key"], "Code": "AccessDenied"}]
                    }
                raise botocore.exceptions.ClientError(
                    {
                        "Error": {"Code": "AccessDenied", "Message": "denied"},
                        "ResponseMetadata": {"HTTPStatusCode": 403},
                    },
                    "DeleteObjects",
                )
            return await real(method, params)

        store._transport.call = call
        first = await store.put("k", b"x", mode="create")
        other = await store.put("j", b"y", mode="create")
        await store.delete_unchanged({"k": first, "j": other})
        assert await store.list("") == []
        assert store.conditional_deletes is False

    _run(store_spec, body)
