#!/usr/bin/env bash
# Stop a LocalStack started by localstack/start-host.sh (same PORT / VACTOR_LOCALSTACK_STATE).
set -euo pipefail

PORT="${PORT:-4566}"
STATE="${VACTOR_LOCALSTACK_STATE:-${TMPDIR:-/tmp}/vactor-localstack-$PORT}"
PIDFILE="$STATE/localstack.pid"

if [[ ! -f "$PIDFILE" ]]; then
  echo "stop-host: no pid file at $PIDFILE; nothing to stop" >&2
  exit 0
fi
PID="$(cat "$PIDFILE")"
if kill -0 "$PID" 2>/dev/null; then
  kill -TERM "$PID"
  # LocalStack shuts down its services on SIGTERM; give it a bounded while.
  for _ in $(seq 1 30); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$PID" 2>/dev/null; then
    echo "stop-host: pid $PID ignored SIGTERM for 15 s; sending SIGKILL" >&2
    kill -KILL "$PID" 2>/dev/null || true
  fi
  echo "stop-host: stopped LocalStack (pid $PID)" >&2
else
  echo "stop-host: pid $PID is not running" >&2
fi
rm -f "$PIDFILE"
