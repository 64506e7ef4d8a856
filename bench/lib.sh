# Shared by the bench scripts (source it): open-file limits, a temporary
# directory and the cleanup of the server they start.

# raise_open_files NAME NEED: every session is a socket (or two), so raise
# the soft limit on open files to the hard one, and stop if NEED is over it.
raise_open_files() {
  local hard
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] && hard=1048576
  ulimit -n "$hard" 2>/dev/null || true
  if (( $(ulimit -n) < $2 )); then
    echo "$1: open files limited to $(ulimit -n); this run needs $2" >&2
    exit 1
  fi
}

# bench_tmp NAME: makes $tmp, and on exit stops $server_pid (when set) and
# removes $tmp unless KEEP is set.
bench_tmp() {
  bench_name=$1
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-$1.XXXXXX")
  server_pid=
  trap bench_cleanup EXIT
}

bench_cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ -n ${KEEP:-} ]]; then
    echo "$bench_name: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}

# The servers the benchmark compares, started the same way by run.sh and
# scenario.sh. bench_build TARGETS builds cmd/switchyard, bench/naive,
# bench/floor and bench/loadgen into $tmp and, when TARGETS names centrifugo, finds or
# installs Centrifugo (bench/centrifugo.sh): sets $centrifugo and $api_key
# (new for every run of the script).
bench_build() {
  echo "$bench_name: building into $tmp" >&2
  go build -o "$tmp/switchyard" ./cmd/switchyard
  go build -o "$tmp/naive" ./bench/naive
  go build -o "$tmp/floor" ./bench/floor
  go build -o "$tmp/loadgen" ./bench/loadgen
  centrifugo=
  api_key=
  if [[ " $1 " == *" centrifugo "* ]]; then
    centrifugo=$(bench/centrifugo.sh)
    echo "$bench_name: $(go version -m "$centrifugo" | awk '$1 == "mod" { print $2, $3 }') at $centrifugo" >&2
    api_key=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  fi
}

# bench_tls_cert: makes a certificate for 127.0.0.1 that every target
# serves TLS with (ECDSA P-256, from `switchyard certs init`), in
# $tmp/tls/bench.pem and bench.key.
bench_tls_cert() {
  [[ -f $tmp/tls/bench.pem ]] && return
  "$tmp/switchyard" certs init --dir "$tmp/tls" --nodes bench --hosts 127.0.0.1 >/dev/null
}

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

# centrifugo_config PORT [tls]: prints the configuration a Centrifugo run
# starts with, generated from bench/centrifugo.json (plain pub/sub,
# anonymous subscribers) with the run's port and API key, and with tls the
# benchmark's certificate.
centrifugo_config() {
  local port=$1 tls=${2:-} server
  server="\"address\": \"127.0.0.1\", \"port\": $port"
  if [[ -n $tls ]]; then
    server+=", \"tls\": {\"enabled\": true, \"cert_pem\": \"$tmp/tls/bench.pem\", \"key_pem\": \"$tmp/tls/bench.key\"}"
  fi
  sed -e "s#\"http_server\": {[^}]*}#\"http_server\": {$server}#" \
    -e "s#\"key\": \"set by CENTRIFUGO_HTTP_API_KEY\"#\"key\": \"$api_key\"#" bench/centrifugo.json
}

# start_server TARGET [tls]: starts a fresh server on 127.0.0.1 (port 0,
# or a free port for Centrifugo) and sets server_pid, server_url (ws://, or
# wss:// with tls, using bench_tls_cert's certificate), server_args (the
# load generator's flags for it), server_metrics (its Prometheus URL;
# Centrifugo's only with CENTRIFUGO_PROMETHEUS_ENABLED=true in the
# environment) and server_gc (loadgen's -gc-url and -gc-key flags for a URL
# that makes it collect garbage, /debug/pprof/heap?gc=1; Centrifugo's only
# with CENTRIFUGO_DEBUG_ENABLED=true). Switchyard runs with --limits.connect-rate 0: the other
# targets have no admission limit either. SWITCHYARD_FLAGS adds flags.
start_server() {
  local target=$1 tls=${2:-} out=$tmp/$1.out addr= port= attempt scheme=ws
  server_args=()
  server_metrics=
  if [[ -n $tls ]]; then
    scheme=wss
    bench_tls_cert
    server_args+=(-insecure)
  fi
  for attempt in 1 2 3; do
    case $target in
      switchyard)
        if [[ -n $tls ]]; then
          "$tmp/switchyard" --listen 127.0.0.1:0 --http '' --cert "$tmp/tls/bench.pem" --key "$tmp/tls/bench.key" \
            --limits.connect-rate 0 --log-level warn ${SWITCHYARD_FLAGS:-} >"$out" 2>"$tmp/$target.err" &
        else
          "$tmp/switchyard" --listen '' --http 127.0.0.1:0 --limits.connect-rate 0 --log-level warn ${SWITCHYARD_FLAGS:-} \
            >"$out" 2>"$tmp/$target.err" &
        fi
        ;;
      naive)
        if [[ -n $tls ]]; then
          "$tmp/naive" -listen 127.0.0.1:0 -cert "$tmp/tls/bench.pem" -key "$tmp/tls/bench.key" >"$out" 2>"$tmp/$target.err" &
        else
          "$tmp/naive" -listen 127.0.0.1:0 >"$out" 2>"$tmp/$target.err" &
        fi
        ;;
      floor)
        if [[ -n $tls ]]; then
          echo "$bench_name: floor serves no TLS" >&2
          return 1
        fi
        "$tmp/floor" -listen 127.0.0.1:0 >"$out" 2>"$tmp/$target.err" &
        ;;
      centrifugo)
        port=$(free_port)
        centrifugo_config "$port" "$tls" >"$tmp/centrifugo-$port.json"
        "$centrifugo" --config "$tmp/centrifugo-$port.json" >"$out" 2>"$tmp/$target.err" &
        server_args+=(-api-key "$api_key")
        ;;
      *)
        echo "$bench_name: unknown target $target" >&2
        return 1
        ;;
    esac
    server_pid=$!
    # Wait for the bound address on stdout, or for Centrifugo's port to
    # take connections (up to 10 s).
    for _ in $(seq 200); do
      case $target in
        switchyard) addr=$(sed -n "s#^ *WebSocket *$scheme://\([^/ ]*\)/ws.*#\1#p" "$out") ;;
        naive | floor) addr=$(sed -n 's#^listening on \(.*\)$#\1#p' "$out") ;;
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
      echo "$bench_name: port $port was taken; trying another" >&2
      continue
    fi
    echo "$bench_name: $target exited or printed no address in 10 s:" >&2
    cat "$tmp/$target.err" >&2
    return 1
  done
  if [[ -z $addr ]]; then
    echo "$bench_name: $target did not start" >&2
    return 1
  fi
  server_gc=()
  case $target in
    centrifugo)
      server_url=$scheme://$addr/connection/websocket
      [[ -n ${CENTRIFUGO_PROMETHEUS_ENABLED:-} ]] && server_metrics=http://$addr/metrics
      [[ -n ${CENTRIFUGO_DEBUG_ENABLED:-} ]] && server_gc=(-gc-url "http://$addr/debug/pprof/heap?gc=1")
      ;;
    *)
      server_url=$scheme://$addr/ws
      if [[ -z $tls && $target != floor ]]; then
        server_metrics=http://$addr/metrics
        server_gc=(-gc-url "http://$addr/debug/pprof/heap?gc=1")
        # The node's API key on loopback when none is set (admin scope).
        [[ $target == switchyard ]] && server_gc+=(-gc-key dev-api-key)
      fi
      ;;
  esac
  return 0
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" || true
  server_pid=
}

# show_server_err TARGET: prints what the server wrote to stderr, but for
# Centrifugo's warning that it is not a release build (go install does not
# stamp the version).
show_server_err() {
  if grep -v -e 'running a development build' -e 'TLS handshake error from 127.0.0.1:' -e 'DEBUG mode enabled' "$tmp/$1.err" >"$tmp/$1.err.shown" && [[ -s $tmp/$1.err.shown ]]; then
    echo "$bench_name: $1 wrote to stderr:" >&2
    head -20 "$tmp/$1.err.shown" >&2
  fi
}
