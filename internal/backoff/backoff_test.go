package backoff

import (
	"math"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name string
		p    Policy
		n    int
		want time.Duration
	}{
		{"first failure waits Min", Policy{100 * ms, 30 * time.Second}, 1, 100 * ms},
		{"no failure yet counts as the first", Policy{100 * ms, 30 * time.Second}, 0, 100 * ms},
		{"negative counts as the first", Policy{100 * ms, 30 * time.Second}, -3, 100 * ms},
		{"doubles per failure", Policy{100 * ms, 30 * time.Second}, 4, 800 * ms},
		{"capped at Max", Policy{100 * ms, 30 * time.Second}, 10, 30 * time.Second},
		{"cap not a power of two of Min", Policy{5 * ms, time.Second}, 8, 640 * ms},
		{"cap reached exactly", Policy{5 * ms, time.Second}, 9, time.Second},
		{"huge failure count neither overflows nor loops long", Policy{time.Second, time.Minute}, math.MaxInt, time.Minute},
		{"Min above Max gives Max", Policy{time.Minute, time.Second}, 1, time.Second},
		{"zero Min never waits", Policy{0, time.Second}, 5, 0},
		{"negative Min never waits", Policy{-ms, time.Second}, math.MaxInt, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Delay(tt.n); got != tt.want {
				t.Fatalf("Delay(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

// Each retry loop's sequence: the same waits as before the loops shared
// this package.
func TestDelaySequences(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name string
		p    Policy
		want []time.Duration
	}{
		{"engine batch retry", Policy{100 * ms, 30 * time.Second},
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 25600 * ms, 30 * time.Second, 30 * time.Second}},
		{"plugin restart", Policy{100 * ms, 10 * time.Second},
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 10 * time.Second}},
		{"daemon pipeline restart", Policy{time.Second, time.Minute},
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute}},
		{"broker accept", Policy{5 * ms, time.Second},
			[]time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				if got := tt.p.Delay(i + 1); got != want {
					t.Fatalf("failure %d: Delay = %v, want %v", i+1, got, want)
				}
			}
		})
	}
}
