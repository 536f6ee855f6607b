package broker

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// idemTestBatch is testBatch from an idempotent producer.
func idemTestBatch(id int64, epoch int16, seq int32, values ...string) []byte {
	b := testBatch(values...)
	binary.BigEndian.PutUint64(b[43:], uint64(id))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func initProducerID(t *testing.T, r kmsg.Requestor, txnID *string) *kmsg.InitProducerIDResponse {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID = txnID
	resp, err := req.RequestWith(ctxT(t), r)
	if err != nil {
		t.Fatalf("InitProducerId: %v", err)
	}
	return resp
}

// produceRaw sends one batch to partition 0 with acks=all and returns the
// partition's answer.
func produceRaw(t *testing.T, r kmsg.Requestor, topic string, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), r)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	return resp.Topics[0].Partitions[0]
}

// consumeAll reads every partition of topic from offset 0 to its end and
// returns the values per partition in offset order.
func consumeAll(t *testing.T, b *Broker, addr, topic string, partitions int32) map[int32][]string {
	t.Helper()
	offs := map[int32]kgo.Offset{}
	want := 0
	for p := range partitions {
		offs[p] = kgo.NewOffset().At(0)
		want += int(b.topics.partition(topic, p).EndOffset())
	}
	cons := newKgo(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}), kgo.FetchMaxWait(200*time.Millisecond))
	got := map[int32][]string{}
	ctx := ctxT(t)
	for n := 0; n < want; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			n++
		})
	}
	return got
}

// TestFranzGoIdempotentProducer uses franz-go's default producer, which is
// idempotent: it must get a producer id and write every record once, in
// order, synchronously and with batches in flight.
func TestFranzGoIdempotentProducer(t *testing.T) {
	m := NewMetrics()
	b, addr := testBroker(t, Options{Metrics: m})
	cl := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, cl, "idem", 3)
	ctx := ctxT(t)
	const n = 3000
	want := map[int32][]string{}
	errs := make(chan error, n)
	for i := range n {
		r := &kgo.Record{Topic: "idem", Partition: int32(i % 3), Value: fmt.Appendf(nil, "v%d", i)}
		want[r.Partition] = append(want[r.Partition], string(r.Value))
		if i < 30 {
			errs <- cl.ProduceSync(ctx, r).FirstErr()
			continue
		}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) { errs <- err })
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	got := consumeAll(t, b, addr, "idem", 3)
	for p := range int32(3) {
		if fmt.Sprint(got[p]) != fmt.Sprint(want[p]) {
			t.Errorf("partition %d holds %d records, not the %d produced in order", p, len(got[p]), len(want[p]))
		}
	}
	if got := testutil.ToFloat64(m.producerIDs); got != 1 {
		t.Errorf("producer ids allocated: %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.producers, "sluice_broker_idempotent_producers"); got != 3 {
		t.Errorf("partitions reporting tracked producers: %d, want 3", got)
	}
}

// cutProxy forwards Kafka connections to a broker and cuts some produce
// requests off: it forwards the request, waits for the broker's answer,
// and closes both connections instead of passing the answer on. The broker
// has written the batch; the client cannot know and must retry it.
type cutProxy struct {
	t      *testing.T
	l      net.Listener
	target string
	every  int32 // cut every every-th produce request...
	limit  int32 // ...up to limit of them
	seen   atomic.Int32
	cuts   atomic.Int32
	// onCut, if set, runs after an answer is held back and before the
	// client's connection is closed, so the client cannot retry yet.
	onCut func()

	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, every, limit int32) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, l: l, every: every, limit: limit}
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *cutProxy) serve(target string) {
	p.target = target
	go func() {
		for {
			c, err := p.l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.pipe(c, up)
		}
	}()
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	f := make([]byte, 4+binary.BigEndian.Uint32(size[:]))
	copy(f, size[:])
	_, err := io.ReadFull(r, f[4:])
	return f, err
}

func (p *cutProxy) pipe(client, broker net.Conn) {
	var mu sync.Mutex
	cut := map[int32]bool{} // correlation ids whose answers end the connection
	closeBoth := func() { client.Close(); broker.Close() }
	go func() {
		defer closeBoth()
		r := bufio.NewReader(client)
		for {
			f, err := readFrame(r)
			if err != nil || len(f) < 12 {
				return
			}
			key, corr := int16(binary.BigEndian.Uint16(f[4:])), int32(binary.BigEndian.Uint32(f[8:]))
			if key == int16(kmsg.Produce) {
				if n := p.seen.Add(1); n%p.every == 0 && n/p.every <= p.limit {
					mu.Lock()
					cut[corr] = true
					mu.Unlock()
				}
			}
			if _, err := broker.Write(f); err != nil {
				return
			}
		}
	}()
	defer closeBoth()
	r := bufio.NewReader(broker)
	for {
		f, err := readFrame(r)
		if err != nil || len(f) < 8 {
			return
		}
		corr := int32(binary.BigEndian.Uint32(f[4:]))
		mu.Lock()
		drop := cut[corr]
		mu.Unlock()
		if drop {
			p.cuts.Add(1)
			if p.onCut != nil {
				p.onCut()
			}
			return
		}
		if _, err := client.Write(f); err != nil {
			return
		}
	}
}

// TestIdempotentProducerCutMidRequestWritesOnce is issue 4's test: a
// franz-go idempotent producer whose connection is cut after the broker has
// written a produce request, but before the client has the answer, retries
// it, and the log holds every record exactly once, in order.
func TestIdempotentProducerCutMidRequestWritesOnce(t *testing.T) {
	const cuts = 6
	proxy := newCutProxy(t, 3, cuts)
	m := NewMetrics()
	// Clients must come back through the proxy after metadata, too.
	b, addr := testBroker(t, Options{Metrics: m, AdvertisedAddr: proxy.l.Addr().String()})
	proxy.serve(addr)
	admin := newKgo(t, addr)
	createTopic(t, admin, "cut", 2)

	prod := newKgo(t, proxy.l.Addr().String(), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }))
	ctx := ctxT(t)
	const n = 2000
	want := map[int32][]string{}
	errs := make(chan error, n)
	for i := range n {
		r := &kgo.Record{Topic: "cut", Partition: int32(i % 2), Value: fmt.Appendf(nil, "r%04d", i)}
		want[r.Partition] = append(want[r.Partition], string(r.Value))
		cb := func(_ *kgo.Record, err error) { errs <- err }
		if i%100 == 0 {
			// Now and then wait, so requests stay small and many.
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
			errs <- nil
			continue
		}
		prod.Produce(ctx, r, cb)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	if got := proxy.cuts.Load(); got != cuts {
		t.Fatalf("the proxy cut %d produce answers, want %d (saw %d produce requests)", got, cuts, proxy.seen.Load())
	}
	got := consumeAll(t, b, addr, "cut", 2)
	for p := range int32(2) {
		if fmt.Sprint(got[p]) != fmt.Sprint(want[p]) {
			seen := map[string]int{}
			dups := 0
			for _, v := range got[p] {
				if seen[v]++; seen[v] == 2 {
					dups++
				}
			}
			t.Errorf("partition %d holds %d records (%d of them twice), want the %d produced, once each, in order", p, len(got[p]), dups, len(want[p]))
		}
	}
	if d := testutil.ToFloat64(m.duplicates.WithLabelValues("cut")); d < cuts {
		t.Errorf("broker recognised %v retried batches, want at least one per cut (%d)", d, cuts)
	}
}

// TestIdempotentRetryAfterBrokerKill is the cut-connection test with a
// crash in the middle: the broker process is SIGKILLed right after it has
// written a batch whose answer the proxy held back, and restarted on the
// same port. The client's retry reaches a broker that rebuilt producer state
// from the log after an unclean stop, which must recognise it.
func TestIdempotentRetryAfterBrokerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	dir := t.TempDir()
	proxy := newCutProxy(t, 5, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	brokerAddr := l.Addr().String()
	l.Close()
	_, cmd := startChild(t, dir, crashListenEnv+"="+brokerAddr, crashAdvertiseEnv+"="+proxy.l.Addr().String())
	killed := make(chan struct{})
	proxy.onCut = func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(killed)
	}
	proxy.serve(brokerAddr)
	createTopic(t, newKgo(t, brokerAddr), "kill", 2)

	prod := newKgo(t, proxy.l.Addr().String(), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(1024), kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	ctx := ctxT(t)
	const n = 3000
	want := map[int32][]string{}
	errs := make(chan error, n)
	for i := range n {
		r := &kgo.Record{Topic: "kill", Partition: int32(i % 2), Value: fmt.Appendf(nil, "k%04d", i)}
		want[r.Partition] = append(want[r.Partition], string(r.Value))
		prod.Produce(ctx, r, func(_ *kgo.Record, err error) { errs <- err })
	}
	select {
	case <-killed:
	case <-ctx.Done():
		t.Fatal("the proxy never cut a produce answer")
	}
	m := NewMetrics()
	b, err := Open(dir, Options{Metrics: m, AdvertisedAddr: proxy.l.Addr().String(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Listen(brokerAddr, nil); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	got := consumeAll(t, b, brokerAddr, "kill", 2)
	for p := range int32(2) {
		if fmt.Sprint(got[p]) != fmt.Sprint(want[p]) {
			t.Errorf("partition %d holds %d records, want the %d produced, once each, in order", p, len(got[p]), len(want[p]))
		}
	}
	if d := testutil.ToFloat64(m.duplicates.WithLabelValues("kill")); d < 1 {
		t.Errorf("the restarted broker recognised no retried batch; the held-back one was written twice or not retried")
	}
}

// TestIdempotentRetryAcrossRestart writes batches, restarts the broker,
// and retries them: the retries must be recognised, after a clean stop and
// after one that left no producer snapshot (a crash).
func TestIdempotentRetryAcrossRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			dir := t.TempDir()
			b, addr := testBrokerDir(t, dir, Options{})
			cl := kgoBroker(t, addr)
			createTopic(t, newKgo(t, addr), "again", 1)
			ip := initProducerID(t, cl, nil)
			if ip.ErrorCode != 0 || ip.ProducerEpoch != 0 {
				t.Fatalf("InitProducerId: %+v", ip)
			}
			pid := ip.ProducerID
			for i, c := range []struct {
				seq  int32
				vals []string
				base int64
			}{{0, []string{"a", "b"}, 0}, {2, []string{"c"}, 2}} {
				if rp := produceRaw(t, cl, "again", idemTestBatch(pid, 0, c.seq, c.vals...)); rp.ErrorCode != 0 || rp.BaseOffset != c.base {
					t.Fatalf("batch %d: code %d base %d", i, rp.ErrorCode, rp.BaseOffset)
				}
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if crash {
				// What a crash leaves: no clean marker, no snapshot of
				// the active segment; state must come from the log.
				os.Remove(filepath.Join(dir, cleanShutdownFile))
				snaps, _ := filepath.Glob(filepath.Join(dir, "topics", "again", "0", "*.snapshot"))
				for _, s := range snaps {
					os.Remove(s)
				}
				if len(snaps) == 0 {
					t.Fatal("clean close wrote no producer snapshot")
				}
			}
			b2, addr2 := testBrokerDir(t, dir, Options{})
			cl2 := kgoBroker(t, addr2)
			for _, c := range []struct {
				seq  int32
				vals []string
				code int16
				base int64
			}{
				{2, []string{"c"}, 0, 2},      // retry of the last batch
				{0, []string{"a", "b"}, 0, 0}, // retry of the one before
				{4, []string{"e"}, kerr.OutOfOrderSequenceNumber.Code, -1},
				{3, []string{"d"}, 0, 3},
			} {
				rp := produceRaw(t, cl2, "again", idemTestBatch(pid, 0, c.seq, c.vals...))
				if rp.ErrorCode != c.code || (c.code == 0 && rp.BaseOffset != c.base) {
					t.Fatalf("seq %d after restart: code %d base %d, want code %d base %d", c.seq, rp.ErrorCode, rp.BaseOffset, c.code, c.base)
				}
			}
			if end := b2.topics.partition("again", 0).EndOffset(); end != 4 {
				t.Fatalf("log end %d, want 4: a retry was written twice", end)
			}
			if ip2 := initProducerID(t, cl2, nil); ip2.ProducerID <= pid {
				t.Fatalf("producer id %d handed out again after restart (first was %d)", ip2.ProducerID, pid)
			}
		})
	}
}

func TestProducerIDsNeverRepeat(t *testing.T) {
	dir := t.TempDir()
	a, err := openProducerIDs(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := a.allocate()
	second, _ := a.allocate()
	if first != 0 || second != 1 {
		t.Fatalf("ids %d %d", first, second)
	}
	// A restart skips the rest of the reserved block.
	a, err = openProducerIDs(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := a.allocate(); id != producerIDBlockSize {
		t.Fatalf("after reopen: id %d, want %d", id, producerIDBlockSize)
	}
	// A lost file falls back on the largest id the logs know.
	os.Remove(filepath.Join(dir, producerIDsFile))
	a, err = openProducerIDs(dir, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := a.allocate(); id != 5000 {
		t.Fatalf("after losing the file: id %d, want 5000", id)
	}
	os.WriteFile(filepath.Join(dir, producerIDsFile), []byte("junk"), 0o644)
	if _, err := openProducerIDs(dir, 0); err == nil {
		t.Fatal("a damaged allocation file was accepted")
	}
}

// TestIdempotentProduceErrorCodes checks the codes clients act on, over the
// wire: franz-go resets its producer id on OUT_OF_ORDER_SEQUENCE_NUMBER and
// INVALID_PRODUCER_EPOCH, and fails the batch on INVALID_RECORD.
func TestIdempotentProduceErrorCodes(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "codes", 1)
	cl := kgoBroker(t, addr)
	txn := idemTestBatch(9, 0, 0, "t")
	binary.BigEndian.PutUint16(txn[21:], 0x10) // transactional
	binary.BigEndian.PutUint32(txn[17:], crc32.Checksum(txn[21:], crc32.MakeTable(crc32.Castagnoli)))
	cases := []struct {
		name  string
		batch []byte
		code  int16
		base  int64
	}{
		{"first batch", idemTestBatch(7, 0, 0, "a"), 0, 0},
		{"next", idemTestBatch(7, 0, 1, "b", "c"), 0, 1},
		{"gap", idemTestBatch(7, 0, 9, "x"), kerr.OutOfOrderSequenceNumber.Code, -1},
		{"new epoch at 0", idemTestBatch(7, 1, 0, "d"), 0, 3},
		{"old epoch", idemTestBatch(7, 0, 3, "e"), kerr.InvalidProducerEpoch.Code, -1},
		{"new epoch not at 0", idemTestBatch(7, 2, 5, "f"), kerr.OutOfOrderSequenceNumber.Code, -1},
		{"two batches", append(idemTestBatch(8, 0, 0, "g"), idemTestBatch(8, 0, 1, "h")...), kerr.InvalidRecord.Code, -1},
		{"transactional without a transactional id", txn, kerr.InvalidProducerIDMapping.Code, -1},
		{"duplicate", idemTestBatch(7, 1, 0, "d"), 0, 3},
	}
	for _, c := range cases {
		rp := produceRaw(t, cl, "codes", c.batch)
		if rp.ErrorCode != c.code || (c.code == 0 && rp.BaseOffset != c.base) {
			t.Fatalf("%s: code %d base %d, want code %d base %d", c.name, rp.ErrorCode, rp.BaseOffset, c.code, c.base)
		}
		if c.code != 0 && (rp.ErrorMessage == nil || *rp.ErrorMessage == "") {
			t.Fatalf("%s: error without a message", c.name)
		}
	}
	if end := b.topics.partition("codes", 0).EndOffset(); end != 4 {
		t.Fatalf("log end %d, want 4", end)
	}
}

// TestKcatIdempotentProducer runs librdkafka's idempotent producer (kcat
// with enable.idempotence=true), which checks the broker's InitProducerId
// and sequence handling with its own implementation.
func TestKcatIdempotentProducer(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "rdidem", 1)
	var in strings.Builder
	for i := range 500 {
		fmt.Fprintf(&in, "m%03d\n", i)
	}
	cmd := exec.CommandContext(ctxT(t), kcat, "-b", addr, "-t", "rdidem", "-P", "-p", "0", "-X", "enable.idempotence=true", "-X", "linger.ms=1")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	p := b.topics.partition("rdidem", 0)
	if end := p.EndOffset(); end != 500 {
		t.Fatalf("log end %d, want 500", end)
	}
	if p.Producers() != 1 {
		t.Fatalf("the partition tracks %d producers; kcat did not produce idempotently", p.Producers())
	}
	got := consumeAll(t, b, addr, "rdidem", 1)[0]
	for i, v := range got {
		if v != fmt.Sprintf("m%03d", i) {
			t.Fatalf("record %d is %q", i, v)
		}
	}
}
