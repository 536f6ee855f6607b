package wire

import (
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/internal/record"
)

func batch(n int) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Topic: "bench", Partition: int32(i % 4), Offset: int64(i), Key: []byte(fmt.Sprintf("key-%06d", i)), Value: make([]byte, 90)}
	}
	return recs
}

func BenchmarkAppend(b *testing.B) {
	recs := batch(10000)
	buf := make([]byte, 0, Size(recs))
	for b.Loop() {
		buf = Append(buf[:0], recs)
	}
}

func BenchmarkDecode(b *testing.B) {
	buf := Append(nil, batch(10000))
	for b.Loop() {
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}
