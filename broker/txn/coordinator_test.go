package txn

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/broker/group"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type ids struct{ next int64 }

func (i *ids) allocate() (int64, error) {
	i.next++
	return i.next - 1, nil
}

type fixture struct {
	t     *testing.T
	dir   string
	clock *fakeClock
	ids   *ids
	c     *Coordinator
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}, ids: &ids{next: 100}}
	f.open()
	return f
}

func (f *fixture) open() {
	c, err := Open(f.dir, f.ids.allocate, f.clock.now)
	if err != nil {
		f.t.Fatal(err)
	}
	f.c = c
	f.t.Cleanup(func() { c.Close() })
}

func (f *fixture) reopen() {
	f.c.Close()
	f.open()
}

func (f *fixture) init(id string) InitResult {
	f.t.Helper()
	res := f.c.InitProducerID(InitRequest{TransactionalID: id, TimeoutMs: 10000, ProducerID: -1, Epoch: -1})
	if res.Abort != nil {
		if err := f.c.Complete(res.Abort); err != nil {
			f.t.Fatal(err)
		}
		res = f.c.InitProducerID(InitRequest{TransactionalID: id, TimeoutMs: 10000, ProducerID: -1, Epoch: -1})
	}
	if res.Err != nil {
		f.t.Fatalf("init %s: %v", id, res.Err)
	}
	return res
}

func (f *fixture) state(id string) State {
	d, _ := f.c.Describe(id)
	return d.State
}

func expect(t *testing.T, what string, got, want *kerr.Error) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

var tp0 = group.TopicPartition{Topic: "t", Partition: 0}

// TestCommitStepByStep drives one transaction through every state.
func TestCommitStepByStep(t *testing.T) {
	f := newFixture(t)
	p := f.init("a")
	if p.ProducerID != 100 || p.Epoch != 0 {
		t.Fatalf("first init: %+v", p)
	}
	expect(t, "produce before AddPartitions", f.c.CheckProduce(p.ProducerID, p.Epoch, tp0), kerr.InvalidTxnState)
	expect(t, "add", f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp0}), nil)
	if f.state("a") != Ongoing {
		t.Fatalf("state %s", f.state("a"))
	}
	expect(t, "produce", f.c.CheckProduce(p.ProducerID, p.Epoch, tp0), nil)
	expect(t, "add offsets", f.c.AddOffsets("a", p.ProducerID, p.Epoch, "g"), nil)
	expect(t, "commit offsets", f.c.CommitOffsets("a", "g", p.ProducerID, p.Epoch, []group.Offset{{TopicPartition: tp0, Offset: 7}}), nil)
	if !f.c.PendingOffset("g", tp0) {
		t.Fatal("pending offset not reported")
	}
	comp, err := f.c.EndTxn("a", p.ProducerID, p.Epoch, true)
	if err != nil || comp == nil || !comp.Commit || len(comp.Partitions) != 1 || comp.Offsets["g"][0].Offset != 7 {
		t.Fatalf("end: %+v %v", comp, err)
	}
	if f.state("a") != PrepareCommit {
		t.Fatalf("state %s", f.state("a"))
	}
	expect(t, "add while preparing", f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp0}), kerr.ConcurrentTransactions)
	if r := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: -1, Epoch: -1}); r.Err != kerr.ConcurrentTransactions {
		t.Fatalf("init while preparing: %+v", r)
	}
	if len(f.c.Pending()) != 0 {
		t.Fatal("a completion being run was handed out again")
	}
	var ended []Result
	f.c.OnEnd = func(r Result) { ended = append(ended, r) }
	if err := f.c.Complete(comp); err != nil {
		t.Fatal(err)
	}
	if f.state("a") != CompleteCommit || f.c.PendingOffset("g", tp0) || len(ended) != 1 || ended[0] != Committed {
		t.Fatalf("after complete: %s, pending %v, ended %v", f.state("a"), f.c.PendingOffset("g", tp0), ended)
	}
	if c2, err := f.c.EndTxn("a", p.ProducerID, p.Epoch, true); c2 != nil || err != nil {
		t.Fatalf("retried commit: %+v %v", c2, err)
	}
	if _, err := f.c.EndTxn("a", p.ProducerID, p.Epoch, false); err != kerr.InvalidTxnState {
		t.Fatalf("abort after commit: %v", err)
	}
	expect(t, "produce after commit", f.c.CheckProduce(p.ProducerID, p.Epoch, tp0), kerr.InvalidTxnState)
}

// TestInitFencesAndAbortsOpenTransaction: a second init aborts the open
// transaction under a bumped epoch and the old epoch is fenced everywhere.
func TestInitFencesAndAbortsOpenTransaction(t *testing.T) {
	f := newFixture(t)
	old := f.init("a")
	f.c.AddPartitions("a", old.ProducerID, old.Epoch, []group.TopicPartition{tp0})
	res := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: -1, Epoch: -1})
	if res.Abort == nil || res.Abort.Commit || res.Abort.Epoch != old.Epoch+1 || res.Abort.Result != Aborted {
		t.Fatalf("init with an open transaction: %+v", res)
	}
	if err := f.c.Complete(res.Abort); err != nil {
		t.Fatal(err)
	}
	res = f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: -1, Epoch: -1})
	if res.Err != nil || res.ProducerID != old.ProducerID || res.Epoch != old.Epoch+2 {
		t.Fatalf("init after the abort: %+v", res)
	}
	expect(t, "old epoch add", f.c.AddPartitions("a", old.ProducerID, old.Epoch, []group.TopicPartition{tp0}), kerr.ProducerFenced)
	expect(t, "old epoch produce", f.c.CheckProduce(old.ProducerID, old.Epoch, tp0), kerr.InvalidProducerEpoch)
	if _, err := f.c.EndTxn("a", old.ProducerID, old.Epoch, true); err != kerr.ProducerFenced {
		t.Fatalf("old epoch end: %v", err)
	}
	if r := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: old.ProducerID, Epoch: old.Epoch}); r.Err != kerr.ProducerFenced {
		t.Fatalf("old epoch re-init: %+v", r)
	}
	expect(t, "wrong producer id", f.c.AddPartitions("a", 999, res.Epoch, nil), kerr.InvalidProducerIDMapping)
	expect(t, "unknown transactional id", f.c.AddPartitions("zzz", res.ProducerID, res.Epoch, nil), kerr.InvalidProducerIDMapping)
	// KIP-360: the current producer re-initialising with its id and epoch
	// gets a bump; a retry of that init (its answer lost) the same epoch.
	r1 := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: res.ProducerID, Epoch: res.Epoch})
	r2 := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: res.ProducerID, Epoch: res.Epoch})
	if r1.Err != nil || r1.Epoch != res.Epoch+1 || r2.Err != nil || r2.Epoch != r1.Epoch {
		t.Fatalf("KIP-360 re-init %+v, retried %+v", r1, r2)
	}
}

func TestEpochExhaustionAllocatesNewProducerID(t *testing.T) {
	f := newFixture(t)
	p := f.init("a")
	n := f.c.txns["a"].clone()
	n.epoch = exhaustedEpoch
	if err := f.c.save(n); err != nil {
		t.Fatal(err)
	}
	q := f.init("a")
	if q.ProducerID == p.ProducerID || q.Epoch != 0 {
		t.Fatalf("after the last epoch: %+v (was %+v)", q, p)
	}
	expect(t, "old producer id", f.c.CheckProduce(p.ProducerID, exhaustedEpoch, tp0), kerr.InvalidProducerIDMapping)
	if f.c.MaxProducerID() != q.ProducerID {
		t.Fatalf("max producer id %d", f.c.MaxProducerID())
	}
}

// TestTimeoutAbortsWithEpochBump: an open transaction past its timeout is
// aborted by Expire under a new epoch; the producer may come back with
// KIP-360 and gets that epoch.
func TestTimeoutAbortsWithEpochBump(t *testing.T) {
	f := newFixture(t)
	p := f.init("a")
	f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp0})
	f.clock.add(9 * time.Second)
	if comps, _ := f.c.Expire(); len(comps) != 0 {
		t.Fatalf("expired before its timeout: %+v", comps)
	}
	f.clock.add(2 * time.Second)
	comps, err := f.c.Expire()
	if err != nil || len(comps) != 1 || comps[0].Result != TimedOut || comps[0].Epoch != p.Epoch+1 || comps[0].Commit {
		t.Fatalf("expire: %+v %v", comps, err)
	}
	// Survives a crash before its markers, still counted as a timeout.
	f.reopen()
	pend := f.c.Pending()
	if len(pend) != 1 || pend[0].Result != TimedOut {
		t.Fatalf("pending after reopen: %+v", pend)
	}
	f.c.Complete(pend[0])
	if _, err := f.c.EndTxn("a", p.ProducerID, p.Epoch, true); err != kerr.ProducerFenced {
		t.Fatalf("commit after the timeout: %v", err)
	}
	r := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: p.ProducerID, Epoch: p.Epoch})
	if r.Err != nil || r.Epoch != p.Epoch+1 {
		t.Fatalf("the timed-out producer re-initialising: %+v", r)
	}
}

func TestInitValidatesTimeout(t *testing.T) {
	f := newFixture(t)
	for _, ms := range []int32{0, -1, int32((MaxTimeout + time.Millisecond).Milliseconds())} {
		if r := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: ms, ProducerID: -1, Epoch: -1}); r.Err != kerr.InvalidTransactionTimeout {
			t.Fatalf("timeout %dms: %+v", ms, r)
		}
	}
	if r := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: int32(MaxTimeout.Milliseconds()), ProducerID: -1, Epoch: -1}); r.Err != nil {
		t.Fatalf("the maximum: %+v", r)
	}
}

// TestStateSurvivesReopen: fencing state, open and decided transactions
// come back from the log; a decided one is pending again.
func TestStateSurvivesReopen(t *testing.T) {
	f := newFixture(t)
	a := f.init("a")
	f.c.AddPartitions("a", a.ProducerID, a.Epoch, []group.TopicPartition{tp0})
	b := f.init("b")
	f.c.AddPartitions("b", b.ProducerID, b.Epoch, []group.TopicPartition{tp0, {Topic: "u", Partition: 3}})
	f.c.AddOffsets("b", b.ProducerID, b.Epoch, "g")
	f.c.CommitOffsets("b", "g", b.ProducerID, b.Epoch, []group.Offset{{TopicPartition: tp0, Offset: 5}})
	if _, err := f.c.EndTxn("b", b.ProducerID, b.Epoch, true); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	if f.state("a") != Ongoing || f.state("b") != PrepareCommit {
		t.Fatalf("states after reopen: %s %s", f.state("a"), f.state("b"))
	}
	expect(t, "a still produces", f.c.CheckProduce(a.ProducerID, a.Epoch, tp0), nil)
	pend := f.c.Pending()
	if len(pend) != 1 || pend[0].TransactionalID != "b" || len(pend[0].Partitions) != 2 || pend[0].Offsets["g"][0].Offset != 5 {
		t.Fatalf("pending: %+v", pend)
	}
	// A failed completion is handed out again.
	f.c.Failed(pend[0])
	if len(f.c.Pending()) != 1 {
		t.Fatal("failed completion not pending")
	}
	// Ids never go backwards: a new id is above every known one.
	if c := f.init("c"); c.ProducerID <= b.ProducerID {
		t.Fatalf("new id %d not above %d", c.ProducerID, b.ProducerID)
	}
}

func TestIdleIDsExpire(t *testing.T) {
	f := newFixture(t)
	f.init("idle")
	p := f.init("busy")
	f.c.AddPartitions("busy", p.ProducerID, p.Epoch, []group.TopicPartition{tp0})
	f.c.txns["busy"].timeoutMs = int32(MaxTimeout.Milliseconds())
	f.clock.add(IDExpiration + time.Minute)
	f.c.Expire()
	if _, ok := f.c.Describe("idle"); ok {
		t.Fatal("idle id not forgotten")
	}
	if _, ok := f.c.Describe("busy"); !ok {
		t.Fatal("id with a transaction forgotten")
	}
	f.reopen()
	if _, ok := f.c.Describe("idle"); ok {
		t.Fatal("forgotten id back after reopen")
	}
}

// TestLogTornTailAndCompaction: a torn last entry is cut off on open, and
// compaction keeps the latest state of every id.
func TestLogTornTailAndCompaction(t *testing.T) {
	f := newFixture(t)
	p := f.init("a")
	f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp0})
	f.c.Close()
	path := filepath.Join(f.dir, logName)
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(good, 0, 0, 1, 0, 1, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	f.open()
	if f.state("a") != Ongoing {
		t.Fatalf("state after a torn tail: %s", f.state("a"))
	}
	if fi, _ := os.Stat(path); fi.Size() != int64(len(good)) {
		t.Fatalf("torn tail not cut: %d bytes, want %d", fi.Size(), len(good))
	}
	const adds = 200
	for i := range adds {
		tp := group.TopicPartition{Topic: "t", Partition: int32(i)}
		if err := f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp}); err != nil {
			t.Fatal(err)
		}
	}
	f.init("b")
	// What append does past compactMinEntries entries.
	if err := f.c.log.compact([]record{f.c.txns["a"].record(), f.c.txns["b"].record()}); err != nil {
		t.Fatal(err)
	}
	if f.c.log.entries != 2 {
		t.Fatalf("log not compacted: %d entries", f.c.log.entries)
	}
	f.c.AddOffsets("a", p.ProducerID, p.Epoch, "g") // appends after the compaction
	f.reopen()
	if d, _ := f.c.Describe("a"); len(d.Partitions) != adds || d.State != Ongoing {
		t.Fatalf("after compaction and reopen: %+v", d)
	}
	if _, ok := f.c.Describe("b"); !ok || f.c.log.entries != 3 {
		t.Fatalf("after compaction and reopen: b missing or %d entries", f.c.log.entries)
	}
}

// FuzzStateLog feeds arbitrary bytes to the state log replay: Open must
// never panic, and what it keeps must survive an append and a reopen.
func FuzzStateLog(f *testing.F) {
	seed := f.TempDir()
	c, _ := Open(seed, (&ids{}).allocate, nil)
	r := c.InitProducerID(InitRequest{TransactionalID: "x", TimeoutMs: 1000, ProducerID: -1, Epoch: -1})
	c.AddPartitions("x", r.ProducerID, r.Epoch, []group.TopicPartition{tp0})
	c.EndTxn("x", r.ProducerID, r.Epoch, false)
	c.Close()
	good, _ := os.ReadFile(filepath.Join(seed, logName))
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add(encodeEntry(nil, record{ID: "y", ProducerID: 3, State: "Bogus"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, logName), data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(dir, (&ids{next: 1 << 40}).allocate, nil)
		if err != nil {
			return // a damaged log is refused with an error, not a panic
		}
		before := map[string]Description{}
		for id := range c.txns {
			before[id], _ = c.Describe(id)
		}
		c.Pending()
		if r := c.InitProducerID(InitRequest{TransactionalID: "fuzz-new", TimeoutMs: 1000, ProducerID: -1, Epoch: -1}); r.Err != nil {
			t.Fatalf("init after recovery: %+v", r)
		}
		c.Close()
		c, err = Open(dir, (&ids{next: 1 << 41}).allocate, nil)
		if err != nil {
			t.Fatalf("reopen after an append: %v", err)
		}
		defer c.Close()
		for id, d := range before {
			if id == "fuzz-new" {
				continue
			}
			got, ok := c.Describe(id)
			if !ok || got.ProducerID != d.ProducerID || got.Epoch != d.Epoch || got.State != d.State {
				t.Fatalf("%q: %+v before, %+v after reopen", id, d, got)
			}
		}
		if _, ok := c.Describe("fuzz-new"); !ok {
			t.Fatal("the init after recovery was lost")
		}
	})
}

// FuzzReplay is the state log decoder alone, fast enough to fuzz for long:
// no panic, and the records it keeps re-encode to a log that replays to
// the same records.
func FuzzReplay(f *testing.F) {
	f.Add(encodeEntry(encodeEntry(nil, record{ID: "a", ProducerID: 1, State: Ongoing, Partitions: []group.TopicPartition{tp0}}),
		record{ID: "a", Deleted: true}))
	f.Add(encodeEntry(nil, record{ID: "b", ProducerID: 2, Epoch: 3, State: PrepareCommit,
		Offsets: map[string][]group.Offset{"g": {{TopicPartition: tp0, Offset: 9}}}}))
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, good, _, err := replay(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if good > int64(len(data)) {
			t.Fatalf("intact prefix %d longer than the %d bytes", good, len(data))
		}
		var again []byte
		for _, id := range slices.Sorted(maps.Keys(recs)) {
			again = encodeEntry(again, recs[id])
		}
		recs2, good2, _, err := replay(bytes.NewReader(again), int64(len(again)))
		if err != nil || good2 != int64(len(again)) || len(recs2) != len(recs) {
			t.Fatalf("re-encoded log: %v, %d of %d bytes, %d of %d records", err, good2, len(again), len(recs2), len(recs))
		}
		for id, r := range recs {
			if fmt.Sprint(recs2[id]) != fmt.Sprint(r) {
				t.Fatalf("%q: %+v, then %+v", id, r, recs2[id])
			}
		}
	})
}

// TestConcurrentTransitionsAreDurable runs many transactions through the
// coordinator at once (their log writes share fsyncs) and reopens it:
// every answered transition is there.
func TestConcurrentTransitionsAreDurable(t *testing.T) {
	f := newFixture(t)
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("t%02d", i)
			r := f.c.InitProducerID(InitRequest{TransactionalID: id, TimeoutMs: 10000, ProducerID: -1, Epoch: -1})
			if r.Err != nil {
				errs <- r.Err
				return
			}
			if err := f.c.AddPartitions(id, r.ProducerID, r.Epoch, []group.TopicPartition{{Topic: "t", Partition: int32(i)}}); err != nil {
				errs <- err
				return
			}
			comp, err := f.c.EndTxn(id, r.ProducerID, r.Epoch, i%2 == 0)
			if err != nil {
				errs <- err
				return
			}
			if i%3 != 0 { // the rest stay decided, not complete
				if err := f.c.Complete(comp); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f.reopen()
	for i := range n {
		id := fmt.Sprintf("t%02d", i)
		want := map[bool]State{true: PrepareCommit, false: PrepareAbort}[i%2 == 0]
		if i%3 != 0 {
			want = map[bool]State{true: CompleteCommit, false: CompleteAbort}[i%2 == 0]
		}
		if got := f.state(id); got != want {
			t.Fatalf("%s after reopen: %s, want %s", id, got, want)
		}
	}
	if len(f.c.Pending()) != (n+2)/3 {
		t.Fatalf("%d pending after reopen", len(f.c.Pending()))
	}
}

// TestLogFailureIsSticky: once a log write fails, every later transition
// fails too (the in-memory state could be ahead of the disk) until the
// coordinator is reopened from what is on disk.
func TestLogFailureIsSticky(t *testing.T) {
	f := newFixture(t)
	p := f.init("a")
	f.c.log.f.File.Close() // the disk goes away
	if err := f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp0}); err != kerr.KafkaStorageError {
		t.Fatalf("add with a broken log: %v", err)
	}
	if r := f.c.InitProducerID(InitRequest{TransactionalID: "b", TimeoutMs: 1000, ProducerID: -1, Epoch: -1}); r.Err != kerr.KafkaStorageError {
		t.Fatalf("init with a broken log: %+v", r)
	}
	f.c.Close()
	f.open()
	if f.state("a") != Empty {
		t.Fatalf("state after reopen: %s", f.state("a"))
	}
	if err := f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp0}); err != nil {
		t.Fatalf("add after reopen: %v", err)
	}
}

// TestRandomOperationsSurviveReopen drives the coordinator with random
// requests from several producers (some stale), reopening it from its log
// at random points: what it answered before a reopen is what it knows
// after, epochs never go back, and a stale epoch never gets through.
func TestRandomOperationsSurviveReopen(t *testing.T) {
	for seed := range int64(20) {
		rnd := rand.New(rand.NewPCG(uint64(seed), 1))
		f := newFixture(t)
		type producer struct {
			id  string
			pid int64
			ep  int16
		}
		var ps []producer
		maxEpoch := map[string]int16{}
		ids := []string{"a", "b", "c"}
		for step := range 300 {
			switch op := rnd.IntN(9); {
			case op == 0 || len(ps) == 0:
				id := ids[rnd.IntN(len(ids))]
				r := f.c.InitProducerID(InitRequest{TransactionalID: id, TimeoutMs: 60000, ProducerID: -1, Epoch: -1})
				if r.Abort != nil {
					f.c.Complete(r.Abort)
					r = f.c.InitProducerID(InitRequest{TransactionalID: id, TimeoutMs: 60000, ProducerID: -1, Epoch: -1})
				}
				if r.Err == nil {
					if r.Epoch <= maxEpoch[id] && maxEpoch[id] != 0 {
						t.Fatalf("seed %d step %d: %s epoch %d after %d", seed, step, id, r.Epoch, maxEpoch[id])
					}
					maxEpoch[id] = r.Epoch
					ps = append(ps, producer{id, r.ProducerID, r.Epoch})
				}
			case op <= 3:
				p := ps[rnd.IntN(len(ps))]
				err := f.c.AddPartitions(p.id, p.pid, p.ep, []group.TopicPartition{{Topic: "t", Partition: int32(rnd.IntN(3))}})
				if err == nil && p.ep != maxEpoch[p.id] {
					t.Fatalf("seed %d step %d: stale epoch %d of %s added partitions (current %d)", seed, step, p.ep, p.id, maxEpoch[p.id])
				}
			case op <= 5:
				p := ps[rnd.IntN(len(ps))]
				comp, err := f.c.EndTxn(p.id, p.pid, p.ep, rnd.IntN(2) == 0)
				if err == nil && p.ep != maxEpoch[p.id] {
					t.Fatalf("seed %d step %d: stale epoch ended a transaction", seed, step)
				}
				if comp != nil && rnd.IntN(4) != 0 { // sometimes left decided, as a crash would
					f.c.Complete(comp)
				}
			case op == 6:
				f.clock.add(time.Duration(rnd.IntN(90)) * time.Second)
				comps, err := f.c.Expire()
				if err != nil {
					t.Fatal(err)
				}
				for _, comp := range comps {
					maxEpoch[comp.TransactionalID] = max(maxEpoch[comp.TransactionalID], comp.Epoch)
					f.c.Complete(comp)
				}
			default:
				before := f.c.List()
				f.reopen()
				after := f.c.List()
				if fmt.Sprint(before) != fmt.Sprint(after) {
					t.Fatalf("seed %d step %d: reopen changed the state\nbefore %+v\nafter  %+v", seed, step, before, after)
				}
				for _, comp := range f.c.Pending() {
					f.c.Complete(comp)
				}
			}
		}
	}
}

// TestNewProducerFencesForGood: after a new instance's init, the instance
// it replaced cannot take the current epoch back through the KIP-360
// re-init a producer uses after an error or a timeout abort.
func TestNewProducerFencesForGood(t *testing.T) {
	f := newFixture(t)
	zombie := f.init("a")
	fresh := f.init("a") // no transaction open: a plain bump
	r := f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: zombie.ProducerID, Epoch: zombie.Epoch})
	if r.Err != kerr.ProducerFenced {
		t.Fatalf("the replaced instance re-initialising: %+v (new instance has epoch %d)", r, fresh.Epoch)
	}
	r = f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: zombie.ProducerID, Epoch: -1})
	if r.Err != kerr.InvalidRequest {
		t.Fatalf("re-init with the producer id and no epoch: %+v", r)
	}
	// The same holds across a reopen.
	f.reopen()
	r = f.c.InitProducerID(InitRequest{TransactionalID: "a", TimeoutMs: 1000, ProducerID: zombie.ProducerID, Epoch: zombie.Epoch})
	if r.Err != kerr.ProducerFenced {
		t.Fatalf("after reopen: %+v", r)
	}
}

// TestCompleteIsCoveredByTheNextTransition: Complete writes its record
// without an fsync. A crash that loses it hands the completion out again;
// the id's next transition makes it durable before answering.
func TestCompleteIsCoveredByTheNextTransition(t *testing.T) {
	f := newFixture(t)
	p := f.init("a")
	expect(t, "add", f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp0}), nil)
	comp, e := f.c.EndTxn("a", p.ProducerID, p.Epoch, true)
	expect(t, "end", e, nil)
	path := filepath.Join(f.dir, logName)
	decided, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.c.Complete(comp); err != nil {
		t.Fatal(err)
	}
	if f.state("a") != CompleteCommit {
		t.Fatalf("state after Complete: %s", f.state("a"))
	}
	if got, want := f.c.log.synced.Durable(), f.c.log.position(); got >= want {
		t.Fatalf("Complete waited for its fsync: durable %d of %d entries", got, want)
	}

	// The Complete record lost in a crash: the decision stands and is
	// handed out again.
	f.c.Close()
	if err := os.WriteFile(path, decided, 0o644); err != nil {
		t.Fatal(err)
	}
	f.open()
	if f.state("a") != PrepareCommit {
		t.Fatalf("state after losing Complete: %s", f.state("a"))
	}
	pend := f.c.Pending()
	if len(pend) != 1 || !pend[0].Commit || pend[0].TransactionalID != "a" {
		t.Fatalf("pending after losing Complete: %+v", pend)
	}
	if err := f.c.Complete(pend[0]); err != nil {
		t.Fatal(err)
	}

	// The next transaction's first transition is durable only with it.
	expect(t, "add again", f.c.AddPartitions("a", p.ProducerID, p.Epoch, []group.TopicPartition{tp0}), nil)
	if got, want := f.c.log.synced.Durable(), f.c.log.position(); got != want {
		t.Fatalf("after AddPartitions durable %d of %d entries", got, want)
	}
	f.reopen()
	if f.state("a") != Ongoing || len(f.c.Pending()) != 0 {
		t.Fatalf("after reopen: %s, %d pending", f.state("a"), len(f.c.Pending()))
	}
}
