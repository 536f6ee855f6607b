package kafka

import "github.com/twmb/franz-go/pkg/kgo"

const (
	// arenaRecords and arenaBytes size the arena's chunks.
	arenaRecords = 4096
	arenaBytes   = 1 << 20
)

// arena holds the records (and their bytes) of one epoch's transaction. The
// client keeps pointers to them until each record's promise runs, which
// Flush and AbortBufferedRecords wait for, so the sink resets the arena only
// after the epoch committed or aborted; the next epoch then reuses the
// memory instead of allocating and zeroing it again, and the collector has
// less to scan. Chunks never grow in place: pointers into them stay valid.
type arena struct {
	recs [][]kgo.Record
	bufs [][]byte
	r, b int // chunks in use: recs[:r+1] and bufs[:b+1]
}

// record returns a zeroed record that stays valid until reset.
func (a *arena) record() *kgo.Record {
	if len(a.recs) == 0 || len(a.recs[a.r]) == cap(a.recs[a.r]) {
		if len(a.recs) == 0 || a.r+1 == len(a.recs) {
			a.recs = append(a.recs, make([]kgo.Record, 0, arenaRecords))
		}
		if len(a.recs[a.r]) == cap(a.recs[a.r]) {
			a.r++
		}
	}
	c := a.recs[a.r]
	c = c[:len(c)+1]
	a.recs[a.r] = c
	k := &c[len(c)-1]
	*k = kgo.Record{}
	return k
}

// copy returns a copy of b that stays valid until reset; nil stays nil.
func (a *arena) copy(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) > arenaBytes/4 {
		return append([]byte(nil), b...) // large values go to the heap
	}
	if len(a.bufs) == 0 || len(a.bufs[a.b])+len(b) > cap(a.bufs[a.b]) {
		if len(a.bufs) == 0 || a.b+1 == len(a.bufs) {
			a.bufs = append(a.bufs, make([]byte, 0, arenaBytes))
		}
		if len(a.bufs[a.b])+len(b) > cap(a.bufs[a.b]) {
			a.b++
		}
	}
	c := append(a.bufs[a.b], b...)
	a.bufs[a.b] = c
	return c[len(c)-len(b) : len(c) : len(c)]
}

// reset makes all of the arena's memory free for the next epoch.
func (a *arena) reset() {
	for i := range a.recs {
		a.recs[i] = a.recs[i][:0]
	}
	for i := range a.bufs {
		a.bufs[i] = a.bufs[i][:0]
	}
	a.r, a.b = 0, 0
}
