package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
)

// InspectOptions say which task's state Inspect reads, and from where.
type InspectOptions struct {
	DataDir  string
	Pipeline string
	Task     engine.Task
	// Kafka, when set, reads the changelog topic instead of the local
	// store: what a process that took the task over would restore.
	Kafka []kgo.Opt
	// Epoch is the committed epoch to restore the changelog at (changes of
	// Epoch+1 are reverted, as a restore would); 0 = everything in it.
	Epoch uint64
}

// Inspect calls fn with each key of the task's state, by namespace and
// then key, and returns the epoch the state is at. It writes nothing: the
// local store is opened read-only (it fails while a process runs the
// task on that data directory), the changelog is read into a temporary
// store.
func Inspect(ctx context.Context, o InspectOptions, fn func(ns string, key, value []byte) error) (uint64, error) {
	if o.Kafka == nil {
		path := filepath.Join(Dir(o.DataDir, o.Pipeline), o.Task.String(), storeFile)
		if _, err := os.Stat(path); err != nil {
			return 0, fmt.Errorf("state: no local state of task %d of pipeline %s: %w; check --data and the pipeline name (steps after a repartition keep theirs under %s), or read the changelog with --bootstrap", o.Task, o.Pipeline, err, pipelines.StageName(o.Pipeline, 1))
		}
		db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: storeLockTimeout})
		if errors.Is(err, bolt.ErrTimeout) {
			return 0, fmt.Errorf("state: %s is held by a running pipeline; stop it, or read the changelog with --bootstrap", path)
		}
		if err != nil {
			return 0, fmt.Errorf("state: %s: %w", path, err)
		}
		defer db.Close()
		return walk(db, fn)
	}
	tmp, err := os.MkdirTemp("", "sluice-state-inspect-")
	if err != nil {
		return 0, fmt.Errorf("state: %w", err)
	}
	defer os.RemoveAll(tmp)
	s, err := openStore(tmp, o.Task)
	if err != nil {
		return 0, err
	}
	defer s.close()
	cl, err := newChangelog(o.Pipeline, o.Kafka, slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, err
	}
	defer cl.close()
	if n, err := cl.partitions(ctx); err != nil {
		return 0, err
	} else if n <= int32(o.Task) {
		return 0, fmt.Errorf("state: the changelog topic %s has %d partitions, none for task %d (is the pipeline name right?)", cl.topic, n, o.Task)
	}
	start, end, err := cl.bounds(ctx)
	if err != nil {
		return 0, err
	}
	committed := o.Epoch
	if committed == 0 {
		committed = math.MaxUint64 - 1 // every record counts
	}
	p := int32(o.Task)
	var epoch uint64
	err = cl.read(ctx, map[int32]int64{p: start[p]}, map[int32]int64{p: end[p]}, func(_ int32, recs []logRecord) error {
		for _, r := range recs {
			if c, err := decodeChange(r.value); err == nil && r.value != nil {
				epoch = max(epoch, min(c.epoch, committed))
			}
		}
		return s.applyLog(recs, committed)
	})
	if err != nil {
		return 0, err
	}
	if _, err := walk(s.db, fn); err != nil {
		return 0, err
	}
	return epoch, nil
}

// walk calls fn for every key of a store and returns its epoch.
func walk(db *bolt.DB, fn func(ns string, key, value []byte) error) (uint64, error) {
	var epoch uint64
	err := db.View(func(tx *bolt.Tx) error {
		m, d := tx.Bucket(bucketMeta), tx.Bucket(bucketData)
		if m == nil || d == nil {
			return errors.New("state: the store has no data; it was never written")
		}
		epoch = getUint(m, metaEpoch)
		return d.ForEach(func(k, v []byte) error {
			ns, key, err := splitKey(k)
			if err != nil {
				return err
			}
			return fn(ns, key, v)
		})
	})
	return epoch, err
}
