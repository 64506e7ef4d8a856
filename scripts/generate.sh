#!/usr/bin/env bash
# Regenerates the protobuf code: protocols/switchyard.pb.go (the client
# wire), mesh/internal/wirepb (node-to-node: mesh links and gossip) and
# signaling/internal/meshpb/signaling.pb.go (signaling between nodes). Needs protoc (Debian: apt-get install -y protobuf-compiler);
# installs the pinned protoc-gen-go into the Go bin directory when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
  echo "protoc missing: apt-get install -y protobuf-compiler" >&2
  exit 1
fi
gobin=$(go env GOPATH)/bin
ver=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
if [[ ! -x $gobin/protoc-gen-go ]] || ! "$gobin/protoc-gen-go" --version | grep -q "${ver}"; then
  go install "google.golang.org/protobuf/cmd/protoc-gen-go@${ver}"
fi
PATH=$gobin:$PATH protoc -I protocols/proto \
  --go_out=. --go_opt=module=github.com/switchyard/switchyard \
  protocols/proto/switchyard.proto
PATH=$gobin:$PATH protoc -I signaling/proto \
  --go_out=. --go_opt=module=github.com/switchyard/switchyard \
  signaling/proto/signaling.proto
PATH=$gobin:$PATH protoc -I mesh/proto \
  --go_out=. --go_opt=module=github.com/switchyard/switchyard \
  mesh/proto/*.proto
echo "generated protocols/switchyard.pb.go, mesh/internal/wirepb and signaling/internal/meshpb/signaling.pb.go"
