package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consumed is one record as a client read it.
type consumed struct {
	off       int64
	key, val  string
	tombstone bool
}

// checkTable checks records read from the start of a cleaned compacted
// topic: offsets increase, each key's record is the one last produced (same
// offset, same value) and appears once, and tombstoned keys are absent or
// present only as their tombstone.
func checkTable(t *testing.T, client string, got []consumed, want map[string]consumed) {
	t.Helper()
	seen := map[string]bool{}
	last := int64(-1)
	for _, r := range got {
		if r.off <= last {
			t.Fatalf("%s: offset %d after %d", client, r.off, last)
		}
		last = r.off
		if seen[r.key] {
			t.Fatalf("%s: key %q twice after the clean", client, r.key)
		}
		seen[r.key] = true
		w, ok := want[r.key]
		if !ok || w.off != r.off || w.val != r.val || w.tombstone != r.tombstone {
			t.Fatalf("%s: read %+v for key %q, the last produced was %+v", client, r, r.key, w)
		}
	}
	for k, w := range want {
		if !seen[k] && !w.tombstone {
			t.Fatalf("%s: key %q missing after the clean (last produced %+v)", client, k, w)
		}
	}
}

// TestCompactedTopicClients produces keyed updates and deletes to a
// compacted topic with franz-go (snappy) and kafka-go (gzip), cleans it,
// and reads it from the start with franz-go, kafka-go and kcat: each sees
// exactly the latest record per key at its original offset. Along the
// way: a keyless record is refused as Kafka refuses it, DeleteRecords
// answers POLICY_VIOLATION, the configs are described and validated.
func TestCompactedTopicClients(t *testing.T) {
	b, addr := testBroker(t, Options{})
	ctx := ctxT(t)
	cl := newKgo(t, addr, kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.ProducerLinger(0))
	adm := kadm.NewClient(cl)
	const topic = "table"
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy": kadm.StringPtr("compact"), "segment.bytes": kadm.StringPtr("2048"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"), "delete.retention.ms": kadm.StringPtr("3600000"),
	}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create compacted topic: %v %v", err, resp.Err)
	}

	want := map[string]consumed{}
	const keys = 40
	for round := range 15 {
		var recs []*kgo.Record
		for k := range keys {
			r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%02d", k), Value: fmt.Appendf(nil, "kgo-%d-%d", round, k)}
			if round == 14 && k%10 == 3 {
				r.Value = nil // a delete
			}
			recs = append(recs, r)
		}
		for _, pr := range cl.ProduceSync(ctx, recs...) {
			if pr.Err != nil {
				t.Fatalf("produce: %v", pr.Err)
			}
			r := pr.Record
			want[string(r.Key)] = consumed{off: r.Offset, key: string(r.Key), val: string(r.Value), tombstone: r.Value == nil}
		}
	}
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Compression: kafka.Gzip, BatchSize: 20, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() { w.Close() })
	var msgs []kafka.Message
	for k := 0; k < keys; k += 2 {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%02d", k), Value: fmt.Appendf(nil, "kafkago-%d", k)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("kafka-go produce: %v", err)
	}
	// kafka-go does not report offsets: read them back below from the
	// uncleaned log.
	kgWritten := map[string]bool{}
	for _, m := range msgs {
		kgWritten[string(m.Key)] = true
	}

	// A keyless record is refused.
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("no key")}).FirstErr()
	if !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record on a compacted topic: %v, want INVALID_RECORD", err)
	}
	// A record larger than what is left of the active segment rolls it, so
	// every update above is in a sealed, cleanable segment.
	// Random bytes, so compression does not shrink it under the limit.
	noise := make([]byte, 2100)
	rand.Read(noise)
	big := &kgo.Record{Topic: topic, Key: []byte("zz-roll"), Value: []byte(hex.EncodeToString(noise))}
	if err := cl.ProduceSync(ctx, big).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range readKgo(t, addr, topic, big.Offset) {
		if kgWritten[r.key] && strings.HasPrefix(r.val, "kafkago-") {
			want[r.key] = r
		}
	}
	if n := len(want); n != keys {
		t.Fatalf("%d keys produced", n)
	}
	want["zz-roll"] = consumed{off: big.Offset, key: "zz-roll", val: string(big.Value)}

	if err := b.CleanNow(ctx); err != nil {
		t.Fatal(err)
	}
	checkTable(t, "franz-go", readKgo(t, addr, topic, big.Offset), want)
	checkTable(t, "kafka-go", readKafkaGo(t, addr, topic, big.Offset), want)
	if kcat, err := exec.LookPath("kcat"); err == nil {
		checkTable(t, "kcat", readKcat(t, kcat, addr, topic), want)
	}
	if n := cleanerMetric(t, b, "sluice_broker_log_cleaner_runs_total"); n < 1 {
		t.Fatalf("cleaner runs metric %v", n)
	}
	if n := cleanerMetric(t, b, "sluice_broker_log_cleaner_removed_records_total"); n < 500 {
		t.Fatalf("cleaner removed %v records of 640 superseded", n)
	}

	// DeleteRecords on a compact-only topic: POLICY_VIOLATION, as Kafka.
	dr, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup(topic, 0); !errors.Is(r.Err, kerr.PolicyViolation) {
		t.Fatalf("DeleteRecords on a compacted topic: %v, want POLICY_VIOLATION", r.Err)
	}

	// Configs: described, validated as Kafka validates them, altered live.
	rc, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	described := map[string]string{}
	for _, c := range rc[0].Configs {
		described[c.Key] = c.MaybeValue()
	}
	for k, v := range map[string]string{"cleanup.policy": "compact", "delete.retention.ms": "3600000", "min.cleanable.dirty.ratio": "0.01",
		"min.compaction.lag.ms": "0", "max.compaction.lag.ms": "9223372036854775807"} {
		if described[k] != v {
			t.Errorf("DescribeConfigs %s = %q, want %q", k, described[k], v)
		}
	}
	for _, bad := range []map[string]string{
		{"cleanup.policy": "compact,forever"},
		{"min.cleanable.dirty.ratio": "1.5"},
		{"delete.retention.ms": "-1"},
		{"max.compaction.lag.ms": "0"},
		{"min.compaction.lag.ms": "5000", "max.compaction.lag.ms": "1000"},
	} {
		var alters []kadm.AlterConfig
		for k, v := range bad {
			alters = append(alters, kadm.AlterConfig{Name: k, Value: kadm.StringPtr(v)})
		}
		res, err := adm.AlterTopicConfigs(ctx, alters, topic)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(res[0].Err, kerr.InvalidConfig) {
			t.Errorf("alter %v: %v, want INVALID_CONFIG", bad, res[0].Err)
		}
	}
	res, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("delete")}}, topic)
	if err != nil || res[0].Err != nil {
		t.Fatalf("append delete to cleanup.policy: %v %v", err, res[0].Err)
	}
	dr, err = adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup(topic, 0); r.Err != nil || r.LowWatermark != 10 {
		t.Fatalf("DeleteRecords on compact,delete: %+v", r)
	}
}

// cleanerMetric scrapes one of the cleaner's metrics.
func cleanerMetric(t *testing.T, b *Broker, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(b.Metrics().cleaner)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// readKgo reads the partition from the start through offset last.
func readKgo(t *testing.T, addr, topic string, last int64) []consumed {
	t.Helper()
	cl := newKgo(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	var out []consumed
	ctx := ctxT(t)
	for {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatalf("franz-go fetch: %v", err)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, consumed{off: r.Offset, key: string(r.Key), val: string(r.Value), tombstone: r.Value == nil})
			done = done || r.Offset >= last
		})
		if done {
			return out
		}
	}
}

func readKafkaGo(t *testing.T, addr, topic string, last int64) []consumed {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var out []consumed
	ctx := ctxT(t)
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("kafka-go read: %v", err)
		}
		out = append(out, consumed{off: m.Offset, key: string(m.Key), val: string(m.Value), tombstone: m.Value == nil})
		if m.Offset >= last {
			return out
		}
	}
}

func readKcat(t *testing.T, kcat, addr, topic string) []consumed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// %S is the value's length, -1 for a tombstone.
	out, err := exec.CommandContext(ctx, kcat, "-b", addr, "-t", topic, "-p", "0", "-C", "-o", "beginning", "-e", "-q",
		"-f", "%o\t%k\t%S\t%s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	var recs []consumed
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		f := strings.SplitN(line, "\t", 4)
		if len(f) != 4 {
			t.Fatalf("kcat printed %q", line)
		}
		var off int64
		fmt.Sscan(f[0], &off)
		recs = append(recs, consumed{off: off, key: f[1], val: f[3], tombstone: f[2] == "-1"})
	}
	return recs
}

// TestCompactedTopicTransactions: committed transactional records are kept
// as values, aborted ones are removed by the clean (a read_uncommitted
// reader no longer sees them either), and read_committed readers of
// franz-go and kafka-go see the latest committed value per key.
func TestCompactedTopicTransactions(t *testing.T) {
	b, addr := testBroker(t, Options{})
	ctx := ctxT(t)
	plain := newKgo(t, addr, kgo.ProducerLinger(0))
	const topic = "txtable"
	resp, err := kadm.NewClient(plain).CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy": kadm.StringPtr("compact"), "segment.bytes": kadm.StringPtr("1024")}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	tx := newKgo(t, addr, kgo.TransactionalID("compact-tx"), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	want := map[string]consumed{}
	txn := func(commit bool, kvs ...string) {
		t.Helper()
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for i := 0; i < len(kvs); i += 2 {
			recs = append(recs, &kgo.Record{Key: []byte(kvs[i]), Value: []byte(kvs[i+1])})
		}
		if err := tx.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		if commit {
			for _, r := range recs {
				want[string(r.Key)] = consumed{off: r.Offset, key: string(r.Key), val: string(r.Value)}
			}
		}
	}
	for round := range 5 {
		txn(true, "a", fmt.Sprint("a-committed-", round), "b", fmt.Sprint("b-committed-", round))
		txn(false, "a", "aborted", "c", "aborted")
	}
	txn(true, "b", "b-last")
	d := &kgo.Record{Topic: topic, Key: []byte("d"), Value: []byte("plain")}
	if err := plain.ProduceSync(ctx, d).FirstErr(); err != nil {
		t.Fatal(err)
	}
	want["d"] = consumed{off: d.Offset, key: "d", val: "plain"}
	noise := make([]byte, 600)
	rand.Read(noise)
	roll := &kgo.Record{Topic: topic, Key: []byte("zz-roll"), Value: []byte(hex.EncodeToString(noise))}
	if err := plain.ProduceSync(ctx, roll).FirstErr(); err != nil {
		t.Fatal(err)
	}
	want["zz-roll"] = consumed{off: roll.Offset, key: "zz-roll", val: string(roll.Value)}
	if err := b.CleanNow(ctx); err != nil {
		t.Fatal(err)
	}
	for _, iso := range []kgo.IsolationLevel{kgo.ReadCommitted(), kgo.ReadUncommitted()} {
		cl := newKgo(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}), kgo.FetchIsolationLevel(iso))
		var got []consumed
		for done := false; !done; {
			fs := cl.PollFetches(ctx)
			if err := fs.Err(); err != nil {
				t.Fatal(err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				got = append(got, consumed{off: r.Offset, key: string(r.Key), val: string(r.Value)})
				done = done || r.Offset >= roll.Offset
			})
		}
		checkTable(t, fmt.Sprintf("franz-go %v", iso), got, want)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond, IsolationLevel: kafka.ReadCommitted})
	defer r.Close()
	var got []consumed
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("kafka-go read: %v", err)
		}
		if m.Offset >= roll.Offset {
			got = append(got, consumed{off: m.Offset, key: string(m.Key), val: string(m.Value)})
			break
		}
		if (string(m.Key) == "\x00\x00\x00\x01" || string(m.Key) == "\x00\x00\x00\x00") && len(m.Value) == 6 {
			continue // kafka-go hands out transaction markers as messages
		}
		got = append(got, consumed{off: m.Offset, key: string(m.Key), val: string(m.Value)})
	}
	checkTable(t, "kafka-go read_committed", got, want)
}
