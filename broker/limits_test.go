package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn is a hand-driven client connection, for requests no real client
// would send.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	return dialRawFrom(t, "", addr)
}

// dialRawFrom dials from a given local address (127.0.0.2 reaches a
// 127.0.0.1 listener on Linux), so tests can be several client addresses.
func dialRawFrom(t testing.TB, local, addr string) *rawConn {
	t.Helper()
	d := net.Dialer{}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// send writes one request.
func (c *rawConn) send(req kmsg.Request, corr int32) error {
	_, err := c.nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, corr))
	return err
}

// answered sends ApiVersions and reports whether a response came back
// (false: the broker closed the connection).
func (c *rawConn) answered() bool {
	c.t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(0)
	if err := c.send(req, 7); err != nil {
		return false
	}
	_, err := c.response()
	return err == nil
}

// response reads one response frame, waiting at most a generous 30 s so a
// broken broker fails the test instead of hanging it.
func (c *rawConn) response() ([]byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c.br, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(c.br, body)
	return body, err
}

// closedByBroker waits for the broker to close the connection and fails
// the test if it sends anything or keeps it open for 30 s.
func (c *rawConn) closedByBroker() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c.br)
	if err != nil {
		c.t.Fatalf("broker did not close the connection: %v", err)
	}
	if n != 0 {
		c.t.Fatalf("broker answered %d bytes instead of closing", n)
	}
}

// produceAndConsume proves a normal client is still served: it produces n
// records and reads them back.
func produceAndConsume(t *testing.T, addr, topic string, n int) {
	t.Helper()
	ctx := ctxT(t)
	prod := newKgo(t, addr, kgo.DefaultProduceTopic(topic))
	for i := range n {
		if err := prod.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatalf("normal client could not produce: %v", err)
		}
	}
	cons := newKgo(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("normal client consumed %d of %d records: %v", got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("normal client could not consume: %v", err) })
		got += fs.NumRecords()
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// The probes: 30 connections sending 100 MiB requests took 3.1 GB,
// 500 of random bytes 220 MB more. Here 60 connections announce 16 MiB
// produce frames and stall after 256 KiB, 300 send random bytes and stay
// open; the broker's heap must stay within its request budget plus a
// margin, a normal client must still produce and consume, and the memory
// must be given back when they go. Without the budget this is 960 MiB.
func TestHostileClientsStayWithinRequestBudget(t *testing.T) {
	const (
		budget   = 32 << 20
		stallers = 60
		garbage  = 300
		frameLen = 16 << 20
		sent     = 256 << 10
		margin   = 24 << 20 // connection buffers, the clients, the test itself
	)
	b, addr := testBroker(t, Options{MaxRequestBytes: budget, MaxConnRequestBytes: frameLen, RequestTimeout: time.Minute,
		MaxConnections: 2 * (stallers + garbage)})
	admin := newKgo(t, addr)
	createTopic(t, admin, "served", 1)
	before := heapInUse()

	var hostile []*rawConn
	rng := rand.New(rand.NewPCG(1, 2))
	const from = "127.0.0.3" // the hostile clients' address
	for range stallers {
		c := dialRawFrom(t, from, addr)
		start := append(binary.BigEndian.AppendUint32(nil, frameLen), header(int16(kmsg.Produce), 7, 1)...)
		if _, err := c.nc.Write(append(start, make([]byte, sent)...)); err != nil {
			t.Fatal(err)
		}
		hostile = append(hostile, c)
	}
	for range garbage {
		c := dialRawFrom(t, from, addr)
		junk := make([]byte, 4<<10)
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		c.nc.Write(junk) // the broker may close at once: errors are fine
		hostile = append(hostile, c)
	}
	// The stallers hold the large-frame part of the budget: every one the
	// broker will read has been given its share.
	ctx := ctxT(t)
	for b.largeRequestBytes.TryAcquire(frameChunkBytes) {
		b.largeRequestBytes.Release(frameChunkBytes)
		if ctx.Err() != nil {
			t.Fatal("no stalled client took the large-frame budget")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if held := testutil.ToFloat64(b.metrics.requestBytes); held < frameLen {
		t.Fatalf("sluice_broker_request_bytes_in_flight is %v with a %d-byte frame stalled", held, frameLen)
	}
	produceAndConsume(t, addr, "served", 200)
	during := heapInUse()
	t.Logf("heap: %d MiB before, %d MiB with %d stalled and %d garbage connections", before>>20, during>>20, stallers, garbage)
	if during-before > budget+margin {
		t.Fatalf("heap grew by %d MiB under hostile clients; the request budget is %d MiB (+%d MiB margin)", (during-before)>>20, budget>>20, margin>>20)
	}

	for _, c := range hostile {
		c.nc.Close()
	}
	// Given back: once the broker has closed them all, the heap is near
	// where it started.
	for {
		b.mu.Lock()
		n := b.connsByIP[from]
		b.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	after := heapInUse()
	t.Logf("heap: %d MiB after they left", after>>20)
	if after-before > margin {
		t.Fatalf("heap still %d MiB above the start after the hostile clients left", (after-before)>>20)
	}
}

// A frame larger than any budget can take is refused before it is read,
// and the broker goes on serving others.
func TestFrameOverBudgetIsRefused(t *testing.T) {
	_, addr := testBroker(t, Options{MaxRequestBytes: 4 << 20})
	admin := newKgo(t, addr)
	createTopic(t, admin, "served", 1)
	c := dialRaw(t, addr)
	// Half the 4 MiB budget is the largest frame.
	if _, err := c.nc.Write(append(binary.BigEndian.AppendUint32(nil, 3<<20), header(int16(kmsg.Produce), 7, 1)...)); err != nil {
		t.Fatal(err)
	}
	c.closedByBroker()
	ok := dialRaw(t, addr)
	if _, err := ok.nc.Write(append(binary.BigEndian.AppendUint32(nil, 2<<20), header(int16(kmsg.Produce), 7, 1)...)); err != nil {
		t.Fatal(err)
	}
	produceAndConsume(t, addr, "served", 10)
}

// Connections over --max-connections and --max-connections-per-ip are
// closed at once; the clients already connected are still served, and a
// freed slot is taken again.
func TestMaxConnections(t *testing.T) {
	const limit = 12
	b, addr := testBroker(t, Options{MaxConnections: limit, MaxConnectionsPerIP: 3})
	// The normal clients dial from addresses of their own, so the
	// per-address limit does not count them.
	var next atomic.Int32
	dialer := kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(next.Add(1)))}}
		return d.DialContext(ctx, network, host)
	})
	admin := newKgo(t, addr, dialer)
	createTopic(t, admin, "served", 1)
	prod := newKgo(t, addr, dialer, kgo.DefaultProduceTopic("served"))
	if err := prod.ProduceSync(ctxT(t), kgo.StringRecord("warm")).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Per address: a fourth connection from 127.0.0.9 is refused.
	var perIP []*rawConn
	for i := range 4 {
		c := dialRawFrom(t, "127.0.0.9", addr)
		if got := c.answered(); got != (i < 3) {
			t.Fatalf("connection %d from one address answered=%v; the per-address limit is 3", i+1, got)
		}
		perIP = append(perIP, c)
	}

	// In total: fill up from other addresses until refused.
	var open []*rawConn
	for i := 0; ; i++ {
		c := dialRawFrom(t, fmt.Sprintf("127.0.1.%d", i+1), addr)
		if !c.answered() {
			break
		}
		open = append(open, c)
		if i > limit {
			t.Fatalf("%d connections accepted with --max-connections %d", i+1, limit)
		}
	}
	if got := testutil.ToFloat64(b.metrics.connectionsRefused); got < 2 {
		t.Fatalf("refused connections counted %v, want at least 2", got)
	}
	// The clients already connected go on.
	if err := prod.ProduceSync(ctxT(t), kgo.StringRecord("still served")).FirstErr(); err != nil {
		t.Fatalf("connected client not served at the connection limit: %v", err)
	}
	// A slot freed is a slot taken: the broker closes its side when it
	// reads the client's close, so retry until it has.
	open[0].nc.Close()
	for {
		if dialRaw(t, addr).answered() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A client that starts a frame and does not finish it is closed after
// RequestTimeout; one that sends nothing after IdleTimeout; one waiting
// for a long-poll is not idle.
func TestSlowAndIdleClientsAreClosed(t *testing.T) {
	_, addr := testBroker(t, Options{RequestTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	admin := newKgo(t, addr)
	createTopic(t, admin, "quiet", 1)

	for name, start := range map[string][]byte{
		"part of the size":  {0, 0},
		"part of the frame": append(binary.BigEndian.AppendUint32(nil, 100), header(int16(kmsg.Metadata), 1, 1)...),
	} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, addr)
			if _, err := c.nc.Write(start); err != nil {
				t.Fatal(err)
			}
			c.closedByBroker()
		})
	}
	t.Run("idle", func(t *testing.T) {
		dialRaw(t, addr).closedByBroker()
	})
	t.Run("long-poll is not idle", func(t *testing.T) {
		c := dialRaw(t, addr)
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(11)
		req.MaxWaitMillis = 2000 // well past the idle timeout
		req.MinBytes = 1
		req.MaxBytes = 1 << 20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "quiet"
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.PartitionMaxBytes = 1 << 20
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		if err := c.send(req, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := c.response(); err != nil {
			t.Fatalf("long-polling fetch got no answer: %v", err)
		}
	})
}

func TestResourceDefaultsFollowTheFileLimit(t *testing.T) {
	o := Options{}.resourceDefaults(1024)
	if o.MaxConnections != (1024-fdReserve)/connFDShare {
		t.Errorf("max connections with 1024 descriptors: %d", o.MaxConnections)
	}
	if want := (1024 - fdReserve - o.MaxConnections) / fdsPerPartition; o.MaxPartitions != want {
		t.Errorf("max partitions with 1024 descriptors: %d, want %d", o.MaxPartitions, want)
	}
	o = Options{MaxRequestBytes: 8 << 20}.resourceDefaults(1 << 20)
	if o.MaxConnections != DefaultMaxConnections || o.MaxConnRequestBytes != 8<<20 {
		t.Errorf("defaults with a large limit: %+v", o)
	}
}

// FuzzReadLoop feeds arbitrary bytes to a connection's read loop: whatever
// they are, it must neither panic nor keep any of the request budget once
// the connection is gone.
func FuzzReadLoop(f *testing.F) {
	api := kmsg.NewPtrApiVersionsRequest()
	api.SetVersion(0)
	f.Add(kmsg.NewRequestFormatter().AppendRequest(nil, api, 1))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 3<<20), header(int16(kmsg.Produce), 7, 1)...))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 100), header(int16(kmsg.Metadata), 1, 1)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	const budget = 8 << 20
	b, _ := testBroker(f, Options{MaxRequestBytes: budget, RequestTimeout: time.Second, IdleTimeout: time.Second})
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		c := newConn(b, server, Plaintext)
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		go io.Copy(io.Discard, client)
		client.Write(in)
		client.Close()
		<-done
		if !b.requestBytes.TryAcquire(budget) {
			t.Fatal("request budget not given back after the connection closed")
		}
		b.requestBytes.Release(budget)
	})
}

// A client that sends requests and stops reading the responses is closed
// after RequestTimeout, giving back its request budget: it is never idle
// (responses are outstanding), so without a write deadline it would hold
// both for ever.
func TestClientThatStopsReadingIsClosed(t *testing.T) {
	b, addr := testBroker(t, Options{RequestTimeout: 500 * time.Millisecond})
	admin := newKgo(t, addr)
	createTopic(t, admin, "big", 1)
	prod := newKgo(t, addr, kgo.DefaultProduceTopic("big"), kgo.ProducerBatchMaxBytes(1<<20))
	value := make([]byte, 512<<10)
	for range 16 {
		if err := prod.ProduceSync(ctxT(t), &kgo.Record{Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	const from = "127.0.0.6"
	c := dialRawFrom(t, from, addr)
	c.nc.(*net.TCPConn).SetReadBuffer(4 << 10)
	for i := range 20 {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(11)
		req.MaxBytes = 16 << 20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "big"
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.PartitionMaxBytes = 16 << 20
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		if err := c.send(req, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Never read: the broker must close the connection and give back
	// what it held.
	ctx := ctxT(t)
	for {
		b.mu.Lock()
		n := b.connsByIP[from]
		b.mu.Unlock()
		if n == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("a client that stopped reading responses is still connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !b.requestBytes.TryAcquire(b.opts.MaxRequestBytes) {
		t.Fatal("the closed connection's request budget was not given back")
	}
	b.requestBytes.Release(b.opts.MaxRequestBytes)
	produceAndConsume(t, addr, "big", 5)
}

// A request frame other than Produce over maxOtherFrameBytes is refused
// before it is read: decoding multiplies a frame's bytes (a 2-byte Metadata
// topic name becomes a 48-byte struct), so a 100 MiB Metadata request made
// the broker allocate 2.4 GB. A Produce of the same size is still served.
func TestLargeNonProduceFrameIsRefused(t *testing.T) {
	_, addr := testBroker(t, Options{})
	admin := newKgo(t, addr)
	ctx := ctxT(t)
	big := strings.Repeat("x", maxOtherFrameBytes+1<<20)
	resp, err := kadm.NewClient(admin).CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": kmsg.StringPtr(fmt.Sprint(2 * len(big)))}, "big")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}

	// Metadata v4 naming empty topics until the frame is just over the cap.
	n := maxOtherFrameBytes/2 + 1
	frame := header(int16(kmsg.Metadata), 4, 1)
	frame = binary.BigEndian.AppendUint32(frame, uint32(n))
	frame = append(frame, make([]byte, 2*n)...)
	frame = append(frame, 0) // AllowAutoTopicCreation false
	c := dialRaw(t, addr)
	// The broker closes as soon as it has the size and key, so the write
	// of the rest may be reset.
	_, err = c.nc.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...))
	switch {
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
	case err != nil:
		t.Fatal(err)
	default:
		c.closedByBroker()
	}

	prod := newKgo(t, addr, kgo.DefaultProduceTopic("big"), kgo.ProducerBatchMaxBytes(int32(2*len(big))))
	if err := prod.ProduceSync(ctx, kgo.StringRecord(big)).FirstErr(); err != nil {
		t.Fatalf("a Produce frame over %d bytes: %v", maxOtherFrameBytes, err)
	}
}
