package host

import (
	"fmt"

	"github.com/sluicehq/sluice/engine"
)

// BenchRecordBytes is the size of a benchmark record's key plus value.
const BenchRecordBytes = 100

// BenchBatch returns n records of BenchRecordBytes each (a 10-byte key, a
// 90-byte lower-case value) over 4 partitions, for benchmarks.
func BenchBatch(n int) []engine.Record {
	recs := make([]engine.Record, n)
	for i := range recs {
		key := fmt.Sprintf("key-%06d", i%1000000)
		val := fmt.Appendf(nil, "record %010d ", i)
		for len(val) < BenchRecordBytes-len(key) {
			val = append(val, 'a'+byte(len(val)%26))
		}
		recs[i] = engine.Record{Topic: "bench", Partition: int32(i % 4), Offset: int64(i), Key: []byte(key), Value: val}
	}
	return recs
}
