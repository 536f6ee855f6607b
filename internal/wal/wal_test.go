package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

func recs(from, to int) []engine.Record {
	var out []engine.Record
	for i := from; i < to; i++ {
		r := engine.Record{Topic: "t", Partition: int32(i % 2), Offset: int64(i / 2),
			Value: []byte(fmt.Sprintf("v%d", i)), Time: time.Unix(0, int64(i))}
		if i%3 == 0 {
			r.Key = []byte("k")
			r.Headers = []engine.Header{{Key: "h", Value: []byte("x")}, {Key: "nil"}}
		}
		out = append(out, r)
	}
	return out
}

func check(t *testing.T, got []engine.Record, from int) {
	t.Helper()
	want := recs(from, from+len(got))
	for i := range got {
		g, w := got[i], want[i]
		if string(g.Value) != string(w.Value) || string(g.Key) != string(w.Key) || g.Offset != w.Offset ||
			g.Partition != w.Partition || !g.Time.Equal(w.Time) || len(g.Headers) != len(w.Headers) ||
			(g.Key == nil) != (w.Key == nil) {
			t.Fatalf("record %d: got %+v want %+v", from+i, g, w)
		}
		if len(g.Headers) > 0 && (g.Headers[1].Value != nil || string(g.Headers[0].Value) != "x") {
			t.Fatalf("headers: %+v", g.Headers)
		}
	}
}

func TestAppendReadReopenTrim(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.segmentBytes = 4096 // many segments
	for i := 0; i < 5000; i += 500 {
		end, err := w.Append(recs(i, i+500))
		if err != nil || end != int64(i+500) {
			t.Fatalf("append: end %d err %v", end, err)
		}
	}
	got, err := w.Read(1234, 3000)
	if err != nil || len(got) != 3000 {
		t.Fatalf("read: %d records, err %v", len(got), err)
	}
	check(t, got, 1234)
	w.Close()

	w, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s, e := w.Bounds(); s != 0 || e != 5000 {
		t.Fatalf("bounds after reopen: %d %d", s, e)
	}
	if m := w.MaxOffsets(); m[engine.TopicPartition{Topic: "t", Partition: 1}] != 2499 {
		t.Fatalf("max offsets: %v", m)
	}
	if err := w.Trim(3000); err != nil {
		t.Fatal(err)
	}
	s, e := w.Bounds()
	if s > 3000 || s == 0 || e != 5000 {
		t.Fatalf("trim kept [%d, %d)", s, e)
	}
	if _, err := w.Read(s-1, 1); err == nil {
		t.Fatal("reading a trimmed sequence must fail")
	}
	got, _ = w.Read(3000, 0)
	if len(got) != 2000 {
		t.Fatalf("after trim read %d", len(got))
	}
	check(t, got, 3000)
	// Appends continue the sequence across reopen and trim.
	if end, _ := w.Append(recs(5000, 5001)); end != 5001 {
		t.Fatalf("end %d", end)
	}
	w.Close()
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	w, _ := Open(dir)
	w.Append(recs(0, 100))
	w.Close()
	names, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	st, _ := os.Stat(names[0])
	// A crash in the middle of the last entry.
	os.Truncate(names[0], st.Size()-3)
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, e := w.Bounds(); e != 99 {
		t.Fatalf("torn entry kept: end %d", e)
	}
	if end, _ := w.Append(recs(99, 100)); end != 100 {
		t.Fatalf("append after cut: %d", end)
	}
	got, _ := w.Read(0, 0)
	check(t, got, 0)
	w.Close()
	// Garbage after the last good entry is cut too.
	f, _ := os.OpenFile(names[0], os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{0, 0, 0, 9, 1, 2, 3, 4, 5})
	f.Close()
	w, _ = Open(dir)
	if _, e := w.Bounds(); e != 100 {
		t.Fatalf("garbage tail: end %d", e)
	}
	w.Close()
}

func FuzzDecode(f *testing.F) {
	for _, r := range recs(0, 4) {
		f.Add(encode(nil, &r))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decode(b)
		if err != nil {
			return
		}
		// What decodes must encode back to something that decodes the same.
		r2, err := decode(encode(nil, &r))
		if err != nil || string(r2.Value) != string(r.Value) || r2.Offset != r.Offset {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func BenchmarkAppendRead(b *testing.B) {
	w, _ := Open(b.TempDir())
	block := make([]engine.Record, 10000)
	for i := range block {
		block[i] = engine.Record{Topic: "t", Offset: int64(i), Value: make([]byte, 100)}
	}
	b.ReportAllocs()
	var seq int64
	for b.Loop() {
		end, err := w.Append(block)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Read(seq, 0); err != nil {
			b.Fatal(err)
		}
		seq = end
	}
	b.ReportMetric(float64(b.N*len(block))/b.Elapsed().Seconds(), "records/s")
}

// A block hands out from memory exactly what the log returns for the same
// sequences after reopening, from any entry, across chunk boundaries.
func TestBlockRecordsMatchTheLog(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.segmentBytes = 64 << 10 // blocks span segments
	want := recs(0, 6000)
	// One value larger than a chunk, and one empty non-nil value.
	want[10].Value = bytes.Repeat([]byte{'x'}, 3*minChunkBytes)
	want[11].Value = []byte{}
	var blocks []*Block
	var firsts []int64
	for from := 0; from < len(want); {
		b := &Block{}
		// Blocks built as the receiver builds them (Grow, then a poll's
		// records), and one without Grow.
		for poll := 0; poll < 3 && from < len(want); poll++ {
			to := min(from+700+poll*300, len(want))
			if from != 0 {
				size := 0
				for i := from; i < to; i++ {
					size += EncodedSize(&want[i])
				}
				b.Grow(size)
				b.Grow(size) // a second Grow for the same records adds nothing
			}
			for i := from; i < to; i++ {
				b.Add(&want[i])
			}
			from = to
		}
		end, err := w.AppendBlock(b)
		if err != nil {
			t.Fatal(err)
		}
		blocks, firsts = append(blocks, b), append(firsts, end-int64(b.Len()))
	}
	sizes := 0
	for i := range want {
		sizes += EncodedSize(&want[i])
	}
	bytesInBlocks := 0
	for _, b := range blocks {
		bytesInBlocks += b.Bytes()
	}
	if sizes != bytesInBlocks {
		t.Fatalf("EncodedSize sums to %d, the blocks hold %d bytes", sizes, bytesInBlocks)
	}
	w.Close()
	if w, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for k, b := range blocks {
		for _, r := range [][2]int{{0, b.Len()}, {1, 5}, {blockIndexEvery - 1, 2}, {b.Len() - 1, 1}, {b.Len() / 2, b.Len() - b.Len()/2}} {
			mem, err := b.Records(nil, r[0], r[1])
			if err != nil {
				t.Fatal(err)
			}
			disk, err := w.Read(firsts[k]+int64(r[0]), r[1])
			if err != nil {
				t.Fatal(err)
			}
			if len(mem) != r[1] || !reflect.DeepEqual(mem, disk) {
				t.Fatalf("block %d entries %d+%d: %d from memory, %d from the log, equal %v",
					k, r[0], r[1], len(mem), len(disk), reflect.DeepEqual(mem, disk))
			}
			for i, rec := range mem {
				if g, w := rec, want[firsts[k]+int64(r[0]+i)]; !bytes.Equal(g.Value, w.Value) || (g.Value == nil) != (w.Value == nil) ||
					g.Offset != w.Offset || !g.Time.Equal(w.Time) || len(g.Headers) != len(w.Headers) {
					t.Fatalf("block %d entry %d: got %+v want %+v", k, r[0]+i, g, w)
				}
			}
		}
	}
	if _, err := blocks[0].Records(nil, 1, blocks[0].Len()); err == nil {
		t.Fatal("reading past a block's end must fail")
	}
}

// What a read returns is its own: appending to a value does not write
// into the entry that follows it.
func TestRecordsAreCapped(t *testing.T) {
	b := &Block{}
	in := recs(0, 3)
	for i := range in {
		b.Add(&in[i])
	}
	got, err := b.Records(nil, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(got[0].Value, "overwritten"...)
	again, _ := b.Records(nil, 1, 1)
	if string(again[0].Value) != "v1" {
		t.Fatalf("appending to a record's value changed the next entry: %q", again[0].Value)
	}
}

// Encoding a block and decoding it from memory cost no allocation per
// record: the block's chunks, the caller's record slice, and for headers
// a shared slab (header keys repeat, so their strings are reused).
func BenchmarkBlockAddRecords(b *testing.B) {
	for _, withHeaders := range []bool{false, true} {
		b.Run(fmt.Sprintf("headers=%v", withHeaders), func(b *testing.B) {
			in := make([]engine.Record, 10_000)
			for i := range in {
				// In runs per partition, as polls return them.
				in[i] = engine.Record{Topic: "t", Partition: int32(i / 2500), Offset: int64(i), Value: make([]byte, 100), Time: time.Unix(0, int64(i))}
				if withHeaders {
					in[i].Headers = []engine.Header{{Key: "trace", Value: []byte("x")}, {Key: "type", Value: []byte("y")}}
				}
			}
			out := make([]engine.Record, 0, len(in))
			b.ReportAllocs()
			for b.Loop() {
				size := 0
				for i := range in {
					size += EncodedSize(&in[i])
				}
				var blk Block
				blk.Grow(size)
				for i := range in {
					blk.Add(&in[i])
				}
				var err error
				if out, err = blk.Records(out[:0], 0, blk.Len()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(in))/b.Elapsed().Seconds(), "records/s")
		})
	}
}
