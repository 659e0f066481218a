"""A hostile review of the S3 and GCS backends over HTTP, against real servers (review-h29): each
test failed on the code it was written against.

What is attacked, on moto, LocalStack and fake-gcs-server, with faults injected on the wire by a
loopback proxy (:class:`~vactor_cloud.testing.proxy.DroppingProxy`): an answer that comes late,
after shutdown gave up on it (the client must not send the request again, and nothing of the
runtime may be left running: no thread, no connection, no task); a listing answered in pages
shorter than asked (one moment or not).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator

import pytest
from background import in_thread
from test_review_events import Till
from test_review_lifecycle import wait_until
from test_wire_faults import _record

import vactor_cloud as vc
from vactor_cloud.errors import NotFoundError, StorageTimeoutError
from vactor_cloud.log import ActorLog
from vactor_cloud.storage import ObjectStore, open_store
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.proxy import DroppingProxy, is_upload
from vactor_cloud.testing.store_conformance import run_on_store

pytestmark = pytest.mark.vactor_lanes("moto", "localstack", "fakegcs")

#: how long a test waits for what must happen before calling it a hang
HANG = 60.0
#: botocore's read timeout on these tests' S3 stores: a request whose answer is held back times
#: out (and botocore would retry it) within seconds, not the default 15
READ_TIMEOUT = 2


@vc.virtual_actor
class Box:
    def __init__(self) -> None:
        self.items: list[int] = []

    def add(self, item: int) -> int:
        self.items.append(item)
        return len(self.items)


def _upstream(lane: Lane) -> str:
    endpoint = getattr(lane, "endpoint", None)
    if not isinstance(endpoint, str) or not endpoint.startswith("http://"):
        pytest.skip(f"lane {lane.name} has no HTTP server to put a proxy in front of")
    return endpoint


def _quick(spec: StoreSpec) -> StoreSpec:
    """``spec`` whose S3 client gives up on a silent answer after ``READ_TIMEOUT`` seconds."""
    if not spec.url.startswith("s3://"):
        return spec
    config = {"read_timeout": READ_TIMEOUT, "connect_timeout": READ_TIMEOUT}
    return StoreSpec(spec.url, {**spec.options, "config_kwargs": config}, spec.env)


@pytest.fixture
def proxy(store_lane: Lane) -> Iterator[DroppingProxy]:
    """A proxy in front of the lane's server that drops nothing (a test sets ``hold``)."""
    with DroppingProxy(_upstream(store_lane), drop_share=0.0) as proxy:
        yield proxy


def open_connections(proxy: DroppingProxy) -> list[str]:
    """This process's sockets connected to ``proxy`` (the client side: the store's)."""
    psutil = pytest.importorskip("psutil")
    port = int(proxy.endpoint.rsplit(":", 1)[1])
    return [
        f"{c.laddr} {c.status}"
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port
    ]


def store_threads() -> list[str]:
    """Threads of an S3 store's botocore transport still alive."""
    return [t.name for t in threading.enumerate() if t.name.startswith("vactor-s3")]


class FirstUploads:
    """A proxy target: the next ``count`` uploads once armed (each later request is let through)."""

    def __init__(self) -> None:
        self.left = 0

    def __call__(self, method: str, target: str) -> bool:
        if self.left > 0 and is_upload(method, target):
            self.left -= 1
            return True
        return False


# -- 1. shutdown and late answers ------------------------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
def test_a_late_answer_after_shutdown_gave_up_is_never_sent_again_and_leaves_nothing_running(
    store_spec: StoreSpec, proxy: DroppingProxy
) -> None:
    """Every upload's answer is held back at the wire while a call commits (its step put, and
    the HEAD move of the step before); close(timeout=1) runs out on them. Once it returned, no
    request of the runtime reaches the server, and within a bounded wait no thread of the store
    and no connection to the server is left; the late answers, released, change nothing.
    (Before: botocore sent the timed-out step put again, up to four times, after shutdown
    returned, each retry on a thread the shutdown had given up; on GCS the HEAD move's task
    went on running after shutdown and the store's session was never closed, its connection
    left open.)"""
    _quick(proxy.route(store_spec)).init(
        settings=vc.Settings(storage="", head_interval=0.05, head_max_delay=0.0)
    )
    box = Box.get_or_create("b")
    assert box.add.run(1) == 1
    proxy.held.clear()
    proxy.hold = is_upload
    caller, outcome = in_thread(lambda: box.add.run(2))
    assert proxy.held.wait(HANG), "no upload reached the proxy"
    runtime = vc.get_runtime()
    runtime.close(timeout=1.0)
    caller.join(HANG)
    assert outcome and isinstance(outcome[0], vc.CommitOutcomeUnknownError | vc.RuntimeShutdownError), outcome
    sent = len(proxy.stats.seen)
    try:
        settled = wait_until(lambda: not store_threads() and not open_connections(proxy))
        assert settled, f"left behind: threads {store_threads()}, connections {open_connections(proxy)}"
        time.sleep(2 * READ_TIMEOUT)  # (a retry botocore had scheduled would be sent by now)
    finally:
        proxy.release()
    time.sleep(0.5)
    assert proxy.stats.seen[sent:] == [], "requests reached the server after shutdown returned"


def test_a_put_whose_caller_stopped_waiting_is_never_sent_again(
    store_spec: StoreSpec, proxy: DroppingProxy
) -> None:
    """A create whose answer is held back runs out of the store's request timeout
    (``StorageTimeoutError``: it may or may not have landed). Its caller has gone: the client
    must not send it again behind the caller's back. (Before: botocore's own retries sent the
    put again after its read timeout, four more times, on a pool thread nobody waited for.)"""
    uploads = FirstUploads()
    proxy.hold = uploads

    async def body(direct: ObjectStore) -> None:
        routed = _quick(proxy.route(store_spec)).open()
        try:
            # The client built and connected first: building it (botocore's service model) can
            # take the whole second on a loaded host, and the put would never be sent at all.
            routed.request_timeout = HANG
            assert await routed.head("warm-up") is None
            routed.request_timeout = 1.0
            uploads.left = 1
            with pytest.raises(StorageTimeoutError):
                await routed.put("abandoned", b"x", mode="create")
            sent = [r for r in proxy.stats.seen if is_upload(*r.split(" ", 1))]
            # Once, unless the second ran out before botocore sent it (then it is never sent) or
            # before the proxy read its head (a loaded run on LocalStack saw none so).
            assert len(sent) <= 1, f"the put reached the wire more than once: {sent}"
            await asyncio.sleep(3 * READ_TIMEOUT)  # (botocore's retry would be sent by now)
            again = [r for r in proxy.stats.seen if is_upload(*r.split(" ", 1))]
            if sent:
                assert again == sent, "the put was sent again after its caller stopped waiting"
            else:
                assert len(again) <= 1, f"the put was sent again after its caller stopped waiting: {again}"
            # Whether the one attempt was applied depends on how far it got before its caller
            # gave up: on a loaded host LocalStack may not even have asked for the body ("100
            # Continue") within the second. Applied means the server answered (held here).
            applied = proxy.held.is_set()
        finally:
            proxy.release()
            await routed.close()
        if not applied:
            return
        # The server applied the first attempt and answered; it is readable (not before the
        # release, on LocalStack, where the body may wait behind the held answer).
        landed = time.monotonic() + HANG
        while True:
            try:
                assert (await direct.get("abandoned")).data == b"x"
                break
            except NotFoundError:
                assert time.monotonic() < landed, "the first attempt never landed"
                await asyncio.sleep(0.05)

    run_on_store(store_spec, body)


# -- 2. listings of several pages --------------------------------------------------------------------
#: the page size of a server that answers listings with shorter pages than asked
SHORT_PAGE = 2
_PAGE_SIZE = re.compile(r"(?<=[?&])(max-keys|maxResults)=\d+")


def short_pages(method: str, target: str) -> str:
    """Ask for ``SHORT_PAGE`` keys a listing page (S3 and GCS may answer a page with fewer keys
    than asked, and say more follow: 'The response might contain fewer keys')."""
    return _PAGE_SIZE.sub(lambda m: f"{m.group(1)}={SHORT_PAGE}", target) if method == "GET" else target


def test_a_listing_of_several_short_pages_is_not_taken_for_one_moment(
    store_spec: StoreSpec, proxy: DroppingProxy
) -> None:
    """A server that answers a listing in pages shorter than asked (both APIs allow it) lists
    5 keys in three requests (pages of 2): that listing is no one moment (an object written
    meanwhile behind the page being read is missed, while a later one ahead of it is seen), and
    the store must say so. (Before: the S3 and GCS stores guessed from the count of keys, fewer
    than a full page of 1,000, and reported it as one moment: the inbox and the mailbox then
    trusted an order the listing did not keep. Any count under 1,000 shows it.)"""
    proxy.rewrite = short_pages
    keys = [f"pages/{i:04d}" for i in range(5)]

    async def body(direct: ObjectStore) -> None:
        routed = proxy.route(store_spec).open()
        try:
            await asyncio.gather(*(direct.put(key, b"") for key in keys))
            before = len(proxy.stats.seen)
            listed = await routed.list("pages/")
            assert listed == keys
            assert len(proxy.stats.seen) - before == 3, proxy.stats.seen[before:]
            assert not routed.listed_at_one_moment("pages/", listed)
            # One request: one moment, whatever the count.
            one = await routed.list("pages/", limit=SHORT_PAGE)
            assert one == keys[:SHORT_PAGE]
            assert routed.listed_at_one_moment("pages/", one)
        finally:
            await routed.close()

    run_on_store(store_spec, body)


# -- 3. HEAD pulled back by if-match (a GCS version is the generation) ------------------------------
@pytest.mark.parametrize("answer", ["kept", "lost"])
def test_a_head_past_the_newest_step_is_pulled_back_by_if_match_of_the_version_read(
    store_spec: StoreSpec, proxy: DroppingProxy, answer: str
) -> None:
    """A HEAD forged 50 steps past the log is pulled back by the load that finds it so: the
    if-match carries the version HEAD was read at (the ETag on S3, the generation on GCS, read
    from ``x-goog-generation``), which the server must accept; the version the pull-back returns
    is one the next if-match is accepted with. With the pull-back's answer lost on the wire
    (botocore retries it and meets its own write; the GCS store does not retry), the load still
    finds the newest step, and HEAD has been pulled back all the same."""
    proxy.drop_share = 1.0 if answer == "lost" else 0.0
    proxy.targets = lambda method, target: False  # nothing dropped until HEAD is forged

    async def body(direct: ObjectStore) -> None:
        log = ActorLog(direct, "ahead")
        for step in range(3):
            await log.put_step(_record(step, f"w{step}"))
        head = await log.advance_head(2, _record(2, "w2").class_ref, None)
        forged = await log.advance_head(52, head.class_ref, head)
        proxy.targets = is_upload
        routed = proxy.route(store_spec).open()
        try:
            read = await ActorLog(routed, "ahead").read_head()
            assert read is not None and read.step == 52 and read.version == forged.version
            newest, pulled = await ActorLog(routed, "ahead").load_latest_and_head(read)
        finally:
            await routed.close()
        assert newest is not None and newest.step == 2
        now = await log.read_head()
        assert now is not None and now.step == 2, "HEAD was not pulled back"
        if answer == "lost":
            assert proxy.stats.dropped >= 1
            assert pulled is None  # its outcome was not known to the load
            return
        assert pulled is not None and pulled.step == 2 and pulled.version == now.version
        moved = await log.advance_head(3, pulled.class_ref, pulled)  # if-match of that version
        assert moved.step == 3 and moved.version != pulled.version

    run_on_store(store_spec, body)


# -- 4. send_event after a lost answer, on the wire -------------------------------------------------
@pytest.mark.usefixtures("runtime_off")
@pytest.mark.parametrize("event_id", [None, "wh-1"], ids=["generated-id", "given-id"])
def test_a_send_whose_inbox_put_answer_is_lost_on_the_wire_is_one_event_applied_once(
    store_spec: StoreSpec, proxy: DroppingProxy, event_id: str | None
) -> None:
    """The inbox put lands and its answer is dropped on the wire: on S3 botocore sends it again
    and meets its own object (412, ``AlreadyExistsError``), on GCS the store reports the write
    in doubt. Either way ``send_event`` reads the object back, finds its own event, and
    returns; the handler runs once."""
    proxy.drop_share = 1.0
    first = FirstUploads()
    proxy.targets = first
    proxy.route(store_spec).init()
    till = Till.get_or_create("till")
    first.left = 1
    sent = vc.send_event("till", "paid", 30, event_id=event_id)
    assert proxy.stats.dropped == 1, proxy.stats.dropped_targets
    assert event_id is None or sent == event_id
    till.process_events()
    assert [tuple(e) for e in till.view.run()] == [("paid", 30)]
    vc.shutdown()  # (while the proxy runs: its last HEAD flush, past it, would wait out timeouts)


# -- 5. storage option types ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["timeout", "requests_timeout", "cache_timeout"])
def test_a_bool_given_for_a_gcs_number_option_is_refused_naming_it(name: str) -> None:
    """``True`` is an ``int`` to ``isinstance``: a GCS timeout given as ``True`` (a flag meant for
    something else, or ``"yes"`` parsed to a bool) passed the type check and became a one-second
    timeout. The check now refuses a bool wherever a number is wanted."""
    with pytest.raises(
        TypeError, match=rf"'{name}' for gs://b/p \(GCSStore\) must be int or float, got bool"
    ):
        open_store("gs://b/p", **{name: True})
    open_store("gs://b/p", **{name: 30})  # a number is taken
