package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run's CDF comes out of -json lines as one SVG polyline per target.
func TestWriteCDFs(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i, target := range []string{"switchyard", "naive", "centrifugo"} {
		r := Result{Target: target, Subs: 100, Payload: 64, LatencyP50Ms: float64(i + 1), LatencyP99Ms: float64(10 * (i + 1))}
		for j := range cdfQuantiles {
			r.LatencyCDFMs = append(r.LatencyCDFMs, float64(i+1)*(0.2+float64(j)))
		}
		b, _ := json.Marshal(r)
		lines = append(lines, string(b))
	}
	in := filepath.Join(dir, "sat.jsonl")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	written, err := writeCDFs(filepath.Join(dir, "fanout"), []string{in})
	if err != nil || len(written) != 1 || !strings.HasSuffix(written[0], "fanout-saturation.svg") {
		t.Fatalf("%v, %v", written, err)
	}
	svg, _ := os.ReadFile(written[0])
	if n := strings.Count(string(svg), "<polyline"); n != 3 || !strings.Contains(string(svg), "centrifugo (saturation)") || !strings.HasPrefix(string(svg), "<svg") {
		t.Fatalf("%d lines in\n%s", n, svg)
	}
}
