package storage

// waiter is a long-poll waiting for the log (stable: its last stable
// offset) to move.
type waiter struct {
	ch     chan struct{}
	stable bool
}

// Wait registers ch to receive a signal when the log grows past offset. It
// returns false, registering nothing, if it already has. Call Unwait when
// done waiting.
func (p *Partition) Wait(offset int64, ch chan struct{}) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.end > offset || p.closed {
		return false
	}
	p.waiters = append(p.waiters, waiter{ch: ch})
	return true
}

// WaitStable is Wait for the last stable offset: ch is signalled when it
// moves past offset (a transaction is decided, or records are written
// while none is open).
func (p *Partition) WaitStable(offset int64, ch chan struct{}) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lso() > offset || p.closed {
		return false
	}
	p.waiters = append(p.waiters, waiter{ch: ch, stable: true})
	return true
}

// Unwait removes ch registered by Wait, if it is still there.
func (p *Partition) Unwait(ch chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, w := range p.waiters {
		if w.ch == ch {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return
		}
	}
}

// notify wakes the long-polls waiting for the log to grow, and those
// waiting for the last stable offset when it moved. The caller holds p.mu for writing.
func (p *Partition) notify(lsoMoved bool) {
	p.assertWriteLocked()
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if w.stable && !lsoMoved {
			kept = append(kept, w)
			continue
		}
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
}
