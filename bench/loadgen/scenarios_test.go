package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/bench/internal/naive"
	"github.com/switchyard/switchyard/protocols"
	wsadapter "github.com/switchyard/switchyard/protocols/websocket"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 1000, 11}, 11}, // an outlier does not move it
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 || in[1] != 1 {
		t.Errorf("median reordered its input: %v", in)
	}
}

// Three runs of two targets fold into one line each, in the order the
// targets first appear, every number the median of its runs.
func TestWriteMedians(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for run, v := range []struct {
		dps   float64
		p99   float64
		lost  int
		cdf   []float64
		other string
	}{
		{100, 5.5, 0, []float64{1, 2, 3}, "first"},
		{300, 1.5, 2, []float64{3, 4, 5}, "second"},
		{200, 9.5, 1, []float64{2, 9, 1}, "third"},
	} {
		for _, target := range []string{"switchyard", "naive"} {
			r := Result{Target: target, Subs: 1000, Payload: 64, DeliveriesPerSec: v.dps, LatencyP99Ms: v.p99, Lost: uint64(v.lost),
				LatencyCDFMs: v.cdf, FirstError: v.other}
			if target == "naive" {
				r.DeliveriesPerSec *= 2
			}
			b, _ := json.Marshal(r)
			lines = append(lines, string(b))
		}
		// A fixed-rate run of the same target is another row.
		if run == 0 {
			b, _ := json.Marshal(Result{Target: "switchyard", Subs: 1000, Payload: 64, Rate: 100, DeliveriesPerSec: 7})
			lines = append(lines, string(b))
		}
	}
	in := filepath.Join(dir, "runs.jsonl")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	most, err := writeMedians(&out, []string{in})
	if err != nil {
		t.Fatal(err)
	}
	if most != 3 {
		t.Errorf("largest group %d, want 3", most)
	}
	var rs []Result
	var runs []int
	for line := range strings.Lines(out.String()) {
		var r Result
		var n struct {
			Runs int `json:"runs"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		_ = json.Unmarshal([]byte(line), &n)
		rs = append(rs, r)
		runs = append(runs, n.Runs)
	}
	if len(rs) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(rs), out.String())
	}
	sy, nv, fixed := rs[0], rs[1], rs[2]
	if sy.Target != "switchyard" || sy.Rate != 0 || nv.Target != "naive" || fixed.Rate != 100 {
		t.Fatalf("rows out of order: %+v", rs)
	}
	if runs[0] != 3 || runs[1] != 3 || runs[2] != 1 {
		t.Errorf("runs %v, want [3 3 1]", runs)
	}
	if sy.DeliveriesPerSec != 200 || nv.DeliveriesPerSec != 400 || sy.LatencyP99Ms != 5.5 || sy.Lost != 1 || fixed.DeliveriesPerSec != 7 {
		t.Errorf("medians: %+v, %+v, %+v", sy, nv, fixed)
	}
	if fmt.Sprint(sy.LatencyCDFMs) != "[2 4 3]" {
		t.Errorf("CDF %v, want the element-wise median [2 4 3]", sy.LatencyCDFMs)
	}
	if sy.FirstError != "first" {
		t.Errorf("a string comes from the first run: %q", sy.FirstError)
	}
}

func TestMedianNumberKeepsIntegers(t *testing.T) {
	if got := medianNumber([]json.Number{"1", "2"}); got != "2" { // 1.5 rounded: an int field must decode
		t.Errorf("medianNumber(1, 2) = %s, want 2", got)
	}
	if got := medianNumber([]json.Number{"1", "2.0"}); got != "1.5" {
		t.Errorf("medianNumber(1, 2.0) = %s, want 1.5", got)
	}
	if got := medianLists([][]any{{json.Number("1"), "x"}, {json.Number("3"), "y"}}); fmt.Sprint(got) != "[1 x]" {
		t.Errorf("a list of non-numbers is the first run's: %v", got)
	}
}

const slabinfoSample = `slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
TCP                   92    143   2368   13    8 : tunables    0    0    0 : slabdata     11     11      0
eventpoll_epi        154    256    128   32    1 : tunables    0    0    0 : slabdata      8      8      0
sock_inode_cache     246    304    832   19    4 : tunables    0    0    0 : slabdata     16     16      0
filp                 588    651    192   21    1 : tunables    0    0    0 : slabdata     31     31      0
dentry            213264 216594    192   21    1 : tunables    0    0    0 : slabdata  10314  10314      0
kmalloc-64         1024   1024     64   64    1 : tunables    0    0    0 : slabdata      2      2      0
`

func TestSlabinfo(t *testing.T) {
	caches, err := parseSlabinfo(strings.NewReader(slabinfoSample))
	if err != nil {
		t.Fatal(err)
	}
	if c := caches["TCP"]; c.active != 92 || c.size != 2368 || c.kib() != 92*2368.0/1024 {
		t.Errorf("TCP: %+v", c)
	}
	kib, how := socketStructs(caches)
	if want := (2368 + 832 + 192 + 192 + 128) / 1024.0; kib != want {
		t.Errorf("socket structures %v KiB, want %v", kib, want)
	}
	if how != "TCP 2368 + sock_inode_cache 832 + dentry 192 + filp 192 + eventpoll_epi 128" {
		t.Errorf("structures: %q", how)
	}
	// 100 more TCP sockets and their inodes: per socket, TCP grew most.
	grown := map[string]slabCache{}
	for k, v := range caches {
		grown[k] = v
	}
	grown["TCP"] = slabCache{active: 192, size: 2368}
	grown["sock_inode_cache"] = slabCache{active: 346, size: 832}
	if got := slabGrowth(caches, grown, 100, 4); got != "TCP 2.31, sock_inode_cache 0.81" {
		t.Errorf("slab growth: %q", got)
	}
	if _, err := parseSlabinfo(strings.NewReader("slabinfo - version: 2.1\nTCP x\n")); err == nil {
		t.Error("parseSlabinfo took a malformed line")
	}
}

func TestParseSS(t *testing.T) {
	// ss -tmnpH: skmem on the line after the socket's.
	out := `ESTAB 0 0 127.0.0.1:8080 127.0.0.2:5000 users:(("switchyard",pid=42,fd=10))
	 skmem:(r0,rb131072,t0,tb2626560,f4096,w0,o0,bl0,d0)
ESTAB 0 0 127.0.0.1:8080 127.0.0.3:5001 users:(("switchyard",pid=42,fd=11))
	 skmem:(r1280,rb131072,t512,tb2626560,f0,w2304,o8,bl16,d3)
ESTAB 0 0 127.0.0.2:5000 127.0.0.1:8080 users:(("loadgen",pid=4242,fd=7))
	 skmem:(r999,rb131072,t0,tb2626560,f999,w0,o0,bl0,d0)
ESTAB 0 0 127.0.0.1:9 127.0.0.1:10 users:(("other",pid=7,fd=3)) skmem:(r5,rb1,t0,tb1,f0,w0,o0,bl0,d0)
`
	n, b := parseSS(out, 42)
	if n != 2 || b != 4096+1280+2304+8+16 {
		t.Errorf("pid 42: %d sockets, %d bytes; want 2, %d", n, b, 4096+1280+2304+8+16)
	}
	if n, b := parseSS(out, 7); n != 1 || b != 5 {
		t.Errorf("pid 7 (skmem on the same line): %d sockets, %d bytes", n, b)
	}
	if n, _ := parseSS(out, 4); n != 0 {
		t.Errorf("pid 4 matched %d sockets (a prefix of 42 and 4242)", n)
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 17
go_memstats_heap_inuse_bytes 3.2768e+06
switchyard_sessions{transport="ws"} 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 17 || m["go_memstats_heap_inuse_bytes"] != 3276800 || len(m) != 2 {
		t.Errorf("%v", m)
	}
}

func TestTimeline(t *testing.T) {
	if got := rateOver(250, 100*time.Millisecond); got != 2500 {
		t.Errorf("rateOver(250, 100ms) = %v", got)
	}
	if got := rateOver(1, 3*time.Second); got != 0.3 {
		t.Errorf("rateOver(1, 3s) = %v, want 0.3 (one decimal)", got)
	}
	if got := rateOver(5, 0); got != 0 {
		t.Errorf("rateOver(5, 0) = %v", got)
	}
	var n uint64
	tl := startTimeline(func() uint64 { n += 10; return n }, 5*time.Millisecond)
	time.Sleep(60 * time.Millisecond)
	rates := tl.stop()
	if len(rates) < 3 || len(rates) > 13 {
		t.Fatalf("%d samples in 60 ms of 5 ms steps", len(rates))
	}
	for _, r := range rates {
		if r <= 0 {
			t.Errorf("rate %v: every step counted 10 more", r)
		}
	}
	if again := tl.stop(); len(again) != len(rates) {
		t.Error("a second stop changed the result")
	}
}

func TestWriteThroughput(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i, target := range []string{"switchyard", "naive", "centrifugo"} {
		r := Result{Target: target, Subs: 1000, Payload: 64, DeliveriesPerSec: float64(1000 * (i + 1)),
			TimelineStepMs: 100, TimelineWindowS: 1}
		for j := range 30 {
			r.Timeline = append(r.Timeline, float64(1000*(i+1)+j))
		}
		r.LatencyCDFMs = make([]float64, len(cdfQuantiles))
		for j := range r.LatencyCDFMs {
			r.LatencyCDFMs[j] = float64(j + 1)
		}
		b, _ := json.Marshal(r)
		lines = append(lines, string(b))
	}
	in := filepath.Join(dir, "sat.jsonl")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	written, err := writeCDFs(filepath.Join(dir, "fanout"), []string{in})
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || !strings.HasSuffix(written[1], "fanout-throughput-saturation.svg") {
		t.Fatalf("wrote %v", written)
	}
	svg, _ := os.ReadFile(written[1])
	s := string(svg)
	if n := strings.Count(s, "<polyline"); n != 3 {
		t.Errorf("%d lines, want one per target", n)
	}
	// 30 points per line; the first at 0.1 s, the top of the scale 5k.
	if n := strings.Count(strings.Split(s, "<polyline")[1], ","); n != 30 {
		t.Errorf("%d points in the first line, want 30", n)
	}
	for _, want := range []string{"centrifugo (saturation): 3k deliveries/s", ">5k<", ">window<", ">3 s<"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}
	if err := writeThroughput(&bytes.Buffer{}, "none", []Result{{Target: "x"}}); err == nil {
		t.Error("a chart without timelines")
	}
}

func TestNiceCeilAndHumanCount(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 3: 5, 10: 10, 11: 20, 4100: 5000, 0.3: 0.5} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[float64]string{12: "12", 45600: "45.6k", 1234567: "1.23M"} {
		if got := humanCount(in); got != want {
			t.Errorf("humanCount(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestKeyOwner(t *testing.T) {
	nodes := []string{"a", "b", "c"}
	seen := map[string]bool{}
	for i := range 30 {
		o := keyOwner(fmt.Sprintf("bench-%d", i), nodes)
		if o != keyOwner(fmt.Sprintf("bench-%d", i), []string{"c", "a", "b"}) {
			t.Fatalf("owner of bench-%d depends on the order of the nodes", i)
		}
		seen[o] = true
	}
	if len(seen) != 3 {
		t.Errorf("30 channels fell on %v only", seen)
	}
	if roomOwner("r", nodes) != keyOwner("signal/r", nodes) {
		t.Error("roomOwner is keyOwner of signal/ROOM")
	}
}

// metricsFor serves naive with the /metrics and gc routes of bench/naive.
func naiveWithMetrics(srv *naive.Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "go_goroutines %d\ngo_memstats_heap_inuse_bytes 1048576\n", runtime.NumGoroutine())
	})
	mux.HandleFunc("GET /gc", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != "k" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		runtime.GC()
	})
	return mux
}

// The session scenarios end to end against the naive server and the
// switchyard protocol's fake node in this process.
func TestSessionScenarios(t *testing.T) {
	srv := naive.New()
	addr := serve(t, naiveWithMetrics(srv))
	t.Cleanup(srv.Close)
	node := &fakeNode{subs: make(map[protocols.Session]bool)}
	syAddr := serve(t, wsadapter.NewServer(node, wsadapter.Config{}))
	t.Cleanup(func() {
		waitFor(t, 5*time.Second, "sessions to end", func() bool { return node.sessions() == 0 })
	})
	ctx := context.Background()

	t.Run("idle", func(t *testing.T) {
		r, err := RunIdle(ctx, Config{Target: targetNaive, URL: "ws://" + addr + "/ws", Subs: 30, ServerPID: os.Getpid()})
		if err != nil {
			t.Fatal(err)
		}
		if r.Scenario != scenarioIdle || r.Sessions != 30 || r.BaseRSSMiB <= 0 || r.IdleRSSMiB <= 0 || r.ServerThreads <= 0 {
			t.Errorf("%+v", r)
		}
		if r.SlabSource == "slabinfo" && (r.StructKiBPerSocket < 1 || !strings.Contains(r.StructCaches, "TCP")) {
			t.Errorf("structures %v KiB (%s)", r.StructKiBPerSocket, r.StructCaches)
		}
		waitFor(t, 3*time.Second, "naive subscribers to leave", func() bool { return srv.Subscribers() == 0 })
	})
	for _, tc := range []struct{ target, url string }{
		{targetNaive, "ws://" + addr + "/ws"},
		{targetSwitchyard, "ws://" + syAddr + "/ws"},
	} {
		t.Run("connect-"+tc.target, func(t *testing.T) {
			r, err := RunConnect(ctx, Config{Target: tc.target, URL: tc.url, Subs: 40, DialConcurrency: 8, ServerPID: os.Getpid()})
			if err != nil {
				t.Fatal(err)
			}
			if r.Sessions != 40 || r.Concurrency != 8 || r.TLS || r.ConnectsPerSec <= 0 || r.HandshakeP50Ms <= 0 || r.HandshakeP99Ms < r.HandshakeP50Ms {
				t.Errorf("%+v", r)
			}
		})
	}
	t.Run("connect-refused", func(t *testing.T) {
		if _, err := RunConnect(ctx, Config{Target: targetNaive, URL: "ws://" + addr + "/nothing", Subs: 3}); err == nil {
			t.Error("no error from a URL that does not upgrade")
		}
	})
	t.Run("churn", func(t *testing.T) {
		r, err := RunChurn(ctx, Config{Target: targetNaive, URL: "ws://" + addr + "/ws", Subs: 10, ServerPID: os.Getpid()}, 35,
			"http://"+addr+"/metrics", "http://"+addr+"/gc", "k")
		if err != nil {
			t.Fatal(err)
		}
		if r.Cycles != 35 || r.Open != 10 || !r.GC || r.CyclesPerSec <= 0 {
			t.Errorf("%+v", r)
		}
		if r.BaseGoroutines <= 0 || r.PeakGoroutines < r.BaseGoroutines+10 || r.BaseHeapMiB != 1 || r.BaseFDs <= 0 || r.PeakFDs < r.BaseFDs {
			t.Errorf("readings: %+v", r)
		}
		waitFor(t, 3*time.Second, "naive subscribers to leave", func() bool { return srv.Subscribers() == 0 })
	})
}

// A run's table has p99.9 and one table per scenario kind.
// tableOf prints the -table of vs, each as one JSON line of a file.
func tableOf(t *testing.T, vs ...any) string {
	t.Helper()
	var lines []string
	for _, v := range vs {
		b, _ := json.Marshal(v)
		lines = append(lines, string(b))
	}
	in := filepath.Join(t.TempDir(), "runs.jsonl")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printTable(&out, []string{in}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestTableScenarios(t *testing.T) {
	s := tableOf(t,
		Result{Target: "switchyard", Subs: 10, LatencyP999Ms: 12.5, LastP999Ms: 13.5},
		IdleResult{Scenario: scenarioIdle, Target: "naive", Sessions: 10, IdleSessionKiB: 21.5, StructKiBPerSocket: 3.5, BufKiBPerSocket: 0.25, KernelKiBPerSocket: 3.75},
		ConnectResult{Scenario: scenarioConnect, Target: "centrifugo", TLS: true, Sessions: 10, Concurrency: 2, ConnectsPerCoreSec: 7200},
		ChurnResult{Scenario: scenarioChurn, Target: "switchyard", Cycles: 100, Open: 10, BaseGoroutines: -1, PeakGoroutines: -1, AfterGoroutines: -1, BaseHeapMiB: -1, PeakHeapMiB: -1, AfterHeapMiB: -1, GC: true},
	)
	for _, want := range []string{"p99 / p99.9 ms", "/ 12.50 |", "/ 13.50 |", "| naive | 10 | 21.5 (", "| 3.75 = 3.50 + 0.25 |",
		"| centrifugo | wss:// | 10 (2) | 7200 |", "| switchyard | 100 (10) |", "n/a / n/a / n/a", "| yes |"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}
	if n := strings.Count(s, "\n|---"); n != 4 {
		t.Errorf("%d tables, want 4", n)
	}
}

// An epoll run's arrival latency gets its own columns and text lines;
// other runs in the same table show n/a there.
func TestArrivalOutput(t *testing.T) {
	epoll := Result{Target: "switchyard", Subs: 10, Readers: readersEpoll, LatencyP50Ms: 1, ArrivalSamples: 100, ArrivalP50Ms: 0.4,
		ArrivalP99Ms: 0.9, ArrivalP999Ms: 1.2, LastArrivalSamples: 10, LastArrivalP99Ms: 2.5}
	plain := Result{Target: "naive", Subs: 10}
	if b, _ := json.Marshal(plain); strings.Contains(string(b), "arrival") {
		t.Errorf("arrival fields in the JSON of a run without them: %s", b)
	}
	s := tableOf(t, epoll, plain)
	for _, want := range []string{"| arrival p50 / p99 / p99.9 ms | last arrival p99 ms |", "\n|---|" + strings.Repeat("---:|", 15) + "\n",
		"| 0.40 / 0.90 / 1.20 | 2.50 |", "| 0.00 / 0.00 / 0.00 / 0.00 | n/a | n/a |"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}

	var out bytes.Buffer
	printText(&out, &epoll)
	if s := out.String(); !strings.Contains(s, "arrival latency     p50 0.40 ms") || !strings.Contains(s, "last arrival        p50 0.00 ms, p95 0.00 ms, p99 2.50 ms") {
		t.Errorf("text lacks the arrival lines:\n%s", s)
	}
	out.Reset()
	printText(&out, &plain)
	if s := out.String(); strings.Contains(s, "arrival") {
		t.Errorf("arrival lines without arrival samples:\n%s", s)
	}
}

// A number missing from a group's first run (an epoll run that timed no
// arrival) is the median of the runs that have it.
func TestWriteMediansFieldMissingFromFirstRun(t *testing.T) {
	in := filepath.Join(t.TempDir(), "runs.jsonl")
	lines := `{"target":"switchyard","readers":"epoll","latency_p50_ms":1,"first_error":"x"}
{"target":"switchyard","readers":"epoll","latency_p50_ms":3,"arrival_p50_ms":0.5,"first_error":"y"}
{"target":"switchyard","readers":"epoll","latency_p50_ms":2,"arrival_p50_ms":1.5}
`
	if err := os.WriteFile(in, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := writeMedians(&out, []string{in}); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if r.LatencyP50Ms != 2 || r.ArrivalP50Ms != 1 || r.FirstError != "x" {
		t.Errorf("latency p50 %v, arrival p50 %v, first error %q; want 2, 1 and the first run's x", r.LatencyP50Ms, r.ArrivalP50Ms, r.FirstError)
	}
}
