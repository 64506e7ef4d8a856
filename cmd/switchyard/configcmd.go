package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// runConfig implements `switchyard config`:
//
//	switchyard config check FILE     load FILE over the defaults and the environment; "ok" or every problem
//	switchyard config print [FLAGS]  the configuration a start with FLAGS would run, as YAML
//	switchyard config doc            docs/config.md, from optionTable
func runConfig(args []string, environ func() []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, `usage:
  switchyard config check FILE
      load FILE (YAML or JSON) as a node would, with the SWITCHYARD_* environment,
      and print "ok" or every problem, one a line
  switchyard config print [FLAGS]
      print, as YAML, the configuration a node started with FLAGS would run
      (secrets hidden)
  switchyard config doc
      print docs/config.md: every option's key, flag, variable, type and default`)
	}
	if len(args) == 0 {
		usage()
		return errors.New("config: missing subcommand")
	}
	switch args[0] {
	case "check":
		if len(args) != 2 || strings.HasPrefix(args[1], "-") {
			usage()
			return errors.New("config check: want one FILE")
		}
		if _, err := loadOptions([]string{"--config", args[1]}, environ, stderr); err != nil {
			n := 1
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				n = len(j.Unwrap())
			}
			fmt.Fprintln(stderr, err)
			return fmt.Errorf("config check: %s: %d problem%s", args[1], n, plural(n))
		}
		fmt.Fprintln(stdout, "ok")
		return nil
	case "print":
		o, err := loadOptions(args[1:], environ, stderr)
		if err != nil {
			return err
		}
		b, err := optionTable.yaml(&o)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	case "doc":
		if len(args) != 1 {
			usage()
			return errors.New("config doc: no arguments")
		}
		_, err := io.WriteString(stdout, configDoc())
		return err
	}
	usage()
	return fmt.Errorf("config: unknown subcommand %q", args[0])
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// yaml writes o as a config file, in the set's order, sections nested;
// secrets other than @FILE are hidden.
func (set optionSet) yaml(o *options) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	sections := map[string]*yaml.Node{"": root}
	for i := range set {
		op := &set[i]
		parent, name := root, op.Key
		if dot := strings.LastIndex(op.Key, "."); dot >= 0 {
			parent, name = section(sections, op.Key[:dot]), op.Key[dot+1:]
		}
		v := op.Value.plain(op.Value.get(o))
		if op.Secret {
			v = hideSecret(v)
		}
		var val yaml.Node
		if err := val.Encode(v); err != nil {
			return nil, fmt.Errorf("config print: %s: %w", op.Key, err)
		}
		parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, &val)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// hideSecret replaces a secret, or each of a list of them, with
// "(hidden)"; an @FILE reference and an empty value are shown. Of a list
// of maps (ICE servers), it hides the credentials.
func hideSecret(v any) any {
	switch v := v.(type) {
	case string:
		if v == "" || strings.HasPrefix(v, "@") {
			return v
		}
	case []string:
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = hideSecret(s).(string)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, it := range v {
			out[i] = it
			if m, ok := it.(map[string]any); ok && m["credential"] != nil {
				m = maps.Clone(m)
				m["credential"] = hideSecret(m["credential"])
				out[i] = m
			}
		}
		return out
	}
	return "(hidden)"
}

// section is the mapping of a (dotted) section, made on first use.
func section(sections map[string]*yaml.Node, name string) *yaml.Node {
	if n := sections[name]; n != nil {
		return n
	}
	parent, last := sections[""], name
	if dot := strings.LastIndex(name, "."); dot >= 0 {
		parent, last = section(sections, name[:dot]), name[dot+1:]
	}
	n := &yaml.Node{Kind: yaml.MappingNode}
	parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: last}, n)
	sections[name] = n
	return n
}

//go:generate sh -c "go run . config doc > ../../docs/config.md"

// configDocCommand regenerates docs/config.md.
const configDocCommand = "go run ./cmd/switchyard config doc > docs/config.md"

// configExample is the example of docs/config.md (a test loads it).
const configExample = `# /etc/switchyard/node.yaml
listen: 0.0.0.0:443
http: ""                 # no plain HTTP
cert: /etc/switchyard/tls/fullchain.pem
key: /etc/switchyard/tls/privkey.pem
public_urls: [https://rt.example.com]
history:
  - chat:tmp*=0
  - chat:*=5000/5m
ice_servers:
  - stun:stun.example.com:3478
  - urls: ["turn:turn.example.com:3478?transport=udp"]
    username: edge
    credential: s3cret
node: eu-1
region: eu
mesh_bind: 10.0.0.1:7946
mesh_tls: /etc/switchyard/mesh
mesh_key: "@/etc/switchyard/mesh/gossip.key"
join: 10.0.0.2:7946, 10.0.0.3:7946
auth:
  jwks_url: https://id.example.com/.well-known/jwks.json
  audience: switchyard
  issuer: https://id.example.com
api_keys: ["backend:@/etc/switchyard/api.key:publish+history"]
limits:
  connect_rate: 1000
  sessions_per_ip: 200
  publish_rate: 50
`

// configDoc is docs/config.md.
func configDoc() string {
	var b strings.Builder
	b.WriteString(`# Configuration

<!-- Generated from optionTable in cmd/switchyard/config.go by ` + "`" + configDocCommand + "`" + `; do not edit. -->

Every option of ` + "`switchyard`" + ` can be given three ways, each over the one before (and all over the
defaults):

1. a config file, ` + "`--config FILE`" + ` (or ` + "`" + envConfig + "=FILE`" + `): YAML (` + "`.yaml`, `.yml`" + `) or JSON
   (` + "`.json`" + `; another name is read as JSON if it starts with ` + "`{`" + `, else as YAML);
2. environment variables ` + "`" + envPrefix + "NAME`" + `;
3. command-line flags.

With none of them, ` + "`switchyard`" + ` starts a development node on loopback.

## Names

- **Key** (file): lower case, words joined by ` + "`_`" + `. An option in a section has a dotted key,
  ` + "`limits.publish_rate`" + `, written in the file as a nested map (` + "`limits: {publish_rate: 10}`" + `) or as the
  dotted key itself.
- **Flag**: the key with ` + "`_`" + ` written ` + "`-`" + `, sections kept dotted: ` + "`--mesh-bind`, `--limits.publish-rate`" + `. An
  option may also have a short alias (` + "`--publish-rate`" + `); it is listed with the option. ` + "`-name`" + ` works as
  well as ` + "`--name`" + `, and ` + "`--name=value`" + ` as well as ` + "`--name value`" + `.
- **Environment**: ` + "`" + envPrefix + "`" + ` and the key in upper case, ` + "`.`" + ` written ` + "`_`" + `:
  ` + "`" + envPrefix + "MESH_BIND`, `" + envPrefix + "LIMITS_PUBLISH_RATE`" + `. A variable set to the empty string is set (to
  empty); other ` + "`" + envPrefix + "*`" + ` variables are ignored.

## Values

- **string**: as written (in YAML, a number such as ` + "`0123`" + ` too). In YAML, quote a string that starts with
  one of ` + "`@ * & ! % [ {`" + ` or holds ` + "`: `" + `, ` + "` #`" + ` (or, in ` + "`[…]`" + `, ` + "`?`" + `): ` + "`mesh_key: \"@/etc/switchyard/gossip.key\"`" + `.
- **int**, **bool**: a number; ` + "`true`" + ` or ` + "`false`" + `.
- **duration**: a string such as ` + "`\"10s\"`, `\"5m\"`, `\"1h30m\"`" + `; a bare number has no unit and is refused.
- **list**: a list of strings, or one comma-separated string as on the command line; ` + "`\"\"`" + ` or ` + "`[]`" + ` is
  the empty list (it turns a default off).
- A key with no value (` + "`null`" + `) leaves the default.
- The secrets whose description says ` + "`@FILE`" + ` may be given as ` + "`@/path/to/file`" + `: the node reads them from
  the file. ` + "`switchyard config print`" + ` shows secrets as ` + "`(hidden)`" + `.

A file's unknown keys, repeated keys and values of the wrong type are errors, reported with their line
(` + "`config.yaml:4: unknown key \"listn\" (did you mean \"listen\"?)`" + `), as are values that fail a check
(` + "`config.yaml:12: replicas: must be 1 (no copy) or 2 (…), got 3`" + `); a bad environment variable or flag is
reported by name. ` + "`switchyard config check FILE`" + ` reports every problem without starting a node;
` + "`switchyard config print [FLAGS]`" + ` prints the configuration a start with FLAGS would run, as YAML.

## Example

` + "```yaml\n" + configExample + "```" + `

with the API key kept out of the file:

` + "```sh" + `
` + envPrefix + `API_KEY=$(cat /run/secrets/api-key) switchyard --config /etc/switchyard/node.yaml
` + "```" + `

## Options

| key | flag | environment | type | default | description |
|---|---|---|---|---|---|
`)
	for i := range optionTable {
		op := &optionTable[i]
		flags := "`--" + op.flagName() + "`"
		for _, a := range op.Alias {
			flags += ", `--" + a + "`"
		}
		def := op.DefaultDoc
		if def == "" {
			def = op.Value.format(op.Value.def())
			if def == "" {
				def = "empty"
			} else {
				def = "`" + def + "`"
			}
		}
		help := op.Help
		if op.Secret && strings.Contains(help, "@FILE") {
			help = strings.Replace(help, "@FILE", "`@FILE`", 1)
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s | %s |\n", op.Key, flags, op.envName(), op.Value.typeName(), cell(def), cell(help))
	}
	return b.String()
}

// cell escapes a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// runConfigCmd is runConfig with the process's environment.
func runConfigCmd(args []string, stdout, stderr io.Writer) error {
	return runConfig(args, os.Environ, stdout, stderr)
}
