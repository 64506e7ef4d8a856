#!/usr/bin/env bash
# Runs the datagram fan-out benchmark of issue 8: builds cmd/switchyard and
# the load generator into a temporary directory, starts the node as its own
# process on 127.0.0.1 (port 0, dev certificate, volatile channels game:*; a
# fresh node for each run), connects SUBS Go SDK clients over WebTransport
# to the volatile channel game:bench, reads the node's RSS with them idle,
# then has one more client publish PAYLOAD-byte datagrams at RATE per
# second, and prints a Markdown table row per run and the targets.
#
# Usage: bench/datagrams.sh
# Environment (defaults in brackets):
#   SUBS [1000]  PAYLOAD [64]  RATE [60]  DURATION [10s]  WARMUP [1s]
#   SETTLE [2s]   idle time before each RSS reading of the idle sessions
#   RUNS [1]      runs, one after the other, each against a fresh node;
#                 with more than one the table gives the median of each figure
#   IDLE_MAX [0.15]  loadgen -idle-max (the machine's idle check before a run)
#   KEEP [empty]  set to keep the temporary directory (JSON, server logs)
# The load generator and the node share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."

SUBS=${SUBS:-1000}
PAYLOAD=${PAYLOAD:-64}
RATE=${RATE:-60}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
SETTLE=${SETTLE:-2s}
RUNS=${RUNS:-1}
IDLE_MAX=${IDLE_MAX:-0.15}

source "$(dirname "$0")/lib.sh"
raise_open_files datagrams.sh $((SUBS + 100)) # a socket per session in each process
bench_tmp datagrams

echo "datagrams.sh: building into $tmp" >&2
go build -o "$tmp/switchyard" ./cmd/switchyard
go build -o "$tmp/loadgen" ./bench/loadgen

# start_server: starts a fresh node (so that its RSS before the sessions is
# a clean baseline) and sets server_pid, url and hash.
start_server() {
  local out=$tmp/switchyard.out
  "$tmp/switchyard" --listen 127.0.0.1:0 --http '' --volatile-channels 'game:*' --log-level warn ${SERVER_FLAGS:-} \
    >"$out" 2>>"$tmp/switchyard.err" &
  server_pid=$!
  url= hash=
  for _ in $(seq 200); do
    url=$(sed -n 's#^ *WebTransport *\(https://[^/ ]*\)/wt.*#\1#p' "$out")
    hash=$(sed -n 's#^ *cert sha-256 *\([^ ]*\).*#\1#p' "$out")
    [[ -n $url && -n $hash ]] && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "datagrams.sh: switchyard exited:" >&2
      cat "$tmp/switchyard.err" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "datagrams.sh: switchyard printed no WebTransport address in 10 s" >&2
  return 1
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" || true
  server_pid=
}

status=0
: >"$tmp/datagrams.jsonl"
: >"$tmp/switchyard.err"
for run in $(seq "$RUNS"); do
  start_server
  echo "datagrams.sh: run $run: switchyard (pid $server_pid) at $url" >&2
  "$tmp/loadgen" -scenario datagrams -url "$url" -cert-hash "$hash" -server-pid "$server_pid" \
    -subs "$SUBS" -payload "$PAYLOAD" -rate "$RATE" -duration "$DURATION" -warmup "$WARMUP" \
    -settle "$SETTLE" -idle-max "$IDLE_MAX" -json >"$tmp/run.json" || status=1
  cat "$tmp/run.json" >>"$tmp/datagrams.jsonl"
  stop_server
done
if [[ -s $tmp/switchyard.err ]]; then
  echo "datagrams.sh: switchyard wrote to stderr:" >&2
  head -20 "$tmp/switchyard.err" >&2
fi

echo "### Datagram fan-out ($SUBS WebTransport subscribers, $PAYLOAD-byte payload, $RATE/s, $DURATION after $WARMUP warmup)"
echo
"$tmp/loadgen" -table -median "$tmp/datagrams.jsonl"
echo
echo "Targets (issue 8): ≥ 100,000 deliveries per server core-second; p99 ≤ 5 ms; idle session ≤ 40 KiB of server RSS."
exit $status
