package components

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkaconn"
	"github.com/sluicehq/sluice/pipelines"
	kafkasink "github.com/sluicehq/sluice/sinks/kafka"
	"github.com/sluicehq/sluice/sources/kafka"
	"github.com/sluicehq/sluice/steps/repartition"
)

// stageSteps returns the indexes of the steps that cut the pipeline
// (Caps.Stage: repartition), in order.
func stageSteps(spec *pipelines.Spec, kinds *Table) []int {
	var cuts []int
	for i, t := range spec.Transforms {
		if k := find(kinds.Steps, t.Kind); k != nil && k.Caps.Stage {
			cuts = append(cuts, i)
		}
	}
	return cuts
}

// buildStages builds a pipeline cut at its repartition steps (cuts, the
// steps' indexes) into stages, as Kafka Streams cuts a topology into
// sub-topologies (ARCHITECTURE §20). Stage 0, named as the pipeline,
// reads the source and runs the steps up to the first repartition, which
// re-keys the records; its sink is the kafka sink on the source's cluster,
// into the internal topic _sluice-repartition.PIPELINE.1, partitioned by
// key. Stage n (PIPELINE.repartition-n) reads that topic back in direct
// mode (read_committed) and runs the steps after, into the next internal
// topic or, for the last, the pipeline's sink. Each stage is an
// exactly-once pipeline of its own, split into tasks where it can be; the
// returned pipeline runs them all (engine.Config.Stages).
func buildStages(ctx context.Context, spec *pipelines.Spec, opts Options, cuts []int) (_ *engine.Pipeline, err error) {
	src, ok := spec.Source.Config.(*kafka.Settings)
	if !ok {
		return nil, fmt.Errorf("repartition needs a kafka source, not %s; lint the pipeline file", spec.Source.Kind)
	}
	env := &Env{Options: opts, Spec: spec}
	addrs, err := env.Brokers(src.Cluster())
	if err != nil {
		return nil, err
	}
	if err := ensureInternalTopics(ctx, spec, src, addrs, len(cuts), opts); err != nil {
		return nil, err
	}
	internalSink := func(n int) pipelines.Component {
		return pipelines.Component{Kind: "kafka", Config: &kafkasink.Settings{
			Brokers: src.Brokers, Topic: repartition.Topic(spec.Name, n), Compression: "none",
			CheckpointTopic: repartition.CheckpointTopic(spec.Name, n),
			TLS:             src.TLS, SASL: src.SASL,
		}}
	}
	internalSource := func(n int) pipelines.Component {
		return pipelines.Component{Kind: "kafka", Config: &kafka.Settings{
			Brokers: src.Brokers, Topics: []string{repartition.Topic(spec.Name, n)}, Mode: "direct",
			Start: "earliest", SessionTimeout: src.SessionTimeout, OnDataLoss: "fail", OnCorrupt: "fail",
			TLS: src.TLS, SASL: src.SASL, Internal: true,
		}}
	}
	specs := make([]pipelines.Spec, len(cuts)+1)
	first := make([]int, len(cuts)+1) // each stage's first step in the file
	for n := range specs {
		stage := *spec
		if n > 0 {
			first[n] = cuts[n-1] + 1
			stage.Name = pipelines.StageName(spec.Name, n)
			stage.Source = internalSource(n)
		}
		stage.Transforms = spec.Transforms[first[n]:]
		if n < len(cuts) {
			stage.Transforms = spec.Transforms[first[n] : cuts[n]+1]
			stage.Sink = internalSink(n + 1)
		}
		specs[n] = stage
	}
	// The last stage first: each is built with the stages after it.
	var after []*engine.Pipeline
	defer func() {
		if err != nil {
			for _, p := range after {
				p.Close()
			}
		}
	}()
	for n := len(specs) - 1; n >= 0; n-- {
		var stages []*engine.Pipeline
		if n == 0 {
			stages = after
		}
		p, err := buildStage(ctx, &specs[n], opts, first[n], stages)
		if err != nil {
			if n > 0 {
				err = fmt.Errorf("stage %s: %w", specs[n].Name, err)
			}
			return nil, err
		}
		if n == 0 {
			return p, nil
		}
		after = append([]*engine.Pipeline{p}, after...)
	}
	panic("unreachable")
}

// ensureInternalTopics creates the pipeline's n internal topics with the
// source's partition count, so the stage reading each has as many tasks
// as the source.
func ensureInternalTopics(ctx context.Context, spec *pipelines.Spec, src *kafka.Settings, addrs []string, n int, opts Options) error {
	kopts, err := kafkaconn.KgoOptions(addrs, src.TLS, src.SASL, "sluice-"+spec.Name, opts.Logger)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return fmt.Errorf("repartition: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	partitions, err := repartition.SourcePartitions(ctx, adm, src.Topics, src.Pattern)
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if err := repartition.EnsureTopic(ctx, adm, repartition.Topic(spec.Name, i), partitions, opts.Logger); err != nil {
			return err
		}
	}
	return nil
}

// deleteInternalTopics deletes the internal topics of a pipeline that is
// deleted: its repartition topics and their sinks' checkpoint topics.
func deleteInternalTopics(ctx context.Context, spec *pipelines.Spec, opts Options) error {
	src, ok := spec.Source.Config.(*kafka.Settings)
	if !ok {
		return nil
	}
	env := &Env{Options: opts, Spec: spec}
	addrs, err := env.Brokers(src.Cluster())
	if err != nil {
		return err
	}
	kopts, err := kafkaconn.KgoOptions(addrs, src.TLS, src.SASL, "sluice-"+spec.Name, opts.Logger)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return fmt.Errorf("repartition: %w", err)
	}
	defer cl.Close()
	return repartition.DeleteInternal(ctx, kadm.NewClient(cl), spec.Name, cmp.Or(opts.Logger, slog.Default()))
}
