// Package bench holds Switchyard's end-to-end load benchmark; it has no
// code of its own.
//
// The pieces live in sub-directories:
//
//   - loadgen: the load generator. It opens many subscriber WebSocket
//     connections and one publisher against a running server (a node, the
//     naive server or Centrifugo), publishes at a fixed rate or as fast as
//     the server keeps up, and reports deliveries per second, deliveries
//     per server core-second (from /proc/PID/stat), server RSS (per idle
//     subscriber too) and end-to-end latency, to the first subscribers and
//     to the last one. It also checks that every subscriber got every
//     publication, in order.
//   - naive: the baseline server, a gorilla/websocket broadcast loop with
//     one write per delivery (its code is in internal/naive, so that the
//     load generator's tests can run it in-process).
//   - floor: the least a Go server can spend per connect and per delivery
//     on the naive server's protocol, so that the other targets' figures can
//     be read against what the machine allows.
//   - wtidle: a measurement of where an idle WebTransport (or WebSocket)
//     session's memory goes: RSS, stacks, goroutines by stack, live heap by
//     allocation site, with the node in a child process.
//   - run.sh: builds cmd/switchyard, naive and loadgen, runs the same load
//     against each server in its own process on loopback, and prints
//     Markdown tables. RESULTS.md records its runs; README.md explains
//     the numbers. With centrifugo in TARGETS it also runs Centrifugo,
//     which centrifugo.sh installs into a cache (never into go.mod) and
//     centrifugo.json configures.
//   - scenario.sh: the scenarios of issue 12, one command each (idle,
//     connect, fanout, datagrams, mesh, churn), medians of RUNS runs,
//     charts in charts/; lib.sh holds what the scripts share.
//   - datagrams.sh: the datagram fan-out of issue 8 (loadgen -scenario
//     datagrams): Go SDK clients on WebTransport subscribed to a volatile
//     channel, datagrams at a fixed rate, loss, latency, deliveries per
//     server core-second and the server RSS of idle sessions.
//   - hol: the head-of-line test of issue 8, a Go test that drops packets
//     in a network namespace of its own and compares a small channel's p99
//     latency beside a bulky one over WebTransport streams, one
//     WebTransport stream and WebSocket.
//
// Allocations per delivery come from the hub micro-benchmark in edge/
// (go test -run '^$' -bench Hub -benchmem ./edge/): the load generator
// sees the server only from outside.
package bench
