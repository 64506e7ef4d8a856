package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// printTable prints the -json result lines in files as Markdown tables:
// one for the fan-out runs, one for the datagram runs.
func printTable(w io.Writer, files []string) error {
	var (
		rs []Result
		ds []DatagramResult
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
			if err == nil && kind.Scenario == scenarioDatagrams {
				var d DatagramResult
				if err = json.Unmarshal(line, &d); err == nil {
					ds = append(ds, d)
				}
			} else if err == nil {
				var r Result
				if err = json.Unmarshal(line, &r); err == nil {
					rs = append(rs, r)
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
	if len(rs) > 0 {
		printFanoutTable(w, rs)
	}
	if len(ds) > 0 {
		if len(rs) > 0 {
			fmt.Fprintln(w)
		}
		printDatagramTable(w, ds)
	}
	return nil
}

func printFanoutTable(w io.Writer, rs []Result) {
	fmt.Fprintln(w, "| target | subs | payload B | publishes/s (asked) | deliveries/s | deliveries per server core-s | server CPU s (cores) | loadgen CPU s | latency p50 / p95 / p99 ms | last subscriber p50 / p95 / p99 ms | idle subscriber KiB (server RSS MiB: before → idle) | connects per server core-s | server RSS MiB | lost / out of order / disconnects |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		asked := "saturate"
		if r.Rate > 0 {
			asked = fmt.Sprintf("%g", r.Rate)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.0f (%s) | %.0f | %.0f | %.2f (%.2f) | %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %.1f (%.1f → %.1f) | %.0f | %.1f | %d / %d / %d |\n",
			r.Target, r.Subs, r.Payload, r.PublishesPerSec, asked, r.DeliveriesPerSec, r.DeliveriesPerCoreSec,
			r.ServerCPU, r.ServerCores, r.LoadgenCPU, r.LatencyP50Ms, r.LatencyP95Ms, r.LatencyP99Ms,
			r.LastP50Ms, r.LastP95Ms, r.LastP99Ms, r.IdleSessionKiB, r.BaseRSSMiB, r.IdleRSSMiB, r.ConnectsPerCoreSec, r.ServerRSSMiB,
			r.Lost, r.OutOfOrder, r.Disconnects)
	}
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
