package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
)

// publishKeyed publishes through p's HTTP API with an idempotency key and
// returns the position, or an error for anything but 200.
func (p *proc) publishKeyed(channel, data, key string) (client.Position, error) {
	body := fmt.Sprintf(`{"channel":%q,"data":%q,"idempotency_key":%q}`, channel, data, key)
	req, _ := http.NewRequest("POST", p.http+"/api/publish", strings.NewReader(body))
	req.Header.Set("X-API-Key", devAPIKey)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return client.Position{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return client.Position{}, fmt.Errorf("publish on %s: %d %s", p.name, resp.StatusCode, raw)
	}
	var r struct {
		Epoch  string
		Offset uint64
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return client.Position{}, err
	}
	return client.Position{Epoch: r.Epoch, Offset: r.Offset}, nil
}

// publishUntilAcked retries a keyed publish (on p) until it is
// acknowledged: the retries of one key are applied once.
func (p *proc) publishUntilAcked(t *testing.T, channel, data, key string) client.Position {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pos, err := p.publishKeyed(channel, data, key)
		if err == nil {
			return pos
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s never acknowledged: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// owns reports whether p owns channel (its history API says so).
func (p *proc) owns(t *testing.T, channel string) bool {
	t.Helper()
	req, _ := http.NewRequest("GET", p.http+"/api/history?channel="+channel, nil)
	req.Header.Set("X-API-Key", devAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Owner bool }
	return json.NewDecoder(resp.Body).Decode(&h) == nil && resp.StatusCode == 200 && h.Owner
}

// startMesh is startCluster for the first `running` of names; the others
// get their certificates and can be started later with p.startAnother.
func startMesh(t *testing.T, region string, running int, names ...string) (procs []*proc, start func(name string) *proc) {
	t.Helper()
	return startMeshArgs(t, region, nil, running, names...)
}

// startMeshArgs is startMesh with more flags for every node.
func startMeshArgs(t *testing.T, region string, extra []string, running int, names ...string) (procs []*proc, start func(name string) *proc) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	meshDir := t.TempDir()
	if err := runCerts([]string{"init", "--dir", meshDir, "--nodes", strings.Join(names, ",")}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for i, name := range names[:running] {
		join := ""
		if i > 0 {
			join = procs[0].gossip
		}
		procs = append(procs, startProc(t, bin, name, region, meshDir, join, extra...))
	}
	for _, p := range procs {
		waitUntil(t, 10*time.Second, fmt.Sprintf("%s sees %d nodes", p.name, len(procs)), func() bool { return len(p.nodes(t)) == len(procs) })
	}
	seed := procs[0].gossip
	return procs, func(name string) *proc { return startProc(t, bin, name, region, meshDir, seed, extra...) }
}

// receiver checks a subscription's stream: one epoch, offsets one after
// another, the payloads in publication order.
type receiver struct {
	t     *testing.T
	sub   *client.Subscription
	epoch string
	last  uint64
	n     int
}

func (r *receiver) expect(data string) {
	r.t.Helper()
	select {
	case m := <-r.sub.Messages():
		if r.epoch == "" {
			r.epoch = m.Epoch
		}
		if m.Epoch != r.epoch || (r.last != 0 && m.Offset != r.last+1) || string(m.Data) != data {
			r.t.Fatalf("after %d messages (epoch %s offset %d): got %q at %s:%d, want %q next in the same epoch (resyncs %d)",
				r.n, r.epoch, r.last, m.Data, m.Epoch, m.Offset, data, r.sub.Resyncs())
		}
		r.last = m.Offset
		r.n++
	case <-time.After(20 * time.Second):
		r.t.Fatalf("after %d messages: %q never came (resyncs %d)", r.n, data, r.sub.Resyncs())
	}
}

// The owner of a channel is killed with SIGKILL while publications flow:
// the channel's successor continues the same epoch and offsets from its
// copy; a subscriber on a surviving node misses nothing that was
// acknowledged, gets nothing twice and never has to resync, and a publish
// retried with its key across the kill is applied once.
func TestOwnerKillKeepsTheEpoch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes; skipped with -short")
	}
	procs := startCluster(t, "eu", "a", "b", "c")
	a, b, c := procs[0], procs[1], procs[2]
	channel := ownedBy(t, a)
	sub, err := b.dial(t).Subscribe(context.Background(), channel)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, sub: sub}
	const total = 200
	var first, last client.Position
	for i := range total {
		pos := c.publishUntilAcked(t, channel, fmt.Sprint(i), fmt.Sprint("k", i))
		if i == 0 {
			first = pos
		}
		if pos.Epoch != first.Epoch || (i > 0 && pos.Offset != last.Offset+1) {
			t.Fatalf("publication %d acknowledged at %+v after %+v", i, pos, last)
		}
		last = pos
		r.expect(fmt.Sprint(i))
		if i == 60 {
			a.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	if sub.Resyncs() != 0 {
		t.Fatalf("%d resyncs", sub.Resyncs())
	}
	// The history survived with the epoch: a newcomer on c recovers from
	// a position before the kill.
	sub2, err := c.dial(t).Subscribe(context.Background(), channel, client.Since(client.Position{Epoch: first.Epoch, Offset: last.Offset - 50}))
	if err != nil {
		t.Fatal(err)
	}
	if !sub2.Recovered() {
		t.Fatalf("no recovery from %s:%d on the new owner", first.Epoch, last.Offset-50)
	}
	r2 := &receiver{t: t, sub: sub2, last: last.Offset - 50, epoch: first.Epoch}
	for i := total - 50; i < total; i++ {
		r2.expect(fmt.Sprint(i))
	}
}

// A node joins and another leaves (SIGTERM: it drains) while channels
// owned all over the cluster carry on: no channel changes epoch, and a
// subscriber sees every publication once, in order, without a resync.
func TestJoinAndLeaveKeepEpochs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs four processes; skipped with -short")
	}
	procs, start := startMesh(t, "eu", 3, "a", "b", "c", "d")
	a, b, c := procs[0], procs[1], procs[2]
	ctx := context.Background()
	cl := a.dial(t)
	var channels []string
	for i := range 40 {
		channels = append(channels, fmt.Sprint("chat:move-", i))
	}
	recv := map[string]*receiver{}
	for _, ch := range channels {
		sub, err := cl.Subscribe(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		recv[ch] = &receiver{t: t, sub: sub}
	}
	epochs := map[string]string{}
	round := func(pub *proc, label string) {
		t.Helper()
		for _, ch := range channels {
			pos := pub.publishUntilAcked(t, ch, label, label+ch)
			if e, ok := epochs[ch]; ok && e != pos.Epoch {
				t.Fatalf("%s: %s changed epoch %s → %s", label, ch, e, pos.Epoch)
			}
			epochs[ch] = pos.Epoch
			recv[ch].expect(label)
		}
	}
	round(c, "before")
	d := start("d")
	for _, p := range []*proc{a, b, c, d} {
		waitUntil(t, 10*time.Second, p.name+" sees 4 nodes", func() bool { return len(p.nodes(t)) == 4 })
	}
	moved := 0
	for _, ch := range channels {
		if d.owns(t, ch) {
			moved++
		}
	}
	if moved == 0 {
		t.Fatalf("none of %d channels moved to d", len(channels))
	}
	t.Logf("%d of %d channels moved to d", moved, len(channels))
	round(c, "after d joined")
	round(d, "published on d")
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	waitUntil(t, 20*time.Second, "a sees 3 nodes", func() bool { return len(a.nodes(t)) == 3 })
	round(c, "after b left")
	for ch, r := range recv {
		if r.sub.Resyncs() != 0 {
			t.Fatalf("%s: %d resyncs", ch, r.sub.Resyncs())
		}
	}
}

// presenceOf reads GET /api/presence on p: the sorted client ids.
func (p *proc) presenceOf(t *testing.T, channel string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", p.http+"/api/presence?channel="+channel, nil)
	req.Header.Set("X-API-Key", devAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Clients int
		Members []struct{ Client, User string }
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil || resp.StatusCode != 200 || body.Clients != len(body.Members) {
		return nil
	}
	var ids []string
	for _, m := range body.Members {
		ids = append(ids, m.Client+"/"+m.User)
	}
	return ids
}

// Presence agrees on every node after joins, leaves, a disconnect and the
// kill of the node that owned the channel (its members go, the new owner
// rebuilds the rest from the other nodes).
func TestPresenceAcrossTheMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes; skipped with -short")
	}
	procs := startCluster(t, "eu", "a", "b", "c")
	a, b, c := procs[0], procs[1], procs[2]
	channel := ownedBy(t, c)
	ctx := context.Background()
	type member struct {
		cl  *client.Client
		on  *proc
		key string
	}
	var members []member
	join := func(p *proc, user string, wt bool) member {
		t.Helper()
		opts := client.Options{User: user, Info: []byte(`{"on":"` + p.name + `"}`)}
		url := p.ws
		if wt {
			url, opts.CertHash = p.wt, p.certHash(t)
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cl, err := client.Dial(dctx, url, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		if _, err := cl.Subscribe(dctx, channel); err != nil {
			t.Fatal(err)
		}
		m := member{cl: cl, on: p, key: cl.SessionID() + "/" + user}
		members = append(members, m)
		return m
	}
	watcher, err := a.dial(t).Subscribe(ctx, channel, client.WithPresence())
	if err != nil {
		t.Fatal(err)
	}
	join(a, "ann", false)
	join(a, "al", true)
	b1 := join(b, "bea", false)
	join(b, "ben", true)
	join(c, "cid", false)
	join(c, "cy", true)
	agree := func(what string, want []member) {
		t.Helper()
		var keys []string
		for _, m := range want {
			keys = append(keys, m.key)
		}
		sort.Strings(keys)
		wantText := strings.Join(keys, ",")
		var got string
		waitUntil(t, 15*time.Second, what+": every node lists "+wantText, func() bool {
			for _, p := range []*proc{a, b, c} {
				if p.killed {
					continue
				}
				ids := p.presenceOf(t, channel)
				var mine []string
				for _, id := range ids {
					if !strings.HasSuffix(id, "/") { // the watcher has no user
						mine = append(mine, id)
					}
				}
				sort.Strings(mine)
				if got = strings.Join(mine, ","); got != wantText {
					return false
				}
			}
			return true
		})
	}
	agree("after the joins", members)
	joins := 0
	for joins < 6 {
		select {
		case e := <-watcher.Presence():
			if !e.Join {
				t.Fatalf("a leave before any left: %+v", e)
			}
			joins++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d join events of 6", joins)
		}
	}
	b1.cl.Close()
	left := func(who string) {
		t.Helper()
		select {
		case e := <-watcher.Presence():
			if e.Join || e.Member.Client+"/"+e.Member.User != who {
				t.Fatalf("event %+v, want %s leaving", e, who)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no leave event for %s", who)
		}
	}
	left(b1.key)
	members = slices.DeleteFunc(members, func(m member) bool { return m.key == b1.key })
	agree("after a disconnect", members)
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.killed = true
	members = slices.DeleteFunc(members, func(m member) bool { return m.on == c })
	agree("after the owner's kill", members)
}
