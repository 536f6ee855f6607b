package broker

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/internal/durable"
)

const (
	producerIDsFile = "producer-ids"

	// producerIDBlockSize is how many producer ids one fsync of the
	// allocation file reserves, as Kafka hands out ids in blocks of 1000:
	// an InitProducerId costs an fsync only once per block. Ids of a block
	// left unused at a restart are skipped, never reused.
	producerIDBlockSize = 1000
)

// producerIDs hands out idempotent producer ids. The file holds a bound:
// every id below it may have been handed out, so a restarted broker starts
// there. An id is never given twice, even across crashes, because the bound
// is durable before any id under it is returned.
type producerIDs struct {
	path  string
	mu    sync.Mutex
	next  int64 // the next id to hand out
	limit int64 // ids below it are covered by the file
}

// openProducerIDs reads the allocation file in dir. atLeast is one past the
// largest id the partition logs know, in case the file was lost.
func openProducerIDs(dir string, atLeast int64) (*producerIDs, error) {
	a := &producerIDs{path: filepath.Join(dir, producerIDsFile)}
	data, err := os.ReadFile(a.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read producer id allocation: %w", err)
	default:
		n, perr := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if perr != nil || n < 0 {
			return nil, fmt.Errorf("producer id allocation file %s holds %q, not a number; write into it a number larger than any producer id in use (e.g. %d) and restart", a.path, data, max(atLeast, 0)+1_000_000)
		}
		a.limit = n
	}
	a.limit = max(a.limit, atLeast)
	a.next = a.limit
	return a, nil
}

// allocate returns a fresh producer id.
func (a *producerIDs) allocate() (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next >= a.limit {
		if a.next > math.MaxInt64-producerIDBlockSize {
			return -1, errors.New("producer ids are exhausted")
		}
		limit := a.next + producerIDBlockSize
		if err := durable.WriteFile(a.path, []byte(strconv.FormatInt(limit, 10)+"\n")); err != nil {
			return -1, fmt.Errorf("reserve producer ids: %w", err)
		}
		a.limit = limit
	}
	id := a.next
	a.next++
	return id, nil
}
