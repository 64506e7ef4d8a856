#!/usr/bin/env bash
# Starts a 3-node Switchyard cluster on loopback with one command:
#
#   scripts/cluster.sh            # nodes a and b in region eu, c in region us
#
# It builds the binary, creates mesh credentials (a CA, one certificate per
# node, a gossip key) in a temporary directory, starts the nodes, prints their
# URLs and waits; Ctrl-C stops them all. Ports (override with BASE=...):
#   node  TLS (wss, WebTransport)  plain HTTP (ws, demo)  gossip
#   a     127.0.0.1:4431           127.0.0.1:8081         127.0.0.1:7941
#   b     127.0.0.1:4432           127.0.0.1:8082         127.0.0.1:7942
#   c     127.0.0.1:4433           127.0.0.1:8083         127.0.0.1:7943
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

start() { # name region index
  local name=$1 region=$2 i=$3
  local args=(--node "$name" --region "$region"
    --listen "127.0.0.1:443$i" --http "127.0.0.1:808$i"
    --mesh-bind "127.0.0.1:794$i" --mesh-tls "$tmp/mesh" --mesh-key "@$tmp/mesh/gossip.key")
  [[ $name != a ]] && args+=(--join 127.0.0.1:7941)
  "$tmp/switchyard" "${args[@]}" >"$tmp/$name.out" 2>"$tmp/$name.log" &
  pids+=($!)
}
start a eu 1
start b eu 2
start c us 3

# Wait until every node sees the other two.
for i in $(seq 1 100); do
  n=$(curl -sf http://127.0.0.1:8083/api/nodes 2>/dev/null | grep -o '"name"' | wc -l || true)
  [[ $n == 3 ]] && break
  sleep 0.1
done
cat <<EOT
3-node cluster up (logs in $tmp/*.log):
  a (eu)  http://127.0.0.1:8081/?url=https://127.0.0.1:4431   ws://127.0.0.1:8081/ws
  b (eu)  http://127.0.0.1:8082/?url=https://127.0.0.1:4432   ws://127.0.0.1:8082/ws
  c (us)  http://127.0.0.1:8083/?url=https://127.0.0.1:4433   ws://127.0.0.1:8083/ws
Open the chat on a and on c: messages cross the mesh. Or publish on one node:
  curl -s -H 'X-API-Key: dev-api-key' -d '{"channel":"chat","data":"{\\"name\\":\\"api\\",\\"text\\":\\"hi\\"}"}' http://127.0.0.1:8081/api/publish
List the nodes by region: curl -s http://127.0.0.1:8083/api/nodes
Ctrl-C stops the cluster.
EOT
wait
