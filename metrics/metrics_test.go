package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/mesh"
	"github.com/switchyard/switchyard/metrics"
	"github.com/switchyard/switchyard/protocols"
)

// TestMain checks for leaked goroutines, giving memberlist's (which end on
// their own timers after a shutdown) a few seconds.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond) // grace for memberlist's goroutines
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// local hands the mesh's calls to the node, which is built after the
// cluster: it has every method of *edge.Node (mesh.Local, mesh.Keeper,
// mesh.PresenceKeeper), and is set before the cluster starts.
type local struct{ *edge.Node }

type meshNode struct {
	name string
	cl   *mesh.Cluster
	node *edge.Node
	http string // http://127.0.0.1:port
}

// startMesh runs n edge nodes joined by real mesh clusters on loopback,
// each serving the mesh's metrics at /metrics.
func startMesh(t *testing.T, n int) []*meshNode {
	t.Helper()
	ca, err := certs.NewCA("metrics test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*meshNode
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		certPEM, keyPEM, err := ca.Issue(name, []string{"127.0.0.1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg, err := certs.MeshTLS(ca.CertPEM(), certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		var join []string
		if i > 0 {
			join = []string{nodes[0].cl.Addr()}
		}
		lp := &local{}
		cl, err := mesh.New(mesh.Config{
			Name: name, Region: "eu", Bind: "127.0.0.1:0", ForwardBind: "127.0.0.1:0", Join: join, TLS: tlsCfg, Logger: logger,
		}, lp)
		if err != nil {
			t.Fatal(err)
		}
		node, err := edge.New(edge.Config{
			Name: name, Region: "eu", HTTP: "127.0.0.1:0", APIKey: "key", Cluster: cl, Logger: logger,
			History:           []edge.HistoryRule{{Channels: "*", Size: 100}},
			MetricsCollectors: []prometheus.Collector{metrics.Mesh(cl)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := node.Start(); err != nil {
			t.Fatal(err)
		}
		lp.Node = node
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := node.Shutdown(ctx); err != nil {
				t.Errorf("%s: node shutdown: %v", name, err)
			}
			if err := cl.Shutdown(ctx); err != nil {
				t.Errorf("%s: mesh shutdown: %v", name, err)
			}
		})
		nodes = append(nodes, &meshNode{name: name, cl: cl, node: node, http: "http://" + node.Addrs().HTTP.String()})
	}
	waitFor(t, 20*time.Second, "the mesh to converge", func() bool {
		for _, mn := range nodes {
			if len(mn.cl.Members()) != n {
				return false
			}
		}
		return true
	})
	return nodes
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrape reads url's /metrics over HTTP.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value (a histogram's count) of the series of name
// with the given labels ("k=v"), or -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	fam := fams[name]
	if fam == nil {
		return -1
	}
next:
	for _, m := range fam.Metric {
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMeshMetrics publishes through a node that does not own the channel
// to a subscriber on a third node, and reads the mesh's metrics.
func TestMeshMetrics(t *testing.T) {
	nodes := startMesh(t, 3)
	channel := ""
	for i := 0; channel == ""; i++ {
		if c := fmt.Sprint("room-", i); nodes[0].cl.Owner(c) == "n0" {
			channel = c
		}
	}
	owner, publisher, subscriber := nodes[0], nodes[1], nodes[2]

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sc, err := client.Dial(ctx, "ws://"+subscriber.node.Addrs().HTTP.String()+"/ws", client.Options{Transport: protocols.WebSocket})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sub, err := sc.Subscribe(ctx, channel)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := client.Dial(ctx, "ws://"+publisher.node.Addrs().HTTP.String()+"/ws", client.Options{Transport: protocols.WebSocket})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const pubs = 10
	for i := range pubs {
		if _, err := pc.Publish(ctx, channel, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for range pubs {
		select {
		case <-sub.Messages():
		case <-ctx.Done():
			t.Fatal("messages did not arrive")
		}
	}

	for _, mn := range nodes {
		var m map[string]*dto.MetricFamily
		waitFor(t, 5*time.Second, mn.name+"'s links and probes", func() bool {
			m = scrape(t, mn.http)
			return value(m, "switchyard_mesh_links", "direction=out", "state=up") == 2 &&
				value(m, "switchyard_mesh_probe_rtt_seconds") > 0
		})
		if v := value(m, "switchyard_mesh_members", "region=eu", "state=alive"); v != 3 {
			t.Errorf("%s: members alive in eu: %v, want 3", mn.name, v)
		}
		if v := value(m, "switchyard_mesh_health_score"); v != 0 {
			t.Errorf("%s: health score %v", mn.name, v)
		}
		if v := value(m, "switchyard_mesh_link_overflows_total"); v != 0 {
			t.Errorf("%s: %v link overflows", mn.name, v)
		}
		if v := value(m, "go_goroutines"); v <= 0 {
			t.Errorf("%s: go_goroutines %v", mn.name, v)
		}
	}
	m := scrape(t, owner.http)
	if v := value(m, "switchyard_mesh_forwarded_total", "kind=reliable"); v < pubs {
		t.Errorf("owner forwarded %v publications, want at least %d", v, pubs)
	}
	if v := value(m, "switchyard_mesh_link_sent_messages_total"); v < pubs {
		t.Errorf("owner wrote %v link messages, want at least %d", v, pubs)
	}
	if v := value(m, "switchyard_replicated_total"); v < pubs {
		t.Errorf("owner replicated %v publications, want at least %d", v, pubs)
	}
	m = scrape(t, subscriber.http)
	if v := value(m, "switchyard_mesh_received_total"); v < pubs {
		t.Errorf("subscriber's node received %v publications, want at least %d", v, pubs)
	}
	if v := value(m, "switchyard_deliveries_total", "transport=websocket"); v < pubs {
		t.Errorf("subscriber's node delivered %v, want at least %d", v, pubs)
	}
	if v := value(m, "switchyard_mesh_deliver_delay_seconds"); v < pubs {
		t.Errorf("subscriber's node timed %v deliveries from the owner, want at least %d", v, pubs)
	}
	m = scrape(t, publisher.http)
	if v := value(m, "switchyard_mesh_request_duration_seconds"); v < pubs {
		t.Errorf("publisher's node timed %v requests, want at least %d (its publishes)", v, pubs)
	}
}
