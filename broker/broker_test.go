package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testBroker opens a broker on a fresh directory and serves it on a
// loopback port chosen by the kernel.
func testBroker(t testing.TB, opts Options) (*Broker, string) {
	t.Helper()
	return testBrokerDir(t, t.TempDir(), opts)
}

func testBrokerDir(t testing.TB, dir string, opts Options) (*Broker, string) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	b, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open broker: %v", err)
	}
	l, err := b.Listen("127.0.0.1:0", nil)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b, l.Addr().String()
}

func testLogger(testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newKgo(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t testing.TB, cl *kgo.Client, name string, partitions int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if code := resp.Topics[0].ErrorCode; code != 0 {
		t.Fatalf("create topic %s: error code %d", name, code)
	}
}

func TestFranzGoRoundTrip(t *testing.T) {
	_, addr := testBroker(t, Options{})
	admin := newKgo(t, addr)
	createTopic(t, admin, "orders", 3)

	const n = 3000
	prod := newKgo(t, addr, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := ctxT(t)
	want := map[int32][]string{}
	for i := range n {
		r := &kgo.Record{Topic: "orders", Partition: int32(i % 3), Value: fmt.Appendf(nil, "value-%d", i)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		if r.Offset != int64(len(want[r.Partition])) {
			t.Fatalf("record %d got offset %d, want %d", i, r.Offset, len(want[r.Partition]))
		}
		want[r.Partition] = append(want[r.Partition], string(r.Value))
		if i == n/2 {
			break
		}
	}
	// The rest asynchronously, so batches form.
	results := make(chan error, n)
	for i := n/2 + 1; i < n; i++ {
		r := &kgo.Record{Topic: "orders", Partition: int32(i % 3), Value: fmt.Appendf(nil, "value-%d", i)}
		want[r.Partition] = append(want[r.Partition], string(r.Value))
		prod.Produce(ctx, r, func(_ *kgo.Record, err error) { results <- err })
	}
	for i := n/2 + 1; i < n; i++ {
		if err := <-results; err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	cons := newKgo(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		"orders": {0: kgo.NewOffset().At(0), 1: kgo.NewOffset().At(0), 2: kgo.NewOffset().At(0)},
	}), kgo.FetchMaxWait(200*time.Millisecond))
	got := map[int32][]string{}
	for total := 0; total < n; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != int64(len(got[r.Partition])) {
				t.Fatalf("partition %d: offset %d after %d records", r.Partition, r.Offset, len(got[r.Partition]))
			}
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			total++
		})
	}
	for p := range int32(3) {
		if fmt.Sprint(got[p]) != fmt.Sprint(want[p]) {
			t.Errorf("partition %d: consumed %d records that differ from the %d produced", p, len(got[p]), len(want[p]))
		}
	}
}

func TestDataDirLayout(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "layout", 2)
	for _, p := range []string{"topics/layout/topic.json", "topics/layout/0/00000000000000000000.log", "topics/layout/1/00000000000000000000.log", "cluster.id"} {
		if _, err := os.Stat(filepath.Join(b.Dir(), p)); err != nil {
			t.Errorf("expected %s in the data directory: %v", p, err)
		}
	}
}

func listOffset(t testing.TB, cl *kgo.Client, topic string, partition int32, ts int64) int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = partition, ts
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("list offsets %s/%d: error code %d", topic, partition, p.ErrorCode)
	}
	return p.Offset
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if b.Addr() != "" {
		t.Fatalf("address %q before listening", b.Addr())
	}
	l, err := b.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.Addr() != l.Addr().String() {
		t.Fatalf("Addr %q, listener %q", b.Addr(), l.Addr())
	}
	if _, err := Open(dir, Options{Logger: testLogger(t)}); err == nil {
		t.Fatal("a second broker opened the same data directory")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Serve(l); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanShutdownFile)); err != nil {
		t.Fatalf("Close did not mark a clean shutdown: %v", err)
	}
	// The directory can be opened again once closed.
	b2, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b2.Close()
}

func TestAdvertisedAddr(t *testing.T) {
	cases := []struct {
		addr     string
		wantErr  bool
		wantHost string
		wantPort int32
	}{
		{"", false, "127.0.0.1", 0},
		{"kafka.example.com:19092", false, "kafka.example.com", 19092},
		{"kafka.example.com", true, "", 0},
	}
	for _, c := range cases {
		b, err := Open(t.TempDir(), Options{AdvertisedAddr: c.addr, Logger: testLogger(t)})
		if c.wantErr {
			if err == nil {
				b.Close()
				t.Fatalf("%q: accepted", c.addr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.addr, err)
		}
		t.Cleanup(func() { b.Close() })
		l, err := b.Listen("127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		// Ask directly: a client would follow the advertised address.
		md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctxT(t), kgoBroker(t, l.Addr().String()))
		if err != nil {
			t.Fatal(err)
		}
		got := md.Brokers[0]
		wantPort := c.wantPort
		if wantPort == 0 {
			wantPort = int32(l.Addr().(*net.TCPAddr).Port)
		}
		if got.Host != c.wantHost || got.Port != wantPort {
			t.Fatalf("%q: advertised %s:%d", c.addr, got.Host, got.Port)
		}
	}
}

// kgoBroker returns a Requestor that talks to the seed broker itself,
// without following the advertised address.
func kgoBroker(t *testing.T, addr string) kmsg.Requestor {
	return newKgo(t, addr).SeedBrokers()[0]
}
