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
