package kafka

import "time"

// SetReceiverFetchBytes sets how much r's client fetches per partition and
// per fetch response, so that a test can tell the receiver's own memory
// from the client's buffers.
func SetReceiverFetchBytes(r *Receiver, perPartition, perFetch int32) {
	r.partitionFetchBytes, r.fetchBytes = perPartition, perFetch
}

// ReceiverStored returns how many records r has stored (logged) and not
// yet handed out, and how many of them are in memory.
func ReceiverStored(r *Receiver) (stored, inMemory int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.mem {
		inMemory += int64(b.enc.Len()) - max(r.pos-b.first, 0)
	}
	return r.readable - r.pos, inMemory
}

// AwaitReceiverStored waits until r has stored at least n records not yet
// handed out; false if timeout passed first.
func AwaitReceiverStored(r *Receiver, n int64, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		stored, changed := r.readable-r.pos, r.changed
		r.mu.Unlock()
		if stored >= n {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// AwaitReceiverAhead waits until r has logged as far ahead as it will: its
// poll loop waits for read-ahead room with no block being stored, or at
// least n records are stored and not handed out; false if timeout passed
// first.
func AwaitReceiverAhead(r *Receiver, n int64, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.gmu.Lock()
		r.mu.Lock()
		done, changed := r.full && r.polled == 0 || r.readable-r.pos >= n, r.changed
		r.mu.Unlock()
		r.gmu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// AwaitReceiverBacklogKnown waits until r's Backlog is known; false if
// timeout passed first.
func AwaitReceiverBacklogKnown(r *Receiver, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if _, known := r.Backlog(); known {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// SkipJoinCheck makes r skip the check for another write-ahead log before
// joining its group, so a test reaches the one at its first assignment.
func SkipJoinCheck(r *Receiver) { r.skipJoinCheck = true }

// ShareGroup makes r skip both checks for another write-ahead log in its
// group, so a test can make two receivers hand partitions to each other.
func ShareGroup(r *Receiver) { r.skipJoinCheck, r.skipAssignCheck = true, true }
