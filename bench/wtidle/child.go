package main

// The node's side (-serve) and the parent's handle on it. They talk in
// lines: the parent writes commands to the child's stdin ("snap <path
// prefix>", "dump", "quit"), the child answers on its stdout with lines
// that start with protocolPrefix, so that anything else a library prints
// there is ignored.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/edge"
)

const (
	protocolPrefix = "WTIDLE " // prefix of the child's protocol lines on stdout

	// apiKey enables the node's /api as the test this program grew out of
	// did, so that its figures compare with the earlier ones; nothing here
	// calls the API.
	apiKey = "wtidle-api-key"
)

// snapshot is what the child reports for one snapshot.
type snapshot struct {
	Goroutines  int    `json:"goroutines"`
	HeapInuse   uint64 `json:"heap_inuse"`
	HeapAlloc   uint64 `json:"heap_alloc"`
	StackInuse  uint64 `json:"stack_inuse"`
	RSS         uint64 `json:"rss"`          // VmRSS after GC
	RSSFreed    uint64 `json:"rss_freed"`    // VmRSS after debug.FreeOSMemory
	StackStart  uint64 `json:"stack_start"`  // the size new goroutines' stacks start at
	Goroutine   string `json:"goroutine"`    // path of the debug=1 goroutine profile
	HeapText    string `json:"heap_text"`    // path of the debug=1 heap profile
	HeapProfile string `json:"heap_profile"` // path of the proto heap profile, for go tool pprof
}

// serveNode is the child: it runs a node and answers the commands read
// from in with lines on out, until "quit" or the end of in (the parent
// has gone).
func serveNode(in io.Reader, out io.Writer) (err error) {
	store, err := certs.NewDev(certs.DevConfig{})
	if err != nil {
		return fmt.Errorf("dev certificate: %w", err)
	}
	n, err := edge.New(edge.Config{
		Name:   "wt-idle",
		Region: "test",
		Listen: "127.0.0.1:0",
		HTTP:   "127.0.0.1:0",
		Certs:  store,
		APIKey: apiKey,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := n.Start(); err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if serr := n.Shutdown(ctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
		}
	}()
	a := n.Addrs()
	fmt.Fprintf(out, "%sready https://%s ws://%s/ws %s\n", protocolPrefix, a.QUIC, a.HTTP, store.Hash().Value)

	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "snap":
			s, err := takeSnapshot(arg)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", arg, err)
			}
			b, err := json.Marshal(s)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", arg, err)
			}
			fmt.Fprintf(out, "%ssnap %s\n", protocolPrefix, b)
		case "quit":
			return nil
		case "dump":
			// The runtime's own dump, at the "system" level, gives every
			// frame's sp and fp and the creator of every goroutine: how deep
			// each one's stack is in use. It ends the process.
			debug.SetTraceback("system")
			if err := syscall.Kill(os.Getpid(), syscall.SIGQUIT); err != nil {
				return fmt.Errorf("dump: %w", err)
			}
			select {}
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read commands: %w", err)
	}
	return nil
}

// takeSnapshot collects garbage, then writes the profiles to files named
// after prefix and reads the process's memory.
func takeSnapshot(prefix string) (snapshot, error) {
	// Each GC halves the stacks that use less than a quarter of their
	// size; a few let the stacks the handshakes grew settle, as they do
	// on a node that has been up for a while.
	for range 4 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := snapshot{
		Goroutines:  runtime.NumGoroutine(),
		HeapInuse:   ms.HeapInuse,
		HeapAlloc:   ms.HeapAlloc,
		StackInuse:  ms.StackInuse,
		RSS:         readRSS(),
		Goroutine:   prefix + ".goroutine.txt",
		HeapText:    prefix + ".heap.txt",
		HeapProfile: prefix + ".heap.pb.gz",
	}
	// The runtime starts new goroutines with the average stack in use at
	// the last GC: one deep stack per session makes every new one larger.
	sample := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		s.StackStart = sample[0].Value.Uint64()
	}
	debug.FreeOSMemory()
	s.RSSFreed = readRSS()
	for _, p := range []struct {
		name, path string
		debug      int
	}{
		{"goroutine", s.Goroutine, 1},
		{"heap", s.HeapText, 1},
		{"heap", s.HeapProfile, 0},
	} {
		if err := writeProfile(p.name, p.path, p.debug); err != nil {
			return s, err
		}
	}
	return s, nil
}

// writeProfile writes the named runtime profile to path.
func writeProfile(name, path string, debug int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	err = pprof.Lookup(name).WriteTo(f, debug)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s profile %s: %w", name, path, err)
	}
	return nil
}

// readRSS reads VmRSS from /proc/self/status; 0 where there is none.
func readRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return parseVmRSS(string(b))
}

// parseVmRSS returns the VmRSS line of a /proc/PID/status text in bytes;
// 0 without one.
func parseVmRSS(status string) uint64 {
	for line := range strings.SplitSeq(status, "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// child is the parent's handle on the child.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // the child's protocol lines, prefix stripped
	stderr string      // the file that gets the child's stderr
	dumped bool        // the child was asked to dump its goroutines (and die)
}

// startChild runs this program again with -serve; the child's stderr
// goes to a file in dir, where a dump (-stacks) is read from too.
func startChild(dir string) (*child, error) {
	// os.Executable rather than os.Args[0]: the latter may be a bare name
	// that was found on PATH, or relative to another directory.
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to run the node: %w", err)
	}
	cmd := exec.Command(exe, "-serve")
	stderr, err := os.Create(filepath.Join(dir, "child.stderr"))
	if err != nil {
		return nil, fmt.Errorf("the node's stderr: %w", err)
	}
	defer stderr.Close() // the child has its own copy
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("the node's stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("the node's stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the node: %w", err)
	}
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 4), stderr: stderr.Name()}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), protocolPrefix); ok {
				c.lines <- l
			}
		}
		// Should a line be too long for the scanner, the rest is still
		// read, so that the child never blocks writing to its stdout.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	return c, nil
}

// next returns the rest of the child's next line, which must be want.
func (c *child) next(want string) (string, error) {
	select {
	case l, ok := <-c.lines:
		if !ok {
			return "", fmt.Errorf("the child exited before %q", want)
		}
		rest, ok := strings.CutPrefix(l, want+" ")
		if !ok {
			return "", fmt.Errorf("the child said %q, want %q", l, want)
		}
		return rest, nil
	case <-time.After(2 * time.Minute):
		return "", fmt.Errorf("no %q from the child in two minutes", want)
	}
}

// snap has the child take a snapshot, its profiles written to files
// named after prefix.
func (c *child) snap(prefix string) (snapshot, error) {
	var s snapshot
	if _, err := fmt.Fprintf(c.stdin, "snap %s\n", prefix); err != nil {
		return s, fmt.Errorf("ask the child for a snapshot: %w", err)
	}
	line, err := c.next("snap")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(line), &s); err != nil {
		return s, fmt.Errorf("the child's snapshot: %w", err)
	}
	return s, nil
}

// dump has the child print its goroutines, with their stack pointers,
// and die; it returns the stacks it printed.
func (c *child) dump() ([]goroutineStack, error) {
	c.dumped = true
	if _, err := io.WriteString(c.stdin, "dump\n"); err != nil {
		return nil, fmt.Errorf("ask the child for a dump: %w", err)
	}
	for range c.lines { // closed when the child's stdout ends: it has died
	}
	b, err := os.ReadFile(c.stderr)
	if err != nil {
		return nil, fmt.Errorf("the child's dump: %w", err)
	}
	return parseTraceback(string(b)), nil
}

// stop asks the child to quit and waits for it, a minute at most. An
// error carries what the child wrote to its stderr.
func (c *child) stop() error {
	_, _ = io.WriteString(c.stdin, "quit\n")
	_ = c.stdin.Close()
	// Wait closes the stdout pipe, so it comes after the reader has seen
	// the end of it: the child has exited (or been killed).
	timeout := time.After(time.Minute)
	killed := false
	for open := true; open; {
		select {
		case _, open = <-c.lines:
		case <-timeout:
			_ = c.cmd.Process.Kill()
			killed, timeout = true, nil
		}
	}
	err := c.cmd.Wait()
	switch {
	case killed:
		return errors.New("the child did not quit within a minute: killed")
	case err != nil && !c.dumped:
		b, _ := os.ReadFile(c.stderr)
		return fmt.Errorf("the child: %w\n%s", err, b)
	}
	return nil
}
