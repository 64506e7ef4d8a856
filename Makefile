GO ?= go

.PHONY: test race fuzz lint bench generate run

# test is the command README.md and .ci/run use.
test:
	./scripts/test.sh

race:
	$(GO) test -race -shuffle=on -count=1 ./...

# fuzz runs every fuzzer for FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./protocols/
	$(GO) test -run='^$$' -fuzz='^FuzzParseDatagram$$' -fuzztime=$(FUZZTIME) ./protocols/
	$(GO) test -run='^$$' -fuzz='^FuzzParseUpgrade$$' -fuzztime=$(FUZZTIME) ./protocols/websocket/
	$(GO) test -run='^$$' -fuzz='^FuzzAPIPublish$$' -fuzztime=$(FUZZTIME) ./edge/
	$(GO) test -run='^$$' -fuzz='^FuzzConfigFile$$' -fuzztime=$(FUZZTIME) ./cmd/switchyard/
	$(GO) test -run='^$$' -fuzz='^FuzzConfigLoad$$' -fuzztime=$(FUZZTIME) ./cmd/switchyard/
	$(GO) test -run='^$$' -fuzz='^FuzzGossip$$' -fuzztime=$(FUZZTIME) ./mesh/
	$(GO) test -run='^$$' -fuzz='^FuzzLinkMessages$$' -fuzztime=$(FUZZTIME) ./mesh/
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./signaling/
	$(GO) test -run='^$$' -fuzz='^FuzzHandleSignal$$' -fuzztime=$(FUZZTIME) ./signaling/
	$(GO) test -run='^$$' -fuzz='^FuzzVerify$$' -fuzztime=$(FUZZTIME) ./auth/
	$(GO) test -run='^$$' -fuzz='^FuzzVerifyClaims$$' -fuzztime=$(FUZZTIME) ./auth/
	$(GO) test -run='^$$' -fuzz='^FuzzGrants$$' -fuzztime=$(FUZZTIME) ./auth/
	$(GO) test -run='^$$' -fuzz='^FuzzParseCentrifugo$$' -fuzztime=$(FUZZTIME) ./bench/loadgen/

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./edge/ ./protocols/...

generate:
	./scripts/generate.sh

run:
	$(GO) run ./cmd/switchyard
