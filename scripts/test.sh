#!/usr/bin/env bash
# The whole check, as CI runs it: lint, types, tests on every lane, docs.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh --quick         # day to day: lint, types, memory and local lanes only
#   bash scripts/test.sh -k conformance  # other arguments go to pytest
#   VACTOR_LANES=memory,local bash scripts/test.sh
#   VACTOR_TEST_WORKERS=1 bash scripts/test.sh   # pytest in one process (default: 7, pytest-xdist)
#
# Works on a clean checkout with nothing running: creates .venv if missing,
# installs the package with its dev extras (skipped while pyproject.toml is
# unchanged since the last install), starts a LocalStack of its own (host mode,
# 127.0.0.1, a free port, state in this run's temporary directory) in the
# background while ruff, mypy and the tests run (the LocalStack lane waits for it at its
# first test), and stops exactly that process on exit.
# With CI=true, a lane whose server cannot start fails its tests instead of
# skipping them (this repository's pytest option vactor_strict_lanes = "ci").
set -euo pipefail

QUICK=0
PYTEST_ARGS=()
for arg in "$@"; do
  if [[ "$arg" == "--quick" ]]; then
    QUICK=1
  else
    PYTEST_ARGS+=("$arg")
  fi
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export CI="${CI:-}"
# Bytecode caches are written (an environment may set PYTHONDONTWRITEBYTECODE, as this
# project's machines do): without them every pytest worker rewrote and compiled the 170 test
# modules (9.5 s of CPU each, 2.5 s from the cache), and every process the suite starts (moto
# servers, child workers, Dask workers, CLI runs) compiled its dependencies from source.
unset PYTHONDONTWRITEBYTECODE

PY=".venv/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vactor-test.XXXXXX")"
LS_OUT="$WORK/localstack.out"
LS_ERR="$WORK/localstack.err"
LS_PID=""
T0=$SECONDS

now() { date +%s.%N; }
say() { echo "test.sh: $*" >&2; }

# stage NAME COMMAND...: run one stage and print how long it took. Under `set -e` a
# failing command ends the script; the EXIT trap then names the stage that failed.
STAGE=""
STAGE_START=""
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
stage() {
  STAGE="$1"
  shift
  say "== $STAGE"
  STAGE_START="$(now)"
  "$@"
  say "== $STAGE: ok in $(elapsed "$STAGE_START") s"
  STAGE=""
}

cleanup() {
  local rc=$?
  if [[ -n "$STAGE" ]]; then
    say "== $STAGE: FAILED (exit $rc) after $(elapsed "$STAGE_START") s"
  fi
  if [[ -n "${WARM_PID:-}" ]]; then
    kill "$WARM_PID" 2>/dev/null || true
  fi
  if [[ -n "${TYPING_PID:-}" ]]; then
    kill "$TYPING_PID" 2>/dev/null || true
  fi
  if [[ -n "$LS_PID" ]] && kill -0 "$LS_PID" 2>/dev/null; then
    # start-host.sh is still waiting for LocalStack: stop waiting; stop-host.sh stops the server.
    pkill -P "$LS_PID" 2>/dev/null || true
    kill "$LS_PID" 2>/dev/null || true
    wait "$LS_PID" 2>/dev/null || true
  fi
  # Stops only the LocalStack this run started: its own state directory names its pid and start time.
  if [[ -n "${VACTOR_LOCALSTACK_STATE:-}" && -f localstack/stop-host.sh ]]; then
    bash localstack/stop-host.sh || true
  fi
  rm -rf "$WORK"
  say "total $((SECONDS - T0)) s, exit $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

if [[ $QUICK -eq 1 ]]; then
  export VACTOR_LANES=memory,local
  say "--quick: lint, types, lanes $VACTOR_LANES"
elif [[ -f localstack/start-host.sh ]]; then
  # LocalStack installs itself (first run) and boots in about a minute: start it first.
  # A port and a state directory of this run's own: parallel checkouts never meet.
  export PORT VACTOR_LOCALSTACK_STATE="$WORK/localstack"
  PORT="$(free_port)"
  say "starting LocalStack on 127.0.0.1:$PORT in the background (log: $LS_ERR)"
  # The tests start while it boots: the LocalStack lane waits for it at its first test in each
  # worker (vactor_cloud/testing/_localstack.py), until the starter writes how it ended here.
  export VACTOR_LOCALSTACK_ENDPOINT="http://127.0.0.1:$PORT" VACTOR_LOCALSTACK_STARTING="$WORK/localstack.status"
  (
    rc=0
    bash localstack/start-host.sh >"$LS_OUT" 2>"$LS_ERR" || rc=$?
    { echo "exit $rc; the last lines of its output:"; tail -n 10 "$LS_ERR"; } >"$WORK/localstack.status.new"
    mv "$WORK/localstack.status.new" "$VACTOR_LOCALSTACK_STARTING"
  ) &
  LS_PID=$!
else
  say "localstack/start-host.sh not found: the localstack lane will be unavailable"
fi

STAMP=".venv/.vactor-installed"
install_key() { echo "$(sha256sum <pyproject.toml | cut -c1-64) $("$PY" -V 2>&1)"; }

# quick_install PYTHON ARGS...: install ARGS into PYTHON's venv with uv (a cold install
# of the dev extras: about 10 s against pip's 75 to 110 s), falling back to pip when uv
# cannot be had or cannot install (a registry uv does not know, say).
quick_install() {
  local py="$1"
  shift
  local uv
  uv="$(dirname "$py")/uv"
  if [[ -x "$uv" ]] || "$py" -m pip install --quiet uv 2>/dev/null; then
    if "$uv" pip install --quiet --python "$py" "$@"; then
      return 0
    fi
    say "uv could not install $*: falling back to pip"
  fi
  "$py" -m pip install --quiet --upgrade pip
  "$py" -m pip install --quiet "$@"
}

make_venv() {
  if [[ ! -x "$PY" ]]; then
    local python
    # $VACTOR_PYTHON: another interpreter for a new .venv (the suite also passes on 3.12, 3.13)
    python="${VACTOR_PYTHON:-$(command -v python3.11 || command -v python3)}"
    "$python" -m venv .venv
  fi
  # pyproject.toml unchanged since the last successful install: nothing to do (an
  # editable install picks up source changes by itself).
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(install_key)" ]]; then
    say "dependencies up to date (pyproject.toml unchanged): pip skipped"
    return 0
  fi
  quick_install "$PY" -e '.[dev]'
  install_key >"$STAMP"
}

pytest_workers() {
  # Seven workers on two cores: many tests wait (on the servers, child processes, deadlines)
  # rather than compute. On 2026-12-06, one tree, back to back: 5 workers left the CPU idle a
  # part of the time, pytest 540 s; 7 kept it busy (vmstat: 99-100 %), pytest 467 s.
  local workers="${VACTOR_TEST_WORKERS:-7}"
  if [[ "$workers" != "1" ]] && "$PY" -c 'import xdist' 2>/dev/null; then
    # worksteal: a worker that runs out of tests takes some of a busy one's (with the
    # default scheduling, the slow tests handed out first kept one worker busy at the end)
    echo "-n $workers --dist worksteal"
  fi
}

stage "venv + pip install -e .[dev]" make_venv
# Collect once in the background while lint and the type checkers run on one core: it
# writes pytest's rewritten test modules to __pycache__, which every worker then loads.
WARM_PID=""
if [[ -z "${PYTEST_ARGS[*]:-}" ]]; then
  "$PY" -m pytest --collect-only -q -p no:cacheprovider >/dev/null 2>&1 &
  WARM_PID=$!
fi
stage "ruff check" "$PY" -m ruff check .
stage "ruff format --check" "$PY" -m ruff format --check .
stage "mypy --strict" "$PY" -m mypy
if [[ -n "$WARM_PID" ]]; then
  wait "$WARM_PID" || true # only a cache: a failure here shows again in the pytest stage
  WARM_PID=""
fi
TYPING_PID=""
MAIN_PYTEST_ARGS=()
if [[ -z "${PYTEST_ARGS[*]:-}" ]]; then
  # Users' type checkers on tests/typing and the examples (mypy with the plugin, pyright): about
  # 20 s of CPU (2026-12-07) in its longest tests. Among the tests they could start last and hold the run's
  # end; started now, beside them, they end early. Their result is reported after the tests.
  "$PY" -m pytest -q -p no:cacheprovider tests/test_typing.py >"$WORK/typing.log" 2>&1 &
  TYPING_PID=$!
  MAIN_PYTEST_ARGS+=(--ignore=tests/test_typing.py)
fi
typing_checks() {
  if ! wait "$TYPING_PID"; then
    cat "$WORK/typing.log" >&2
    return 1
  fi
  tail -n 1 "$WORK/typing.log" >&2
}
# shellcheck disable=SC2046 # the worker option is two words or none
# --durations: the slowest tests in every log, for keeping the suite within its 10 minutes.
stage "pytest" "$PY" -m pytest $(pytest_workers) --durations=25 ${MAIN_PYTEST_ARGS[@]+"${MAIN_PYTEST_ARGS[@]}"} \
  ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
if [[ -n "$TYPING_PID" ]]; then
  stage "typing checks (tests/test_typing.py, run beside the tests)" typing_checks
fi
if [[ $QUICK -eq 0 && -f mkdocs.yml ]]; then
  stage "mkdocs build --strict" "$PY" -m mkdocs build --strict --site-dir "$WORK/site"
fi
