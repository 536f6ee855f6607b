package kafka

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
)

const (
	// checkpointFormat versions the checkpoint record's value.
	checkpointFormat = 1
	// firstWindow is how many offsets before the end Open reads first when
	// looking for the last checkpoint; each committed epoch adds two (its
	// record and the commit marker), so it is found in the first window
	// unless other pipelines share the topic or epochs were aborted.
	firstWindow = 64
)

// checkpoint is the value of a checkpoint record: the last epoch committed
// and the source positions just past it.
type checkpoint struct {
	Format    int              `json:"format"`
	Pipeline  string           `json:"pipeline"`
	Epoch     uint64           `json:"epoch"`
	Positions engine.Positions `json:"positions"`
	Time      time.Time        `json:"time"`
}

func (c checkpoint) marshal() ([]byte, error) {
	c.Format = checkpointFormat
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: encode checkpoint: %w", err)
	}
	return b, nil
}

// readCheckpoint returns the pipeline's last committed checkpoint, the
// zero checkpoint when it has none. It reads backwards in growing windows
// from the end of the partition and takes a checkpoint only once it has
// seen its transaction's commit marker, so records of aborted epochs are
// never taken. Call it after the producer id is initialised: then no
// transaction of this pipeline is open or in doubt.
//
// It reads uncommitted and interprets the markers itself rather than
// asking for read_committed: a read_committed fetch drops aborted records
// without a trace, and the read would not know it reached the end when the
// last offset is one of them.
func readCheckpoint(ctx context.Context, cfg Config, pipeline string) (checkpoint, error) {
	topic := cfg.checkpointTopic(pipeline)
	opts, err := cfg.clientOptions("sluice-sink-" + pipeline + "-checkpoint")
	if err != nil {
		return checkpoint{}, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return checkpoint{}, fmt.Errorf("kafka sink: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	start, end, err := bounds(ctx, adm, topic)
	if err != nil {
		return checkpoint{}, err
	}
	// Each wider window reads to the end again: a checkpoint just below the
	// previous window has its commit marker inside it.
	for window := int64(firstWindow); ; window *= 4 {
		from := max(start, end-window)
		c, found, err := scan(ctx, cfg, topic, pipeline, from, end)
		if err != nil || found || from == start {
			return c, err
		}
	}
}

// bounds returns the checkpoint partition's log start and end offsets.
func bounds(ctx context.Context, adm *kadm.Client, topic string) (start, end int64, err error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("kafka sink: list offsets of %s: %w", topic, classify(err))
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("kafka sink: list offsets of %s: %w", topic, classify(err))
	}
	s, ok1 := starts.Lookup(topic, 0)
	e, ok2 := ends.Lookup(topic, 0)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("kafka sink: checkpoint topic %s has no partition 0; delete it so the sink recreates it, or name another with checkpoint-topic", topic)
	}
	return s.Offset, e.Offset, nil
}

// scan reads [from, end) of the checkpoint partition and returns the last
// committed checkpoint of pipeline in it.
func scan(ctx context.Context, cfg Config, topic, pipeline string, from, end int64) (checkpoint, bool, error) {
	if from >= end {
		return checkpoint{}, false, nil
	}
	opts, err := cfg.clientOptions("sluice-sink-" + pipeline + "-checkpoint")
	if err != nil {
		return checkpoint{}, false, err
	}
	opts = append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return checkpoint{}, false, fmt.Errorf("kafka sink: %w", err)
	}
	defer cl.Close()
	var last checkpoint
	var found bool
	open := map[int64]*kgo.Record{} // producer id -> its last checkpoint awaiting a marker
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return checkpoint{}, false, fmt.Errorf("kafka sink: read checkpoint from %s: %w", topic, err)
		}
		for _, fe := range fs.Errors() {
			return checkpoint{}, false, fmt.Errorf("kafka sink: read checkpoint from %s: %w", topic, classify(fe.Err))
		}
		done := false
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			if r.Offset >= end-1 {
				done = true
			}
			var take *kgo.Record
			switch {
			case r.Offset >= end:
				continue
			case r.Attrs.IsControl():
				if commitMarker(r.Key) {
					take = open[r.ProducerID]
				}
				delete(open, r.ProducerID)
			case string(r.Key) != pipeline:
				continue
			case r.Attrs.IsTransactional():
				open[r.ProducerID] = r
			default:
				take = r // written without a transaction: committed as it is
			}
			if take == nil {
				continue
			}
			var c checkpoint
			if err := json.Unmarshal(take.Value, &c); err != nil || c.Pipeline != pipeline {
				return checkpoint{}, false, fmt.Errorf("kafka sink: checkpoint record at %s/0@%d is not a sluice checkpoint of %s (%v); is checkpoint-topic shared with something else?", topic, take.Offset, pipeline, err)
			}
			if c.Format != checkpointFormat {
				return checkpoint{}, false, fmt.Errorf("kafka sink: checkpoint record at %s/0@%d has format %d; this sluice reads format %d, upgrade it", topic, take.Offset, c.Format, checkpointFormat)
			}
			last, found = c, true
		}
		if done {
			return last, found, nil
		}
	}
}

// commitMarker reports whether a control record's key is a transaction's
// COMMIT marker (version int16, type int16: 0 abort, 1 commit).
func commitMarker(key []byte) bool {
	return len(key) >= 4 && binary.BigEndian.Uint16(key[2:4]) == 1
}
