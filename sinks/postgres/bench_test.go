package postgres

import (
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// BenchmarkCommit measures Write (COPY) + Commit of one batch per
// iteration into a table with the default columns. Needs
// SLUICE_TEST_PG_DSN: go test -run XXX -bench Commit ./sinks/postgres/
func BenchmarkCommit(b *testing.B) {
	sinktest.BenchmarkCommit(b, func(b *testing.B) engine.Sink {
		dsn, schema, _ := freshSchema(b)
		s, err := New(Config{DSN: dsn, Table: schema + ".bench", CreateTable: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
