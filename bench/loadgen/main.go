// Command loadgen drives a Switchyard node, the naive baseline server in
// bench/naive, or a Centrifugo server, with many subscribers on real
// WebSocket connections and one publisher, and reports deliveries per
// second, deliveries per server core-second, server RSS (per idle
// subscriber too) and end-to-end latency.
//
//	loadgen -target switchyard -url ws://127.0.0.1:8080/ws -server-pid 1234
//	loadgen -target naive -url ws://127.0.0.1:9000/ws -server-pid 1235 -json
//	loadgen -target centrifugo -url ws://127.0.0.1:8000/connection/websocket -api-key KEY -server-pid 1236
//	loadgen -table results.jsonl   # Markdown table of -json lines
//
// The datagrams scenario instead connects Go SDK clients over WebTransport
// to a volatile channel and publishes datagrams at a fixed rate (see
// datagrams.go); it also reports loss and the server RSS of idle sessions:
//
//	loadgen -scenario datagrams -url https://127.0.0.1:4433 -cert-hash HASH -server-pid 1234
//
// The signal scenario drives WebRTC signaling at /signal with raw JSON
// WebSocket clients: relay latency of offers, answers and candidates
// between pairs of peers (on one node or two), or the server RSS of many
// idle peers in rooms (see signal.go):
//
//	loadgen -scenario signal -url ws://127.0.0.1:8080/signal -server-pid 1234
//	loadgen -scenario signal -mode capacity -peers 5000 -room-size 10 -url ws://127.0.0.1:8080/signal -server-pid 1234
//	loadgen -scenario signal -table results.jsonl
//
// The load generator and the server share the machine's cores: every
// figure is for that setup, not for a server with the machine to itself.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	idleMax := fs.Float64("idle-max", 0.15, "before the run, wait (up to 30 s) until the machine's CPU is at most this busy (0 to 1; 0 skips the check); a warning says when it stays busier")
	scenario := fs.String("scenario", scenarioFanout, "`scenario`: fanout (WebSocket, -target), idle (memory of idle sessions, -subs), connect (session handshakes per server core-second, -subs), churn (-cycles connect/disconnect cycles, -subs at a time), datagrams (WebTransport datagrams on a volatile channel) or signal (WebRTC signaling at /signal)")
	subURLs := fs.String("sub-urls", "", "comma-separated subscriber `URLs`, subscriber i on the (i mod n)-th, instead of -url (the publisher stays on -pub-url, default -url)")
	morePIDs := fs.String("server-pids", "", "comma-separated more server `PIDs` (other mesh nodes) whose CPU time counts with -server-pid's")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "wss://: do not verify the server's certificate (the benchmark's servers are self-signed)")
	fs.IntVar(&cfg.DialConcurrency, "concurrency", 32, "connections dialed at once")
	cycles := fs.Int("cycles", 10000, "churn: connect/disconnect cycles")
	metricsURL := fs.String("metrics-url", "", "churn: the server's Prometheus `URL` (for go_goroutines and go_memstats_heap_inuse_bytes)")
	owner := fs.String("owner", "", "print the node of -nodes that owns `channel` in a mesh (rendezvous hashing, as mesh/owner.go), then exit")
	gcURL := fs.String("gc-url", "", "churn: a `URL` that makes the server collect garbage (/debug/pprof/heap?gc=1), fetched before the baseline and the after readings")
	gcKey := fs.String("gc-key", "", "churn: X-API-Key for -gc-url")
	median := fs.Bool("median", false, "with -table: one row per target and setting, each figure the median of its runs")
	certHash := fs.String("cert-hash", "", "datagrams: base64 SHA-256 of the node's certificate (the node prints it as cert sha-256)")
	settle := fs.Duration("settle", 2*time.Second, "idle time of the sessions before each RSS reading of idle sessions (fanout, datagrams); signal capacity: before the RSS reading (3s unless set)")
	fs.StringVar(&cfg.Target, "target", targetSwitchyard, "server `kind`: switchyard, naive, floor (bench/floor: the naive protocol at the least cost) or centrifugo")
	fs.StringVar(&cfg.URL, "url", "", "subscribers' WebSocket `URL`, e.g. ws://127.0.0.1:8080/ws (centrifugo: ws://HOST:PORT/connection/websocket); datagrams: the node's WebTransport URL, https://127.0.0.1:4433")
	fs.StringVar(&cfg.PubURL, "pub-url", "", "where to publish: `URL` of a WebSocket, or of centrifugo's HTTP API (default: -url for switchyard, its /pub for naive, http://HOST:PORT/api/publish of -url for centrifugo)")
	fs.StringVar(&cfg.APIKey, "api-key", "", "centrifugo: `key` of its HTTP API (http_api.key)")
	fs.StringVar(&cfg.Channel, "channel", "bench", "`channel` subscribed and published to (datagrams: game:bench)")
	fs.IntVar(&cfg.Subs, "subs", 1000, "subscriber `connections`")
	fs.IntVar(&cfg.Payload, "payload", 64, "payload `bytes` (at least 16)")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "load before the measurement window")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement window")
	fs.Float64Var(&cfg.Rate, "rate", 0, "publishes per `second`; 0 saturates (as fast as the server keeps up, within -window); datagrams: 0 means 60")
	fs.IntVar(&cfg.Window, "window", 32, "publications the slowest subscriber may lag behind (and unacked publishes) before the publisher waits")
	fs.IntVar(&cfg.LatencySubs, "latency-subs", 10, "subscribers that time every message")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "server `PID` whose CPU time and RSS to sample from /proc (0: none)")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "how long to wait for the last deliveries after publishing stops")
	fs.StringVar(&cfg.Readers, "readers", readersGoroutine, "fanout: how subscribers read: goroutine (one each, in gorilla's read) or epoll (Linux, ws:// only; also records the arrival latency: GOMAXPROCS goroutines with an epoll instance each read all sockets and parse the frames themselves)")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	table := fs.Bool("table", false, "print a Markdown table of the -json result lines in the files named as arguments, then exit")
	quiet := fs.Bool("q", false, "no progress on stderr")
	cdf := fs.String("cdf", "", "with -table: also draw the fan-out runs' latency CDFs as SVG files `PREFIX`-saturation.svg and PREFIX-fixed-rate.svg, and their throughput over time as PREFIX-throughput-saturation.svg and PREFIX-throughput-fixed-rate.svg")
	sc := signalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if *owner != "" {
		if len(sc.Nodes) == 0 {
			return errors.New("-owner needs -nodes")
		}
		fmt.Fprintln(stdout, keyOwner(*owner, sc.Nodes))
		return nil
	}
	if *table {
		if *scenario == scenarioSignal {
			return printSignalTable(stdout, fs.Args())
		}
		files := fs.Args()
		if *median {
			tmp, err := os.CreateTemp("", "loadgen-median-*.jsonl")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			n, err := writeMedians(tmp, files)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if n > 1 {
				fmt.Fprintf(stdout, "Median of %d runs per row.\n\n", n)
			}
			files = []string{tmp.Name()}
		}
		if *cdf != "" {
			written, err := writeCDFs(*cdf, files)
			if err != nil {
				return err
			}
			for _, p := range written {
				fmt.Fprintf(stderr, "loadgen: wrote %s\n", p)
			}
		}
		return printTable(stdout, files)
	}
	if *subURLs != "" {
		cfg.SubURLs = strings.Split(*subURLs, ",")
	}
	if *morePIDs != "" {
		for _, f := range strings.Split(*morePIDs, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("server-pids: %w", err)
			}
			cfg.MorePIDs = append(cfg.MorePIDs, pid)
		}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	name := cfg.Target
	if *scenario != scenarioFanout {
		name = *scenario
	}
	if !*quiet {
		cfg.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "loadgen %s: %s\n", name, fmt.Sprintf(format, args...))
		}
	}
	if *idleMax > 0 {
		logf := cfg.Logf
		if logf == nil {
			logf = func(string, ...any) {}
		}
		// The server was just started: let it settle, then check that
		// nothing else keeps the machine busy (it would skew the figures).
		if busy, ok := waitIdle(ctx, *idleMax, 30*time.Second, logf); !ok {
			fmt.Fprintf(stderr, "loadgen %s: warning: the machine stayed %.0f %% busy before the run (over -idle-max %.0f %%); the figures may be off\n", name, 100*busy, 100**idleMax)
		}
	}
	switch *scenario {
	case scenarioFanout:
		cfg.Settle = *settle
	case scenarioIdle:
		cfg.Settle = *settle
		r, err := RunIdle(ctx, cfg)
		return report(stdout, *asJSON, r, err, printIdleText)
	case scenarioConnect:
		r, err := RunConnect(ctx, cfg)
		return report(stdout, *asJSON, r, err, printConnectText)
	case scenarioChurn:
		cfg.Settle = *settle
		r, err := RunChurn(ctx, cfg, *cycles, *metricsURL, *gcURL, *gcKey)
		return report(stdout, *asJSON, r, err, printChurnText)
	case scenarioDatagrams:
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		dc := DatagramConfig{
			URL: cfg.URL, CertHash: *certHash, Subs: cfg.Subs, Payload: cfg.Payload, Rate: cfg.Rate,
			Warmup: cfg.Warmup, Duration: cfg.Duration, Settle: *settle, ServerPID: cfg.ServerPID, Logf: cfg.Logf,
		}
		if set["channel"] {
			dc.Channel = cfg.Channel
		}
		return runDatagrams(ctx, dc, *asJSON, stdout)
	case scenarioSignal:
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		return runSignalScenario(ctx, sc, cfg, *settle, set, *asJSON, stdout)
	default:
		return fmt.Errorf("scenario %q: want %s, %s or %s", *scenario, scenarioFanout, scenarioDatagrams, scenarioSignal)
	}
	r, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	} else {
		printText(stdout, r)
	}
	if r.Lost > 0 || r.OutOfOrder > 0 || r.Disconnects > 0 {
		return fmt.Errorf("%s: %d lost, %d out of order, %d disconnects (%s)", r.Target, r.Lost, r.OutOfOrder, r.Disconnects, r.FirstError)
	}
	return nil
}

// report prints r as JSON or text; a run that failed after measuring
// something prints it too.
func report[T any](stdout io.Writer, asJSON bool, r *T, err error, text func(io.Writer, *T)) error {
	if r == nil {
		return err
	}
	if asJSON {
		b, jerr := json.Marshal(r)
		if jerr != nil {
			return jerr
		}
		fmt.Fprintln(stdout, string(b))
	} else {
		text(stdout, r)
	}
	return err
}

func printIdleText(w io.Writer, r *IdleResult) {
	fmt.Fprintf(w, "scenario            idle (%s, %d subscribed sessions, idle %.1f s)\n", r.Target, r.Sessions, r.SettleS)
	fmt.Fprintf(w, "server RSS          %.1f MiB before, %.1f MiB with the sessions idle; %d threads\n", r.BaseRSSMiB, r.IdleRSSMiB, r.ServerThreads)
	fmt.Fprintf(w, "idle session        %.1f KiB of server RSS\n", r.IdleSessionKiB)
	fmt.Fprintf(w, "kernel per socket   %.2f KiB: structures %.2f (%s bytes) + buffers %.2f (ss, %d server sockets)\n", r.KernelKiBPerSocket, r.StructKiBPerSocket, r.StructCaches, r.BufKiBPerSocket, r.ServerSockets)
	fmt.Fprintf(w, "slab growth         %.2f KiB per socket, both ends (%s, whole machine); most: %s\n", r.SlabGrowthKiBPerSocket, r.SlabSource, r.SlabTop)
}

func printConnectText(w io.Writer, r *ConnectResult) {
	scheme := "ws"
	if r.TLS {
		scheme = "wss"
	}
	fmt.Fprintf(w, "scenario            connect (%s over %s://, %d sessions, %d at a time)\n", r.Target, scheme, r.Sessions, r.Concurrency)
	fmt.Fprintf(w, "time                %.2f s (%.0f connects/s); load generator and server share %d CPUs\n", r.Seconds, r.ConnectsPerSec, r.CPUs)
	fmt.Fprintf(w, "server CPU          %.2f s: %.0f connects per server core-s\n", r.ServerCPU, r.ConnectsPerCoreSec)
	fmt.Fprintf(w, "loadgen CPU         %.2f s\n", r.LoadgenCPU)
	fmt.Fprintf(w, "handshake           p50 %.2f ms, p99 %.2f ms\n", r.HandshakeP50Ms, r.HandshakeP99Ms)
}

func printChurnText(w io.Writer, r *ChurnResult) {
	fmt.Fprintf(w, "scenario            churn (%s, %d cycles, %d sessions at a time, settle %.0f s)\n", r.Target, r.Cycles, r.Open, r.SettleS)
	fmt.Fprintf(w, "time                %.2f s (%.0f cycles/s), server CPU %.2f s (%.0f cycles per core-s)\n", r.Seconds, r.CyclesPerSec, r.ServerCPU, r.CyclesPerCoreSec)
	fmt.Fprintf(w, "server RSS MiB      %.1f before, %.1f peak, %.1f after\n", r.BaseRSSMiB, r.PeakRSSMiB, r.AfterRSSMiB)
	fmt.Fprintf(w, "goroutines          %d before, %d peak, %d after\n", r.BaseGoroutines, r.PeakGoroutines, r.AfterGoroutines)
	fmt.Fprintf(w, "Go heap in use MiB  %.1f before, %.1f peak, %.1f after\n", r.BaseHeapMiB, r.PeakHeapMiB, r.AfterHeapMiB)
	fmt.Fprintf(w, "open files          %d before, %d peak, %d after\n", r.BaseFDs, r.PeakFDs, r.AfterFDs)
	fmt.Fprintf(w, "forced GC           %v (before the before and after readings)\n", r.GC)
}

func runDatagrams(ctx context.Context, cfg DatagramConfig, asJSON bool, stdout io.Writer) error {
	r, err := RunDatagrams(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	} else {
		printDatagramText(stdout, r)
	}
	if r.Disconnects > 0 {
		return fmt.Errorf("datagrams: %d sessions ended during the run (%s)", r.Disconnects, r.FirstError)
	}
	return nil
}

func printDatagramText(w io.Writer, r *DatagramResult) {
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(w, "scenario            datagrams (%d WebTransport subscribers, %d-byte payload, %g/s)\n", r.Subs, r.Payload, r.Rate)
	fmt.Fprintf(w, "window              %.2f s; load generator and server share %d CPUs\n", r.Seconds, r.CPUs)
	fmt.Fprintf(w, "publishes           %d\n", r.Publishes)
	fmt.Fprintf(w, "deliveries          %d (%.0f/s), loss %.3f %% (%d dropped in the client)\n", r.Deliveries, r.DeliveriesPerSec, r.LossPct, r.Dropped)
	if r.ServerCPU > 0 {
		fmt.Fprintf(w, "server CPU          %.2f s (%.2f cores)\n", r.ServerCPU, r.ServerCores)
		fmt.Fprintf(w, "per server core-s   %.0f deliveries (target ≥ %d: %s)\n", r.DeliveriesPerCoreSec, targetDeliveriesPerCoreSec,
			met(r.DeliveriesPerCoreSec >= targetDeliveriesPerCoreSec))
		fmt.Fprintf(w, "server RSS          %.1f MiB at the end; %.1f MiB before the sessions\n", r.ServerRSSMiB, r.BaseRSSMiB)
		fmt.Fprintf(w, "idle session        %.1f KiB of server RSS connected (target ≤ %d: %s), %.1f KiB subscribed\n", r.IdleSessionKiB,
			targetIdleSessionKiB, met(r.IdleSessionKiB <= targetIdleSessionKiB), r.SubscribedSessionKiB)
	}
	fmt.Fprintf(w, "loadgen CPU         %.2f s\n", r.LoadgenCPU)
	fmt.Fprintf(w, "latency             p50 %.2f ms, p99 %.2f ms (target ≤ %d: %s), max %.2f ms (%d samples)\n", r.LatencyP50Ms, r.LatencyP99Ms,
		targetP99Ms, met(r.LatencyP99Ms <= targetP99Ms), r.LatencyMaxMs, r.LatencySamples)
	fmt.Fprintf(w, "disconnects         %d\n", r.Disconnects)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error         %s\n", r.FirstError)
	}
}

func printText(w io.Writer, r *Result) {
	mode := "saturate"
	if r.Rate > 0 {
		mode = fmt.Sprintf("%g publishes/s", r.Rate)
	}
	fmt.Fprintf(w, "target              %s (%d subscribers, %d-byte payload, %s, window %d)\n", r.Target, r.Subs, r.Payload, mode, r.Window)
	fmt.Fprintf(w, "window              %.2f s; load generator and server share %d CPUs\n", r.Seconds, r.CPUs)
	fmt.Fprintf(w, "publishes           %d (%.0f/s)\n", r.Publishes, r.PublishesPerSec)
	fmt.Fprintf(w, "deliveries          %d (%.0f/s)\n", r.Deliveries, r.DeliveriesPerSec)
	if r.ServerCPU > 0 {
		fmt.Fprintf(w, "server CPU          %.2f s (%.2f cores)\n", r.ServerCPU, r.ServerCores)
		fmt.Fprintf(w, "per server core-s   %.0f deliveries\n", r.DeliveriesPerCoreSec)
		fmt.Fprintf(w, "server RSS          %.1f MiB at the end; %.1f MiB before the subscribers, %.1f MiB with them idle\n", r.ServerRSSMiB, r.BaseRSSMiB, r.IdleRSSMiB)
		fmt.Fprintf(w, "idle subscriber     %.1f KiB of server RSS\n", r.IdleSessionKiB)
	}
	fmt.Fprintf(w, "loadgen CPU         %.2f s\n", r.LoadgenCPU)
	fmt.Fprintf(w, "latency             p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%d samples)\n", r.LatencyP50Ms, r.LatencyP95Ms, r.LatencyP99Ms, r.LatencyP999Ms, r.LatencyMaxMs, r.LatencySamples)
	if r.ArrivalSamples > 0 {
		fmt.Fprintf(w, "arrival latency     p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%d samples; at the kernel's receive timestamp, not the read)\n", r.ArrivalP50Ms, r.ArrivalP95Ms, r.ArrivalP99Ms, r.ArrivalP999Ms, r.ArrivalMaxMs, r.ArrivalSamples)
	}
	fmt.Fprintf(w, "last subscriber     p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%d publications)\n", r.LastP50Ms, r.LastP95Ms, r.LastP99Ms, r.LastP999Ms, r.LastMaxMs, r.LastSamples)
	if r.LastArrivalSamples > 0 {
		fmt.Fprintf(w, "last arrival        p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%d publications)\n", r.LastArrivalP50Ms, r.LastArrivalP95Ms, r.LastArrivalP99Ms, r.LastArrivalP999Ms, r.LastArrivalMaxMs, r.LastArrivalSamples)
	}
	fmt.Fprintf(w, "lost/out of order   %d / %d; disconnects %d; error frames %d\n", r.Lost, r.OutOfOrder, r.Disconnects, r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error         %s\n", r.FirstError)
	}
}
