package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A config file is read into a tree of values that keep their lines, then
// checked against optionTable with those lines (unknown keys, wrong types)
// and handed to the loader as the plain values a koanf parser gives:
// string, int64, float64, bool, []any, map[string]any. koanf's own parsers
// are not used because they drop the lines.

// Limits on a file's tree, against alias bombs and runaway nesting.
const (
	maxFileValues = 100_000
	maxFileDepth  = 64
)

type fnodeKind uint8

const (
	fScalar fnodeKind = iota
	fList
	fMap
)

// fnode is one value of a config file and the line it starts on.
type fnode struct {
	kind fnodeKind
	line int
	v    any      // fScalar: string, int64, float64, bool or nil
	list []*fnode // fList
	keys []fentry // fMap, in file order
}

type fentry struct {
	name string
	line int
	val  *fnode
}

func (n *fnode) null() bool { return n.kind == fScalar && n.v == nil }

// plain is n as koanf holds it; of a repeated key, the last wins (the
// walker reports the repetition).
func (n *fnode) plain() any {
	switch n.kind {
	case fList:
		out := make([]any, len(n.list))
		for i, it := range n.list {
			out[i] = it.plain()
		}
		return out
	case fMap:
		out := make(map[string]any, len(n.keys))
		for _, e := range n.keys {
			out[e.name] = e.val.plain()
		}
		return out
	}
	return n.v
}

func (n *fnode) what() string {
	switch n.kind {
	case fList:
		return "a list"
	case fMap:
		return "a map"
	}
	return describe(n.v)
}

// A lineError is a problem in a file that is not about one option.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return e.msg }

// parseConfigFile reads data, the file at path, as YAML or JSON: by the
// name's extension, else JSON if it starts with '{'.
func parseConfigFile(path string, data []byte) (*fnode, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return yamlTree(data)
	case ".json":
		return jsonTree(data)
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		return jsonTree(data)
	}
	return yamlTree(data)
}

// fileValues checks the tree of a config file against optionTable and
// returns the value of every option it sets, by key, with r.src naming
// the line of each; problems go to r.
func (set optionSet) fileValues(file string, root *fnode, r *report) map[string]any {
	w := walker{set: set, file: file, r: r, out: map[string]any{}, seen: map[string]int{}}
	switch {
	case root == nil || root.null():
	case root.kind != fMap:
		r.errs = append(r.errs, &configError{at: source{file: file, line: root.line}, msg: "want a map of options at the top, got " + root.what()})
	default:
		w.mapping("", root)
	}
	return w.out
}

type walker struct {
	set  optionSet
	file string
	r    *report
	out  map[string]any
	seen map[string]int // key → line
}

func (w *walker) mapping(prefix string, m *fnode) {
	for _, e := range m.keys {
		key := prefix + e.name
		at := source{file: w.file, line: e.line}
		if first, dup := w.seen[key]; dup {
			w.r.errs = append(w.r.errs, &configError{at: at, key: key, msg: fmt.Sprintf("given again (first on line %d)", first)})
			continue
		}
		w.seen[key] = e.line
		if op := w.set.byKey(key); op != nil {
			if e.val.null() {
				continue // key: with no value leaves the default
			}
			v := e.val.plain()
			if _, err := op.Value.decode(v); err != nil {
				var ie *itemError
				if errors.As(err, &ie) && e.val.kind == fList && ie.index < len(e.val.list) {
					at.line = e.val.list[ie.index].line
				}
				w.r.fail(at, key, err)
				continue
			}
			w.out[key] = v
			w.r.src[key] = at
			continue
		}
		if w.set.isSection(key) {
			switch {
			case e.val.null():
			case e.val.kind == fMap:
				w.mapping(key+".", e.val)
			default:
				w.r.fail(at, key, fmt.Errorf("want a section (a map of its options), got %s", e.val.what()))
			}
			continue
		}
		msg := fmt.Sprintf("unknown key %q", key)
		if s := w.set.suggest(key); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		w.r.errs = append(w.r.errs, &configError{at: at, msg: msg})
	}
}

// suggest is the declared key closest to an unknown one, if one is close:
// a typo, or a flag's spelling (api-key).
func (set optionSet) suggest(key string) string {
	if len(key) > 64 {
		return ""
	}
	norm := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	best, bestD := "", 2+len(norm)/4
	for i := range set {
		k := set[i].Key
		d := editDistance(norm, k)
		if _, last, ok := strings.Cut(k, "."); ok && last == norm {
			d = 1 // publish_rate for limits.publish_rate
		}
		if d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// YAML, through go.yaml.in/yaml/v3, the library koanf's YAML parser uses.

func yamlTree(data []byte) (*fnode, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty file
		}
		return nil, yamlError(err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(err)
		}
		return nil, &lineError{more.Line, "more than one YAML document"}
	}
	budget := maxFileValues
	return yamlValue(&doc, 0, &budget)
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlParserProblems are the problems yaml/v3 reports with a 0-based line
// (its scanner's have 1-based lines); the line is where the construct
// that failed began.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'": true, "did not find expected ',' or '}'": true,
	"did not find expected '-' indicator": true, "did not find expected <document start>": true,
	"did not find expected <stream-start>": true, "did not find expected key": true,
	"did not find expected node content": true, "found duplicate %TAG directive": true,
	"found duplicate %YAML directive": true, "found incompatible YAML document": true,
	"found undefined tag handle": true,
}

func yamlError(err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &lineError{0, err.Error()}
	}
	line, _ := strconv.Atoi(m[1]) // no line: the first
	if m[1] == "" || yamlParserProblems[m[2]] {
		line++
	}
	return &lineError{line, m[2]}
}

func yamlValue(n *yaml.Node, depth int, budget *int) (*fnode, error) {
	if *budget--; *budget < 0 {
		return nil, &lineError{n.Line, "too many values (aliases?)"}
	}
	if depth > maxFileDepth {
		return nil, &lineError{n.Line, "nested too deep"}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &fnode{line: n.Line}, nil
		}
		return yamlValue(n.Content[0], depth, budget)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, &lineError{n.Line, "alias to nothing"}
		}
		v, err := yamlValue(n.Alias, depth+1, budget)
		if err != nil {
			return nil, err
		}
		v.line = n.Line
		return v, nil
	case yaml.SequenceNode:
		out := &fnode{kind: fList, line: n.Line, list: []*fnode{}}
		for _, c := range n.Content {
			v, err := yamlValue(c, depth+1, budget)
			if err != nil {
				return nil, err
			}
			out.list = append(out.list, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := &fnode{kind: fMap, line: n.Line}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode {
				return nil, &lineError{n.Content[i].Line, "a key must be a name, not a list or a map"}
			}
			if k.ShortTag() == "!!merge" {
				return nil, &lineError{n.Content[i].Line, "merge keys (<<) are not supported"}
			}
			v, err := yamlValue(n.Content[i+1], depth+1, budget)
			if err != nil {
				return nil, err
			}
			out.keys = append(out.keys, fentry{name: k.Value, line: n.Content[i].Line, val: v})
		}
		return out, nil
	case yaml.ScalarNode:
		return &fnode{line: n.Line, v: yamlScalar(n)}, nil
	}
	return nil, &lineError{n.Line, "unexpected YAML node"}
}

// yamlScalar is a scalar's value: null, a bool or a number, else its text.
// A number or bool not written the canonical way (0x10, 1_000, True) is
// its text, so that a string option keeps what was written and an int
// option reads it as the flag would.
func yamlScalar(n *yaml.Node) any {
	var v any
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			v = b
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			v = i
		}
	case "!!float":
		var f float64
		if n.Decode(&f) == nil {
			v = f
		}
	}
	if v == nil || fmt.Sprint(v) != n.Value {
		return n.Value
	}
	return v
}

// JSON, through encoding/json's tokenizer, which gives offsets.

func jsonTree(data []byte) (*fnode, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	p := jsonParser{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	p.dec.UseNumber()
	for i, b := range data {
		if b == '\n' {
			p.newlines = append(p.newlines, i)
		}
	}
	root, err := p.value(0)
	if err != nil {
		return nil, p.wrap(err)
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &lineError{p.lineAt(p.dec.InputOffset()), "more after the top-level value"}
	}
	return root, nil
}

type jsonParser struct {
	dec      *json.Decoder
	data     []byte
	newlines []int // offsets of '\n'
}

// lineAt is the line of the byte before off, where the decoder's last
// token ends: tokens do not span lines.
func (p *jsonParser) lineAt(off int64) int {
	return 1 + sort.SearchInts(p.newlines, int(max(off-1, 0)))
}

func (p *jsonParser) wrap(err error) error {
	var le *lineError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &le):
		return le
	case errors.As(err, &se): // Offset: where the bad byte is
		return &lineError{p.lineAt(se.Offset + 1), se.Error()}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &lineError{len(p.newlines) + 1, "unexpected end of file"}
	}
	return &lineError{p.lineAt(p.dec.InputOffset()), err.Error()}
}

func (p *jsonParser) value(depth int) (*fnode, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	line := p.lineAt(p.dec.InputOffset())
	if depth > maxFileDepth {
		return nil, &lineError{line, "nested too deep"}
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			out := &fnode{kind: fList, line: line, list: []*fnode{}}
			for p.dec.More() {
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				out.list = append(out.list, v)
			}
			_, err := p.dec.Token() // ]
			return out, err
		}
		out := &fnode{kind: fMap, line: line}
		for p.dec.More() {
			k, err := p.dec.Token()
			if err != nil {
				return nil, err
			}
			name, _ := k.(string)
			kline := p.lineAt(p.dec.InputOffset())
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out.keys = append(out.keys, fentry{name: name, line: kline, val: v})
		}
		_, err := p.dec.Token() // }
		return out, err
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return &fnode{line: line, v: i}, nil
		}
		if f, err := t.Float64(); err == nil {
			return &fnode{line: line, v: f}, nil
		}
		return &fnode{line: line, v: t.String()}, nil
	}
	return &fnode{line: line, v: tok}, nil // string, bool or nil
}
