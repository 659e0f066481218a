"""The child processes of ``vactor bench``, from the parent's side: running one with its output
captured and its whole process group ended (``_run_captured``), timing a fresh process
(``_time_child``) and the scripts such processes run, waiting for writer processes to load and
to report, and ending those left.

What runs inside a writer process (``_process_writer`` and the like) stays in
:mod:`vactor_cloud.cli.bench_harness`, beside the benchmark's actor class, so that a child
that unpickles it defines that class too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from vactor_cloud import _sync
from vactor_cloud.child_reports import take_report
from vactor_cloud.cli._options import CliError
from vactor_cloud.cli.bench_model import Target

#: nothing public: the harness (vactor_cloud.cli.bench_harness) is the one user of these
__all__: list[str] = []


#: a child process that has not answered by then is reported, not waited for
_CHILD_TIMEOUT = 900.0


#: seconds the processes row waits for its writers to load (each says when it has), and a
#: writer for the row's start: one slower to load than the others started its window late,
#: overlapped less, and flattered the aggregate (a fixed 3 s + 0.5 s per process, before)
_READY_LIMIT = 120.0


def _run_captured(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)``, its
    wait in slices on the main thread (``_sync.interruptible_wait``): ``run``'s one ``select``
    on the child's pipes lasts until the child ends, and SIGTERM's handler, taken by another
    thread, waited for it. The child is killed if the wait is interrupted or times out (as
    ``run`` does), and so is every process it started (its own session and process group: the
    timers row's runner processes, which would go on writing into the bench's prefix)."""
    popen = functools.partial(subprocess.Popen, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with popen(args, env=env, start_new_session=True) as proc:
        outputs: list[tuple[str, str]] = []

        def ended(timeout: float | None) -> bool:
            try:  # (called again after a timeout, communicate loses no output)
                outputs.append(proc.communicate(timeout=timeout))
            except subprocess.TimeoutExpired:
                return False
            return True

        try:
            if not _sync.interruptible_wait(ended, timeout, forever=None):
                raise subprocess.TimeoutExpired(args, timeout)
        except BaseException:
            _kill_group(proc.pid)
            proc.kill()
            raise
    _kill_group(proc.pid)  # (any process of the child's left behind it)
    stdout, stderr = outputs[0]
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _kill_group(group: int) -> None:
    """SIGKILL every process of the process group ``group`` (none left: nothing to do)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def _time_child(script: str, target: Target) -> float:
    """Wall seconds of ``python -c script`` in a fresh process, from start to exit."""
    env = {**os.environ, **target.env}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=_CHILD_TIMEOUT)
    return time.perf_counter() - started


def _cold_start_script(target: Target, actor_id: str) -> str:
    """What a serverless function does: import, init, one writer call on a new actor, exit."""
    return (
        "import vactor_cloud as vc\n"
        "@vc.virtual_actor\n"
        "class Counter:\n"
        "    def __init__(self): self.n = 0\n"
        "    def incr(self):\n"
        "        self.n += 1\n"
        "        return self.n\n"
        f"vc.init({target.url!r}, storage_options={target.options!r})\n"
        f"assert Counter.get_or_create({actor_id!r}).incr.run() == 1\n"
    )


def _bare_put_script(target: Target, name: str) -> str:
    """The floor: a fresh process writing one object with the store's own client and nothing else."""
    if target.scheme in ("s3", "s3a"):
        bucket, _, prefix = target.url.split("://", 1)[1].partition("/")
        key = f"{prefix.strip('/')}/{name}".lstrip("/")
        options = target.options
        region = (options.get("client_kwargs") or {}).get("region_name")
        return (
            "import boto3\n"
            f"boto3.client('s3', endpoint_url={options.get('endpoint_url')!r}, "
            f"aws_access_key_id={options.get('key')!r}, aws_secret_access_key={options.get('secret')!r}, "
            f"region_name={region!r}).put_object(Bucket={bucket!r}, Key={key!r}, Body=b'x')\n"
        )
    if target.scheme in ("gs", "gcs"):
        return (
            "import gcsfs\n"
            f"fs = gcsfs.GCSFileSystem(**{target.options!r})\n"
            f"fs.pipe({(target.url.split('://', 1)[1].rstrip('/') + '/' + name)!r}, b'x')\n"
        )
    root = target.url.removeprefix("file://")
    return (
        f"import os\nos.makedirs({root!r}, exist_ok=True)\n"
        f"open(os.path.join({root!r}, {name!r}), 'wb').write(b'x')\n"
    )


def _ended(procs: Sequence[Any]) -> None:
    """Kill each of ``procs`` (started ones) still alive, and reap it (5 s at most each)."""
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(5)


def _taken(results: Any, timeout: float, procs: Sequence[Any]) -> Any:
    """:func:`~vactor_cloud.child_reports.take_report`; a child that failed is the command's error."""
    try:
        return take_report(results, timeout, procs)
    except ChildProcessError as exc:
        raise CliError(f"{exc}; the bench stops") from None
    except queue.Empty:
        raise CliError(f"a bench process did not report within {timeout:.0f} s; the bench stops") from None


def _joined(proc: Any, timeout: float | None) -> bool:
    proc.join(timeout)
    return not proc.is_alive()


def _wait_ready(procs: list[Any], seconds: float, ready: Any = None) -> None:
    """Wait until each of ``procs`` put its index on ``ready`` (with None: ``seconds`` go by),
    ``seconds`` at most, and no longer once one of them died (its failure is said next)."""
    deadline = time.monotonic() + seconds
    waiting = len(procs)
    while waiting and time.monotonic() < deadline and all(p.is_alive() for p in procs):
        if ready is None:
            time.sleep(0.1)
            continue
        with contextlib.suppress(queue.Empty):
            ready.get(timeout=0.1)
            waiting -= 1


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
