package generate

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

func open(t *testing.T, cfg Config, from engine.Positions) *Source {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), from); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestValuesKeysPartitions(t *testing.T) {
	s := open(t, Config{Topic: "g", Count: 10, Partitions: 3, Keys: 4}, nil)
	recs, until, err := s.Next(context.Background(), engine.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10 {
		t.Fatalf("got %d records, want 10", len(recs))
	}
	for i, r := range recs {
		if string(r.Value) != strconv.Itoa(i) || string(r.Key) != "k-"+strconv.Itoa(i%4) ||
			r.Partition != int32(i%3) || r.Offset != int64(i/3) || r.Topic != "g" {
			t.Errorf("record %d = %s/%d@%d key %q value %q", i, r.Topic, r.Partition, r.Offset, r.Key, r.Value)
		}
	}
	want := engine.Positions{{Topic: "g", Partition: 0}: 4, {Topic: "g", Partition: 1}: 3, {Topic: "g", Partition: 2}: 3}
	if !until.Equal(want) {
		t.Errorf("until = %v, want %v", until, want)
	}
	recs, until2, _ := s.Next(context.Background(), engine.Limits{})
	if len(recs) != 0 || !until2.Equal(until) {
		t.Errorf("an exhausted source returned %d records, positions %v", len(recs), until2)
	}
}

func TestResumeAndCaps(t *testing.T) {
	cfg := Config{Topic: "g", Count: 100, Partitions: 2}
	s := open(t, cfg, nil)
	recs, until, _ := s.Next(context.Background(), engine.Limits{MaxRecordsPerPartition: 5})
	if len(recs) != 10 || until[engine.TopicPartition{Topic: "g", Partition: 0}] != 5 {
		t.Fatalf("per-partition cap: %d records until %v", len(recs), until)
	}
	recs, _, _ = s.Next(context.Background(), engine.Limits{MaxRecords: 3})
	if len(recs) != 3 || string(recs[0].Value) != "10" || string(recs[2].Value) != "12" {
		t.Fatalf("batch cap must take the oldest records first: %d records starting %q", len(recs), recs[0].Value)
	}
	// A second instance resumed at the first one's positions continues the sequence.
	r := open(t, cfg, engine.Positions{{Topic: "g", Partition: 0}: 7, {Topic: "g", Partition: 1}: 6})
	recs, _, _ = r.Next(context.Background(), engine.Limits{MaxRecords: 2})
	if string(recs[0].Value) != "13" || string(recs[1].Value) != "14" {
		t.Fatalf("resumed after 0..12: got %q %q", recs[0].Value, recs[1].Value)
	}
}

func TestResumeRejectsForeignPositions(t *testing.T) {
	s, _ := New(Config{Topic: "g", Partitions: 2})
	if err := s.Open(context.Background(), engine.Positions{{Topic: "other", Partition: 0}: 1}); err == nil {
		t.Fatal("opening at another topic's positions must fail")
	}
	if err := s.Open(context.Background(), engine.Positions{{Topic: "g", Partition: 5}: 1}); err == nil {
		t.Fatal("opening at a partition that does not exist must fail")
	}
}

func TestRate(t *testing.T) {
	s := open(t, Config{Topic: "g", Partitions: 1, Rate: 1000}, nil)
	clock := s.opened
	s.now = func() time.Time { return clock }
	if recs, _, _ := s.Next(context.Background(), engine.Limits{}); len(recs) != 0 {
		t.Fatalf("no time passed, got %d records", len(recs))
	}
	clock = clock.Add(250 * time.Millisecond)
	if recs, _, _ := s.Next(context.Background(), engine.Limits{}); len(recs) != 250 {
		t.Fatalf("after 250ms at 1000/s got %d records, want 250", len(recs))
	}
}

func TestWaitReturnsWhenExhausted(t *testing.T) {
	s := open(t, Config{Topic: "g", Count: 1, Partitions: 1}, nil)
	s.Next(context.Background(), engine.Limits{})
	start := time.Now()
	recs, _, err := s.Next(context.Background(), engine.Limits{Wait: 30 * time.Millisecond})
	if err != nil || len(recs) != 0 || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("exhausted source with Wait: %d records, err %v after %v", len(recs), err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Next(ctx, engine.Limits{Wait: time.Hour}); err == nil {
		t.Fatal("a cancelled Next must return the context's error")
	}
}

func TestBacklog(t *testing.T) {
	var _ engine.Backlogger = (*Source)(nil)
	s, _ := New(Config{Topic: "g", Count: 10, Partitions: 3})
	if _, known := s.Backlog(); known {
		t.Fatal("the backlog of an unopened source must be unknown")
	}
	s.Open(context.Background(), engine.Positions{{Topic: "g", Partition: 0}: 1})
	if n, known := s.Backlog(); n != 9 || !known {
		t.Fatalf("backlog after resuming past one record = %d, %v; want 9, true", n, known)
	}
	s.Next(context.Background(), engine.Limits{MaxRecordsPerPartition: 2})
	if n, _ := s.Backlog(); n != 3 {
		t.Fatalf("backlog after taking 6 more = %d, want 3", n)
	}
	s.Next(context.Background(), engine.Limits{})
	if n, known := s.Backlog(); n != 0 || !known {
		t.Fatalf("backlog of an exhausted source = %d, %v; want 0, true", n, known)
	}

	u := open(t, Config{Topic: "g", Partitions: 2}, nil)
	if n, known := u.Backlog(); n != math.MaxInt64 || !known {
		t.Fatalf("an unbounded source is always behind; got %d, %v", n, known)
	}

	r := open(t, Config{Topic: "g", Count: 1000, Partitions: 1, Rate: 100}, nil)
	clock := r.opened
	r.now = func() time.Time { return clock }
	if n, _ := r.Backlog(); n != 0 {
		t.Fatalf("no time passed at 100/s: backlog %d, want 0", n)
	}
	clock = clock.Add(500 * time.Millisecond)
	if n, _ := r.Backlog(); n != 50 {
		t.Fatalf("after 500ms at 100/s: backlog %d, want the 50 the rate allows", n)
	}
}

func BenchmarkNext(b *testing.B) {
	s, _ := New(Config{Topic: "g", Partitions: 4, Keys: 16})
	s.Open(context.Background(), nil)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		recs, _, _ := s.Next(context.Background(), engine.Limits{MaxRecordsPerPartition: 2500})
		n += len(recs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
