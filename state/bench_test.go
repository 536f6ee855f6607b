package state

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
)

// BenchmarkDurableCount: a per-key count, as an aggregate keeps it, in
// batches of 10,000 records over 100,000 keys and 4 tasks, each batch
// prepared and committed; reported per record.
func BenchmarkDurableCount(b *testing.B) {
	for _, withLog := range []bool{false, true} {
		b.Run(fmt.Sprint("changelog=", withLog), func(b *testing.B) {
			opts := Options{DataDir: b.TempDir(), Pipeline: "bench", Logger: quietLogger()}
			if withLog {
				opts.Kafka = []kgo.Opt{kgo.SeedBrokers(kafkatest.Builtin(b, "unused", 1)...)}
			}
			ctx := context.Background()
			d, err := Open(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			if err := d.Restore(ctx, nil, func(engine.Task) uint64 { return 0 }); err != nil {
				b.Fatal(err)
			}
			const batch, keys = 10_000, 100_000
			epoch := uint64(0)
			key := make([]byte, 0, 16)
			b.ResetTimer()
			for i := 0; i < b.N; {
				bctx, sb := d.Begin(ctx)
				v := ViewFrom(bctx)
				for j := 0; j < batch && i < b.N; j, i = j+1, i+1 {
					k := (i * 7919) % keys
					task := engine.Task(k % 4)
					key = fmt.Appendf(key[:0], "k%d", k)
					old, _, err := v.Get(task, "count", key)
					if err != nil {
						b.Fatal(err)
					}
					var n uint64
					if len(old) == 8 {
						n = binary.BigEndian.Uint64(old)
					}
					if err := v.Put(task, "count", key, binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
						b.Fatal(err)
					}
				}
				epoch++
				if err := sb.Prepare(ctx, func(engine.Task) uint64 { return epoch }); err != nil {
					b.Fatal(err)
				}
				sb.Committed()
			}
		})
	}
}
