package broker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/storage"
	"github.com/sluicehq/sluice/internal/durable"
)

// CreatePartitions: a topic grows, as in Kafka, never shrinks.

func handleCreatePartitions(r *request) reply {
	req := r.msg.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	b := r.c.b
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		var err error
		switch {
		case seen[rt.Topic] > 1:
			err = errorf(kerr.InvalidRequest, "topic %s is named more than once in one request", rt.Topic)
		case !r.authorized(opAlter, resTopic, rt.Topic):
			err = errorf(kerr.TopicAuthorizationFailed, "adding partitions to topic %s needs ALTER on it", rt.Topic)
		default:
			err = b.topics.addPartitions(rt, b.opts.NodeID, req.ValidateOnly)
		}
		st.ErrorCode, st.ErrorMessage = codeOf(err)
		resp.Topics = append(resp.Topics, st)
	}
	return respond(resp)
}

// addPartitions grows a topic to rt.Count partitions. The new partition
// directories are made first; the rewritten topic.json, which counts them,
// is the commit point (a crash before it leaves empty directories that the
// next attempt reuses, one after it opens them on restart); then they are
// opened and the topic swapped for one with the longer partition list, so
// readers holding the old one keep a consistent view.
func (ts *topicSet) addPartitions(rt kmsg.CreatePartitionsRequestTopic, node int32, validateOnly bool) error {
	ts.opMu.Lock()
	defer ts.opMu.Unlock()
	t := ts.get(rt.Topic)
	if t == nil {
		return errorf(kerr.UnknownTopicOrPartition, "topic %s does not exist", rt.Topic)
	}
	have := int32(len(t.parts))
	switch {
	case rt.Count == have:
		return errorf(kerr.InvalidPartitions, "topic %s already has %d partitions", rt.Topic, have)
	case rt.Count < have:
		return errorf(kerr.InvalidPartitions, "topic %s has %d partitions, more than the %d asked for: partitions cannot be removed", rt.Topic, have, rt.Count)
	case rt.Count > MaxPartitionsPerTopic:
		return errorf(kerr.InvalidPartitions, "%d partitions: use at most %d, the per-topic limit of the built-in broker", rt.Count, MaxPartitionsPerTopic)
	}
	if rt.Assignment != nil {
		if int32(len(rt.Assignment)) != rt.Count-have {
			return errorf(kerr.InvalidReplicaAssignment, "%d replica assignments for %d new partitions; give one per new partition", len(rt.Assignment), rt.Count-have)
		}
		for _, a := range rt.Assignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != node {
				return errorf(kerr.InvalidReplicaAssignment, "replica assignment %v not possible on the built-in broker: it has one node, id %d", a.Replicas, node)
			}
		}
	}
	if err := ts.checkCapacity(rt.Count - have); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	for i := have; i < rt.Count; i++ {
		if err := os.MkdirAll(filepath.Join(t.dir, strconv.Itoa(int(i))), 0o755); err != nil {
			return fmt.Errorf("add partitions to topic %s: %w", rt.Topic, err)
		}
	}
	if err := durable.SyncDir(t.dir); err != nil {
		return fmt.Errorf("add partitions to topic %s: %w", rt.Topic, err)
	}
	grown := &topic{meta: t.meta, dir: t.dir}
	grown.meta.Configs = t.configs()
	grown.meta.Partitions = rt.Count
	data, err := json.MarshalIndent(grown.meta, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(t.dir, "topic.json"), data); err != nil {
		return fmt.Errorf("add partitions to topic %s: %w", rt.Topic, err)
	}
	cfg := t.storageConfig(ts.opts, ts.log)
	parts := append([]*storage.Partition(nil), t.parts...)
	for i := have; i < rt.Count; i++ {
		cfg.Name = fmt.Sprintf("%s-%d", rt.Topic, i)
		p, err := storage.OpenPartition(filepath.Join(t.dir, strconv.Itoa(int(i))), cfg, true)
		if err != nil {
			// Stored but not served: the topic as it was goes on serving,
			// and a restart opens the new partitions.
			for _, p := range parts[have:] {
				p.Close()
			}
			return errorf(kerr.KafkaStorageError, "topic %s now has %d partitions on disk, but partition %d cannot be opened (%v); restart the broker once that is fixed", rt.Topic, rt.Count, i, err)
		}
		parts = append(parts, p)
	}
	grown.parts = parts
	ts.mu.Lock()
	ts.m[rt.Topic] = grown
	ts.mu.Unlock()
	ts.log.Info("added partitions", "topic", rt.Topic, "from", have, "to", rt.Count)
	return nil
}
