#!/usr/bin/env bash
# Stop the LocalStack that localstack/start-host.sh started from this checkout (same PORT /
# VACTOR_LOCALSTACK_STATE). Only that process: the pid file records its pid and start time,
# and a pid since reused by any other process is left alone.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PORT="${PORT:-4566}"
CHECKOUT_ID="$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
STATE="${VACTOR_LOCALSTACK_STATE:-${TMPDIR:-/tmp}/vactor-localstack-$CHECKOUT_ID-$PORT}"
PIDFILE="$STATE/localstack.pid"

identity() { echo "$1 $(cut -d' ' -f22 "/proc/$1/stat" 2>/dev/null || echo gone)"; }

if [[ ! -f "$PIDFILE" ]]; then
  echo "stop-host: no pid file at $PIDFILE; nothing to stop" >&2
  exit 0
fi
RECORDED="$(cat "$PIDFILE")"
PID="${RECORDED%% *}"
if [[ ! "$PID" =~ ^[0-9]+$ ]] || [[ "$RECORDED" != *" "* ]]; then
  echo "stop-host: $PIDFILE does not hold 'PID STARTTIME' as start-host.sh writes it; not killing anything" >&2
  rm -f "$PIDFILE"
  exit 0
fi
if [[ "$(identity "$PID")" != "$RECORDED" ]]; then
  echo "stop-host: pid $PID is not the LocalStack this checkout started (gone, or reused); nothing to stop" >&2
  rm -f "$PIDFILE"
  exit 0
fi
kill -TERM "$PID"
# LocalStack shuts down its services on SIGTERM; give it a bounded while (its state here is
# a throwaway directory: nothing is lost to the SIGKILL after it).
for _ in $(seq 1 10); do
  [[ "$(identity "$PID")" == "$RECORDED" ]] || break
  sleep 0.5
done
if [[ "$(identity "$PID")" == "$RECORDED" ]]; then
  echo "stop-host: pid $PID ignored SIGTERM for 5 s; sending SIGKILL" >&2
  kill -KILL "$PID" 2>/dev/null || true
fi
echo "stop-host: stopped LocalStack (pid $PID)" >&2
rm -f "$PIDFILE"
