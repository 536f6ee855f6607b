package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// lockedBuf is a log destination the test reads while the broker writes.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// diskBatch is a record batch as it lies in a segment file.
type diskBatch struct {
	pos, base, next int64
}

// segmentBatches walks the batch headers of a segment file.
func segmentBatches(t *testing.T, path string) []diskBatch {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []diskBatch
	for pos := 0; pos+61 <= len(data); {
		base := int64(binary.BigEndian.Uint64(data[pos:]))
		size := 12 + int(binary.BigEndian.Uint32(data[pos+8:]))
		last := int64(binary.BigEndian.Uint32(data[pos+23:]))
		out = append(out, diskBatch{pos: int64(pos), base: base, next: base + last + 1})
		pos += size
	}
	return out
}

// segmentFiles lists a partition's segment files, oldest first.
func segmentFiles(t *testing.T, dir, topic string, partition int) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "topics", topic, fmt.Sprint(partition), "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no segments of %s-%d: %v", topic, partition, err)
	}
	return files
}

func flipAt(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b[:], at); err != nil {
		t.Fatal(err)
	}
}

// produceRounds writes rounds batches of perBatch records to each listed
// partition; record values are "p<partition>-<n>".
func produceRounds(t *testing.T, cl *kgo.Client, topic string, parts []int32, rounds, perBatch int) {
	t.Helper()
	n := 0
	for range rounds {
		var recs []*kgo.Record
		for _, p := range parts {
			for i := range perBatch {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "p%d-%d", p, n+i)})
			}
		}
		if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		n += perBatch
	}
}

// consumeUntil reads tp from offset 0 with franz-go until it has want
// records or a fetch error, and returns both. Retryable errors are kept, as
// a consumer that wants to hear of them asks.
func consumeUntil(t *testing.T, addr, topic string, partition int32, want int) ([]*kgo.Record, error) {
	t.Helper()
	cl := newKgo(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(0)}}),
		kgo.KeepRetryableFetchErrors(), kgo.FetchMaxWait(100*time.Millisecond))
	ctx := ctxT(t)
	var got []*kgo.Record
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s-%d: %d of %d records, then nothing: %v", topic, partition, len(got), want, ctx.Err())
		}
		got = append(got, fs.Records()...)
		for _, e := range fs.Errors() {
			// franz-go also reports the topic's other partitions' metadata
			// errors (an offline partition has no leader).
			if e.Partition == partition {
				return got, e.Err
			}
		}
	}
	return got, nil
}

// checkValues says the records are partition p's first ones, in order.
func checkValues(t *testing.T, recs []*kgo.Record, p int32) {
	t.Helper()
	for i, r := range recs {
		if r.Offset != int64(i) || string(r.Value) != fmt.Sprintf("p%d-%d", p, i) {
			t.Fatalf("record %d of partition %d: offset %d value %q", i, p, r.Offset, r.Value)
		}
	}
}

func partitionMeta(t *testing.T, cl *kgo.Client, topic string, partition int32) kmsg.MetadataResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Topics[0].Partitions {
		if p.Partition == partition {
			return p
		}
	}
	t.Fatalf("no metadata for %s-%d", topic, partition)
	return kmsg.MetadataResponseTopicPartition{}
}

// rawFetch sends one fetch for topic/partition at offset straight to the
// broker and returns the partition's answer.
func rawFetch(t *testing.T, cl *kgo.Client, topic string, partition int32, offset int64) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := fetchReq(topic, offset, 0, 1, 1<<20, 1<<20)
	req.Topics[0].Partitions[0].Partition = partition
	resp, err := req.RequestWith(ctxT(t), cl.SeedBrokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0]
}

// TestDamagedSealedSegmentAfterCleanStop damages two partitions' sealed
// segments while the broker is stopped: a torn one (the whole broker used
// to refuse to start) and one with a flipped payload byte (it used to be
// served, and consumers looped on CRC errors).
func TestDamagedSealedSegmentAfterCleanStop(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	cl := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "dmg", 3, 1
	seg := kmsg.NewCreateTopicsRequestTopicConfig()
	seg.Name, seg.Value = "segment.bytes", kmsg.StringPtr("1024")
	rt.Configs = append(rt.Configs, seg)
	req.Topics = append(req.Topics, rt)
	if resp, err := req.RequestWith(ctxT(t), cl); err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create topic: %v %+v", err, resp)
	}
	const rounds, perBatch = 30, 5
	produceRounds(t, cl, "dmg", []int32{0, 1, 2}, rounds, perBatch)
	cl.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Partition 1: its second segment loses its last 10 bytes.
	p1 := segmentFiles(t, dir, "dmg", 1)
	fi, err := os.Stat(p1[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p1[1], fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	// Partition 2: a value byte of the first batch of its third segment.
	p2 := segmentFiles(t, dir, "dmg", 2)
	bad := segmentBatches(t, p2[2])[0]
	flipAt(t, p2[2], bad.pos+70)

	var logs lockedBuf
	b2, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("the broker does not start: %v", err)
	}
	t.Cleanup(func() { b2.Close() })
	l, err := b2.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	if !strings.Contains(logs.String(), "partition=dmg-1") || !strings.Contains(logs.String(), "file="+p1[1]) {
		t.Fatalf("no log line naming the offline partition and its file:\n%s", logs.String())
	}
	cl = newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))

	// The damaged partition is offline, as Kafka reports one.
	md := partitionMeta(t, cl, "dmg", 1)
	if md.Leader != -1 || md.ErrorCode != kerr.LeaderNotAvailable.Code || len(md.OfflineReplicas) != 1 {
		t.Fatalf("metadata of the offline partition: leader %d error %d offline %v", md.Leader, md.ErrorCode, md.OfflineReplicas)
	}
	if fp := rawFetch(t, cl, "dmg", 1, 0); fp.ErrorCode != kerr.KafkaStorageError.Code {
		t.Fatalf("fetch from the offline partition: error %d", fp.ErrorCode)
	}
	if off := listOffsetErr(t, cl, "dmg", 1); off != kerr.KafkaStorageError.Code {
		t.Fatalf("list offsets of the offline partition: error %d", off)
	}
	if testutil.ToFloat64(b2.Metrics().offline) != 1 {
		t.Fatal("the offline partition is not in sluice_broker_offline_partitions")
	}

	// Partition 0 is served whole, and takes new records.
	got, err := consumeUntil(t, addr, "dmg", 0, rounds*perBatch)
	if err != nil || len(got) != rounds*perBatch {
		t.Fatalf("partition 0: %d records, %v", len(got), err)
	}
	checkValues(t, got, 0)
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "dmg", Partition: 0, Value: []byte("more")}).FirstErr(); err != nil {
		t.Fatalf("produce to a healthy partition: %v", err)
	}

	// Partition 2 serves every record before the flipped byte, then the
	// consumer hears CORRUPT_MESSAGE instead of a batch that fails its CRC.
	got, err = consumeUntil(t, addr, "dmg", 2, rounds*perBatch)
	if !errors.Is(err, kerr.CorruptMessage) || int64(len(got)) != bad.base {
		t.Fatalf("partition 2: %d records then %v; want %d records then CORRUPT_MESSAGE", len(got), err, bad.base)
	}
	checkValues(t, got, 2)
	for range 3 {
		if fp := rawFetch(t, cl, "dmg", 2, bad.base); fp.ErrorCode != kerr.CorruptMessage.Code || len(fp.RecordBatches) != 0 {
			t.Fatalf("fetch at the corrupt batch: error %d, %d bytes", fp.ErrorCode, len(fp.RecordBatches))
		}
	}
	if n := strings.Count(logs.String(), `msg="corrupt record batch`); n != 1 {
		t.Fatalf("corrupt batch logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("partition=dmg-2 offset=%d", bad.base)) {
		t.Fatalf("the corrupt batch's log line does not name partition and offset:\n%s", logs.String())
	}
	if testutil.ToFloat64(b2.Metrics().corrupt) != 1 {
		t.Fatal("sluice_broker_corrupt_batches_total did not count the batch")
	}
	// A consumer that skips the batch reads on.
	if fp := rawFetch(t, cl, "dmg", 2, bad.next); fp.ErrorCode != 0 || len(fp.RecordBatches) == 0 {
		t.Fatalf("fetch past the corrupt batch: error %d, %d bytes", fp.ErrorCode, len(fp.RecordBatches))
	}

	// librdkafka sees the offline partition the same way, and stops at the
	// corrupt batch with the error rather than looping.
	if kcat, err := exec.LookPath("kcat"); err == nil {
		out, err := exec.CommandContext(ctxT(t), kcat, "-b", addr, "-L", "-t", "dmg").CombinedOutput()
		if err != nil {
			t.Fatalf("kcat -L: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "partition 1, leader -1") || !strings.Contains(string(out), "Leader not available") {
			t.Fatalf("kcat -L does not show partition 1 offline:\n%s", out)
		}
		cmd := exec.CommandContext(ctxT(t), kcat, "-b", addr, "-C", "-t", "dmg", "-p", "2", "-o", "beginning", "-e", "-f", "%s\n")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		// librdkafka calls CORRUPT_MESSAGE (2) "Invalid message".
		if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "Invalid message") {
			t.Fatalf("kcat consuming partition 2: %v, want it to stop on CORRUPT_MESSAGE:\n%s", err, stderr.String())
		}
		if lines := strings.Split(strings.TrimSpace(stdout.String()), "\n"); int64(len(lines)) != bad.base || lines[0] != "p2-0" {
			t.Fatalf("kcat consumed %d records before the error, want %d:\n%s", len(lines), bad.base, stdout.String())
		}
	}
}

func listOffsetErr(t *testing.T, cl *kgo.Client, topic string, partition int32) int16 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = partition, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl.SeedBrokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// TestDamagedActiveTailAfterCleanStop damages the newest batch while the
// broker is stopped: a torn one is cut at the restart, one whose CRC fails
// is kept but never served; either way everything before it is served and
// the restart logs the partition and offset.
func TestDamagedActiveTailAfterCleanStop(t *testing.T) {
	for _, torn := range []bool{true, false} {
		t.Run(map[bool]string{true: "torn", false: "flipped byte"}[torn], func(t *testing.T) {
			dir := t.TempDir()
			b, addr := testBrokerDir(t, dir, Options{})
			cl := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			createTopic(t, cl, "tail", 1)
			produceRounds(t, cl, "tail", []int32{0}, 10, 4)
			cl.Close()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			files := segmentFiles(t, dir, "tail", 0)
			path := files[len(files)-1]
			batches := segmentBatches(t, path)
			last := batches[len(batches)-1]
			if torn {
				fi, _ := os.Stat(path)
				if err := os.Truncate(path, fi.Size()-5); err != nil {
					t.Fatal(err)
				}
			} else {
				flipAt(t, path, last.pos+65)
			}

			var logs lockedBuf
			b2, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b2.Close() })
			l, err := b2.Listen("127.0.0.1:0", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), fmt.Sprintf("partition=tail-0 offset=%d", last.base)) {
				t.Fatalf("not logged with partition and offset:\n%s", logs.String())
			}
			addr = l.Addr().String()
			cl = newKgo(t, addr)
			wantEnd := last.next
			if torn {
				wantEnd = last.base
			}
			if end := listOffset(t, cl, "tail", 0, -1); end != wantEnd {
				t.Fatalf("log end %d, want %d", end, wantEnd)
			}
			got, err := consumeUntil(t, addr, "tail", 0, int(wantEnd))
			if torn && err != nil || !torn && !errors.Is(err, kerr.CorruptMessage) || int64(len(got)) != last.base {
				t.Fatalf("%d records then %v; want %d", len(got), err, last.base)
			}
			checkValues(t, got, 0)
		})
	}
}

// TestCorruptionUnderRunningBroker flips a byte of a batch already written
// while the broker runs and before anyone read it.
func TestCorruptionUnderRunningBroker(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	cl := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, cl, "live", 2)
	produceRounds(t, cl, "live", []int32{0, 1}, 20, 10)

	files := segmentFiles(t, dir, "live", 0)
	bad := segmentBatches(t, files[0])[7]
	flipAt(t, files[0], bad.pos+80)

	got, err := consumeUntil(t, addr, "live", 0, 200)
	if !errors.Is(err, kerr.CorruptMessage) || int64(len(got)) != bad.base {
		t.Fatalf("partition 0: %d records then %v; want %d then CORRUPT_MESSAGE", len(got), err, bad.base)
	}
	checkValues(t, got, 0)
	// The other partition is served whole, and both take new records.
	got, err = consumeUntil(t, addr, "live", 1, 200)
	if err != nil || len(got) != 200 {
		t.Fatalf("partition 1: %d records, %v", len(got), err)
	}
	checkValues(t, got, 1)
	produceRounds(t, cl, "live", []int32{0, 1}, 1, 1)
	if fp := rawFetch(t, cl, "live", 0, bad.base); fp.ErrorCode != kerr.CorruptMessage.Code {
		t.Fatalf("fetch at the corrupt batch: error %d", fp.ErrorCode)
	}
	if fp := rawFetch(t, cl, "live", 0, 200); fp.ErrorCode != 0 || len(fp.RecordBatches) == 0 {
		t.Fatalf("fetch of the record produced after: error %d, %d bytes", fp.ErrorCode, len(fp.RecordBatches))
	}
	if testutil.ToFloat64(b.Metrics().corrupt) != 1 {
		t.Fatal("sluice_broker_corrupt_batches_total did not count the batch")
	}
}
