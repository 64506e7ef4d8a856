package main

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/signaling"
)

// A kind is the type of an option: how its value is read from flag or
// environment text and from a config file, and how it is written back.
type kind[T any] struct {
	name   string                  // in docs/config.md: string, int, duration, list, …
	parse  func(string) (T, error) // flag and environment text; also a string in a file
	decode func(any) (T, error)    // a file value other than a string: int64, float64, bool, []any, map[string]any; nil: refused
	format func(T) string          // flag defaults and docs
	plain  func(T) any             // `config print`; nil: T itself
}

// A binding ties an option to its kind, its default, the options field it
// fills and the checks its value must pass. bind makes one.
type binding interface {
	typeName() string
	// decode reads text from a flag or environment variable, or a value
	// from a config file (nil is never passed).
	decode(v any) (any, error)
	def() any
	set(o *options, v any)
	get(o *options) any
	check(v any) error
	format(v any) string
	plain(v any) any
	isBool() bool
}

func bind[T any](k kind[T], def T, field func(*options) *T, checks ...func(T) error) binding {
	return &bound[T]{k: k, dflt: def, field: field, checks: checks}
}

type bound[T any] struct {
	k      kind[T]
	dflt   T
	field  func(*options) *T
	checks []func(T) error
}

func (b *bound[T]) typeName() string { return b.k.name }

// def is the default; a list is a copy, so that no run can change the
// table's.
func (b *bound[T]) def() any {
	if v := reflect.ValueOf(b.dflt); v.Kind() == reflect.Slice && !v.IsNil() {
		return reflect.AppendSlice(reflect.MakeSlice(v.Type(), 0, v.Len()), v).Interface()
	}
	return b.dflt
}
func (b *bound[T]) set(o *options, v any) {
	*b.field(o) = v.(T)
}
func (b *bound[T]) get(o *options) any  { return *b.field(o) }
func (b *bound[T]) format(v any) string { return b.k.format(v.(T)) }
func (b *bound[T]) isBool() bool {
	_, ok := any(b.dflt).(bool)
	return ok
}

func (b *bound[T]) decode(v any) (any, error) {
	x, err := b.k.decodeAny(v)
	if err != nil {
		return nil, err
	}
	return x, nil
}

func (b *bound[T]) check(v any) error {
	for _, c := range b.checks {
		if err := c(v.(T)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bound[T]) plain(v any) any {
	if b.k.plain == nil {
		return v
	}
	return b.k.plain(v.(T))
}

// describe names a file value in an error: `a list`, `the number 3`.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case int64, float64:
		return fmt.Sprintf("the number %v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}

// An itemError is a problem with one entry of a list; the file loader
// places it on that entry's line.
type itemError struct {
	index int
	err   error
}

func (e *itemError) Error() string { return fmt.Sprintf("entry %d: %v", e.index+1, e.err) }

var (
	strKind = kind[string]{
		name:  "string",
		parse: func(s string) (string, error) { return s, nil },
		decode: func(v any) (string, error) {
			switch v.(type) {
			case int64, float64, bool: // a YAML plain scalar such as 1234
				return fmt.Sprint(v), nil
			}
			return "", fmt.Errorf("want a string, got %s", describe(v))
		},
		format: func(s string) string { return s },
	}

	intKind = kind[int]{
		name: "int",
		parse: func(s string) (int, error) {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 0, strconv.IntSize)
			if err != nil {
				return 0, fmt.Errorf("want an integer, got %q", s)
			}
			return int(n), nil
		},
		decode: func(v any) (int, error) {
			switch n := v.(type) {
			case int64:
				if n >= math.MinInt && n <= math.MaxInt {
					return int(n), nil
				}
			case float64:
				if n == math.Trunc(n) && n >= math.MinInt32 && n <= math.MaxInt32 {
					return int(n), nil
				}
			}
			return 0, fmt.Errorf("want an integer, got %s", describe(v))
		},
		format: strconv.Itoa,
	}

	boolKind = kind[bool]{
		name: "bool",
		parse: func(s string) (bool, error) {
			b, err := strconv.ParseBool(strings.TrimSpace(s))
			if err != nil {
				return false, fmt.Errorf("want true or false, got %q", s)
			}
			return b, nil
		},
		decode: func(v any) (bool, error) {
			if b, ok := v.(bool); ok {
				return b, nil
			}
			return false, fmt.Errorf("want true or false, got %s", describe(v))
		},
		format: strconv.FormatBool,
	}

	// Durations are strings such as "10s" or "1h30m", as the flags have
	// always taken them; a bare number has no unit and is refused.
	durationKind = kind[time.Duration]{
		name: "duration",
		parse: func(s string) (time.Duration, error) {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil {
				return 0, fmt.Errorf("want a duration such as \"10s\", got %q", s)
			}
			return d, nil
		},
		decode: func(v any) (time.Duration, error) {
			return 0, fmt.Errorf("want a duration such as \"10s\", got %s", describe(v))
		},
		format: durationText,
		plain:  func(d time.Duration) any { return durationText(d) },
	}

	// Lists are a list of strings, or one string of comma-separated
	// values as on the command line ("" is the empty list).
	listKind = kind[[]string]{
		name:  "list",
		parse: func(s string) ([]string, error) { return append([]string{}, splitList(s)...), nil },
		decode: func(v any) ([]string, error) {
			return listOf(v, func(s string) ([]string, error) { return []string{s}, nil })
		},
		format: func(l []string) string { return strings.Join(l, ",") },
		plain:  func(l []string) any { return append([]string{}, l...) },
	}

	// History rules CHANNELS=SIZE/TTL, as a list or comma-separated.
	historyKind = kind[[]edge.HistoryRule]{
		name:  "list of rules",
		parse: func(s string) ([]edge.HistoryRule, error) { return parseHistory(splitList(s)) },
		decode: func(v any) ([]edge.HistoryRule, error) {
			return listOf(v, func(s string) ([]edge.HistoryRule, error) { return parseHistory(splitList(s)) })
		},
		format: func(rules []edge.HistoryRule) string { return strings.Join(historyTexts(rules), ",") },
		plain:  func(rules []edge.HistoryRule) any { return historyTexts(rules) },
	}

	// ICE servers: URLs ("stun:…", "turn:…"), comma-separated or a list,
	// whose entries may also be {urls, username, credential} maps for
	// servers with fixed credentials.
	iceKind = kind[[]signaling.ICEServer]{
		name: "list of ICE servers",
		parse: func(s string) ([]signaling.ICEServer, error) {
			return iceServersOf(splitList(s)), nil
		},
		decode: func(v any) ([]signaling.ICEServer, error) {
			items, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("want a list of ICE server URLs or {urls, username, credential} maps, got %s", describe(v))
			}
			out := []signaling.ICEServer{}
			for i, it := range items {
				s, err := iceServerOf(it)
				if err != nil {
					return nil, &itemError{i, err}
				}
				out = append(out, s)
			}
			return out, nil
		},
		format: func(l []signaling.ICEServer) string {
			var urls []string
			for _, s := range l {
				urls = append(urls, s.URLs...)
			}
			return strings.Join(urls, ",")
		},
		plain: func(l []signaling.ICEServer) any {
			out := []any{}
			for _, s := range l {
				if len(s.URLs) == 1 && s.Username == "" && s.Credential == "" {
					out = append(out, s.URLs[0])
					continue
				}
				m := map[string]any{"urls": s.URLs}
				if s.Username != "" {
					m["username"] = s.Username
				}
				if s.Credential != "" {
					m["credential"] = s.Credential
				}
				out = append(out, m)
			}
			return out
		},
	}
)

// listOf reads a list whose entries are strings, each read by item, or one
// string read by item.
func listOf[T any](v any, item func(string) ([]T, error)) ([]T, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want a list or a comma-separated string, got %s", describe(v))
	}
	out := []T{}
	for i, it := range items {
		s, err := strKind.decodeAny(it)
		if err != nil {
			return nil, &itemError{i, err}
		}
		vs, err := item(s)
		if err != nil {
			return nil, &itemError{i, err}
		}
		out = append(out, vs...)
	}
	return out, nil
}

func iceServerOf(v any) (signaling.ICEServer, error) {
	switch v := v.(type) {
	case string:
		return signaling.ICEServer{URLs: []string{v}}, nil
	case map[string]any:
		var s signaling.ICEServer
		for _, k := range slices.Sorted(maps.Keys(v)) {
			var err error
			switch k {
			case "urls":
				s.URLs, err = listKind.decodeAny(v[k])
			case "username":
				s.Username, err = strKind.decodeAny(v[k])
			case "credential":
				s.Credential, err = strKind.decodeAny(v[k])
			default:
				return s, fmt.Errorf("unknown key %q (want urls, username, credential)", k)
			}
			if err != nil {
				return s, fmt.Errorf("%s: %w", k, err)
			}
		}
		if len(s.URLs) == 0 {
			return s, errors.New("urls: none given")
		}
		return s, nil
	}
	return signaling.ICEServer{}, fmt.Errorf("want a URL or a {urls, username, credential} map, got %s", describe(v))
}

// decodeAny reads a file value of kind k: a string through parse, any
// other value through decode.
func (k kind[T]) decodeAny(v any) (T, error) {
	if s, ok := v.(string); ok {
		return k.parse(s)
	}
	if k.decode == nil {
		var zero T
		return zero, fmt.Errorf("want %s, got %s", k.name, describe(v))
	}
	return k.decode(v)
}

// durationText writes d the way one would type it: 5m, not 5m0s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func historyTexts(rules []edge.HistoryRule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = fmt.Sprintf("%s=%d", r.Channels, r.Size)
		if r.TTL > 0 {
			out[i] += "/" + durationText(r.TTL)
		}
	}
	return out
}

// Checks shared by several options.

// hostPort accepts host:port, or empty for "off".
func hostPort(s string) error {
	if s == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("want host:port, got %q", s)
	}
	return nil
}

func oneOf(values ...string) func(string) error {
	return func(s string) error {
		for _, v := range values {
			if s == v {
				return nil
			}
		}
		return fmt.Errorf("want %s, got %q", orList(values), s)
	}
}

func positive[T int | time.Duration](v T) error {
	if v <= 0 {
		return fmt.Errorf("must be positive, got %v", v)
	}
	return nil
}

func notNegative[T int | time.Duration](v T) error {
	if v < 0 {
		return fmt.Errorf("must not be negative, got %v", v)
	}
	return nil
}

// orList writes "a, b or c".
func orList(values []string) string {
	if len(values) < 2 {
		return strings.Join(values, "")
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

func iceServersOf(urls []string) []signaling.ICEServer {
	out := make([]signaling.ICEServer, 0, len(urls))
	for _, u := range urls {
		out = append(out, signaling.ICEServer{URLs: []string{u}})
	}
	return out
}
