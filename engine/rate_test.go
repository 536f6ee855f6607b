package engine

import (
	"testing"
	"time"
)

func TestRateControllerFollowsBatchTime(t *testing.T) {
	r := rateController{interval: time.Second}
	r.observe(10000, 500*time.Millisecond)
	if r.limit != 0 {
		t.Fatalf("a batch within the interval must not limit, got %d", r.limit)
	}
	r.observe(10000, 4*time.Second)
	if r.limit != 2500 {
		t.Fatalf("a batch 4x over the interval must shrink to a quarter, got %d", r.limit)
	}
	r.observe(2500, 100*time.Millisecond)
	if r.limit != 5000 {
		t.Fatalf("a fast full batch must let the limit grow, at most doubling, got %d", r.limit)
	}
	r.observe(5000, 800*time.Millisecond)
	if r.limit != 6250 {
		t.Fatalf("a full batch at 80%% of the interval must grow the limit to what fits (6250), got %d", r.limit)
	}
	r.observe(3000, 100*time.Millisecond)
	if r.limit != 6250 {
		t.Fatalf("a batch the limit did not cut says nothing about the limit, got %d", r.limit)
	}
	r.observe(10, time.Hour)
	if r.limit != minAdaptiveBatch {
		t.Fatalf("the limit must not drop below %d, got %d", minAdaptiveBatch, r.limit)
	}
	c := rateController{}
	c.observe(10, time.Hour)
	if c.limit != 0 {
		t.Fatalf("continuous pipelines are not rate limited, got %d", c.limit)
	}
}
