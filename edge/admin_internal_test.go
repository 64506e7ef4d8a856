package edge

import (
	"math"
	"testing"
)

// TestAdminQuantile checks the histogram quantile against values worked by
// hand (Prometheus' histogram_quantile: linear within a bucket).
func TestAdminQuantile(t *testing.T) {
	bounds := []float64{1, 2, 4}
	for _, tc := range []struct {
		q     float64
		cum   []uint64
		total uint64
		want  float64
	}{
		{.5, []uint64{10, 10, 10}, 10, 0.5}, // all in the first bucket: from 0
		{.5, []uint64{0, 10, 10}, 10, 1.5},  // all in (1, 2]
		{.75, []uint64{0, 0, 4}, 4, 3.5},    // 3 of 4 in (2, 4]
		{.99, []uint64{5, 5, 5}, 10, 4},     // beyond the last bound: that bound
		{.5, []uint64{2, 6, 8}, 8, 1.5},     // rank 4 in (1, 2]: 2 of 4 below
		{.25, []uint64{2, 6, 8}, 8, 1},      // rank 2, the first bucket's top
	} {
		if got := quantile(tc.q, bounds, tc.cum, tc.total); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v, %v of %d) = %v, want %v", tc.q, tc.cum, tc.total, got, tc.want)
		}
	}
	if got := quantile(.5, bounds, []uint64{0, 0, 0}, 0); !math.IsNaN(got) {
		t.Errorf("quantile without observations = %v, want NaN", got)
	}
}
