#!/usr/bin/env bash
# Benchmarks the node's WebRTC signaling at /signal (issue 9): builds
# cmd/switchyard and the load generator into a temporary directory and, for
# each of RUNS runs,
#   (i)  one node: relay latency of offers, answers and candidates between
#        PAIRS pairs of peers (both peers of a pair on the node), then, on a
#        fresh node for each room size in ROOM_SIZES, PEERS idle peers in
#        rooms of that size and the node's RSS per peer and per room;
#   (ii) a 2-node mesh (two processes, mesh mutual TLS from
#        `switchyard certs init`): the same latency run with peer X of every
#        pair on node a and peer Y on node b; each room's owner (a or b) is
#        reported, with the latency split by owner.
# It prints Markdown tables and the machine's load (uptime, vmstat) beside
# them. The load generator and the nodes share this machine's cores.
#
# Usage: bench/signal.sh
# Environment (defaults in brackets):
#   PAIRS [100]  RATE [1000] messages/s in all  CANDIDATES [4] per side per offer/answer
#   DURATION [10s]  WARMUP [2s]
#   PEERS [5000]  ROOM_SIZES ["2 10"; empty: no capacity runs]  SETTLE [3s] idle time before the RSS is read
#   RUNS [1]      runs, one after the other
#   KEEP [empty]  set to keep the temporary directory (JSON, node logs)
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-100}
RATE=${RATE:-1000}
CANDIDATES=${CANDIDATES:-4}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
PEERS=${PEERS:-5000}
ROOM_SIZES=${ROOM_SIZES-2 10}
SETTLE=${SETTLE:-3s}
RUNS=${RUNS:-1}

source "$(dirname "$0")/lib.sh"
raise_open_files signal.sh $((PEERS + 200)) # a socket per peer in each process
bench_tmp signal

# Every node this script starts; stopped on exit, before lib.sh's cleanup.
node_pids=()
vmstat_pid=
signal_cleanup() {
  stop_nodes
  [[ -n $vmstat_pid ]] && kill "$vmstat_pid" 2>/dev/null || true
  bench_cleanup
}
trap signal_cleanup EXIT

echo "signal.sh: building into $tmp" >&2
go build -o "$tmp/switchyard" ./cmd/switchyard
go build -o "$tmp/loadgen" ./bench/loadgen
"$tmp/switchyard" certs init --dir "$tmp/mesh" --nodes a,b >/dev/null

# start_node NAME [flags...]: starts a node on free ports; sets pid_NAME,
# url_NAME (its ws://…/signal), http_NAME and, with a mesh, gossip_NAME.
start_node() {
  local name=$1; shift
  local out=$tmp/$name.out
  "$tmp/switchyard" --node "$name" --listen '' --http 127.0.0.1:0 --log-level warn "$@" >"$out" 2>>"$tmp/$name.err" &
  local pid=$!
  node_pids+=("$pid")
  printf -v "pid_$name" %s "$pid"
  local url='' gossip=''
  for _ in $(seq 200); do
    url=$(sed -n 's#^ *Signaling *\(ws://[^ ]*\).*#\1#p' "$out")
    gossip=$(sed -n 's#^ *mesh .* gossip \([^,]*\),.*#\1#p' "$out")
    if [[ -n $url ]] && { [[ $* != *--mesh-bind* ]] || [[ -n $gossip ]]; }; then
      printf -v "url_$name" %s "$url"
      printf -v "gossip_$name" %s "$gossip"
      local hp=${url#ws://}
      printf -v "http_$name" %s "http://${hp%/signal}"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "signal.sh: node $name exited:" >&2
      cat "$tmp/$name.err" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "signal.sh: node $name printed no signaling address in 10 s" >&2
  return 1
}

# stop_nodes: stops the nodes one at a time, the last started first (a node
# leaving the mesh waits for the others to hear it).
stop_nodes() {
  local i
  for ((i = ${#node_pids[@]} - 1; i >= 0; i--)); do
    kill "${node_pids[i]}" 2>/dev/null || true
    wait "${node_pids[i]}" 2>/dev/null || true
  done
  node_pids=()
}

mesh_flags() { echo --mesh-bind 127.0.0.1:0 --mesh-tls "$tmp/mesh" --mesh-key "@$tmp/mesh/gossip.key"; }

# load LABEL: one line of the machine's load, for the record.
load() {
  echo "$1: $(uptime | sed 's/^ *//')" >>"$tmp/load.txt"
}

status=0
: >"$tmp/signal.jsonl"
: >"$tmp/load.txt"
vmstat -n 5 >"$tmp/vmstat.txt" 2>/dev/null &
vmstat_pid=$!
lat_flags=(-scenario signal -json -q -pairs "$PAIRS" -rate "$RATE" -candidates "$CANDIDATES" -duration "$DURATION" -warmup "$WARMUP")
for run in $(seq "$RUNS"); do
  # (i) One node.
  start_node single
  echo "signal.sh: run $run: one node (pid $pid_single) at $url_single" >&2
  load "run $run, one node, latency"
  "$tmp/loadgen" "${lat_flags[@]}" -label "run $run: one node" -url "$url_single" -server-pid "$pid_single" \
    >>"$tmp/signal.jsonl" || status=1
  stop_nodes
  for k in $ROOM_SIZES; do
    start_node single
    load "run $run, one node, $PEERS peers in rooms of $k"
    "$tmp/loadgen" -scenario signal -mode capacity -json -q -label "run $run: rooms of $k" -url "$url_single" \
      -server-pid "$pid_single" -peers "$PEERS" -room-size "$k" -settle "$SETTLE" >>"$tmp/signal.jsonl" || status=1
    stop_nodes
  done

  # (ii) Two nodes: X on a, Y on b.
  start_node a $(mesh_flags)
  start_node b $(mesh_flags) --join "$gossip_a"
  for _ in $(seq 100); do
    [[ $(curl -sf "$http_a/api/nodes" | grep -o '"name"' | wc -l) == 2 &&
       $(curl -sf "$http_b/api/nodes" | grep -o '"name"' | wc -l) == 2 ]] && break
    sleep 0.1
  done
  echo "signal.sh: run $run: two nodes, a (pid $pid_a) at $url_a, b (pid $pid_b) at $url_b" >&2
  load "run $run, two nodes, latency"
  "$tmp/loadgen" "${lat_flags[@]}" -label "run $run: X on a, Y on b" -url "$url_a" -url2 "$url_b" -nodes a,b \
    -server-pid "$pid_a" -server-pid2 "$pid_b" >>"$tmp/signal.jsonl" || status=1
  stop_nodes
done
kill "$vmstat_pid" 2>/dev/null || true
wait "$vmstat_pid" 2>/dev/null || true
vmstat_pid=
for n in single a b; do
  if [[ -s $tmp/$n.err ]]; then
    echo "signal.sh: node $n wrote to stderr:" >&2
    head -20 "$tmp/$n.err" >&2
  fi
done

echo "### WebRTC signaling: relay latency ($PAIRS pairs, $RATE messages/s, offer + answer + 2×$CANDIDATES candidates per negotiation, $DURATION after $WARMUP warmup)"
echo
"$tmp/loadgen" -scenario signal -table "$tmp/signal.jsonl"
echo
echo "### Machine load during the runs"
echo
echo '```'
cat "$tmp/load.txt"
# vmstat every 5 s (its first line is the average since boot): us sy id are columns 13-15.
awk 'NR > 3 && $1 ~ /^[0-9]+$/ { n++; us += $13; sy += $14; id += $15; if (min == "" || $15 < min) min = $15 }
     END { if (n) printf "vmstat, %d samples of 5 s: CPU user %.0f %%, system %.0f %%, idle %.0f %% on average (lowest %d %%)\n", n, us/n, sy/n, id/n, min }' "$tmp/vmstat.txt"
echo '```'
exit $status
