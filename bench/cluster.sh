#!/usr/bin/env bash
# Cross-node delivery cost: the same fixed-rate load (SUBS subscribers,
# RATE publishes/s, 64-byte payloads) against
#   single      one node on its own: publisher and subscribers on it
#   same-node   a 3-node cluster, publisher and subscribers on node a
#   cross-node  a 3-node cluster, publisher on a, subscribers on c
# The owner of the channel (rendezvous hashing) is reported for each run:
# a publication goes publisher's node → owner → subscribers' node, so it
# makes zero, one or two link hops. Latency is publish → receive, measured
# by the load generator (send timestamp in the payload). The cluster runs
# once per replication setting in REPLICAS: with 2 (the default) each
# publication also waits for its copy at the channel's successor before it
# goes out; with 1 it does not.
#
# Usage: bench/cluster.sh   (env: SUBS [200] RATE [200] DURATION [10s] CHANNELS ["bench bench-1 bench-2"]
#                                 REPLICAS ["1 2"])
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=${SUBS:-200}
RATE=${RATE:-200}
DURATION=${DURATION:-10s}
CHANNELS=${CHANNELS:-bench bench-1 bench-2}
REPLICAS=${REPLICAS:-1 2}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-cluster-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

go build -o "$tmp/switchyard" ./cmd/switchyard
go build -o "$tmp/loadgen" ./bench/loadgen
"$tmp/switchyard" certs init --dir "$tmp/mesh" --nodes a,b,c >/dev/null

# node NAME [mesh args...]: starts a node on free ports; prints its ws URL
# and, with a mesh, its gossip address.
node() {
  local name=$1; shift
  "$tmp/switchyard" --node "$name" --listen '' --http 127.0.0.1:0 --log-level warn "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  for _ in $(seq 200); do
    grep -q "^  mesh\|^try:" "$tmp/$name.out" 2>/dev/null && break
    sleep 0.05
  done
  sleep 0.1
}
ws_of() { sed -n 's#^ *WebSocket *\(ws://[^ ]*\).*#\1#p' "$tmp/$1.out" | head -1; }
gossip_of() { sed -n 's#^ *mesh .* gossip \([^,]*\),.*#\1#p' "$tmp/$1.out"; }
meshargs() { echo --mesh-bind 127.0.0.1:0 --mesh-tls "$tmp/mesh" --mesh-key "@$tmp/mesh/gossip.key"; }

run() { # label channel pub-url sub-url
  "$tmp/loadgen" -q -json -url "$4" -pub-url "$3" -channel "$2" -subs "$SUBS" -rate "$RATE" \
    -duration "$DURATION" -warmup 1s -latency-subs 20 | sed "s/\"target\":\"switchyard\"/\"target\":\"$1 ($2)\"/" >>"$tmp/results.jsonl"
}
: >"$tmp/results.jsonl"

node single
for ch in $CHANNELS; do run single "$ch" "$(ws_of single)" "$(ws_of single)"; done
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

for reps in $REPLICAS; do
  node a $(meshargs) --replicas "$reps"
  node b $(meshargs) --replicas "$reps" --join "$(gossip_of a)"
  node c $(meshargs) --replicas "$reps" --join "$(gossip_of a)"
  http_c=$(ws_of c | sed 's#^ws://#http://#; s#/ws$##')
  for _ in $(seq 100); do
    [[ $(curl -sf "$http_c/api/nodes" | grep -o '"name"' | wc -l) == 3 ]] && break
    sleep 0.1
  done
  for ch in $CHANNELS; do
    run "same-node, replicas $reps" "$ch" "$(ws_of a)" "$(ws_of a)"
    run "cross-node, replicas $reps" "$ch" "$(ws_of a)" "$(ws_of c)"
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done

echo "### Cross-node delivery ($SUBS subscribers, $RATE publishes/s, 64-byte payloads, $DURATION)"
echo
"$tmp/loadgen" -table "$tmp/results.jsonl"
