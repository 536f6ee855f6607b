// Package groupsync shares fsyncs between concurrent writers of one file
// (group commit): while one fsync runs, later callers wait for it and the
// next one covers all of them, so N producers waiting for durability cost
// about one fsync each round instead of N.
package groupsync

import "sync"

// Syncer tracks how far a file is known durable. Positions are whatever
// the file's owner counts in (offsets, entry numbers), increasing. The
// zero value is ready to use.
type Syncer struct {
	mu      sync.Mutex
	cond    sync.Cond
	durable int64
	running bool
}

// Sync returns once everything before upto is durable. If no flush is
// running it calls flush, which makes durable what was written when it
// started and returns that position; otherwise it waits for the running
// flush and looks again. A flush error is returned to its caller only; the
// waiters then try a flush of their own.
func (s *Syncer) Sync(upto int64, flush func() (int64, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cond.L == nil {
		s.cond.L = &s.mu
	}
	for s.durable < upto {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.mu.Unlock()
		reached, err := flush()
		s.mu.Lock()
		s.running = false
		s.cond.Broadcast()
		if err != nil {
			return err
		}
		s.durable = max(s.durable, reached)
	}
	return nil
}

// Advance records that everything before pos is durable already (the file
// was opened after a clean close, or rewritten and fsynced whole).
func (s *Syncer) Advance(pos int64) {
	s.mu.Lock()
	s.durable = max(s.durable, pos)
	s.mu.Unlock()
}

// Durable is the position known durable.
func (s *Syncer) Durable() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}
