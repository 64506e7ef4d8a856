package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// sourceAddrs is how many loopback source addresses the subscribers are
// spread over (127.0.0.2 …): one address has about 28,000 ephemeral
// ports, and a server's per-IP limits would see every subscriber as one
// client.
const sourceAddrs = 50

// dialerFrom is a WebSocket dialer whose connections come from the i-th
// loopback source address when target is on loopback (127.0.0.0/8), the
// default route's address otherwise.
func dialerFrom(base websocket.Dialer, target string, i int) *websocket.Dialer {
	d := base
	u, err := url.Parse(target)
	if err != nil {
		return &d
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return &d
	}
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%sourceAddrs))}
	d.NetDialContext = (&net.Dialer{LocalAddr: src, Timeout: base.HandshakeTimeout}).DialContext
	return &d
}

// cpuBusy samples /proc/stat over d and returns the share of the
// machine's CPU time that was not idle (0 to 1).
func cpuBusy(d time.Duration) (float64, error) {
	read := func() (busy, total uint64, err error) {
		f, err := os.Open("/proc/stat")
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		if !sc.Scan() {
			return 0, 0, fmt.Errorf("/proc/stat is empty")
		}
		fields := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal ...
		if len(fields) < 5 || fields[0] != "cpu" {
			return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", sc.Text())
		}
		for i, f := range fields[1:] {
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return 0, 0, err
			}
			total += v
			if i != 3 && i != 4 { // idle, iowait
				busy += v
			}
		}
		return busy, total, nil
	}
	b0, t0, err := read()
	if err != nil {
		return 0, err
	}
	time.Sleep(d)
	b1, t1, err := read()
	if err != nil {
		return 0, err
	}
	if t1 == t0 {
		return 0, nil
	}
	return float64(b1-b0) / float64(t1-t0), nil
}

// waitIdle waits until the machine's CPU is at most max busy over a
// second (other work would skew a benchmark), up to within; it reports
// the last figure and whether the machine was idle enough.
func waitIdle(ctx context.Context, max float64, within time.Duration, logf func(string, ...any)) (float64, bool) {
	deadline := time.Now().Add(within)
	for {
		busy, err := cpuBusy(time.Second)
		if err != nil {
			logf("idle check: %v (skipped)", err)
			return 0, true
		}
		if busy <= max {
			return busy, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return busy, false
		}
		logf("the machine is %.0f %% busy before the run; waiting for it to settle", 100*busy)
	}
}
