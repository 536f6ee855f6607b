package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks"
	kafkasink "github.com/sluicehq/sluice/sinks/kafka"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// testDSN returns the test server's DSN or skips.
func testDSN(t testing.TB) string {
	dsn := os.Getenv("SLUICE_TEST_PG_DSN")
	if dsn == "" {
		t.Skip(`SLUICE_TEST_PG_DSN is not set: run eval "$(.ci/postgres.sh)" first to start a throwaway PostgreSQL, then go test ./sinks/postgres/`)
	}
	return dsn
}

// freshSchema creates a schema only this test uses and drops it afterwards,
// so checkpoint tables of different tests never meet.
func freshSchema(t testing.TB) (dsn, schema string, db *pgx.Conn) {
	dsn = testDSN(t)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to SLUICE_TEST_PG_DSN: %v", err)
	}
	var b [4]byte
	rand.Read(b[:])
	schema = "t_" + hex.EncodeToString(b[:])
	if _, err := db.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		db.Close(context.Background())
	})
	return dsn, schema, db
}

func TestConformance(t *testing.T) {
	testDSN(t)
	modes := []struct {
		name string
		cfg  func(dsn, schema string) Config
	}{
		{"append", func(dsn, schema string) Config {
			return Config{DSN: dsn, Table: schema + ".out", CreateTable: true}
		}},
		{"upsert", func(dsn, schema string) Config {
			// Every suite value is unique, so upserting on it keeps them all.
			return Config{DSN: dsn, Table: schema + ".out", CreateTable: true,
				Columns: map[string]string{"v": "value", "k": "key", "off": "offset"}, UpsertKey: []string{"v"}}
		}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			harness := func(t *testing.T) sinktest.Harness {
				dsn, schema, db := freshSchema(t)
				cfg := mode.cfg(dsn, schema)
				valueCol := "value"
				if mode.name == "upsert" {
					valueCol = "v"
				}
				return sinktest.Harness{
					New: func(t *testing.T) engine.Sink {
						s, err := New(cfg, nil)
						if err != nil {
							t.Fatal(err)
						}
						return s
					},
					Read: func(t *testing.T) []string {
						return readStrings(t, db, fmt.Sprintf("SELECT convert_from(%s, 'UTF8') FROM %s.out", valueCol, schema))
					},
					ReadDeadLetters: func(t *testing.T) []string {
						var n int
						db.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", schema, defaultDeadLetterTable).Scan(&n)
						if n == 0 {
							return nil
						}
						return readStrings(t, db, fmt.Sprintf("SELECT convert_from(value, 'UTF8') FROM %s.%s", schema, defaultDeadLetterTable))
					},
					// A killed process's connection drops: the server rolls
					// back its transaction. Close without Abort does the same.
					Crash: func(t *testing.T, s engine.Sink) { s.(*Sink).conn.Close(context.Background()) },
				}
			}
			sinktest.Run(t, harness)
			t.Run("tasks", func(t *testing.T) { sinktest.RunTasks(t, harness) })
		})
	}
}

func readStrings(t *testing.T, db *pgx.Conn, q string) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

func TestColumnsMapping(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	_, err := db.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s.clicks (
		user_id bigint, name text, score numeric, ok boolean, at timestamptz, extra jsonb,
		src text, part int, off bigint, k text, raw jsonb, ts timestamptz)`, schema))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{DSN: dsn, Table: schema + ".clicks", Columns: map[string]string{
		"user_id": "value.user.id", "name": "value.user.name", "score": "value.score", "ok": "value.ok",
		"at": "value.at", "extra": "value.extra", "src": "topic", "part": "partition", "off": "offset",
		"k": "key", "raw": "value", "ts": "timestamp",
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, _, err := s.Open(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	recs := []engine.Record{
		{Topic: "clicks", Partition: 3, Offset: 42, Key: []byte("u1"), Time: ts,
			Value: []byte(`{"user":{"id":7,"name":"ada"},"score":1.25,"ok":true,"at":"2026-01-01T00:00:00Z","extra":{"a":[1,2]}}`)},
		{Topic: "clicks", Partition: 3, Offset: 43, Value: []byte(`{"user":{"id":8}}`)},
	}
	if err := s.Write(ctx, 1, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, 1, engine.Positions{{Topic: "clicks", Partition: 3}: 44}); err != nil {
		t.Fatal(err)
	}
	got := readStrings(t, db, fmt.Sprintf(`SELECT concat_ws('|', user_id, coalesce(name,'-'), coalesce(score::text,'-'), coalesce(ok::text,'-'),
		coalesce(to_char(at AT TIME ZONE 'UTC','YYYY-MM-DD'),'-'), coalesce(extra::text,'-'), src, part, off, coalesce(k,'-'),
		raw->'user'->>'id', coalesce(to_char(ts AT TIME ZONE 'UTC','HH24:MI:SS'),'-')) FROM %s.clicks ORDER BY off`, schema))
	want := []string{
		`7|ada|1.25|true|2026-01-01|{"a": [1, 2]}|clicks|3|42|u1|7|05:06:07`,
		`8|-|-|-|-|-|clicks|3|43|-|8|-`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}

	// A value that is not JSON cannot fill value.* columns: the batch fails
	// with the record's position and nothing of it commits.
	err = s.Write(ctx, 2, []engine.Record{{Topic: "clicks", Partition: 3, Offset: 44, Value: []byte("not json")}})
	if err == nil || !strings.Contains(err.Error(), "clicks/3@44") {
		t.Fatalf("Write of a non-JSON value = %v; want an error naming clicks/3@44", err)
	}
}

func TestUpsertLastRecordOfAKeyWins(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	s, err := New(Config{DSN: dsn, Table: schema + ".latest", CreateTable: true,
		Columns: map[string]string{"id": "key", "v": "value"}, UpsertKey: []string{"id"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, _, err := s.Open(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	batches := [][]string{{"a=1", "b=1", "a=2"}, {"b=2", "c=1"}, {"a=3"}}
	for i, b := range batches {
		var recs []engine.Record
		for _, kv := range b {
			k, v, _ := strings.Cut(kv, "=")
			recs = append(recs, engine.Record{Key: []byte(k), Value: []byte(v)})
		}
		epoch := uint64(i + 1)
		if err := s.Write(ctx, epoch, recs); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, epoch, engine.Positions{{Topic: "t"}: int64(epoch)}); err != nil {
			t.Fatal(err)
		}
	}
	got := readStrings(t, db, fmt.Sprintf("SELECT convert_from(id,'UTF8') || '=' || convert_from(v,'UTF8') FROM %s.latest ORDER BY id", schema))
	want := []string{"a=3", "b=2", "c=1"}
	if !slices.Equal(got, want) {
		t.Errorf("rows = %q, want %q", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dsn", Config{Table: "t"}, "dsn is empty"},
		{"no table", Config{DSN: "postgres://localhost/db"}, "table is empty"},
		{"bad table", Config{DSN: "postgres://localhost/db", Table: "a.b.c"}, "SCHEMA.NAME"},
		{"bad source", Config{DSN: "postgres://localhost/db", Table: "t", Columns: map[string]string{"c": "body"}}, "not a record part"},
		{"empty field", Config{DSN: "postgres://localhost/db", Table: "t", Columns: map[string]string{"c": "value..x"}}, "not a record part"},
		{"key not mapped", Config{DSN: "postgres://localhost/db", Table: "t", UpsertKey: []string{"id"}}, "not one of the columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.narrow (value bytea, id text)", schema)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing table", Config{Table: schema + ".nope"}, "set create-table: true"},
		{"missing column", Config{Table: schema + ".narrow"}, `has no column "key"`},
		{"no unique index", Config{Table: schema + ".narrow", Columns: map[string]string{"id": "key"}, UpsertKey: []string{"id"}}, "CREATE UNIQUE INDEX"},
		{"json field into bytea ok, into unsupported type", Config{Table: schema + ".narrow", Columns: map[string]string{"id": "value.x"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.DSN = dsn
			s, err := New(tt.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, _, err = s.Open(ctx, "p")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Open = %v, want success", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestUnreachableIsRetryable(t *testing.T) {
	// Port 1 on loopback: nothing listens there, the connection is refused.
	s, err := New(Config{DSN: "postgres://u@127.0.0.1:1/db?connect_timeout=5", Table: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Open(context.Background(), "p")
	if err == nil || !engine.IsRetryable(err) {
		t.Fatalf("Open against a closed port = %v; want a retryable error", err)
	}
	if errors.Is(err, engine.ErrFenced) {
		t.Fatalf("connection refused must not read as fenced: %v", err)
	}
}

// The server ends the sink's connection between Write and Commit (a restart,
// a failover): Commit is retryable, nothing of the epoch is visible, and
// after Abort and Open the batch commits once.
func TestConnectionLostBeforeCommit(t *testing.T) {
	dsn, schema, db := freshSchema(t)
	ctx := context.Background()
	s, err := New(Config{DSN: dsn, Table: schema + ".out", CreateTable: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, _, err := s.Open(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	write := func(epoch uint64, v string) {
		t.Helper()
		if err := s.Write(ctx, epoch, []engine.Record{{Topic: "t", Value: []byte(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	write(1, "one")
	if err := s.Commit(ctx, 1, engine.Positions{{Topic: "t"}: 1}); err != nil {
		t.Fatal(err)
	}
	write(2, "two")
	if _, err := db.Exec(ctx, "SELECT pg_terminate_backend($1)", s.conn.PgConn().PID()); err != nil {
		t.Fatal(err)
	}
	err = s.Commit(ctx, 2, engine.Positions{{Topic: "t"}: 2})
	if !engine.IsRetryable(err) {
		t.Fatalf("Commit on a terminated connection = %v; want a retryable error", err)
	}
	s.Abort(ctx, 2)
	epoch, _, err := s.Open(ctx, "p")
	if err != nil || epoch != 1 {
		t.Fatalf("Open after the connection loss = %d, %v; want 1", epoch, err)
	}
	write(2, "two")
	if err := s.Commit(ctx, 2, engine.Positions{{Topic: "t"}: 2}); err != nil {
		t.Fatal(err)
	}
	got := readStrings(t, db, fmt.Sprintf("SELECT convert_from(value, 'UTF8') FROM %s.out ORDER BY 1", schema))
	if !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("rows = %q, want one, two", got)
	}
}

// With a Kafka dead-letter topic the postgres sink's dead-letter table is
// an outbox: the suite's dead letters must be in the topic (kfake) once
// Commit returns, each once, and the table must end up empty.
func TestForwardingConformance(t *testing.T) {
	testDSN(t)
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		dsn, schema, db := freshSchema(t)
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		brokers := c.ListenAddrs()
		t.Cleanup(func() {
			var n int
			db.QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM %s.%s", schema, defaultDeadLetterTable)).Scan(&n)
			if n != 0 {
				t.Errorf("%d forwarded dead letters are still in %s", n, defaultDeadLetterTable)
			}
		})
		return sinktest.Harness{
			New: func(t *testing.T) engine.Sink {
				s, err := New(Config{DSN: dsn, Table: schema + ".out", CreateTable: true}, nil)
				if err != nil {
					t.Fatal(err)
				}
				f, err := kafkasink.NewForwarding(s, kafkasink.Config{Brokers: brokers, Topic: "dead"})
				if err != nil {
					t.Fatal(err)
				}
				return f
			},
			Read: func(t *testing.T) []string {
				return readStrings(t, db, fmt.Sprintf("SELECT convert_from(value, 'UTF8') FROM %s.out", schema))
			},
			ReadDeadLetters: func(t *testing.T) []string {
				recs := kafkatest.ReadCommitted(t, brokers, "dead")
				for _, r := range recs {
					if !slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == sinks.HeaderReason }) {
						t.Fatalf("dead letter %q has no %s header: %v", r.Value, sinks.HeaderReason, r.Headers)
					}
				}
				return kafkatest.Values(recs)
			},
		}
	})
}
