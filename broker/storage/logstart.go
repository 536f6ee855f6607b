package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/internal/durable"
)

// The log start offset. Retention moves it by deleting whole segments, so
// it is the first segment's base; DeleteRecords (Kafka's
// kafka-delete-records) moves it to any offset up to the log end, often
// inside a segment. That start is kept in a checkpoint file in the
// partition directory, replaced durably before the new start is served,
// so a crash leaves the old start or the new one and a restart never
// serves records a client was told are deleted.

// logStartFile is the checkpoint of the start DeleteRecords set: the
// offset in decimal. Its name does not end in .log, so listSegments
// ignores it.
const logStartFile = "log-start-offset"

// logStart is the first offset reads may ask for; the caller holds p.mu.
func (p *Partition) logStart() int64 {
	p.assertLocked()
	return max(p.start, p.segs[0].base)
}

// DeleteRecordsBefore makes offset the log start: -1 means the log end (the
// high watermark). Reads below it then fail with ErrOffsetOutOfRange.
// Segments wholly below it are deleted at once; an active segment wholly
// below it is rolled first, as Kafka does, so its space is freed too. A
// start at or below the current one changes nothing. It returns the log
// start after the call (Kafka's low watermark).
func (p *Partition) DeleteRecordsBefore(offset int64, now time.Time) (int64, error) {
	p.startMu.Lock()
	defer p.startMu.Unlock()
	p.cleanMu.Lock() // a clean's swap must find the segments it read
	defer p.cleanMu.Unlock()
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return 0, p.closedErr()
	}
	start, end := p.logStart(), p.end
	p.mu.RUnlock()
	if offset == -1 {
		offset = end
	}
	if offset < 0 || offset > end {
		return 0, fmt.Errorf("%w: cannot delete records before offset %d: give an offset from %d to the high watermark %d, or -1 for the high watermark",
			ErrOffsetOutOfRange, offset, start, end)
	}
	if offset <= start {
		return start, nil
	}
	// The end only grows while the partition is open, so offset stays
	// valid while the checkpoint is written outside mu.
	if err := durable.WriteFile(filepath.Join(p.dir, logStartFile), []byte(strconv.FormatInt(offset, 10)+"\n")); err != nil {
		return 0, fmt.Errorf("write log start checkpoint of %s: %w", p.dir, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, p.closedErr()
	}
	p.start = offset
	var rollErr error
	if active := p.segs[len(p.segs)-1]; active.size > 0 && active.next <= offset {
		_, rollErr = p.roll(now)
	}
	n := 0
	for n < len(p.segs)-1 && p.segs[n].next <= offset {
		n++
	}
	dead := append([]*segment(nil), p.segs[:n]...)
	p.segs = append(p.segs[:0:0], p.segs[n:]...)
	log := p.cfg.Logger
	p.mu.Unlock()
	if rollErr != nil {
		// The new start is in force; only the space waits for the next roll.
		log.Warn("roll after DeleteRecords failed; the old segment is deleted after the next roll", "dir", p.dir, "err", rollErr)
	}
	if err := p.removeSegments(dead, log, "DeleteRecords deleted segments"); err != nil {
		log.Warn("deleting segments below the new log start failed; retention retries", "dir", p.dir, "err", err)
	}
	return offset, nil
}

// loadLogStart reads the checkpoint at open, after recovery fixed the end.
func (p *Partition) loadLogStart() error {
	path := filepath.Join(p.dir, logStartFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read log start checkpoint: %w", err)
	}
	start, err := strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
	if err != nil || start < 0 {
		return fmt.Errorf("log start checkpoint %s holds %q, not an offset: fix or delete it (deleting serves again the records DeleteRecords removed that are still on disk)", path, data)
	}
	if start > p.end {
		// A torn tail cut the log below a start set before the crash.
		p.cfg.Logger.Warn("log start checkpoint is past the recovered log end; the log starts at its end",
			"partition", p.name(), "checkpoint", start, "end", p.end)
		start = p.end
	}
	p.start = start
	return nil
}
