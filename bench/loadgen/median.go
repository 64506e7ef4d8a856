package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// medianKeys are the fields that tell runs of different settings apart:
// -json lines that agree on all of them (where present) are runs of one
// setting, and writeMedians folds them into one.
var medianKeys = []string{"scenario", "target", "tls", "subs", "cycles", "concurrency", "rate", "payload_bytes", "window", "readers", "mode", "room_size", "pairs", "peers"}

// writeMedians reads the -json result lines of files, groups the runs of
// one setting (medianKeys, in the order the groups first appear) and
// writes one line per group: every number the median of the group's
// runs that have it (the mean of the middle two for an even count,
// rounded where all were integers), every list of numbers the median
// element by element, the rest from the first run, and "runs" the
// group's size. It returns the largest group's size. A number missing
// from the first run still counts: fields such as the arrival latency
// are left out of a run that measured none.
func writeMedians(w io.Writer, files []string) (int, error) {
	type group struct {
		key  string
		runs []map[string]any
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 || line[0] != '{' {
				continue
			}
			d := json.NewDecoder(bytes.NewReader(line))
			d.UseNumber()
			var m map[string]any
			if err := d.Decode(&m); err != nil {
				f.Close()
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			var kb strings.Builder
			for _, k := range medianKeys {
				if v, ok := m[k]; ok {
					fmt.Fprintf(&kb, "%s=%v;", k, v)
				}
			}
			key := kb.String()
			g := byKey[key]
			if g == nil {
				g = &group{key: key}
				byKey[key] = g
				groups = append(groups, g)
			}
			g.runs = append(g.runs, m)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
	}
	most := 0
	for _, g := range groups {
		most = max(most, len(g.runs))
		out := map[string]any{}
		for k, v := range groupFields(g.runs) {
			switch v.(type) {
			case json.Number:
				var vs []json.Number
				for _, r := range g.runs {
					if n, ok := r[k].(json.Number); ok {
						vs = append(vs, n)
					}
				}
				out[k] = medianNumber(vs)
			case []any:
				var lists [][]any
				for _, r := range g.runs {
					if l, ok := r[k].([]any); ok {
						lists = append(lists, l)
					}
				}
				out[k] = medianLists(lists)
			default:
				out[k] = v
			}
		}
		out["runs"] = len(g.runs)
		b, err := json.Marshal(out)
		if err != nil {
			return 0, err
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return 0, err
		}
	}
	return most, nil
}

// groupFields is every field of runs with a sample value: the first
// run's fields, and the numbers and lists of numbers of the others that
// it lacks.
func groupFields(runs []map[string]any) map[string]any {
	fields := map[string]any{}
	for i, r := range runs {
		for k, v := range r {
			if _, ok := fields[k]; ok {
				continue
			}
			switch v.(type) {
			case json.Number, []any:
				fields[k] = v
			default:
				if i == 0 {
					fields[k] = v
				}
			}
		}
	}
	return fields
}

// medianNumber is the median of vs, an integer when all of them are.
func medianNumber(vs []json.Number) json.Number {
	ints := true
	fs := make([]float64, 0, len(vs))
	for _, v := range vs {
		if strings.ContainsAny(string(v), ".eE") {
			ints = false
		}
		f, err := v.Float64()
		if err == nil {
			fs = append(fs, f)
		}
	}
	m := median(fs)
	if ints {
		return json.Number(strconv.FormatInt(int64(math.Round(m)), 10))
	}
	return json.Number(strconv.FormatFloat(m, 'g', -1, 64))
}

// median of fs: the middle one, or the mean of the middle two; 0 for none.
func median(fs []float64) float64 {
	if len(fs) == 0 {
		return 0
	}
	s := slices.Clone(fs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianLists is the median, element by element, of lists of numbers (of
// the lists long enough at each index); a list of anything else is the
// first one as it is.
func medianLists(lists [][]any) []any {
	n := 0
	for _, l := range lists {
		n = max(n, len(l))
	}
	out := make([]any, 0, n)
	for i := range n {
		var vs []json.Number
		for _, l := range lists {
			if i >= len(l) {
				continue
			}
			num, ok := l[i].(json.Number)
			if !ok {
				return lists[0]
			}
			vs = append(vs, num)
		}
		out = append(out, medianNumber(vs))
	}
	return out
}
