#!/usr/bin/env bash
# Runs the end-to-end loopback benchmark: builds the switchyard binary, the
# naive baseline server and the load generator into a temporary directory
# (and, when TARGETS names centrifugo, installs Centrifugo into a cache with
# bench/centrifugo.sh), then for each target and run starts a fresh server
# as its own process on 127.0.0.1, drives it with bench/loadgen, stops it,
# and prints Markdown.
#
# Usage: bench/run.sh
#        TARGETS="switchyard naive centrifugo" bench/run.sh
# Environment (defaults in brackets):
#   SUBS [1000]  PAYLOAD [64]  DURATION [10s]  WARMUP [1s]  WINDOW [32]
#   SETTLE [2s]     idle time of the subscribed sessions before the server's
#                   RSS is read for the idle-subscriber figure
#   LAT_RATE [50]   publishes/s of the second, unsaturated run per target
#                   that measures latency; 0 skips it
#   TARGETS ["switchyard naive"]   the order of the targets; centrifugo and
#                   floor (bench/floor: the least cost, plain ws:// only) too
#   RUNS [1]        runs of every target and kind, each against a fresh
#                   server (the targets take turns); with more than one,
#                   every figure of the tables is the median of the runs
#   IDLE_MAX [0.15] loadgen -idle-max: how busy the machine may be before
#                   each run (it waits up to 30 s, then warns)
#   READERS [empty] loadgen -readers: goroutine (a goroutine per subscriber)
#                   or epoll (scenario.sh fanout's default: a few goroutines read all the
#                   subscribers' sockets with epoll); empty passes no flag
#   KEEP [empty]    set to keep the temporary directory (JSON, server logs)
#   CENTRIFUGO_BIN, CENTRIFUGO_VERSION, BENCH_BIN   see bench/centrifugo.sh
# The load generator and the servers share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SUBS=${SUBS:-1000}
PAYLOAD=${PAYLOAD:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
WINDOW=${WINDOW:-32}
SETTLE=${SETTLE:-2s}
LAT_RATE=${LAT_RATE:-50}
TARGETS=${TARGETS:-switchyard naive}
RUNS=${RUNS:-1}
IDLE_MAX=${IDLE_MAX:-0.15}
READERS=${READERS:-}

source "$(dirname "$0")/lib.sh"
raise_open_files run.sh $((SUBS + 100)) # a socket per session in each process
bench_tmp bench

bench_build "$TARGETS"

status=0
: >"$tmp/saturate.jsonl"
: >"$tmp/rate.jsonl"
runs=(saturate)
[[ $LAT_RATE != 0 ]] && runs+=(rate)
for n in $(seq "$RUNS"); do
  for target in $TARGETS; do
    for run in "${runs[@]}"; do
      # A fresh server for every run: the idle-subscriber RSS is the growth
      # over the RSS of a server that has served nothing yet.
      start_server "$target"
      echo "run.sh: run $n/$RUNS: $target $run (pid $server_pid) at $server_url" >&2
      args=(-target "$target" -url "$server_url" -server-pid "$server_pid" -subs "$SUBS" -payload "$PAYLOAD"
        -duration "$DURATION" -warmup "$WARMUP" -window "$WINDOW" -settle "$SETTLE" -idle-max "$IDLE_MAX" -json "${server_args[@]}")
      [[ $run == rate ]] && args+=(-rate "$LAT_RATE")
      [[ -n $READERS ]] && args+=(-readers "$READERS")
      "$tmp/loadgen" "${args[@]}" >>"$tmp/$run.jsonl" || status=1
      stop_server
      show_server_err "$target"
    done
  done
done

if [[ -n $centrifugo ]]; then
  echo "Centrifugo: $(go version -m "$centrifugo" | awk '$1 == "mod" { print $3 }') (\`go install\`, $(go version -m "$centrifugo" | head -1 | awk '{ print $2 }')), config generated from \`bench/centrifugo.json\` (port, API key)."
  echo
fi
if [[ -n $READERS ]]; then
  echo "The load generator's subscribers read with \`loadgen -readers $READERS\`."
  echo
fi
echo "### Saturation ($SUBS subscribers, $PAYLOAD-byte payload, $DURATION after $WARMUP warmup, window $WINDOW)"
echo
"$tmp/loadgen" -table -median "$tmp/saturate.jsonl"
if [[ $LAT_RATE != 0 ]]; then
  echo
  echo "### Fixed rate: $LAT_RATE publishes/s ($SUBS subscribers, $PAYLOAD-byte payload, $DURATION)"
  echo
  "$tmp/loadgen" -table -median "$tmp/rate.jsonl"
fi
# Charts: the latency CDF and the throughput over time of every target
# (the medians of its runs), at saturation and at the fixed rate, as SVG in
# $CHARTS (default bench/charts/fanout-SUBS-*.svg).
charts=${CHARTS:-$root/bench/charts/fanout-$SUBS}
mkdir -p "$(dirname "$charts")"
files=("$tmp/saturate.jsonl")
[[ -f $tmp/rate.jsonl ]] && files+=("$tmp/rate.jsonl")
"$tmp/loadgen" -table -median -cdf "$charts" "${files[@]}" >/dev/null 2>"$tmp/charts.log"
echo
echo "Charts: $(sed -n 's#^loadgen: wrote ##p' "$tmp/charts.log" | sed "s#^$root/##; s#.*#\`&\`#" | paste -sd, - | sed 's/,/, /g')."
exit $status
