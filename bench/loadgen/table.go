package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// printTable prints the -json result lines in files as a Markdown table.
func printTable(w io.Writer, files []string) error {
	var rs []Result
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var r Result
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				f.Close()
				return fmt.Errorf("%s: %w", name, err)
			}
			rs = append(rs, r)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	fmt.Fprintln(w, "| target | subs | payload B | publishes/s (asked) | deliveries/s | deliveries per server core-s | server CPU s (cores) | loadgen CPU s | server RSS MiB | latency p50 / p99 ms | lost |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		asked := "saturate"
		if r.Rate > 0 {
			asked = fmt.Sprintf("%g", r.Rate)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.0f (%s) | %.0f | %.0f | %.2f (%.2f) | %.2f | %.1f | %.2f / %.2f | %d |\n",
			r.Target, r.Subs, r.Payload, r.PublishesPerSec, asked, r.DeliveriesPerSec, r.DeliveriesPerCoreSec,
			r.ServerCPU, r.ServerCores, r.LoadgenCPU, r.ServerRSSMiB, r.LatencyP50Ms, r.LatencyP99Ms, r.Lost)
	}
	return nil
}
