"""The `vactor` command, run as a subprocess against local and moto stores: output and exit codes."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_DOCTOR, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_STORAGE, EXIT_USAGE
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.parametrize("store_lane", ["local", "moto"], indirect=True)


@vc.virtual_actor
class Tally:
    def __init__(self, start: int) -> None:
        self.count = start
        self.notes: list[str] = []

    def add(self, by: int = 1, note: str = "") -> int:
        if by < 0:
            raise ValueError("by must be >= 0")
        self.count += by
        if note:
            self.notes.append(note)
        return self.count

    @vc.virtual_actor.readonly
    def value(self) -> int:
        return self.count

    @vc.virtual_actor.readonly
    def chatty(self) -> int:
        print("a print inside the method")
        return self.count


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def store(store_spec: StoreSpec, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreSpec]:
    """A store holding actors t1 (steps 0..3) and t2 (step 0), written by this process."""
    for key, value in store_spec.env.items():
        monkeypatch.setenv(key, value)
    vc.init(store_spec.url, **store_spec.options)
    try:
        t1 = Tally.get_or_create("t1", 0)
        t1.add.run(2)
        t1.add.run(3, note="three")
        t1.add.run(5)
        Tally.get_or_create("t2", 100)
        yield store_spec
    finally:
        vc.shutdown()


def vactor(spec: StoreSpec, *args: str, module: bool = False) -> Result:
    """Run the CLI in a fresh process, the store given by $VACTOR_STORAGE (piped: plain output)."""
    env = {**os.environ, **spec.env, "VACTOR_STORAGE": spec.url, "AWS_MAX_ATTEMPTS": "2"}
    command = [sys.executable, "-m", "vactor_cloud"] if module else [_console_script()]
    done = subprocess.run(
        [*command, *args], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    return Result(done.returncode, done.stdout, done.stderr)


def _console_script() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "vactor")
    if not os.path.exists(path):
        pytest.fail(f"the console script {path} is missing: pip install -e . declares it")
    return path


def one_line_error(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert lines[0].startswith("vactor: error: ")
    return lines[0]


def test_help_names_every_command_and_the_exit_codes(store: StoreSpec) -> None:
    result = vactor(store, "--help")
    assert result.code == EXIT_OK
    for command in ("ls", "show", "history", "call", "compact", "doctor", "bench", "events"):
        assert f"    {command}" in result.out
    assert "exit codes:" in result.out and "3 actor/step not found" in result.out
    bare = vactor(store)
    assert bare.code == EXIT_USAGE


def test_ls_lists_actors_with_class_and_newest_step(store: StoreSpec) -> None:
    result = vactor(store, "ls")
    assert result.code == EXIT_OK, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["ACTOR", "CLASS", "STEP", "CHANGED"]
    rows = [line.split()[:3] for line in lines[1:]]
    assert rows == [["t1", "test_cli:Tally", "3"], ["t2", "test_cli:Tally", "0"]]
    as_json = vactor(store, "ls", "t2", "--json").json()
    assert [(a["actor_id"], a["step"]) for a in as_json] == [("t2", 0)]  # type: ignore[index]
    assert vactor(store, "ls", "zz").out == ""


def test_history_shows_steps_newest_first_with_calls(store: StoreSpec) -> None:
    result = vactor(store, "history", "t1")
    assert result.code == EXIT_OK, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["STEP", "TIME", "WRITER", "CALLS"]
    assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1", "0"]
    assert "add(3, note='three') -> 5" in lines[2]
    assert "__init__(0)" in lines[4]
    limited = vactor(store, "history", "t1", "--limit", "2", "--json").json()
    assert [e["step"] for e in limited] == [3, 2]  # type: ignore[index]
    assert limited[0]["calls"][0]["result"] == "10"  # type: ignore[index]


def test_show_renders_the_state_now_and_at_a_step(store: StoreSpec) -> None:
    result = vactor(store, "show", "t1")
    assert result.code == EXIT_OK, result.err
    assert "step:       3" in result.out
    assert "{'count': 10, 'notes': ['three']}" in result.out
    past = vactor(store, "show", "t1", "--step", "1", "--json").json()
    assert past["step"] == 1 and past["state"] == {"count": 2, "notes": []}  # type: ignore[index]
    assert past["class"] == "test_cli:Tally"  # type: ignore[index]


def test_call_runs_writers_and_readers_with_json_arguments(store: StoreSpec) -> None:
    result = vactor(store, "call", "t1", "add", "4", "--kwargs", '{"note": "cli"}')
    assert (result.code, result.out.strip()) == (EXIT_OK, "14"), result.err
    assert vactor(store, "call", "t1", "value").out.strip() == "14"
    assert vactor(store, "call", "t1", "value", "--at-step", "2").out.strip() == "5"
    assert vactor(store, "call", "t1", "value", "--json").json() == {"result": 14}
    keyed = [vactor(store, "call", "t2", "add", "1", "--idempotency-key", "req-1").out for _ in range(2)]
    assert keyed == ["101\n", "101\n"]
    assert vc.get_actor("t2").value.run() == 101
    assert vc.get_actor("t1").history(limit=1)[0].calls[0].args == "4, note='cli'"


def test_call_errors_are_one_line_with_exit_codes(store: StoreSpec) -> None:
    cases = [
        (("call", "t1", "nope"), EXIT_USAGE, "has no method 'nope'; its methods: add, chatty, value"),
        (("call", "t1", "add", "x"), EXIT_USAGE, "is not JSON"),
        (("call", "t1", "add", "1", "2", "3"), EXIT_USAGE, "add()"),
        (("call", "t1", "add", "1", "--at-step", "1"), EXIT_USAGE, "writer method"),
        (("call", "t1", "add", "-1"), EXIT_ERROR, "add() raised ValueError: by must be >= 0"),
        (("show", "ghost"), EXIT_NOT_FOUND, "no actor 'ghost'"),
        (("show", "t1", "--step", "9"), EXIT_NOT_FOUND, "step 9 is not written yet"),
        (("history", "bad/id"), EXIT_USAGE, "slash"),
    ]
    for args, code, message in cases:
        result = vactor(store, *args)
        assert result.code == code, (args, result.err)
        assert message in one_line_error(result), args
    debug = vactor(store, "call", "t1", "add", "-1", "--debug")
    assert debug.code == EXIT_ERROR and "Traceback" in debug.err
    assert vc.get_actor("t1").value.run() == 10  # nothing was committed


def test_python_dash_m_is_the_same_command(store: StoreSpec) -> None:
    result = vactor(store, "history", "t2", "--json", module=True)
    assert result.code == EXIT_OK, result.err
    assert [e["step"] for e in result.json()] == [0]  # type: ignore[index]


def test_compact_keeps_the_newest_steps_and_history_says_so(store: StoreSpec) -> None:
    pytest.importorskip("vactor_cloud.compaction")
    result = vactor(store, "compact", "t1", "--keep-last", "2", "--min-age", "0", "--force")
    assert result.code == EXIT_OK, result.err
    assert result.out.splitlines()[1].split()[:3] == ["t1", "2", "2..3"]
    assert "deleting steps 2/2 t1" in result.err  # the progress: the steps deleted, when piped
    assert [e["step"] for e in vactor(store, "history", "t1", "--json").json()] == [3, 2]  # type: ignore[index]
    gone = vactor(store, "show", "t1", "--step", "0")
    assert gone.code == EXIT_NOT_FOUND
    assert "step 0 was compacted" in one_line_error(gone) and "steps 2..3 remain" in gone.err
    everything = vactor(store, "compact", "--all", "--keep-last", "1", "--min-age", "0", "--force", "--json")
    assert everything.code == EXIT_OK, everything.err
    assert {r["actor_id"]: r["deleted_steps"] for r in everything.json()} == {"t1": 1, "t2": 0}  # type: ignore[index,union-attr]
    assert vactor(store, "compact", "--keep-last", "1").code == EXIT_USAGE


@pytest.mark.parametrize("min_age", ["nan", "inf", "-inf", "-1"])
def test_compact_refuses_a_min_age_that_is_not_a_finite_non_negative_number(
    store: StoreSpec, min_age: str
) -> None:
    result = vactor(store, "compact", "t1", "--keep-last", "1", f"--min-age={min_age}", "--force")
    assert result.code == EXIT_USAGE, result.err
    assert "min_age must be a finite number" in one_line_error(result)
    assert [e["step"] for e in vactor(store, "history", "t1", "--json").json()] == [3, 2, 1, 0]  # type: ignore[index]


def test_compact_refuses_a_min_age_below_the_floor_unless_forced(store: StoreSpec) -> None:
    refused = vactor(store, "compact", "t1", "--keep-last", "1", "--min-age", "60")
    assert refused.code == EXIT_USAGE, refused.err
    assert "below the floor of 3600 s" in one_line_error(refused) and "--force" in refused.err
    forced = vactor(store, "compact", "t1", "--keep-last", "1", "--min-age", "60", "--force")
    assert forced.code == EXIT_OK, forced.err
    # The default (a day) keeps steps written seconds ago.
    default = vactor(store, "compact", "t1", "--keep-last", "1", "--json")
    assert default.code == EXIT_OK and default.json()[0]["deleted_steps"] == 0  # type: ignore[index]


def test_doctor_passes_on_a_store_that_keeps_its_promises(store: StoreSpec) -> None:
    result = vactor(store, "doctor", store.url)
    assert result.code == EXIT_OK, result.out + result.err
    assert "every guarantee vactor_cloud needs holds" in result.out
    assert "FAIL" not in result.out
    report = vactor(store, "doctor", "--json").json()
    assert report["ok"] is True and len(report["checks"]) == 6  # type: ignore[index,arg-type]


class _HeaderDroppingProxy(http.server.ThreadingHTTPServer):
    """A loopback proxy to an S3 endpoint that drops If-None-Match and If-Match, as some proxies do."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        upstream_address = (host, int(port))

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("if-none-match", "if-match")
                }
                connection = http.client.HTTPConnection(*upstream_address, timeout=30)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                finally:
                    connection.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_doctor_says_plainly_when_a_proxy_drops_the_conditional_headers(store: StoreSpec) -> None:
    endpoint = store.env.get("AWS_ENDPOINT_URL")
    if endpoint is None:
        pytest.skip("needs an S3 endpoint to put the proxy in front of")
    proxy = _HeaderDroppingProxy(endpoint)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        proxied = StoreSpec(
            store.url, env={**store.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.server_port}"}
        )
        result = vactor(proxied, "doctor")
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)
    assert result.code == EXIT_DOCTOR, result.out + result.err
    assert "FAIL  atomic create" in result.out
    assert "FAIL  if-match (stale version)" in result.out
    assert "ignores If-None-Match" in result.out
    assert "NOT SAFE for vactor_cloud" in result.out


def test_unreachable_storage_is_exit_4_with_a_hint(store: StoreSpec) -> None:
    if "AWS_ENDPOINT_URL" not in store.env:
        pytest.skip("an unreachable endpoint needs a network store")
    dead = StoreSpec(store.url, env={**store.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    result = vactor(dead, "ls")
    assert result.code == EXIT_STORAGE, result.err
    assert "check --storage" in one_line_error(result)


def test_every_command_takes_storage_from_the_option_or_the_environment(store: StoreSpec) -> None:
    env_only = vactor(store, "events", "ls", "--json")  # $VACTOR_STORAGE, as for every command
    assert env_only.code == EXIT_OK, env_only.err
    assert env_only.json() == []
    for argv in (("--storage", store.url, "events", "ls"), ("events", "ls", "--storage", store.url)):
        result = vactor(store, *argv, *_option_args(store), "--json")
        assert result.code == EXIT_OK, result.err
        assert result.json() == []
    drained = vactor(store, "--json", "events", "drain")
    assert drained.code == EXIT_OK, drained.err
    assert drained.json() == []


def _option_args(spec: StoreSpec) -> list[str]:
    argv: list[str] = []
    for key, value in spec.options.items():
        argv += ["-o", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return argv


def test_json_output_is_only_json_and_method_prints_go_to_stderr(store: StoreSpec) -> None:
    for argv in (("--json", "call", "t1", "chatty"), ("call", "t1", "chatty", "--json")):
        result = vactor(store, *argv)
        assert result.code == EXIT_OK, result.err
        assert result.json() == {"result": 10}
        assert "a print inside the method" in result.err


def test_a_missing_local_directory_is_a_usage_error(store: StoreSpec, tmp_path: object) -> None:
    for argv in (
        ("--storage", "/nonexistent/vactor/dir", "ls"),
        ("events", "ls", "--storage", "/nonexistent/d"),
    ):
        result = vactor(store, *argv)
        assert result.code == EXIT_USAGE, result
        assert "no such directory" in one_line_error(result)


def test_limit_zero_means_none_as_in_python_and_all_means_all(store: StoreSpec) -> None:
    none = vactor(store, "history", "t1", "--limit", "0", "--json")
    assert none.code == EXIT_OK, none.err
    assert none.json() == []
    every = vactor(store, "history", "t1", "--limit", "all", "--json").json()
    assert [e["step"] for e in every] == [3, 2, 1, 0]  # type: ignore[index]
    assert vactor(store, "ls", "--limit", "0").code == EXIT_USAGE


def test_unknown_storage_options_are_usage_errors_naming_the_valid_ones(store: StoreSpec) -> None:
    result = vactor(store, "ls", "-o", "endpoint=http://127.0.0.1:1")
    assert result.code == EXIT_USAGE
    assert "'endpoint'" in one_line_error(result) and "valid options" in result.err


def test_timers_run_stops_on_sigterm_and_deletes_its_heartbeat(store: StoreSpec) -> None:
    from vactor_cloud import _sync, keys

    def heartbeats() -> list[str]:
        return _sync.sync(vc.get_runtime().store.list(keys.TIMER_RUNNERS))

    env = {**os.environ, **store.env, "VACTOR_STORAGE": store.url, "AWS_MAX_ATTEMPTS": "2"}
    proc = subprocess.Popen(
        [_console_script(), "timers", "run", "--poll", "0.2", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not heartbeats():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the runner never wrote its heartbeat"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    assert proc.returncode == EXIT_OK, err
    assert json.loads(out)["runners"] == 1
    assert heartbeats() == []
