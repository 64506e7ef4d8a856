package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// dumpEnv makes the test binary, run again by TestParseTracebackOfThisRuntime,
// die by SIGQUIT with a "system" traceback, as the node does for -stacks.
const dumpEnv = "WTIDLE_TEST_DUMP"

// thisPackage is how this package's functions are named in a test
// binary (in the command they are "main.").
const thisPackage = "github.com/switchyard/switchyard/bench/wtidle."

func TestMain(m *testing.M) {
	if os.Getenv(dumpEnv) == "1" {
		dumpForTest()
	}
	goleak.VerifyTestMain(m)
}

// goroutineText is a debug=1 goroutine profile cut down from a node's.
// As the runtime writes them, runtime frames are left out of a stack
// unless it has nothing else; the labelled record shows a line that is
// not a frame.
const goroutineText = `goroutine profile: total 8
4 @ 0x48c5ee 0x41afae 0x41aad2 0x931ffd 0x985f6d 0x49dd2a 0x494441
#	0x931ffc	github.com/quic-go/quic-go.(*ReceiveStream).readImpl+0x45c			/root/go/pkg/mod/github.com/quic-go/quic-go@v0.64.1/receive_stream.go:202
#	0x985f6c	github.com/switchyard/switchyard/protocols/webtransport.(*wire).wait+0xac	/work/main/protocols/webtransport/reader.go:211
#	0x49dd29	sync.(*WaitGroup).Go.func1+0x49							/usr/local/go/src/sync/waitgroup.go:258

2 @ 0x48c5ee 0x4871f5 0x4f0a1c 0x4f1b2d 0x5a3c4e 0x5a5d6f 0x7b8e9f 0x85a0b1 0x494441
#	0x4871f4	internal/poll.runtime_pollWait+0x84					/usr/local/go/src/runtime/netpoll.go:351
#	0x4f0a1b	internal/poll.(*pollDesc).wait+0x26					/usr/local/go/src/internal/poll/fd_poll_runtime.go:84
#	0x4f1b2c	internal/poll.(*FD).Read+0x2b1						/usr/local/go/src/internal/poll/fd_unix.go:165
#	0x5a3c4d	net.(*netFD).Read+0x24							/usr/local/go/src/net/fd_posix.go:68
#	0x7b8e9e	github.com/gorilla/websocket.(*Conn).NextReader+0x13e			/root/go/pkg/mod/github.com/gorilla/websocket@v1.5.3/conn.go:1009
#	0x85a0b0	github.com/switchyard/switchyard/protocols.(*conn).readLoop+0x90	/work/main/protocols/conn.go:300

1 @ 0x48c5ee 0x4478f4 0x494441
#	0x48c5ed	runtime.gopark+0xce				/usr/local/go/src/runtime/proc.go:462
#	0x4478f3	runtime.forcegchelper+0xb3			/usr/local/go/src/runtime/proc.go:375

1 @ 0x48c5ee 0x41afae 0x489b56 0x494441
# labels: {"handler":"ws upgrade"}
#	0x489b55	main.handle+0x15				/tmp/x/main.go:11

`

// goroutineBase is goroutineText before three of the first stack's
// goroutines and all of the others but the runtime's started.
const goroutineBase = `goroutine profile: total 2
1 @ 0x48c5ee 0x41afae 0x41aad2 0x931ffd 0x985f6d 0x49dd2a 0x494441
#	0x931ffc	github.com/quic-go/quic-go.(*ReceiveStream).readImpl+0x45c			/root/go/pkg/mod/github.com/quic-go/quic-go@v0.64.1/receive_stream.go:202
#	0x985f6c	github.com/switchyard/switchyard/protocols/webtransport.(*wire).wait+0xac	/work/main/protocols/webtransport/reader.go:211
#	0x49dd29	sync.(*WaitGroup).Go.func1+0x49							/usr/local/go/src/sync/waitgroup.go:258

1 @ 0x48c5ee 0x4478f4 0x494441
#	0x48c5ed	runtime.gopark+0xce				/usr/local/go/src/runtime/proc.go:462
#	0x4478f3	runtime.forcegchelper+0xb3			/usr/local/go/src/runtime/proc.go:375
`

var (
	wtWait = goroutineGroup{
		entry:   "sync.(*WaitGroup).Go.func1 waitgroup.go:258",
		blocked: "github.com/quic-go/quic-go.(*ReceiveStream).readImpl receive_stream.go:202",
		owner:   "switchyard/protocols/webtransport > quic-go",
	}
	wsRead = goroutineGroup{
		entry:   "github.com/switchyard/switchyard/protocols.(*conn).readLoop conn.go:300",
		blocked: "net.(*netFD).Read fd_posix.go:68",
		owner:   "switchyard/protocols > github.com",
	}
	forceGC = goroutineGroup{
		entry:   "runtime.forcegchelper proc.go:375",
		blocked: "runtime.gopark proc.go:462", // nothing outside the runtime: the first frame
		owner:   "std",
	}
	labelled = goroutineGroup{
		entry:   "main.handle main.go:11",
		blocked: "main.handle main.go:11",
		owner:   "std",
	}
)

func withCount(g goroutineGroup, n int) goroutineGroup {
	g.count = n
	return g
}

func TestParseGoroutines(t *testing.T) {
	groups := parseGoroutines(goroutineText)
	got := make([]goroutineGroup, 0, len(groups))
	total := 0
	for _, g := range groups {
		got = append(got, g)
		total += g.count
	}
	want := []goroutineGroup{withCount(wtWait, 4), withCount(wsRead, 2), withCount(forceGC, 1), withCount(labelled, 1)}
	sortGroups(got)
	sortGroups(want)
	if !slices.Equal(got, want) {
		t.Errorf("parseGoroutines:\ngot  %+v\nwant %+v", got, want)
	}
	if total != 8 {
		t.Errorf("%d goroutines in all, want the profile's total of 8", total)
	}
	if g := parseGoroutines("goroutine profile: total 0\n"); len(g) != 0 {
		t.Errorf("an empty profile gave %+v", g)
	}
}

func sortGroups(gs []goroutineGroup) {
	slices.SortFunc(gs, func(a, b goroutineGroup) int { return strings.Compare(a.entry, b.entry) })
}

func TestDiffGoroutines(t *testing.T) {
	got := diffGoroutines(parseGoroutines(goroutineBase), parseGoroutines(goroutineText))
	// The runtime's goroutine did not grow and is left out; the others
	// come largest first.
	want := []goroutineGroup{withCount(wtWait, 3), withCount(wsRead, 2), withCount(labelled, 1)}
	if !slices.Equal(got, want) {
		t.Errorf("diffGoroutines:\ngot  %+v\nwant %+v", got, want)
	}
	if d := diffGoroutines(parseGoroutines(goroutineText), parseGoroutines(goroutineBase)); len(d) != 0 {
		t.Errorf("groups that shrank were reported: %+v", d)
	}
}

// heapText is a debug=1 heap profile, with a stack that has nothing in
// use (left out), one of runtime frames only (no site, no owner) and the
// MemStats the runtime appends.
const heapText = `heap profile: 4: 12352 [20: 44352] @ heap/2
2: 8192 [2: 8192] @ 0x5c1f0e 0x5d0a2f 0x494441
#	0x5c1f0d	github.com/quic-go/quic-go.newConn+0x10d		/root/go/pkg/mod/github.com/quic-go/quic-go@v0.64.1/connection.go:300
#	0x5d0a2e	github.com/switchyard/switchyard/edge.(*Node).accept+0x20e	/work/main/edge/session.go:421

0: 0 [16: 32000] @ 0x56e75a 0x56e766 0x494441
#	0x56e759	crypto/internal/fips140/sha256.New+0x19		/usr/local/go/src/crypto/internal/fips140/sha256/sha256.go:150
#	0x56e765	crypto/sha256.New+0x25				/usr/local/go/src/crypto/sha256/sha256.go:38

1: 4096 [1: 4096] @ 0x51a04e 0x5d1b3f 0x494441
#	0x51a04d	bufio.NewReaderSize+0x4d				/usr/local/go/src/bufio/bufio.go:57
#	0x5d1b3e	github.com/switchyard/switchyard/edge.(*session).run+0x9e	/work/main/edge/session.go:80

1: 64 [1: 64] @ 0x4478aa 0x447c4e 0x494441
#	0x4478a9	runtime.malg+0x29		/usr/local/go/src/runtime/proc.go:5012
#	0x447c4d	runtime.newproc1+0x4d	/usr/local/go/src/runtime/proc.go:5101


# runtime.MemStats
# Alloc = 12746536
# TotalAlloc = 49055632
# Sys = 45717768
`

func TestParseHeap(t *testing.T) {
	got := parseHeap(heapText)
	want := []heapSample{
		{objects: 2, bytes: 8192, site: "github.com/quic-go/quic-go.newConn connection.go:300", owner: "quic-go"},
		{objects: 1, bytes: 4096, site: "bufio.NewReaderSize bufio.go:57", owner: "switchyard/edge"},
		{objects: 1, bytes: 64, site: "?", owner: "?"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseHeap:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestDiffHeap(t *testing.T) {
	a := []heapSample{
		{objects: 1, bytes: 100, owner: "quic-go"},
		{objects: 1, bytes: 50, owner: "http3"},
	}
	b := []heapSample{
		{objects: 3, bytes: 300, owner: "quic-go"},
		{objects: 1, bytes: 40, owner: "quic-go"},
		{objects: 2, bytes: 64, owner: "switchyard/edge"},
	}
	got := diffHeap(a, b, func(s heapSample) string { return s.owner })
	// Sums by key, b less a, the largest first; what shrank comes last,
	// negative.
	want := []heapSample{
		{objects: 3, bytes: 240, key: "quic-go"},
		{objects: 2, bytes: 64, key: "switchyard/edge"},
		{objects: -1, bytes: -50, key: "http3"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("diffHeap:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestModule(t *testing.T) {
	for fn, want := range map[string]string{
		"github.com/quic-go/quic-go.(*Conn).run connection.go:661":                   "quic-go",
		"github.com/quic-go/quic-go/internal/ackhandler.NewSentPacketHandler x.go:1": "quic-go",
		"github.com/quic-go/quic-go/http3.parseHeaders headers.go:116":               "http3",
		"github.com/quic-go/webtransport-go.newSession session.go:83":                "webtransport-go",
		"github.com/quic-go/qpack.(*Decoder).Decode decoder.go:1":                    "qpack",
		"github.com/switchyard/switchyard/edge.(*Node).accept session.go:421":        "switchyard/edge",
		"github.com/switchyard/switchyard/protocols/webtransport.newWire x.go:247":   "switchyard/protocols/webtransport",
		"golang.org/x/net/http2.(*serverConn).serve server.go:900":                   "golang.org",
		"crypto/tls.(*Conn).quicWriteCryptoData quic.go:445":                         "",
		"net/http.(*conn).serve server.go:2100":                                      "",
		"main.main main.go:10":                                                       "",
	} {
		if got := module(fn); got != want {
			t.Errorf("module(%q) = %q, want %q", fn, got, want)
		}
	}
}

// tracebackText is a SIGQUIT traceback at the "system" level, cut down
// from a real one (Go 1.26): a goroutine without a creator, one whose
// stack has an inlined frame (no fp or sp), one started by a go
// statement in main, and the registers the runtime prints after them.
const tracebackText = `SIGQUIT: quit
PC=0x40816e m=0 sigcode=0

goroutine 1 gp=0x1c7aa911c1e0 m=0 mp=0x558c60 [running]:
internal/runtime/syscall/linux.Syscall6()
	/usr/local/go/src/internal/runtime/syscall/linux/asm_linux_amd64.s:36 +0xe fp=0x1c7aa9208e40 sp=0x1c7aa9208e38 pc=0x40816e
syscall.RawSyscall6(0x0?, 0x0?, 0x1c7aa9208ef0?, 0x479fe5?, 0x2ce7f03d307b?, 0x47b892?, 0x1c7aa9208ef0?)
	/usr/local/go/src/syscall/syscall_linux.go:65 +0xd fp=0x1c7aa9208e88 sp=0x1c7aa9208e40 pc=0x486b4d
syscall.RawSyscall(0x451480?, 0x1c7aa912c080?, 0x1c7aa917e180?, 0x1c7aa911c1e0?)
	/usr/local/go/src/syscall/syscall_linux.go:56 +0x15 fp=0x1c7aa9208ed0 sp=0x1c7aa9208e88 pc=0x486b35
syscall.Kill(0x27?, 0x0?)
	/usr/local/go/src/syscall/zsyscall_linux_amd64.go:611 +0x25 fp=0x1c7aa9208f00 sp=0x1c7aa9208ed0 pc=0x486465
main.main()
	/tmp/tb/main.go:18 +0xaf fp=0x1c7aa9208f48 sp=0x1c7aa9208f00 pc=0x489c2f
runtime.main()
	/usr/local/go/src/runtime/proc.go:290 +0x2d5 fp=0x1c7aa9208fe0 sp=0x1c7aa9208f48 pc=0x4475d5
runtime.goexit({})
	/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1 fp=0x1c7aa9208fe8 sp=0x1c7aa9208fe0 pc=0x47d301

goroutine 2 gp=0x1c7aa911c780 m=nil [force gc (idle)]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
	/usr/local/go/src/runtime/proc.go:462 +0xce fp=0x1c7aa9152fa8 sp=0x1c7aa9152f88 pc=0x47780e
runtime.goparkunlock(...)
	/usr/local/go/src/runtime/proc.go:468
runtime.forcegchelper()
	/usr/local/go/src/runtime/proc.go:375 +0xb3 fp=0x1c7aa9152fe0 sp=0x1c7aa9152fa8 pc=0x4478f3
runtime.goexit({})
	/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1 fp=0x1c7aa9152fe8 sp=0x1c7aa9152fe0 pc=0x47d301
created by runtime.init.7 in goroutine 1
	/usr/local/go/src/runtime/proc.go:363 +0x1a

goroutine 7 gp=0x1c7aa911d860 m=nil [chan receive]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
	/usr/local/go/src/runtime/proc.go:462 +0xce fp=0x1c7aa9154f08 sp=0x1c7aa9154ee8 pc=0x47780e
runtime.chanrecv(0x1c7aa9202070, 0x0, 0x1)
	/usr/local/go/src/runtime/chan.go:667 +0x4ae fp=0x1c7aa9154f80 sp=0x1c7aa9154f08 pc=0x41340e
runtime.chanrecv1(0x0?, 0x0?)
	/usr/local/go/src/runtime/chan.go:509 +0x12 fp=0x1c7aa9154fa8 sp=0x1c7aa9154f80 pc=0x412f52
main.wait(0x0?)
	/tmp/tb/main.go:11 +0x15 fp=0x1c7aa9154fc8 sp=0x1c7aa9154fa8 pc=0x489b55
main.main.gowrap1()
	/tmp/tb/main.go:15 +0x17 fp=0x1c7aa9154fe0 sp=0x1c7aa9154fc8 pc=0x489c77
runtime.goexit({})
	/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1 fp=0x1c7aa9154fe8 sp=0x1c7aa9154fe0 pc=0x47d301
created by main.main in goroutine 1
	/tmp/tb/main.go:15 +0x57

rax    0x0
rbx    0x7660
rip    0x40816e
rflags 0x202
`

func TestParseTraceback(t *testing.T) {
	got := parseTraceback(tracebackText)
	want := []goroutineStack{
		{
			funcs: []string{"internal/runtime/syscall/linux.Syscall6", "syscall.RawSyscall6", "syscall.RawSyscall", "syscall.Kill", "main.main", "runtime.main"},
			used:  0x1c7aa9208fe8 - 0x1c7aa9208e38, // goexit's fp less Syscall6's sp
		},
		{
			funcs:   []string{"runtime.gopark", "runtime.forcegchelper"}, // goparkunlock was inlined
			creator: "runtime.init.7",
			used:    0x1c7aa9152fe8 - 0x1c7aa9152f88,
		},
		{
			funcs:   []string{"runtime.gopark", "runtime.chanrecv", "runtime.chanrecv1", "main.wait", "main.main.gowrap1"},
			creator: "main.main",
			used:    0x1c7aa9154fe8 - 0x1c7aa9154ee8,
		},
	}
	if len(got) != len(want) {
		t.Fatalf("parseTraceback found %d goroutines, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !slices.Equal(got[i].funcs, want[i].funcs) || got[i].creator != want[i].creator || got[i].used != want[i].used {
			t.Errorf("goroutine %d:\ngot  %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if g := parseTraceback("goroutine 1 [running]:\nmain.main()\n\t/tmp/x.go:1 +0x1\n"); len(g) != 0 {
		t.Errorf("a traceback without fp and sp (not at the system level) gave %+v", g)
	}
}

//go:noinline
func parkForTest(ch chan struct{}) { <-ch }

// dumpForTest is the child of TestParseTracebackOfThisRuntime: it parks
// three goroutines and dies as the node does for -stacks.
func dumpForTest() {
	ch := make(chan struct{})
	for range 3 {
		go parkForTest(ch)
	}
	time.Sleep(100 * time.Millisecond) // let them park
	debug.SetTraceback("system")
	_ = syscall.Kill(os.Getpid(), syscall.SIGQUIT)
	select {}
}

// TestParseTracebackOfThisRuntime checks the parser against what this
// Go version prints, not only against the sample above.
func TestParseTracebackOfThisRuntime(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), dumpEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the child did not die by SIGQUIT: %v\n%s", err, stderr.Bytes())
	}
	var parked []goroutineStack
	for _, g := range parseTraceback(stderr.String()) {
		if g.creator == thisPackage+"dumpForTest" {
			parked = append(parked, g)
		}
	}
	if len(parked) != 3 {
		t.Fatalf("%d goroutines created by dumpForTest, want 3; traceback:\n%s", len(parked), stderr.Bytes())
	}
	for _, g := range parked {
		if !slices.Contains(g.funcs, thisPackage+"parkForTest") || g.funcs[0] != "runtime.gopark" {
			t.Errorf("a parked goroutine's frames: %q, want runtime.gopark first and parkForTest among them", g.funcs)
		}
		// A parked goroutine this shallow uses some hundred bytes of the
		// smallest stack.
		if g.used == 0 || g.used > 2048 {
			t.Errorf("a parked goroutine uses %d bytes of stack", g.used)
		}
	}
}

// TestParseGoroutinesOfThisProcess checks the parser against the
// goroutine profile of this Go version.
func TestParseGoroutinesOfThisProcess(t *testing.T) {
	before := goroutineProfile(t)
	ch := make(chan struct{})
	defer close(ch)
	for range 3 {
		go parkForTest(ch)
	}
	// They are started; wait until all three are parked in the same
	// place, so that they are one stack.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found []goroutineGroup
		for _, g := range diffGoroutines(before, goroutineProfile(t)) {
			if strings.HasPrefix(g.entry, thisPackage+"parkForTest ") {
				found = append(found, g)
			}
		}
		if len(found) == 1 && found[0].count == 3 {
			g := found[0]
			if !strings.HasPrefix(g.blocked, thisPackage+"parkForTest wtidle_test.go:") || g.owner != "switchyard/bench/wtidle" {
				t.Errorf("the parked goroutines: %+v, want them blocked in parkForTest, owned by switchyard/bench/wtidle", g)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the three goroutines parked in parkForTest are not one group of 3: %+v", found)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func goroutineProfile(t *testing.T) map[string]goroutineGroup {
	t.Helper()
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	return parseGoroutines(b.String())
}

var pages [][]byte

//go:noinline
func allocPage() []byte { return make([]byte, 4096) }

// TestParseHeapOfThisProcess checks the parser against the heap profile
// of this Go version: with every allocation profiled, as in the node,
// the pages allocated between two profiles are exactly their difference
// at their allocation site.
func TestParseHeapOfThisProcess(t *testing.T) {
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	before := heapProfile(t)
	pages = make([][]byte, 100)
	for i := range pages {
		pages[i] = allocPage()
	}
	after := heapProfile(t)
	pages = nil

	var site heapSample
	for _, s := range diffHeap(before, after, func(s heapSample) string { return s.site }) {
		if strings.HasPrefix(s.key, thisPackage+"allocPage wtidle_test.go:") {
			site = s
		}
	}
	if site.objects != 100 || site.bytes != 100*4096 {
		t.Errorf("at allocPage: %d objects, %d bytes; want 100 of 4096 bytes", site.objects, site.bytes)
	}
}

func heapProfile(t *testing.T) []heapSample {
	t.Helper()
	// The profile is as of the last GC: one after the allocations makes
	// them count.
	runtime.GC()
	var b strings.Builder
	if err := pprof.Lookup("heap").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	return parseHeap(b.String())
}

func TestWriteStackUse(t *testing.T) {
	var stacks []goroutineStack
	for range 100 {
		stacks = append(stacks, goroutineStack{funcs: []string{"runtime.gopark", "quic.(*Conn).run"}, creator: "quic.newConn", used: 1000})
	}
	// A group of less than one per ten sessions is left out.
	for range 5 {
		stacks = append(stacks, goroutineStack{funcs: []string{"runtime.gopark", "main.rare"}, creator: "main.main", used: 9000})
	}
	var b strings.Builder
	writeStackUse(&b, stacks, 100)
	// 1000 bytes in use and the 800 reserved are under a quarter of 8
	// KiB, not of 4: a GC shrinks the stack to 4 KiB and no further.
	want := `
stacks in use (runtime dump; per goroutine: bytes in use, the most a settled stack takes):
   1.00  used  1000 B  stack <=  4 KiB  created by quic.newConn
         in quic.(*Conn).run
  at most 4.0 KiB of stacks per session
`
	if b.String() != want {
		t.Errorf("writeStackUse wrote\n%s\nwant\n%s", b.String(), want)
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\twtidle\nVmPeak:\t  900000 kB\nVmRSS:\t   123456 kB\nRssAnon:\t  100000 kB\n"
	if got := parseVmRSS(status); got != 123456*1024 {
		t.Errorf("parseVmRSS = %d, want %d", got, 123456*1024)
	}
	if got := parseVmRSS("Name:\tkthreadd\n"); got != 0 {
		t.Errorf("parseVmRSS without VmRSS = %d, want 0", got)
	}
}
