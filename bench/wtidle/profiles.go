package main

// Readers of the runtime's text profiles (debug=1) and of its SIGQUIT
// traceback. They take text, not files, so that the tests can give them
// fixed samples.

import (
	"cmp"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// goroutineGroup is one stack of a debug=1 goroutine profile.
type goroutineGroup struct {
	count   int
	entry   string // the stack's last (first called) function: what was started
	blocked string // the first frame outside the runtime: where it waits
	owner   string // the modules in the stack, entry's first
}

var goroutineHeader = regexp.MustCompile(`^(\d+) @`)

// parseGoroutines reads a debug=1 goroutine profile into its groups, by
// stack.
func parseGoroutines(text string) map[string]goroutineGroup {
	groups := make(map[string]goroutineGroup)
	for rec := range strings.SplitSeq(text, "\n\n") {
		// The first record follows the profile's own header line.
		lines := strings.Split(strings.TrimSpace(rec), "\n")
		i := slices.IndexFunc(lines, goroutineHeader.MatchString)
		if i < 0 {
			continue
		}
		count, _ := strconv.Atoi(goroutineHeader.FindStringSubmatch(lines[i])[1])
		frames := profileFrames(lines[i+1:])
		if len(frames) == 0 {
			continue
		}
		key := strings.Join(frames, "\n")
		g := groups[key]
		g.count += count
		g.entry = frames[len(frames)-1]
		g.blocked = firstOutside(frames, "runtime.", "internal/", "sync.", "context.")
		g.owner = stackOwners(frames)
		groups[key] = g
	}
	return groups
}

// diffGoroutines returns the groups that grew from a to b, by how much,
// the largest first.
func diffGoroutines(a, b map[string]goroutineGroup) []goroutineGroup {
	var out []goroutineGroup
	for k, g := range b {
		g.count -= a[k].count
		if g.count > 0 {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(x, y goroutineGroup) int { return cmp.Or(y.count-x.count, strings.Compare(x.entry, y.entry)) })
	return out
}

// heapSample is one stack of a debug=1 heap profile: in-use objects and
// bytes (exact with MemProfileRate 1).
type heapSample struct {
	objects, bytes int64
	site           string // the first frame outside the runtime, with its line
	owner          string // the first frame's module outside the standard library
	key            string // set by diffHeap
}

var heapHeader = regexp.MustCompile(`^(\d+): (\d+) \[\d+: \d+\] @`)

// parseHeap reads the stacks of a debug=1 heap profile that have objects
// in use.
func parseHeap(text string) []heapSample {
	var out []heapSample
	for rec := range strings.SplitSeq(text, "\n\n") {
		lines := strings.Split(strings.TrimSpace(rec), "\n")
		for i, l := range lines {
			m := heapHeader.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			objects, _ := strconv.ParseInt(m[1], 10, 64)
			bytes, _ := strconv.ParseInt(m[2], 10, 64)
			if objects == 0 {
				continue
			}
			var stack []string
			for _, f := range lines[i+1:] {
				if !strings.HasPrefix(f, "#") {
					break
				}
				stack = append(stack, f)
			}
			sites := profileFrames(stack)
			s := heapSample{objects: objects, bytes: bytes, site: "?", owner: "?"}
			for _, fn := range sites {
				if !strings.HasPrefix(fn, "runtime.") {
					s.site = fn
					break
				}
			}
			for _, fn := range sites {
				if o := module(fn); o != "" {
					s.owner = o
					break
				}
			}
			out = append(out, s)
		}
	}
	return out
}

// diffHeap sums b minus a by key, the largest first.
func diffHeap(a, b []heapSample, key func(heapSample) string) []heapSample {
	sums := make(map[string]heapSample)
	add := func(samples []heapSample, sign int64) {
		for _, s := range samples {
			k := key(s)
			t := sums[k]
			t.key = k
			t.objects += sign * s.objects
			t.bytes += sign * s.bytes
			sums[k] = t
		}
	}
	add(a, -1)
	add(b, 1)
	out := make([]heapSample, 0, len(sums))
	for _, s := range sums {
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y heapSample) int { return cmp.Or(cmp.Compare(y.bytes, x.bytes), strings.Compare(x.key, y.key)) })
	return out
}

// profileFrames returns the function (with file:line) of each frame
// line: "#", the PC, the function+offset and the file:line. A "# labels:"
// line is no frame even when a label's value has spaces.
func profileFrames(lines []string) []string {
	var frames []string
	for _, l := range lines {
		fields := strings.Fields(l)
		if len(fields) < 4 || fields[0] != "#" || !strings.HasPrefix(fields[1], "0x") {
			continue
		}
		fn := fields[2]
		if i := strings.LastIndex(fn, "+"); i > 0 {
			fn = fn[:i]
		}
		frames = append(frames, fn+" "+filepath.Base(fields[3]))
	}
	return frames
}

// firstOutside returns the first frame that starts with none of
// prefixes, or the first frame if all do.
func firstOutside(frames []string, prefixes ...string) string {
	for _, f := range frames {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(f, p) }) {
			return f
		}
	}
	return frames[0]
}

// stackOwners lists the modules of a goroutine's frames, from the one
// that started it to the one it waits in.
func stackOwners(frames []string) string {
	var owners []string
	for i := len(frames) - 1; i >= 0; i-- {
		if o := module(frames[i]); o != "" && (len(owners) == 0 || owners[len(owners)-1] != o) {
			owners = append(owners, o)
		}
	}
	if len(owners) == 0 {
		return "std"
	}
	return strings.Join(owners, " > ")
}

// module names the library a function belongs to, "" for the standard
// library.
func module(fn string) string {
	switch {
	case strings.HasPrefix(fn, "github.com/quic-go/quic-go/http3"):
		return "http3"
	case strings.HasPrefix(fn, "github.com/quic-go/quic-go"):
		return "quic-go"
	case strings.HasPrefix(fn, "github.com/quic-go/webtransport-go"):
		return "webtransport-go"
	case strings.HasPrefix(fn, "github.com/quic-go/qpack"):
		return "qpack"
	case strings.HasPrefix(fn, "github.com/switchyard/switchyard/"):
		p := strings.TrimPrefix(fn, "github.com/switchyard/switchyard/")
		if i := strings.IndexByte(p, '.'); i >= 0 {
			p = p[:i] // the package's path, without the function
		}
		return "switchyard/" + p
	}
	fn, _, _ = strings.Cut(fn, " ") // drop the file:line
	first, _, slash := strings.Cut(fn, "/")
	if slash && strings.Contains(first, ".") {
		return first
	}
	return ""
}

// goroutineStack is one goroutine of a runtime traceback at the "system"
// level.
type goroutineStack struct {
	funcs   []string // innermost first, goexit excluded
	creator string   // the function that ran the go statement
	used    uint64   // bytes of stack in use: the outermost frame's fp less the innermost's sp
}

var (
	tracebackHeader = regexp.MustCompile(`^goroutine \d+ .*\[.*\]:$`)
	tracebackFrame  = regexp.MustCompile(` fp=(0x[0-9a-f]+) sp=(0x[0-9a-f]+) `)
)

// parseTraceback reads the goroutines of a SIGQUIT traceback printed at
// the "system" level; frames without fp and sp (inlined calls) are left
// out.
func parseTraceback(text string) []goroutineStack {
	var out []goroutineStack
	for block := range strings.SplitSeq(text, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) == 0 || !tracebackHeader.MatchString(lines[0]) {
			continue
		}
		var g goroutineStack
		var sp, fp uint64
		for i := 1; i+1 < len(lines); i += 2 {
			fn, pos := lines[i], lines[i+1]
			if c, ok := strings.CutPrefix(fn, "created by "); ok {
				g.creator, _, _ = strings.Cut(c, " in goroutine")
				break
			}
			if j := strings.LastIndex(fn, "("); j > 0 {
				fn = fn[:j]
			}
			m := tracebackFrame.FindStringSubmatch(pos + " ")
			if m == nil {
				continue
			}
			f, _ := strconv.ParseUint(m[1], 0, 64)
			p, _ := strconv.ParseUint(m[2], 0, 64)
			if sp == 0 {
				sp = p
			}
			fp = f
			if fn != "runtime.goexit" {
				g.funcs = append(g.funcs, fn)
			}
		}
		if sp != 0 && fp > sp && len(g.funcs) > 0 {
			g.used = fp - sp
			out = append(out, g)
		}
	}
	return out
}

// writeStackUse groups the goroutines by stack and prints how much of
// their stacks the groups of about one per session use. A GC halves a
// stack while what is in use, plus the runtime's 800-byte reserve, is
// under a quarter of it; so after a few GCs a stack is at most the
// largest power of two within four times that (and at least 2 KiB).
func writeStackUse(w io.Writer, stacks []goroutineStack, n int) {
	type group struct {
		count         int
		used          uint64
		creator, what string
	}
	groups := make(map[string]*group)
	for _, g := range stacks {
		k := g.creator + "|" + strings.Join(g.funcs, "|")
		gr := groups[k]
		if gr == nil {
			gr = &group{creator: g.creator, what: firstOutside(g.funcs, "runtime.", "internal/", "sync.", "context.")}
			groups[k] = gr
		}
		gr.count++
		gr.used += g.used
	}
	var list []*group
	for _, g := range groups {
		if g.count >= n/10 {
			list = append(list, g)
		}
	}
	slices.SortFunc(list, func(a, b *group) int { return cmp.Compare(b.used/uint64(b.count), a.used/uint64(a.count)) })
	fmt.Fprintf(w, "\nstacks in use (runtime dump; per goroutine: bytes in use, the most a settled stack takes):\n")
	var total float64
	for _, g := range list {
		used := g.used / uint64(g.count)
		size := uint64(2048)
		for size*2 <= 4*(used+800) {
			size *= 2
		}
		total += float64(size) * float64(g.count) / float64(n)
		fmt.Fprintf(w, "  %5.2f  used %5d B  stack <= %2d KiB  created by %s\n         in %s\n",
			float64(g.count)/float64(n), used, size>>10, g.creator, g.what)
	}
	fmt.Fprintf(w, "  at most %.1f KiB of stacks per session\n", total/1024)
}
