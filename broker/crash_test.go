package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/broker/txn"
)

// crashChildEnv makes the test binary run a broker on the directory it
// names instead of the tests, so a test can SIGKILL a real broker process.
const crashChildEnv = "SLUICE_BROKER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashListenEnv and crashAdvertiseEnv optionally give the child broker
// its listen address (so a restarted broker can take the same port) and
// advertised address (so clients keep going through a test proxy).
const (
	crashListenEnv    = "SLUICE_BROKER_CRASH_LISTEN"
	crashAdvertiseEnv = "SLUICE_BROKER_CRASH_ADVERTISE"
)

// crashMarkerEnv makes the child broker SIGKILL itself before writing the
// n-th marker of a committing transaction.
const crashMarkerEnv = "SLUICE_BROKER_CRASH_BEFORE_MARKER"

// crashNofileEnv sets the child broker's open-file limit; crashCreateEnv
// ("topic:N") makes it SIGKILL itself opening partition N of a topic it
// creates.
const (
	crashNofileEnv = "SLUICE_BROKER_CRASH_NOFILE"
	crashCreateEnv = "SLUICE_BROKER_CRASH_CREATE_AT"
)

func runCrashChild(dir string) {
	if n, err := strconv.Atoi(os.Getenv(crashMarkerEnv)); err == nil {
		testHookMarker = func(comp *txn.Completion, i int) {
			if comp.Commit && i == n {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	if n, err := strconv.ParseUint(os.Getenv(crashNofileEnv), 10, 64); err == nil {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
			fmt.Fprintln(os.Stderr, "child: setrlimit:", err)
			os.Exit(2)
		}
	}
	if topic, at, ok := strings.Cut(os.Getenv(crashCreateEnv), ":"); ok {
		n, _ := strconv.Atoi(at)
		testHookOpenPartition = func(name string, i int32) error {
			if name == topic && int(i) == n {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		}
	}
	b, err := Open(dir, Options{AdvertisedAddr: os.Getenv(crashAdvertiseEnv),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	listen := os.Getenv(crashListenEnv)
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	l, err := b.Listen(listen, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	fmt.Printf("ADDR %s\n", l.Addr())
	select {} // until killed
}

func TestCrashKeepsAcknowledgedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	dir := t.TempDir()
	addr, cmd := startChild(t, dir)

	createTopic(t, newKgo(t, addr), "crash", 2)
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DisableIdempotentWrite(), kgo.RecordRetries(0), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	// Producers keep going while the broker is killed under them.
	var mu sync.Mutex
	acked := map[string]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	enough := make(chan struct{})
	var once sync.Once
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				v := fmt.Sprintf("w%d-%06d", w, i)
				prod.Produce(ctx, &kgo.Record{Topic: "crash", Value: []byte(v)}, func(r *kgo.Record, err error) {
					if err != nil {
						return
					}
					mu.Lock()
					acked[string(r.Value)] = true
					if len(acked) >= 5000 {
						once.Do(func() { close(enough) })
					}
					mu.Unlock()
				})
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(30 * time.Second):
		t.Fatal("producers got no acknowledgements")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	cancel()
	prod.Close() // fails what is still in flight
	wg.Wait()
	mu.Lock()
	ackedCopy := make(map[string]bool, len(acked))
	for k := range acked {
		ackedCopy[k] = true
	}
	mu.Unlock()

	// A write cut mid-batch: the first half of the last batch again, as the
	// next batch, which the broker must cut off.
	seg := filepath.Join(dir, "topics", "crash", "0", "00000000000000000000.log")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	last := lastBatch(t, data)
	torn := append([]byte(nil), last[:len(last)/2]...)
	binary.BigEndian.PutUint64(torn, binary.BigEndian.Uint64(last)+uint64(binary.BigEndian.Uint32(last[23:]))+1)
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(torn)
	f.Close()

	_, addr2 := testBrokerDir(t, dir, Options{})
	cons := newKgo(t, addr2, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		"crash": {0: kgo.NewOffset().At(0), 1: kgo.NewOffset().At(0)},
	}), kgo.FetchMaxWait(100*time.Millisecond))
	ends := map[int32]int64{}
	for p, off := range listEnds(t, cons, "crash", 2) {
		ends[p] = off
	}
	served := map[string]bool{}
	next := map[int32]int64{}
	rctx := ctxT(t)
	for next[0] < ends[0] || next[1] < ends[1] {
		fs := cons.PollFetches(rctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume after crash: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != next[r.Partition] {
				t.Fatalf("partition %d: offset %d after %d", r.Partition, r.Offset, next[r.Partition])
			}
			next[r.Partition]++
			if served[string(r.Value)] {
				t.Fatalf("record %s served twice", r.Value)
			}
			served[string(r.Value)] = true
		})
	}
	missing := 0
	for v := range ackedCopy {
		if !served[v] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged records lost in the crash", missing, len(ackedCopy))
	}
	t.Logf("%d acknowledged, %d served after SIGKILL and a torn tail", len(ackedCopy), len(served))
}

// lastBatch returns the last whole batch of a segment's bytes.
func lastBatch(t *testing.T, data []byte) []byte {
	var last []byte
	for len(data) >= 12 {
		n := 12 + int(binary.BigEndian.Uint32(data[8:]))
		if n > len(data) {
			break
		}
		last, data = data[:n], data[n:]
	}
	if last == nil {
		t.Fatal("segment holds no batch")
	}
	return last
}

func listEnds(t *testing.T, cl *kgo.Client, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	for p := range partitions {
		out[p] = listOffset(t, cl, topic, p, -1)
	}
	return out
}
