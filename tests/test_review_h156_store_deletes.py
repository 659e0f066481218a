"""``ObjectStore.delete_unchanged`` against the emulators the lanes start (review-h156): what
they do with a delete's condition, and failures a conditional delete must not take for "left
in place"."""

from __future__ import annotations

import concurrent.futures
import urllib.parse
import urllib.request
from typing import Any

import pytest
from test_s3_backend import with_store as _run

from vactor_cloud.errors import NotFoundError, StorageError
from vactor_cloud.storage import ObjectStore, open_store
from vactor_cloud.storage._s3 import S3Store
from vactor_cloud.testing.lanes import StoreSpec


@pytest.mark.vactor_lanes("moto")
def test_a_conditional_delete_in_a_missing_bucket_fails_as_a_delete_does(store_spec: StoreSpec) -> None:
    """A 404 answers a conditional delete of an object that is gone (nothing to delete), but S3
    says NoSuchBucket with a 404 too: taken for "gone", the inbox's deletes in a bucket removed
    under it succeeded silently. (Failed before: ``_left_in_place`` looked at the status only.)"""
    missing = store_spec.url.replace("s3://", "s3://no-such-bucket-h156-", 1).split("/", 3)
    url = "/".join(missing[:3])

    async def body(store: ObjectStore) -> None:
        for versions in ({"k": '"abc"'}, {"k": '"abc"', "j": '"def"'}):
            with pytest.raises(StorageError) as info:
                await store.delete_unchanged(versions)
            assert not isinstance(info.value, NotFoundError)
            assert "no-such-bucket-h156" in str(info.value)
        # (DeleteObject with If-Match: the hook a store without batches, delete_batch 1, sends)
        assert isinstance(store, S3Store)
        with pytest.raises(StorageError) as info:
            await store._delete_unchanged("k", '"abc"')
        assert not isinstance(info.value, NotFoundError)
        assert "does not exist" in str(info.value)

    _run(StoreSpec(url, store_spec.options, store_spec.env), body)


@pytest.mark.vactor_lanes("fakegcs")
def test_fake_gcs_server_ignores_a_deletes_generation_so_the_store_reads_it_first(
    store_spec: StoreSpec,
) -> None:
    """Pins why a GCS store on an emulator endpoint says ``conditional_deletes`` False: the
    emulator deletes an object whose generation is not the one a DELETE's ifGenerationMatch
    names (GCS answers 412). Should an emulator honour it, this fails: the flag may then follow."""

    async def body(store: ObjectStore) -> tuple[bool, str | None]:
        await store.put("k", b"x", mode="create")
        return store.conditional_deletes, await store.head("k")

    conditional, version = _run(store_spec, body)
    assert conditional is False and version is not None
    endpoint = store_spec.env.get("STORAGE_EMULATOR_HOST") or store_spec.options["endpoint_url"]
    bucket, _, prefix = store_spec.url.removeprefix("gs://").partition("/")
    name = f"{prefix}/k" if prefix else "k"
    wrong = str(int(version) + 1)
    url = f"{endpoint}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?ifGenerationMatch={wrong}"
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30) as answer:
        assert answer.status in (200, 204)  # (GCS: 412)
    assert _run(store_spec, lambda store: store.head("k")) is None


def test_a_gcs_store_on_googles_endpoint_deletes_conditionally_and_on_another_reads_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    assert open_store("gs://b-h156").conditional_deletes is True
    assert open_store("gs://b-h156", endpoint_url="https://storage.googleapis.com").conditional_deletes
    assert not open_store("gs://b-h156", endpoint_url="http://127.0.0.1:4443").conditional_deletes
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    assert not open_store("gs://b-h156").conditional_deletes


def _refusing_conditions(store: Any, per_object: bool = False) -> list[str]:
    """Make ``store``'s endpoint refuse a delete's condition as a server without conditional
    deletes does (501 NotImplemented: LocalStack on a general-purpose bucket, older MinIO); with
    ``per_object``, a DeleteObjects is answered with that error for each object instead."""
    import botocore.exceptions

    real = store._transport.call
    refused: list[str] = []

    async def call(method: str, params: dict[str, Any]) -> Any:
        conditional = "IfMatch" in params or any(
            "ETag" in item for item in (params.get("Delete") or {}).get("Objects", ())
        )
        if method in ("delete_object", "delete_objects") and conditional:
            refused.append(method)
            if per_object and method == "delete_objects":
                objects = params["Delete"]["Objects"]
                return {"Errors": [{"Key": item["Key"], "Code": "NotImplemented"} for item in objects]}
            raise botocore.exceptions.ClientError(
                {
                    "Error": {
                        "Code": "NotImplemented",
                        "Message": "A header you provided implies functionality that is not implemented",
                    },
                    "ResponseMetadata": {"HTTPStatusCode": 501},
                },
                "DeleteObjects" if method == "delete_objects" else "DeleteObject",
            )
        return await real(method, params)

    store._transport.call = call
    return refused


@pytest.mark.vactor_lanes("moto")
@pytest.mark.parametrize("per_object", [False, True], ids=["request", "each-object"])
def test_a_server_refusing_conditional_deletes_gets_the_version_read_first(
    store_spec: StoreSpec, per_object: bool
) -> None:
    """A server that refuses a delete's condition (501) failed every inbox delete: applied events
    piled up in the inbox, and once out of the dedup window were applied again. The store now
    says ``conditional_deletes`` False from then on and reads each version before deleting (the
    fallback: narrows the window only). (Failed before: StorageError.)"""

    async def body(store: ObjectStore) -> None:
        refused = _refusing_conditions(store, per_object)
        first = await store.put("k", b"a", mode="create")
        other = await store.put("j", b"b", mode="create")
        await store.delete_unchanged({"k": first, "j": other})
        assert refused and store.conditional_deletes is False
        assert await store.list("") == []
        again = await store.put("k", b"a", mode="create")
        await store.delete_unchanged({"k": first})  # (a late one: the new object stays)
        assert await store.head("k") == again
        await store.delete_unchanged({"k": again})
        assert await store.head("k") is None

    _run(store_spec, body)


class _FirstDeleteObjects:
    """A proxy target: the first ``DeleteObjects`` (``POST /<bucket>?delete``) after ``skip``
    others only."""

    def __init__(self, skip: int = 0) -> None:
        self.taken = False
        self.skip = skip

    def __call__(self, method: str, target: str) -> bool:
        if not self.taken and method == "POST" and "?delete" in target:
            if self.skip:
                self.skip -= 1
                return False
            self.taken = True
            return True
        return False


@pytest.mark.vactor_lanes("moto")
@pytest.mark.parametrize("how", ["delete_many", "delete_unchanged"])
def test_a_retried_delete_whose_first_attempt_landed_leaves_the_object_created_in_between(
    store_spec: StoreSpec, store_lane: Any, how: str
) -> None:
    """At the wire: a DeleteObjects lands, its answer is held back while the key is created
    again by another client, then lost; botocore sends the request again. Unconditional
    (``delete_many``, what the inbox sent before), the retry deletes the new object: pinned
    here as the hazard. Conditional (``delete_unchanged``), the retry meets another ETag and
    leaves it."""
    from vactor_cloud.testing.proxy import DroppingProxy

    upstream = getattr(store_lane, "endpoint", "")
    # (the store's first conditional delete is preceded by its probe of the endpoint, a
    # DeleteObjects of a key that does not exist: see test_s3_condition_probe)
    probes = 1 if how == "delete_unchanged" else 0
    first = _FirstDeleteObjects(skip=probes)
    held = _FirstDeleteObjects(skip=probes)
    with DroppingProxy(upstream, drop_share=1.0, targets=first, hold=held) as proxy:
        routed = proxy.route(store_spec)
        version = _run(store_spec, lambda store: store.put("k", b"old", mode="create"))

        async def delete(store: ObjectStore) -> None:
            # (two keys: a batch, which S3 sends as DeleteObjects)
            if how == "delete_many":
                await store.delete_many(["k", "other"])
            else:
                await store.delete_unchanged({"k": version, "other": '"x"'})

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            sent = pool.submit(_run, routed, delete)
            assert proxy.held.wait(60)
            assert _run(store_spec, lambda store: store.head("k")) is None  # the first attempt landed
            _run(store_spec, lambda store: store.put("k", b"new", mode="create"))
            proxy.release()
            sent.result(timeout=60)
        retried = [s for s in proxy.stats.seen if s.startswith("POST") and "?delete" in s]
        assert len(retried) == 2 + probes and proxy.stats.dropped == 1
    after = _run(store_spec, lambda store: store.head("k"))
    assert (after is None) if how == "delete_many" else (after is not None)
