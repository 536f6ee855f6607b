// Package wire turns a pipeline spec into a running engine.Pipeline: it
// picks the source, transforms and sink the YAML names and hands them to
// the engine. It holds no logic of its own beyond that choice.
package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sinks/file"
	"github.com/sluicehq/sluice/sinks/stdout"
	"github.com/sluicehq/sluice/sources/generate"
)

// Options are the process-wide settings a pipeline runs with.
type Options struct {
	// DataDir holds the pipeline's local state: checkpoints for the
	// non-exactly-once modes, write-ahead logs, the built-in broker.
	DataDir  string
	IdleExit time.Duration
	Logger   *slog.Logger
	Metrics  *engine.Metrics
	Stdout   io.Writer // for the stdout sink; nil = os.Stdout
}

// Build assembles the pipeline spec describes. ctx bounds only the
// building (starting plugin processes, connecting).
func Build(ctx context.Context, spec *pipelines.Spec, opts Options) (_ *engine.Pipeline, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg := engine.Config{
		Name:                   spec.Name,
		Delivery:               engine.Delivery(spec.Delivery),
		Interval:               spec.Batch.Interval.D(),
		MaxRecordsPerPartition: spec.Batch.MaxRecordsPerPartition,
		IdleExit:               opts.IdleExit,
		Logger:                 opts.Logger,
		Metrics:                opts.Metrics,
	}
	var closers []io.Closer
	defer func() {
		if err != nil {
			for _, c := range closers {
				c.Close()
			}
		}
	}()

	if cfg.Source, err = buildSource(spec); err != nil {
		return nil, err
	}
	closers = append(closers, cfg.Source)
	if cfg.Sink, err = buildSink(spec, opts); err != nil {
		return nil, err
	}
	closers = append(closers, cfg.Sink)
	for i := range spec.Transforms {
		t, err := buildTransform(ctx, spec, i, opts)
		if err != nil {
			return nil, err
		}
		closers = append(closers, t)
		cfg.Transforms = append(cfg.Transforms, t)
	}
	if spec.DeadLetter != nil {
		cfg.DeadLetters = true
	}
	if cfg.Delivery != engine.ExactlyOnce {
		dir := filepath.Join(opts.DataDir, "checkpoints")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("data directory %s: %w; pass --data with a writable directory", opts.DataDir, err)
		}
		cfg.Checkpoints = engine.NewFileCheckpoints(dir, spec.Name)
	}
	return engine.New(cfg)
}

func buildSource(spec *pipelines.Spec) (engine.Source, error) {
	switch {
	case spec.Source.Generate != nil:
		return generate.New(*spec.Source.Generate)
	case spec.Source.Kafka != nil:
		return nil, errors.New("source kafka: not available in this build yet; use the generate source")
	}
	return nil, errors.New("the pipeline has no source block")
}

func buildSink(spec *pipelines.Spec, opts Options) (engine.Sink, error) {
	switch {
	case spec.Sink.File != nil:
		return file.New(*spec.Sink.File)
	case spec.Sink.Stdout != nil:
		w := opts.Stdout
		if w == nil {
			w = os.Stdout
		}
		return stdout.New(*spec.Sink.Stdout, w), nil
	case spec.Sink.Postgres != nil:
		return nil, errors.New("sink postgres: not available in this build yet; use the file sink")
	case spec.Sink.Kafka != nil:
		return nil, errors.New("sink kafka: not available in this build yet; use the file sink")
	}
	return nil, errors.New("the pipeline has no sink block")
}

func buildTransform(_ context.Context, spec *pipelines.Spec, i int, _ Options) (engine.Transform, error) {
	return nil, fmt.Errorf("transforms[%d] (plugin %s): plugins are not available in this build yet; remove the transforms block", i, spec.Transforms[i].Plugin)
}
