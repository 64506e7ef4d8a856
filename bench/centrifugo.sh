#!/usr/bin/env bash
# Prints the path of the Centrifugo binary the benchmark runs against,
# installing it first when it is not in the cache: `go install
# github.com/centrifugal/centrifugo/v6@VERSION` with GOBIN set to the
# cache, so it never becomes a dependency of this module. The first
# install downloads and builds Centrifugo (a few minutes); later calls
# print the cached binary at once.
#
# Usage: bench/centrifugo.sh
#        CENTRIFUGO_BIN=$(bench/centrifugo.sh) go test -run Centrifugo ./bench/loadgen/
# Environment (defaults in brackets):
#   CENTRIFUGO_VERSION [v6.9.1]   a v6 release (bench/centrifugo.json is v6 config)
#   BENCH_BIN [${XDG_CACHE_HOME:-$HOME/.cache}/switchyard-bench]   the cache;
#                   the binary is BENCH_BIN/centrifugo-VERSION/centrifugo
#   CENTRIFUGO_BIN  a binary to use as it is: printed, nothing installed
set -euo pipefail

if [[ -n ${CENTRIFUGO_BIN:-} ]]; then
  echo "$CENTRIFUGO_BIN"
  exit 0
fi
version=${CENTRIFUGO_VERSION:-v6.9.1}
dir=${BENCH_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard-bench}/centrifugo-$version
bin=$dir/centrifugo
if [[ ! -x $bin ]]; then
  echo "centrifugo.sh: installing github.com/centrifugal/centrifugo/${version%%.*}@$version into $dir (a few minutes the first time)" >&2
  mkdir -p "$dir"
  # Install into a directory of its own, then move: an interrupted install
  # leaves no binary behind that a later run would take for a good one.
  part=$(mktemp -d "$dir/install.XXXXXX")
  trap 'rm -rf "$part"' EXIT
  (cd "$part" && GOBIN=$part go install "github.com/centrifugal/centrifugo/${version%%.*}@$version") >&2
  mv "$part/centrifugo" "$bin"
fi
echo "$bin"
