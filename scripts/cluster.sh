#!/usr/bin/env bash
# Starts a 3-node Switchyard cluster on loopback with one command:
#
#   scripts/cluster.sh            # nodes a and b in region eu, c in region us
#
# It builds the binary, creates mesh credentials (a CA, one certificate per
# node, a gossip key) in a temporary directory, starts the nodes, prints their
# URLs and waits; Ctrl-C stops them all. Ports (chosen not to clash with a
# dev node on 4433/8080):
#   node  TLS (wss, WebTransport)  plain HTTP (ws, demo)  gossip
#   a     127.0.0.1:4441           127.0.0.1:8091         127.0.0.1:7941
#   b     127.0.0.1:4442           127.0.0.1:8092         127.0.0.1:7942
#   c     127.0.0.1:4443           127.0.0.1:8093         127.0.0.1:7943
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-cluster.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

go build -o "$tmp/switchyard" ./cmd/switchyard
"$tmp/switchyard" certs init --dir "$tmp/mesh" --nodes a,b,c >/dev/null

fail() {
  echo "cluster.sh: $*" >&2
  for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -5 "$f" >&2; done
  exit 1
}

# start NAME REGION I: starts a node and waits until it answers.
start() {
  local name=$1 region=$2 i=$3
  local args=(--node "$name" --region "$region"
    --listen "127.0.0.1:444$i" --http "127.0.0.1:809$i"
    --mesh-bind "127.0.0.1:794$i" --mesh-tls "$tmp/mesh" --mesh-key "@$tmp/mesh/gossip.key")
  [[ $name != a ]] && args+=(--join 127.0.0.1:7941)
  "$tmp/switchyard" "${args[@]}" >"$tmp/$name.out" 2>"$tmp/$name.log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:809$i/healthz" >/dev/null 2>&1 && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || fail "node $name exited (ports in use?)"
    sleep 0.1
  done
  fail "node $name did not come up"
}
start a eu 1 # the seed first, so that b and c join it at once
start b eu 2
start c us 3

# Wait until every node sees all three.
for i in 1 2 3; do
  for _ in $(seq 1 100); do
    n=$(curl -sf "http://127.0.0.1:809$i/api/nodes" 2>/dev/null | grep -o '"name"' | wc -l || true)
    [[ $n == 3 ]] && continue 2
    sleep 0.1
  done
  fail "node on 809$i does not see 3 nodes"
done
cat <<EOT
3-node cluster up (logs in $tmp/*.log):
  a (eu)  chat http://127.0.0.1:8091/?url=https://127.0.0.1:4441   ws://127.0.0.1:8091/ws
  b (eu)  chat http://127.0.0.1:8092/?url=https://127.0.0.1:4442   ws://127.0.0.1:8092/ws
  c (us)  chat http://127.0.0.1:8093/?url=https://127.0.0.1:4443   ws://127.0.0.1:8093/ws
Open the chat on a and on c: messages cross the mesh. Or subscribe on c and publish on a:
  go run ./examples/pubsub -url ws://127.0.0.1:8093/ws -channel chat -n 0
  curl -s -H 'X-API-Key: dev-api-key' -d '{"channel":"chat","data":"{\\"name\\":\\"api\\",\\"text\\":\\"hi\\"}"}' http://127.0.0.1:8091/api/publish
List the nodes by region: curl -s http://127.0.0.1:8093/api/nodes
Ctrl-C stops the cluster.
EOT
wait
