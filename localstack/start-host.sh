#!/usr/bin/env bash
# Start LocalStack's S3 on this machine without Docker ("host mode"), on 127.0.0.1 only.
#
#   bash localstack/start-host.sh            # prints VACTOR_LOCALSTACK_ENDPOINT=http://127.0.0.1:4566
#   eval "$(bash localstack/start-host.sh | tail -n 1 | sed 's/^/export /')"
#
# Environment (all optional):
#   PORT                       gateway port (default 4566)
#   LOCALSTACK_PYTHON          a Python 3.13 interpreter (default: pyenv's 3.13.0)
#   VACTOR_LOCALSTACK_VENV     where LocalStack's own virtualenv lives (default: ${XDG_CACHE_HOME:-~/.cache}/vactor_cloud/localstack-venv,
#                              outside the checkout: shared by checkouts, never linted or packaged)
#   VACTOR_LOCALSTACK_STATE    pid file, log and LocalStack's data
#                              (default: ${TMPDIR:-/tmp}/vactor-localstack-<checkout hash>-<port>: one per checkout)
#   VACTOR_LOCALSTACK_TIMEOUT  seconds to wait for S3 to become available (default 180)
#
# Idempotent: if a LocalStack started by this script is already healthy on PORT,
# it only prints the endpoint. Stop it with localstack/stop-host.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PORT="${PORT:-4566}"
HOST=127.0.0.1  # loopback only, never all interfaces: the emulator accepts any credentials
ENDPOINT="http://$HOST:$PORT"
VENV="${VACTOR_LOCALSTACK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vactor_cloud/localstack-venv}"
# One state directory (and pid file) per checkout and port: two checkouts never share one.
CHECKOUT_ID="$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
STATE="${VACTOR_LOCALSTACK_STATE:-${TMPDIR:-/tmp}/vactor-localstack-$CHECKOUT_ID-$PORT}"
TIMEOUT="${VACTOR_LOCALSTACK_TIMEOUT:-180}"
PIDFILE="$STATE/localstack.pid"
LOG="$STATE/localstack.log"

# localstack-core 2026.3.0 needs Python 3.13; these pins keep its dependencies importable.
REQUIREMENTS=(
  "localstack-core[runtime]==2026.3.0"
  "cbor2<5.8"
  "cryptography<44"
  "pyopenssl<24.3"
  "service_identity<24.3"
)

say() { echo "start-host: $*" >&2; }

s3_state() {
  # Prints the s3 state from the health endpoint, or nothing if unreachable.
  # --noproxy: a proxy from the environment must not answer for a local server.
  curl --silent --max-time 3 --noproxy '*' "$ENDPOINT/_localstack/health" 2>/dev/null \
    | "$1" -c 'import json, sys; print(json.load(sys.stdin).get("services", {}).get("s3", ""))' 2>/dev/null \
    || true
}

find_python() {
  if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then
    echo "$LOCALSTACK_PYTHON"
  elif command -v pyenv >/dev/null 2>&1 && [[ -x "$(pyenv root)/versions/3.13.0/bin/python" ]]; then
    echo "$(pyenv root)/versions/3.13.0/bin/python"
  elif command -v python3.13 >/dev/null 2>&1; then
    command -v python3.13
  else
    say "no Python 3.13 found: install it (pyenv install 3.13.0) or set LOCALSTACK_PYTHON"
    exit 1
  fi
}

mkdir -p "$STATE"

# The identity of a process: pid and start time (field 22 of /proc/PID/stat). A pid
# file naming a pid that was since reused by another process is then recognised.
identity() { echo "$1 $(cut -d' ' -f22 "/proc/$1/stat" 2>/dev/null || echo gone)"; }
ours_running() { [[ -f "$PIDFILE" ]] && [[ "$(identity "$(cut -d' ' -f1 "$PIDFILE")")" == "$(cat "$PIDFILE")" ]]; }

if ours_running; then
  if [[ "$(s3_state "$VENV/bin/python")" =~ ^(available|running)$ ]]; then
    say "already running (pid $(cut -d' ' -f1 "$PIDFILE"))"
    echo "VACTOR_LOCALSTACK_ENDPOINT=$ENDPOINT"
    exit 0
  fi
  say "a LocalStack (pid $(cut -d' ' -f1 "$PIDFILE")) is running but not healthy; stop it with localstack/stop-host.sh"
  exit 1
fi

venv_ready() { [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import localstack.runtime.main' 2>/dev/null; }

if ! venv_ready; then
  # The venv is shared by checkouts: one installer at a time (flock), into a fresh
  # directory moved into place when complete, so nobody ever sees half a venv.
  mkdir -p "$(dirname "$VENV")"
  exec 9>"$VENV.lock"
  flock 9
  if ! venv_ready; then
    PYTHON="$(find_python)"
    BUILD="$VENV.build.$$"
    rm -rf "$BUILD"
    say "creating $VENV with $PYTHON and installing LocalStack (about a minute)"
    "$PYTHON" -m venv "$BUILD"
    # uv when it can be had (seconds), else pip (about a minute).
    if "$BUILD/bin/python" -m pip install --quiet uv 2>/dev/null \
      && "$BUILD/bin/uv" pip install --quiet --python "$BUILD/bin/python" "${REQUIREMENTS[@]}"; then
      :
    else
      "$BUILD/bin/python" -m pip install --quiet --upgrade pip
      "$BUILD/bin/python" -m pip install --quiet "${REQUIREMENTS[@]}"
    fi
    rm -rf "$VENV"
    mv "$BUILD" "$VENV"
  fi
  flock -u 9
  exec 9>&-
fi

if command -v ss >/dev/null 2>&1 && ss -ltn "sport = :$PORT" 2>/dev/null | grep -q LISTEN; then
  say "port $PORT on $HOST is already taken; choose another with PORT=..."
  exit 1
fi

say "starting LocalStack on $ENDPOINT (log: $LOG)"
# Why each setting:
# - GATEWAY_SERVER=hypercorn: LocalStack's default (twisted) server ignores the host
#   part of GATEWAY_LISTEN and binds all interfaces; hypercorn binds what it is told.
# - OVERRIDE_IN_DOCKER=0: inside any container LocalStack assumes it *is* its own
#   container and writes to /var/lib/localstack; host mode keeps its files under
#   FILESYSTEM_ROOT, which we put in the state directory (as CONFIG_DIR and the cwd).
# - DNS_ADDRESS=0: no DNS server (it would listen on port 53 of all interfaces).
# - DISABLE_EVENTS=1: no analytics calls home.
(
  cd "$STATE"
  export GATEWAY_LISTEN="$HOST:$PORT"
  export GATEWAY_SERVER=hypercorn
  export SERVICES=s3
  export OVERRIDE_IN_DOCKER=0
  export FILESYSTEM_ROOT="$STATE/filesystem"
  export CONFIG_DIR="$STATE/config"
  export LOCALSTACK_VOLUME_DIR="$STATE/volume"
  export PERSISTENCE=0
  export DNS_ADDRESS=0
  export DISABLE_EVENTS=1
  nohup "$VENV/bin/python" -m localstack.runtime.main >"$LOG" 2>&1 &
  identity $! >"$PIDFILE"
)

deadline=$((SECONDS + TIMEOUT))
until [[ "$(s3_state "$VENV/bin/python")" =~ ^(available|running)$ ]]; do
  if ! ours_running; then
    say "LocalStack exited during startup; last lines of $LOG:"
    tail -n 30 "$LOG" >&2 || true
    rm -f "$PIDFILE"
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    say "S3 not available after ${TIMEOUT}s; see $LOG (stop it with localstack/stop-host.sh)"
    exit 1
  fi
  sleep 1
done

say "S3 available (pid $(cut -d' ' -f1 "$PIDFILE"))"
echo "VACTOR_LOCALSTACK_ENDPOINT=$ENDPOINT"
