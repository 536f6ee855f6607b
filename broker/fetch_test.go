package broker

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func fetchReq(topic string, offset int64, maxWait, minBytes, maxBytes, partMax int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = maxWait, minBytes, maxBytes
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes = offset, partMax
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// batchCount counts whole record batches and says whether bytes are left.
func batchCount(b []byte) (n int, partial bool) {
	for len(b) >= 12 {
		size := 12 + int(binary.BigEndian.Uint32(b[8:]))
		if size > len(b) {
			return n, true
		}
		n++
		b = b[size:]
	}
	return n, len(b) > 0
}

func TestFetchLimitsAndLongPoll(t *testing.T) {
	_, addr := testBroker(t, Options{})
	// Uncompressed, so batch sizes are known.
	cl := newKgo(t, addr, kgo.DisableIdempotentWrite(), kgo.ProducerBatchCompression(kgo.NoCompression()))
	createTopic(t, cl, "poll", 1)
	value := bytes.Repeat([]byte("v"), 1000)
	for range 10 {
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "poll", Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(req *kmsg.FetchRequest) (kmsg.FetchResponseTopicPartition, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, err := req.RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0], time.Since(start)
	}

	cases := []struct {
		name        string
		req         *kmsg.FetchRequest
		wantBatches int
	}{
		{"all", fetchReq("poll", 0, 0, 1, 1<<20, 1<<20), 10},
		{"max bytes", fetchReq("poll", 0, 0, 1, 2500, 1<<20), 2},
		{"partition max bytes", fetchReq("poll", 0, 0, 1, 1<<20, 3500), 3},
		{"limit below one batch still gets one", fetchReq("poll", 0, 0, 1, 10, 10), 1},
		{"from the middle", fetchReq("poll", 7, 0, 1, 1<<20, 1<<20), 3},
		{"at the end", fetchReq("poll", 10, 0, 1, 1<<20, 1<<20), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, _ := fetch(c.req)
			if p.ErrorCode != 0 {
				t.Fatalf("error code %d", p.ErrorCode)
			}
			if p.RecordBatches == nil {
				t.Fatal("null record set; librdkafka needs an empty one")
			}
			n, partial := batchCount(p.RecordBatches)
			if n != c.wantBatches || partial {
				t.Fatalf("%d batches (partial: %v), want %d whole", n, partial, c.wantBatches)
			}
			if p.HighWatermark != 10 || p.LogStartOffset != 0 {
				t.Fatalf("high watermark %d, log start %d", p.HighWatermark, p.LogStartOffset)
			}
		})
	}

	t.Run("out of range", func(t *testing.T) {
		p, _ := fetch(fetchReq("poll", 11, 0, 1, 1<<20, 1<<20))
		if p.ErrorCode != kerr.OffsetOutOfRange.Code {
			t.Fatalf("error code %d", p.ErrorCode)
		}
	})
	t.Run("waits MaxWait when MinBytes is not reached", func(t *testing.T) {
		p, took := fetch(fetchReq("poll", 9, 300, 1<<20, 1<<20, 1<<20))
		if n, _ := batchCount(p.RecordBatches); n != 1 || took < 300*time.Millisecond {
			t.Fatalf("%d batches after %v", n, took)
		}
	})
	t.Run("long poll wakes on produce", func(t *testing.T) {
		done := make(chan kmsg.FetchResponseTopicPartition, 1)
		go func() {
			p, _ := fetch(fetchReq("poll", 10, 20000, 1, 1<<20, 1<<20))
			done <- p
		}()
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "poll", Value: []byte("wake")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-done:
			if n, _ := batchCount(p.RecordBatches); n != 1 {
				t.Fatalf("woke with %d batches", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("fetch did not wake up on produce")
		}
	})
}

// A response must not wait in the buffer behind a later long-poll on the
// same connection.
func TestPipelinedResponseNotHeldByLongPoll(t *testing.T) {
	_, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "quiet", 1)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f := kmsg.NewRequestFormatter()
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 1
	// While the first fetch waits, the metadata request and the second
	// fetch queue up behind it; when it ends, its response and the
	// metadata response must go out before the second fetch's long wait.
	short := fetchReq("quiet", 0, 300, 1, 1<<20, 1<<20)
	long := fetchReq("quiet", 0, 20000, 1, 1<<20, 1<<20)
	short.Version, long.Version = 11, 11
	// AppendRequest writes the size at the start of its dst: one call each.
	var out []byte
	out = append(out, f.AppendRequest(nil, short, 1)...)
	out = append(out, f.AppendRequest(nil, md, 2)...)
	out = append(out, f.AppendRequest(nil, long, 3)...)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for want := uint32(1); want <= 2; want++ {
		var size [4]byte
		if _, err := io.ReadFull(nc, size[:]); err != nil {
			t.Fatalf("response %d held back by the pending fetch: %v", want, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(nc, body); err != nil {
			t.Fatal(err)
		}
		if corr := binary.BigEndian.Uint32(body); corr != want {
			t.Fatalf("response has correlation id %d, want %d", corr, want)
		}
	}
}
