package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
)

// The options of a run come in layers, each over the one before: the
// defaults of optionTable, one config file (--config or SWITCHYARD_CONFIG),
// SWITCHYARD_* environment variables, then the flags given. Each layer is
// checked as it is read, so a problem is reported where it was written;
// koanf merges them; the result is checked again, option by option and
// across options (crossCheck).

const (
	envPrefix = "SWITCHYARD_"
	envConfig = envPrefix + "CONFIG"
)

// flagName is op's flag: its key with _ written -, or op.Flag.
func (op *opt) flagName() string {
	if op.Flag != "" {
		return op.Flag
	}
	return strings.ReplaceAll(op.Key, "_", "-")
}

// envName is op's environment variable: SWITCHYARD_ and its key in upper
// case with . written _.
func (op *opt) envName() string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(op.Key, ".", "_"))
}

// An optionSet is the options a load knows: optionTable, or a test's.
type optionSet []opt

func (set optionSet) byKey(key string) *opt {
	for i := range set {
		if set[i].Key == key {
			return &set[i]
		}
	}
	return nil
}

// isSection reports whether some option's key is in section key.
func (set optionSet) isSection(key string) bool {
	for i := range set {
		if strings.HasPrefix(set[i].Key, key+".") {
			return true
		}
	}
	return false
}

// source is where an option's value came from; the zero source is its
// default.
type source struct {
	file string // the config file, at line
	line int
	env  string // the environment variable
	flag string // the flag as given: --listen
}

// name is how a message placed at s refers to op: as a key in a file, a
// variable in the environment, else as a flag.
func (s source) name(op *opt) string {
	switch {
	case s.file != "":
		return op.Key
	case s.env != "":
		return op.envName()
	}
	return "--" + op.flagName()
}

// A configError is one problem, placed where the value came from:
// "config.yaml:12: replicas: must be 1 or 2, got 3", "--replicas: …",
// "SWITCHYARD_REPLICAS: …".
type configError struct {
	at  source
	key string // the option, when the problem is with one
	msg string
}

func (e *configError) Error() string {
	switch {
	case e.at.file != "" && e.at.line > 0 && e.key != "":
		return fmt.Sprintf("%s:%d: %s: %s", e.at.file, e.at.line, e.key, e.msg)
	case e.at.file != "" && e.at.line > 0:
		return fmt.Sprintf("%s:%d: %s", e.at.file, e.at.line, e.msg)
	case e.at.file != "":
		return e.at.file + ": " + e.msg
	case e.at.env != "":
		return e.at.env + ": " + e.msg
	case e.at.flag != "":
		return e.at.flag + ": " + e.msg
	case e.key != "":
		return e.key + ": " + e.msg
	}
	return e.msg
}

// report collects the problems of one load and where each value came from.
type report struct {
	set  optionSet
	src  map[string]source // by key; absent: the default
	errs []*configError
}

func (r *report) fail(at source, key string, err error) {
	r.errs = append(r.errs, &configError{at: at, key: key, msg: err.Error()})
}

// add reports msg about key; its %s verbs name the others, the way key's
// value was given.
func (r *report) add(key, msg string, others ...string) {
	at := r.src[key]
	names := make([]any, len(others))
	for i, k := range others {
		names[i] = at.name(r.set.byKey(k))
	}
	r.errs = append(r.errs, &configError{at: at, key: key, msg: fmt.Sprintf(msg, names...)})
}

// err joins the problems, those in the file first, by line.
func (r *report) err() error {
	sort.SliceStable(r.errs, func(i, j int) bool {
		a, b := r.errs[i].at, r.errs[j].at
		if a.file != "" && b.file != "" {
			return a.line < b.line
		}
		return a.file != "" && b.file == ""
	})
	errs := make([]error, len(r.errs))
	for i, e := range r.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// loadOptions reads the options of a node start: flags from args over the
// environment (environ) over the config file over the defaults. A flag
// error is returned as the flag package gives it (and flag.ErrHelp for
// -h); anything else wrong with the configuration comes back as every
// problem found, joined.
func loadOptions(args []string, environ func() []string, usage io.Writer) (options, error) {
	return optionTable.load(args, environ, usage)
}

func (set optionSet) load(args []string, environ func() []string, usage io.Writer) (options, error) {
	fs := flag.NewFlagSet("switchyard", flag.ContinueOnError)
	fs.SetOutput(usage)
	configFile := fs.String("config", "", "config `file`, YAML (.yaml, .yml) or JSON (.json), with the keys of docs/config.md; default: $"+envConfig)
	flags := set.defineFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: switchyard [flags]           start a node (with no flags: a dev node on loopback)
       switchyard certs init|node ...  mesh credentials (switchyard certs for help)
       switchyard config check FILE    check a config file
       switchyard config print [flags] the configuration a start with these flags would run
       switchyard config doc           docs/config.md

Every option is a flag, a key in the --config file and a %sNAME environment
variable; flags win over the environment, which wins over the file. See
docs/config.md.

`, envPrefix)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	path, given := *configFile, false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "config" })
	if !given {
		path = lookupEnv(environ(), envConfig)
	}
	o, r := set.resolve(path, environ, flags)
	return o, r.err()
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// flagSetting is what the command line gave for one option, under its flag
// or an alias: the last one given wins.
type flagSetting struct {
	text, name string
	given      bool
}

// flagValue is an option's flag.Value under one of its names.
type flagValue struct {
	op   *opt
	name string
	s    *flagSetting
}

func (f *flagValue) String() string {
	switch {
	case f == nil || f.op == nil: // the flag package's zero value
		return ""
	case f.s.given:
		return f.s.text
	case reflect.ValueOf(f.op.Value.def()).IsZero():
		return "" // no "(default false)" in -h
	}
	return f.op.Value.format(f.op.Value.def())
}

func (f *flagValue) Set(text string) error {
	if _, err := f.op.Value.decode(text); err != nil {
		return err
	}
	*f.s = flagSetting{text: text, name: f.name, given: true}
	return nil
}

func (f *flagValue) IsBoolFlag() bool { return f.op.Value.isBool() }

// defineFlags defines the flag of every option on fs, and its aliases.
func (set optionSet) defineFlags(fs *flag.FlagSet) map[string]*flagSetting {
	out := make(map[string]*flagSetting, len(set))
	for i := range set {
		op := &set[i]
		s := &flagSetting{}
		out[op.Key] = s
		help := op.Help
		if op.DefaultDoc != "" {
			help += " (default: " + strings.ReplaceAll(op.DefaultDoc, "`", "") + ")"
		}
		fs.Var(&flagValue{op: op, name: op.flagName(), s: s}, op.flagName(), help)
		for _, a := range op.Alias {
			fs.Var(&flagValue{op: op, name: a, s: s}, a, "same as --"+op.flagName())
		}
	}
	return out
}

// resolve loads the layers over the defaults: the file at path (none if
// ""), the environment, then the flags given. The report holds every
// problem and where each option's value came from.
func (set optionSet) resolve(path string, environ func() []string, flags map[string]*flagSetting) (options, *report) {
	r := &report{set: set, src: map[string]source{}}
	k := koanf.New(".")
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			r.errs = append(r.errs, &configError{msg: fmt.Sprintf("config: %v", err)})
		} else if root, err := parseConfigFile(path, data); err != nil {
			var le *lineError
			errors.As(err, &le)
			r.errs = append(r.errs, &configError{at: source{file: path, line: le.line}, msg: le.msg})
		} else {
			_ = k.Load(confmap.Provider(set.fileValues(path, root, r), "."), nil)
		}
	}
	byEnv := make(map[string]*opt, len(set))
	for i := range set {
		byEnv[set[i].envName()] = &set[i]
	}
	_ = k.Load(env.Provider(".", env.Opt{Prefix: envPrefix, EnvironFunc: environ, TransformFunc: func(name, v string) (string, any) {
		op := byEnv[name]
		if op == nil {
			return "", nil // not ours: SWITCHYARD_CONFIG, or a test's
		}
		at := source{env: name}
		if _, err := op.Value.decode(v); err != nil {
			r.fail(at, op.Key, err)
			return "", nil
		}
		r.src[op.Key] = at
		return op.Key, v
	}}), nil)
	given := map[string]any{}
	for key, s := range flags {
		if s.given {
			given[key] = s.text
			r.src[key] = source{flag: "--" + s.name}
		}
	}
	_ = k.Load(confmap.Provider(given, "."), nil)

	var o options
	for i := range set {
		op := &set[i]
		v := op.Value.def()
		if raw := k.Get(op.Key); raw != nil {
			x, err := op.Value.decode(raw)
			if err != nil { // each layer was checked: not expected
				r.fail(r.src[op.Key], op.Key, err)
			} else {
				v = x
			}
		}
		op.Value.set(&o, v)
		if err := op.Value.check(v); err != nil {
			r.fail(r.src[op.Key], op.Key, err)
		}
	}
	crossCheck(&o, r)
	return o, r
}
