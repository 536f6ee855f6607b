package storage

// checkLocks turns on the assertions below. Only the package's tests set
// it; in production each assertion inlines to one branch on a false global.
var checkLocks = false

// assertWriteLocked panics unless p.mu is held for writing. A Go mutex has
// no owner, so it cannot tell who holds it; it catches the usual mistake, a
// caller that holds nothing (or only the read lock).
func (p *Partition) assertWriteLocked() {
	if checkLocks {
		p.checkWriteLocked()
	}
}

// assertLocked panics unless p.mu is held, for reading or writing.
func (p *Partition) assertLocked() {
	if checkLocks {
		p.checkLocked()
	}
}

func (p *Partition) checkWriteLocked() {
	if p.mu.TryRLock() {
		p.mu.RUnlock()
		panic("storage: the caller must hold the partition's mu for writing")
	}
}

func (p *Partition) checkLocked() {
	if p.mu.TryLock() {
		p.mu.Unlock()
		panic("storage: the caller must hold the partition's mu")
	}
}
