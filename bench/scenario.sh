#!/usr/bin/env bash
# Runs one benchmark scenario of issue 12 (or several), prints Markdown:
#
#   idle       server RSS per idle subscribed session, and the kernel's
#              memory per TCP socket apart (sockstat buffers + slab)
#   connect    session handshakes per server core-second, ws:// and wss://
#   fanout     1 channel × 1,000 and × 10,000 subscribers, saturation and
#              a fixed rate (bench/run.sh per size), charts in bench/charts/
#   datagrams  WebTransport datagram fan-out (bench/datagrams.sh)
#   mesh       3 Switchyard nodes: publisher on a, subscribers on b and c
#   churn      10,000 connect/subscribe/close cycles, then server RSS,
#              goroutines and open files against the baseline
#   all        all of them, in this order
#
# Usage: bench/scenario.sh NAME...
#        RUNS=1 SUBS=1000 bench/scenario.sh idle      # quicker
# Environment (defaults in brackets; each scenario's own below):
#   TARGETS ["switchyard naive floor centrifugo"]   the servers compared
#             (mesh and datagrams: switchyard only; floor, bench/floor, the
#             least a server can spend, in plain idle, connect and fanout
#             runs only); centrifugo is installed on first use
#             (bench/centrifugo.sh)
#   RUNS [3]  runs per figure, each against a fresh server, the targets
#             taking turns; the tables give the median of the runs
#   IDLE_MAX [0.15]  before each run loadgen waits (up to 30 s) until the
#             machine is at most this busy and warns otherwise; 0 skips it
#   KEEP      keep the temporary directory (JSON lines, server logs)
# Scenario knobs:
#   idle      SUBS [10000]  SETTLE [3s]
#   connect   SUBS [10000]  CONCURRENCY [32]  MODES ["plain tls"]
#   fanout    SIZES ["1000 10000"]  LAT_RATE [100000 / size: 100/s at
#             1,000, 10/s at 10,000]  DURATION [10s]  READERS [epoll: the
#             subscribers' arrival latency too]  and run.sh's knobs
#   datagrams SUBS [1000]  RATE [60]  DURATION [10s]  (datagrams.sh's knobs)
#   mesh      SUBS [1000]  MESH_RATE [100]  DURATION [10s]  OWNERS ["a b"]
#             (the node owning the channel: a is the publisher's, b one of
#             the subscribers')
#   churn     CYCLES [10000]  OPEN [1000] sessions at a time  SETTLE [10s]
# The load generator and the servers share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if (($# == 0)); then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
names=("$@")
if [[ " ${names[*]} " == *" all "* ]]; then
  names=(idle connect fanout datagrams mesh churn)
fi
for name in "${names[@]}"; do
  case $name in
    idle | connect | fanout | datagrams | mesh | churn) ;;
    *)
      echo "scenario.sh: unknown scenario $name (want idle, connect, fanout, datagrams, mesh, churn or all)" >&2
      exit 2
      ;;
  esac
done

TARGETS=${TARGETS:-switchyard naive floor centrifugo}
RUNS=${RUNS:-3}
IDLE_MAX=${IDLE_MAX:-0.15}
export RUNS IDLE_MAX TARGETS

source "$(dirname "$0")/lib.sh"
raise_open_files scenario.sh $((${SUBS:-10000} + ${OPEN:-1000} + 100))
bench_tmp scenario
bench_build "$TARGETS"
status=0

# loadgen ARGS...: the load generator, with the idle check.
loadgen() { "$tmp/loadgen" -idle-max "$IDLE_MAX" "$@"; }

machine() {
  echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg) before the scenario."
}

scenario_idle() {
  local subs=${SUBS:-10000} settle=${SETTLE:-3s} target n
  : >"$tmp/idle.jsonl"
  for n in $(seq "$RUNS"); do
    for target in $TARGETS; do
      start_server "$target"
      echo "scenario.sh: idle run $n/$RUNS: $target (pid $server_pid)" >&2
      loadgen -scenario idle -target "$target" -url "$server_url" -server-pid "$server_pid" -subs "$subs" \
        -settle "$settle" -json "${server_args[@]}" >>"$tmp/idle.jsonl" || status=1
      stop_server
      show_server_err "$target"
    done
  done
  echo "### idle: $subs subscribed sessions, idle for $settle"
  echo
  machine
  echo
  "$tmp/loadgen" -table -median "$tmp/idle.jsonl"
  echo
  echo "Server RSS growth ÷ sessions: user-space memory only. The kernel's memory per server socket is apart: its structures (one object of each slab cache an accepted TCP socket takes: TCP, sock_inode_cache, dentry, filp, eventpoll_epi; object sizes from /proc/slabinfo) plus its buffers (\`ss -tm\` of the server's own sockets: r + f + w + o + bl). A server pays about that per session on top of the RSS figure. As a cross-check, the growth of all slab caches over the phase ÷ sockets made (both ends of every loopback connection: 2 × sessions); it is machine-wide, so other work on the machine skews it."
}

scenario_connect() {
  local subs=${SUBS:-10000} conc=${CONCURRENCY:-32} mode target n tls
  : >"$tmp/connect.jsonl"
  for n in $(seq "$RUNS"); do
    for mode in ${MODES:-plain tls}; do
      tls=
      [[ $mode == tls ]] && tls=1
      for target in $TARGETS; do
        [[ $target == floor && -n $tls ]] && continue # it serves no TLS
        start_server "$target" $tls
        echo "scenario.sh: connect run $n/$RUNS: $target $mode (pid $server_pid) at $server_url" >&2
        loadgen -scenario connect -target "$target" -url "$server_url" -server-pid "$server_pid" -subs "$subs" \
          -concurrency "$conc" -json "${server_args[@]}" >>"$tmp/connect.jsonl" || status=1
        stop_server
        show_server_err "$target"
      done
    done
  done
  echo "### connect: $subs sessions, $conc handshakes at a time"
  echo
  machine
  echo
  "$tmp/loadgen" -table -median "$tmp/connect.jsonl"
  echo
  echo "A connect is TCP (+ a full TLS 1.3 handshake for wss://, no session resumption), the WebSocket upgrade and the protocol's connect: Connect → Connected on switchyard, \`{\"connect\":{}}\` → its reply on centrifugo, the server's ready message on naive and floor (floor writes the 101 answer and it in one write). The sessions stay open until the last is up. Server CPU over that phase (utime + stime); all targets serve the same ECDSA P-256 certificate."
}

scenario_fanout() {
  local size rate
  for size in ${SIZES:-1000 10000}; do
    rate=${LAT_RATE:-$((100000 / size))}
    echo "## fanout: $size subscribers"
    echo
    machine
    echo
    SUBS=$size LAT_RATE=$rate READERS=${READERS:-epoll} bench/run.sh || status=1
    echo
  done
}

scenario_datagrams() {
  echo "## datagrams"
  echo
  machine
  echo
  bench/datagrams.sh || status=1
}

# mesh_node NAME [flags...]: starts a Switchyard node; sets the globals
# node_pid[NAME], node_ws[NAME] and node_gossip[NAME].
declare -A node_pid node_ws node_gossip
mesh_node() {
  local name=$1
  shift
  "$tmp/switchyard" --node "$name" --listen '' --http 127.0.0.1:0 --limits.connect-rate 0 --log-level warn "$@" \
    >"$tmp/node-$name.out" 2>"$tmp/node-$name.err" &
  node_pid[$name]=$!
  local ready='^ *WebSocket *ws://'
  [[ " $* " == *" --mesh-bind "* ]] && ready='^ *mesh '
  for _ in $(seq 200); do
    grep -q "$ready" "$tmp/node-$name.out" 2>/dev/null && break
    kill -0 "${node_pid[$name]}" 2>/dev/null || break
    sleep 0.05
  done
  node_ws[$name]=$(sed -n 's#^ *WebSocket *\(ws://[^ ]*\).*#\1#p' "$tmp/node-$name.out" | head -1)
  node_gossip[$name]=$(sed -n 's#^ *mesh .* gossip \([^,]*\),.*#\1#p' "$tmp/node-$name.out")
  if [[ -z ${node_ws[$name]} ]]; then
    echo "scenario.sh: node $name did not start:" >&2
    cat "$tmp/node-$name.err" >&2
    return 1
  fi
}

mesh_stop() {
  local p
  for p in "${node_pid[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${node_pid[@]}"; do wait "$p" 2>/dev/null || true; done
  node_pid=()
}

# mesh_run LABEL CHANNEL PUB SUBS PIDS RATE: one loadgen run, its target
# relabelled.
mesh_run() {
  local label=$1 channel=$2 pub=$3 subs=$4 pids=$5 rate=$6 first more
  first=${pids%%,*}
  more=${pids#"$first"}
  more=${more#,}
  local args=(-scenario fanout -target switchyard -url "${subs%%,*}" -sub-urls "$subs" -pub-url "$pub" -channel "$channel"
    -server-pid "$first" -subs "${SUBS:-1000}" -duration "${DURATION:-10s}" -warmup 1s -settle 1s -latency-subs 20 -rate "$rate" -json)
  [[ -n $more ]] && args+=(-server-pids "$more")
  loadgen "${args[@]}" | sed "s/\"target\":\"switchyard\"/\"target\":\"$label\"/" >>"$tmp/mesh.jsonl" || status=1
}

scenario_mesh() {
  local rate=${MESH_RATE:-100} n owner ch i r
  : >"$tmp/mesh.jsonl"
  "$tmp/switchyard" certs init --dir "$tmp/mesh" --nodes a,b,c >/dev/null
  local meshargs=(--mesh-bind 127.0.0.1:0 --mesh-tls "$tmp/mesh" --mesh-key "@$tmp/mesh/gossip.key")
  for n in $(seq "$RUNS"); do
    for r in "$rate" 0; do
      # The reference: one node with the publisher and the subscribers.
      mesh_node single
      echo "scenario.sh: mesh run $n/$RUNS: one node, rate $r" >&2
      mesh_run "one node" bench "${node_ws[single]}" "${node_ws[single]}" "${node_pid[single]}" "$r"
      mesh_stop
      mesh_node a "${meshargs[@]}"
      mesh_node b "${meshargs[@]}" --join "${node_gossip[a]}"
      mesh_node c "${meshargs[@]}" --join "${node_gossip[a]}"
      local http_c=${node_ws[c]%/ws}
      http_c=http://${http_c#ws://}
      for _ in $(seq 100); do
        [[ $(curl -sf "$http_c/api/nodes" | grep -o '"name"' | wc -l) == 3 ]] && break
        sleep 0.1
      done
      for owner in ${OWNERS:-a b}; do
        # A channel that node $owner owns (rendezvous hashing over a,b,c).
        ch=
        for i in $(seq 0 99); do
          if [[ $("$tmp/loadgen" -owner "bench-$i" -nodes a,b,c) == "$owner" ]]; then
            ch=bench-$i
            break
          fi
        done
        echo "scenario.sh: mesh run $n/$RUNS: 3 nodes, channel $ch owned by $owner, rate $r" >&2
        mesh_run "3 nodes, owner $owner" "$ch" "${node_ws[a]}" "${node_ws[b]},${node_ws[c]}" \
          "${node_pid[a]},${node_pid[b]},${node_pid[c]}" "$r"
      done
      mesh_stop
    done
  done
  echo "### mesh: ${SUBS:-1000} subscribers, half on node b and half on node c, the publisher on node a; $rate publishes/s and saturation"
  echo
  machine
  echo
  "$tmp/loadgen" -table -median "$tmp/mesh.jsonl"
  echo
  echo "Deliveries per server core-second count the CPU time of all three nodes (one node: its own). A publication goes from a to the channel's owner, which fans it out to the nodes with subscribers: with owner a one link hop to b and to c; with owner b one hop to b, two to c. Replication (replicas 2, the default) copies each publication to the owner's successor before it goes out. The RSS and idle-subscriber columns are node a's alone (it has no subscribers): ignore them here. Centrifugo and naive have no mesh here (Centrifugo needs Redis or NATS for more than one node)."
  {
    "$tmp/loadgen" -table -median -cdf "$root/bench/charts/mesh-${SUBS:-1000}" "$tmp/mesh.jsonl" >/dev/null
  } 2>&1 | sed -n "s#^loadgen: wrote $root/#Chart: #p"
}

scenario_churn() {
  local cycles=${CYCLES:-10000} open=${OPEN:-1000} settle=${SETTLE:-10s} target n
  : >"$tmp/churn.jsonl"
  for n in $(seq "$RUNS"); do
    for target in $TARGETS; do
      [[ $target == floor ]] && continue # it has no /metrics
      CENTRIFUGO_PROMETHEUS_ENABLED=true CENTRIFUGO_DEBUG_ENABLED=true start_server "$target"
      echo "scenario.sh: churn run $n/$RUNS: $target (pid $server_pid)" >&2
      loadgen -scenario churn -target "$target" -url "$server_url" -server-pid "$server_pid" -cycles "$cycles" \
        -subs "$open" -settle "$settle" -metrics-url "$server_metrics" "${server_gc[@]}" -json "${server_args[@]}" >>"$tmp/churn.jsonl" || status=1
      stop_server
      show_server_err "$target"
    done
  done
  echo "### churn: $cycles cycles (connect, subscribe, close), $open sessions at a time, then $settle idle"
  echo
  machine
  echo
  "$tmp/loadgen" -table -median "$tmp/churn.jsonl"
  echo
  echo "Before: a fresh server after the idle check; peak: the highest reading (every 250 ms and at each wave's fullest); after: $settle after the last close. Goroutines and the Go heap in use from each server's /metrics (Centrifugo started with prometheus and debug enabled for this scenario; naive's /metrics is its own two lines). Before the before and the after readings loadgen fetches \`/debug/pprof/heap?gc=1\` twice (switchyard with its loopback admin key), which runs a garbage collection each time (twice, so that sync.Pool's victim cache is freed too), so that the heap figures are live memory, not garbage awaiting the next collection. RSS need not come back all the way: the Go runtime returns freed pages to the OS gradually; goroutines, heap and open files should."
}

for name in "${names[@]}"; do
  "scenario_$name"
  echo
done
exit $status
