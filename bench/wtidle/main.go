// Command wtidle measures what an idle session costs a node. It is a
// measurement, not a check: it prints figures and asserts nothing about
// them.
//
//	go run ./bench/wtidle -n 1000 [-transport webtransport|websocket] [-out DIR] [-stacks]
//
// The node runs in a child process (this program again, with the hidden
// flag -serve) so that the N clients of the parent are not counted: the
// child's goroutine and heap profiles and its RSS are the node's alone.
// The parent takes a snapshot before the sessions and one with all of
// them open and idle, and prints the difference per session: RSS, Go
// heap and stacks, goroutines grouped by stack (with the function that
// started each), and live heap by allocation site. Knobs:
//
//	-n 1000                  sessions
//	-transport websocket     the same with WebSocket
//	-out dir                 keep the raw profiles there
//	-stacks                  at the end, how much of its stack each kind
//	                         of goroutine uses (the child dies by SIGQUIT
//	                         for it)
//
// The child sets runtime.MemProfileRate to 1, so the heap profile counts
// every allocation, not a sample. Compare builds by running both, one
// after the other, a few times: RSS moves by some KiB per session from
// run to run (how the dial phase's garbage fragments the heap), Go's own
// counts of stacks and live heap much less.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/protocols"
)

func main() {
	n := flag.Int("n", 1000, "idle `sessions` to open")
	transport := flag.String("transport", protocols.WebTransport, "the sessions' transport: webtransport or websocket")
	out := flag.String("out", "", "`directory` to keep the raw profiles and the node's stderr in (default: a temporary one, removed at the end)")
	stacks := flag.Bool("stacks", false, "at the end, print how much of its stack each kind of goroutine uses (the node dies by SIGQUIT for it)")
	serve := flag.Bool("serve", false, "run the node: the child's mode, started by this program itself")
	flag.Usage = usage
	flag.Parse()

	if *serve {
		// The rate must be set before the allocations it should see. The
		// node's are all made after this, and the earlier the better: the
		// runtime's documentation asks for the start of main.
		runtime.MemProfileRate = 1
		if err := serveNode(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "wtidle -serve:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "wtidle: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*n, *transport, *out, *stacks, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wtidle:", err)
		os.Exit(1)
	}
}

// usage is flag.Usage without -serve: that mode talks a line protocol
// with its parent on stdin and stdout and is no use to a person.
func usage() {
	w := flag.CommandLine.Output()
	fmt.Fprintf(w, "usage: wtidle [-n sessions] [-transport webtransport|websocket] [-out dir] [-stacks]\n")
	visible := flag.NewFlagSet("wtidle", flag.ContinueOnError)
	visible.SetOutput(w)
	flag.VisitAll(func(f *flag.Flag) {
		if f.Name == "serve" {
			return
		}
		visible.Var(f.Value, f.Name, f.Usage)
		// Var takes the default from the value as it is now, which a
		// flag parsed before the one that failed has changed.
		visible.Lookup(f.Name).DefValue = f.DefValue
	})
	visible.PrintDefaults()
}

// run measures n idle sessions of the given transport and writes the
// report to w.
func run(n int, transport, out string, stacks bool, w io.Writer) (err error) {
	if n < 1 {
		return fmt.Errorf("-n %d: want a positive number of sessions", n)
	}
	if transport != protocols.WebTransport && transport != protocols.WebSocket {
		return fmt.Errorf("-transport %q: want %s or %s", transport, protocols.WebTransport, protocols.WebSocket)
	}
	keep := out != ""
	if keep {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return fmt.Errorf("profile directory: %w", err)
		}
	} else {
		// The profiles of one run take some MiB (every allocation site is
		// in them); without -out nobody asked for them.
		if out, err = os.MkdirTemp("", "wtidle-"); err != nil {
			return fmt.Errorf("temporary directory: %w", err)
		}
		defer func() { err = errors.Join(err, os.RemoveAll(out)) }()
	}

	child, err := startChild(out)
	if err != nil {
		return err
	}
	// The deferred calls run in reverse: the clients close first, then
	// the child is asked to quit.
	defer func() { err = errors.Join(err, child.stop()) }()
	ready, err := child.next("ready")
	if err != nil {
		return err
	}
	f := strings.Fields(ready)
	if len(f) != 3 {
		return fmt.Errorf("the child's ready line %q: want its WebTransport URL, WebSocket URL and certificate hash", ready)
	}
	url, hash := f[0], f[2]
	if transport == protocols.WebSocket {
		url = f[1]
	}

	// Warm up: the first sessions fill pools and caches that later ones
	// share; they are not what a session costs.
	warm, err := dial(url, transport, hash, min(n, 50))
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	closeAll(warm)
	time.Sleep(2 * time.Second)
	base, err := child.snap(filepath.Join(out, "base"))
	if err != nil {
		return err
	}

	start := time.Now()
	clients, err := dial(url, transport, hash, n)
	if err != nil {
		return err
	}
	defer closeAll(clients)
	fmt.Fprintf(w, "%d %s sessions dialled in %v\n", n, transport, time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // handshake and QPACK stream goroutines end
	idle, err := child.snap(filepath.Join(out, "idle"))
	if err != nil {
		return err
	}

	if err := report(w, n, transport, base, idle); err != nil {
		return err
	}
	if stacks {
		dumped, err := child.dump()
		if err != nil {
			return err
		}
		writeStackUse(w, dumped, n)
	}
	if keep {
		fmt.Fprintf(w, "\nprofiles: %s (go tool pprof -sample_index=inuse_space -base %s %s)\n", out, base.HeapProfile, idle.HeapProfile)
	} else {
		fmt.Fprintf(w, "\nprofiles: removed (-out DIR keeps them)\n")
	}
	return nil
}

// dial opens count sessions to url, eight at a time, and returns them
// all or none.
func dial(url, transport, hash string, count int) ([]*client.Client, error) {
	clients := make([]*client.Client, count)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, count)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < count; i = int(next.Add(1)) - 1 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := client.Dial(ctx, url, client.Options{Transport: transport, CertHash: hash})
				cancel()
				if err != nil {
					errs <- err
					return
				}
				clients[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	if err, ok := <-errs; ok {
		closeAll(clients)
		return nil, fmt.Errorf("dial %s over %s: %w", url, transport, err)
	}
	return clients, nil
}

// closeAll closes the clients in parallel: one at a time, a WebTransport
// close's linger adds up over thousands of sessions.
func closeAll(clients []*client.Client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Go(func() { _ = c.Close() })
		}
	}
	wg.Wait()
}

// report prints what the sessions cost between the snapshots base and
// idle, per session.
func report(w io.Writer, n int, transport string, base, idle snapshot) error {
	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) / 1024 }
	fmt.Fprintf(w, "\n%d idle %s sessions; per session:\n", n, transport)
	fmt.Fprintf(w, "  RSS            %7.1f KiB (after FreeOSMemory %.1f KiB)\n", per(base.RSS, idle.RSS), per(base.RSSFreed, idle.RSSFreed))
	fmt.Fprintf(w, "  heap in use    %7.1f KiB (live objects %.1f KiB)\n", per(base.HeapInuse, idle.HeapInuse), per(base.HeapAlloc, idle.HeapAlloc))
	fmt.Fprintf(w, "  stacks in use  %7.1f KiB\n", per(base.StackInuse, idle.StackInuse))
	fmt.Fprintf(w, "  goroutines     %7.2f\n", float64(idle.Goroutines-base.Goroutines)/float64(n))
	fmt.Fprintf(w, "  (new goroutines' stacks start at %d KiB)\n", idle.StackStart>>10)

	g0, err := readGoroutines(base.Goroutine)
	if err != nil {
		return err
	}
	g1, err := readGoroutines(idle.Goroutine)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\ngoroutines per session, by stack (started by: the stack's first function):\n")
	for _, g := range diffGoroutines(g0, g1) {
		if float64(g.count) < float64(n)/10 {
			continue
		}
		fmt.Fprintf(w, "  %5.2f  [%s] %s\n         blocked in %s\n", float64(g.count)/float64(n), g.owner, g.entry, g.blocked)
	}

	h0, err := readHeap(base.HeapText)
	if err != nil {
		return err
	}
	h1, err := readHeap(idle.HeapText)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nlive heap per session by owner (the first frame in a module, not the standard library):\n")
	var ownerTotal float64
	for _, s := range diffHeap(h0, h1, func(s heapSample) string { return s.owner }) {
		b := float64(s.bytes) / float64(n)
		ownerTotal += b
		if b >= 16 {
			fmt.Fprintf(w, "  %8.0f B  %6.1f objects  %s\n", b, float64(s.objects)/float64(n), s.key)
		}
	}
	fmt.Fprintf(w, "  %8.0f B  total\n", ownerTotal)
	fmt.Fprintf(w, "\nlive heap per session by allocation site (first frame outside runtime; owner):\n")
	for _, s := range diffHeap(h0, h1, func(s heapSample) string { return s.site + "  (" + s.owner + ")" }) {
		if b := float64(s.bytes) / float64(n); b >= 64 {
			fmt.Fprintf(w, "  %8.0f B  %6.1f objects  %s\n", b, float64(s.objects)/float64(n), s.key)
		}
	}
	return nil
}

// readGoroutines reads a debug=1 goroutine profile file.
func readGoroutines(path string) (map[string]goroutineGroup, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("goroutine profile: %w", err)
	}
	return parseGoroutines(string(b)), nil
}

// readHeap reads a debug=1 heap profile file.
func readHeap(path string) ([]heapSample, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("heap profile: %w", err)
	}
	return parseHeap(string(b)), nil
}
