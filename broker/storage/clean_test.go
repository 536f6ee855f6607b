package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kv is one record to write: a nil v is a tombstone.
type kv struct {
	k string
	v *string
}

func val(s string) *string { return &s }

// keyedBatch encodes an uncompressed batch of keyed records with
// timestamps ts, ts+1, …; the base offset is left 0 for Append to patch.
func keyedBatch(ts int64, recs ...kv) []byte {
	var body []byte
	for i, r := range recs {
		var b []byte
		b = append(b, 0)
		b = binary.AppendVarint(b, int64(i))
		b = binary.AppendVarint(b, int64(i))
		b = binary.AppendVarint(b, int64(len(r.k)))
		b = append(b, r.k...)
		if r.v == nil {
			b = binary.AppendVarint(b, -1)
		} else {
			b = binary.AppendVarint(b, int64(len(*r.v)))
			b = append(b, *r.v...)
		}
		b = binary.AppendVarint(b, 0)
		body = binary.AppendVarint(body, int64(len(b)))
		body = append(body, b...)
	}
	b := make([]byte, batchHeaderLen, batchHeaderLen+len(body))
	binary.BigEndian.PutUint32(b[8:], uint32(batchHeaderLen-batchLengthOverhead+len(body)))
	b[16] = 2
	binary.BigEndian.PutUint32(b[23:], uint32(len(recs)-1))
	binary.BigEndian.PutUint64(b[27:], uint64(ts))
	binary.BigEndian.PutUint64(b[35:], uint64(ts+int64(len(recs))-1))
	binary.BigEndian.PutUint64(b[43:], ^uint64(0))
	binary.BigEndian.PutUint16(b[51:], ^uint16(0))
	binary.BigEndian.PutUint32(b[53:], ^uint32(0))
	binary.BigEndian.PutUint32(b[57:], uint32(len(recs)))
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// asProducer sets a batch's producer fields (and the transactional bit).
func asProducer(b []byte, id int64, epoch int16, seq int32, txn bool) []byte {
	binary.BigEndian.PutUint64(b[43:], uint64(id))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	if txn {
		binary.BigEndian.PutUint16(b[21:], attrTransactional)
	}
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// readRec is a record as a consumer sees it.
type readRec struct {
	off       int64
	key, val  string
	tombstone bool
}

// readCommitted reads the whole log as a read_committed consumer: batches
// in order up to the last stable offset, aborted transactions' data
// dropped as Kafka's consumer drops it (the aborted list of the fetch, then
// each producer's ABORT marker ends its skipping).
func readCommitted(t *testing.T, p *Partition) []readRec {
	t.Helper()
	upto := p.LastStableOffset()
	aborted := p.AbortedTxns(p.StartOffset(), upto)
	slices.SortFunc(aborted, func(a, b AbortedTxn) int { return int(a.FirstOffset - b.FirstOffset) })
	skipping := map[int64]bool{}
	var out []readRec
	last := int64(-1)
	for off := p.StartOffset(); off < upto; {
		sec, err := p.ReadUpTo(off, 1<<20, upto)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if sec.Len == 0 {
			break
		}
		buf := make([]byte, sec.Len)
		if _, err := sec.File.ReadAt(buf, sec.Pos); err != nil {
			t.Fatal(err)
		}
		sec.Release()
		for len(buf) > 0 {
			h, err := checkBatch(buf, true)
			if err != nil {
				t.Fatalf("served a bad batch at offset %d: %v", off, err)
			}
			b := buf[:h.size()]
			buf = buf[h.size():]
			off = h.nextOffset()
			for len(aborted) > 0 && aborted[0].FirstOffset <= h.nextOffset()-1 {
				skipping[aborted[0].ProducerID] = true
				aborted = aborted[1:]
			}
			if h.control() {
				err := eachRecord(b, h, func(r rawRecord) error {
					var key kmsg.ControlRecordKey
					if err := key.ReadFrom(r.key); err != nil {
						return err
					}
					if key.Type == kmsg.ControlRecordKeyTypeAbort {
						delete(skipping, h.producerID)
					}
					return nil
				})
				if err != nil {
					t.Fatalf("marker at %d: %v", h.baseOffset, err)
				}
				continue
			}
			if h.transactional() && skipping[h.producerID] {
				continue
			}
			err = eachRecord(b, h, func(r rawRecord) error {
				o := h.baseOffset + r.delta
				if o <= last {
					return fmt.Errorf("offset %d after %d", o, last)
				}
				last = o
				rec := readRec{off: o, key: string(r.key), tombstone: r.valueNull}
				if !r.valueNull {
					rec.val = recordValue(r.raw)
				}
				out = append(out, rec)
				return nil
			})
			if err != nil {
				t.Fatalf("batch at %d: %v", h.baseOffset, err)
			}
		}
	}
	return out
}

// recordValue decodes a record's value from its raw bytes.
func recordValue(raw []byte) string {
	var r kmsg.Record
	_, n := binary.Varint(raw)
	if err := r.ReadFrom(raw); err != nil {
		_ = n
		return "<undecodable>"
	}
	return string(r.Value)
}

// fold applies records in order: the table a compacted topic stands for.
func fold(recs []readRec) map[string]string {
	m := map[string]string{}
	for _, r := range recs {
		if r.tombstone {
			delete(m, r.key)
		} else {
			m[r.key] = r.val
		}
	}
	return m
}

func compactConfig(segBytes int64) Config {
	return Config{SegmentBytes: segBytes, Compact: true, KeepForever: true}
}

func TestCleanKeepsLatestPerKey(t *testing.T) {
	dir := t.TempDir()
	p := openT(t, dir, compactConfig(1024), true)
	now := time.Now()
	want := map[string]string{}
	for i := range 500 {
		k := fmt.Sprintf("key-%02d", i%37)
		v := fmt.Sprintf("value-%d", i)
		if _, _, err := p.Append(keyedBatch(now.UnixMilli(), kv{k, val(v)}), now); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	before := p.Size()
	end := p.EndOffset()
	st, err := p.Clean(context.Background(), CleanOptions{Now: now, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Passes != 1 || st.RecordsRemoved == 0 {
		t.Fatalf("stats %+v", st)
	}
	if p.Size() >= before/2 {
		t.Fatalf("size %d after clean, %d before", p.Size(), before)
	}
	if p.EndOffset() != end || p.StartOffset() != 0 {
		t.Fatalf("offsets moved: %d..%d", p.StartOffset(), p.EndOffset())
	}
	recs := readCommitted(t, p)
	if got := fold(recs); !mapsEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Each key once in the cleaned segments.
	seen := map[string]bool{}
	activeBase := p.segs[len(p.segs)-1].base
	for _, r := range recs {
		if r.off < activeBase {
			if seen[r.key] {
				t.Fatalf("key %s twice below the active segment", r.key)
			}
			seen[r.key] = true
		}
	}
	// Reopen, clean and after a crash: the cleaned segments read the same.
	p.Close()
	for _, clean := range []bool{true, false} {
		q := openT(t, dir, compactConfig(1024), clean)
		if got := fold(readCommitted(t, q)); !mapsEqual(got, want) {
			t.Fatalf("reopened (clean %v): got %v", clean, got)
		}
		q.Close()
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCleanSmallMapTakesPasses cleans with a map far smaller than the keys:
// the clean takes several passes and the result is the same.
func TestCleanSmallMapTakesPasses(t *testing.T) {
	p := openT(t, t.TempDir(), compactConfig(8192), true)
	now := time.Now()
	want := map[string]string{}
	for i := range 200 {
		var recs []kv
		for j := range 10 {
			k := fmt.Sprintf("k%03d", ((i*10+j)*7)%300)
			v := fmt.Sprint(i, "-", j)
			recs = append(recs, kv{k, val(v)})
			want[k] = v
		}
		if _, _, err := p.Append(keyedBatch(now.UnixMilli(), recs...), now); err != nil {
			t.Fatal(err)
		}
	}
	st, err := p.Clean(context.Background(), CleanOptions{Now: now, Force: true, BufferBytes: 100 * mapSlotBytes})
	if err != nil {
		t.Fatal(err)
	}
	if st.Passes < 3 {
		t.Fatalf("%d passes with a 90-key map for 300 keys", st.Passes)
	}
	if got := fold(readCommitted(t, p)); !mapsEqual(got, want) {
		t.Fatalf("got %d keys, want %d", len(got), len(want))
	}
}

// TestCleanTombstonesExpire: a tombstone stays delete.retention.ms after
// its first clean, then goes; records without a key go at once.
func TestCleanTombstonesExpire(t *testing.T) {
	p := openT(t, t.TempDir(), compactConfig(1024), true)
	now := time.Now()
	app := func(recs ...kv) {
		if _, _, err := p.Append(keyedBatch(now.UnixMilli(), recs...), now); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		app(kv{fmt.Sprint("k", i%5), val("v")})
	}
	app(kv{"k1", nil})
	for i := range 30 {
		app(kv{"filler", val(fmt.Sprint(i))})
	}
	count := func() (tombs int) {
		for _, r := range readCommitted(t, p) {
			if r.tombstone {
				tombs++
			}
		}
		return tombs
	}
	if _, err := p.Clean(context.Background(), CleanOptions{Now: now, Force: true}); err != nil {
		t.Fatal(err)
	}
	if count() != 1 {
		t.Fatal("tombstone gone at its first clean")
	}
	if st := p.CleanState(now.Add(time.Hour)); st.Due {
		t.Fatal("due before delete.retention.ms")
	}
	later := now.Add(DefaultDeleteRetention + time.Minute)
	if st := p.CleanState(later); !st.Due {
		t.Fatal("not due once the tombstone expired")
	}
	if _, err := p.Clean(context.Background(), CleanOptions{Now: later}); err != nil {
		t.Fatal(err)
	}
	if count() != 0 {
		t.Fatal("tombstone kept past delete.retention.ms")
	}
	if got := fold(readCommitted(t, p)); len(got) != 5 || got["k1"] != "" {
		// k1 is deleted; filler and four other keys remain.
		if _, ok := got["k1"]; ok || len(got) != 5 {
			t.Fatalf("got %v", got)
		}
	}
}

// errCrash stops a clean at a step, as a crash there would.
var errCrash = errors.New("crash")

// TestCleanProperty runs random keyed writes, deletes and transactions
// (committed and aborted) with cleans in between, each clean crashed at a
// random step (every step is reached across the seeds, the renames
// included): after every clean and every recovery, a read_committed read
// from the start folds to the latest committed value per key, offsets
// increase, no aborted record is seen, and records appended while a clean
// runs are kept.
func TestCleanProperty(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 4
	}
	stepsSeen := map[string]bool{}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { propertyRun(t, uint64(seed), stepsSeen) })
	}
	if testing.Short() {
		return
	}
	for _, s := range []string{"cleaned", "manifest", "checkpoint", "remove " + cleanerSwapFile} {
		if !stepsSeen[s] {
			t.Errorf("no crash at step %q", s)
		}
	}
	renames := 0
	for s := range stepsSeen {
		if strings.HasPrefix(s, "rename ") {
			renames++
		}
	}
	if renames == 0 {
		t.Error("no crash between renames")
	}
}

type written struct {
	off       int64
	key       string
	val       string
	tombstone bool
	txn       int // 0: none
}

func propertyRun(t *testing.T, seed uint64, stepsSeen map[string]bool) {
	rng := rand.New(rand.NewPCG(seed, seed*31+7))
	cfg := compactConfig(int64(300 + rng.IntN(1500)))
	cfg.DeleteRetention = time.Duration(1+rng.IntN(20)) * time.Hour
	dir := t.TempDir()
	p := openT(t, dir, cfg, true)
	now := time.UnixMilli(1_700_000_000_000)
	keys := 3 + rng.IntN(30)
	var log []written
	txnState := map[int]string{} // txn id -> "commit", "abort", "" (open)
	type prod struct {
		epoch int16
		seq   int32
		txn   int // open txn id, 0 if none
	}
	prods := map[int64]*prod{1: {}, 2: {}, 3: {}}
	nextTxn, nextVal := 1, 0
	lastSteps := 10 // steps the previous clean took: crashes are drawn among them
	appendRecs := func(pid int64, recs []kv) {
		b := keyedBatch(now.UnixMilli(), recs...)
		txn := 0
		if pid > 0 {
			pr := prods[pid]
			b = asProducer(b, pid, pr.epoch, pr.seq, true)
			pr.seq += int32(len(recs))
			txn = pr.txn
		}
		base, _, err := p.Append(b, now)
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		for i, r := range recs {
			w := written{off: base + int64(i), key: r.k, tombstone: r.v == nil, txn: txn}
			if r.v != nil {
				w.val = *r.v
			}
			log = append(log, w)
		}
	}
	randRecs := func(tag string) []kv {
		n := 1 + rng.IntN(4)
		recs := make([]kv, n)
		for i := range recs {
			recs[i].k = fmt.Sprint("key", rng.IntN(keys))
			if rng.IntN(6) > 0 {
				nextVal++
				recs[i].v = val(fmt.Sprintf("%s-%d", tag, nextVal))
			}
		}
		return recs
	}
	endTxn := func(pid int64, commit bool) {
		pr := prods[pid]
		if _, err := p.AppendMarker(Marker{ProducerID: pid, ProducerEpoch: pr.epoch, Commit: commit}, now); err != nil {
			t.Fatal(err)
		}
		txnState[pr.txn] = map[bool]string{true: "commit", false: "abort"}[commit]
		pr.txn = 0
	}
	closeTxns := func() {
		for pid, pr := range prods {
			if pr.txn != 0 {
				endTxn(pid, rng.IntN(2) == 0)
			}
		}
	}
	check := func(when string) {
		t.Helper()
		closeTxns()
		want := map[string]string{}
		aborted := map[string]bool{}
		for _, w := range log {
			if w.txn != 0 && txnState[w.txn] == "abort" {
				aborted[w.val] = true
				continue
			}
			if w.tombstone {
				delete(want, w.key)
			} else {
				want[w.key] = w.val
			}
		}
		recs := readCommitted(t, p)
		for _, r := range recs {
			if !r.tombstone && aborted[r.val] {
				t.Fatalf("%s: read_committed saw aborted record %s at %d", when, r.val, r.off)
			}
		}
		if got := fold(recs); !mapsEqual(got, want) {
			t.Fatalf("%s: log folds to %v, want %v", when, got, want)
		}
	}
	for op := range 150 {
		now = now.Add(time.Duration(rng.IntN(40)) * time.Minute)
		switch r := rng.IntN(20); {
		case r < 11:
			appendRecs(0, randRecs("plain"))
		case r < 15:
			pid := int64(1 + rng.IntN(3))
			pr := prods[pid]
			if pr.txn == 0 {
				pr.txn = nextTxn
				txnState[nextTxn] = ""
				nextTxn++
			}
			appendRecs(pid, randRecs(fmt.Sprintf("txn%d", pr.txn)))
		case r < 17:
			pid := int64(1 + rng.IntN(3))
			if prods[pid].txn != 0 {
				endTxn(pid, rng.IntN(2) == 0)
			}
		default:
			closeTxns()
			// Crash at a random step of this clean (or none).
			crashAt := rng.IntN(lastSteps + 2)
			stepN := 0
			crashDir := ""
			appended := false
			step := func(s string) error {
				if !appended && s == "cleaned" {
					// Written while the clean runs: must be kept.
					appended = true
					appendRecs(0, randRecs("during"))
				}
				if stepN == crashAt {
					stepsSeen[s] = true
					crashDir = copyDir(t, p.Dir())
					return errCrash
				}
				stepN++
				return nil
			}
			_, err := p.Clean(context.Background(), CleanOptions{Now: now, Force: rng.IntN(2) == 0, step: step,
				BufferBytes: int64(8+rng.IntN(60)) * mapSlotBytes})
			if err != nil && !errors.Is(err, errCrash) {
				t.Fatalf("op %d: clean: %v", op, err)
			}
			if crashDir == "" && stepN > 0 {
				lastSteps = stepN
			}
			if crashDir != "" {
				p.Close()
				p = openT(t, crashDir, cfg, false)
				check(fmt.Sprintf("op %d: after a crash at step %d", op, crashAt))
				leftovers, _ := filepath.Glob(filepath.Join(crashDir, "*"+cleanedSuffix))
				if _, err := os.Stat(filepath.Join(crashDir, cleanerSwapFile)); err == nil || len(leftovers) > 0 {
					t.Fatalf("op %d: recovery left %v and the swap file (%v)", op, leftovers, err)
				}
			}
			check(fmt.Sprintf("op %d: after a clean", op))
		}
	}
	closeTxns()
	if _, err := p.Clean(context.Background(), CleanOptions{Now: now.Add(cfg.DeleteRetention * 3), Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Clean(context.Background(), CleanOptions{Now: now.Add(cfg.DeleteRetention * 6), Force: true}); err != nil {
		t.Fatal(err)
	}
	check("final")
}

// TestCleanLagsAndRatio: min.compaction.lag.ms keeps young segments out of
// a clean, min.cleanable.dirty.ratio decides when one is due, and
// max.compaction.lag.ms makes one due below the ratio.
func TestCleanLagsAndRatio(t *testing.T) {
	cfg := compactConfig(1024)
	p := openT(t, t.TempDir(), cfg, true)
	t0 := time.UnixMilli(1_700_000_000_000)
	for i := range 100 {
		if _, _, err := p.Append(keyedBatch(t0.UnixMilli(), kv{fmt.Sprint("k", i%5), val("v")}), t0); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.CleanState(t0); !st.Due || st.Ratio != 1 {
		t.Fatalf("a log never cleaned: %+v; want ratio 1, due", st)
	}
	// Records an hour old are too young for a two-hour lag.
	cfg.MinCompactionLag = 2 * time.Hour
	p.SetConfig(quietConfig(cfg))
	if st := p.CleanState(t0.Add(time.Hour)); st.Due {
		t.Fatalf("due inside min.compaction.lag.ms: %+v", st)
	}
	if s, err := p.Clean(context.Background(), CleanOptions{Now: t0.Add(time.Hour), Force: true}); err != nil || s.Passes != 0 {
		t.Fatalf("clean inside min.compaction.lag.ms: %+v %v", s, err)
	}
	if s, err := p.Clean(context.Background(), CleanOptions{Now: t0.Add(3 * time.Hour)}); err != nil || s.Passes != 1 {
		t.Fatalf("clean past min.compaction.lag.ms: %+v %v", s, err)
	}
	// New dirty bytes, far below the ratio, become due at max.compaction.lag.ms.
	// The oldest dirty record is in the segment that was active at t0.
	cfg.MinCompactionLag, cfg.MaxCompactionLag, cfg.MinCleanableRatio = 0, 10*time.Hour, 0.99
	p.SetConfig(quietConfig(cfg))
	t1 := t0.Add(4 * time.Hour)
	for i := range 60 {
		if _, _, err := p.Append(keyedBatch(t1.UnixMilli(), kv{fmt.Sprint("k", i%5), val("w")}), t1); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.CleanState(t1.Add(time.Minute)); st.Due || st.Ratio >= 0.99 || st.Ratio < 0.5 {
		t.Fatalf("due below the ratio before max.compaction.lag.ms: %+v", st)
	}
	if st := p.CleanState(t1.Add(7 * time.Hour)); !st.Due {
		t.Fatalf("not due past max.compaction.lag.ms: %+v", st)
	}
}

// TestCleanerMarksFailureUncleanable: a clean that meets a damaged batch
// fails that partition alone, which is marked uncleanable and still served
// up to the damage, while the cleaner goes on with the others.
func TestCleanerMarksFailureUncleanable(t *testing.T) {
	var logs logBuf
	bad := openT(t, t.TempDir(), compactConfig(1024), true)
	good := openT(t, t.TempDir(), compactConfig(1024), true)
	now := time.Now()
	for _, p := range []*Partition{bad, good} {
		for i := range 60 {
			if _, _, err := p.Append(keyedBatch(now.UnixMilli(), kv{fmt.Sprint("k", i%4), val(fmt.Sprint(i))}), now); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Damage the last byte of the second sealed segment's first batch.
	seg := bad.segs[1]
	h, err := seg.readHeader(0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	seg.f.ReadAt(b[:], h.size()-1)
	b[0] ^= 0xff
	if _, err := seg.f.WriteAt(b[:], h.size()-1); err != nil {
		t.Fatal(err)
	}
	c := NewCleaner(CleanerOptions{BufferBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, func() []CleanTarget {
		return []CleanTarget{{Name: "bad-0", P: bad}, {Name: "good-0", P: good}}
	})
	if err := c.CleanNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Failures != 1 || st.Runs != 1 {
		t.Fatalf("stats %+v; want one failure and one clean", st)
	}
	if cs := bad.CleanState(now); cs.Uncleanable == nil || cs.Due {
		t.Fatalf("damaged partition: %+v; want uncleanable, not due", cs)
	}
	if cs := good.CleanState(now); cs.Uncleanable != nil {
		t.Fatalf("good partition marked uncleanable: %v", cs.Uncleanable)
	}
	if !strings.Contains(logs.String(), "cleaning a partition log failed") {
		t.Fatalf("failure not logged:\n%s", logs.String())
	}
	if sec, err := bad.Read(0, 1<<20); err != nil || sec.Len == 0 {
		t.Fatalf("damaged partition not served before the damage: %v", err)
	} else {
		sec.Release()
	}
}

// TestConcurrentClean: appends, reads from the start (which hold sections
// of segments a clean replaces) and cleans at the same time, under -race:
// every read serves whole valid batches with increasing offsets, and the
// log at the end folds to every writer's last value per key.
func TestConcurrentClean(t *testing.T) {
	p := openT(t, t.TempDir(), compactConfig(2048), true)
	const writers, perWriter = 2, 400
	var wg, others sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 8)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				k := fmt.Sprintf("w%d-k%d", w, i%10)
				if _, _, err := p.Append(keyedBatch(int64(i), kv{k, val(fmt.Sprint(i))}), time.Now()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 2 {
		others.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := readPass(p, -1); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	others.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := p.Clean(context.Background(), CleanOptions{Force: true, BufferBytes: 1 << 16}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(done)
	others.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := p.Clean(context.Background(), CleanOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for w := range writers {
		for i := perWriter - 10; i < perWriter; i++ {
			want[fmt.Sprintf("w%d-k%d", w, i%10)] = fmt.Sprint(i)
		}
	}
	if got := fold(readCommitted(t, p)); !mapsEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestThrottleHoldsRate: accounting 5 MiB at 10 MiB/s cannot finish before
// the rate allows (less the burst the throttle lets through); a cancelled
// context ends the wait.
func TestThrottleHoldsRate(t *testing.T) {
	th := NewThrottle(10 << 20)
	start := time.Now()
	for range 5 {
		if err := th.wait(context.Background(), 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	if min := 500*time.Millisecond - throttleBurst; time.Since(start) < min {
		t.Fatalf("5 MiB at 10 MiB/s took %v, less than %v", time.Since(start), min)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := th.wait(ctx, 100<<20); err == nil {
		t.Fatal("a cancelled wait returned nil")
	}
	if NewThrottle(0) != nil {
		t.Fatal("rate 0 should mean no throttle")
	}
}
