package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/wal"
	"github.com/sluicehq/sluice/sinks/file"
	"github.com/sluicehq/sluice/sinks/file/filetest"
	"github.com/sluicehq/sluice/sources/kafka"
)

// lossCluster is kfake with one partition of "events" holding v0..v99 at
// offsets 0..99; kfake deletes records as retention would.
func lossCluster(t *testing.T) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	produce(t, brokers, "events", 0, 100)
	return c, brokers
}

func lossReceiver(t *testing.T, brokers []string, walDir string, skip bool, maxRate int64, m *kafka.Metrics) *kafka.Receiver {
	t.Helper()
	src, err := kafka.NewReceiver(kafka.ReceiverConfig{
		Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"}, Start: "earliest",
		Group: "recv", BlockInterval: 50 * time.Millisecond, MaxRate: maxRate, WALDir: walDir,
		SkipLoss: skip, Delivery: engine.ExactlyOnce, Pipeline: "p", Logger: quiet, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// runPipelineErr runs source → file sink until idle and returns how the
// pipeline ended.
func runPipelineErr(t *testing.T, src engine.Source, out string) error {
	t.Helper()
	sink, err := file.New(file.Config{Path: out, Format: "raw"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	// Bounds a pipeline that wrongly retries instead of stopping.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := engine.New(engine.Config{Name: "p", Delivery: engine.ExactlyOnce,
		IdleExit: 3 * time.Second, Logger: quiet, Source: src, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	return p.Run(ctx)
}

func values(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, "v"+strconv.Itoa(i))
	}
	return out
}

func sameValues(t *testing.T, got, want []string) {
	t.Helper()
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("output %d records %v, want %d records %v", len(got), got, len(want), want)
	}
}

func lost(m *kafka.Metrics) float64 {
	return testutil.ToFloat64(m.Lost.WithLabelValues("p", "events", "0"))
}

// A receiver resuming below the partition's log start: where the group's
// commit says, or past what its write-ahead log holds.
func TestReceiverDataLossOnAssignment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		logged int   // the write-ahead log holds offsets 0..logged-1
		from   int64 // where the partition resumes
	}{
		{"group offset", 0, 10},
		{"past the write-ahead log", 20, 20},
	} {
		setup := func(t *testing.T) ([]string, string) {
			c, brokers := lossCluster(t)
			walDir := filepath.Join(t.TempDir(), "wal")
			if tc.logged > 0 {
				w, err := wal.Open(walDir)
				if err != nil {
					t.Fatal(err)
				}
				var recs []engine.Record
				for i := range tc.logged {
					recs = append(recs, engine.Record{Topic: "events", Partition: 0, Offset: int64(i), Value: []byte("v" + strconv.Itoa(i))})
				}
				if _, err := w.Append(recs); err != nil {
					t.Fatal(err)
				}
				w.Close()
			}
			setGroupOffset(t, brokers, "recv", "events", 0, 10)
			if err := c.DeleteRecords("events", 0, 60); err != nil {
				t.Fatal(err)
			}
			return brokers, walDir
		}
		t.Run(tc.name+"/fail", func(t *testing.T) {
			brokers, walDir := setup(t)
			out := t.TempDir()
			m := kafka.NewMetrics(nil)
			err := runPipelineErr(t, lossReceiver(t, brokers, walDir, false, 0, m), out)
			want := "kafka events/0: offsets " + strconv.FormatInt(tc.from, 10) + "..59: "
			if !errors.Is(err, kafka.ErrDataLoss) || engine.IsRetryable(err) ||
				!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "set on-data-loss: skip to continue from 60") {
				t.Fatalf("on-data-loss fail: %v; want a permanent error containing %q", err, want)
			}
			// What the log held before the loss may go out, nothing after.
			if got := filetest.Lines(t, out); len(got) > 0 {
				sameValues(t, got, values(0, tc.logged))
			}
			if got := groupOffset(t, brokers, "recv", "events", 0); got != 10 {
				t.Fatalf("group offset %d after the failure, want 10 untouched", got)
			}
			if got := lost(m); got != 0 {
				t.Fatalf("sluice_records_lost_total %v with on-data-loss fail", got)
			}
		})
		t.Run(tc.name+"/skip", func(t *testing.T) {
			brokers, walDir := setup(t)
			out := t.TempDir()
			m := kafka.NewMetrics(nil)
			if err := runPipelineErr(t, lossReceiver(t, brokers, walDir, true, 0, m), out); err != nil {
				t.Fatal(err)
			}
			// What the log held before the loss was committed to no sink
			// yet, so it is delivered too.
			sameValues(t, filetest.Lines(t, out), append(values(0, tc.logged), values(60, 100)...))
			if got, want := lost(m), float64(60-tc.from); got != want {
				t.Fatalf("sluice_records_lost_total %v, want %v", got, want)
			}
			if got := groupOffset(t, brokers, "recv", "events", 0); got != 100 {
				t.Fatalf("group offset %d after the run, want 100", got)
			}
			// Reopened, the group is past the loss: nothing counted twice.
			if err := runPipelineErr(t, lossReceiver(t, brokers, walDir, true, 0, m), out); err != nil {
				t.Fatal(err)
			}
			if got, want := lost(m), float64(60-tc.from); got != want {
				t.Fatalf("sluice_records_lost_total %v after a reopen, want %v", got, want)
			}
		})
	}
}

// A running receiver that retention overtakes: max-rate keeps it behind,
// and records it has not read yet are deleted under it.
func TestReceiverFallsBehindRetention(t *testing.T) {
	for _, skip := range []bool{false, true} {
		t.Run(map[bool]string{false: "fail", true: "skip"}[skip], func(t *testing.T) {
			c, brokers := lossCluster(t)
			m := kafka.NewMetrics(nil)
			// 40 records/s: about 2.5 s for the 100 records.
			src := lossReceiver(t, brokers, filepath.Join(t.TempDir(), "wal"), skip, 40, m)
			ctx := context.Background()
			if err := src.Open(ctx, nil); err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var got []string
			deleted := false
			deadline := time.Now().Add(20 * time.Second)
			var err error
			for !slices.Contains(got, "v99") && time.Now().Before(deadline) {
				var recs []engine.Record
				var until engine.Positions
				recs, until, err = src.Next(ctx, engine.Limits{Wait: 200 * time.Millisecond})
				if err != nil {
					break
				}
				for _, r := range recs {
					got = append(got, string(r.Value))
				}
				if err = src.Committed(ctx, until); err != nil {
					t.Fatal(err)
				}
				if len(got) > 0 && !deleted {
					if len(got) >= 60 {
						t.Fatalf("read %d records before the deletion; max-rate did not hold the receiver back", len(got))
					}
					if err := c.DeleteRecords("events", 0, 60); err != nil {
						t.Fatal(err)
					}
					deleted = true
				}
			}
			if !deleted {
				t.Fatal("nothing read")
			}
			// The receiver may have polled further than it handed out
			// when the records went.
			read := len(got)
			if !skip {
				if !errors.Is(err, kafka.ErrDataLoss) || engine.IsRetryable(err) || !strings.Contains(err.Error(), "kafka events/0: offsets ") ||
					!strings.Contains(err.Error(), "..59: ") {
					t.Fatalf("on-data-loss fail: %v", err)
				}
				if _, _, again := src.Next(ctx, engine.Limits{Wait: 100 * time.Millisecond}); !errors.Is(again, kafka.ErrDataLoss) {
					t.Fatalf("Next after the failure: %v", again)
				}
				if lost(m) != 0 {
					t.Fatalf("sluice_records_lost_total %v with on-data-loss fail", lost(m))
				}
				// The group resumes where the range begins: nothing past
				// the gap was committed, and a restart reports it again.
				msg := err.Error()
				from, ferr := strconv.ParseInt(msg[strings.Index(msg, "offsets ")+len("offsets "):strings.Index(msg, "..59")], 10, 64)
				if ferr != nil || from < int64(read) || from >= 60 {
					t.Fatalf("range in %q, with %d records read", msg, read)
				}
				src.Close()
				if got := groupOffset(t, brokers, "recv", "events", 0); got != from {
					t.Fatalf("group offset %d after the failure, want %d", got, from)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Everything read before the loss, then 60..99: each record
			// either delivered or counted lost, once.
			n := read - 40
			sameValues(t, got, append(values(0, n), values(60, 100)...))
			if got, want := lost(m), float64(60-n); got != want {
				t.Fatalf("sluice_records_lost_total %v, want %v (read %d before the loss)", got, want, n)
			}
		})
	}
}

// A group with nothing committed and nothing logged starts by the start
// policy: records deleted before it ever read the topic are not its loss.
func TestReceiverFreshGroupAfterRetentionIsNoLoss(t *testing.T) {
	c, brokers := lossCluster(t)
	if err := c.DeleteRecords("events", 0, 60); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	m := kafka.NewMetrics(nil)
	if err := runPipelineErr(t, lossReceiver(t, brokers, filepath.Join(t.TempDir(), "wal"), false, 0, m), out); err != nil {
		t.Fatal(err)
	}
	sameValues(t, filetest.Lines(t, out), values(60, 100))
	if got := lost(m); got != 0 {
		t.Fatalf("sluice_records_lost_total %v for a fresh group", got)
	}
}

// The same against the built-in broker, whose retention deletes old
// segments: the group's offset falls below the log start while no
// receiver runs.
func TestReceiverDataLossBuiltinBrokerRetention(t *testing.T) {
	b, err := broker.Open(t.TempDir(), broker.Options{Logger: quiet, RetentionCheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l, err := b.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go b.Serve(l)
	brokers := []string{l.Addr().String()}
	// Uncompressed, so the records fill segments.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Small segments and an hour of retention: the old records' segments go.
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "events", 1, 1
	for k, v := range map[string]string{"segment.bytes": "1024", "retention.ms": "3600000"} {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	if resp, err := req.RequestWith(ctx, cl); err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create: %v %v", err, resp)
	}
	old := time.Now().Add(-2 * time.Hour)
	for i := range 10 {
		r := &kgo.Record{Value: []byte(fmt.Sprintf("v%d %0300d", i, 0)), Timestamp: old}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	setGroupOffset(t, brokers, "recv", "events", 0, 1)
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v10")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	var start int64
	for start <= 1 {
		if ctx.Err() != nil {
			t.Fatal("retention did not delete the old segments")
		}
		time.Sleep(10 * time.Millisecond) // polling the broker's retention; nothing to wait on
		starts, err := adm.ListStartOffsets(ctx, "events")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := starts.Lookup("events", 0)
		start = o.Offset
	}

	m := kafka.NewMetrics(nil)
	fail := lossReceiver(t, brokers, filepath.Join(t.TempDir(), "wal"), false, 0, m)
	if err := fail.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = fail.Next(ctx, engine.Limits{Wait: 20 * time.Second})
	want := fmt.Sprintf("kafka events/0: offsets 1..%d: ", start-1)
	if !errors.Is(err, kafka.ErrDataLoss) || engine.IsRetryable(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("on-data-loss fail: %v; want a permanent error containing %q", err, want)
	}
	fail.Close()
	if got := groupOffset(t, brokers, "recv", "events", 0); got != 1 {
		t.Fatalf("group offset %d after the failure, want 1 untouched", got)
	}

	skip := lossReceiver(t, brokers, filepath.Join(t.TempDir(), "wal"), true, 0, m)
	if err := skip.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer skip.Close()
	var got []engine.Record
	for len(got) < int(11-start) {
		recs, until, err := skip.Next(ctx, engine.Limits{Wait: 20 * time.Second})
		if err != nil || len(recs) == 0 {
			t.Fatalf("on-data-loss skip: %d records, %v", len(got), err)
		}
		if err := skip.Committed(ctx, until); err != nil {
			t.Fatal(err)
		}
		got = append(got, recs...)
	}
	if got[0].Offset != start || string(got[len(got)-1].Value) != "v10" {
		t.Fatalf("read offsets %d..%d, want %d..10", got[0].Offset, got[len(got)-1].Offset, start)
	}
	if got, want := lost(m), float64(start-1); got != want {
		t.Fatalf("sluice_records_lost_total %v, want %v", got, want)
	}
}
