GO ?= go

.PHONY: test race fuzz lint bench generate run

# test is the command README.md and .ci/run use.
test:
	./scripts/test.sh

race:
	$(GO) test -race -shuffle=on -count=1 ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=60s ./protocols/

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./edge/ ./protocols/...

generate:
	./scripts/generate.sh

run:
	$(GO) run ./cmd/switchyard
