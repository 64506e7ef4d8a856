package main

import (
	"math"
	"sync"
	"time"
)

// timeline counts deliveries every step while a run goes on, for the
// throughput-over-time chart.
type timeline struct {
	done  chan struct{}
	out   chan []float64
	once  sync.Once
	rates []float64
}

// startTimeline samples count every step until stop.
func startTimeline(count func() uint64, step time.Duration) *timeline {
	t := &timeline{done: make(chan struct{}), out: make(chan []float64, 1)}
	go func() {
		tick := time.NewTicker(step)
		defer tick.Stop()
		prev, prevAt := count(), time.Now()
		var rates []float64
		for {
			select {
			case <-t.done:
				t.out <- rates
				return
			case now := <-tick.C:
				n := count()
				rates = append(rates, rateOver(n-prev, now.Sub(prevAt)))
				prev, prevAt = n, now
			}
		}
	}()
	return t
}

// rateOver is n per second over d, to one decimal.
func rateOver(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

// stop ends the sampling and returns deliveries/s per step. It is safe to
// call more than once.
func (t *timeline) stop() []float64 {
	t.once.Do(func() {
		close(t.done)
		t.rates = <-t.out
	})
	return t.rates
}
