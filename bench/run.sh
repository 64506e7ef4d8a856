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
#   TARGETS ["switchyard naive"]   the order of the targets; centrifugo too
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

source "$(dirname "$0")/lib.sh"
raise_open_files run.sh $((SUBS + 100)) # a socket per session in each process
bench_tmp bench

echo "run.sh: building into $tmp" >&2
go build -o "$tmp/switchyard" ./cmd/switchyard
go build -o "$tmp/naive" ./bench/naive
go build -o "$tmp/loadgen" ./bench/loadgen
centrifugo=
if [[ " $TARGETS " == *" centrifugo "* ]]; then
  centrifugo=$(bench/centrifugo.sh)
  echo "run.sh: $(go version -m "$centrifugo" | awk '$1 == "mod" { print $2, $3 }') at $centrifugo" >&2
  # The key of Centrifugo's HTTP API, new for every run of the script.
  api_key=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
fi

# free_port prints a TCP port nothing on 127.0.0.1 listens on now.
# Centrifugo cannot listen on port 0 and report the port it got, so the
# script picks one; start_server tries again if it is taken meanwhile.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    if ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# start_server TARGET: starts the server, sets server_pid, server_url and
# server_args (the load generator's flags for it).
start_server() {
  local target=$1 out=$tmp/$1.out addr= port= attempt
  server_args=()
  for attempt in 1 2 3; do
    case $target in
      switchyard)
        "$tmp/switchyard" --listen '' --http 127.0.0.1:0 --log-level warn >"$out" 2>"$tmp/$target.err" &
        ;;
      naive)
        "$tmp/naive" -listen 127.0.0.1:0 >"$out" 2>"$tmp/$target.err" &
        ;;
      centrifugo)
        # bench/centrifugo.json with the port and the API key from the
        # environment (Centrifugo reads CENTRIFUGO_<SECTION>_<KEY>).
        port=$(free_port)
        CENTRIFUGO_HTTP_SERVER_PORT=$port CENTRIFUGO_HTTP_API_KEY=$api_key \
          "$centrifugo" --config bench/centrifugo.json >"$out" 2>"$tmp/$target.err" &
        server_args=(-api-key "$api_key")
        ;;
      *)
        echo "run.sh: unknown target $target" >&2
        return 1
        ;;
    esac
    server_pid=$!
    # Wait for the bound address on stdout, or for Centrifugo's port to
    # take connections (up to 10 s).
    for _ in $(seq 200); do
      case $target in
        switchyard) addr=$(sed -n 's#^ *WebSocket *ws://\([^/ ]*\)/ws.*#\1#p' "$out") ;;
        naive) addr=$(sed -n 's#^listening on \(.*\)$#\1#p' "$out") ;;
        centrifugo) (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null && kill -0 "$server_pid" 2>/dev/null && addr=127.0.0.1:$port ;;
      esac
      [[ -n $addr ]] && break
      if ! kill -0 "$server_pid" 2>/dev/null; then
        break
      fi
      sleep 0.05
    done
    [[ -n $addr ]] && break
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    if [[ $target == centrifugo ]] && grep -q 'address already in use' "$tmp/$target.err" "$out"; then
      echo "run.sh: port $port was taken; trying another" >&2
      continue
    fi
    echo "run.sh: $target exited or printed no address in 10 s:" >&2
    cat "$tmp/$target.err" >&2
    return 1
  done
  if [[ -z $addr ]]; then
    echo "run.sh: $target did not start" >&2
    return 1
  fi
  case $target in
    centrifugo) server_url=ws://$addr/connection/websocket ;;
    *) server_url=ws://$addr/ws ;;
  esac
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" || true
  server_pid=
}

status=0
: >"$tmp/saturate.jsonl"
: >"$tmp/rate.jsonl"
runs=(saturate)
[[ $LAT_RATE != 0 ]] && runs+=(rate)
for target in $TARGETS; do
  for run in "${runs[@]}"; do
    # A fresh server for every run: the idle-subscriber RSS is the growth
    # over the RSS of a server that has served nothing yet.
    start_server "$target"
    echo "run.sh: $target $run (pid $server_pid) at $server_url" >&2
    args=(-target "$target" -url "$server_url" -server-pid "$server_pid" -subs "$SUBS" -payload "$PAYLOAD"
      -duration "$DURATION" -warmup "$WARMUP" -window "$WINDOW" -settle "$SETTLE" -json "${server_args[@]}")
    [[ $run == rate ]] && args+=(-rate "$LAT_RATE")
    "$tmp/loadgen" "${args[@]}" >>"$tmp/$run.jsonl" || status=1
    stop_server
    # Centrifugo warns on every start that it is not a release build (go
    # install does not stamp the version): not worth showing.
    if grep -v 'running a development build' "$tmp/$target.err" >"$tmp/$target.err.shown" && [[ -s $tmp/$target.err.shown ]]; then
      echo "run.sh: $target wrote to stderr:" >&2
      head -20 "$tmp/$target.err.shown" >&2
    fi
  done
done

if [[ -n $centrifugo ]]; then
  echo "Centrifugo: $(go version -m "$centrifugo" | awk '$1 == "mod" { print $3 }') (\`go install\`, $(go version -m "$centrifugo" | head -1 | awk '{ print $2 }')), config \`bench/centrifugo.json\`."
  echo
fi
echo "### Saturation ($SUBS subscribers, $PAYLOAD-byte payload, $DURATION after $WARMUP warmup, window $WINDOW)"
echo
"$tmp/loadgen" -table "$tmp/saturate.jsonl"
if [[ $LAT_RATE != 0 ]]; then
  echo
  echo "### Fixed rate: $LAT_RATE publishes/s ($SUBS subscribers, $PAYLOAD-byte payload, $DURATION)"
  echo
  "$tmp/loadgen" -table "$tmp/rate.jsonl"
fi
# Charts: the latency CDF of every target, at saturation and at the fixed
# rate, as SVG in $CHARTS (default bench/charts/fanout-SUBS-*.svg).
charts=${CHARTS:-$root/bench/charts/fanout-$SUBS}
mkdir -p "$(dirname "$charts")"
files=("$tmp/saturate.jsonl")
[[ -f $tmp/rate.jsonl ]] && files+=("$tmp/rate.jsonl")
"$tmp/loadgen" -table -cdf "$charts" "${files[@]}" >/dev/null
echo
echo "Latency CDFs: \`${charts#"$root"/}-saturation.svg\`$([[ -f $tmp/rate.jsonl ]] && echo ", \`${charts#"$root"/}-fixed-rate.svg\`")."
exit $status
