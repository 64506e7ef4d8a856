package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// printTable prints the -json result lines in files as Markdown tables:
// one for the fan-out runs, one for the datagram runs.
func printTable(w io.Writer, files []string) error {
	var (
		rs  []Result
		ds  []DatagramResult
		is  []IdleResult
		cs  []ConnectResult
		chs []ChurnResult
	)
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := []byte(strings.TrimSpace(sc.Text()))
			if len(line) == 0 || line[0] != '{' {
				continue
			}
			var kind struct {
				Scenario string `json:"scenario"`
			}
			err = json.Unmarshal(line, &kind)
			if err == nil {
				switch kind.Scenario {
				case scenarioDatagrams:
					ds, err = appendJSON(ds, line)
				case scenarioIdle:
					is, err = appendJSON(is, line)
				case scenarioConnect:
					cs, err = appendJSON(cs, line)
				case scenarioChurn:
					chs, err = appendJSON(chs, line)
				default:
					rs, err = appendJSON(rs, line)
				}
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	sep := func() {}
	next := func() { sep = func() { fmt.Fprintln(w) } }
	if len(rs) > 0 {
		printFanoutTable(w, rs)
		next()
	}
	if len(ds) > 0 {
		sep()
		printDatagramTable(w, ds)
		next()
	}
	if len(is) > 0 {
		sep()
		printIdleTable(w, is)
		next()
	}
	if len(cs) > 0 {
		sep()
		printConnectTable(w, cs)
		next()
	}
	if len(chs) > 0 {
		sep()
		printChurnTable(w, chs)
	}
	return nil
}

// appendJSON decodes line as a T and appends it.
func appendJSON[T any](ts []T, line []byte) ([]T, error) {
	var t T
	if err := json.Unmarshal(line, &t); err != nil {
		return ts, err
	}
	return append(ts, t), nil
}

func printIdleTable(w io.Writer, is []IdleResult) {
	fmt.Fprintln(w, "| target | sessions | idle session KiB of server RSS (MiB: before → idle) | kernel KiB per server socket = structures + buffers | slab growth KiB per socket, both ends (whole machine) | caches that grew most, KiB per socket | server threads |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|---:|")
	for _, r := range is {
		fmt.Fprintf(w, "| %s | %d | %.1f (%.1f → %.1f) | %.2f = %.2f + %.2f | %.2f | %s | %d |\n",
			r.Target, r.Sessions, r.IdleSessionKiB, r.BaseRSSMiB, r.IdleRSSMiB, r.KernelKiBPerSocket, r.StructKiBPerSocket, r.BufKiBPerSocket,
			r.SlabGrowthKiBPerSocket, r.SlabTop, r.ServerThreads)
	}
}

func printConnectTable(w io.Writer, cs []ConnectResult) {
	fmt.Fprintln(w, "| target | TLS | sessions (at a time) | connects per server core-s | connects/s | server CPU s | loadgen CPU s | handshake p50 / p99 ms | server RSS MiB |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range cs {
		tls := "ws://"
		if r.TLS {
			tls = "wss://"
		}
		fmt.Fprintf(w, "| %s | %s | %d (%d) | %.0f | %.0f | %.2f | %.2f | %.2f / %.2f | %.1f |\n",
			r.Target, tls, r.Sessions, r.Concurrency, r.ConnectsPerCoreSec, r.ConnectsPerSec, r.ServerCPU, r.LoadgenCPU,
			r.HandshakeP50Ms, r.HandshakeP99Ms, r.ServerRSSMiB)
	}
}

func printChurnTable(w io.Writer, chs []ChurnResult) {
	fmt.Fprintln(w, "| target | cycles (at a time) | cycles/s | cycles per server core-s | server RSS MiB before / peak / after | goroutines before / peak / after | Go heap in use MiB before / peak / after | open files before / peak / after | GC forced |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range chs {
		gc := "no"
		if r.GC {
			gc = "yes"
		}
		fmt.Fprintf(w, "| %s | %d (%d) | %.0f | %.0f | %.1f / %.1f / %.1f | %s / %s / %s | %s / %s / %s | %d / %d / %d | %s |\n",
			r.Target, r.Cycles, r.Open, r.CyclesPerSec, r.CyclesPerCoreSec, r.BaseRSSMiB, r.PeakRSSMiB, r.AfterRSSMiB,
			orNA(float64(r.BaseGoroutines), "%.0f"), orNA(float64(r.PeakGoroutines), "%.0f"), orNA(float64(r.AfterGoroutines), "%.0f"),
			orNA(r.BaseHeapMiB, "%.1f"), orNA(r.PeakHeapMiB, "%.1f"), orNA(r.AfterHeapMiB, "%.1f"),
			r.BaseFDs, r.PeakFDs, r.AfterFDs, gc)
	}
}

// orNA formats v, or "n/a" for a figure the server does not expose (-1).
func orNA(v float64, format string) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

func printFanoutTable(w io.Writer, rs []Result) {
	// The arrival columns only when some run has arrival times (-readers
	// epoll), so that other tables look as they always did.
	arrival := slices.ContainsFunc(rs, func(r Result) bool { return r.ArrivalSamples > 0 || r.LastArrivalSamples > 0 })
	arrivalHead, arrivalAlign := "", ""
	if arrival {
		arrivalHead, arrivalAlign = " arrival p50 / p99 / p99.9 ms | last arrival p99 ms |", "---:|---:|"
	}
	fmt.Fprintln(w, "| target | subs | payload B | publishes/s (asked) | deliveries/s | deliveries per server core-s | server CPU s (cores) | loadgen CPU s | latency p50 / p95 / p99 / p99.9 ms | last subscriber p50 / p95 / p99 / p99.9 ms |"+arrivalHead+" idle subscriber KiB (server RSS MiB: before → idle) | connects per server core-s | server RSS MiB | lost / out of order / disconnects |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"+arrivalAlign+"---:|---:|---:|---:|")
	for _, r := range rs {
		asked := "saturate"
		if r.Rate > 0 {
			asked = fmt.Sprintf("%g", r.Rate)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.0f (%s) | %.0f | %.0f | %.2f (%.2f) | %.2f | %.2f / %.2f / %.2f / %.2f | %.2f / %.2f / %.2f / %.2f |",
			r.Target, r.Subs, r.Payload, r.PublishesPerSec, asked, r.DeliveriesPerSec, r.DeliveriesPerCoreSec,
			r.ServerCPU, r.ServerCores, r.LoadgenCPU, r.LatencyP50Ms, r.LatencyP95Ms, r.LatencyP99Ms, r.LatencyP999Ms,
			r.LastP50Ms, r.LastP95Ms, r.LastP99Ms, r.LastP999Ms)
		if arrival {
			fmt.Fprintf(w, " %s | %s |", arrivalCells(r), orNA(lastArrivalP99(r), "%.2f"))
		}
		fmt.Fprintf(w, " %.1f (%.1f → %.1f) | %.0f | %.1f | %d / %d / %d |\n",
			r.IdleSessionKiB, r.BaseRSSMiB, r.IdleRSSMiB, r.ConnectsPerCoreSec, r.ServerRSSMiB,
			r.Lost, r.OutOfOrder, r.Disconnects)
	}
}

// arrivalCells is a run's arrival p50 / p99 / p99.9 ms, or n/a for a run
// without arrival times (-readers goroutine).
func arrivalCells(r Result) string {
	if r.ArrivalSamples == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f / %.2f / %.2f", r.ArrivalP50Ms, r.ArrivalP99Ms, r.ArrivalP999Ms)
}

// lastArrivalP99 is a run's last-arrival p99 in ms, or -1 (n/a) for a
// run without arrival times.
func lastArrivalP99(r Result) float64 {
	if r.LastArrivalSamples == 0 {
		return -1
	}
	return r.LastArrivalP99Ms
}

func printDatagramTable(w io.Writer, ds []DatagramResult) {
	fmt.Fprintln(w, "| subs | payload B | datagrams/s | deliveries/s | loss % | deliveries per server core-s | server CPU s (cores) | loadgen CPU s | latency p50 / p99 / max ms | idle session KiB (subscribed) | server RSS MiB |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, d := range ds {
		fmt.Fprintf(w, "| %d | %d | %g | %.0f | %.3f | %.0f | %.2f (%.2f) | %.2f | %.2f / %.2f / %.2f | %.1f (%.1f) | %.1f |\n",
			d.Subs, d.Payload, d.Rate, d.DeliveriesPerSec, d.LossPct, d.DeliveriesPerCoreSec, d.ServerCPU, d.ServerCores,
			d.LoadgenCPU, d.LatencyP50Ms, d.LatencyP99Ms, d.LatencyMaxMs, d.IdleSessionKiB, d.SubscribedSessionKiB, d.ServerRSSMiB)
	}
}
