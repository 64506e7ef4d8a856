#!/usr/bin/env bash
# Runs the end-to-end loopback benchmark: builds the switchyard binary, the
# naive baseline server and the load generator into a temporary directory,
# then for each target starts the server as its own process on 127.0.0.1
# (port 0), drives it with bench/loadgen, stops it, and prints Markdown.
#
# Usage: bench/run.sh
# Environment (defaults in brackets):
#   SUBS [1000]  PAYLOAD [64]  DURATION [10s]  WARMUP [1s]  WINDOW [32]
#   LAT_RATE [50]   publishes/s of the second, unsaturated run per target
#                   that measures latency; 0 skips it
#   TARGETS ["switchyard naive"]   the order of the targets
#   KEEP [empty]    set to keep the temporary directory (JSON, server logs)
# The load generator and the servers share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."

SUBS=${SUBS:-1000}
PAYLOAD=${PAYLOAD:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
WINDOW=${WINDOW:-32}
LAT_RATE=${LAT_RATE:-50}
TARGETS=${TARGETS:-switchyard naive}

source "$(dirname "$0")/lib.sh"
raise_open_files run.sh $((SUBS + 100)) # a socket per session in each process
bench_tmp bench

echo "run.sh: building into $tmp" >&2
go build -o "$tmp/switchyard" ./cmd/switchyard
go build -o "$tmp/naive" ./bench/naive
go build -o "$tmp/loadgen" ./bench/loadgen

# start_server TARGET: starts the server, sets server_pid and server_url.
start_server() {
  local target=$1 out=$tmp/$1.out addr=
  case $target in
    switchyard)
      "$tmp/switchyard" --listen '' --http 127.0.0.1:0 --log-level warn >"$out" 2>"$tmp/$target.err" &
      ;;
    naive)
      "$tmp/naive" -listen 127.0.0.1:0 >"$out" 2>"$tmp/$target.err" &
      ;;
    *)
      echo "run.sh: unknown target $target" >&2
      return 1
      ;;
  esac
  server_pid=$!
  # Wait for the bound address on stdout (up to 10 s).
  for _ in $(seq 200); do
    case $target in
      switchyard) addr=$(sed -n 's#^ *WebSocket *ws://\([^/ ]*\)/ws.*#\1#p' "$out") ;;
      naive) addr=$(sed -n 's#^listening on \(.*\)$#\1#p' "$out") ;;
    esac
    [[ -n $addr ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "run.sh: $target exited:" >&2
      cat "$tmp/$target.err" >&2
      return 1
    fi
    sleep 0.05
  done
  if [[ -z $addr ]]; then
    echo "run.sh: $target printed no address in 10 s" >&2
    return 1
  fi
  server_url=ws://$addr/ws
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" || true
  server_pid=
}

status=0
: >"$tmp/saturate.jsonl"
: >"$tmp/rate.jsonl"
for target in $TARGETS; do
  start_server "$target"
  echo "run.sh: $target (pid $server_pid) at $server_url" >&2
  common=(-target "$target" -url "$server_url" -server-pid "$server_pid" -subs "$SUBS"
    -payload "$PAYLOAD" -duration "$DURATION" -warmup "$WARMUP" -window "$WINDOW" -json)
  "$tmp/loadgen" "${common[@]}" >>"$tmp/saturate.jsonl" || status=1
  if [[ $LAT_RATE != 0 ]]; then
    "$tmp/loadgen" "${common[@]}" -rate "$LAT_RATE" >>"$tmp/rate.jsonl" || status=1
  fi
  stop_server
  if [[ -s $tmp/$target.err ]]; then
    echo "run.sh: $target wrote to stderr:" >&2
    head -20 "$tmp/$target.err" >&2
  fi
done

echo "### Saturation ($SUBS subscribers, $PAYLOAD-byte payload, $DURATION after $WARMUP warmup, window $WINDOW)"
echo
"$tmp/loadgen" -table "$tmp/saturate.jsonl"
if [[ $LAT_RATE != 0 ]]; then
  echo
  echo "### Fixed rate: $LAT_RATE publishes/s ($SUBS subscribers, $PAYLOAD-byte payload, $DURATION)"
  echo
  "$tmp/loadgen" -table "$tmp/rate.jsonl"
fi
exit $status
