package kafka

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Records and bytes handed out stay intact while more are taken across
// chunk boundaries (records, small and large values), and after reset the
// next epoch gets the same memory back.
func TestArena(t *testing.T) {
	var a arena
	for round := range 3 {
		var recs []*kgo.Record
		for i := range 3*arenaRecords + 7 {
			size := i % 300
			if i%1000 == 999 {
				size = arenaBytes/4 + 1 // to the heap
			}
			v := bytes.Repeat([]byte{byte(i)}, size)
			k := a.record()
			if k.Topic != "" || k.Value != nil {
				t.Fatalf("round %d: record %d is not zeroed: %+v", round, i, k)
			}
			k.Topic, k.Value = fmt.Sprint(i), a.copy(v)
			recs = append(recs, k)
		}
		if a.copy(nil) != nil {
			t.Fatal("copy(nil) must stay nil")
		}
		for i, k := range recs {
			size := i % 300
			if i%1000 == 999 {
				size = arenaBytes/4 + 1
			}
			if k.Topic != fmt.Sprint(i) || !bytes.Equal(k.Value, bytes.Repeat([]byte{byte(i)}, size)) {
				t.Fatalf("round %d: record %d was overwritten", round, i)
			}
		}
		chunks := len(a.recs) + len(a.bufs)
		a.reset()
		if round > 0 && chunks != len(a.recs)+len(a.bufs) {
			t.Fatalf("round %d: arena grew to %d chunks; want the %d reused", round, len(a.recs)+len(a.bufs), chunks)
		}
	}
}
