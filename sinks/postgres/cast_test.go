package postgres

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// A cast (SOURCE::TYPE) is the type create-table gives the column, so
// aggregates work on JSON fields without a cast in every query; columns
// without one keep the types they had.
func TestCreateTableCasts(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	s, err := New(Config{DSN: dsn, Table: schema + ".orders", CreateTable: true, Columns: map[string]string{
		"amount": "value.amount::numeric", "price": "value.amount :: NUMERIC(10, 2)", "qty": "value.qty::bigint",
		"who": "value.user.name::text", "at": "value.at::timestamptz", "k": "key::text", "extra": "value.extra",
		"off": "offset",
	}}, nil, DeadLetterTable("rejected"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, _, err := s.Open(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	recs := []engine.Record{
		{Topic: "o", Offset: 0, Key: []byte("a"), Value: []byte(`{"amount": 12.5, "qty": 2, "user": {"name": "ada"}, "at": "2026-01-02T03:04:05Z", "extra": [1]}`)},
		{Topic: "o", Offset: 1, Key: []byte("b"), Value: []byte(`{"amount": "3.25", "qty": 1}`)},
	}
	if err := s.Write(ctx, 1, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteRejected(ctx, 1, []engine.Rejected{{Record: engine.Record{Topic: "o", Offset: 2, Value: []byte("bad")}, Reason: "not JSON", Plugin: "extract"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, 1, engine.Positions{{Topic: "o"}: 3}); err != nil {
		t.Fatal(err)
	}

	types := readStrings(t, db, fmt.Sprintf(`SELECT column_name || ' ' || format_type(a.atttypid, a.atttypmod)
		FROM information_schema.columns c JOIN pg_attribute a ON a.attrelid = '%s.orders'::regclass AND a.attname = c.column_name
		WHERE c.table_schema = '%s' AND c.table_name = 'orders' ORDER BY column_name`, schema, schema))
	wantTypes := []string{"amount numeric", "at timestamp with time zone", "extra jsonb", "k text", "off bigint",
		"price numeric(10,2)", "qty bigint", "who text"}
	if !slices.Equal(types, wantTypes) {
		t.Errorf("create-table made\n %q\nwant\n %q", types, wantTypes)
	}
	// What the issue asked for: min() of a JSON number.
	got := readStrings(t, db, fmt.Sprintf(`SELECT concat_ws('|', min(amount), sum(qty), max(price), string_agg(k, ',' ORDER BY k)) FROM %s.orders`, schema))
	if want := []string{"3.25|3|12.50|a,b"}; !slices.Equal(got, want) {
		t.Errorf("aggregates = %q, want %q", got, want)
	}
	dead := readStrings(t, db, fmt.Sprintf(`SELECT reason || '|' || convert_from(value, 'UTF8') FROM %s.rejected`, schema))
	if want := []string{"not JSON|bad"}; !slices.Equal(dead, want) {
		t.Errorf("dead letters in %s.rejected = %q, want %q", schema, dead, want)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", schema, defaultDeadLetterTable).Scan(&n); err != nil || n != 0 {
		t.Errorf("%s exists (%d, %v); dead letters went to the table named", defaultDeadLetterTable, n, err)
	}
}

// An existing column of another type than its cast fails Open with the
// ALTER that fixes it, rather than storing what the user did not ask for.
func TestCastAgainstExistingColumn(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s.orders (amount text)`, schema)); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{DSN: dsn, Table: schema + ".orders", CreateTable: true,
		Columns: map[string]string{"amount": "value.amount::numeric"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	_, _, err = s.Open(ctx, "p")
	if err == nil || !strings.Contains(err.Error(), "column amount is text in the table, but columns gives it value.amount::numeric; change the column's type (ALTER TABLE ... ALTER COLUMN amount TYPE numeric)") {
		t.Fatalf("Open = %v; want the type mismatch named", err)
	}
	// The same table with the cast it has opens and takes rows.
	s2, err := New(Config{DSN: dsn, Table: schema + ".orders", Columns: map[string]string{"amount": "value.amount::text"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	if _, _, err := s2.Open(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Write(ctx, 1, []engine.Record{{Value: []byte(`{"amount": 1.5}`), Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Commit(ctx, 1, engine.Positions{{Topic: "o"}: 1}); err != nil {
		t.Fatal(err)
	}
	if got := readStrings(t, db, fmt.Sprintf("SELECT amount FROM %s.orders", schema)); !slices.Equal(got, []string{"1.5"}) {
		t.Errorf("rows = %q", got)
	}
}

func TestParseCasts(t *testing.T) {
	for _, tc := range []struct {
		src, ddl, err string
	}{
		{"value.a::numeric", "numeric", ""},
		{"value.a::Double   Precision", "double precision", ""},
		{"value.a::varchar(20)", "varchar(20)", ""},
		{"value.a::numeric(12,2)", "numeric(12,2)", ""},
		{"key::text", "text", ""},
		{"value::jsonb", "jsonb", ""},
		{"partition::bigint", "bigint", ""},
		{"timestamp::timestamp", "timestamp", ""},
		{"value.a::money", "", `"money" after :: is not a type a column can take here`},
		{"value.a::bigint(3)", "", `"bigint(3)" after :: is not a type`},
		{"value.a::text; drop table x", "", "is not a type"},
		{"value.a::", "", `"" after :: is not a type`},
		{"key::numeric", "", "key cannot be stored as numeric; give key one of: bytea, text, varchar, json, jsonb"},
		{"offset::integer", "", "offset cannot be stored as integer; give offset one of: bigint"},
		{"::text", "", "is not a record part"},
	} {
		cols, err := parseColumns(map[string]string{"c": tc.src})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if got := cols[0].createType(); got != tc.ddl {
			t.Errorf("%s: create-table type %q, want %q", tc.src, got, tc.ddl)
		}
	}
	// Without a cast, the types create-table always gave.
	cols, _ := parseColumns(map[string]string{"a": "value.a", "k": "key"})
	if cols[0].createType() != "jsonb" || cols[1].createType() != "bytea" {
		t.Errorf("uncast types = %s, %s; want jsonb, bytea", cols[0].createType(), cols[1].createType())
	}
}

// createTypeRE is what a type create-table writes may look like: a name
// from castTypes and an optional (N) or (P,S); nothing that could end the
// column definition or start another statement.
var createTypeRE = regexp.MustCompile(`^[a-z0-9 ]+(\([0-9 ,]+\))?$`)

// FuzzParseColumns feeds arbitrary column sources to the parser that lint
// and the sink share: errors are fine, panics are not, and whatever it
// accepts reaches CREATE TABLE only as a known type.
func FuzzParseColumns(f *testing.F) {
	for _, s := range []string{"value.a::numeric", "key::text", "value.a.b::numeric(10, 2)", "offset", "value.x::varchar(3)",
		"value.a::text; drop table t", "::", "value.::int", "timestamp::timestamp without time zone"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		cols, err := parseColumns(map[string]string{"c": src})
		if err != nil {
			return
		}
		if len(cols) != 1 {
			t.Fatalf("%q: %d columns", src, len(cols))
		}
		if typ := cols[0].createType(); !createTypeRE.MatchString(typ) {
			t.Fatalf("%q: create-table type %q", src, typ)
		}
	})
}
