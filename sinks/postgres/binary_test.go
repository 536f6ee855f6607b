package postgres

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/engine"
)

// Round trips through a server: what the binary COPY writer sends must
// read back as the record had it, and equal what pgx's CopyFrom (the path
// it replaces, kept for other types) writes from the same records.

// openSink opens a sink on cfg (DSN filled in) for pipeline "p".
func openSink(t *testing.T, dsn string, cfg Config) *Sink {
	t.Helper()
	cfg.DSN = dsn
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, _, err := s.Open(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	return s
}

// commitOne writes recs as epoch and commits it.
func commitOne(t *testing.T, s *Sink, epoch uint64, recs []engine.Record) {
	t.Helper()
	ctx := context.Background()
	if err := s.Write(ctx, epoch, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, epoch, engine.Positions{{Topic: "t"}: int64(epoch)}); err != nil {
		t.Fatal(err)
	}
}

// copyViaPgx writes recs into table the way the sink did before it
// encoded rows itself: rowBuilder's values through pgx's CopyFrom.
func copyViaPgx(t *testing.T, db *pgx.Conn, table string, cols []column, recs []engine.Record) {
	t.Helper()
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	src := &rowSource{b: rowBuilder{cols: cols}, recs: recs, seq: new(int64)}
	if _, err := db.CopyFrom(context.Background(), pgx.Identifier(strings.Split(table, ".")), names, src); err != nil {
		t.Fatalf("pgx CopyFrom into %s: %v", table, err)
	}
}

// rowsAsText returns each row of table as PostgreSQL's text for it,
// ordered by column o.
func rowsAsText(t *testing.T, db *pgx.Conn, table string) []string {
	t.Helper()
	return readStrings(t, db, fmt.Sprintf("SELECT t::text FROM %s t ORDER BY o", table))
}

func TestBinaryRoundTripRecordParts(t *testing.T) {
	for _, upsert := range []bool{false, true} {
		t.Run(map[bool]string{false: "append", true: "upsert"}[upsert], func(t *testing.T) {
			dsn, schema, db := freshSchema(t)
			ctx := context.Background()
			const def = `(o bigint PRIMARY KEY, o4 integer, o2 smallint, k bytea, v bytea, tp text, tpv varchar(20), tpc bpchar,
				p2 smallint, p4 integer, p8 bigint, ts timestamptz, tsw timestamp)`
			for _, tbl := range []string{"parts", "twin"} {
				if _, err := db.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s %s", schema, tbl, def)); err != nil {
					t.Fatal(err)
				}
			}
			cfg := Config{Table: schema + ".parts", Columns: map[string]string{
				"o": "offset", "o4": "offset", "o2": "offset", "k": "key", "v": "value", "tp": "topic", "tpv": "topic", "tpc": "topic",
				"p2": "partition", "p4": "partition", "p8": "partition", "ts": "timestamp", "tsw": "timestamp"}}
			if upsert {
				cfg.UpsertKey = []string{"o"}
			}
			s := openSink(t, dsn, cfg)
			if !s.binary {
				t.Fatal("the sink chose pgx's CopyFrom for types the binary writer encodes")
			}
			recs := edgeRecords()
			commitOne(t, s, 1, recs)

			rows, err := db.Query(ctx, fmt.Sprintf("SELECT o, o4, o2, k, v, tp, tpv, tpc::text, p2, p4, p8, ts, tsw FROM %s.parts ORDER BY o", schema))
			if err != nil {
				t.Fatal(err)
			}
			type row struct {
				o, o4, o2    int64
				k, v         []byte
				tp, tpv, tpc string
				p2, p4, p8   int64
				ts, tsw      *time.Time
			}
			var got []row
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.o, &r.o4, &r.o2, &r.k, &r.v, &r.tp, &r.tpv, &r.tpc, &r.p2, &r.p4, &r.p8, &r.ts, &r.tsw); err != nil {
					t.Fatal(err)
				}
				got = append(got, r)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(recs)
			slices.SortFunc(want, func(a, b engine.Record) int { return int(a.Offset - b.Offset) })
			if len(got) != len(want) {
				t.Fatalf("%d rows, want %d", len(got), len(want))
			}
			for i, w := range want {
				g := got[i]
				where := fmt.Sprintf("record at offset %d", w.Offset)
				if g.o != w.Offset || g.o4 != w.Offset || g.o2 != w.Offset {
					t.Errorf("%s: offsets %d, %d, %d", where, g.o, g.o4, g.o2)
				}
				// nil is NULL, empty is empty, bytes are bytes (not UTF-8, NULs, 1 MiB).
				if (g.k == nil) != (w.Key == nil) || !bytes.Equal(g.k, w.Key) {
					t.Errorf("%s: key %s, want %s", where, show(g.k), show(w.Key))
				}
				if (g.v == nil) != (w.Value == nil) || !bytes.Equal(g.v, w.Value) {
					t.Errorf("%s: value %s, want %s", where, show(g.v), show(w.Value))
				}
				if g.tp != w.Topic || g.tpv != w.Topic || g.tpc != w.Topic {
					t.Errorf("%s: topic %q, %q, %q; want %q", where, g.tp, g.tpv, g.tpc, w.Topic)
				}
				if p := int64(w.Partition); g.p2 != p || g.p4 != p || g.p8 != p {
					t.Errorf("%s: partition %d, %d, %d; want %d", where, g.p2, g.p4, g.p8, p)
				}
				if w.Time.IsZero() {
					if g.ts != nil || g.tsw != nil {
						t.Errorf("%s: no time, but timestamps %v, %v; want NULL", where, g.ts, g.tsw)
					}
					continue
				}
				// PostgreSQL keeps microseconds; below them the time is cut
				// down, before 1970 too.
				if wt := w.Time.Truncate(time.Microsecond); g.ts == nil || !g.ts.Equal(wt) {
					t.Errorf("%s: timestamptz %v, want %v", where, g.ts, wt)
				}
				wall := time.Date(w.Time.Year(), w.Time.Month(), w.Time.Day(), w.Time.Hour(), w.Time.Minute(), w.Time.Second(),
					w.Time.Nanosecond(), time.UTC).Truncate(time.Microsecond)
				if g.tsw == nil || !g.tsw.Equal(wall) {
					t.Errorf("%s: timestamp %v, want the wall clock %v", where, g.tsw, wall)
				}
			}

			copyViaPgx(t, db, schema+".twin", s.cols, recs)
			if a, b := rowsAsText(t, db, schema+".parts"), rowsAsText(t, db, schema+".twin"); !slices.Equal(a, b) {
				t.Errorf("binary COPY and pgx's CopyFrom differ:\nbinary %q\n   pgx %q", a, b)
			}
		})
	}
}

// Key and value into text, char, json and jsonb columns: bytes that are
// UTF-8 and JSON, large ones included.
func TestBinaryRoundTripTypedBytes(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	const def = `(o bigint, kt text, kv varchar(5000), kc bpchar, vj json, vb jsonb)`
	for _, tbl := range []string{"typed", "twin"} {
		if _, err := db.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s %s", schema, tbl, def)); err != nil {
			t.Fatal(err)
		}
	}
	s := openSink(t, dsn, Config{Table: schema + ".typed", Columns: map[string]string{
		"o": "offset", "kt": "key", "kv": "key", "kc": "key", "vj": "value", "vb": "value"}})
	big := `{"s":"` + strings.Repeat("é", 1<<19) + `"}` // 1 MiB, borrowed
	recs := []engine.Record{
		{Offset: 0, Value: []byte(`{"a": [1, 2.50, "x"], "b": null}`)}, // key NULL
		{Offset: 1, Key: []byte{}, Value: []byte(`"ü"`)},
		{Offset: 2, Key: []byte(strings.Repeat("k", 4999)), Value: []byte(big)},
		{Offset: 3, Key: []byte("ключ"), Value: nil},
	}
	commitOne(t, s, 1, recs)
	got := readStrings(t, db, fmt.Sprintf(`SELECT concat_ws('|', o, coalesce(md5(kt), 'NULL'), coalesce(md5(kv), 'NULL'), coalesce(md5(kc::text), 'NULL'),
		coalesce(md5(vj::text), 'NULL'), coalesce(md5(vb::text), 'NULL')) FROM %s.typed ORDER BY o`, schema))
	md5 := func(q string) string {
		return readStrings(t, db, "SELECT md5("+q+")")[0]
	}
	bigJSONB := readStrings(t, db, fmt.Sprintf("SELECT md5(%s::jsonb::text)", quote(big)))[0]
	want := []string{
		fmt.Sprintf("0|NULL|NULL|NULL|%s|%s", md5(quote(`{"a": [1, 2.50, "x"], "b": null}`)), md5(quote(`{"a": [1, 2.50, "x"], "b": null}`)+"::jsonb::text")),
		fmt.Sprintf("1|%s|%s|%s|%s|%s", md5("''"), md5("''"), md5("''"), md5(quote(`"ü"`)), md5(quote(`"ü"`))),
		fmt.Sprintf("2|%s|%s|%s|%s|%s", md5(quote(strings.Repeat("k", 4999))), md5(quote(strings.Repeat("k", 4999))),
			md5(quote(strings.Repeat("k", 4999))), md5(quote(big)), bigJSONB),
		fmt.Sprintf("3|%s|%s|%s|NULL|NULL", md5(quote("ключ")), md5(quote("ключ")), md5(quote("ключ"))),
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows (md5 of each column's text):\n got %q\nwant %q", got, want)
	}
	copyViaPgx(t, db, schema+".twin", s.cols, recs)
	if a, b := rowsAsText(t, db, schema+".typed"), rowsAsText(t, db, schema+".twin"); !slices.Equal(a, b) {
		t.Errorf("binary COPY and pgx's CopyFrom differ")
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Every type a JSON field can fill, with NULL, missing, nested and large
// fields.
func TestBinaryRoundTripJSONFields(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	const def = `(o bigint, f_text text, f_varchar varchar(10), f_char char(8), f_bytea bytea, f_bool boolean,
		f_int2 smallint, f_int4 integer, f_int8 bigint, f_float4 real, f_float8 double precision, f_numeric numeric,
		f_json json, f_jsonb jsonb, f_ts timestamptz, f_tsw timestamp, f_nested bigint)`
	for _, tbl := range []string{"fields", "twin"} {
		if _, err := db.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s %s", schema, tbl, def)); err != nil {
			t.Fatal(err)
		}
	}
	s := openSink(t, dsn, Config{Table: schema + ".fields", Columns: map[string]string{
		"o": "offset", "f_text": "value.s", "f_varchar": "value.s", "f_char": "value.s", "f_bytea": "value.s", "f_bool": "value.b",
		"f_int2": "value.i", "f_int4": "value.i", "f_int8": "value.i", "f_float4": "value.x", "f_float8": "value.x",
		"f_numeric": "value.n", "f_json": "value.j", "f_jsonb": "value.j", "f_ts": "value.t", "f_tsw": "value.t", "f_nested": "value.u.id"}})
	if !s.binary {
		t.Fatal("the sink chose pgx's CopyFrom for JSON fields")
	}
	recs := []engine.Record{
		{Offset: 0, Value: []byte(`{"s":"héllo","b":true,"i":32767,"x":1.5,"n":"12345678901234567890.0123456789",
			"j":{"a":[1,"x"]},"t":"1999-12-31T23:59:59.9999995-08:00","u":{"id":9007199254740993}}`)},
		{Offset: 1, Value: []byte(`{"s":null,"b":null,"i":null,"x":null,"n":null,"j":null,"t":null,"u":null}`)},
		{Offset: 2, Value: []byte(`{}`)},
		{Offset: 3, Value: []byte(`{"s":12,"b":"false","i":"-32768","x":"NaN","n":0.00000000000000000001,"j":"str","t":"1969-07-20T20:17:40.123456Z","u":{"id":"-1"}}`)},
		{Offset: 4, Value: []byte(`{"s":"","i":0,"x":-0.1,"n":-0.5,"j":[],"t":"0001-01-01T00:00:00+14:00","u":[1]}`)},
	}
	commitOne(t, s, 1, recs)
	if _, err := db.Exec(ctx, "SET TIME ZONE 'UTC'"); err != nil {
		t.Fatal(err)
	}
	got := readStrings(t, db, fmt.Sprintf(`SELECT concat_ws('|', o, coalesce(f_text, 'NULL'), coalesce(f_varchar, 'NULL'),
		coalesce('['||f_char::bpchar||']', 'NULL'), coalesce(encode(f_bytea, 'escape'), 'NULL'), coalesce(f_bool::text, 'NULL'),
		coalesce(f_int2::text, 'NULL'), coalesce(f_int4::text, 'NULL'), coalesce(f_int8::text, 'NULL'),
		coalesce(f_float4::text, 'NULL'), coalesce(f_float8::text, 'NULL'), coalesce(f_numeric::text, 'NULL'),
		coalesce(f_json::text, 'NULL'), coalesce(f_jsonb::text, 'NULL'), coalesce(f_ts::text, 'NULL'), coalesce(f_tsw::text, 'NULL'),
		coalesce(f_nested::text, 'NULL')) FROM %s.fields ORDER BY o`, schema))
	want := []string{
		// Time keeps microseconds, cut down; timestamp keeps the wall clock
		// of the field's own offset.
		`0|héllo|héllo|[héllo]|h\303\251llo|true|32767|32767|32767|1.5|1.5|12345678901234567890.0123456789|{"a":[1,"x"]}|{"a": [1, "x"]}|2000-01-01 07:59:59.999999+00|1999-12-31 23:59:59.999999|9007199254740993`,
		`1|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL`,
		`2|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL`,
		// Non-strings as their JSON text where a string is wanted, strings
		// parsed where a number or boolean is.
		`3|12|12|[12]|12|false|-32768|-32768|-32768|NaN|NaN|0.00000000000000000001|"str"|"str"|1969-07-20 20:17:40.123456+00|1969-07-20 20:17:40.123456|-1`,
		`4|||[]||NULL|0|0|0|-0.1|-0.1|-0.5|[]|[]|0001-12-31 10:00:00+00 BC|0001-01-01 00:00:00|NULL`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}
	copyViaPgx(t, db, schema+".twin", s.cols, recs)
	if a, b := rowsAsText(t, db, schema+".fields"), rowsAsText(t, db, schema+".twin"); !slices.Equal(a, b) {
		t.Errorf("binary COPY and pgx's CopyFrom differ:\nbinary %q\n   pgx %q", a, b)
	}
}

// A column type the writer does not encode sends the table's rows through
// pgx's CopyFrom, with its conversions: a key parsed as a uuid, a
// partition into numeric.
func TestPgxCopyForOtherTypes(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.odd (id uuid, p numeric, v bytea)", schema)); err != nil {
		t.Fatal(err)
	}
	s := openSink(t, dsn, Config{Table: schema + ".odd", Columns: map[string]string{"id": "key", "p": "partition", "v": "value"}})
	if s.binary {
		t.Fatal("the sink chose its binary writer for uuid and numeric record parts")
	}
	commitOne(t, s, 1, []engine.Record{{Key: []byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), Partition: 7, Value: []byte{0, 1}}})
	got := readStrings(t, db, fmt.Sprintf("SELECT concat_ws('|', id, p, encode(v, 'hex')) FROM %s.odd", schema))
	if want := []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|7|0001"}; !slices.Equal(got, want) {
		t.Errorf("rows = %q, want %q", got, want)
	}
}

// A record the writer cannot encode, deep into a batch of many chunks,
// fails the Write naming it; nothing of the epoch commits and the batch
// can be written again.
func TestBinaryWriteFailureMidBatch(t *testing.T) {
	for _, upsert := range []bool{false, true} {
		t.Run(map[bool]string{false: "append", true: "upsert"}[upsert], func(t *testing.T) {
			dsn, schema, db := freshSchema(t)
			ctx := context.Background()
			if _, err := db.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.narrow (o bigint UNIQUE, p smallint, v bytea)", schema)); err != nil {
				t.Fatal(err)
			}
			cfg := Config{Table: schema + ".narrow", Columns: map[string]string{"o": "offset", "p": "partition", "v": "value"}}
			if upsert {
				cfg.UpsertKey = []string{"o"}
			}
			s := openSink(t, dsn, cfg)
			recs := make([]engine.Record, 50_000)
			for i := range recs {
				recs[i] = engine.Record{Topic: "t", Offset: int64(i), Partition: int32(i % 3), Value: []byte(fmt.Sprint("value ", i))}
			}
			recs[40_000].Partition = 40_000
			err := s.Write(ctx, 1, recs)
			if err == nil || !strings.Contains(err.Error(), "t/40000@40000, column p (partition): 40000 does not fit in smallint") {
				t.Fatalf("Write = %v; want an error naming record t/40000@40000 and column p", err)
			}
			if n := readStrings(t, db, fmt.Sprintf("SELECT count(*)::text FROM %s.narrow", schema)); n[0] != "0" {
				t.Fatalf("%s rows visible after a failed Write; want 0", n[0])
			}
			s.Abort(ctx, 1)
			recs[40_000].Partition = 1
			commitOne(t, s, 1, recs)
			got := readStrings(t, db, fmt.Sprintf("SELECT count(*) || ' ' || sum(o) || ' ' || sum(length(v)) FROM %s.narrow", schema))
			var sumLen int
			for _, r := range recs {
				sumLen += len(r.Value)
			}
			if want := fmt.Sprintf("%d %d %d", len(recs), len(recs)*(len(recs)-1)/2, sumLen); got[0] != want {
				t.Errorf("count, sum(o), sum(length(v)) = %s, want %s", got[0], want)
			}
		})
	}
}
