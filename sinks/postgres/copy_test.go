package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sluicehq/sluice/engine"
)

// These tests need no server: they decode the binary COPY stream and
// compare every field with what pgx's encoders (the path the writer
// replaces) produce for the same record and column type.

// nativeTypes lists, per column source, every type the writer encodes.
var nativeTypes = map[string][]uint32{
	partKey:       {oidBytea, oidText, oidVarchar, oidBPChar, oidJSON, oidJSONB},
	partValue:     {oidBytea, oidText, oidVarchar, oidBPChar, oidJSON, oidJSONB},
	partTopic:     {oidText, oidVarchar, oidBPChar},
	partPartition: {oidInt2, oidInt4, oidInt8},
	partOffset:    {oidInt2, oidInt4, oidInt8},
	partTimestamp: {oidTimestamptz, oidTimestamp},
	"": {oidBool, oidBytea, oidInt2, oidInt4, oidInt8, oidText, oidJSON, oidJSONB, oidFloat4, oidFloat8,
		oidBPChar, oidVarchar, oidTimestamp, oidTimestamptz, oidNumeric},
}

// testColumns returns planned columns of every source and native type;
// JSON fields read path (e.g. []string{"f"}).
func testColumns(t testing.TB, m *pgtype.Map, path ...string) []column {
	var cols []column
	for _, part := range []string{partKey, partValue, partTopic, partPartition, partOffset, partTimestamp, ""} {
		for _, oid := range nativeTypes[part] {
			c := column{name: fmt.Sprintf("c%d", len(cols)), part: part, oid: oid, typ: fmt.Sprint("oid ", oid)}
			if part == "" {
				c.path = path
			}
			c.planEncoding(m)
			if c.enc == encNone {
				t.Fatalf("column %s from %s of type %d has no encoding", c.name, c.source(), oid)
			}
			cols = append(cols, c)
		}
	}
	return cols
}

// readAll reads r to the end through reads of size chunk.
func readAll(r io.Reader, chunk int) ([]byte, error) {
	var out []byte
	p := make([]byte, chunk)
	for {
		n, err := r.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// decodeCopy parses a binary COPY stream into tuples of fields (nil for
// NULL), checking its framing.
func decodeCopy(stream []byte, fields int) ([][][]byte, error) {
	if !bytes.HasPrefix(stream, copySignature) {
		return nil, fmt.Errorf("stream starts %q, not the binary COPY header", stream[:min(len(stream), 19)])
	}
	rest := stream[len(copySignature):]
	var rows [][][]byte
	for {
		if len(rest) < 2 {
			return nil, fmt.Errorf("stream ends inside row %d", len(rows))
		}
		n := int16(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if n == -1 {
			if len(rest) != 0 {
				return nil, fmt.Errorf("%d bytes after the trailer", len(rest))
			}
			return rows, nil
		}
		if int(n) != fields {
			return nil, fmt.Errorf("row %d has %d fields, want %d", len(rows), n, fields)
		}
		row := make([][]byte, n)
		for i := range row {
			if len(rest) < 4 {
				return nil, fmt.Errorf("row %d ends inside field %d", len(rows), i)
			}
			size := int32(binary.BigEndian.Uint32(rest))
			rest = rest[4:]
			if size == -1 {
				continue
			}
			if size < 0 || int(size) > len(rest) {
				return nil, fmt.Errorf("row %d field %d: length %d with %d bytes left", len(rows), i, size, len(rest))
			}
			row[i] = append([]byte{}, rest[:size]...)
			rest = rest[size:]
		}
		rows = append(rows, row)
	}
}

// pgxField is what pgx's CopyFrom sent for the field: the value the
// rowBuilder makes, through pgx's encoder for the column's type.
func pgxField(m *pgtype.Map, b *rowBuilder, c *column, r *engine.Record) ([]byte, error) {
	v, err := b.value(c, r)
	if err != nil || v == nil {
		return nil, err
	}
	// A non-nil buffer, as in CopyFrom: a nil result means NULL.
	out, err := m.Encode(c.oid, pgtype.BinaryFormatCode, v, make([]byte, 0, 16))
	if out == nil {
		return nil, err
	}
	return out, err
}

// edgeRecords covers the record parts' edge cases; their values are JSON
// objects so JSON-field columns can read them.
func edgeRecords() []engine.Record {
	big := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16) // spans many chunks
	bigJSON := append(append([]byte(`{"f":"`), big...), `"}`...)
	nonUTF8 := []byte{0xff, 0xfe, 0x00, 0x80}
	zone := time.FixedZone("UTC+05:30", 5*3600+30*60)
	ny, _ := time.LoadLocation("America/New_York")
	if ny == nil {
		ny = time.FixedZone("EST", -5*3600)
	}
	return []engine.Record{
		{Topic: "t", Value: []byte(`{"f":1}`)},                                                       // no key, no time
		{Topic: "t", Partition: 1, Offset: 1, Key: []byte{}, Value: []byte{}, Time: time.Unix(0, 0)}, // empty, not NULL
		{Topic: "clicks-ü", Partition: 32767, Offset: 32767, Key: nonUTF8, Value: nonUTF8,
			Time: time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{Topic: "t", Partition: -1, Offset: -1, Key: []byte("ключ"), Value: bigJSON,
			Time: time.Date(1969, 7, 20, 20, 17, 40, 123456789, ny)},
		{Topic: "t", Offset: 2, Key: bytes.Repeat([]byte("k"), borrowMin), Value: []byte(`{"f":null}`),
			Time: time.Date(1, 1, 1, 0, 0, 0, 1000, zone)},
		{Topic: "t", Offset: 3, Key: []byte("k"), Value: []byte(`{"f":"2026-03-04T05:06:07.891011+05:30"}`),
			Time: time.Date(2026, 3, 4, 5, 6, 7, 891011000, zone)},
		{Topic: "t", Offset: 4, Value: []byte(`{"f":"true"}`), Time: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{Topic: "t", Offset: 5, Value: []byte(`{"f":{"a":[1,2.5,"x"]}}`), Time: time.UnixMilli(-1)},
		{Topic: "t", Offset: 6, Value: []byte(`{"f":"12345678901234567890.0123456789"}`)},
		{Topic: "t", Offset: 7, Value: []byte(`{"f":-7}`)},
		{Topic: "t", Offset: 8, Value: []byte(`{"g":1}`)}, // f missing: NULL
	}
}

// compareWithPgx encodes recs into cols and checks every field against
// pgx's encoding of the same value; a field that pgx refuses must fail
// the stream too.
func compareWithPgx(t *testing.T, m *pgtype.Map, cols []column, recs []engine.Record, readSize int) {
	t.Helper()
	want := make([][][]byte, 0, len(recs))
	b := &rowBuilder{cols: cols}
	var wantErr error
	for i := range recs {
		b.obj = nil
		row := make([][]byte, len(cols))
		for j := range cols {
			f, err := pgxField(m, b, &cols[j], &recs[i])
			if err != nil {
				wantErr = fmt.Errorf("record %d column %s (%s, oid %d): %w", i, cols[j].name, cols[j].source(), cols[j].oid, err)
				break
			}
			row[j] = f
		}
		if wantErr != nil {
			break
		}
		want = append(want, row)
	}
	r := newCopyReader(cols, recs, nil, nil, nil)
	stream, err := readAll(r, readSize)
	if wantErr != nil {
		if err == nil {
			t.Fatalf("pgx refuses %v, the binary writer took it", wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("binary writer: %v (pgx encodes every field)", err)
	}
	got, err := decodeCopy(stream, len(cols))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		for j := range cols {
			g, w := got[i][j], want[i][j]
			if (g == nil) != (w == nil) || !bytes.Equal(g, w) {
				c := &cols[j]
				t.Errorf("record %d, column %s from %s, oid %d:\n got %s\nwant %s (pgx)", i, c.name, c.source(), c.oid, show(g), show(w))
			}
		}
	}
}

func show(b []byte) string {
	if b == nil {
		return "NULL"
	}
	if len(b) > 40 {
		return fmt.Sprintf("%x... (%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%x", b)
}

func TestCopyMatchesPgxEncoders(t *testing.T) {
	m := pgtype.NewMap()
	recs := edgeRecords()
	// Record parts only: the edge values are not all JSON objects. (Bytes
	// that are not JSON or UTF-8 go to json and text columns unchecked by
	// pgx and the writer alike; the server refuses them.)
	var parts []column
	for _, c := range testColumns(t, m, "f") {
		if c.part != "" {
			parts = append(parts, c)
		}
	}
	for _, size := range []int{1, 7, 4096, 65531} {
		t.Run(fmt.Sprintf("parts/read=%d", size), func(t *testing.T) { compareWithPgx(t, m, parts, recs, size) })
	}
	// Every column kind and type, on records whose values are JSON
	// objects, one record at a time, so a value one type refuses (pgx
	// and the writer alike) does not hide the others.
	cols := testColumns(t, m, "f")
	for i, r := range recs {
		if !bytes.HasPrefix(r.Value, []byte("{")) || !bytes.HasSuffix(r.Value, []byte("}")) {
			continue
		}
		for j := range cols {
			t.Run(fmt.Sprintf("record %d/%s/oid %d", i, cols[j].source(), cols[j].oid), func(t *testing.T) {
				compareWithPgx(t, m, cols[j:j+1], []engine.Record{r}, 65531)
			})
		}
	}
}

// FuzzCopyMatchesPgx feeds arbitrary values through JSON-field columns of
// every type and arbitrary record parts through every record-part column:
// the writer must produce pgx's bytes, or fail where pgx fails.
func FuzzCopyMatchesPgx(f *testing.F) {
	f.Add([]byte(`{"a":{"b":1},"c":"x"}`), []byte("k"), int32(3), int64(70000), int64(1700000000123))
	f.Add([]byte(`{"a":[1,2],"c":null}`), []byte(nil), int32(-40000), int64(-1), int64(-1))
	f.Add([]byte(`{"c":"2026-01-02T03:04:05.123456789-07:00","a":{"b":"1e400"}}`), []byte{0xff}, int32(0), int64(1<<40), int64(0))
	f.Add([]byte(`[]`), []byte{}, int32(1), int64(1), int64(1))
	m := pgtype.NewMap()
	f.Fuzz(func(t *testing.T, value, key []byte, partition int32, offset, millis int64) {
		rec := engine.Record{Topic: "t", Partition: partition, Offset: offset, Key: key, Value: value}
		if millis != 0 && millis > -1e14 && millis < 1e14 { // within PostgreSQL's range; pgx does not check it
			rec.Time = time.UnixMilli(millis)
		}
		cols := testColumns(t, m, "c")
		for j := range cols {
			if cols[j].part == "" {
				nested := cols[j]
				nested.name, nested.path = nested.name+"n", []string{"a", "b"}
				cols = append(cols, nested)
			}
		}
		for j := range cols {
			compareWithPgx(t, m, cols[j:j+1], []engine.Record{rec}, 65531)
		}
	})
}

// The chunk the writer keeps stays a chunk long whatever the batch: large
// values are borrowed, not copied into it.
func TestCopyReaderMemoryIsAChunk(t *testing.T) {
	m := pgtype.NewMap()
	cols := []column{{name: "k", part: partKey, oid: oidBytea}, {name: "v", part: partValue, oid: oidBytea},
		{name: "o", part: partOffset, oid: oidInt8}}
	for i := range cols {
		cols[i].planEncoding(m)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	recs := make([]engine.Record, 64)
	for i := range recs {
		recs[i] = engine.Record{Offset: int64(i), Key: []byte(fmt.Sprint(i)), Value: big}
		if i%2 == 1 {
			recs[i].Value = []byte("small") // mixed, so chunks hold both
		}
	}
	r := newCopyReader(cols, recs, nil, nil, nil)
	var total int
	p := make([]byte, 65531)
	maxBuf := 0
	for {
		n, err := r.Read(p)
		total += n
		maxBuf = max(maxBuf, cap(r.buf))
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// A chunk is filled until it passes copyChunk: at most one row's
	// small fields more (here under 100 bytes), and append's growth.
	if limit := 2 * copyChunk; maxBuf > limit {
		t.Errorf("the writer's buffer grew to %d bytes for a %d MiB batch; want at most %d", maxBuf, total>>20, limit)
	}
	if total < 32<<20 {
		t.Errorf("stream of %d bytes; want the 32 MiB of values and more", total)
	}
	if buf, _ := r.close(); len(buf) != 0 {
		t.Errorf("close returned a buffer of length %d; want it emptied for reuse", len(buf))
	}

	// Closed half-way (a failed COPY), the reused storage must not keep
	// the batch's values alive.
	r = newCopyReader(cols, recs, nil, nil, nil)
	if _, err := r.Read(p[:100]); err != nil {
		t.Fatal(err)
	}
	_, segs := r.close()
	for _, s := range segs[:cap(segs)] {
		if s.data != nil {
			t.Fatalf("close kept a reference to a record's bytes")
		}
	}
}

// Encoding a batch allocates nothing per row once the buffers are warm.
func TestCopyReaderAllocationsDoNotGrowWithRows(t *testing.T) {
	m := pgtype.NewMap()
	cols, err := parseColumns(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cols {
		cols[i].oid = map[string]uint32{partKey: oidBytea, partValue: oidBytea, partTopic: oidText,
			partPartition: oidInt4, partOffset: oidInt8, partTimestamp: oidTimestamptz}[cols[i].part]
		cols[i].planEncoding(m)
	}
	value := bytes.Repeat([]byte("x"), 100)
	recs := make([]engine.Record, 20_000)
	for i := range recs {
		recs[i] = engine.Record{Topic: "bench", Partition: int32(i % 4), Offset: int64(i),
			Key: fmt.Appendf(nil, "k-%d", i), Value: value, Time: time.UnixMilli(1700000000000 + int64(i))}
	}
	var buf []byte
	var segs []borrowed
	var seq int64
	p := make([]byte, 65531)
	allocs := testing.AllocsPerRun(5, func() {
		r := newCopyReader(cols, recs, &seq, buf, segs)
		for {
			_, err := r.Read(p)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		buf, segs = r.close()
	})
	if allocs > 5 {
		t.Errorf("encoding %d rows allocated %.0f times; want a handful per batch, none per row", len(recs), allocs)
	}
}

func TestCopyReaderErrors(t *testing.T) {
	m := pgtype.NewMap()
	cols := []column{{name: "p", part: partPartition, oid: oidInt2, typ: "smallint"},
		{name: "ts", part: partTimestamp, oid: oidTimestamptz, typ: "timestamp with time zone"}}
	for i := range cols {
		cols[i].planEncoding(m)
	}
	ok := engine.Record{Topic: "t", Partition: 1}
	tests := []struct {
		name string
		bad  engine.Record
		want string
	}{
		{"partition over smallint", engine.Record{Topic: "t", Partition: 40000, Offset: 9}, "t/40000@9, column p (partition): 40000 does not fit in smallint"},
		{"partition under smallint", engine.Record{Topic: "t", Partition: -40000, Offset: 9}, "-40000 does not fit in smallint"},
		{"time after 294276 AD", engine.Record{Topic: "t", Offset: 9, Time: time.Date(294277, 1, 1, 0, 0, 0, 0, time.UTC)}, "column ts (timestamp): time 294277-01-01T00:00:00Z is outside PostgreSQL's range"},
		{"time before 4713 BC", engine.Record{Topic: "t", Offset: 9, Time: time.Date(-4713, 11, 23, 23, 59, 59, 0, time.UTC)}, "outside PostgreSQL's range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Enough good rows before it that the failure comes after the
			// first chunk was read.
			recs := make([]engine.Record, 20_000)
			for i := range recs {
				recs[i] = ok
			}
			recs = append(recs, tt.bad)
			r := newCopyReader(cols, recs, nil, nil, nil)
			stream, err := readAll(r, 65531)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Read = %v; want an error containing %q", err, tt.want)
			}
			if r.err != err {
				t.Errorf("r.err = %v; want the error Read returned, for Write to report", r.err)
			}
			if len(stream) < copyChunk {
				t.Errorf("%d bytes read before the error; want the first chunks", len(stream))
			}
		})
	}
	// The edges themselves are fine.
	for _, tm := range []time.Time{time.Date(294276, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC)} {
		r := newCopyReader(cols, []engine.Record{{Partition: 32767, Time: tm}, {Partition: -32768}}, nil, nil, nil)
		if _, err := readAll(r, 100); err != nil {
			t.Errorf("%v: %v; want it encoded", tm, err)
		}
	}
}

func TestCopyReaderClosedReadsNothing(t *testing.T) {
	cols := []column{{name: "o", part: partOffset, oid: oidInt8}}
	cols[0].planEncoding(pgtype.NewMap())
	r := newCopyReader(cols, []engine.Record{{Offset: 1}}, nil, nil, nil)
	r.close()
	if n, err := r.Read(make([]byte, 100)); n != 0 || !errors.Is(err, errCopyClosed) {
		t.Fatalf("Read after close = %d, %v; want 0, errCopyClosed", n, err)
	}
}

// The sequence column numbers staged rows on from the sink's counter, so
// several Writes of one epoch keep the last record of a key last.
func TestCopyReaderSequence(t *testing.T) {
	cols := []column{{name: "o", part: partOffset, oid: oidInt8}}
	cols[0].planEncoding(pgtype.NewMap())
	seq := int64(41)
	stream, err := readAll(newCopyReader(cols, []engine.Record{{Offset: 7}, {Offset: 8}}, &seq, nil, nil), 3)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := decodeCopy(stream, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprint(binary.BigEndian.Uint64(r[0]), ":", binary.BigEndian.Uint64(r[1])))
	}
	if strings.Join(got, " ") != "7:42 8:43" || seq != 43 {
		t.Errorf("rows (offset:seq) = %v, counter %d; want 7:42 8:43, counter 43", got, seq)
	}
}

// BenchmarkCopyEncode is the writer's CPU per row for the default columns
// and 100-byte values, without a server.
func BenchmarkCopyEncode(b *testing.B) {
	m := pgtype.NewMap()
	cols, _ := parseColumns(nil)
	for i := range cols {
		cols[i].oid = map[string]uint32{partKey: oidBytea, partValue: oidBytea, partTopic: oidText,
			partPartition: oidInt4, partOffset: oidInt8, partTimestamp: oidTimestamptz}[cols[i].part]
		cols[i].planEncoding(m)
	}
	value := make([]byte, 100)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range value {
		value[i] = byte(rng.IntN(256))
	}
	recs := make([]engine.Record, 10_000)
	for i := range recs {
		recs[i] = engine.Record{Topic: "bench", Partition: int32(i % 4), Offset: int64(i), Value: value, Time: time.UnixMilli(1700000000000)}
	}
	p := make([]byte, 65531)
	var buf []byte
	var segs []borrowed
	b.SetBytes(int64(len(recs) * len(value)))
	for b.Loop() {
		r := newCopyReader(cols, recs, nil, buf, segs)
		for {
			if _, err := r.Read(p); err != nil {
				break
			}
		}
		buf, segs = r.close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/row")
}
