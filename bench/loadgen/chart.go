package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// cdfQuantiles are the points of a run's latency CDF (Result.LatencyCDFMs):
// every 2 % up to 90 %, then finer into the tail.
var cdfQuantiles = func() []float64 {
	var q []float64
	for p := 0.02; p < 0.9; p += 0.02 {
		q = append(q, math.Round(p*100)/100)
	}
	return append(q, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999, 1)
}()

// chartColors tell the targets apart in a chart.
var chartColors = []string{"#2b7bb9", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"}

// writeCDF draws the latency CDF of each result that has one as an SVG:
// latency (ms, log scale) across, the share of deliveries up the side.
func writeCDF(w io.Writer, title string, rs []Result) error {
	const width, height, left, right, top, bottom = 720.0, 420.0, 64.0, 24.0, 40.0, 48.0
	lo, hi := math.Inf(1), 0.0
	for _, r := range rs {
		for _, v := range r.LatencyCDFMs {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		return fmt.Errorf("no latency samples to chart")
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	x := func(ms float64) float64 {
		ms = math.Max(ms, lo)
		return left + (math.Log10(ms)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*(width-left-right)
	}
	y := func(q float64) float64 { return top + (1-q)*(height-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="%g" height="%g" fill="#fff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%g" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	for d := lo; d <= hi*1.0001; d *= 10 { // decades
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#ddd"/><text x="%.1f" y="%g" text-anchor="middle">%g ms</text>`+"\n",
			x(d), top, x(d), height-bottom, x(d), height-bottom+16, d)
	}
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 0.9, 1} {
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#eee"/><text x="%g" y="%.1f" text-anchor="end">%g%%</text>`+"\n",
			left, y(q), width-right, y(q), left-6, y(q)+4, q*100)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">publish → deliver latency (log scale)</text>`+"\n", (left+width-right)/2, height-10)
	n := 0
	for _, r := range rs {
		if len(r.LatencyCDFMs) != len(cdfQuantiles) {
			continue
		}
		color := chartColors[n%len(chartColors)]
		var pts []string
		for i, v := range r.LatencyCDFMs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(v), y(cdfQuantiles[i])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		label := runLabel(r)
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="12" height="3" fill="%s"/><text x="%g" y="%g">%s: p50 %.1f, p99 %.1f ms</text>`+"\n",
			left+12, top+10+float64(n)*18, color, left+30, top+14+float64(n)*18, html.EscapeString(label), r.LatencyP50Ms, r.LatencyP99Ms)
		n++
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// runLabel tells a run apart in a chart's legend.
func runLabel(r Result) string {
	if r.Rate > 0 {
		return fmt.Sprintf("%s (%g/s)", r.Target, r.Rate)
	}
	return r.Target + " (saturation)"
}

// writeThroughput draws the deliveries per second over time of each
// result that has a timeline as an SVG line chart: time from the start of
// the warmup across (a dashed line where the measurement window opens),
// deliveries/s up the side.
func writeThroughput(w io.Writer, title string, rs []Result) error {
	const width, height, left, right, top, bottom = 720.0, 420.0, 80.0, 24.0, 40.0, 48.0
	maxT, maxV, window := 0.0, 0.0, 0.0
	for _, r := range rs {
		if len(r.Timeline) == 0 || r.TimelineStepMs <= 0 {
			continue
		}
		maxT = math.Max(maxT, float64(len(r.Timeline))*r.TimelineStepMs/1000)
		window = math.Max(window, r.TimelineWindowS)
		for _, v := range r.Timeline {
			maxV = math.Max(maxV, v)
		}
	}
	if maxT == 0 {
		return fmt.Errorf("no throughput timeline to chart")
	}
	maxT, maxV = niceCeil(maxT), niceCeil(maxV*1.05)
	x := func(t float64) float64 { return left + t/maxT*(width-left-right) }
	y := func(v float64) float64 { return top + (1-v/maxV)*(height-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="%g" height="%g" fill="#fff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%g" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	for i := 0; i <= 5; i++ {
		v := maxV * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#eee"/><text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, y(v), width-right, y(v), left-6, y(v)+4, humanCount(v))
	}
	for i := 0; i <= 10; i++ {
		t := maxT * float64(i) / 10
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#eee"/><text x="%.1f" y="%g" text-anchor="middle">%g s</text>`+"\n",
			x(t), top, x(t), height-bottom, x(t), height-bottom+16, math.Round(t*100)/100)
	}
	if window > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#999" stroke-dasharray="4 4"/><text x="%.1f" y="%g" fill="#666">window</text>`+"\n",
			x(window), top, x(window), height-bottom, x(window)+4, height-bottom-6)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">time since the warmup began; deliveries per second</text>`+"\n", (left+width-right)/2, height-10)
	n := 0
	for _, r := range rs {
		if len(r.Timeline) == 0 || r.TimelineStepMs <= 0 {
			continue
		}
		color := chartColors[n%len(chartColors)]
		pts := make([]string, 0, len(r.Timeline))
		for i, v := range r.Timeline {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(i+1)*r.TimelineStepMs/1000), y(v)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="12" height="3" fill="%s"/><text x="%g" y="%g">%s: %s deliveries/s in the window</text>`+"\n",
			left+12, top+10+float64(n)*18, color, left+30, top+14+float64(n)*18, html.EscapeString(runLabel(r)), humanCount(r.DeliveriesPerSec))
		n++
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// humanCount writes 1234567 as 1.23M, 45600 as 45.6k.
func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(math.Round(v/1e4)/100, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(math.Round(v/100)/10, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
}

// readFanout reads the fan-out results among the -json lines of files.
func readFanout(files []string) ([]Result, error) {
	var rs []Result
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var r Result
			var kind struct {
				Scenario string `json:"scenario"`
			}
			if json.Unmarshal([]byte(line), &kind) != nil || (kind.Scenario != "" && kind.Scenario != scenarioFanout) {
				continue
			}
			if json.Unmarshal([]byte(line), &r) == nil {
				rs = append(rs, r)
			}
		}
	}
	return rs, nil
}

// writeCDFs writes, next to prefix, one latency CDF per run kind of the
// fan-out results in files: PREFIX-saturation.svg and PREFIX-fixed-rate.svg.
func writeCDFs(prefix string, files []string) ([]string, error) {
	rs, err := readFanout(files)
	if err != nil {
		return nil, err
	}
	var sat, fixed []Result
	for _, r := range rs {
		if r.Rate > 0 {
			fixed = append(fixed, r)
		} else {
			sat = append(sat, r)
		}
	}
	var written []string
	for _, c := range []struct {
		name, title string
		rs          []Result
		draw        func(io.Writer, string, []Result) error
	}{
		{"saturation", "Latency CDF at saturation", sat, writeCDF},
		{"fixed-rate", "Latency CDF at a fixed rate", fixed, writeCDF},
		{"throughput-saturation", "Deliveries per second at saturation", sat, writeThroughput},
		{"throughput-fixed-rate", "Deliveries per second at a fixed rate", fixed, writeThroughput},
	} {
		if len(c.rs) == 0 || (strings.HasPrefix(c.name, "throughput") && !slices.ContainsFunc(c.rs, func(r Result) bool { return len(r.Timeline) > 0 })) {
			continue
		}
		path := fmt.Sprintf("%s-%s.svg", prefix, c.name)
		f, err := os.Create(path)
		if err != nil {
			return written, err
		}
		title := fmt.Sprintf("%s, %d subscribers, %d-byte payload", c.title, c.rs[0].Subs, c.rs[0].Payload)
		if err := c.draw(f, title, c.rs); err != nil {
			f.Close()
			return written, err
		}
		if err := f.Close(); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}
