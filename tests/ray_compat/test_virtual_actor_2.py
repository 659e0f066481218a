"""Port of Ray's python/ray/workflow/tests/test_virtual_actor_2.py (ray-project/ray@350466e1).

Changed for the whole file: imports (``ray`` -> ``vactor_cloud as vc``, ``ray.workflow`` ->
``vactor_cloud.workflow``), ``ray.get`` -> ``vc.get``, the fixture ``workflow_start_regular``
with its ``num_cpus`` parametrization -> ``actor_store`` (a fresh store per test, on every
lane). Each test says what else changed.
"""

import time

import pytest
from filelock import FileLock

import vactor_cloud as vc
from vactor_cloud import workflow

#: Ray's tests exercise behaviour above the storage contract: memory and local, and moto for S3
#: (as issue 15 asks); the shipped conformance suite covers every backend.
pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


@workflow.virtual_actor
class Counter:
    def __init__(self, x: int):
        self.x = x

    @workflow.virtual_actor.readonly
    def readonly_get(self):
        return self.x

    @workflow.virtual_actor.readonly
    def readonly_incr(self):
        self.x += 1
        return self.x

    def add(self, y):
        self.x += y
        return self.x

    def __getstate__(self):
        return self.x

    def __setstate__(self, state):
        self.x = state


@workflow.virtual_actor
class IndirectCounter:
    def __init__(self, x):
        actor = Counter.get_or_create("counter", x)
        vc.get(actor.ready())

    @workflow.virtual_actor.readonly
    def readonly_get(self):
        actor = workflow.get_actor("counter")
        return actor.readonly_get.run()

    @workflow.virtual_actor.readonly
    def readonly_incr(self):
        actor = workflow.get_actor("counter")
        return actor.readonly_incr.run()

    def add(self, y):
        actor = workflow.get_actor("counter")
        return actor.add.run(y)

    @workflow.virtual_actor.readonly
    def readonly_workload(self):
        # simulate a workload
        time.sleep(1)

    def __getstate__(self):
        return

    def __setstate__(self, state):
        pass


def test_indirect_actor_writer(actor_store):
    # Changed: fixture, ray.get -> vc.get (also in IndirectCounter.__init__). Waits for: handle.ready().
    actor = IndirectCounter.get_or_create("indirect_counter", 0)
    vc.get(actor.ready())
    assert actor.readonly_get.run() == 0
    array = []
    s = 0
    for i in range(1, 10):
        s += i
        array.append(s)
    assert [actor.add.run(i) for i in range(1, 10)] == array
    assert actor.readonly_get.run() == 45

    array = []
    for i in range(10, 20):
        s += i
        array.append(s)
    assert vc.get([actor.add.run_async(i) for i in range(10, 20)]) == array


@pytest.mark.xfail(
    run=False,
    reason="cannot pass without breaking a guarantee: a call commits all or nothing, so a reader "
    "never sees the state a method set before its sub-workflow finished ('STARTING'; Ray committed "
    "it first); pinned by test_wf_in_actor_atomic in test_ray_variants.py. Not run: the reader "
    "would wait on the writer the test holds",
)
def test_wf_in_actor(actor_store, tmp_path):
    # Changed: fixture, ray.get -> vc.get.
    fail_flag = tmp_path / "fail"
    cnt = tmp_path / "count"
    cnt.write_text(str(0))
    lock_file = tmp_path / "lock"

    @workflow.step
    def start_session():
        if fail_flag.exists():
            raise Exception()
        v = int(cnt.read_text()) + 1
        cnt.write_text(str(v))
        with FileLock(str(lock_file)):
            return "UP"

    @workflow.virtual_actor
    class Session:
        def __init__(self):
            self._session_status = "DOWN"

        @workflow.virtual_actor.readonly
        def get_status(self):
            return self._session_status

        def update_session(self, up):
            (ret, err) = up
            if err is None:
                self._session_status = ret
            else:
                self._session_status = err
            return self._session_status

        def session_start(self):
            step = start_session.step()
            return step

        def session_start_with_status(self):
            self._session_status = "STARTING"
            return self.update_session.step(start_session.options(catch_exceptions=True).step())

        def __getstate__(self):
            return self._session_status

        def __setstate__(self, state):
            self._session_status = state

    actor = Session.get_or_create("session_id")
    fail_flag.touch()
    with pytest.raises(Exception):
        actor.session_start.run()
    fail_flag.unlink()
    vc.get(workflow.resume("session_id"))
    # After resume, it'll rerun start_session which will
    # generate 1
    assert cnt.read_text() == "1"
    assert actor.session_start.run() == "UP"
    assert cnt.read_text() == "2"
    assert actor.session_start_with_status.run() == "UP"
    assert cnt.read_text() == "3"

    # Now test a new session.
    actor = Session.get_or_create("session_id")
    fail_flag.touch()
    assert isinstance(actor.session_start_with_status.run(), Exception)
    assert cnt.read_text() == "3"
    lock = FileLock(str(lock_file))
    lock.acquire()
    fail_flag.unlink()
    ret = actor.session_start_with_status.run_async()
    for i in range(0, 60):
        if cnt.read_text() == "4":
            break
        time.sleep(1)
    assert cnt.read_text() == "4"
    # This means when return from session_start_with_status,
    # the session got updated
    assert actor.get_status.run() == "STARTING"
    lock.release()
    assert vc.get(ret) == "UP"


@pytest.mark.skip(reason="Return a list of virtual actor sub method is not supported.")
def test_wf_in_actor_seq(actor_store, tmp_path):
    # Changed: fixture. Skipped by Ray itself; stays skipped.
    record = tmp_path / "record"
    record.touch()

    @workflow.step
    def join(*args):
        return args

    @workflow.virtual_actor
    class Q:
        def write(self, n):
            r = record.read_text()
            r += f"{n}\n"
            record.write_text(r)

        def write_queue(self, n):
            return join.step(*[self.write.step(i) for i in range(n)])

        def __getstate__(self):
            return None

        def __setstate__(self, v):
            pass

    q = Q.get_or_create("queue")
    q.write_queue.run(5)
    assert "\n".join([str(i) for i in range(5)]) == record.read_text()


def test_wf_in_actor_seq_2(actor_store, tmp_path):
    # Changed: fixture.
    record = tmp_path / "record"
    record.touch()

    file_lock = tmp_path / "lock"

    @workflow.step
    def join(*args):
        return args

    @workflow.step
    def write(n):
        with FileLock(str(file_lock)):
            r = record.read_text()
            r += f"{n}\n"
            record.write_text(r)

    @workflow.virtual_actor
    class Q:
        def write_queue(self, n):
            return join.step(*[write.step(i) for i in range(n)])

        def __getstate__(self):
            return None

        def __setstate__(self, v):
            pass

    q = Q.get_or_create("queue")
    q.write_queue.run(5)
    assert {str(i) for i in range(5)} == set(record.read_text().split())


@pytest.mark.skip(
    reason="The test become flaky on CI recently, but we could not reproduce it locally. Skip it temporarily."
)
def test_wf_in_actor_seq_3(actor_store, tmp_path):
    # Changed: fixture. Skipped by Ray itself; stays skipped.
    @workflow.virtual_actor
    class Counter:
        def __init__(self):
            self.n = 0

        def incr(self, n):
            self.n += 1
            if n - 1 > 0:
                return self.incr.step(n - 1)

        @workflow.virtual_actor.readonly
        def get(self):
            return self.n

        def __getstate__(self):
            return self.n

        def __setstate__(self, n):
            self.n = n

    c = Counter.get_or_create("c1")
    # Incr will return a nested workflow. For the step function inside the
    # nested workflow, they'll be executed one-by-one. But obj2's finish cant
    # guarentee obj1's finish.
    obj1 = c.incr.run_async(10)  # noqa
    obj2 = c.incr.run(10)  # noqa
    # TODO(suquark): The test is flaky sometimes (only on CI), which might indicates
    # some bugs. This is a workaroundde temporarily.
    time.sleep(3)
    assert c.get.run() == 20
