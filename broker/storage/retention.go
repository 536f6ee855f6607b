package storage

import (
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/sluicehq/sluice/internal/durable"
)

// EnforceRetention deletes sealed segments past the retention age or size,
// or wholly below the log start offset (DeleteRecords, logstart.go), and
// returns how many it deleted. The active segment is never deleted.
func (p *Partition) EnforceRetention(now time.Time) (int, error) {
	if !p.cleanMu.TryLock() {
		// A clean is rewriting the first segments; the next pass runs soon.
		return 0, nil
	}
	defer p.cleanMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, nil
	}
	var total int64
	for _, s := range p.segs {
		total += s.size
	}
	n := 0
	for n < len(p.segs)-1 {
		s := p.segs[n]
		// cleanup.policy=compact alone keeps segments whatever their age
		// and size: only DeleteRecords' start removes them.
		age := !p.cfg.KeepForever && p.cfg.RetentionAge > 0
		byTime := age && s.maxTs >= 0 && now.Sub(time.UnixMilli(s.maxTs)) > p.cfg.RetentionAge
		byTime = byTime || (age && s.size == 0)
		bySize := !p.cfg.KeepForever && p.cfg.RetentionBytes > 0 && total-s.size >= p.cfg.RetentionBytes
		byStart := s.next <= p.start
		if !byTime && !bySize && !byStart {
			break
		}
		total -= s.size
		n++
	}
	dead := append([]*segment(nil), p.segs[:n]...)
	p.segs = append(p.segs[:0:0], p.segs[n:]...)
	// Taken under mu: SetConfig may replace the logger once it is released.
	log := p.cfg.Logger
	p.mu.Unlock()
	return n, p.removeSegments(dead, log, "retention deleted segments")
}

// removeSegments deletes the files of segments already taken out of p.segs.
// Readers holding a Section keep their file open until they release it.
func (p *Partition) removeSegments(dead []*segment, log *slog.Logger, msg string) error {
	n := len(dead)
	var errs []error
	for _, s := range dead {
		for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix, txnIndexSuffix} {
			if err := os.Remove(segmentName(p.dir, s.base, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		s.release()
	}
	if n > 0 {
		log.Info(msg, "dir", p.dir, "segments", n, "log_start_offset", p.StartOffset())
		if err := durable.SyncDir(p.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
