"""Variants of the Ray tests that cannot pass here without breaking a guarantee of ours.

Each keeps the original's assertions that hold here and pins what we do instead where
they differ, with the reason. The originals stay in the ported files, marked xfail.

* ``test_actor_writer_2``: a call whose exception reached its caller has no effect, ever.
  Ray kept a failed call and ran it again with the next call (``range(2, 11)``) or on
  ``workflow.resume`` (``25``).
* ``test_wf_in_actor`` / ``test_wf_in_actor_chain``: a call commits all or nothing, its
  sub-workflow included. Ray committed the method's own changes ("STARTING", each
  ``self.incr.step``) before the rest of the sub-workflow ran.
* ``test_default_getset``: the default state serializer is pickle, so numpy state is
  stored; Ray needed JSON and failed with ``RaySystemError``.
* ``test_virtual_actor_logs``: a library installs no log handler, so its lines print only
  when the application configures logging (Ray printed them unasked).
"""

import time
from pathlib import Path

import pytest
from filelock import FileLock

import vactor_cloud as vc
from vactor_cloud import workflow
from vactor_cloud.errors import StateSerializationError

#: Ray's tests exercise behaviour above the storage contract: memory and local, and moto for S3
#: (as issue 15 asks); the shipped conformance suite covers every backend.
pytestmark = pytest.mark.vactor_lanes("memory", "local", "moto")


#: a wait that would otherwise hang on a writer blocked by the test
WAIT = 5.0


def _sync_counter(tmp_path):
    paths = {
        name: str(tmp_path / name) for name in ("val.lock", "incr.lock", "g.lock", "val.err", "incr.err")
    }

    @workflow.virtual_actor
    class SyncCounter:
        def __init__(self, val_lock, incr_lock, g_lock, val_err, incr_err):
            self.val_lock, self.incr_lock, self.g_lock = val_lock, incr_lock, g_lock
            self.val_err, self.incr_err = val_err, incr_err
            self.v = 0
            if Path(self.val_err).exists():
                raise ValueError()

        @workflow.virtual_actor.readonly
        def val(self):
            with FileLock(self.val_lock), FileLock(self.g_lock):
                if Path(self.val_err).exists():
                    raise ValueError()
                return self.v

        def incr(self, create_incr_err=False):
            with FileLock(self.incr_lock), FileLock(self.g_lock):
                if Path(self.incr_err).exists():
                    raise ValueError()
                if create_incr_err:
                    Path(self.incr_err).touch()
                self.v += 1
                return self.v

        def __getstate__(self):
            return (self.v, self.val_lock, self.incr_lock, self.g_lock, self.val_err, self.incr_err)

        def __setstate__(self, state):
            (self.v, self.val_lock, self.incr_lock, self.g_lock, self.val_err, self.incr_err) = state

    args = [paths[n] for n in ("val.lock", "incr.lock", "g.lock", "val.err", "incr.err")]
    return SyncCounter, args, paths


def test_actor_writer_2_failed_init_creates_nothing_and_is_not_replayed(actor_store, tmp_path):
    SyncCounter, args, paths = _sync_counter(tmp_path)
    Path(paths["val.err"]).touch()
    # Ours: creation waits for __init__, so its exception reaches get_or_create (Ray: the next call).
    with pytest.raises(ValueError):
        SyncCounter.get_or_create("sync_counter", *args)
    Path(paths["val.err"]).unlink()
    actor = SyncCounter.get_or_create("sync_counter", *args)
    # Ray: range(2, 11), the failed call ran again first. Ours: it failed, so it never happened.
    assert vc.get([actor.incr.run_async() for _ in range(9)]) == list(range(1, 10))


def test_actor_writer_2_reader_answers_beside_blocked_writers(actor_store, tmp_path):
    SyncCounter, args, paths = _sync_counter(tmp_path)
    actor = SyncCounter.get_or_create("sync_counter", *args)
    assert vc.get([actor.incr.run_async() for _ in range(9)]) == list(range(1, 10))
    incr_lock = FileLock(paths["incr.lock"])
    incr_lock.acquire()
    try:
        objs = [actor.incr.run_async() for _ in range(10)]
        assert vc.get(actor.val.run_async(), timeout=WAIT) == 9
        Path(paths["val.err"]).touch()
        with pytest.raises(ValueError):
            vc.get(actor.val.run_async(), timeout=WAIT)
        Path(paths["val.err"]).unlink()
    finally:
        incr_lock.release()
    assert vc.get(objs, timeout=WAIT) == list(range(10, 20))


def test_actor_writer_2_failed_calls_are_final_and_resume_has_nothing_to_rerun(actor_store, tmp_path):
    SyncCounter, args, paths = _sync_counter(tmp_path)
    actor = SyncCounter.get_or_create("sync_counter", *args)
    assert vc.get([actor.incr.run_async() for _ in range(20)]) == list(range(1, 21))
    actor.incr.run_async()  # 21
    actor.incr.run_async()  # 22
    actor.incr.run_async(create_incr_err=True)  # 23
    actor.incr.run_async()  # 24
    s5 = actor.incr.run_async()  # 25
    with pytest.raises(ValueError):
        vc.get(s5)
    assert 23 == actor.val.run()  # Ray's assertion, unchanged
    Path(paths["incr.err"]).unlink()
    # Ray: resume re-ran the two failed calls (25). Ours: their callers were told; nothing to re-run.
    assert vc.get(workflow.resume("sync_counter")) == []
    assert actor.val.run() == 23
    assert workflow.get_status("sync_counter") == workflow.SUCCESSFUL


def _session(tmp_path):
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
            self._session_status = ret if err is None else err
            return self._session_status

        def session_start(self):
            return start_session.step()

        def session_start_with_status(self):
            self._session_status = "STARTING"
            return self.update_session.step(start_session.options(catch_exceptions=True).step())

        def __getstate__(self):
            return self._session_status

        def __setstate__(self, state):
            self._session_status = state

    return Session, fail_flag, cnt, lock_file


def test_wf_in_actor_atomic(actor_store, tmp_path):
    Session, fail_flag, cnt, lock_file = _session(tmp_path)
    actor = Session.get_or_create("session_id")
    fail_flag.touch()
    with pytest.raises(Exception):
        actor.session_start.run()
    assert workflow.get_status("session_id") == workflow.FAILED
    fail_flag.unlink()
    vc.get(workflow.resume("session_id"))
    assert cnt.read_text() == "1"
    assert workflow.get_status("session_id") == workflow.SUCCESSFUL
    assert actor.session_start.run() == "UP"
    assert cnt.read_text() == "2"
    assert actor.session_start_with_status.run() == "UP"
    assert cnt.read_text() == "3"

    actor = Session.get_or_create("session_id")
    fail_flag.touch()
    assert isinstance(actor.session_start_with_status.run(), Exception)
    assert cnt.read_text() == "3"
    lock = FileLock(str(lock_file))
    lock.acquire()
    fail_flag.unlink()
    ret = actor.session_start_with_status.run_async()
    for _ in range(0, 60):
        if cnt.read_text() == "4":
            break
        time.sleep(0.1)
    assert cnt.read_text() == "4"
    assert workflow.get_status("session_id") == workflow.RUNNING
    lock.release()
    assert vc.get(ret) == "UP"
    # Ray saw "STARTING" while the sub-workflow ran; here the call's changes land together.
    assert actor.get_status.run() == "UP"
    assert [c.method for e in actor.history(limit=1) for c in e.calls] == ["session_start_with_status"]


def test_wf_in_actor_reader_sees_committed_state_while_sub_workflow_runs(actor_store, tmp_path):
    Session, _, cnt, lock_file = _session(tmp_path)
    actor = Session.get_or_create("session_id")
    lock = FileLock(str(lock_file))
    lock.acquire()
    try:
        ret = actor.session_start_with_status.run_async()
        for _ in range(0, 60):
            if cnt.read_text() == "1":
                break
            time.sleep(0.1)
        # Ray: "STARTING". Ours: the newest committed state; the running call is not half visible.
        assert vc.get(actor.get_status.run_async(), timeout=WAIT) == "DOWN"
    finally:
        lock.release()
    assert vc.get(ret, timeout=WAIT) == "UP"


def _chain_counter(fail_at):
    @workflow.virtual_actor
    class Counter:
        def __init__(self):
            self._counter = 0

        def incr(self, n):
            self._counter += 1
            if fail_at.exists() and n == 1:
                raise Exception()
            if n == 0:
                return self._counter
            else:
                return self.incr.step(n - 1)

        @workflow.virtual_actor.readonly
        def val(self):
            return self._counter

        def __getstate__(self):
            return self._counter

        def __setstate__(self, v):
            self._counter = v

    return Counter


def test_wf_in_actor_chain_atomic(actor_store, tmp_path):
    fail_flag = tmp_path / "fail"
    c = _chain_counter(fail_flag).get_or_create("counter")
    fail_flag.touch()
    # Fail the pipeline at its fourth link. Ray: three increments stay committed.
    with pytest.raises(Exception):
        c.incr.run(4)
    assert c.val.run() == 0
    assert workflow.get_status("counter") == workflow.FAILED
    fail_flag.unlink()
    # Resume re-runs the call from the committed state: the chain is writer code, replayed whole.
    assert vc.get(workflow.resume("counter")) == [5]
    assert c.val.run() == 5
    assert [e.step for e in c.history()] == [1, 0]
    assert workflow.list_all() == [("counter", workflow.SUCCESSFUL)]


def test_default_getset_state_serialization(actor_store):
    @workflow.virtual_actor
    class ActorHavingComplicatedStructure:
        def __init__(self):
            import numpy

            self.x = {"A": numpy.ones(10)}

        def set(self, x):
            self.x = x

    # Ray: RaySystemError (its state had to be JSON). Ours: pickled by default, so it is stored...
    a2 = ActorHavingComplicatedStructure.get_or_create("a2")
    a2.set.run(10)
    assert a2.history()[0].step == 1

    # ...and a JSON actor refuses it, with our error (also a TypeError), before anything is written.
    @workflow.virtual_actor(serializer="json")
    class JsonActorHavingComplicatedStructure:
        def __init__(self):
            import numpy

            self.x = {"A": numpy.ones(10)}

    with pytest.raises(StateSerializationError):
        JsonActorHavingComplicatedStructure.get_or_create("a3")
    with pytest.raises(vc.ActorNotFoundError):
        workflow.get_actor("a3")


def test_virtual_actor_logs_when_the_application_configures_logging(shared):
    # test_virtual_actor_logs, with the one line Ray did not need: a library installs no log
    # handler (Ray printed its lines unasked), so the driver configures logging itself.
    import os
    import subprocess
    import sys

    script = f"""
import logging
logging.basicConfig(level=logging.INFO)
import vactor_cloud as ray
from vactor_cloud import workflow



ray.init({shared.url!r}, **{shared.options!r})

@workflow.virtual_actor
class Counter:
    def __init__(self, x: int):
        self.x = x

    def add(self, y):
        self.x += y
        return self.x

couter = Counter.get_or_create("vid", 10)
couter.add.options(name="add").run(1)
    """
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=120,
        env={**os.environ, **shared.env},
        check=False,
    )
    logs = proc.stdout.decode("ascii") + proc.stderr.decode("ascii")
    assert 'Workflow job created. [id="vid"' in logs
    assert "Step status [RUNNING]\t[vid@add" in logs
    assert "Step status [SUCCESSFUL]\t[vid@add" in logs
