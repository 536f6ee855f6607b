package kafka_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/file/filetest"
	"github.com/sluicehq/sluice/sources/kafka"
)

// rawBatch encodes values as one uncompressed magic v2 batch.
func rawBatch(values ...string) []byte {
	rb := kmsg.NewRecordBatch()
	rb.Magic = 2
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = -1, -1, -1
	rb.FirstTimestamp, rb.MaxTimestamp = time.Now().UnixMilli(), time.Now().UnixMilli()
	rb.LastOffsetDelta = int32(len(values) - 1)
	rb.NumRecords = int32(len(values))
	for i, v := range values {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		r.Value = []byte(v)
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		rb.Records = r.AppendTo(rb.Records)
	}
	return recrc(rb, 0, rb.Records)
}

// recrc encodes rb with records recs and compression attribute codec, and
// a CRC that matches: only what is inside may be wrong.
func recrc(rb kmsg.RecordBatch, codec int16, recs []byte) []byte {
	rb.Attributes, rb.Records = codec, recs
	rb.Length = int32(49 + len(recs))
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// corruptBatches are batches a broker that does not decode records (kfake)
// stores: records that stop decoding part-way (franz-go hands out the
// first two and then nothing, without an error) and a gzip payload that
// does not decompress (a fetch error at every fetch).
func corruptBatches(t *testing.T) map[string][]byte {
	good := rawBatch("c0", "c1", "c2")
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(good); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(rb.Records)
	w.Close()
	badGzip := gz.Bytes()
	badGzip[len(badGzip)/2] ^= 0xff
	return map[string][]byte{
		"truncated record": recrc(rb, 0, rb.Records[:len(rb.Records)-1]),
		"bad gzip":         recrc(rb, 1, badGzip),
	}
}

// corruptTopic is kfake with topic "events": v0..v4 and the batch bad,
// one batch each; tail produces v5..v9 after them.
//
// franz-go drops the undecodable records of a batch without an error when
// batches follow it in the same fetch answer; when none do, the partition
// stalls. So the tests read up to the bad batch before producing the tail.
func corruptTopic(t *testing.T, bad []byte) (brokers []string, tail func()) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers = c.ListenAddrs()
	produce := rawProducer(t, brokers)
	produce(rawBatch("v0", "v1", "v2", "v3", "v4"))
	produce(bad)
	return brokers, func() { produce(rawBatch("v5", "v6", "v7", "v8", "v9")) }
}

// rawProducer returns a function that produces one batch, as given, to
// partition 0 of "events".
func rawProducer(t *testing.T, brokers []string) func(batch []byte) {
	t.Helper()
	// Produce v13 names topics by ID; an older version names them.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxVersions(kversion.V3_6_0()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return func(batch []byte) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "events"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(context.Background(), cl)
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("produce: %v %+v", err, resp)
		}
	}
}

// readValues calls Next until want records arrived, or an error.
func readValues(t *testing.T, src engine.Source, want int) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < want {
		recs, _, err := src.Next(ctx, engine.Limits{})
		if err != nil {
			return got, err
		}
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
	}
	return got, nil
}

func TestDirectOnCorrupt(t *testing.T) {
	for name, bad := range corruptBatches(t) {
		t.Run(name, func(t *testing.T) {
			brokers, tail := corruptTopic(t, bad)
			at0 := engine.Positions{{Topic: "events", Partition: 0}: 0}

			fail, _ := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"},
				Pipeline: "p", Logger: quiet})
			kafka.SetStallTimeout(fail, 300*time.Millisecond)
			if err := fail.Open(context.Background(), at0); err != nil {
				t.Fatal(err)
			}
			defer fail.Close()
			_, err := readValues(t, fail, 8)
			if !errors.Is(err, kafka.ErrCorrupt) || engine.IsRetryable(err) {
				t.Fatalf("on-corrupt fail: %v", err)
			}
			for _, part := range []string{"events/0", "..7", "on-corrupt: skip"} {
				if !strings.Contains(err.Error(), part) {
					t.Fatalf("error %q does not say %q", err, part)
				}
			}

			m := kafka.NewMetrics(nil)
			skip, _ := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"},
				SkipCorrupt: true, Pipeline: "p", Logger: quiet, Metrics: m})
			kafka.SetStallTimeout(skip, 300*time.Millisecond)
			if err := skip.Open(context.Background(), at0); err != nil {
				t.Fatal(err)
			}
			defer skip.Close()
			// The records before the bad one in its batch are delivered.
			want, lost := "v0 v1 v2 v3 v4", 3.0
			if name == "truncated record" {
				want, lost = "v0 v1 v2 v3 v4 c0 c1", 1
			}
			got, err := readValues(t, skip, len(strings.Fields(want)))
			if err != nil {
				t.Fatalf("on-corrupt skip: %v", err)
			}
			tail()
			more, err := readValues(t, skip, 5)
			if err != nil {
				t.Fatalf("on-corrupt skip: %v", err)
			}
			want += " v5 v6 v7 v8 v9"
			if got := strings.Join(append(got, more...), " "); got != want {
				t.Fatalf("on-corrupt skip read %q, want %q", got, want)
			}
			if n := testutil.ToFloat64(m.Corrupt.WithLabelValues("p", "events", "0")); n != lost {
				t.Fatalf("sluice_records_corrupt_total %v, want %v", n, lost)
			}
		})
	}
}

// TestReceiverOnCorrupt runs receiver pipelines (write-ahead log,
// exactly-once, into the file sink) over a batch whose gzip payload does
// not decompress: fail stops the pipeline naming the batch; skip delivers
// every record around it, and a restart does not meet it again.
func TestReceiverOnCorrupt(t *testing.T) {
	brokers, tail := corruptTopic(t, corruptBatches(t)["bad gzip"])
	tail()
	newReceiver := func(walDir string, skip bool, m *kafka.Metrics) *kafka.Receiver {
		src, err := kafka.NewReceiver(kafka.ReceiverConfig{
			Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"}, Start: "earliest",
			Group: "recv-" + strconv.FormatBool(skip), BlockInterval: 50 * time.Millisecond, WALDir: walDir,
			SkipCorrupt: skip, Delivery: engine.ExactlyOnce, Pipeline: "p", Logger: quiet, Metrics: m,
		})
		if err != nil {
			t.Fatal(err)
		}
		return src
	}

	err := runPipelineErr(t, newReceiver(filepath.Join(t.TempDir(), "wal"), false, nil), t.TempDir())
	if !errors.Is(err, kafka.ErrCorrupt) || !strings.Contains(err.Error(), "events/0: offsets 5..7") ||
		!strings.Contains(err.Error(), "on-corrupt: skip") {
		t.Fatalf("on-corrupt fail: %v", err)
	}

	m := kafka.NewMetrics(nil)
	out, walDir := t.TempDir(), filepath.Join(t.TempDir(), "wal")
	runPipelineIdle(t, newReceiver(walDir, true, m), out, 0, 0, 3*time.Second)
	exactlyOnce(t, filetest.Lines(t, out), 10)
	if n := testutil.ToFloat64(m.Corrupt.WithLabelValues("p", "events", "0")); n != 3 {
		t.Fatalf("sluice_records_corrupt_total %v, want 3", n)
	}
	// The group's offset is past the batch: a restart reads nothing again.
	runPipelineIdle(t, newReceiver(walDir, true, m), out, 0, 0, 3*time.Second)
	exactlyOnce(t, filetest.Lines(t, out), 10)
	if n := testutil.ToFloat64(m.Corrupt.WithLabelValues("p", "events", "0")); n != 3 {
		t.Fatalf("after a restart sluice_records_corrupt_total %v, want 3", n)
	}
}

// startBroker runs the built-in broker on dir until the test ends or stop
// is called.
func startBroker(t *testing.T, dir string) (brokers []string, stop func()) {
	t.Helper()
	b, err := broker.Open(dir, broker.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { b.Close() }) }
	t.Cleanup(stop)
	l, err := b.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go b.Serve(l)
	return []string{l.Addr().String()}, stop
}

// TestDirectOnCorruptSegment flips a byte of a batch in a built-in
// broker's segment after a clean stop: the broker checks it on read and
// answers CORRUPT_MESSAGE instead of serving it, which franz-go retries
// without a word, so the partition stalls and the source probes it; fail
// stops with the batch's offsets, skip delivers the batches around it.
func TestDirectOnCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	brokers, stop := startBroker(t, dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	produce := rawProducer(t, brokers)
	first := rawBatch("v0", "v1", "v2", "v3", "v4")
	produce(first)
	produce(rawBatch("c0", "c1", "c2"))
	produce(rawBatch("v5", "v6", "v7", "v8", "v9"))
	stop()
	seg := filepath.Join(dir, "topics", "events", "0", "00000000000000000000.log")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(first)+len(rawBatch("c0", "c1", "c2"))-2] ^= 0x01 // in c2's value
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	brokers, _ = startBroker(t, dir)
	at0 := engine.Positions{{Topic: "events", Partition: 0}: 0}

	fail, _ := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"},
		Pipeline: "p", Logger: quiet})
	kafka.SetStallTimeout(fail, 300*time.Millisecond)
	if err := fail.Open(context.Background(), at0); err != nil {
		t.Fatal(err)
	}
	defer fail.Close()
	if _, err := readValues(t, fail, 13); !errors.Is(err, kafka.ErrCorrupt) || !strings.Contains(err.Error(), "events/0: offsets 5..7") ||
		!strings.Contains(err.Error(), "CRC") {
		t.Fatalf("on-corrupt fail: %v", err)
	}

	m := kafka.NewMetrics(nil)
	skip, _ := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"},
		SkipCorrupt: true, Pipeline: "p", Logger: quiet, Metrics: m})
	kafka.SetStallTimeout(skip, 300*time.Millisecond)
	if err := skip.Open(context.Background(), at0); err != nil {
		t.Fatal(err)
	}
	defer skip.Close()
	got, err := readValues(t, skip, 10)
	if want := "v0 v1 v2 v3 v4 v5 v6 v7 v8 v9"; err != nil || strings.Join(got, " ") != want {
		t.Fatalf("on-corrupt skip read %q (%v), want %q", got, err, want)
	}
	if n := testutil.ToFloat64(m.Corrupt.WithLabelValues("p", "events", "0")); n != 3 {
		t.Fatalf("sluice_records_corrupt_total %v, want 3", n)
	}
}
