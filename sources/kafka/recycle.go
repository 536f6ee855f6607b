package kafka

import "github.com/sluicehq/sluice/engine"

// recordBuffer keeps a slice of records the engine handed back
// (engine.Recycler) for a later batch: a batch of 200,000 records is a
// slice of some 27 MB that a fresh allocation has to fault in and zero,
// and the collector to scan, on every batch.
type recordBuffer struct {
	spare []engine.Record
}

// spareSlack is how much larger than a batch a spare slice may be and
// still be used for it: what a batch leaves of the slice is cleared, so a
// huge slice must not serve a handful of records.
const spareSlack = 4096

// get returns an empty slice with room for n records, the spare one if it
// fits; nil for n == 0.
func (b *recordBuffer) get(n int) []engine.Record {
	switch {
	case n <= 0:
		return nil
	case cap(b.spare) >= n && cap(b.spare) <= 2*n+spareSlack:
		s := b.spare[:0]
		b.spare = nil
		return s
	}
	return make([]engine.Record, 0, n)
}

// put keeps recs for a later get.
func (b *recordBuffer) put(recs []engine.Record) {
	b.spare = recs
}

// trimmed clears the part of recs' backing array past its records, where
// a recycled slice still holds records of an earlier batch that would keep
// that batch's bytes alive, and returns recs.
func trimmed(recs []engine.Record) []engine.Record {
	clear(recs[len(recs):cap(recs)])
	return recs
}
