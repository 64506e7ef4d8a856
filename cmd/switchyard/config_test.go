package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/signaling"
)

// testOptions is optionTable with two options in sections whose values
// land in the variables below (in place of the real ones of those keys).
func testOptions(rate *int, secrets *[]string) optionSet {
	var set optionSet
	for _, o := range optionTable {
		if o.Key != "limits.publish_rate" && o.Key != "auth.hmac_secrets" {
			set = append(set, o)
		}
	}
	return append(set,
		opt{Key: "limits.publish_rate", Alias: []string{"publish-rate"}, Value: bind(intKind, 10, func(*options) *int { return rate }, notNegative),
			Help: "publications a second a connection may make"},
		opt{Key: "auth.hmac_secrets", Value: bind(listKind, nil, func(*options) *[]string { return secrets }), Secret: true,
			Help: "HMAC `secrets` for tokens"},
	)
}

// loadCase is one load: files written to a temporary directory ($DIR in
// args and env), then args and env.
type loadCase struct {
	name  string
	files map[string]string
	env   []string
	args  []string
	check func(t *testing.T, o options, rate int, secrets []string)
	errs  []string // each must be a line of the error; none: no error
}

func runLoadCase(t *testing.T, c loadCase) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range c.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	expand := func(l []string) []string {
		out := make([]string, len(l))
		for i, s := range l {
			out[i] = strings.ReplaceAll(s, "$DIR", dir)
		}
		return out
	}
	var rate int
	var secrets []string
	o, err := testOptions(&rate, &secrets).load(expand(c.args), func() []string { return expand(c.env) }, io.Discard)
	if len(c.errs) == 0 {
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	} else {
		if err == nil {
			t.Fatalf("%s: accepted, want %q", c.name, c.errs)
		}
		lines := strings.Split(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""), "\n")
		for _, want := range c.errs {
			found := false
			for _, l := range lines {
				found = found || l == want
			}
			if !found {
				t.Errorf("%s: no error line %q in:\n%s", c.name, want, strings.Join(lines, "\n"))
			}
		}
	}
	if c.check != nil {
		c.check(t, o, rate, secrets)
	}
}

func TestConfigLoad(t *testing.T) {
	cases := []loadCase{
		{
			name: "yaml file",
			files: map[string]string{"c.yaml": `# a node behind a proxy
listen: ""
http: 127.0.0.1:0
api_key: k
allowed_origins:
  - https://a.example
  - https://b.example
history: chat:*=5000/5m, news=10
replicas: 1
batch_udp_writes: true
ping_interval: 5s
turn_ttl: 1h30m
max_frame_size: 1048576
ice_servers:
  - stun:stun.example:3478
  - urls: [turn:turn.example:3478]
    username: u
    credential: p
`},
			args: []string{"--config", "$DIR/c.yaml"},
			check: func(t *testing.T, o options, _ int, _ []string) {
				want := []edge.HistoryRule{{Channels: "chat:*", Size: 5000, TTL: 5 * time.Minute}, {Channels: "news", Size: 10}}
				ice := []signaling.ICEServer{{URLs: []string{"stun:stun.example:3478"}}, {URLs: []string{"turn:turn.example:3478"}, Username: "u", Credential: "p"}}
				if o.listen != "" || o.http != "127.0.0.1:0" || o.apiKey != "k" || !reflect.DeepEqual(o.allowedOrigins, []string{"https://a.example", "https://b.example"}) ||
					!reflect.DeepEqual(o.history, want) || o.replicas != 1 || !o.batchUDP || o.pingInterval != 5*time.Second ||
					o.turnTTL != 90*time.Minute || o.maxFrameSize != 1<<20 || !reflect.DeepEqual(o.iceServers, ice) {
					t.Errorf("options %+v", o)
				}
			},
		},
		{
			name:  "json file, as configs have been",
			files: map[string]string{"c.json": `{"listen": "", "http": "127.0.0.1:0", "api_key": "k", "region": "eu", "ping_interval": "5s", "public_urls": ["https://rt.example.com"], "join": "a:1, b:2", "ice_servers": "stun:a,turn:b", "mesh_bind": "127.0.0.1:0", "mesh_tls": "/m"}`},
			args:  []string{"--config", "$DIR/c.json"},
			check: func(t *testing.T, o options, _ int, _ []string) {
				if o.listen != "" || o.http != "127.0.0.1:0" || o.region != "eu" || o.pingInterval != 5*time.Second || o.publicURLs[0] != "https://rt.example.com" ||
					!reflect.DeepEqual(o.join, []string{"a:1", "b:2"}) || len(o.iceServers) != 2 || o.iceServers[1].URLs[0] != "turn:b" {
					t.Errorf("options %+v", o)
				}
			},
		},
		{
			name:  "a file of another name is JSON if it starts with {",
			files: map[string]string{"node.conf": `{"region": "eu"}`, "other.conf": "region: us\n"},
			args:  []string{"--config", "$DIR/node.conf"},
			check: func(t *testing.T, o options, _ int, _ []string) {
				if o.region != "eu" {
					t.Errorf("region %q", o.region)
				}
			},
		},
		{
			name:  "env over file",
			files: map[string]string{"c.yaml": "replicas: 1\nregion: eu\nmesh_bind: 127.0.0.1:7000\nmesh_tls: /a\n"},
			env:   []string{"SWITCHYARD_REPLICAS=2", "SWITCHYARD_MESH_BIND=127.0.0.1:7001", "SWITCHYARD_API_KEY=from-env", "SWITCHYARD_REQUIRE_BROWSER=1", "PATH=/bin"},
			args:  []string{"--config", "$DIR/c.yaml"},
			check: func(t *testing.T, o options, _ int, _ []string) {
				if o.replicas != 2 || o.region != "eu" || o.meshBind != "127.0.0.1:7001" || o.meshTLS != "/a" || o.apiKey != "from-env" {
					t.Errorf("options %+v", o)
				}
			},
		},
		{
			name:  "flag over env over file",
			files: map[string]string{"c.yaml": "api_key: file\nlog_level: debug\n"},
			env:   []string{"SWITCHYARD_API_KEY=env", "SWITCHYARD_LOG_LEVEL=warn", "SWITCHYARD_HTTP="},
			args:  []string{"--config", "$DIR/c.yaml", "--api-key", "flag"},
			check: func(t *testing.T, o options, _ int, _ []string) {
				if o.apiKey != "flag" || o.logLevel != "warn" || o.http != "" {
					t.Errorf("options %+v", o)
				}
			},
		},
		{
			name:  "SWITCHYARD_CONFIG names the file; --config wins",
			files: map[string]string{"a.yaml": "region: a\n", "b.yaml": "region: b\n"},
			env:   []string{"SWITCHYARD_CONFIG=$DIR/a.yaml"},
			args:  []string{"--config=$DIR/b.yaml"},
			check: func(t *testing.T, o options, _ int, _ []string) {
				if o.region != "b" {
					t.Errorf("region %q", o.region)
				}
			},
		},
		{
			name:  "nested section",
			files: map[string]string{"c.yaml": "limits:\n  publish_rate: 5\nauth:\n  hmac_secrets: [a, b]\n"},
			args:  []string{"--config", "$DIR/c.yaml"},
			check: func(t *testing.T, _ options, rate int, secrets []string) {
				if rate != 5 || !reflect.DeepEqual(secrets, []string{"a", "b"}) {
					t.Errorf("rate %d, secrets %q", rate, secrets)
				}
			},
		},
		{
			name:  "dotted key in the file",
			files: map[string]string{"c.json": `{"limits.publish_rate": 6}`},
			args:  []string{"--config", "$DIR/c.json"},
			check: func(t *testing.T, _ options, rate int, _ []string) {
				if rate != 6 {
					t.Errorf("rate %d", rate)
				}
			},
		},
		{
			name:  "nested key from env",
			files: map[string]string{"c.yaml": "limits: {publish_rate: 5}\n"},
			env:   []string{"SWITCHYARD_LIMITS_PUBLISH_RATE=7", "SWITCHYARD_AUTH_HMAC_SECRETS=x,y"},
			args:  []string{"--config", "$DIR/c.yaml"},
			check: func(t *testing.T, _ options, rate int, secrets []string) {
				if rate != 7 || !reflect.DeepEqual(secrets, []string{"x", "y"}) {
					t.Errorf("rate %d, secrets %q", rate, secrets)
				}
			},
		},
		{
			name: "nested key from a flag; an alias too, the last given wins",
			env:  []string{"SWITCHYARD_LIMITS_PUBLISH_RATE=7"},
			args: []string{"--limits.publish-rate", "8", "--publish-rate=9"},
			check: func(t *testing.T, _ options, rate int, _ []string) {
				if rate != 9 {
					t.Errorf("rate %d", rate)
				}
			},
		},
		{
			name:  "lists both ways; empty turns a default off",
			files: map[string]string{"c.yaml": "volatile_channels: \"game:*, fx:*\"\npresence_channels: []\nhistory: \"\"\njoin: []\n"},
			env:   []string{"SWITCHYARD_ALLOWED_ORIGINS=https://a.example,https://b.example"},
			args:  []string{"--config", "$DIR/c.yaml", "--public-url", ""},
			check: func(t *testing.T, o options, _ int, _ []string) {
				if !reflect.DeepEqual(o.volatile, []string{"game:*", "fx:*"}) || len(o.presence) != 0 || len(o.history) != 0 ||
					len(o.allowedOrigins) != 2 || len(o.publicURLs) != 0 {
					t.Errorf("options %+v", o)
				}
			},
		},
		{
			name:  "a key with no value leaves the default",
			files: map[string]string{"c.yaml": "listen:\nreplicas: ~\nlimits:\n"},
			args:  []string{"--config", "$DIR/c.yaml"},
			check: func(t *testing.T, o options, rate int, _ []string) {
				if o.listen != "127.0.0.1:4433" || o.replicas != 2 || rate != 10 {
					t.Errorf("options %+v, rate %d", o, rate)
				}
			},
		},
		{
			name:  "@FILE secrets pass through to where they are read",
			files: map[string]string{"gossip.key": "AAAAAAAAAAAAAAAAAAAAAA==\n", "c.yaml": "mesh_bind: 127.0.0.1:0\nmesh_tls: /m\nmesh_key: \"@$DIR/gossip.key\"\n"},
			args:  []string{"--config", "$DIR/c.yaml", "--turn-secret", "@$DIR/gossip.key"},
			check: func(t *testing.T, o options, _ int, _ []string) {
				if !strings.HasPrefix(o.meshKey, "@") || !strings.HasPrefix(o.turnSecret, "@") {
					t.Errorf("options %+v", o)
				}
			},
		},
		{
			name:  "durations",
			files: map[string]string{"c.yaml": "ping_interval: 1m\npong_timeout: \"15s\"\nsignal_grace: 0s\n"},
			args:  []string{"--config", "$DIR/c.yaml", "--turn-ttl", "2h"},
			check: func(t *testing.T, o options, _ int, _ []string) {
				if o.pingInterval != time.Minute || o.pongTimeout != 15*time.Second || o.signalGrace != 0 || o.turnTTL != 2*time.Hour {
					t.Errorf("options %+v", o)
				}
			},
		},
		{
			name:  "unknown keys, with their line",
			files: map[string]string{"c.yaml": "http: 127.0.0.1:0\n\n# comment\nlistn: x\napi-key: k\nlimits:\n  publish_rat: 1\nfoo: {}\n"},
			args:  []string{"--config", "$DIR/c.yaml"},
			errs: []string{
				`c.yaml:4: unknown key "listn" (did you mean "listen"?)`,
				`c.yaml:5: unknown key "api-key" (did you mean "api_key"?)`,
				`c.yaml:7: unknown key "limits.publish_rat" (did you mean "limits.publish_rate"?)`,
				`c.yaml:8: unknown key "foo"`,
			},
		},
		{
			name:  "unknown key in JSON, with its line",
			files: map[string]string{"c.json": "{\n  \"http\": \"127.0.0.1:0\",\n  \"lisen\": \"x\"\n}\n"},
			args:  []string{"--config", "$DIR/c.json"},
			errs:  []string{`c.json:3: unknown key "lisen" (did you mean "listen"?)`},
		},
		{
			name: "wrong types, with their line",
			files: map[string]string{"c.yaml": `replicas: lots
listen: [a, b]
batch_udp_writes: "yes"
ping_interval: 10
limits: 3
history:
  - chat=1
  - [x]
ice_servers:
  - stun:a
  - urls: [turn:b]
    user: x
`},
			args: []string{"--config", "$DIR/c.yaml"},
			errs: []string{
				`c.yaml:1: replicas: want an integer, got "lots"`,
				`c.yaml:2: listen: want a string, got a list`,
				`c.yaml:3: batch_udp_writes: want true or false, got "yes"`,
				`c.yaml:4: ping_interval: want a duration such as "10s", got the number 10`,
				`c.yaml:5: limits: want a section (a map of its options), got the number 3`,
				`c.yaml:8: history: entry 2: want a string, got a list`,
				`c.yaml:11: ice_servers: entry 2: unknown key "user" (want urls, username, credential)`,
			},
		},
		{
			name:  "wrong type in JSON, with its line",
			files: map[string]string{"c.json": "{\"http\": \"127.0.0.1:0\",\n\"join\": 5}"},
			args:  []string{"--config", "$DIR/c.json"},
			errs:  []string{`c.json:2: join: want a list or a comma-separated string, got the number 5`},
		},
		{
			name:  "checks name the field, where it was given",
			files: map[string]string{"c.yaml": "http: 127.0.0.1:0\nreplicas: 3\nlog_level: loud\nmesh_tls: /m\nhistory: [chat=x]\nturn_relay_ip: 0.0.0.0\n"},
			env:   []string{"SWITCHYARD_ROOM_SIZE=0", "SWITCHYARD_MAX_FRAME_SIZE=zero"},
			args:  []string{"--config", "$DIR/c.yaml", "--mesh-profile", "mars", "--listen", "nonsense"},
			errs: []string{
				`c.yaml:2: replicas: must be 1 (no copy) or 2 (a copy at each channel's successor), got 3`,
				`c.yaml:3: log_level: want debug, info, warn or error, got "loud"`,
				`c.yaml:4: mesh_tls: needs mesh_bind, the node's gossip address`,
				`c.yaml:5: history: entry 1: rule "chat=x": size "x" is not a count`,
				`c.yaml:6: turn_relay_ip: want the IP address peers reach this node at, got "0.0.0.0"`,
				`SWITCHYARD_ROOM_SIZE: must be positive, got 0`,
				`SWITCHYARD_MAX_FRAME_SIZE: want an integer, got "zero"`,
				`--mesh-profile: want lan or wan, got "mars"`,
				`--listen: want host:port, got "nonsense"`,
			},
		},
		{
			name: "checks across options, from flags",
			args: []string{"--listen", "", "--http", "", "--cert", "c.pem", "--join", "a:1", "--mesh-key", "k"},
			errs: []string{
				`--http: empty, and so is --listen: nothing to serve`,
				`--cert: needs --key too`,
				`--join: needs --mesh-bind, the node's gossip address`,
				`--mesh-key: needs --mesh-bind, the node's gossip address`,
			},
		},
		{
			name: "mesh-bind needs mesh-tls",
			env:  []string{"SWITCHYARD_MESH_BIND=127.0.0.1:0"},
			errs: []string{"SWITCHYARD_MESH_BIND: needs SWITCHYARD_MESH_TLS DIR (create it with `switchyard certs init`)"},
		},
		{
			name:  "a key given twice",
			files: map[string]string{"c.json": "{\"region\": \"a\",\n\"region\": \"b\"}", "c.yaml": "limits:\n  publish_rate: 1\nlimits.publish_rate: 2\n"},
			args:  []string{"--config", "$DIR/c.json"},
			errs:  []string{`c.json:2: region: given again (first on line 1)`},
		},
		{
			name:  "a key given twice, nested and dotted",
			files: map[string]string{"c.yaml": "limits:\n  publish_rate: 1\nlimits.publish_rate: 2\n"},
			args:  []string{"--config", "$DIR/c.yaml"},
			errs:  []string{`c.yaml:3: limits.publish_rate: given again (first on line 2)`},
		},
		{
			name:  "YAML syntax, with its line",
			files: map[string]string{"c.yaml": "http: 127.0.0.1:0\nlisten: [a\nregion: x\n"},
			args:  []string{"--config", "$DIR/c.yaml"},
			errs:  []string{`c.yaml:2: did not find expected ',' or ']'`},
		},
		{
			name:  "JSON syntax, with its line",
			files: map[string]string{"c.json": "{\n\"http\": \"127.0.0.1:0\"\n\"region\": \"x\"}"},
			args:  []string{"--config", "$DIR/c.json"},
			errs:  []string{`c.json:3: invalid character '"' after object key:value pair`},
		},
		{
			name:  "not a map",
			files: map[string]string{"c.yaml": "- listen\n"},
			args:  []string{"--config", "$DIR/c.yaml"},
			errs:  []string{`c.yaml:1: want a map of options at the top, got a list`},
		},
		{
			name: "missing file",
			args: []string{"--config", "$DIR/none.yaml"},
			errs: []string{"config: open none.yaml: no such file or directory"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runLoadCase(t, c) })
	}
}

// The example of docs/config.md loads.
func TestConfigExample(t *testing.T) {
	runLoadCase(t, loadCase{
		name:  "example",
		files: map[string]string{"node.yaml": configExample},
		args:  []string{"--config", "$DIR/node.yaml"},
		check: func(t *testing.T, o options, _ int, _ []string) {
			if o.listen != "0.0.0.0:443" || o.http != "" || len(o.history) != 2 || len(o.iceServers) != 2 || len(o.join) != 2 || o.meshKey != "@/etc/switchyard/mesh/gossip.key" {
				t.Errorf("options %+v", o)
			}
		},
	})
}

// With nothing given, the options are today's dev defaults.
func TestConfigDefaults(t *testing.T) {
	o, err := loadOptions(nil, func() []string { return nil }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := options{
		listen: "127.0.0.1:4433", http: "127.0.0.1:8080",
		volatile: []string{"game:*"}, presence: []string{"chat", "chat:*"},
		history:  []edge.HistoryRule{{Channels: "chat", Size: 100, TTL: 5 * time.Minute}, {Channels: "chat:*", Size: 100, TTL: 5 * time.Minute}},
		replicas: 2, logLevel: "info", meshProfile: "lan",
		maxFrameSize: 64 << 10, pingInterval: 25 * time.Second, pongTimeout: 10 * time.Second, // the protocol's defaults
		turnTTL: 24 * time.Hour, roomSize: 50, signalGrace: 10 * time.Second,
		logFormat: "text", drainWindow: time.Second, connectRate: 2000, connectBurst: 1000, httpConnsPerIP: 256, maxSubscriptions: 128, acmeCacheDir: "switchyard-acme",
		auth: authOptions{jwksRefresh: 5 * time.Minute, leeway: 5 * time.Second},
	}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("defaults\n got %+v\nwant %+v", o, want)
	}
}

func TestOptionTable(t *testing.T) {
	keyRE := regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)
	flags := map[string]string{"config": "--config", "h": "-h", "help": "-help"}
	envs := map[string]string{envConfig: "--config"}
	set := testOptions(new(int), new([]string))
	for i := range set {
		op := &set[i]
		if !keyRE.MatchString(op.Key) {
			t.Errorf("%s: want lower_case keys, dotted for sections", op.Key)
		}
		if set.isSection(op.Key) {
			t.Errorf("%s: both an option and a section", op.Key)
		}
		for _, f := range append([]string{op.flagName()}, op.Alias...) {
			if other, dup := flags[f]; dup {
				t.Errorf("%s: flag --%s is %s's too", op.Key, f, other)
			}
			flags[f] = op.Key
		}
		if other, dup := envs[op.envName()]; dup {
			t.Errorf("%s: %s is %s's too", op.Key, op.envName(), other)
		}
		envs[op.envName()] = op.Key
		if op.Help == "" {
			t.Errorf("%s: no help", op.Key)
		}
		def := op.Value.def()
		if err := op.Value.check(def); err != nil {
			t.Errorf("%s: default fails its check: %v", op.Key, err)
		}
		// The default, written as a flag would take it, reads back the same.
		back, err := op.Value.decode(op.Value.format(def))
		if err != nil || (!reflect.DeepEqual(back, def) && !reflect.ValueOf(def).IsZero()) {
			t.Errorf("%s: default %v reads back as %v, %v", op.Key, def, back, err)
		}
	}
}

// `config print` writes a file that loads back to the same options.
func TestConfigPrintRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.yaml")
	os.WriteFile(in, []byte("http: 127.0.0.1:0\nhistory: [chat:*=5000/5m, x=0]\nice_servers: [stun:a, {urls: [turn:b, turns:c], username: u}]\nsignal_grace: 1m30s\njoin: a:1\nmesh_bind: 127.0.0.1:0\nmesh_tls: /m\nmesh_key: \"@/k\"\n"), 0o600)
	var out bytes.Buffer
	if err := runConfig([]string{"print", "--config", in, "--api-key", "s3cret"}, func() []string { return nil }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "api_key: (hidden)") {
		t.Fatalf("the secret is shown:\n%s", out.String())
	}
	printed := filepath.Join(dir, "printed.yaml")
	os.WriteFile(printed, out.Bytes(), 0o600)
	o1, err1 := loadOptions([]string{"--config", in, "--api-key", "(hidden)"}, func() []string { return nil }, io.Discard)
	o2, err2 := loadOptions([]string{"--config", printed}, func() []string { return nil }, io.Discard)
	if err1 != nil || err2 != nil {
		t.Fatalf("%v, %v\n%s", err1, err2, out.String())
	}
	// An empty list prints as [] and reads back as an empty, not a nil, one.
	p1, _ := optionTable.yaml(&o1)
	p2, _ := optionTable.yaml(&o2)
	if !bytes.Equal(p1, p2) || !reflect.DeepEqual(o1.history, o2.history) || !reflect.DeepEqual(o1.iceServers, o2.iceServers) {
		t.Fatalf("printed\n%s\nloads as %+v\nnot %+v", out.String(), o2, o1)
	}
}

// Options in sections print nested; a list of secrets is hidden entry by
// entry.
func TestConfigPrintSections(t *testing.T) {
	rate, secrets := 3, []string{"k1", "@/run/k2"}
	b, err := testOptions(&rate, &secrets).yaml(&options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nlimits:\n", "\n  publish_rate: 3\n", "\nauth:\n", "\n  hmac_secrets:\n    - (hidden)\n    - '@/run/k2'\n"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("printed\n%s\nwant it to hold\n%s", b, want)
		}
	}
}

func TestConfigPrintHidesCredentials(t *testing.T) {
	o := options{iceServers: []signaling.ICEServer{{URLs: []string{"stun:a"}}, {URLs: []string{"turn:b"}, Username: "u", Credential: "pw"}}}
	b, err := optionTable.yaml(&o)
	if err != nil || bytes.Contains(b, []byte("pw")) || !bytes.Contains(b, []byte("credential: (hidden)")) {
		t.Fatalf("%v\n%s", err, b)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("listen: \"\"\nhttp: 127.0.0.1:8080\nhistory: chat:*=5000/5m\n"), 0o600)
	os.WriteFile(bad, []byte("http: 127.0.0.1:8080\nlistn: x\nreplicas: 3\n"), 0o600)
	noEnv := func() []string { return nil }

	var out, errOut bytes.Buffer
	if err := runConfig([]string{"check", good}, noEnv, &out, &errOut); err != nil || out.String() != "ok\n" {
		t.Fatalf("good: %v, %q, %q", err, out.String(), errOut.String())
	}
	out.Reset()
	err := runConfig([]string{"check", bad}, noEnv, &out, &errOut)
	want := bad + ":2: unknown key \"listn\" (did you mean \"listen\"?)\n" + bad + ":3: replicas: must be 1 (no copy) or 2 (a copy at each channel's successor), got 3\n"
	if err == nil || out.Len() != 0 || errOut.String() != want || !strings.Contains(err.Error(), "2 problems") {
		t.Fatalf("bad: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
	// The environment counts, as it would for the node.
	errOut.Reset()
	if err := runConfig([]string{"check", good}, func() []string { return []string{"SWITCHYARD_REPLICAS=0"} }, &out, &errOut); err == nil || !strings.Contains(errOut.String(), "SWITCHYARD_REPLICAS: must be 1") {
		t.Fatalf("env: %v, %q", err, errOut.String())
	}
	for _, args := range [][]string{{}, {"check"}, {"check", good, bad}, {"nope"}, {"doc", "x"}, {"print", "--nope"}} {
		if err := runConfig(args, noEnv, io.Discard, io.Discard); err == nil {
			t.Errorf("config %q succeeded", args)
		}
	}
}

// The binary's exit status: 0 and "ok", or 1 and every problem.
func TestConfigCheckExitCode(t *testing.T) {
	if args := os.Getenv("SWITCHYARD_TEST_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"switchyard"}, strings.Split(args, "\n")...)
		main()
		return
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(good, []byte(`{"region": "eu"}`), 0o600)
	os.WriteFile(bad, []byte("{\n\"replicas\": 3}"), 0o600)
	for _, c := range []struct {
		file   string
		code   int
		stdout string
		stderr string
	}{
		{good, 0, "ok\n", ""},
		{bad, 1, "", bad + ":2: replicas: must be 1 (no copy) or 2 (a copy at each channel's successor), got 3\nswitchyard: config check: " + bad + ": 1 problem\n"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConfigCheckExitCode$")
		cmd.Env = append(os.Environ(), "SWITCHYARD_TEST_MAIN_ARGS=config\ncheck\n"+c.file)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		// A child that returns from main goes on to print the test's PASS.
		got := strings.TrimSuffix(stdout.String(), "PASS\n")
		if code != c.code || got != c.stdout || stderr.String() != c.stderr {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", filepath.Base(c.file), code, stdout.String(), stderr.String())
		}
	}
}

// docs/config.md is what `switchyard config doc` writes.
func TestConfigDocUpToDate(t *testing.T) {
	have, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatalf("%v: create it with `%s`", err, configDocCommand)
	}
	if string(have) != configDoc() {
		t.Fatalf("docs/config.md differs from the option table: regenerate it with `%s` (from the repository's root)", configDocCommand)
	}
}

func TestConfigSubcommandThroughRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "doc"}, &out, io.Discard); err != nil || out.String() != configDoc() {
		t.Fatalf("config doc: %v", err)
	}
}

// FuzzConfigLoad: any file, YAML or JSON, loads or is refused with
// configErrors, never a panic; what loads prints and loads back the same.
func FuzzConfigLoad(f *testing.F) {
	seeds := []string{
		"listen: \"\"\nhttp: 127.0.0.1:0\napi_key: k\nhistory: [chat:*=100/5m]\nping_interval: 5s\n",
		"ice_servers:\n  - stun:a\n  - {urls: [turn:b], username: u, credential: p}\n",
		"mesh_bind: 127.0.0.1:0\njoin: a:1,b:2\nmesh_tls: x\nlimits: {publish_rate: 3}\n",
		"a: &x [1, 2]\nb: *x\n",
		"<<: {listen: x}\n",
		"--- \nlisten: a\n---\nhttp: b\n",
		`{"listen": "", "http": "127.0.0.1:0", "volatile_channels": "", "max_frame_size": 1e3}`,
		`{"join": ["a:1"], "replicas": 1.5, "region": null}`,
		`[`, `{"a": {"b": [[[[]]]]}}`, "",
	}
	for _, s := range seeds {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	dir := f.TempDir()
	noEnv := func() []string { return nil }
	f.Fuzz(func(t *testing.T, data []byte, asYAML bool) {
		p := filepath.Join(dir, "c.json")
		if asYAML {
			p = filepath.Join(dir, "c.yaml")
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := optionTable.load([]string{"--config", p}, noEnv, io.Discard)
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				if _, ok := e.(*configError); !ok {
					t.Fatalf("%T %v", e, e)
				}
			}
			return
		}
		printed, err := optionTable.yaml(&o)
		if err != nil {
			t.Fatal(err)
		}
		back := filepath.Join(dir, "back.yaml")
		os.WriteFile(back, printed, 0o600)
		o2, err := optionTable.load([]string{"--config", back}, noEnv, io.Discard)
		if err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, printed)
		}
		again, _ := optionTable.yaml(&o2)
		if !bytes.Equal(printed, again) {
			t.Fatalf("printed\n%s\nprints back as\n%s", printed, again)
		}
	})
}
