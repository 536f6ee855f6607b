package repartition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// EnsureTopic creates the internal topic with partitions partitions (the
// source's count, so the stage after it has as many tasks) unless it
// exists. It is kept without a time limit: the stage reading it deletes
// what it committed (DeleteRecords), and a time limit could delete records
// before that stage read them. An existing topic keeps its partition
// count: adding partitions would move keys, and with them their state, to
// other tasks.
func EnsureTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32, log *slog.Logger) error {
	listed, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("repartition: list topic %s: %w", topic, err)
	}
	if d, ok := listed[topic]; ok && d.Err == nil {
		if n := int32(len(d.Partitions)); n != partitions {
			log.Warn("repartition: the internal topic's partition count differs from the source's; keeping it, as changing it would move keys between tasks",
				"topic", topic, "partitions", n, "source_partitions", partitions)
		}
		return nil
	}
	_, err = adm.CreateTopic(ctx, partitions, -1, map[string]*string{"retention.ms": ptr("-1")}, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("repartition: create topic %s: %w; create it yourself (sluice topic create %s --partitions %d) or allow this client to", topic, err, topic, partitions)
	}
	if err == nil {
		log.Info("repartition: created internal topic", "topic", topic, "partitions", partitions)
	}
	return nil
}

// SourcePartitions returns the most partitions of any of the topics, or
// of the topics matching pattern when it is set.
func SourcePartitions(ctx context.Context, adm *kadm.Client, topics []string, pattern string) (int32, error) {
	var re *regexp.Regexp
	if pattern != "" {
		var err error
		if re, err = regexp.Compile("^(?:" + pattern + ")$"); err != nil {
			return 0, fmt.Errorf("repartition: pattern %q: %w", pattern, err)
		}
		topics = nil
	}
	listed, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("repartition: list the source's topics: %w", err)
	}
	var most int32
	for name, d := range listed {
		if d.Err != nil || (re != nil && !re.MatchString(name)) {
			continue
		}
		most = max(most, int32(len(d.Partitions)))
	}
	if most == 0 {
		return 0, errors.New("repartition: the source's topics have no partitions (or do not exist yet); create them (sluice topic create) before running the pipeline")
	}
	return most, nil
}

// Internal lists a pipeline's internal topics on the cluster: its
// repartition topics and the checkpoint topics of the kafka sinks that
// write them (CheckpointTopic).
func Internal(ctx context.Context, adm *kadm.Client, pipeline string) ([]string, error) {
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("repartition: list topics: %w", err)
	}
	mine := regexp.MustCompile(`^` + regexp.QuoteMeta(TopicPrefix+pipeline+".") + `[0-9]+(?:\.checkpoints)?$`)
	var out []string
	for _, name := range listed.Names() {
		if mine.MatchString(name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// DeleteInternal deletes a pipeline's internal topics (Internal), for a
// pipeline that is deleted.
func DeleteInternal(ctx context.Context, adm *kadm.Client, pipeline string, log *slog.Logger) error {
	topics, err := Internal(ctx, adm, pipeline)
	if err != nil || len(topics) == 0 {
		return err
	}
	resp, err := adm.DeleteTopics(ctx, topics...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("repartition: delete the internal topics of %s (%s): %w; delete them with sluice topic delete", pipeline, strings.Join(topics, ", "), err)
	}
	log.Info("repartition: deleted internal topics", "pipeline", pipeline, "topics", topics)
	return nil
}

func ptr[T any](v T) *T { return &v }
