package pipelines

import (
	"fmt"
	"regexp"
)

// stageNameRE matches the names the stages of a pipeline cut by
// repartition steps run under (NAME.repartition-N); a pipeline may not
// take one, or it would share that stage's topics and checkpoints.
var stageNameRE = regexp.MustCompile(`\.repartition-[0-9]+$`)

// StageName is the name the part of pipeline after its n-th repartition
// step runs under (n from 1): its checkpoints, its sink's transactional
// id and its metrics carry it.
func StageName(pipeline string, n int) string { return fmt.Sprintf("%s.repartition-%d", pipeline, n) }

// checkStages checks the steps that cut the pipeline through an internal
// topic (Caps.Stage): the topic lives on the source's Kafka cluster, the
// cut is exactly-once only through transactions, and a dead letter
// rejected before the cut commits in the internal topic's transaction.
func (s *Spec) checkStages(c *checker, kinds *Kinds) {
	for i, t := range s.Transforms {
		k := kinds.Step(t.Kind)
		p := fmt.Sprintf("transforms[%d]", i)
		if k == nil || !k.Caps.Stage || !c.ok(p) {
			continue
		}
		_, onKafka := s.Source.Config.(OnCluster)
		switch {
		case !onKafka:
			c.atKey(p+"."+t.Kind, "%s needs a kafka source: its internal topic lives on the source's Kafka cluster; read from kafka, or remove the step", t.Kind)
		case s.Delivery != ExactlyOnce && c.ok("delivery"):
			c.atKey(p+"."+t.Kind, "%s needs delivery: exactly-once: its internal topic is written and read back in transactions; remove delivery: %s", t.Kind, s.Delivery)
		case s.DeadLetter != nil && s.DeadLetter.Topic == "" && c.ok("dead-letter"):
			c.atKey("dead-letter", "with a %s step dead letters commit in the internal topic's transaction, so they go to a topic; write dead-letter: {topic: NAME}", t.Kind)
		default:
			continue
		}
		return // one line for the pipeline, not one per step
	}
}

// KeyedConfig is a step block that keeps state per key (aggregate,
// dedupe): every record of one key must reach the same task, that is the
// same source partition.
type KeyedConfig interface {
	// StateKey is what the step keys by: "key" (the record key),
	// "value", or a JSON field path.
	StateKey() string
}

// RepartitionConfig is a step block that partitions the records after it
// by a key (repartition): they then carry it as their record key.
type RepartitionConfig interface {
	RepartitionKey() string
}

// PartitionedSource is a source block that can say which fields its
// input is partitioned by besides the record key (the kafka source's
// partitioned-by).
type PartitionedSource interface {
	InputPartitioning() []string
}

// checkPartitioning warns when a step keeps state per key while its input
// is partitioned by something else: a Kafka source is taken to be
// partitioned by the record key (as Kafka's default partitioner places
// keyed records) and by the fields its partitioned-by lists, and a
// repartition by FIELD partitions by FIELD (which it also makes the record
// key). Only a warning: the producer may have placed records by FIELD
// without saying so.
func (s *Spec) checkPartitioning(c *checker) {
	if _, onKafka := s.Source.Config.(OnCluster); !onKafka {
		return // repartition needs a Kafka source: nothing to advise
	}
	by, now := map[string]bool{"key": true}, "the record key (as Kafka's default partitioner places records)"
	unless := "unless the input is already partitioned by %[1]s (then say so: source.kafka.partitioned-by: [%[1]s])"
	if ps, ok := s.Source.Config.(PartitionedSource); ok {
		for _, f := range ps.InputPartitioning() {
			by[f] = true
		}
	}
	for i, t := range s.Transforms {
		switch b := t.Config.(type) {
		case RepartitionConfig:
			f := b.RepartitionKey()
			by, now = map[string]bool{"key": true, f: true}, "the earlier repartition's "+f
			unless = "or repartition by %[1]s there"
		case KeyedConfig:
			k, p := b.StateKey(), fmt.Sprintf("transforms[%d].%s.key", i, t.Kind)
			if by[k] || !c.ok(p) {
				continue
			}
			pos := c.pos(p, false)
			c.warns = append(c.warns, &Error{File: c.file, Line: pos.Line, Col: pos.Col, Msg: fmt.Sprintf(
				"the %s step keys by %s, but its input is partitioned by %s, so the records of one %s can land in different tasks, each with its own state; add - repartition: {key: %s} before it, ",
				t.Kind, k, now, k, k) + fmt.Sprintf(unless, k)})
		}
	}
}
