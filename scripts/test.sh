#!/usr/bin/env bash
# The project's one test command (README: `make test`; CI: .ci/run).
# It installs what it needs when missing, then checks formatting, vet,
# staticcheck, generated code, the browser SDK (npm ci, bundle check, node
# unit tests), the race-enabled test suite (with headless Chromium), a short run of every fuzzer and the
# benchmarks (one iteration each, so that they keep working).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

need_apt() {
  # need_apt <command> <debian package>: install when missing and possible.
  command -v "$1" >/dev/null && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    step "installing $2"
    apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null; }
  fi
  command -v "$1" >/dev/null
}

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [[ -n $unformatted ]]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet and staticcheck"
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "generated protobuf code is current"
if need_apt protoc protobuf-compiler; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  generated=(protocols/switchyard.pb.go signaling/internal/meshpb/signaling.pb.go mesh/internal/wirepb/*.pb.go)
  for f in "${generated[@]}"; do cp "$f" "$tmp/$(basename "$f")"; done
  ./scripts/generate.sh >/dev/null
  for f in "${generated[@]}"; do
    if ! cmp -s "$f" "$tmp/$(basename "$f")"; then
      cp "$tmp/$(basename "$f")" "$f"
      echo "$f is stale: run make generate and commit"; exit 1
    fi
  done
else
  echo "protoc unavailable and not installable here: generated code not re-checked"
fi

step "browser SDK: npm ci, committed bundle matches a fresh build, unit tests"
if ! command -v npm >/dev/null; then
  need_apt npm npm || { echo "npm is missing and could not be installed"; exit 1; }
fi
(cd client/js && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check && npm test --silent)

step "chromium for the browser tests, nftables and iproute2 for the packet-loss test"
need_apt chromium chromium || { echo "chromium is missing and could not be installed"; exit 1; }
need_apt nft nftables || echo "nftables could not be installed: bench/hol skips its packet-loss test"
need_apt ip iproute2 || echo "iproute2 could not be installed: bench/hol skips its packet-loss test"
export SWITCHYARD_REQUIRE_BROWSER=1

step "tests (race, shuffled)"
go test -race -shuffle=on -count=1 -timeout 10m ./...

step "fuzz smoke (every fuzzer of make fuzz, 5 s each)"
fuzzers=$(sed -n 's/.*-fuzz=.\^\(Fuzz[A-Za-z]*\)\$\$. .*\(\.\/[a-z/]*\)$/\1 \2/p' Makefile)
[[ -n $fuzzers ]] || { echo "no fuzzers found in the Makefile's fuzz target"; exit 1; }
while read -r fuzzer pkg; do
  echo "$fuzzer ($pkg)"
  if ! out=$(go test -run '^$' -fuzz "^${fuzzer}\$" -fuzztime 5s "$pkg" 2>&1); then
    echo "$out" | tail -40
    # A finding is saved under testdata/fuzz and fails every later run: that
    # is a failure. Anything else (the fuzzing engine's own trouble on a
    # loaded machine) gets one more try.
    if grep -q "testdata/fuzz" <<<"$out" || ! go test -run '^$' -fuzz "^${fuzzer}\$" -fuzztime 5s "$pkg" >/dev/null 2>&1; then
      echo "fuzzer $fuzzer in $pkg failed"; exit 1
    fi
    echo "(the engine failed once without a finding; the second run passed)"
  fi
done <<<"$fuzzers"

step "benchmarks run (1 iteration each)"
go test -run '^$' -bench . -benchtime 1x ./edge/ ./protocols/... >/dev/null

step "all checks passed"
